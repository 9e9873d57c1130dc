"""GET /unity.gif, the browser pixel: the event rides in the query string (the key in `x`), and
the answer is always the same 1x1 transparent GIF, uncached, whatever became of the event."""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from conftest import Account, Server, basic, create_account, query
from support import BLANK, HISTORY_URL, NOT_VALID, canonical, utc_day

PIXEL_URL = "/unity.gif"
CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)


# --- a GIF decoder small enough to read: enough to tell a real 1x1 transparent GIF ---------


def lzw_decode(data: bytes, min_code_size: int) -> list[int]:
    """The colour indices of a GIF image's LZW data (variable-width codes, LSB first)."""
    clear, end = 1 << min_code_size, (1 << min_code_size) + 1
    size = min_code_size + 1
    table: list[list[int]] = [[i] for i in range(clear)] + [[], []]
    out: list[int] = []
    previous: list[int] | None = None
    bits = int.from_bytes(data, "little")
    position, total = 0, len(data) * 8
    while position + size <= total:
        code = (bits >> position) & ((1 << size) - 1)
        position += size
        if code == clear:
            table = table[: clear + 2]
            size, previous = min_code_size + 1, None
            continue
        if code == end:
            return out
        if code < len(table):
            entry = table[code]
            if previous is not None:
                table.append([*previous, entry[0]])
        else:
            assert previous is not None and code == len(table), "corrupt LZW stream"
            entry = [*previous, previous[0]]
            table.append(entry)
        out.extend(entry)
        previous = entry
        if len(table) == 1 << size and size < 12:
            size += 1
    raise AssertionError("LZW data has no end code")


def decode_gif(data: bytes) -> dict[str, Any]:
    """Width, height, pixel indices and transparent index of a one-image GIF; asserts the
    structure (header, blocks, trailer) on the way."""
    assert data[:6] in (b"GIF87a", b"GIF89a"), data[:6]
    width = int.from_bytes(data[6:8], "little")
    height = int.from_bytes(data[8:10], "little")
    flags = data[10]
    pos = 13
    if flags & 0x80:
        pos += 3 * (2 << (flags & 0x07))
    transparent: int | None = None
    image: dict[str, Any] | None = None
    while True:
        block = data[pos]
        if block == 0x3B:  # trailer
            assert pos == len(data) - 1, "bytes after the GIF trailer"
            break
        if block == 0x21:  # extension
            label = data[pos + 1]
            pos += 2
            if label == 0xF9:  # graphic control
                assert data[pos] == 4
                if data[pos + 1] & 0x01:
                    transparent = data[pos + 4]
            while data[pos]:
                pos += data[pos] + 1
            pos += 1
        elif block == 0x2C:  # image descriptor
            left, top, w, h = (
                int.from_bytes(data[pos + i : pos + i + 2], "little") for i in (1, 3, 5, 7)
            )
            local = data[pos + 9]
            pos += 10
            if local & 0x80:
                pos += 3 * (2 << (local & 0x07))
            min_code_size = data[pos]
            pos += 1
            chunks = []
            while data[pos]:
                chunks.append(data[pos + 1 : pos + 1 + data[pos]])
                pos += data[pos] + 1
            pos += 1
            image = {
                "box": (left, top, w, h),
                "pixels": lzw_decode(b"".join(chunks), min_code_size),
            }
        else:
            raise AssertionError(f"unknown GIF block {block:#x} at {pos}")
    assert image is not None, "GIF without an image"
    return {"size": (width, height), "transparent": transparent, **image}


def assert_pixel(response: httpx.Response, *, head: bool = False) -> None:
    """The one answer of the pixel: 200, a 1x1 transparent GIF, never cached."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/gif"
    cache_control = {p.strip().lower() for p in response.headers["cache-control"].split(",")}
    assert {"no-cache", "no-store"} <= cache_control
    assert response.headers["pragma"].lower() == "no-cache"
    assert "expires" in response.headers
    if head:
        assert response.content == b""
        return
    gif = decode_gif(response.content)
    assert gif["size"] == (1, 1)
    assert gif["box"] == (0, 0, 1, 1)
    assert gif["transparent"] is not None
    assert gif["pixels"] == [gif["transparent"]]
    assert response.headers["content-length"] == str(len(response.content))


def test_the_gif_decoder_reads_a_known_gif():
    # A 2x1 GIF87a, two colours, no transparency: pixels [1, 0] (made by hand: clear, 1, 0,
    # end in 3-bit codes).
    lzw = (4 | 1 << 3 | 0 << 6 | 5 << 9).to_bytes(2, "little")
    gif = (
        b"GIF87a\x02\x00\x01\x00\x80\x00\x00"
        + b"\x00\x00\x00\xff\xff\xff"
        + b",\x00\x00\x00\x00\x02\x00\x01\x00\x00\x02\x02"
        + lzw
        + b"\x00;"
    )
    decoded = decode_gif(gif)
    assert decoded == {
        "size": (2, 1),
        "transparent": None,
        "box": (0, 0, 2, 1),
        "pixels": [1, 0],
    }


# --- helpers ---------------------------------------------------------------------------------


def pixel(client: httpx.Client, query: str, **kwargs: Any) -> httpx.Response:
    """GET /unity.gif with this query string as it is (httpx only escapes what a browser
    would); expects the GIF answer."""
    response = client.get(f"{PIXEL_URL}?{query}" if query else PIXEL_URL, **kwargs)
    assert_pixel(response)
    return response


def raw_get(server: Server, target: bytes, headers: dict[str, str] | None = None) -> bytes:
    """One GET with the request target sent byte for byte (no client-side escaping)."""
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [f"{k}: {v}".encode() for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def text(value: Any) -> str:
    """A stored column as text: SQLite hands over bytes, PostgreSQL text."""
    return bytes(value).decode() if isinstance(value, bytes | memoryview) else str(value)


def only_body(account: Account) -> dict[str, Any]:
    _, body = account.only_event()
    return body


def without_uuid(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "event_uuid"}


def errors_of(account: Account) -> list[tuple[str, dict[str, Any]]]:
    return [(r["error_type"], json.loads(r["errors"])) for r in account.error_log()]


def today_errors(account: Account) -> dict[str, int]:
    return {t: n for (_day, t), n in account.error_daily().items()}


@pytest.fixture(scope="module")
def shared(account_supply) -> Account:
    """One account for the tests that only look at the answer (accounts take a CLI run)."""
    return account_supply.take()


# --- the answer ----------------------------------------------------------------------------


def test_a_valid_event_gets_the_gif_and_is_stored(client, account):
    pixel(client, f"x={account.event_key}&e=view&k=ck-1")
    body = only_body(account)
    assert (body["event"], body["cookie"]) == ("view", "ck-1")
    assert account.error_log() == []


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("", id="no-query"),
        pytest.param("e=view&k=ck-1", id="no-key"),
        pytest.param("x=&e=view&k=ck-1", id="empty-key"),
        pytest.param("x=0123456789abcdef0123456789abcdef01234567&e=view&k=ck-1", id="unknown-key"),
        pytest.param("x={user_key}&e=view&k=ck-1", id="user-key"),
        pytest.param("x={key}&e=a.b&k=ck-1", id="rejected-event"),
        pytest.param("x={key}&e=view", id="no-identifier"),
        pytest.param("x={key}&e=view&k=ck-1&price_json=%7Bnot-json", id="bad-json"),
        pytest.param("x={key}&e=view&k=ck-1&t=yesterday", id="bad-timestamp"),
        pytest.param("x={key}&x={key}&&&=&e&k", id="odd-query"),
        pytest.param("x={key}&e=view&k=ck-1&%ZZ=%", id="bad-escapes"),
    ],
)
def test_every_request_gets_the_gif(client, shared, query):
    pixel(client, query.format(key=shared.event_key, user_key=shared.user_key))


def test_a_user_key_in_x_sends_too(client, account):
    # README: the user key may send and read, so it opens the pixel as it opens POST.
    pixel(client, f"x={account.user_key}&e=view&k=ck-1")
    assert only_body(account)["cookie"] == "ck-1"


def test_an_unknown_key_stores_nothing_anywhere(client, server):
    marker = "ck-unknown-key-" + uuid.uuid4().hex
    pixel(client, f"x=0123456789abcdef0123456789abcdef01234567&e=view&k={marker}")
    rows = query(server.db_path, "SELECT body FROM events WHERE body LIKE ?", [f"%{marker}%"])
    assert rows == []


def test_head_gets_the_gif_headers(client, shared):
    response = client.head(f"{PIXEL_URL}?x={shared.event_key}&e=view&k=ck-1")
    assert_pixel(response, head=True)
    unknown = client.head(PIXEL_URL)
    assert_pixel(unknown, head=True)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(client, shared, method):
    cookie = "ck-" + uuid.uuid4().hex
    response = client.request(
        method, f"{PIXEL_URL}?x={shared.event_key}&e=view&k={cookie}", content=b"e=view"
    )
    assert response.status_code == 405
    assert response.json() == {"message": "Method not allowed"}
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "HEAD"}
    assert not any(cookie in text(r["body"]) for r in shared.events())


def test_each_answer_is_the_same_gif(client, shared):
    first = pixel(client, f"x={shared.event_key}&e=view&k=ck-1")
    second = pixel(client, "e=a.b")
    assert first.content == second.content


# --- the mapping ---------------------------------------------------------------------------


def test_short_names_map_to_fields(client, account):
    pixel(
        client,
        f"x={account.event_key}&e=view&k=ck-42&u=https%3A%2F%2Fshop.example%2Fp%2F1"
        "&r=https%3A%2F%2Fsearch.example%2F%3Fq%3Dshoes&t=1700000000&z=8237461923",
        headers={"User-Agent": CHROME_UA},
    )
    row, body = account.only_event()
    assert without_uuid(body) == {
        "event": "view",
        "cookie": "ck-42",
        "url": "https://shop.example/p/1",
        "referrer": "https://search.example/?q=shoes",
        "timestamp": "2023-11-14T22:13:20Z",
        "user_agent": CHROME_UA,
        "ip": "127.0.0.1",
    }
    assert row["timestamp_ms"] == 1_700_000_000_000
    assert row["event"] == "view"
    # Neither the key nor the cache-buster is kept.
    assert "x" not in body and "z" not in body
    assert account.event_key not in text(row["body"])


@pytest.mark.parametrize(
    ("t", "timestamp", "ms"),
    [
        ("1700000000", "2023-11-14T22:13:20Z", 1_700_000_000_000),
        ("1700000000.25", "2023-11-14T22:13:20.250Z", 1_700_000_000_250),
        ("0", "1970-01-01T00:00:00Z", 0),
        ("2024-05-01T10:00:00%2B02:00", "2024-05-01T08:00:00Z", 1_714_550_400_000),
    ],
)
def test_t_is_unix_seconds_normalised(client, account, t, timestamp, ms):
    pixel(client, f"x={account.event_key}&e=view&k=ck-1&t={t}")
    row, body = account.only_event()
    assert body["timestamp"] == timestamp
    assert row["timestamp_ms"] == ms


def test_no_t_means_received_time(client, account):
    pixel(client, f"x={account.event_key}&e=view&k=ck-1&z=1")
    row, body = account.only_event()
    assert row["timestamp_ms"] == row["received_ms"]
    assert body["timestamp"].endswith("Z")


def test_parameters_in_any_order(client, account):
    params = [
        ("x", account.event_key),
        ("e", "add_to_cart"),
        ("k", "ck-order"),
        ("u", "https://shop.example/"),
        ("t", "1700000000"),
        ("z", "123"),
        ("product_id", "p1"),
        ("qty_json", "2"),
    ]
    orders = [params, params[::-1], params[3:] + params[:3], params[1:] + params[:1]]
    for order in orders:
        pixel(client, "&".join(f"{k}={quote(v, safe='')}" for k, v in order))
    bodies = [json.loads(r["body"]) for r in account.events()]
    assert len(bodies) == len(orders)
    expected = {
        "event": "add_to_cart",
        "cookie": "ck-order",
        "url": "https://shop.example/",
        "timestamp": "2023-11-14T22:13:20Z",
        "product_id": "p1",
        "qty": 2,
        "ip": "127.0.0.1",
    }
    for body in bodies:
        body.pop("user_agent", None)
        assert without_uuid(body) == expected


def test_event_after_other_parameters_and_loosely_encoded(client, account):
    pixel(client, f"k=ck-1&x={account.event_key}&title=Hello+World&e=add%5Fto%5Fcart")
    pixel(client, f"k=ck-2&x={account.event_key}&note=a%20b%2Bc&e=add_to_cart")
    first, second = (json.loads(r["body"]) for r in account.events())
    assert (first["event"], first["title"]) == ("add_to_cart", "Hello World")
    assert (second["event"], second["note"]) == ("add_to_cart", "a b+c")


def test_unencoded_characters_arrive_as_sent(server, account):
    # What a hand-written <img src> may carry: ':', '/', '?' and more, not escaped.
    target = (
        f"/unity.gif?x={account.event_key}&k=ck-raw&u=https://shop.example/p?id=1"
        '&title=a|b"c<d>{}^`&e=view'
    ).encode()
    answer = raw_get(server, target, {"User-Agent": CHROME_UA})
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert b"content-type: image/gif" in head.lower()
    assert decode_gif(payload)["size"] == (1, 1)
    body = only_body(account)
    assert body["event"] == "view"
    assert body["url"] == "https://shop.example/p?id=1"
    assert body["title"] == 'a|b"c<d>{}^`'


def test_non_ascii_values(client, account):
    pixel(client, f"x={account.event_key}&e=view&k=ck-1&title=caf%C3%A9+%E2%9C%93")
    assert only_body(account)["title"] == "café ✓"


def test_name_json_carries_the_json_value(client, account):
    values: dict[str, Any] = {
        "product": {"id": "p1", "price": 49.9900016784668, "tags": ["a", "b"]},
        "price": 9.99,
        "qty": 3,
        "tags": ["a", 1, None, {"k": True}],
        "in_stock": True,
        "gift": False,
        "label": "quoted string",
    }
    query = "&".join(
        f"{name}_json={quote(json.dumps(value), safe='')}" for name, value in values.items()
    )
    pixel(client, f"x={account.event_key}&e=view&k=ck-1&{query}&plain=9.99")
    body = only_body(account)
    for name, value in values.items():
        assert canonical(body[name]) == canonical(value), name
        assert f"{name}_json" not in body
    assert body["plain"] == "9.99"


def test_other_parameters_are_string_attributes(client, account):
    pixel(client, f"x={account.event_key}&e=view&k=ck-1&qty=3&flag=true&empty=&n=null")
    body = only_body(account)
    assert (body["qty"], body["flag"], body["empty"], body["n"]) == ("3", "true", "", "null")


def test_identifiers_through_the_pixel(client, account):
    pixel(client, f"x={account.event_key}&e=identify&k=ck-9&email=Ann%40Example.com")
    body = only_body(account)
    assert body["cookie"] == "ck-9"
    response = client.get(
        "/api/v1/customers", params={"cookie": "ck-9"}, headers=basic(account.user_key)
    )
    assert response.status_code == 200, response.text
    assert response.json()["customer"]["email"] == "ann@example.com"


def test_read_back_through_the_history_api(client, account):
    pixel(
        client,
        f"x={account.event_key}&e=add_to_cart&k=ck-h&price_json=9.99&t=1700000000",
        headers={"User-Agent": CHROME_UA, "Referer": "https://shop.example/cart"},
    )
    response = client.get(
        HISTORY_URL, params={"event_name": "add_to_cart"}, headers=basic(account.user_key)
    )
    assert response.status_code == 200, response.text
    (event,) = response.json()["add_to_cart"]
    assert event["price"] == 9.99 and isinstance(event["price"], float)
    assert event["cookie"] == "ck-h"
    assert event["user_agent"] == CHROME_UA
    assert event["referrer"] == "https://shop.example/cart"
    assert event["timestamp"] == "2023-11-14T22:13:20Z"
    assert "z" not in event and "x" not in event


# --- the request's own user agent, IP and referrer -----------------------------------------


def test_request_fills_user_agent_ip_and_referrer(client, account):
    pixel(
        client,
        f"x={account.event_key}&e=view&k=ck-1",
        headers={"User-Agent": CHROME_UA, "Referer": "https://shop.example/p/1"},
    )
    body = only_body(account)
    assert body["user_agent"] == CHROME_UA
    assert body["ip"] == "127.0.0.1"
    assert body["referrer"] == "https://shop.example/p/1"


def test_the_query_wins_over_the_request(client, account):
    pixel(
        client,
        f"x={account.event_key}&e=view&k=ck-1&user_agent=Agent%2F1.0&ip=203.0.113.7"
        "&r=https%3A%2F%2Ffrom-query.example%2F",
        headers={"User-Agent": CHROME_UA, "Referer": "https://from-header.example/"},
    )
    body = only_body(account)
    assert body["user_agent"] == "Agent/1.0"
    assert body["ip"] == "203.0.113.7"
    assert body["referrer"] == "https://from-query.example/"


def test_an_empty_r_means_no_referrer(client, account):
    # trackway.js sends `r=` when the page had no referrer; the Referer of the pixel request is
    # then the page itself, which is not the page's referrer.
    pixel(
        client,
        f"x={account.event_key}&e=view&k=ck-1&r=",
        headers={"Referer": "https://shop.example/p/1"},
    )
    assert only_body(account).get("referrer") in (None, "")


def test_nothing_filled_when_the_request_lacks_it(server, account):
    answer = raw_get(server, f"/unity.gif?x={account.event_key}&e=view&k=ck-1".encode())
    assert answer.startswith(b"HTTP/1.1 200 ")
    body = only_body(account)
    assert "user_agent" not in body and "referrer" not in body
    assert body["ip"] == "127.0.0.1"


# --- rejections are logged and counted -----------------------------------------------------


@pytest.mark.parametrize(
    ("query", "error_type", "field", "message"),
    [
        ("e=a.b&k=ck-1", "invalid_event_attributes", "event", NOT_VALID),
        ("k=ck-1", "event_name_missing", "event", BLANK),
        ("e=view", "missing_identifier", "base", None),
        ("e=view&email=not-an-email", "invalid_email", "email", NOT_VALID),
        ("e=view&k=ck-1&price_json=%7Bnot-json", "parsing_error", "price_json", None),
        ("e=view&k=ck-1&t=yesterday", "invalid_event_attributes", "timestamp", None),
    ],
)
def test_rejections_are_logged_and_counted(client, account, query, error_type, field, message):
    pixel(client, f"x={account.event_key}&{query}")
    pixel(client, f"{query}&x={account.event_key}&z=2")
    assert account.events() == []
    logged = errors_of(account)
    assert [t for t, _ in logged] == [error_type, error_type]
    for _, errors in logged:
        assert field in errors
        if message is not None:
            assert errors[field] == message
    assert today_errors(account) == {error_type: 2}
    (day,) = {d for d, _ in account.error_daily()}
    assert day == utc_day(account.error_log()[0]["received_ms"])
    # The raw request kept for the log is the query string.
    raw = text(account.error_log()[0]["raw"])
    assert query.split("&")[0] in raw


def test_a_rejection_does_not_stop_the_next_event(client, account):
    pixel(client, f"x={account.event_key}&e=a.b&k=ck-1")
    pixel(client, f"x={account.event_key}&e=view&k=ck-1")
    assert only_body(account)["event"] == "view"
    assert today_errors(account) == {"invalid_event_attributes": 1}


# --- X-Forwarded-For only from a configured proxy ------------------------------------------


def test_x_forwarded_for_is_ignored_by_default(client, account):
    pixel(
        client, f"x={account.event_key}&e=view&k=ck-1", headers={"X-Forwarded-For": "198.51.100.9"}
    )
    assert only_body(account)["ip"] == "127.0.0.1"


@pytest.fixture(scope="module")
def proxied_server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("proxied")
    srv = Server(directory / "trackway.db", directory / "server.log",
                 "--forwarded-allow-ips", "127.0.0.1")  # fmt: skip
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(proxied_server):
    account = create_account(proxied_server.db_path)
    with httpx.Client(base_url=proxied_server.url) as proxied:
        pixel(proxied, f"x={account.event_key}&e=view&k=ck-1",
              headers={"X-Forwarded-For": "198.51.100.9"})  # fmt: skip
    assert only_body(account)["ip"] == "198.51.100.9"
