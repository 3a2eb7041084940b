"""The rig's fault endpoint: a small JSON-over-HTTP server on loopback, for the technician and tests.

- ``GET /meters``: one row per meter (what the live table shows).
- ``GET /faults``: the faults in force, each with its ``id``.
- ``POST /faults`` with ``{"meter": "M000001", "fault": "no_reply", ...options}``: inject (201, the
  fault with its id). Options as in :mod:`simulators.rig.faults` (``probability``, ``delay_s``,
  ``duration_s``, ``rate_lph``, ...). A technician's work (``swap_address`` with ``with_meter``,
  ``exchange``) is answered with ``done``: what the rig did, in words.
- ``DELETE /faults/{id}``, or ``DELETE /faults?meter=M000001`` for all of a meter's: clear (200, what
  was cleared; a swap's ``done``: the two swapped back, an exchange's: the old meter back). A swap is
  both its meters'. ``DELETE /faults/{id}?meter=M000001`` clears fault ``id`` only if it is that meter's;
  a meter not on the rig, or a fault not found (on that meter), is 404. A fault its ``duration_s``
  ended (a technician's work: undone then) is answered until cleared, with its ``until`` and a
  ``note`` saying it was over by itself (:data:`~simulators.rig.running.OVER_BY_ITSELF`), across
  a restart of the rig too.

Errors are ``application/problem+json`` (RFC 9457) with a ``detail`` naming the field.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from simulators.rig.runner import Rig, UnknownMeterError

MAX_BODY_BYTES = 64 * 1024
"""A fault request is a few hundred bytes; a larger body is refused, not read."""
REQUEST_TIMEOUT_S = 5.0
"""How long the endpoint waits for a request's bytes (a body shorter than its length waited for ever)."""


def _body_length(header: str) -> int | None:
    """The body's length in bytes, or None unless the header is plain digits (no sign, no spaces)."""
    return int(header) if header.isascii() and header.isdigit() else None


def _handler(rig: Rig) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "aquami-rig"
        timeout = REQUEST_TIMEOUT_S  # a client that sends less than its Content-Length is let go

        def log_message(self, format: str, *args: Any) -> None:  # the live table owns the terminal
            pass

        def _send(self, status: HTTPStatus, body: Any, content_type: str = "application/json") -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _problem(self, status: HTTPStatus, detail: str) -> None:
            body = {"type": "about:blank", "title": status.phrase, "status": int(status), "detail": detail}
            self._send(status, body, "application/problem+json")

        def do_GET(self) -> None:
            path = urlsplit(self.path).path.rstrip("/")
            if path == "/meters":
                self._send(HTTPStatus.OK, rig.rows())
            elif path == "/faults":
                self._send(HTTPStatus.OK, [f.to_json() for f in rig.active_faults()])
            else:
                self._problem(HTTPStatus.NOT_FOUND, f"no resource {path!r} (GET /meters, GET /faults)")

        def do_POST(self) -> None:
            if urlsplit(self.path).path.rstrip("/") != "/faults":
                self._problem(HTTPStatus.NOT_FOUND, "POST /faults only")
                return
            length = _body_length(self.headers.get("Content-Length", "0"))
            if length is None:
                # A negative length would make ``read`` wait for the client to hang up.
                self._problem(HTTPStatus.BAD_REQUEST, "Content-Length: expected a whole number of bytes")
                return
            if length > MAX_BODY_BYTES:
                self._problem(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body: more than {MAX_BODY_BYTES} bytes")
                return
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except (ValueError, json.JSONDecodeError):
                self._problem(HTTPStatus.BAD_REQUEST, "body: not JSON")
                return
            if not isinstance(body, dict) or not isinstance(body.get("meter"), str):
                self._problem(HTTPStatus.BAD_REQUEST, "meter: expected a meter id (string)")
                return
            if "kind" in body:  # the fault is "fault": a "kind" beside it injected that kind instead, silently
                self._problem(HTTPStatus.BAD_REQUEST, "kind: name the fault by 'fault' alone")
                return
            options = {k: v for k, v in body.items() if k not in ("meter", "fault")}
            try:
                fault = rig.inject(body["meter"], {"kind": body.get("fault"), **options})
            except UnknownMeterError:
                self._problem(HTTPStatus.NOT_FOUND, f"meter: {body['meter']!r} is not on this rig")
            except ValueError as error:
                self._problem(HTTPStatus.BAD_REQUEST, str(error).replace("kind:", "fault:", 1))
            except OSError as error:  # in force, but not kept: say so rather than drop the connection
                self._problem(HTTPStatus.INTERNAL_SERVER_ERROR, f"the fault is in force, but {error.strerror}")
            else:
                self._send(HTTPStatus.CREATED, fault.to_json())

        def do_DELETE(self) -> None:
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            meter = parse_qs(url.query).get("meter", [None])[0]
            if meter is not None and meter not in rig.meters:
                # cleared nothing, but 200 [] told the technician it had gone well
                self._problem(HTTPStatus.NOT_FOUND, f"meter: {meter!r} is not on this rig")
                return
            try:
                if parts == ["faults"] and meter:
                    cleared = rig.clear(meter_id=meter)
                elif len(parts) == 2 and parts[0] == "faults" and parts[1].isascii() and parts[1].isdigit():
                    cleared = rig.clear(fault_id=int(parts[1]), meter_id=meter)
                    if not cleared:
                        on = "" if meter is None else f" on meter {meter!r}"
                        self._problem(HTTPStatus.NOT_FOUND, f"no fault {parts[1]}{on}")
                        return
                else:
                    self._problem(HTTPStatus.NOT_FOUND, "DELETE /faults/{id} or /faults?meter=ID")
                    return
            except OSError as error:
                self._problem(HTTPStatus.INTERNAL_SERVER_ERROR, f"cleared, but {error.strerror}")
                return
            self._send(HTTPStatus.OK, [f.to_json() for f in cleared])

    return Handler


class ControlServer:
    """The endpoint on ``host:port`` (port 0 picks one; see :attr:`url`), served from a thread."""

    def __init__(self, rig: Rig, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("the fault endpoint listens on loopback only")
        self._server = ThreadingHTTPServer((host, port), _handler(rig))
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        # serve_forever looks for a shutdown every poll_interval: its 0.5 s default was half a second of
        # every rig stop (a restart, the end of a test) spent waiting; 20 idle wake-ups a second cost nothing
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="rig-control", daemon=True
        )

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2.0)
