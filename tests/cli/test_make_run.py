"""README's `make run`: the account `default` is created on the first start with its keys shown,
the server comes up, and only then the clickstream page's URL and a curl line are printed; that
curl line, pasted into a shell, stores an event. Ctrl-C stops it all."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
from conftest import free_port, query, sqlite_url

ROOT = Path(__file__).resolve().parents[2]
UP_SECONDS = 60.0


class MakeRun:
    def __init__(self, port: int, db: Path) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("TRACKWAY_") and k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")
        }
        env.update(TRACKWAY_PORT=str(port), TRACKWAY_DATABASE_URL=sqlite_url(db))
        self.process = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def until(self, pattern: str) -> str:
        deadline = time.monotonic() + UP_SECONDS
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.process.poll() is None, "\n".join(self.seen)
                continue
            self.seen.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(self.seen))

    def interrupt(self) -> int:
        os.killpg(self.process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise


def test_make_run_says_where_to_look_once_the_server_is_up(tmp_path):
    port = free_port()
    db = tmp_path / "data" / "trackway.db"
    run = MakeRun(port, db)
    try:
        key_line = run.until(r"event API key: ")
        event_key = key_line.split("event API key:")[1].split()[0]
        page_line = run.until(r"Clickstream page: ")
        # Said once the server answers: the page is there (asking for the user key).
        url = re.search(r"(http://\S+/clickstream)", page_line).group(1)
        assert url == f"http://127.0.0.1:{port}/clickstream"
        assert httpx.get(url).status_code == 401
        curl = run.until(r"Send an event: ").split("Send an event:", 1)[1].strip()
        assert curl.startswith(f"curl -u {event_key}: http://127.0.0.1:{port}/api/v1/event")
        pasted = subprocess.run(["sh", "-c", curl], capture_output=True, text=True, timeout=30)
        assert pasted.returncode == 0, pasted.stderr
        assert pasted.stdout.strip() == '{"status":"OK"}'
        assert [r["event"] for r in query(db, "SELECT event FROM events")] == ["view"]
        # The server's own lines come before the announcement, not after it.
        assert any("Uvicorn running" in line for line in run.seen)
    finally:
        run.interrupt()
    # make ends on the signal as it does on Ctrl-C; the server is gone with it.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        except httpx.TransportError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the server still answers after Ctrl-C")

    # Next time the account exists: no keys, and the curl line says where the key is.
    run = MakeRun(port, db)
    try:
        curl = run.until(r"Send an event: ")
        assert "$EVENT_KEY:" in curl
        hint = run.until(r"EVENT_KEY: ")
        assert "trackway keys rotate default --kind event" in hint
        assert not any("event API key:" in line for line in run.seen)
    finally:
        run.interrupt()
