"""How `trackway serve` runs the writer process of a SQLite database: starts it before the API
workers, restarts it whenever it dies, stops it after them; and how other commands find it.

The socket lives in a private temporary directory (a Unix socket path must stay short). Serve
publishes it in DATABASE-writer (beside DATABASE-wal), on which it holds an exclusive flock
while it runs: a command that finds the file locked sends its events through that socket; a
file nobody locks is what a killed server left, and is ignored.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger("trackway.writer")

# Socket of the writer for the API workers of this `serve` (set in their environment).
SOCKET_ENV = "TRACKWAY_WRITER_SOCKET"
# A writer that dies sooner than this after its start counts as failing to start: the next
# start waits longer (up to MAX_BACKOFF_SECONDS) instead of spinning.
HEALTHY_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 5.0
# After a clean exit (0: it was asked to stop) serve waits this long for its own shutdown
# before it takes the exit for a fault and starts a new writer.
CLEAN_EXIT_GRACE_SECONDS = 3.0
STOP_SECONDS = 40.0


def rendezvous_path(database: Path) -> Path:
    return Path(f"{database}-writer")


def running_writer(database: Path) -> str | None:
    """The socket of the writer of a `trackway serve` running on this database, or None."""
    try:
        fd = os.open(rendezvous_path(database), os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.read(fd, 4096).decode(errors="replace").strip() or None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class WriterSupervisor:
    def __init__(self, database_url: str, database: Path, log_level: str, log_format: str) -> None:
        self.database_url = database_url
        self.database = database
        self.log_level = log_level
        self.log_format = log_format
        self.directory = tempfile.mkdtemp(prefix="trackway-writer-")
        self.socket_path = os.path.join(self.directory, "writer.sock")
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="trackway-writer-watch")
        self._rendezvous: int | None = None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "trackway",
            "writer",
            "--database",
            self.database_url,
            "--socket",
            self.socket_path,
            "--log-level",
            self.log_level,
            "--log-format",
            self.log_format,
        ]

    def start(self) -> None:
        self._spawn()
        self._publish()
        self._thread.daemon = True
        self._thread.start()

    def _spawn(self) -> None:
        # stdin: a pipe whose end tells the writer that serve is gone (even after a kill -9).
        self.process = subprocess.Popen(self.command(), stdin=subprocess.PIPE)
        self.started = time.monotonic()

    def _publish(self) -> None:
        path = rendezvous_path(self.database)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.warning("cannot publish the writer socket in %s: %s", path, exc)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            log.warning(
                "another `trackway serve` runs on %s: commands send their events through its "
                "writer, this one's API workers through their own",
                self.database,
            )
            return
        os.ftruncate(fd, 0)
        os.write(fd, self.socket_path.encode() + b"\n")
        self._rendezvous = fd

    def _watch(self) -> None:
        backoff = 0.1
        while True:
            process = self.process
            assert process is not None
            code = process.wait()
            _close_pipe(process)  # not to leak one per restart
            if self._stopping.is_set():
                return
            if code == 0 and self._stopping.wait(CLEAN_EXIT_GRACE_SECONDS):
                return
            lived = time.monotonic() - self.started
            backoff = 0.1 if lived >= HEALTHY_SECONDS else min(backoff * 2, MAX_BACKOFF_SECONDS)
            log.error(
                "the SQLite writer process %d %s after %.1f s; starting a new one in %.1f s",
                process.pid,
                _describe(code),
                lived,
                backoff,
            )
            if self._stopping.wait(backoff):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self._spawn()
                self.restarts += 1
                pid = self.process.pid if self.process is not None else 0
            log.warning("started SQLite writer process %d", pid)

    def stop(self) -> None:
        """After the API workers: let the writer commit and answer what it has, then exit. The
        end of its stdin is what tells it the workers are done (a SIGTERM alone does not: the
        process group's reaches it while they still drain)."""
        self._stopping.set()
        with self._lock:
            process = self.process
        if process is not None:
            _close_pipe(process)
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                log.error("the SQLite writer process %d did not stop: killed", process.pid)
                process.kill()
                process.wait()
        if self._rendezvous is not None:
            with contextlib.suppress(OSError):
                rendezvous_path(self.database).unlink()
            os.close(self._rendezvous)
            self._rendezvous = None
        shutil.rmtree(self.directory, ignore_errors=True)


def _close_pipe(process: subprocess.Popen[bytes]) -> None:
    """Close serve's end of the writer's stdin: the writer takes its end as serve being done."""
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"
