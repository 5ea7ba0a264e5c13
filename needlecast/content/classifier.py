"""A small linear model that reads a benefit section the way the labelled corpus taught it.

The vocabulary (`content/vocabulary.yaml`) knows the names of the concerns; this model knows how clinics
write about them without naming them ("lost its spring", "gunked-up pores", "marks that spots leave"). It is
a multinomial logistic regression over stemmed words and word pairs, trained on the labelled corpus
(`tests/data/content/corpus`, see `needlecast.content.training`) and shipped as a small JSON file beside this
module, so that tagging runs offline with nothing but the standard library and `snowballstemmer`.

Contract:
- `features(title, body)` is the bag of features a section is read as: each stemmed word of the body and the
  title, each pair of neighbouring stemmed words, and the title's words again marked `title:` (a title is what
  a section is about). Stop words are dropped. The same function serves training and tagging.
- `ConcernModel.probabilities(title, body)` maps each class the model was trained on (the concerns and
  `general`) to its probability; the values sum to 1.
- `ConcernModel.strongest(title, body, concern)` names the features that pushed the section towards
  `concern` most, with their weights, in words a reviewer reads ("'collagen' +1.4").
- `shipped_model()` is the model in the package (cached); None when the file is absent.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import snowballstemmer

MODEL_PATH = Path(__file__).with_name("concern_model.json")

# Words that carry no topic: articles, pronouns, auxiliaries and the filler of marketing copy.
_STOP_TEXT = """a about after again all also an and any are as at be because been before being both but by can could
    did do does doing during each even every few for from further get gets got had has have having her here
    his how i if in into is it its it's just me more most my no nor not now of off on once only or other our
    out over own same she should so some such than that the their them then there these they this those
    through to too under until up very was we were what when where which while who whom why will with would
    you your yours you'll you're you've we'll we're us let lets really honestly literally simply"""
STOP_WORDS = frozenset(re.split(r"\s+", _STOP_TEXT.strip()))
_WORD = re.compile(r"[a-z][a-z'’-]*[a-z]|[a-z]")


_STEMMERS = threading.local()


def _stemmer() -> Any:
    """This thread's stemmer: a snowball stemmer keeps the word it is stemming in itself, so two threads sharing
    one (the scheduler's jobs load the content library at once) corrupt each other's words."""
    stemmer = getattr(_STEMMERS, "english", None)
    if stemmer is None:
        stemmer = _STEMMERS.english = snowballstemmer.stemmer("english")
    return stemmer


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return str(_stemmer().stemWord(word))


def _words(text: str) -> list[tuple[str, str]]:
    """The topic words of `text` in order, each as (stem, the word as written); hyphenated words split:
    "anti-ageing" -> (anti, anti), (age, ageing)."""
    words = []
    for token in _WORD.findall(text.lower().replace("’", "'")):
        for part in token.split("-"):
            part = part.strip("'").removesuffix("'s")
            if part and part not in STOP_WORDS:
                words.append((_stem(part), part))
    return words


def _surfaced(title: str, body: str) -> tuple[Counter[str], dict[str, str]]:
    """The features of a section and, for each, the words it was read from (for reasons a person reads)."""
    found: Counter[str] = Counter()
    surface: dict[str, str] = {}
    for text, prefix in ((title, "title:"), (body, "")):
        words = _words(text)
        for stem, written in words:
            found[stem] += 1
            surface.setdefault(stem, written)
            if prefix:
                found[prefix + stem] += 1
                surface.setdefault(prefix + stem, written)
        for (first, first_written), (second, second_written) in itertools.pairwise(words):
            found[f"{first} {second}"] += 1
            surface.setdefault(f"{first} {second}", f"{first_written} {second_written}")
    return found, surface


def topic_words(text: str) -> dict[str, str]:
    """The topic words of `text`: stem -> the word as first written."""
    found: dict[str, str] = {}
    for stem, written in _words(text):
        found.setdefault(stem, written)
    return found


def features(title: str, body: str) -> Counter[str]:
    """The features of a section (see the module contract)."""
    return _surfaced(title, body)[0]


@dataclass(frozen=True)
class ConcernModel:
    """A linear model: per class a bias and a weight per feature (features it never saw weigh nothing)."""

    classes: tuple[str, ...]
    bias: tuple[float, ...]
    weights: dict[str, tuple[float, ...]]
    trained_on: tuple[str, ...] = ()  # the digests of the corpus sections it learnt from (see training)

    def _logits(self, found: Counter[str]) -> list[float]:
        logits = list(self.bias)
        for feature, count in found.items():
            row = self.weights.get(feature)
            if row is not None:
                scale = 1.0 + math.log(count)  # sublinear: a word said three times is not three times the evidence
                for index, weight in enumerate(row):
                    logits[index] += weight * scale
        return logits

    def probabilities(self, title: str, body: str) -> dict[str, float]:
        logits = self._logits(features(title, body))
        top = max(logits)
        exps = [math.exp(value - top) for value in logits]
        total = sum(exps)
        return {name: value / total for name, value in zip(self.classes, exps, strict=True)}

    def strongest(self, title: str, body: str, concern: str, count: int = 3) -> list[tuple[str, float]]:
        """The features of this section that pushed it towards `concern` most, strongest first."""
        if concern not in self.classes:
            return []
        index = self.classes.index(concern)
        pushes: dict[str, float] = {}
        found, surface = _surfaced(title, body)
        for feature in found:
            row = self.weights.get(feature)
            if row is None:
                continue
            # How much more this feature speaks for the concern than for the average other class.
            others = [w for i, w in enumerate(row) if i != index]
            push = row[index] - (sum(others) / len(others) if others else 0.0)
            if push > 0:
                label = surface[feature]
                pushes[label] = max(pushes.get(label, 0.0), push)
        return sorted(pushes.items(), key=lambda item: (-item[1], item[0]))[:count]

    def to_json(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "bias": [round(b, 5) for b in self.bias],
            "weights": {f: [round(w, 5) for w in row] for f, row in sorted(self.weights.items())},
            "trained_on": list(self.trained_on),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ConcernModel:
        classes = tuple(str(c) for c in raw["classes"])
        weights = {str(f): tuple(float(w) for w in row) for f, row in raw["weights"].items()}
        if any(len(row) != len(classes) for row in weights.values()) or len(raw["bias"]) != len(classes):
            raise ValueError("a concern model's weights must have one value per class")
        return cls(classes, tuple(float(b) for b in raw["bias"]), weights, tuple(raw.get("trained_on") or ()))


def load_model(path: Path) -> ConcernModel:
    return ConcernModel.from_json(json.loads(path.read_text(encoding="utf-8")))


@functools.lru_cache(maxsize=1)
def shipped_model() -> ConcernModel | None:
    """The model shipped with needlecast (None when the package was built without it)."""
    return load_model(MODEL_PATH) if MODEL_PATH.is_file() else None
