"""The labelled corpus, its held-out fifth, training the concern model and measuring the tagger.

The corpus is a folder of YAML files (`tests/data/content/corpus/*.yaml`), each with a `style` and
`articles: [{treatment, sections: [{title, body, label}]}]`; `label` is the concern a clinician would file the
section under, primary first (`acne, pigmentation`), or `general`.

Contract:
- `read_corpus(folder)` returns every `Example`, or raises `ContentError` naming the file and the section.
- `is_held_out(example)` puts whole treatments aside, a fifth of them by a stable hash of the treatment's name:
  the tagger is measured on treatments it has never read about, not on neighbours of its training sections.
- `train(examples)` fits the model (scikit-learn's logistic regression; installed by the `test` extra, never
  needed to tag) on the examples it is given, recording their digests in the model.
- `evaluate(tagger, examples)` gives the share of sections whose primary concern is right, and precision and
  recall per concern.

`python -m needlecast.content.training [CORPUS] [--out FILE]` retrains the shipped model on the training
four-fifths and prints the held-out figures.
"""

from __future__ import annotations

import argparse
import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from needlecast.content.classifier import MODEL_PATH, ConcernModel, features
from needlecast.content.model import GENERAL
from needlecast.content.tagger import Tagger
from needlecast.errors import ContentError
from needlecast.yamlfile import read_yaml

REPO_CORPUS = Path(__file__).resolve().parents[2] / "tests" / "data" / "content" / "corpus"
HELD_OUT_BUCKETS = 5
REGULARISATION = 4.0  # scikit-learn's C: larger fits the training sections more closely


@dataclass(frozen=True)
class Example:
    treatment: str
    style: str
    title: str
    body: str
    labels: tuple[str, ...]

    @property
    def primary(self) -> str:
        return self.labels[0]

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.treatment}\n{self.title}\n{self.body}".encode()).hexdigest()[:16]


def read_corpus(folder: Path) -> list[Example]:
    examples: list[Example] = []
    for path in sorted(folder.glob("*.yaml")):
        raw = read_yaml(path, "a labelled corpus file")
        if not isinstance(raw, dict) or not isinstance(raw.get("articles"), list):
            raise ContentError(f"{path}: expected 'style' and 'articles: [{{treatment, sections}}]'")
        style = str(raw.get("style") or path.stem)
        for article in raw["articles"]:
            for index, section in enumerate(article.get("sections") or []):
                labels = tuple(part.strip() for part in str(section.get("label") or "").split(",") if part.strip())
                if not labels or not section.get("title") or not section.get("body"):
                    raise ContentError(
                        f"{path}: section {index + 1} of '{article.get('treatment')}' needs a title, a body and a label"
                    )
                examples.append(
                    Example(
                        str(article["treatment"]),
                        style,
                        " ".join(str(section["title"]).split()),
                        " ".join(str(section["body"]).split()),
                        labels,
                    )
                )
    return examples


def is_held_out(example: Example) -> bool:
    bucket = int(hashlib.sha256(example.treatment.lower().encode()).hexdigest()[:8], 16) % HELD_OUT_BUCKETS
    return bucket == 0


def split(examples: Sequence[Example]) -> tuple[list[Example], list[Example]]:
    """(training, held out)."""
    return [e for e in examples if not is_held_out(e)], [e for e in examples if is_held_out(e)]


def train(examples: Sequence[Example], regularisation: float = REGULARISATION) -> ConcernModel:
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression

    vectoriser = DictVectorizer()
    matrix = vectoriser.fit_transform([_sublinear(features(e.title, e.body)) for e in examples])
    fitted = LogisticRegression(C=regularisation, max_iter=5000, class_weight="balanced")
    fitted.fit(matrix, [e.primary for e in examples])
    classes = tuple(str(c) for c in fitted.classes_)
    names = vectoriser.get_feature_names_out()
    weights: dict[str, tuple[float, ...]] = {}
    for column, name in enumerate(names):
        row = tuple(float(fitted.coef_[i][column]) for i in range(len(classes)))
        if max(abs(w) for w in row) >= 0.02:  # what weighs nothing is left out of the file
            weights[str(name)] = row
    bias = tuple(float(b) for b in fitted.intercept_)
    return ConcernModel(classes, bias, weights, tuple(sorted(e.digest for e in examples)))


def _sublinear(found: Counter[str]) -> dict[str, float]:
    """Counts as the model reads them (`ConcernModel._logits`): a word said three times is not three times the
    evidence."""
    return {feature: 1.0 + math.log(count) for feature, count in found.items()}


@dataclass(frozen=True)
class Measure:
    sections: int
    accuracy: float
    precision: dict[str, float]
    recall: dict[str, float]
    support: dict[str, int]
    wrong: list[tuple[Example, str]]


def evaluate(tagger: Tagger, examples: Iterable[Example]) -> Measure:
    outcomes = [(e, tagger.explain(e.title, e.body).tags[0]) for e in examples]
    names = sorted({e.primary for e, _ in outcomes} | {got for _, got in outcomes})
    precision, recall, support = {}, {}, {}
    for name in names:
        predicted = [e for e, got in outcomes if got == name]
        actual = [e for e, _ in outcomes if e.primary == name]
        hits = [e for e, got in outcomes if got == name and e.primary == name]
        precision[name] = len(hits) / len(predicted) if predicted else 0.0
        recall[name] = len(hits) / len(actual) if actual else 0.0
        support[name] = len(actual)
    right = sum(1 for e, got in outcomes if got == e.primary)
    wrong = [(e, got) for e, got in outcomes if got != e.primary]
    return Measure(len(outcomes), right / len(outcomes) if outcomes else 0.0, precision, recall, support, wrong)


def describe(measure: Measure) -> str:
    lines = [f"{measure.sections} sections, primary concern right: {measure.accuracy:.1%}"]
    for name in sorted(measure.support, key=lambda n: (n == GENERAL, n)):
        lines.append(
            f"  {name:<14} precision {measure.precision[name]:.0%}  recall {measure.recall[name]:.0%}  "
            f"({measure.support[name]} sections)"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    import json

    from needlecast.content.vocabulary import load_vocabulary

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=REPO_CORPUS)
    parser.add_argument("--out", type=Path, default=MODEL_PATH)
    parser.add_argument("--vocabulary", type=Path, default=REPO_CORPUS.parents[3] / "content" / "vocabulary.yaml")
    args = parser.parse_args(argv)
    training, held_out = split(read_corpus(args.corpus))
    model = train(training)
    args.out.write_text(json.dumps(model.to_json(), separators=(",", ":")) + "\n", encoding="utf-8")
    vocabulary = load_vocabulary(args.vocabulary)
    print(f"trained on {len(training)} sections; {len(model.weights)} features -> {args.out}")
    print("held out: " + describe(evaluate(Tagger(vocabulary, model), held_out)))
    print("vocabulary alone, held out: " + describe(evaluate(Tagger(vocabulary), held_out)))


if __name__ == "__main__":
    main()
