"""The MQTT version choice of protocol "auto" (:class:`gateway.mqtt_version.VersionChoice`) against
a model of a link that is silent for spells (TCP accepted, nothing answered) and a broker that
speaks MQTT 5, answers MQTT 3.1.1 only and is silent to MQTT 5, or says "unsupported protocol
version" (0x84). Whatever the spells: a broker with MQTT 5 is spoken to in MQTT 5 once the link
carries answers, and the others end up on MQTT 3.1.1 without asking in MQTT 5 at every connection.
Before, one silent spell at the start was enough to speak MQTT 3.1.1 to any broker until restarted.
The real thing: ``tests/gateway/test_silent_link_at_start.py``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from hypothesis import given
from hypothesis import strategies as st

from gateway.mqtt_version import UNSUPPORTED_PROTOCOL, VersionChoice

Broker = Literal["mqtt5", "deaf to mqtt5", "says 0x84"]
Spell = tuple[bool, int]  # the link up (or silent), for so many sessions
log = logging.getLogger("tests.mqtt_version")


@dataclass
class Session:
    version: str
    link_up: bool
    kept: bool  # accepted, and used (not hung up to ask in MQTT 5 again)


@dataclass
class Run:
    sessions: list[Session] = field(default_factory=list)

    def kept(self) -> list[Session]:
        return [s for s in self.sessions if s.kept]


def _run(broker: Broker, spells: list[Spell]) -> Run:
    """Sessions one after another over the link's spells (up or silent, and for how many sessions);
    a session accepted is dropped after a while, as a link does."""
    choice = VersionChoice("auto", "mqtt://broker", log)
    run = Run()
    for link_up, sessions in spells:
        for _ in range(sessions):
            version = choice.version
            kept = False
            if not link_up or (version == "5" and broker == "deaf to mqtt5"):
                connack, timed_out = None, True
            elif version == "5" and broker == "says 0x84":
                connack, timed_out = UNSUPPORTED_PROTOCOL, False
            else:
                connack, timed_out = 0, False
                kept = choice.answered(0.05)
            run.sessions.append(Session(version, link_up, kept))
            choice.ended(connack, timed_out)
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
    assert sum(s.link_up and s.version == "5" for s in run.sessions) <= 2
    ups = [n for n, (up, _) in enumerate(link) if up]
    ends = [sum(count for _, count in link[: n + 1]) for n in ups]
    assert all(run.sessions[end - 1].kept for end in ends), "an up spell ended without a connection"


@given(spells(shortest_up=1))
def test_a_broker_saying_0x84_is_asked_in_mqtt5_once(link: list[Spell]) -> None:
    run = _run("says 0x84", link)
    assert all(s.version == "3.1.1" for s in run.kept())
    assert sum(s.link_up and s.version == "5" for s in run.sessions) <= 1
