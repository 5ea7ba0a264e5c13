"""A template problem in the clinic's words, for the console: where it is and what to do, never Python's text.

Contract: `in_words(problem)` turns a `TemplateProblem` (whose message is Jinja's or Python's, for the command
line and logs) into one sentence for a page: "Line 10 of emails/welcome.html: a section has no “titel”; it
has title, body, ...". A message it does not recognise keeps Jinja's own words (they name the mistake) but
never a Python type's name.
"""

from __future__ import annotations

import re

from needlecast.errors import TemplateProblem

# What a template's values have, named as the README's table names them.
_HAS = {
    "Section": ("a section", "title, body, slug, kind, line, concerns, treatment and article"),
    "dict object": ("this value", ""),
}
_NAMES = (
    "clinic, lang, concern, concern_label, article, intro, lead, more, closing, covered, treatments, first_name, "
    "unsubscribe_url and preferences_url"
)
_FILTERS = "upper, lower, title, capitalize, trim, join, length, default, paragraphs and midsentence, among others"
_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"'(?P<name>[^']+)' is undefined"), "there is no “{name}” a template can use (it can use {names})"),
    (
        re.compile(r"Unexpected end of template.*?looking for the following tags: '(?P<tag>\w+)'", re.S),
        "the template ends before a tag is closed: add {{% {tag} %}} where it should end",
    ),
    (
        re.compile(
            r"Encountered unknown tag '(?P<found>\w+)'.*?innermost block that needs to be closed is '(?P<open>\w+)'",
            re.S,
        ),
        "a {{% {open} %}} opened above this line is not closed: add {{% end{open} %}} where it should end "
        "(the template reached {{% {found} %}} first)",
    ),
    (
        re.compile(r"Encountered unknown tag '(?P<found>\w+)'"),
        "there is no tag {{% {found} %}}: check its spelling, or remove it",
    ),
    (re.compile(r"No filter named '(?P<name>[^']+)'"), "there is no filter “{name}” (there are {filters})"),
    (
        re.compile(r"expected token '(?P<expected>[^']+)', got '(?P<got>[^']+)'"),
        "something is missing or mistyped before “{got}”: check that every {{{{ has its }}}} and every {{% its %}}",
    ),
    (re.compile(r"unexpected '(?P<got>[^']+)'"), "“{got}” is not expected here: check the {{{{ }}}} and {{% %}} on it"),
    (re.compile(r"unexpected end of template", re.I), "the template ends inside a {{{{ }}}} or {{% %}}: close it"),
    (
        re.compile(r"access to attribute '(?P<name>[^']+)'.*unsafe"),
        "templates may not use “{name}” (it is kept out of their reach for safety)",
    ),
    (re.compile(r"'\w+' object is not callable"), "a value is written as if it were a function: remove the ()"),
    (re.compile(r"division by zero"), "a calculation on this line divides by zero"),
    (
        re.compile(r"can only concatenate|unsupported operand"),
        "this line adds or combines values that do not go together",
    ),
]
_ATTRIBUTE = re.compile(r"'(?P<owner>[^']+)' has no attribute '(?P<name>[^']+)'")
_PYTHON_TYPE = re.compile(r"^(?:[A-Z]\w*(?:Error|Exception)): ")


def in_words(problem: TemplateProblem) -> str:
    """The problem as one sentence for a page (see the module contract)."""
    location = (problem.template or "<template>") + (f":{problem.line}" if problem.line is not None else "")
    message = str(problem).removeprefix(f"{location}: ").removeprefix("undefined variable: ")
    where = _where(problem)
    return f"{where}: {_said(message)}" if where else _said(message)


def _where(problem: TemplateProblem) -> str:
    template = problem.template or ""
    if template.endswith(": subject") or template.endswith(": preheader"):
        part = "subject" if template.endswith("subject") else "preview line"
        return f"In the {part}"
    if problem.line and template:
        return f"Line {problem.line} of {template}"
    return f"In {template}" if template else ""


def _said(message: str) -> str:
    attribute = _ATTRIBUTE.search(message)
    if attribute:
        owner = attribute.group("owner").rsplit(".", 1)[-1].removesuffix(" object")
        what, has = _HAS.get(owner, _HAS.get(attribute.group("owner"), ("this value", "")))
        return f"{what} has no “{attribute.group('name')}”" + (f"; it has {has}" if has else "")
    for pattern, words in _RULES:
        found = pattern.search(message)
        if found:
            return words.format(**found.groupdict(), names=_NAMES, filters=_FILTERS)
    return _PYTHON_TYPE.sub("", message)
