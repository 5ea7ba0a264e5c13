"""Load a workspace's article and vocabulary as configured in needlecast.toml."""

from __future__ import annotations

from needlecast.config import Workspace
from needlecast.content.model import Article
from needlecast.content.parser import load_overrides, parse_article
from needlecast.content.vocabulary import Vocabulary, load_vocabulary


def load_vocabulary_for(workspace: Workspace) -> Vocabulary:
    return load_vocabulary(workspace.path(workspace.settings.content.vocabulary))


def load_article(workspace: Workspace, vocabulary: Vocabulary | None = None) -> Article:
    """The workspace's article, parsed and tagged (tag overrides applied)."""
    vocabulary = vocabulary or load_vocabulary_for(workspace)
    overrides = load_overrides(workspace.path(workspace.settings.content.overrides))
    return parse_article(workspace.path(workspace.settings.content.article), vocabulary, overrides)
