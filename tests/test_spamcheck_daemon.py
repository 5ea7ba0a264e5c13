"""The session's `spamd` (conftest's `session_spamd`) scores exactly as the `spamassassin` program does, and a
socket that does not answer (not started yet, or gone) costs nothing but time: the program scores instead."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from needlecast import spamcheck
from needlecast.config import Workspace
from needlecast.templating.preview import sample_eml
from needlecast.templating.render import RenderedEmail
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(
    shutil.which("spamassassin") is None or shutil.which("spamd") is None,
    reason="Debian's spamassassin is not installed here (apt-get install spamassassin; .ci/run installs it)",
)

PROSE = "Dear friend, GUARANTEED results: act now, this is your last chance, 100% free, click here"


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as conn:
        try:
            conn.connect(path)
        except OSError:
            return False
    return True


def _messages(workspace: Workspace) -> dict[str, bytes]:
    notes = [
        RenderedEmail("emails/x", "A short note", "A note.", "<p>See you soon.</p>", "See you soon."),
        RenderedEmail("emails/y", "LAST CHANCE!!!", "Now.", f"<p>{PROSE}</p>", PROSE),
    ]
    return {f"m{n}": sample_eml(workspace, note) for n, note in enumerate(notes)}


def test_spamd_scores_every_message_as_the_program_does(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    path = os.environ.get(spamcheck.SPAMD_SOCKET_ENV)
    assert path, "conftest starts one spamd per session"
    wait_until(lambda: _answers(path), 120, "the session's spamd to answer")
    messages = _messages(workspace)
    program = shutil.which("spamassassin")
    assert program
    by_daemon = {key: spamcheck._ask_spamd(path, key, eml)[key] for key, eml in messages.items()}
    by_program = spamcheck._run(program, messages)
    assert by_daemon == by_program
    assert by_program["m1"].score > by_program["m0"].score and by_program["m1"].hits()


def test_a_socket_that_does_not_answer_leaves_the_scoring_to_the_program(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = os.environ.get(spamcheck.SPAMD_SOCKET_ENV)
    assert path, "conftest starts one spamd per session"
    wait_until(lambda: _answers(path), 120, "the session's spamd to answer")
    messages = _messages(workspace)
    by_daemon = {key: spamcheck._ask_spamd(path, key, eml)[key] for key, eml in messages.items()}
    monkeypatch.setenv(spamcheck.SPAMD_SOCKET_ENV, str(tmp_path / "nobody-listens.sock"))
    monkeypatch.setattr(spamcheck, "_cache", {})
    monkeypatch.delenv(spamcheck.SCORES_DIR_ENV, raising=False)  # scored by the program, not read from the run's
    assert spamcheck.score_messages(messages) == by_daemon
