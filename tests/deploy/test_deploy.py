"""The deployment kit of deploy/, run for real: Debian's nginx with the shipped configuration (a
self-signed certificate made here, the ports and paths of this test put in) in front of a real
`trackway serve` started as the shipped systemd unit says. A browser's pixel through nginx is
recorded with the client's own address, whatever X-Forwarded-For the client sends; a client
that trickles its headers is cut off by nginx, and trackway never sees it. The unit itself is
checked by systemd's own verifier and its settings by Settings.

Needs nginx and openssl (scripts/test-deps installs them); skipped without, failed in CI."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import Account, Server, basic, create_account, free_port

from trackway.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx" / "trackway.conf"
UNIT = ROOT / "deploy" / "trackway.service"
CLIENT = "127.0.0.2"  # the browser: another loopback address than nginx's own
STRANGER = "127.0.0.3"  # someone who reaches trackway without nginx


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the deploy tests (scripts/test-deps)")
    pytest.skip(reason)


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        _unavailable("nginx is missing (apt-get install nginx)")
    if shutil.which("openssl") is None:
        _unavailable("openssl is missing (apt-get install openssl)")
    return str(found)


def unit_settings() -> dict[str, str]:
    """The Environment= variables of the shipped unit."""
    found = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            name, _, value = line.removeprefix("Environment=").partition("=")
            found[name] = value
    return found


def directive(text: str, name: str) -> str:
    (value,) = re.findall(rf"^\s*{name}\s+([^;]+);", text, re.MULTILINE)
    return value.strip()


def seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)s?", value)
    assert match, value
    return int(match.group(1))


def substitute(text: str, old: str, new: str, count: int = 1) -> str:
    """`old` replaced by `new`, and it must be there `count` times: a test that changes the
    shipped file only where it says."""
    assert text.count(old) == count, f"expected {count} of {old!r} in {NGINX_CONF.name}"
    return text.replace(old, new)


@dataclass
class Proxy:
    https: str
    http: str
    trackway: Server
    account: Account
    header_timeout: int
    directory: Path

    def error_log(self) -> str:
        return (self.directory / "error.log").read_text(errors="replace")


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
               "-subj", "/CN=trackway.test", "-addext", "subjectAltName=IP:127.0.0.1",
               "-keyout", str(key), "-out", str(cert)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    return cert, key


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen on {port}:\n{log.read_text()}")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    nginx = nginx_binary()
    directory = tmp_path_factory.mktemp("deploy")
    settings = unit_settings()
    # trackway as the unit runs it (its Environment=), on a port of its own.
    trackway = Server(
        directory / "trackway.db",
        directory / "trackway.log",
        "--forwarded-allow-ips",
        settings["TRACKWAY_FORWARDED_ALLOW_IPS"],
        "--workers",
        "1",
    )
    trackway.start()
    cert, key = self_signed(directory)
    https_port, http_port = free_port(), free_port()
    text = NGINX_CONF.read_text()
    text = substitute(text, f"server 127.0.0.1:{settings['TRACKWAY_PORT']};",
                      f"server 127.0.0.1:{trackway.port};")  # fmt: skip
    text = substitute(text, "listen 80;", f"listen 127.0.0.1:{http_port};")
    text = substitute(text, "listen [::]:80;\n", "")
    text = substitute(text, "listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
    text = substitute(text, "listen [::]:443 ssl http2;\n", "")
    text = substitute(text, "/etc/letsencrypt/live/trackway.example.com/fullchain.pem", str(cert))
    text = substitute(text, "/etc/letsencrypt/live/trackway.example.com/privkey.pem", str(key))
    text = substitute(text, "root /var/www/letsencrypt;", f"root {directory};")
    (directory / "trackway.conf").write_text(text)
    # What /etc/nginx/nginx.conf gives the file on a Debian host: the http block around it.
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (directory / "nginx.conf").write_text(
        f"""daemon off;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} info;
events {{ worker_connections 128; }}
http {{
    access_log {directory / "access.log"};
{temp}
    include {directory / "trackway.conf"};
}}
"""
    )
    log = directory / "error.log"
    checked = subprocess.run(
        [nginx, "-t", "-p", str(directory), "-e", str(log), "-c", str(directory / "nginx.conf")],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(
        [nginx, "-p", str(directory), "-e", str(log), "-c", str(directory / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_listening(https_port, process, log)
        yield Proxy(
            https=f"https://127.0.0.1:{https_port}",
            http=f"http://127.0.0.1:{http_port}",
            trackway=trackway,
            account=create_account(trackway.db_path),
            header_timeout=seconds(directive(NGINX_CONF.read_text(), "client_header_timeout")),
            directory=directory,
        )
    finally:
        os.killpg(process.pid, signal.SIGQUIT)  # nginx's graceful stop
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        trackway.stop()


def from_address(address: str, **kwargs: object) -> httpx.Client:
    return httpx.Client(
        transport=httpx.HTTPTransport(local_address=address, verify=False), timeout=10, **kwargs
    )


def pixel_ip(proxy: Proxy, base: str, address: str, cookie: str) -> str:
    with from_address(address) as client:
        answer = client.get(
            base + "/unity.gif",
            params={"x": proxy.account.event_key, "e": "view", "k": cookie},
            headers={"X-Forwarded-For": "6.6.6.6", "User-Agent": "Mozilla/5.0 test"},
        )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/gif"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for body in stored(proxy):
            if body.get("cookie") == cookie:
                return str(body["ip"])
        time.sleep(0.05)
    raise AssertionError(f"the pixel of {cookie} was not stored")


def stored(proxy: Proxy) -> list[dict[str, object]]:
    return [json.loads(row["body"]) for row in proxy.account.events()]


def test_the_client_address_is_recorded_and_cannot_be_forged(proxy: Proxy):
    # Through nginx: the browser's own address, not the X-Forwarded-For it sent.
    assert pixel_ip(proxy, proxy.https, CLIENT, "through-nginx") == CLIENT
    # Straight to trackway, from an address it does not trust: the header is not believed.
    assert pixel_ip(proxy, proxy.trackway.url, STRANGER, "around-nginx") == STRANGER


def test_tls_is_terminated_and_plain_http_redirected(proxy: Proxy):
    with from_address(CLIENT) as client:
        answer = client.get(proxy.https + "/healthz")
        assert (answer.status_code, answer.json()) == (200, {"status": "ok"})
        assert answer.headers["strict-transport-security"].startswith("max-age=")
        assert answer.http_version in ("HTTP/1.1", "HTTP/2")
        # The metrics are for the machine itself.
        assert client.get(proxy.https + "/metrics").status_code == 403
        assert httpx.get(proxy.trackway.url + "/metrics").status_code == 200
        redirect = client.get(proxy.http + "/clickstream?x=1")
        assert redirect.status_code == 301
        assert redirect.headers["location"] == "https://127.0.0.1/clickstream?x=1"
        # trackway's own answers pass through: its 413 for a bulk body over --max-body-bytes
        # (below nginx's own limit), its JSON errors, its request id.
        big = client.post(
            proxy.https + "/api/v1/bulkevents",
            content=b'{"events": [' + b'{"event": "view", "cookie": "k"},' * 40_000 + b"{}]}",
            headers={**basic(proxy.account.event_key), "Content-Type": "application/json"},
        )
        assert big.status_code == 413, big.text[:200]
        assert big.headers["content-type"] == "application/json"
        # The live stream of the clickstream page is passed on as it comes, not buffered.
        started = time.monotonic()
        with client.stream(
            "GET", proxy.https + "/clickstream/stream", auth=(proxy.account.user_key, "")
        ) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            for chunk in stream.iter_text():
                if "event: ready" in chunk:
                    break
        assert time.monotonic() - started < 5


def test_a_client_trickling_its_headers_is_cut_by_nginx(proxy: Proxy):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    port = int(proxy.https.rsplit(":", 1)[1])
    # A pixel request: had trackway ever got it, an event would be stored.
    request_line = f"GET /unity.gif?x={proxy.account.event_key}&e=slow_header&k=slow HTTP/1.1"
    raw = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(CLIENT, 0))
    with context.wrap_socket(raw, server_hostname="trackway.test") as conn:
        conn.sendall(request_line.encode() + b"\r\nHost: trackway.test\r\n")
        started = time.monotonic()
        closed_after = None
        # One header line a second, never the blank line that ends them: each read by nginx
        # is in time, the whole is not.
        while time.monotonic() - started < proxy.header_timeout + 10:
            try:
                conn.sendall(b"X-Slow: %d\r\n" % int(time.monotonic()))
                conn.settimeout(1.0)
                answer = conn.recv(1024)
            except TimeoutError:
                continue
            except (OSError, ssl.SSLError):
                answer = b""
            if answer == b"" or answer.startswith(b"HTTP/"):
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None, "nginx kept the connection open"
    assert proxy.header_timeout - 1 <= closed_after <= proxy.header_timeout + 3, closed_after
    assert "client timed out" in proxy.error_log()
    # trackway never saw it.
    time.sleep(0.5)
    assert [b for b in stored(proxy) if b.get("event") == "slow_header"] == []


def test_the_unit_runs_trackway_as_nginx_expects():
    settings = unit_settings()
    known = {env_name(f.name) for f in dataclasses.fields(Settings)}
    assert set(settings) <= known, set(settings) - known
    parsed = Settings.from_env(settings)
    assert parsed.host == "127.0.0.1"
    assert parsed.forwarded_allow_ips == "127.0.0.1"
    text = NGINX_CONF.read_text()
    assert f"server 127.0.0.1:{parsed.port};" in text
    # nginx lets through more than trackway takes, so trackway's own 413 answers.
    limit = directive(text, "client_max_body_size")
    assert int(limit.removesuffix("m")) * 1024 * 1024 > parsed.max_body_bytes
    (exec_start,) = [x for x in UNIT.read_text().splitlines() if x.startswith("ExecStart=")]
    assert exec_start.endswith("/bin/trackway serve")


def test_systemd_accepts_the_unit(tmp_path: Path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is missing")
    # The unit as installed, its ExecStart pointing at this checkout's trackway.
    trackway = Path(sys.executable).with_name("trackway")
    unit = tmp_path / "trackway.service"
    unit.write_text(UNIT.read_text().replace("/opt/trackway/venv/bin/trackway", str(trackway)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line for line in (result.stdout + result.stderr).splitlines() if "trackway.service" in line
    ]
    assert problems == [], problems
