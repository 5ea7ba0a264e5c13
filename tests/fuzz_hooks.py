"""Schemathesis hooks for the API fuzz (loaded by `SCHEMATHESIS_HOOKS=tests.fuzz_hooks`).

A client gives each new request a new `Idempotency-Key`; the same key again with another request is refused
(422) by design, which no schema can say. So every generated request that carries the header gets a fresh key:
what the fuzz checks is that every request a well-behaved client can send is answered as the document says.
"""

from __future__ import annotations

import uuid
from typing import Any

import schemathesis


@schemathesis.hook
def before_call(context: Any, case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
    for name, value in list((case.headers or {}).items()):
        if name.lower() == "idempotency-key" and value:
            case.headers[name] = uuid.uuid4().hex
