"""The API's whole surface fuzzed against its own OpenAPI document by Schemathesis, with every check, over real
HTTP to uvicorn: whatever is sent, no 5xx, and every answer (status, headers, body, `Allow` on a 405, acceptance
of every request the document admits, refusal of every one it does not) is what the document says. Zero
failures. On SQLite only (a face's answers, conftest's rule): the store under the API is the contract suites'
on both databases, and tests/test_not_found.py sends PostgreSQL the ids a database can choke on.

Schemathesis runs as its command line does (`st run`): its coverage phase (boundary values, methods the
document does not list), then fuzzing and stateful sequences (a contact created, then read, erased, read
again). A run is bounded: `EXAMPLES` per operation in the fuzzing phase; under CI it is deterministic, the same
cases every run, as conftest makes Hypothesis. `tests/fuzz_hooks.py` gives each generated request its own
`Idempotency-Key`, as a client does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, empty_store, make_workspace
from tests.console_site import ConsoleSite, site

EXAMPLES = 10  # per operation in the fuzzing phase: about 800 requests in all, half of them the coverage phase's


@dataclass
class Target:
    site: ConsoleSite
    key: str


@pytest.fixture(scope="module", params=["sqlite"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    folder = tmp_path_factory.mktemp("fuzz")
    root = make_workspace(folder / "ws")
    with pytest.MonkeyPatch.context() as patch, empty_store(request.param, folder) as url:
        patch.setenv("NEEDLECAST_DATABASE_URL", url)
        patch.setenv("NEEDLECAST_QUIET_HOURS", "off")
        with site(root, url, settings="\n[api]\nrequests_per_minute = 1000000\n") as running:
            yield Target(running, running.key())


def test_every_schemathesis_check_passes_on_every_operation_of_the_document(target: Target, tmp_path: Path) -> None:
    api = f"{target.site.url}/api/v1"
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "run", f"{api}/openapi.json", "--url", api),
        *("--header", f"Authorization: Bearer {target.key}"),
        *("--checks", "all", "--max-examples", str(EXAMPLES), "--workers", "1"),
        *("--request-timeout", "60", "--no-color", "--output-truncate", "false"),
        *(("--generation-deterministic",) if os.environ.get("CI") else ("--generation-database", "none")),
    ]
    environment = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    # Run in a scratch folder: Schemathesis keeps a cache (.schemathesis/) in its working folder.
    run = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=1800)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    tested = re.search(r"Tested: (\d+)", report)
    assert tested and int(tested.group(1)) >= 16, report  # every operation of the document was exercised
    assert re.search(r"(\d+) generated, \1 passed", report), report
