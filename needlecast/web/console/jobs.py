"""Audience imports started from the console: run in a background thread, watched by a progress page.

Contract: `ImportJobs.start(...)` copies nothing itself: it is given the uploaded file, already written
under the workspace's state folder, and returns a job id at once; the import runs in a thread (one
transaction, as from the command line), updating the job's stage and the rows read so far; `get(id)` reads
it, and `ImportJob.status()` is what the import page's script polls. A failure's message names the file as
it was uploaded, never the server's copy of it. Jobs live in this process's memory; the import audit in the
store keeps every import for good.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from needlecast.actions.audience import ImportSummary, Progress
from needlecast.errors import ConfigurationError, InvalidRequest, NeedlecastError

# What each stage is called on the page.
STAGES = {
    "waiting": "Waiting to start",
    "reading": "Reading and checking the rows",
    "writing": "Saving the contacts",
    "done": "Finished",
    "failed": "The import failed: nothing was changed",
}


@dataclass
class ImportJob:
    id: str
    file_name: str
    stage: str = "waiting"
    done: int = 0
    total: int = 0
    summary: ImportSummary | None = None
    error: str = ""
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def running(self) -> bool:
        return not self.finished.is_set()

    @property
    def state(self) -> str:
        """running, done or failed (a job is running until its thread has set everything it reports)."""
        if self.running:
            return "running"
        return "failed" if self.error else "done"

    @property
    def percent(self) -> int:
        if not self.running:
            return 100
        return min(99, int(100 * self.done / self.total)) if self.total else 0

    @property
    def stage_text(self) -> str:
        return STAGES.get("failed" if self.state == "failed" else self.stage, self.stage)

    @property
    def rows_text(self) -> str:
        """The rows read so far, in words (the total is an estimate from the file's line count)."""
        read = self.summary.read if self.summary is not None and not self.running else self.done
        if self.running and self.total > read:
            return f"{read:,} of about {self.total:,} rows read"
        return f"{read:,} row{'' if read == 1 else 's'} read"

    def status(self) -> dict[str, Any]:
        """The JSON the import page polls while the import runs."""
        return {
            "state": self.state,
            "stage": self.stage,
            "stage_text": self.stage_text,
            "read": self.done,
            "total": self.total,
            "percent": self.percent,
            "rows_text": self.rows_text,
        }


class ImportJobs:
    def __init__(self) -> None:
        self._jobs: dict[str, ImportJob] = {}
        self._lock = threading.Lock()

    def start(self, file_name: str, run: Callable[[Progress], ImportSummary], path: Path | None = None) -> ImportJob:
        """Run `run` in a thread as a new job (`path`: the server's copy of the file, never shown)."""
        job = ImportJob(uuid.uuid4().hex, file_name)
        with self._lock:
            self._jobs[job.id] = job

        def progress(stage: str, done: int, total: int) -> None:
            job.stage, job.done, job.total = stage, done, total

        def work() -> None:
            try:
                job.stage = "reading"
                job.summary = run(progress)
                job.stage = "done"
            except (NeedlecastError, ConfigurationError) as err:
                job.error, job.stage = _shown(str(err), path, file_name), "failed"
            except Exception as err:  # a bug: the import's transaction was rolled back
                job.error, job.stage = f"the import failed ({type(err).__name__}); nothing was changed", "failed"
            finally:
                job.finished.set()

        threading.Thread(target=work, name=f"import-{job.id[:8]}", daemon=True).start()
        return job

    def get(self, job_id: str) -> ImportJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def recent(self) -> list[ImportJob]:
        with self._lock:
            return list(self._jobs.values())[-20:][::-1]


def upload_path(state_dir: Path, file_name: str) -> Path:
    """Where an uploaded file is kept (its rejects file is written beside it): a new folder under
    `state_dir/uploads`, and the file's own name made safe. A name that is only dots ("..", which would name
    the folder above) or nothing is `InvalidRequest`."""
    name = Path(file_name).name
    if not name.strip("."):
        raise InvalidRequest(
            f"The file name “{file_name[:100]}” cannot be used. "
            "Rename the file (patients.csv, say) and upload it again."
        )
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[-100:]
    folder = state_dir / "uploads" / uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    return folder / safe


def _shown(message: str, path: Path | None, file_name: str) -> str:
    """`message` with the server's copy of the upload named as the person named their file."""
    return message.replace(str(path), file_name) if path is not None else message
