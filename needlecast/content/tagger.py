"""Tagging a section: the vocabulary's named evidence and the model's reading, combined, with reasons.

The vocabulary (`Vocabulary.explain`) finds the concern's own names and topic words; the model
(`content.classifier`) reads how clinics write about a concern without naming it. Each alone misses what the
other sees: "Bounce back, skin!" names nothing, while "Some redness afterwards is normal" names redness and is
about aftercare. Combined:

- score(concern) = the model's probability + `VOCABULARY_SHARE` x the vocabulary's weight (capped at 6) / 3;
  score(general) = the model's probability of general. Without a model (or for a concern the workspace added,
  which the model never saw) the vocabulary decides alone, as it always did.
- The primary concern is the best score. Other concerns are tags too when the vocabulary weighs them at least
  `TAG_AT` or the model gives them at least `SECONDARY_AT`, strongest first. A `general` primary is the only
  tag.
- Review notes: **split** when the best two scores are within `SPLIT_MARGIN` (the best is taken); **weak**
  when the best is below `WEAK_BELOW`; **disagreement** when the vocabulary names a concern the wording does
  not read as (it stays general, and the note says to tag it by hand otherwise).
- Reasons, one per concern with evidence: the vocabulary's words and weights, then the model's probability
  and its strongest words ("model 81 %: 'collagen' +1.4, 'firm' +0.9").

Contract: `Tagger(vocabulary, model).explain(title, body)` returns a `Tagging` (tags, reasons, review) and never
raises for any text.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from needlecast.content.classifier import ConcernModel, topic_words
from needlecast.content.model import GENERAL
from needlecast.content.vocabulary import BODY_WEIGHT, TAG_AT, TITLE_WEIGHT, Evidence, Tagging, Vocabulary

VOCABULARY_SHARE = 0.6
EXAMPLE_WORDS_AT_MOST = 3
# Words every clinic section uses: sharing them with a concern's examples says nothing about the concern.
GENERIC_STEMS = frozenset(
    topic_words(
        "skin treatment session clinic result face facial help look feel make week day course appointment "
        "treat improve reduce"
    )
)
SECONDARY_AT = 0.3
SPLIT_MARGIN = 0.12
WEAK_BELOW = 0.45


@dataclass(frozen=True)
class Tagger:
    vocabulary: Vocabulary
    model: ConcernModel | None = None

    def explain(self, title: str, body: str) -> Tagging:
        if self.model is None:
            return self.vocabulary.explain(title, body)
        evidence = self._with_examples({e.concern: e for e in self.vocabulary.evidence(title, body)}, title, body)
        probabilities = self.model.probabilities(title, body)
        scores = {name: self._score(name, evidence, probabilities) for name in self.vocabulary.names}
        scores[GENERAL] = probabilities.get(GENERAL, 0.0)
        order = {name: index for index, name in enumerate((*self.vocabulary.names, GENERAL))}
        ranked = sorted(scores, key=lambda name: (-scores[name], order[name]))
        primary = ranked[0]
        tags: tuple[str, ...] = (GENERAL,)
        if primary != GENERAL:
            others = [
                name
                for name in ranked[1:]
                if name != GENERAL
                and (_weight(evidence, name) >= TAG_AT or probabilities.get(name, 0.0) >= SECONDARY_AT)
            ]
            tags = (primary, *others)
        reasons = tuple(self._reason(title, body, name, evidence, probabilities) for name in ranked if scores[name])
        return Tagging(tags, tuple(r for r in reasons if r), self._review(ranked, scores, evidence, primary))

    def _with_examples(self, evidence: dict[str, Evidence], title: str, body: str) -> dict[str, Evidence]:
        """A concern the model never saw learns from the clinic's example sentences (`examples:` in the
        vocabulary): each topic word a section shares with them weighs as a body synonym (at most
        `EXAMPLE_WORDS_AT_MOST`), shown as "'word' (example)"."""
        assert self.model is not None
        words = topic_words(f"{title} {body}")
        for concern in self.vocabulary.concerns:
            if not concern.examples or concern.name in self.model.classes:
                continue
            taught = topic_words(" ".join(concern.examples))
            shared = sorted({words[stem] for stem in set(words) & set(taught) - GENERIC_STEMS})
            if not shared:
                continue
            shared = shared[:EXAMPLE_WORDS_AT_MOST]
            found = evidence.get(concern.name) or Evidence(concern.name, 0.0, (), ())
            evidence[concern.name] = replace(
                found,
                weight=found.weight + BODY_WEIGHT * len(shared),
                in_body=(*found.in_body, *(f"{word} (example)" for word in shared)),
            )
        return evidence

    def _score(self, name: str, evidence: dict[str, Evidence], probabilities: dict[str, float]) -> float:
        weight = _weight(evidence, name)
        named = VOCABULARY_SHARE * min(weight, 6.0) / 3.0
        if name in probabilities:
            return probabilities[name] + named
        # A concern the workspace added, which the model never saw: what the model reads as "none of the
        # concerns it knows" may be this one, when the vocabulary names it.
        return named + (probabilities.get(GENERAL, 0.0) if weight >= TAG_AT else 0.0)

    def _reason(
        self, title: str, body: str, name: str, evidence: dict[str, Evidence], probabilities: dict[str, float]
    ) -> str:
        parts = []
        found = evidence.get(name)
        if found is not None:
            named = [f"'{t}' in the title +{TITLE_WEIGHT:g}" for t in found.in_title[:1]]
            named += [f"'{t}' +{BODY_WEIGHT:g}" for t in found.in_body]
            parts.append("vocabulary " + ", ".join(named))
        probability = probabilities.get(name)
        if probability is not None and self.model is not None and (probability >= 0.05 or found is not None):
            words = ", ".join(f"'{w}' +{v:.1f}" for w, v in self.model.strongest(title, body, name))
            parts.append(f"wording {probability:.0%}" + (f" ({words})" if words else ""))
        return f"{name}: {'; '.join(parts)}" if parts else ""

    def _review(self, ranked: list[str], scores: dict[str, float], evidence: dict[str, Evidence], primary: str) -> str:
        best, second = ranked[0], ranked[1]
        if scores[best] - scores[second] < SPLIT_MARGIN:
            return (
                f"split: reads as {best} ({scores[best]:.2f}) or {second} ({scores[second]:.2f}); {best} was "
                f"taken (tag it by hand if it is about {second})"
            )
        named = [e.concern for e in evidence.values() if e.weight >= TAG_AT]
        if primary == GENERAL and named:
            return (
                f"the vocabulary names {', '.join(named)} but the wording reads as general; it stays general "
                f"(tag it by hand if it is about {named[0]})"
            )
        if scores[best] < WEAK_BELOW:
            return f"weak evidence: the best reading, {best}, scores only {scores[best]:.2f}"
        return ""


def _weight(evidence: dict[str, Evidence], name: str) -> float:
    found = evidence.get(name)
    return found.weight if found else 0.0
