"""SpamAssassin scores of rendered messages: Debian's `spamassassin -L -t`, local tests only, never the network.

Contract: `score_messages({key: eml_bytes})` returns `{key: SpamScore}` for every message, or raises
`SpamAssassinMissing` when the `spamassassin` program is not installed (the caller says so; a missing scorer
never passes silently). Each distinct message is scored once per process (results are cached by content;
Date, Message-ID and MIME boundary aside), and the messages still unscored go to at most two `spamassassin` processes at
once (the machine's cores, at most 2), each reading its share as one mbox: SpamAssassin spends most of its
time loading its rules, so one process scores many messages nearly as fast as one. Bayes is off
(`use_bayes 0`), so scores never depend on what was scored before. A process that fails or times out is a
`SpamAssassinFailed` naming what SpamAssassin said.

With `NEEDLECAST_SPAMD_SOCKET` naming the UNIX socket of a running `spamd` started as `spamd_command(socket)`
says (the same settings, local tests only), messages go to it instead, one request each: the rules are loaded
once for all of them rather than once per call (seconds each; the test suite starts one per session). While
that socket does not answer, the `spamassassin` program scores as above, with the same results.

With `NEEDLECAST_SPAM_SCORES_DIR` naming a folder, the scores are kept there too, one small JSON file per
content key, so that processes sharing the folder score each distinct message once between them (the test suite
gives its processes one folder per run). A score depends on SpamAssassin's rules: a folder is not meant to
outlive a rule update. A file that cannot be read is scored again; one that cannot be written is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path

from needlecast.atomicfile import write_text_atomically

WARN_SCORE = 2.0
ERROR_SCORE = 5.0
TIMEOUT_SECONDS = 120.0
_KEY_HEADER = "X-Needlecast-Check"
_FROM_LINE = b"From needlecast@localhost Thu Jan  1 00:00:00 1970\n"
_VOLATILE = re.compile(rb"^(?:Date|Message-ID): [^\n]*\n", re.MULTILINE | re.IGNORECASE)
_BOUNDARY = re.compile(rb'boundary="([^"]+)"')
_RULE = re.compile(r"([A-Z0-9_]+)=(-?\d+(?:\.\d+)?)")
_SCORE = re.compile(r"score=(-?\d+(?:\.\d+)?)")

# The settings every scoring runs with, whether by `spamassassin` or by `spamd`.
_SETTINGS = (
    "use_bayes 0",
    "report_safe 0",  # a spam verdict must not wrap the message (and its key header) as an attachment
    "add_header all Rules _TESTSSCORES(,)_",
)
SPAMD_SOCKET_ENV = "NEEDLECAST_SPAMD_SOCKET"
SCORES_DIR_ENV = "NEEDLECAST_SPAM_SCORES_DIR"

_cache: dict[str, SpamScore] = {}
_cache_lock = threading.Lock()


class SpamAssassinMissing(Exception):
    """The `spamassassin` program is not on PATH."""


class SpamAssassinFailed(Exception):
    """`spamassassin` ran but gave no score (its message says why)."""


@dataclass(frozen=True)
class SpamScore:
    score: float
    rules: tuple[tuple[str, float], ...]  # the rules that hit with points, highest first

    def hits(self) -> list[tuple[str, float]]:
        """The rules that added points (SpamAssassin's informational 0-point rules left out)."""
        return [(name, points) for name, points in self.rules if points >= 0.05]


def spamassassin_program() -> str | None:
    return shutil.which("spamassassin")


def content_key(eml: bytes) -> str:
    """The cache key of a message: its bytes without what differs per build (the Date and Message-ID headers,
    the MIME boundary)."""
    head, sep, body = eml.partition(b"\n\n")
    stable = _VOLATILE.sub(b"", head + b"\n") + sep + body
    for boundary in set(_BOUNDARY.findall(head)):  # random per build
        stable = stable.replace(boundary, b"BOUNDARY")
    return hashlib.sha256(stable).hexdigest()


def score_messages(messages: Mapping[str, bytes]) -> dict[str, SpamScore]:
    """Score every message (see the module contract); keys are the caller's."""
    program = spamassassin_program()
    if program is None:
        raise SpamAssassinMissing("SpamAssassin (`spamassassin`) is not installed")
    by_content = {key: content_key(eml) for key, eml in messages.items()}
    with _cache_lock:
        todo = {content: messages[key] for key, content in by_content.items() if content not in _cache}
    kept = _kept_scores(todo)
    with _cache_lock:
        _cache.update(kept)
    todo = {content: eml for content, eml in todo.items() if content not in kept}
    if todo:
        workers = max(1, min(2, os.cpu_count() or 1, len(todo)))
        items = sorted(todo.items())
        shares = [dict(items[i::workers]) for i in range(workers)]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for scored in pool.map(lambda share: _score_share(program, share), shares):
                with _cache_lock:
                    _cache.update(scored)
                _keep_scores(scored)
    with _cache_lock:
        return {key: _cache[content] for key, content in by_content.items()}


def _kept_scores(contents: Mapping[str, bytes]) -> dict[str, SpamScore]:
    """The scores of `contents` already kept in the `NEEDLECAST_SPAM_SCORES_DIR` folder (none without one)."""
    folder = os.environ.get(SCORES_DIR_ENV)
    found: dict[str, SpamScore] = {}
    if not folder:
        return found
    for content in contents:
        try:
            kept = json.loads((Path(folder) / f"{content}.json").read_text(encoding="utf-8"))
            found[content] = SpamScore(float(kept["score"]), tuple((str(n), float(p)) for n, p in kept["rules"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not kept yet (or unreadable): scored again
    return found


def _keep_scores(scored: Mapping[str, SpamScore]) -> None:
    """Each score written whole into the `NEEDLECAST_SPAM_SCORES_DIR` folder, so that a process reading it never
    sees half a file."""
    folder = os.environ.get(SCORES_DIR_ENV)
    if not folder:
        return
    for content, score in scored.items():
        try:
            write_text_atomically(
                Path(folder) / f"{content}.json", json.dumps({"score": score.score, "rules": score.rules})
            )
        except OSError:
            continue  # kept in this process only


def spamd_command(socket_path: str, home: str) -> list[str]:
    """The `spamd` command line whose scores equal `score_messages`'s: local tests only, no user settings, the
    same settings, listening on `socket_path` (its helper home folder `home`)."""
    settings = [f"--cf={line}" for line in _SETTINGS]
    return ["spamd", "-L", "-x", f"--socketpath={socket_path}", "--max-children=2", f"-H{home}", *settings]


def _score_share(program: str, share: Mapping[str, bytes]) -> dict[str, SpamScore]:
    """`share` scored by the configured `spamd`, or (none configured, or it does not answer) by `_run`."""
    socket_path = os.environ.get(SPAMD_SOCKET_ENV)
    if socket_path:
        try:
            scored: dict[str, SpamScore] = {}
            for key, eml in share.items():
                scored.update(_ask_spamd(socket_path, key, eml))
            return scored
        except OSError:
            pass  # not started yet, or gone: the program gives the same scores, only slower
    return _run(program, share)


def _ask_spamd(socket_path: str, key: str, eml: bytes) -> dict[str, SpamScore]:
    """One message scored by `spamd` (its SPAMC protocol's PROCESS: the message back, with SpamAssassin's
    headers added)."""
    message = f"{_KEY_HEADER}: {key}\n".encode() + eml.replace(b"\r\n", b"\n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(TIMEOUT_SECONDS)
        conn.connect(socket_path)
        conn.sendall(b"PROCESS SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(message) + message)
        conn.shutdown(socket.SHUT_WR)
        answer = b"".join(iter(lambda: conn.recv(65536), b""))
    status, _, body = answer.partition(b"\r\n\r\n")
    scored = _parse(_FROM_LINE + body.replace(b"\r\n", b"\n"))
    if key not in scored:
        raise SpamAssassinFailed(f"spamd gave no score (it said: {status.splitlines()[0:1]})")
    return scored


def _run(program: str, share: Mapping[str, bytes]) -> dict[str, SpamScore]:
    """One `spamassassin` process over `share` (content key -> message), as an mbox."""
    mbox = b"".join(
        _FROM_LINE
        + f"{_KEY_HEADER}: {key}\n".encode()
        + eml.replace(b"\r\n", b"\n").replace(b"\nFrom ", b"\n>From ")
        + b"\n"
        for key, eml in share.items()
    )
    command = [
        program,
        "-L",
        "-t",
        "--mbox",
        *(f"--cf={line}" for line in _SETTINGS),
    ]
    try:
        done = subprocess.run(command, input=mbox, capture_output=True, timeout=TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired as err:
        raise SpamAssassinFailed(f"SpamAssassin took over {TIMEOUT_SECONDS:.0f} s") from err
    scored = _parse(done.stdout)
    missing = set(share) - set(scored)
    if missing:
        said = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["nothing"]
        raise SpamAssassinFailed(
            f"SpamAssassin scored {len(share) - len(missing)} of {len(share)} (it said: {said[0]})"
        )
    return scored


def _parse(output: bytes) -> dict[str, SpamScore]:
    """Each output message's key, score and rules, from its X-Spam-Status and X-Spam-Rules headers."""
    scored: dict[str, SpamScore] = {}
    parser = BytesHeaderParser()
    for chunk in output.split(_FROM_LINE):
        if not chunk.strip():
            continue
        headers = parser.parsebytes(chunk)
        key = (headers.get(_KEY_HEADER) or "").strip()
        status = _SCORE.search(" ".join(str(headers.get("X-Spam-Status", "")).split()))
        if not key or status is None:
            continue
        rules = _RULE.findall("".join(str(headers.get("X-Spam-Rules", "")).split()))
        ranked = sorted(((name, float(points)) for name, points in rules), key=lambda r: (-r[1], r[0]))
        scored[key] = SpamScore(float(status.group(1)), tuple(ranked))
    return scored
