"""The MQTT version choice of protocol "auto" (:class:`gateway.mqtt_version.VersionChoice`) against
a model of a link that is silent for spells (TCP accepted, nothing answered) and a broker that
speaks MQTT 5, answers MQTT 3.1.1 only and is silent to MQTT 5, or says "unsupported protocol
version" (0x84). Whatever the spells: a broker with MQTT 5 is spoken to in MQTT 5 once the link
carries answers, and the others end up on MQTT 3.1.1 without asking in MQTT 5 at every connection.
Before, one silent spell at the start was enough to speak MQTT 3.1.1 to any broker until restarted.
A 3.1.1 CONNECT answered at once is held while MQTT 5 is asked beside it: both connections go over
the link as it is in the next session's turn. The real thing: ``tests/gateway/test_silent_link_at_start.py``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from hypothesis import given
from hypothesis import strategies as st

from gateway.mqtt_version import CONNACK_TIMEOUT_S, CONNACK_WAIT_S, UNSUPPORTED_PROTOCOL, VersionChoice

Broker = Literal["mqtt5", "deaf to mqtt5", "says 0x84"]
Spell = tuple[bool, int]  # the link up (or silent), for so many sessions
log = logging.getLogger("tests.mqtt_version")


@dataclass
class Session:
    version: str  # of the connection used, or else of the CONNECT
    link_up: bool
    kept: bool  # accepted, and used (not held while MQTT 5 was asked again)
    asked_mqtt5: bool  # an MQTT 5 CONNECT went out


@dataclass
class Run:
    sessions: list[Session] = field(default_factory=list)

    def kept(self) -> list[Session]:
        return [s for s in self.sessions if s.kept]


def _answer(broker: Broker, version: str, link_up: bool) -> int | None:
    """The CONNACK's reason code to a CONNECT in ``version``; None: none comes."""
    if not link_up or (version == "5" and broker == "deaf to mqtt5"):
        return None
    return UNSUPPORTED_PROTOCOL if version == "5" and broker == "says 0x84" else 0


def _run(broker: Broker, spells: list[Spell]) -> Run:
    """Sessions one after another over the link's spells (up or silent, and for how many sessions);
    a session accepted is dropped after a while, as a link does. A 3.1.1 session held to ask in
    MQTT 5 beside it takes the next session's turn of the link for both."""
    choice = VersionChoice("auto", "mqtt://broker", log)
    run = Run()
    held = False
    for link_up in [up for up, sessions in spells for _ in range(sessions)]:
        if held:
            held = False
            connack = _answer(broker, "5", link_up)
            kept = choice.rechecked(connack, timed_out=connack is None, held_answered=link_up)
            run.sessions.append(Session(kept or "5", link_up, kept is not None, asked_mqtt5=True))
            choice.ended(0, timed_out=False)
            continue
        version = choice.version
        connack = _answer(broker, version, link_up)
        accepted = connack == 0 and choice.answered(0.05)
        if connack == 0 and not accepted:
            held = True
        run.sessions.append(Session(version, link_up, accepted, asked_mqtt5=version == "5"))
        if not held:
            choice.ended(connack, timed_out=connack is None)
    return run


def _in_turn(pairs: list[tuple[Spell, Spell]], up_first: bool) -> list[Spell]:
    return [spell for silent, up in pairs for spell in ((up, silent) if up_first else (silent, up))]


def spells(shortest_up: int) -> st.SearchStrategy[list[Spell]]:
    """Silent spells of any length and up ones of ``shortest_up`` sessions or more, in turn."""
    silent = st.integers(1, 6).map(lambda n: (False, n))
    up = st.integers(shortest_up, shortest_up + 6).map(lambda n: (True, n))
    return st.builds(_in_turn, st.lists(st.tuples(silent, up), min_size=1, max_size=6), st.booleans())


@given(spells(shortest_up=2))
def test_a_broker_with_mqtt5_is_spoken_to_in_mqtt5_whatever_the_silences(link: list[Spell]) -> None:
    run = _run("mqtt5", link)
    assert run.kept() and all(s.version == "5" for s in run.kept())
    first = run.sessions.index(run.kept()[0])  # after it, no fallback: a silence is the link's
    assert all(s.version == "5" for s in run.sessions[first:])


@given(spells(shortest_up=1))
def test_a_broker_with_mqtt5_is_never_spoken_to_in_mqtt311_however_the_link_flaps(link: list[Spell]) -> None:
    """The link carries the 3.1.1 CONNACK and goes silent again while MQTT 5 is asked once more.
    Before, with the 3.1.1 session hung up first, that silence settled MQTT 3.1.1 until restarted
    (``[(False, 1), (True, 1), (False, 1), (True, 1)]``); the held session goes silent too."""
    run = _run("mqtt5", link)
    assert all(s.version == "5" for s in run.kept())


@given(spells(shortest_up=1))
def test_once_mqtt5_was_answered_a_silent_link_never_brings_mqtt311(link: list[Spell]) -> None:
    run = _run("mqtt5", link)
    answered = [n for n, s in enumerate(run.sessions) if s.kept and s.version == "5"]
    if answered:
        assert all(s.version == "5" for s in run.sessions[answered[0] :])


@given(spells(shortest_up=4))
def test_a_broker_silent_to_mqtt5_gets_mqtt311_and_is_asked_in_mqtt5_at_most_twice(
    link: list[Spell],
) -> None:
    run = _run("deaf to mqtt5", link)
    assert all(s.version == "3.1.1" for s in run.kept())
    assert sum(s.link_up and s.asked_mqtt5 for s in run.sessions) <= 2
    ups = [n for n, (up, _) in enumerate(link) if up]
    ends = [sum(count for _, count in link[: n + 1]) for n in ups]
    assert all(run.sessions[end - 1].kept for end in ends), "an up spell ended without a connection"


@given(spells(shortest_up=1))
def test_a_broker_saying_0x84_is_asked_in_mqtt5_once(link: list[Spell]) -> None:
    run = _run("says 0x84", link)
    assert all(s.version == "3.1.1" for s in run.kept())
    assert sum(s.link_up and s.asked_mqtt5 for s in run.sessions) <= 1


def test_a_connect_waits_the_configured_connack_wait_up_to_the_keepalive() -> None:
    """``[mqtt] connack_wait_s`` is how long a CONNECT other than a first MQTT 5 one waits for its
    CONNACK (a broker slow to accept connections after a restart needs longer than the 10 s
    default), never longer than a keepalive period; the first MQTT 5 CONNECT keeps its 3 s."""
    log = logging.getLogger("test.mqtt_version")
    first = VersionChoice("auto", "mqtt://broker", log)
    assert first.patience(30.0, 25.0) == CONNACK_TIMEOUT_S
    configured = VersionChoice("5", "mqtt://broker", log)
    assert configured.patience(30.0) == CONNACK_WAIT_S
    assert configured.patience(30.0, 25.0) == 25.0
    assert configured.patience(20.0, 25.0) == 20.0
    assert VersionChoice("3.1.1", "mqtt://broker", log).patience(60.0, 45.0) == 45.0
