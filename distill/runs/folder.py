"""The run folder: where a run writes its config, metrics, summary and models.

    <logs_dir>/<experiment>/<YYYYmmdd-HHMMSS>/
        config.yaml         the fully resolved config; `distill run` it to reproduce
        summary.json        status, per-stage results, versions
        <stage>/metrics.csv one row of epoch means per epoch
        <stage>/checkpoint.npz  the state after the last finished epoch, while the stage runs
        <stage>/model.keras the trained model (the student alone for distill stages)
        .lock               held (flock) by the process writing the run

Every file except the metrics CSV is written atomically (a temporary file in
the same folder, then a rename), so a kill at any moment leaves the old or the
new file, never half of one. The CSV is appended a whole line at a time and
flushed after each epoch; a resumed run first cuts it back to the epochs its
checkpoint holds (`MetricsWriter.resume`).
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import errno
import io
import json
import os
import tempfile
from typing import Any, Callable, Iterator

import yaml

from distill.errors import RunError, RunFolderError

try:
    import fcntl
except ImportError:  # Windows: runs are not locked
    fcntl = None

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.csv"
MODEL_FILE = "model.keras"
CHECKPOINT_FILE = "checkpoint.npz"
LOCK_FILE = ".lock"


@contextlib.contextmanager
def reported_write(path: str, then: str = "") -> Iterator[None]:
    """Turn an `OSError` while writing `path` into a `RunError` a user can act on.

    Args:
        path: The file being written.
        then: What to do once the cause is fixed (e.g. how to resume).
    """
    try:
        yield
    except OSError as error:
        if error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            cause = "the disk is full. Free some space"
        elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            cause = "permission denied. Make the folder writable"
        else:
            cause = f"{error.strerror or error}. Fix the cause"
        raise RunError(f"cannot write {path}: {cause}{then}.") from None


def readable_as_umask_allows(handle: int) -> None:
    """Give a temporary file the mode a plain `open` would have (mkstemp makes it 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(handle, 0o666 & ~umask)


def atomic_write(path: str, write: Callable[[io.IOBase], None], binary: bool = False) -> None:
    """Write a file through a temporary sibling and a rename.

    Args:
        path: The final path.
        write: Writes the content to the open file it is given.
        binary: Open the temporary file in binary mode.
    """
    folder = os.path.dirname(path) or "."
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                                         suffix=".tmp")
    try:
        readable_as_umask_allows(handle)
        with os.fdopen(handle, "wb" if binary else "w", encoding=None if binary else "utf-8") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def write_json(path: str, data: Any) -> None:
    atomic_write(path, lambda out: out.write(json.dumps(data, indent=2) + "\n"))


def write_yaml(path: str, data: Any, header: str = "") -> None:
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
    atomic_write(path, lambda out: out.write(header + text))


class RunFolder:
    """One run's folder. Create it with `RunFolder.create`."""

    def __init__(self, path: str):
        self.path = path
        self._lock = None  # the open lock file while this process writes the run

    @classmethod
    def create(cls, logs_dir: str, experiment: str,
               now: datetime.datetime | None = None) -> "RunFolder":
        """Make a new, empty run folder; never reuses an existing one.

        Raises:
            RunError: if the logs folder cannot be created or written to.
        """
        now = now or datetime.datetime.now()
        parent = os.path.join(logs_dir, experiment)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as error:
            raise RunError(f"cannot create the logs folder {parent!r}: {error.strerror}. "
                           "Set experiment.logs_dir to a folder you can write to.") from None
        stamp = now.strftime("%Y%m%d-%H%M%S")
        for attempt in range(1000):
            path = os.path.join(parent, stamp if attempt == 0 else f"{stamp}-{attempt + 1}")
            try:
                os.mkdir(path)  # atomic: fails if another run took the name
                return cls(path)
            except FileExistsError:
                continue
            except OSError as error:
                raise RunError(f"cannot create the run folder {path!r}: {error.strerror}. "
                               "Set experiment.logs_dir to a folder you can write to.") from None
        raise RunError(f"{parent!r} already holds 1000 runs started at {stamp}.")

    @classmethod
    def open(cls, path: str) -> "RunFolder":
        """An existing run folder (one with a summary.json and a config.yaml).

        Raises:
            RunFolderError: if `path` is missing or is not a run folder.
        """
        if not os.path.isdir(path):
            raise RunFolderError(f"{path}: no such run folder.")
        missing = [name for name in (SUMMARY_FILE, CONFIG_FILE)
                   if not os.path.isfile(os.path.join(path, name))]
        if missing:
            raise RunFolderError(f"{path}: not a run folder (it has no {' and no '.join(missing)})."
                                 " A run folder is what `distill run` prints last, e.g. "
                                 "logs/<experiment>/<timestamp>.")
        return cls(path)

    def lock(self) -> None:
        """Mark the run as being written by this process, until `unlock` or exit.

        The kernel drops the lock when the process dies, however it dies, so a
        run whose lock is free is not running.

        Raises:
            RunFolderError: if another process holds it.
        """
        handle = open(self.file(LOCK_FILE), "a+", encoding="utf-8")  # noqa: SIM115 - held open
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                owner = handle.read().strip() or "another process"
                handle.close()
                raise RunFolderError(f"{self.path}: the run is still running ({owner}).") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}\n")  # only for the message above
            handle.flush()
        except OSError:
            pass  # e.g. a full disk: the lock holds without it
        self._lock = handle

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing releases the flock
            self._lock = None

    def is_locked(self) -> bool:
        """Whether some process holds the run's lock (is writing the run now)."""
        if fcntl is None or not os.path.exists(self.file(LOCK_FILE)):
            return False
        with open(self.file(LOCK_FILE), encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    def read_summary(self) -> dict:
        """The run's summary.json.

        Raises:
            RunFolderError: if it cannot be read or parsed.
        """
        path = self.file(SUMMARY_FILE)
        try:
            with open(path, encoding="utf-8") as handle:
                summary = json.load(handle)
        except (OSError, ValueError) as error:
            raise RunFolderError(f"{path}: cannot read it ({error}).") from None
        if not isinstance(summary, dict) or "stages" not in summary:
            raise RunFolderError(f"{path}: not a distill run summary.")
        return summary

    def stage_dir(self, stage: str) -> str:
        path = os.path.join(self.path, stage)
        os.makedirs(path, exist_ok=True)
        return path

    def file(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)


class MetricsWriter:
    """Appends one CSV row per epoch to `<stage>/metrics.csv`, flushed each time.

    The columns are those of the first row; a later row with a column the
    header lacks is an error in distill, not silently dropped.
    """

    def __init__(self, path: str):
        self.path = path
        self.columns: list[str] | None = None

    def resume(self, epochs: int) -> list[dict]:
        """Keep the rows of epochs 1..`epochs` (complete lines only) and append after them.

        A killed run may have written a row after its last checkpoint, or half
        a row; those epochs are trained again, so their rows go.

        Returns:
            The rows kept, numbers as numbers.
        """
        if epochs == 0 or not os.path.exists(self.path):
            if os.path.exists(self.path):
                os.unlink(self.path)
            return []
        with open(self.path, encoding="utf-8") as handle:
            lines = handle.readlines()
        header, kept = lines[0], []
        for line in lines[1:]:
            if not line.endswith("\n") or len(kept) == epochs:
                break
            kept.append(line)
        atomic_write(self.path, lambda out: out.writelines([header] + kept))
        self.columns = next(csv.reader([header]))
        rows = read_metrics(self.path)
        if [row.get("epoch") for row in rows] != list(range(1, epochs + 1)):
            raise RunError(f"{self.path}: expected one row for each of epochs 1 to {epochs}, "
                           f"found epochs {[row.get('epoch') for row in rows]}.")
        return rows

    def append(self, row: dict) -> None:
        new = self.columns is None
        if new:
            self.columns = list(row)
        extra = set(row) - set(self.columns)
        if extra:
            raise ValueError(f"metrics row has columns {sorted(extra)} missing from {self.path}")
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow({key: _csv_value(row.get(key)) for key in self.columns})
        with open(self.path, "a" if not new else "w", encoding="utf-8") as out:
            out.write(buffer.getvalue())
            out.flush()
            os.fsync(out.fileno())


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float
    return "" if value is None else value


def read_metrics(path: str) -> list[dict]:
    """Read a metrics CSV back, numbers as numbers; a half-written last line is left out."""
    with open(path, encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle)
                if None not in row and None not in row.values()]
    return [{key: _number(value) for key, value in row.items()} for row in rows]


def _number(text: str) -> Any:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text
