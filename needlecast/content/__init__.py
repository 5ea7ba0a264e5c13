"""Source articles -> sections -> concern-tagged content blocks; the claims linter lives in `needlecast.lint`."""

from needlecast.content.model import GENERAL, Article, Section
from needlecast.content.parser import parse_article
from needlecast.content.vocabulary import Vocabulary, load_vocabulary

__all__ = ["GENERAL", "Article", "Section", "Vocabulary", "load_vocabulary", "parse_article"]
