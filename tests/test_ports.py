"""Ports the demo and the tests start services on are picked where no outgoing connection can take
them first (see :mod:`aquami.ports`)."""

from __future__ import annotations

import socket

from aquami.ports import ephemeral_port_range, free_port


def test_a_free_port_is_outside_the_range_outgoing_connections_take_theirs_from() -> None:
    """Before, ``free_port`` bound port 0, which gives an ephemeral port: in CI a parallel test's
    outgoing connection took one before a Modbus TCP simulator started on it could bind it."""
    low, high = ephemeral_port_range()
    picked = [free_port() for _ in range(50)]
    assert all(not low <= port <= high for port in picked), picked
    assert len(set(picked)) > 1  # picked at random, not one port for every caller


def test_a_free_port_can_be_listened_on_and_a_port_in_use_is_never_given() -> None:
    with socket.create_server(("127.0.0.1", free_port())) as listening:
        taken = listening.getsockname()[1]
        assert all(free_port() != taken for _ in range(200))


def test_the_ephemeral_range_is_the_kernel_s() -> None:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as said:
        assert ephemeral_port_range() == tuple(int(part) for part in said.read().split())
