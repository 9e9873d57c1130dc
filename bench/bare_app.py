"""The ceiling: a bare ASGI app that reads the body and answers {"status":"OK"}, nothing else.

Run under the same uvicorn options as `trackway serve` so that the ratio measures Trackway's
own cost per request.
"""

_BODY = b'{"status":"OK"}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"15")]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})
