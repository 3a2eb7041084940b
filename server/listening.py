"""The server's listening socket, bound before anything else at start-up.

uvicorn binds its port only once the app has started: a port already in use (another aquami
server, a forgotten test run) was found after the database had been asked (up to 2 s), and said in
uvicorn's words, ``ERROR: [Errno 98] error while attempting to bind on address ('127.0.0.1', 8000):
address already in use``, beside its "Waiting for application startup" lines, exit 3, where every
other refusal of ``aquami server run`` is one line, exit 1. Bound here first, it is said at once, in
one line, and uvicorn serves on this socket.
"""

from __future__ import annotations

import logging
import socket

import uvicorn


def bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` as uvicorn binds one (IPv6 when the host has a ``:``,
    ``SO_REUSEADDR`` so a restart does not wait out TIME_WAIT); OSError if it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def why_not(error: OSError) -> str:
    """Why the port could not be bound, in words an operator acts on."""
    if error.errno == 98:  # EADDRINUSE
        return "the port is in use (another server or program listens there: give --port or AQUAMI_PORT)"
    if error.errno == 99:  # EADDRNOTAVAIL
        return "no interface of this machine has that address (give --host or AQUAMI_HOST)"
    if error.errno == 13:  # EACCES
        return "a port below 1024 needs privileges this user does not have (give a port from 1024)"
    return error.strerror or str(error)


class ServedOnBoundSocket(uvicorn.Server):
    """uvicorn's server on the socket :func:`bound_socket` bound. Given sockets, uvicorn logs no
    "Uvicorn running on …" line (it takes them for a process manager's, which said it); this one says
    it as uvicorn says it when it binds the port itself: operators and probes read that line."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and sockets:
            host, port = sockets[0].getsockname()[:2]
            where = f"[{host}]" if ":" in host else host
            logging.getLogger("uvicorn.error").info(
                "Uvicorn running on http://%s:%d (Press CTRL+C to quit)", where, port
            )
