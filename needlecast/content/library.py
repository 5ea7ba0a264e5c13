"""The content library: every article of a workspace's `content/` folder, parsed and tagged.

Contract:
- `load_library(workspace, vocabulary)` reads every `content/*.txt`, `*.md` and `*.html` file (and the article
  `[content] article` names, wherever it is) as an article whose id is its file name without the suffix. A
  file that cannot be parsed is kept in `problems` with its name and the structure expected, and does not
  stop the others from loading; two files with one id are a problem of the second.
- Titles and treatment names come from `content/articles.yaml` (`ID: {title: ..., treatment: ...}`), else
  the file's front matter, else the text (see `content.parser`).
- Tag overrides come from `[content] overrides` (`content/tags.yaml`): `ARTICLE_ID: {slug: [concerns]}` per
  article; a plain `slug: [concerns]` entry at the top level applies to the default article.
- `Library.article(id)` returns an article or raises: the article's own `ContentError` when it failed to
  load, `NotFound` listing the articles when there is no such file. `Library.default` is the article that
  steps naming none use (`[content] article`). `Library.benefits()` are every article's benefit sections,
  the default article's first, then by id: what a library-wide step draws on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from needlecast.config import Workspace
from needlecast.content.model import Article, Section
from needlecast.content.parser import ARTICLE_SUFFIXES, parse_article
from needlecast.content.vocabulary import Vocabulary
from needlecast.errors import ConfigurationError, ContentError, NotFound
from needlecast.yamlfile import read_yaml

ARTICLES_FILE = "articles.yaml"
META_KEYS = ("title", "treatment")


@dataclass
class Library:
    articles: dict[str, Article]
    default_id: str
    problems: dict[str, ContentError] = field(default_factory=dict)  # by article id
    paths: dict[str, Path] = field(default_factory=dict)  # every article file by id, parsed or not

    @property
    def default(self) -> Article:
        """The article of steps that name none (`[content] article`)."""
        return self.article(self.default_id)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self.articles)

    def article(self, article_id: str) -> Article:
        if article_id in self.articles:
            return self.articles[article_id]
        if article_id in self.problems:
            raise self.problems[article_id]
        raise NotFound(
            f"no article '{article_id}' in content/; articles: {', '.join(self.articles) or 'none'} "
            "(an article's id is its file name without .txt, .md or .html)"
        )

    def benefits(self) -> tuple[Section, ...]:
        return tuple(s for article in self.articles.values() for s in article.benefits)


def article_paths(workspace: Workspace) -> list[Path]:
    """Every article file of the workspace: the default article first, then `content/` by name."""
    default = workspace.path(workspace.settings.content.article)
    folder = workspace.content_dir
    found = sorted(p for p in folder.glob("*") if p.suffix.lower() in ARTICLE_SUFFIXES) if folder.is_dir() else []
    return [default, *(p for p in found if p.resolve() != default.resolve())]


def load_article_meta(workspace: Workspace) -> dict[str, dict[str, str]]:
    """`content/articles.yaml`: article id -> {title, treatment} (a missing file: nothing)."""
    path = workspace.content_dir / ARTICLES_FILE
    if not path.is_file():
        return {}
    raw = read_yaml(path, "article titles and treatments") or {}
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path}: expected a mapping of article id -> {{title: ..., treatment: ...}}")
    meta: dict[str, dict[str, str]] = {}
    for article_id, spec in raw.items():
        if not isinstance(spec, dict) or any(k not in META_KEYS for k in spec):
            raise ConfigurationError(
                f"{path}: '{article_id}' must be a mapping with {' and/or '.join(META_KEYS)}, "
                "e.g. peels: {treatment: Chemical peels}"
            )
        meta[str(article_id)] = {str(k): str(v) for k, v in spec.items() if v is not None}
    return meta


def load_overrides(path: Path | None, default_id: str) -> dict[str, dict[str, tuple[str, ...]]]:
    """Tag overrides by article id, then section slug (see the module contract; a missing file: none)."""
    if path is None or not path.is_file():
        return {}
    raw = read_yaml(path, "tag overrides") or {}
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path}: expected a mapping of article id -> {{section slug: [concerns]}}")
    overrides: dict[str, dict[str, tuple[str, ...]]] = {}
    for key, value in raw.items():
        article_id, entries = (str(key), value) if isinstance(value, dict) else (default_id, {key: value})
        for slug, tags in entries.items():
            values = [tags] if isinstance(tags, str) else tags
            if not isinstance(values, list) or not values:
                raise ConfigurationError(f"{path}: '{slug}' must list one or more concerns (or 'general')")
            overrides.setdefault(article_id, {})[str(slug)] = tuple(str(v) for v in values)
    return overrides


OVERRIDES_HEADER = (
    "# Per-section corrections of the automatic concern tags: article id -> {section slug: [concerns]}.\n"
    "# Written by the console's Content page (each correction is audited) and editable by hand.\n"
)


def write_override(path: Path, default_id: str, article_id: str, slug: str, concerns: tuple[str, ...] | None) -> None:
    """Set (or, with None, remove) one section's tag override in the overrides file, keeping every other entry.
    Entries written in the old top-level form are rewritten under the default article's id."""
    overrides = load_overrides(path, default_id)
    entries = dict(overrides.get(article_id, {}))
    if concerns is None:
        entries.pop(slug, None)
    else:
        entries[slug] = concerns
    overrides[article_id] = entries
    document = {a: {s: list(t) for s, t in sorted(e.items())} for a, e in sorted(overrides.items()) if e}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    body = (
        yaml.safe_dump(document, sort_keys=True, allow_unicode=True, default_flow_style=False) if document else "{}\n"
    )
    temporary.write_text(OVERRIDES_HEADER + body, encoding="utf-8")
    temporary.replace(path)  # a reader never sees half a file


def overrides_of(workspace: Workspace, library: Library) -> dict[str, dict[str, tuple[str, ...]]]:
    """The workspace's tag overrides by article id (see `load_overrides`)."""
    return load_overrides(workspace.path(workspace.settings.content.overrides), library.default_id)


def load_library(workspace: Workspace, vocabulary: Vocabulary) -> Library:
    """Every article of the workspace, parsed and tagged (see the module contract)."""
    paths = article_paths(workspace)
    default_id = paths[0].stem
    overrides = load_overrides(workspace.path(workspace.settings.content.overrides), default_id)
    meta = load_article_meta(workspace)
    library = Library({}, default_id)
    for path in paths:
        article_id = path.stem
        library.paths.setdefault(article_id, path)
        if article_id in library.articles or article_id in library.problems:
            library.problems.setdefault(
                f"{article_id} ({path.name})",
                ContentError(f"{path}: another article already has the id '{article_id}'; rename one of the files"),
            )
            continue
        try:
            library.articles[article_id] = parse_article(
                path, vocabulary, overrides.get(article_id), meta.get(article_id)
            )
        except ContentError as err:
            library.problems[article_id] = err
    unknown = sorted(set(overrides) - set(library.articles) - set(library.problems))
    if unknown:
        raise ConfigurationError(
            f"{workspace.path(workspace.settings.content.overrides)}: overrides for article(s) "
            f"{', '.join(unknown)}, which content/ does not have; articles: {', '.join(library.articles)}"
        )
    return library


def article_ids(workspace: Workspace) -> tuple[str, ...]:
    """The ids of every article file, parsed or not (what a campaign may name)."""
    return tuple(dict.fromkeys(p.stem for p in article_paths(workspace)))
