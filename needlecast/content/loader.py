"""Load a workspace's vocabulary, its content library and its default article as configured in needlecast.toml."""

from __future__ import annotations

from needlecast.config import Workspace
from needlecast.content.library import Library, load_library
from needlecast.content.model import Article
from needlecast.content.vocabulary import Vocabulary, load_vocabulary


def load_vocabulary_for(workspace: Workspace) -> Vocabulary:
    return load_vocabulary(workspace.path(workspace.settings.content.vocabulary))


def load_library_for(workspace: Workspace, vocabulary: Vocabulary | None = None) -> Library:
    """Every article of the workspace (see `content.library`)."""
    return load_library(workspace, vocabulary or load_vocabulary_for(workspace))


def load_article(workspace: Workspace, vocabulary: Vocabulary | None = None) -> Article:
    """The workspace's default article (`[content] article`), parsed and tagged; `ContentError` when it fails."""
    return load_library_for(workspace, vocabulary).default
