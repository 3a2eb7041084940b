"""Answers that come after the gateway stopped waiting for them: counted, and said once an episode.

A meter that answers after the bus's ``timeout_s`` every time fails every poll as ``no answer from
unit 5``, like a meter that is not there, while the line carries its answers: the cure is a longer
``timeout_s``, and nothing said so (pymodbus's line for such an answer is dropped from the log:
gateway.modbus_transport). Now each late answer counts in its bus's ``late_answers`` (health
status), and the first of an episode is a warning naming the meter, its unit and the timeout.

A late answer is a whole Modbus answer to a read (function 03h or 04h, or its exception) that is
not the answer to the request in flight: it came while none was (after the attempt gave up: the
transport keeps the failed attempt's connection listening until the next attempt opens its own),
or, on RTU, from another unit than the one asked, or, on TCP, with the transaction id of an earlier
request (one with an id never sent is a wrong answer, not a late one: a longer timeout does not
cure it, and the warning said to raise it). Its unit is in the frame. Not heard: an answer that
comes once the bus is closed or its next attempt has begun on a new connection (TCP), and, on RTU,
one that comes during the same unit's retry, which takes it as its own (RTU frames carry no
transaction id).

Wired M-Bus alike (gateway.mbus), where the window is the bus's ``answer_timeout_s``: a whole answer
(an E5h, or a long frame whose checksum is right) that comes once a request went unanswered, heard
before the next request (the port now stays open after an unanswered one, listening; before, it was
closed, and a port no one has open hears nothing), or taken in a later exchange where it is not the
answer asked for (an E5h to a REQ_UD2, an RSP_UD to a SND_NKE, an RSP_UD from another meter). A long
frame names its meter (its identification, or its primary address), or, naming none configured, a
device that is not (said by its address and identification: :meth:`LateAnswers.heard_unconfigured`,
before 2026-12-07 dropped uncounted); an E5h names none. It is
charged to the meter whose SND_NKE or selection went unanswered, if one alone awaits its E5h (for
the bus's ``timeout_s`` after its window, as far as the line shows: ``MBusTransport._still_awaiting``); with
several awaiting, to none of them, and said with their names (:meth:`LateAnswers.heard_unowned`:
counted on the bus, its warning naming those it may be from); with none, to no meter either. In a
secondary-address search, a selection left unanswered may have sent it too: with a poll's meter
awaiting one as well, it is said with both, charged to none (:meth:`LateAnswers.heard_in_search`). An
answer still arriving when the next request is due is read to its end first, and a long frame right
behind a SND_NKE's or a selection's E5h is heard too, and so is a lone E5h right behind the RSP_UD
to a search's read (gateway.mbus_line). Not heard: one taken as the
answer of the same meter's retry.

Its episodes are not :mod:`gateway.episodes`': nothing says that a meter has stopped answering late
(an answer in time is not heard here), so an episode ends after :data:`EPISODE_QUIET_S` without a
late answer, and nothing is said at its end; the counts say how many came. They are the gateway's,
kept across the transports a reload makes anew (gateway.late_episodes: before 2026-12-07 each
transport had its own, and a meter answering late was warned of again at every reload).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

from pymodbus.framer import FramerRTU

from gateway.config import MBusBusConfig, MeterConfig, ModbusRtuBusConfig, ModbusTcpBusConfig
from gateway.late_episodes import BusLateEpisodes

log = logging.getLogger(__name__)

#: told of each late answer heard, with its unit (an M-Bus meter's primary address, FDh for one read by
#: secondary address), or None where no one unit is known (an E5h, which names no meter, with none or
#: several meters awaiting one: :meth:`LateAnswers.heard_unowned`)
LateListener = Callable[[int | None], None]
#: A unit's late answers are one episode until none has come for this long; the next is said again.
EPISODE_QUIET_S = 3600.0
_READ_ANSWERS = (0x03, 0x04)
_MBAP_HEADER = 6  # transaction id, protocol id, length: the length counts the unit id and the PDU
#: TCP: the transaction ids a watch remembers as asked (pymodbus counts them up, one a request): a
#: late answer is to one of the last few, and 256 is minutes of requests on a slow bus
_ASKED_KEPT = 256


def _pdu_size(function: int, byte_count: int) -> int | None:
    """The PDU's length (function code onwards) of an answer to a read, or None for any other."""
    if function & 0x7F not in _READ_ANSWERS:
        return None
    return 2 if function & 0x80 else 2 + byte_count


def rtu_answer(heard: bytes) -> tuple[int, int] | None:
    """The unit and length of the whole RTU answer to a read (its CRC right) that ``heard`` begins
    with, or None."""
    if len(heard) < 5:
        return None
    pdu = _pdu_size(heard[1], heard[2])
    if pdu is None or len(heard) < pdu + 3:
        return None
    size = pdu + 3  # unit, PDU, CRC
    if FramerRTU.compute_CRC(heard[: size - 2]) != int.from_bytes(heard[size - 2 : size], "big"):
        return None
    return heard[0], size


def tcp_answer(heard: bytes) -> tuple[int, int, int] | None:
    """The transaction id, unit and length of the whole Modbus TCP answer to a read that ``heard``
    begins with, or None."""
    if len(heard) < _MBAP_HEADER + 3 or heard[2:4] != b"\0\0":
        return None
    size = _MBAP_HEADER + int.from_bytes(heard[4:6], "big")
    pdu = _pdu_size(heard[7], heard[8])
    if pdu is None or size != _MBAP_HEADER + 1 + pdu or len(heard) < size:
        return None
    return int.from_bytes(heard[0:2], "big"), heard[6], size


def mbus_frames(heard: bytes) -> list[bytes]:
    """The whole M-Bus answers ``heard`` begins with, in turn: an E5h, or a long frame whose length,
    start, stop and checksum are right. What follows the first byte that begins neither (noise, a
    frame cut short by the port's buffer or still arriving) is not looked at."""
    frames = []
    at = 0
    while at < len(heard):
        if heard[at] == 0xE5:
            frames.append(heard[at : at + 1])
            at += 1
            continue
        frame = heard[at : at + heard[at + 1] + 6] if at + 1 < len(heard) else b""
        if (
            len(frame) < 9
            or frame[0] != 0x68
            or frame[3] != 0x68
            or frame[1] != frame[2]
            or len(frame) != frame[1] + 6
            or frame[-1] != 0x16
            or sum(frame[4:-2]) & 0xFF != frame[-2]
        ):
            break
        frames.append(frame)
        at += len(frame)
    return frames


class LateAnswerWatch:
    """pymodbus's ``trace_packet`` hook on a Modbus client: it calls ``on_late`` with the unit of each
    late answer heard (once, however often pymodbus hands it the same receive buffer), then passes
    the packets on to ``then``. The transport says when a request is in flight (:attr:`waiting`), and
    when an answer cannot be late (:meth:`mute`: a read cancelled as the gateway stops)."""

    def __init__(
        self,
        framing: Literal["rtu", "tcp"],
        on_late: Callable[[int], None],
        then: Callable[[bool, bytes], bytes] | None = None,
    ):
        self.framing = framing
        self.on_late = on_late
        self.then = then
        self.waiting = False
        self.sent = b""
        self._muted = False
        self._counted: set[bytes] = set()  # the late frames counted since the last request
        # TCP: the transaction ids of the requests sent, the latest _ASKED_KEPT, oldest first
        self._asked: dict[int, None] = {}

    def mute(self) -> None:
        """Count nothing until the next request: what comes is an answer to a read abandoned, not
        a late one."""
        self._muted = True

    def __call__(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self.sent = data
            self._muted = False
            self._counted.clear()
            if self.framing == "tcp" and len(data) >= 2:
                transaction = int.from_bytes(data[:2], "big")
                self._asked.pop(transaction, None)
                self._asked[transaction] = None
                if len(self._asked) > _ASKED_KEPT:
                    del self._asked[next(iter(self._asked))]
        elif not self._muted:
            self._look(data)
        return data if self.then is None else self.then(sending, data)

    def _look(self, heard: bytes) -> None:
        if self.framing == "rtu":
            answer = rtu_answer(heard)
            if answer is None:
                return
            unit, size = answer
            late = not self.waiting or not self.sent or unit != self.sent[0]
        else:
            tcp = tcp_answer(heard)
            if tcp is None:
                return
            transaction, unit, size = tcp
            awaited = self.waiting and len(self.sent) >= 2 and transaction == int.from_bytes(self.sent[:2], "big")
            # an answer to a request of ours, not the one awaited: one with a transaction id never
            # sent is no late answer but a wrong one (a corrupted header, a device or gateway that
            # mangles ids), which a longer timeout_s does not cure; pymodbus's own line says it
            late = not awaited and transaction in self._asked
        frame = heard[:size]
        if late and frame not in self._counted:
            self._counted.add(frame)
            self.on_late(unit)


class LateAnswers:
    """One bus's late answers: each is counted (``on_late`` told its unit: the health status, which a
    reload keeps; no count is kept here, where it would start at 0 with each transport a reload makes),
    and the first of each meter's episode is a warning naming the meter, its unit or address and the
    setting to raise: a Modbus bus's ``timeout_s`` (:meth:`heard`, from the unit in the frame), an M-Bus
    bus's ``answer_timeout_s`` (:meth:`heard_from`: its transport knows the meter, an E5h carries no
    address). An M-Bus E5h no one meter can be charged with is counted and said with what is known
    (:meth:`heard_unowned`, :meth:`heard_in_search`), ``on_late`` told None."""

    def __init__(
        self,
        bus: ModbusTcpBusConfig | ModbusRtuBusConfig | MBusBusConfig,
        on_late: LateListener | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        quiet_s: float = EPISODE_QUIET_S,
        episodes: BusLateEpisodes | None = None,
    ):
        self.bus = bus
        self.on_late = on_late
        self.monotonic = monotonic
        self.quiet_s = quiet_s
        #: False: counted, and ``on_late`` told, but no warning (a scan says late answers in its own words)
        self.warn = True
        #: each unit's (meter's) episode: the gateway's, so that a reload, which makes its buses anew,
        #: keeps it (gateway.late_episodes); the transport's own by default (a scan's)
        self.episodes = BusLateEpisodes() if episodes is None else episodes
        self._listeners: list[LateListener] = []  # told too, for a while (:meth:`listening`)

    @contextlib.contextmanager
    def listening(self, listener: LateListener) -> Iterator[None]:
        """``listener`` told too of each late answer's unit while the block runs (a scan command's,
        beside the health status's ``on_late``; scans that overlap each keep their own)."""
        self._listeners.append(listener)
        try:
            yield
        finally:
            self._listeners.remove(listener)

    def heard(self, unit: int) -> None:
        """A Modbus answer from ``unit``, late."""
        named = [m for m in self.bus.meters if m.unit_id == unit]
        self._count(unit, unit, lambda: self.hint(unit), named, at_unit=unit)

    def heard_from(self, meter: MeterConfig) -> None:
        """An M-Bus answer from ``meter``, late."""
        self._count(meter.meter_id, meter.unit_id, lambda: self.mbus_hint(meter), [meter])

    def heard_unowned(self, awaiting: Sequence[MeterConfig]) -> None:
        """An M-Bus E5h, late, that cannot be charged to one meter: ``awaiting`` are the meters whose
        SND_NKE or selection went unanswered, their E5h not heard since (several, or none). An E5h
        names no meter, and which of them sent it is not known: it counts on the bus (the health
        status's ``late_answers``), and is said with the names of those it may be from, charged to
        none (a technician raises the answer window of the meter a warning names)."""
        key = ("E5h", tuple(m.meter_id for m in awaiting))
        self._count(key, None, lambda: self.unowned_hint(awaiting), awaiting)

    def heard_in_search(
        self, selections: Sequence[str], awaiting: Sequence[MeterConfig] = (), *, answered: bool = False
    ) -> None:
        """An M-Bus E5h, late, in a secondary-address search: ``selections`` are those left unanswered
        before it came (gateway.mbus: ``MBusTransport._late_in_search``), or, ``answered``, with none
        left unanswered since the search's last answer, the selection that answer was to (a second
        meter it selects, acknowledging late); ``awaiting`` the meters whose poll's SND_NKE or
        selection went unanswered just before, which may have sent it too (then it is said with both,
        charged to none)."""
        key = ("search", tuple(m.meter_id for m in awaiting))
        self._count(key, None, lambda: self.search_hint(selections, awaiting, answered=answered), awaiting)

    def heard_late_read(self, identification: str, meter: MeterConfig | None) -> None:
        """An M-Bus long frame, late, in a secondary-address search: the answer of the meter
        ``identification`` to the search's read (``meter``: the configured meter it is, if any),
        named by the identification it carries, not by a unit (gateway.mbus:
        ``MBusTransport._late_read_in_search``)."""
        named = [] if meter is None else [meter]
        self._count(("search read", identification), None, lambda: self.late_read_hint(identification, meter), named)

    def heard_unconfigured(self, address: int | None, identification: str | None) -> None:
        """An M-Bus long frame, late, from a device no meter of the bus is configured with: neither its
        primary address (``address``, its A-field) is a meter's read by primary address, nor its
        ``identification`` a meter's read by secondary address (gateway.mbus:
        ``MBusTransport._heard_late``). Counted on the bus as any late answer, ``on_late`` told its
        address, and said by what it carries, once an episode of that device's."""
        key = ("unconfigured", address, identification)
        self._count(key, address, lambda: self.unconfigured_hint(address, identification), [])

    def unconfigured_hint(self, address: int | None, identification: str | None) -> str:
        assert isinstance(self.bus, MBusBusConfig)
        carries = " and ".join(
            said
            for said in (
                None if address is None else f"primary address {address}",
                None if identification is None else f"identification {identification}",
            )
            if said
        )
        return (
            f"{self.bus.name}: an answer from a device no meter on the bus is configured with came late (after its "
            f"request's answer window, or in another request's), carrying {carries or 'no address'}: a device that "
            "answers with another address than it is asked at (its meter's polls then fail as 'no answer'), or a "
            "meter on the line left out of the configuration? `aquami gateway scan` lists the bus's meters by "
            "identification"
        )

    def late_read_hint(self, identification: str, meter: MeterConfig | None) -> str:
        assert isinstance(self.bus, MBusBusConfig)
        configured = f", configured as {meter.meter_id}," if meter is not None else ""
        return (
            f"{self.bus.name}: the meter with secondary address {identification}{configured} answered after the "
            f"bus's {self.bus.answer_timeout_s:g} s answer window in a secondary-address search: too late to be "
            "found: raise the bus's answer_timeout_s and search again"
        )

    def search_hint(
        self, selections: Sequence[str], awaiting: Sequence[MeterConfig] = (), *, answered: bool = False
    ) -> str:
        assert isinstance(self.bus, MBusBusConfig)
        if answered:
            return (
                f"{self.bus.name}: an acknowledgement (E5h) came after the bus's {self.bus.answer_timeout_s:g} s "
                f"answer window in a secondary-address search, after {selection_answered(selections)}: a meter "
                "answering too late to be found: raise the bus's answer_timeout_s and search again"
            )
        if awaiting:
            names = " or ".join(f"{m.meter_id} ({addressed(m)})" for m in awaiting)
            return (
                f"{self.bus.name}: an acknowledgement (E5h) came after the bus's {self.bus.answer_timeout_s:g} s "
                f"answer window in a secondary-address search, after {selections_unanswered(selections)}, or from "
                f"{names}, whose poll's SND_NKE or selection went unanswered just before; an E5h names no meter, so "
                "which is not known and it is charged to none: raise the bus's answer_timeout_s (and its timeout_s, "
                "if set, to at least as much), and search again"
            )
        return (
            f"{self.bus.name}: an acknowledgement (E5h) came after the bus's {self.bus.answer_timeout_s:g} s answer "
            f"window in a secondary-address search, after {selections_unanswered(selections)}: a meter answering too "
            "late to be found: raise the bus's answer_timeout_s and search again"
        )

    def _count(
        self,
        key: object,
        unit: int | None,
        hint: Callable[[], str],
        named: Sequence[MeterConfig],
        at_unit: int | None = None,
    ) -> None:
        """One late answer of ``key``'s (its ``unit`` told to the listeners), warned of in ``hint``'s
        words if it begins an episode; ``named``: the meters the warning names (those at the Modbus
        unit ``at_unit``), whose entries changed at a reload begin it afresh (gateway.late_episodes)."""
        now = self.monotonic()
        last = self.episodes.heard(key, now, named, at_unit)
        if self.warn and (last is None or now - last > self.quiet_s):
            log.warning("%s", hint())
        if self.on_late is not None:
            self.on_late(unit)
        for listener in list(self._listeners):
            listener(unit)

    def hint(self, unit: int) -> str:
        meters = [m.meter_id for m in self.bus.meters if m.unit_id == unit]
        who = f"{', '.join(meters)} on {self.bus.name}" if meters else self.bus.name
        return (
            f"{who}: unit {unit} answered after the bus's {self.bus.timeout_s:g} s timeout, so its polls "
            f"fail as 'no answer' though it answers: raise the bus's timeout_s"
        )

    def mbus_hint(self, meter: MeterConfig) -> str:
        """An M-Bus meter's answer must start within the bus's answer window (``answer_timeout_s``, by
        default EN 13757-2's 330 bit times + 50 ms): that is the setting that makes it heard. A
        ``timeout_s`` given must be at least as long (gateway.config refuses it otherwise)."""
        assert isinstance(self.bus, MBusBusConfig)
        return (
            f"{meter.meter_id} on {self.bus.name}: {addressed(meter)} answered after the bus's "
            f"{self.bus.answer_timeout_s:g} s answer window, so its polls fail as 'no answer' though it answers: "
            "raise the bus's answer_timeout_s (and its timeout_s, if set, to at least as much)"
        )

    def unowned_hint(self, awaiting: Sequence[MeterConfig]) -> str:
        """What is known of a late E5h charged to no meter (:meth:`heard_unowned`)."""
        assert isinstance(self.bus, MBusBusConfig)
        came = f"{self.bus.name}: an acknowledgement (E5h) came after its request's answer window"
        if not awaiting:
            return (
                f"{came}, with no meter's SND_NKE or selection left unanswered to be its own: charged to no meter "
                "(an E5h names none; a device answering that is not configured on the bus, or a meter answering twice?)"
            )
        names = " or ".join(f"{m.meter_id} ({addressed(m)})" for m in awaiting)
        return (
            f"{came}, from {names}, whose SND_NKE or selection each went unanswered in the bus's "
            f"{self.bus.answer_timeout_s:g} s answer window; an E5h names no meter, so which is not known and it is "
            "charged to none: if their polls fail as 'no answer' though one answers, raise the bus's answer_timeout_s "
            "(and its timeout_s, if set, to at least as much)"
        )


def selections_unanswered(selections: Sequence[str]) -> str:
    """A search's selections left unanswered, in words: ``the selection 1234FFFF (F: any digit) went
    unanswered``."""
    if not selections:
        return "no selection left unanswered since the search's last answer"
    if len(selections) == 1:
        return f"the selection {selections[0]} (F: any digit) went unanswered"
    return f"the selections {', '.join(selections)} (F: any digit) went unanswered"


def selection_answered(selections: Sequence[str]) -> str:
    """A search's selection answered last, with none left unanswered since, as a late E5h's likeliest
    own, in words: ``the selection 2222000F (F: any digit) was answered in time, none left unanswered
    since (a second meter it selects, acknowledging late?)``."""
    return (
        f"the selection {', '.join(selections)} (F: any digit) was answered in time, none left unanswered since "
        "(a second meter it selects, acknowledging late?)"
    )


def addressed(meter: MeterConfig) -> str:
    """How an M-Bus meter is asked on the line, as a failed poll names it (``primary address 12``,
    ``secondary address 26000002``): a Modbus meter's silence names its unit (``no answer from unit
    5``); an M-Bus meter's said only "no answer", and the technician looked its address up."""
    if meter.secondary_address is not None:
        return f"secondary address {meter.secondary_address}"
    return f"primary address {meter.unit_id}"


def late_units_during(transport: object, listener: LateListener) -> contextlib.AbstractContextManager[None]:
    """:meth:`LateAnswers.listening` on ``transport``'s late answers; nothing for a transport that
    hears none (a wireless receiver)."""
    late = getattr(transport, "late_answers", None)
    return late.listening(listener) if isinstance(late, LateAnswers) else contextlib.nullcontext()
