"""A cap on request bodies, checked before any route reads one.

Starlette reads a whole body into memory before a route's dependencies run, so the API key was
checked only after it: a 300 MB POST with no key raised the server's memory from 78 MB to 665 MB
before its 401. This middleware answers 413 as soon as a declared ``Content-Length`` is over the
cap, and counts the bytes of a body of unknown length (chunked) as they arrive, refusing at the cap.
It does so for every request, whatever its method: a GET or a DELETE may carry a body too, and the
OpenAPI document declares the 413 on every operation (server.problem_docs).
"""

from __future__ import annotations

import json
from http import HTTPStatus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.problems import PROBLEM_JSON

#: The largest request body accepted. The biggest the API takes is a reading's correction or
#: supply (a volume, a time and a reason of at most 500 characters) or an alert's dismissal: some
#: 6 KB even with every character of the reason written as a JSON surrogate-pair escape
#: (``\\ud83d\\ude00``, 12 bytes). The sign-in form is a key of some 60 characters. Meters are
#: registered from a file by ``aquami server register-meters``, not over HTTP. 64 KiB leaves ten
#: times that margin.
MAX_BODY_BYTES = 64 * 1024


class BodyLimit:
    """Pure ASGI (no ``BaseHTTPMiddleware``): a refused body is never read, nor a response buffered."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None:  # the HTTP server holds the body to its declared length
            if declared > self.max_bytes:
                await self._refuse(scope, send, f"the request body ({declared} bytes) is over")
            else:
                await self.app(scope, receive, send)
            return
        # a body of unknown length: read it here, up to the cap, and hand it on whole
        chunks: list[bytes] = []
        size = 0
        first: Message | None = None
        while first is None:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: the app hears so
                first = message
                break
            body: bytes = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._refuse(scope, send, "the request body is over")
                return
            chunks.append(body)
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay(first, receive), send)

    async def _refuse(self, scope: Scope, send: Send, what: str) -> None:
        status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
        problem = {
            "type": "about:blank",
            "title": status.phrase,
            "status": int(status),
            "detail": f"{what} the limit of {self.max_bytes} bytes",
            "instance": scope.get("path", ""),
        }
        content = json.dumps(problem, ensure_ascii=False, separators=(",", ":")).encode()  # as JSONResponse writes it
        headers = [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(content)).encode()),
            (b"connection", b"close"),  # the rest of the body is not read: the connection cannot serve another
        ]
        await send({"type": "http.response.start", "status": int(status), "headers": headers})
        await send({"type": "http.response.body", "body": content})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:  # (the HTTP server refuses such a request before it gets here)
                return None
    return None


def _replay(first: Message, receive: Receive) -> Receive:
    """``receive`` giving ``first``, then what the client sends next (a disconnect)."""
    pending = [first]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
