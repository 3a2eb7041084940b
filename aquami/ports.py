"""Free loopback ports for the services the demo and the tests start.

A port is picked *below* the kernel's ephemeral range (``net.ipv4.ip_local_port_range``), not by
binding port 0. Port 0 gives an ephemeral port, the kind every outgoing connection on the machine
takes: between the pick and the service's own bind, any client connecting anywhere (a database
link, an MQTT client, a test's probe) may take it, and the service then exits with "the port is in
use". CI met this with a Modbus TCP simulator started on such a port. Ports below the range are
never given to outgoing connections, so only another listener can take one.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LINUX_DEFAULT_RANGE = (32768, 60999)
_LOWEST_PICKED = 10000  # below it: well-known services' registered ports (5432, 8000, 1883, …)
_TRIES = 200

_pick = random.SystemRandom()  # not the random module's state: hypothesis and tests seed that one


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports, inclusive (Linux's default where
    the kernel does not say)."""
    try:
        low, high = (int(part) for part in _EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return _LINUX_DEFAULT_RANGE
    return low, high


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing is bound to now, outside the ephemeral range where one
    is free (else one the kernel gives, as before)."""
    low, high = ephemeral_port_range()
    below, above = range(_LOWEST_PICKED, low), range(high + 1, 65536)
    candidates = below if len(below) >= len(above) else above
    if candidates:
        for _ in range(_TRIES):
            port = _pick.choice(candidates)
            if _bindable(port, host):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _bindable(port: int, host: str) -> bool:
    """Whether a listener could bind ``port`` now (without ``SO_REUSEADDR``: a port whose closed
    connections still wait in TIME_WAIT is passed over, as a service that does not set it would
    fail on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True
