"""Wired M-Bus master (EN 13757-2 link layer, EN 13757-3 data): one serial line, one transaction at a time.

- On first contact with a meter (and after a failure) the master sends SND_NKE and expects E5h, which
  also resets the meter's frame count bit (FCB).
- A read is REQ_UD2 with FCV set and the FCB toggled after each successful exchange; a meter that
  says "more records follow" (DIF 1Fh) is asked again with the FCB toggled until it says no more,
  and the records of all its telegrams make the reading (multi-telegram read). A repeat after a
  missing answer keeps the same FCB, so the meter resends the same telegram rather than the next.
- A meter with a secondary address is selected first (SND_UD to FDh, CI 52h, E5h back) and then read
  at FDh.
- A meter on a primary address must answer with its identification: its configured one, else its
  first answer's (a meter exchanged, or addresses swapped, is refused, not read as this meter:
  :mod:`gateway.mbus_identity`).
- A secondary-address search reads each meter it finds with FCB = 1, outside the polls' FCB
  tracking: a configured meter it reads (every meter, after a read of the search that failed) gets
  SND_NKE again before its next poll, which would otherwise be taken as a repeat of the search's read;
  a search's answer that is a telegram already taken from that meter (its access number) is read
  again with FCB = 0, which the meter takes as new.
- The line's timing (clause 5.4), and a line that never goes quiet: :mod:`gateway.mbus_line`.

Serial I/O is blocking pyserial in a worker thread; the bus lock of the scheduler makes sure only one
transaction is on the line at a time. A reset (after a failed or timed-out attempt) or a stop aborts
the transaction under way rather than waiting for it: the thread's read returns at once, and the
line is closed as soon as the thread lets go of it. After an attempt that ended on a request
unanswered, the line stays open instead, so that the answer, if it comes late, is heard and said
(gateway.late_answers).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from aquami.clock import Clock, utc_now
from aquami.contracts.reads import ALARMS, FLOW_MAX_M3H, VOLUME_MAX_M3, Protocol, Reading
from firmware_protocols.errors import DecodeError
from firmware_protocols.mbus import (
    build_req_ud2,
    build_snd_nke,
    build_snd_ud_select,
    decode_frame,
    secondary_address_matches,
)
from gateway.config import MBusBusConfig, MeterConfig
from gateway.late_answers import LateAnswers, LateListener, addressed, mbus_frames
from gateway.late_episodes import BusLateEpisodes
from gateway.mbus_identity import check_identification
from gateway.mbus_line import ACK, LineNeverQuiet, MBusLine, asks_for_data
from gateway.meter_identity import MeterIdentities
from gateway.modbus_read import millisecond, within
from gateway.scan import FoundMBus
from gateway.transport import LineUnusable, NoAnswer, PollError, PollRefused, TransactionAborted

__all__ = ["MAX_TELEGRAMS", "MBusLine", "MBusTransport", "addressed", "reading_from_records"]

NETWORK_LAYER = 0xFD
MAX_PRIMARY_ADDRESS = 250  # 251..255: none (FDh the network layer's, FEh and FFh broadcasts)
MAX_TELEGRAMS = 8  # a multi-telegram read longer than this is a meter gone wrong
RESET_WAIT_S = 1.0  # how long a reset waits for an aborted transaction's thread to let go of the line

# EN 13757-3 clause 6.2 (EN 13757-7:2018 7.5.6), the status byte: bit 2 power low, bit 3 permanent
# error, bit 4 temporary error.
_STATUS_ALARMS = ((0x04, "low_battery"), (0x08, "meter_error"), (0x10, "meter_error"))
# Bits 1..0 are one field, the application's state: 00 no error, 01 busy (no alarm: it answers later),
# 10 any application error, 11 abnormal condition or alarm (a working meter seeing something wrong,
# a water meter's permanent flow). The reads contract has no name for either but meter_error; a
# narrower one (leak for a permanent flow) would be a guess at the cause.
_APPLICATION_ALARMS = {0b10: "meter_error", 0b11: "meter_error"}


def selected_by(
    telegram: dict[str, Any],
    identification: str,
    manufacturer: str | None = None,
    version: int | None = None,
    medium: str | None = None,
) -> bool:
    """Whether the meter that sent ``telegram`` is one the selection of this secondary address (``F``
    digits and None are wildcards, as :func:`build_snd_ud_select` takes them) selects: EN 13757-3
    (secondary addressing) has a meter selected only if its identification, manufacturer, version
    and medium match the selection's. A telegram with no 8-digit identification is no selected
    meter's."""
    sent = telegram.get("id")
    if not isinstance(sent, str) or len(sent) != len(identification):
        return False
    selection = {"identification": identification, "manufacturer": manufacturer, "version": version, "medium": medium}
    # None where a telegram does not carry it (a fixed-format one's manufacturer): matched by a wildcard only
    sent_manufacturer: Any = telegram.get("manufacturer")
    sent_version: Any = telegram.get("version")
    sent_medium: Any = telegram.get("medium")
    return secondary_address_matches(selection, sent, sent_manufacturer, sent_version, sent_medium)


def _long_frame(frame: bytes) -> dict[str, Any] | None:
    """``frame`` decoded, when it is a long frame that decodes; None for an E5h (no address, no
    identification) or bytes that do not decode."""
    if frame == bytes([ACK]):
        return None
    try:
        return decode_frame(frame)
    except DecodeError:
        return None


def status_alarms(telegrams: list[dict[str, Any]]) -> tuple[str, ...]:
    """The alarms of every telegram's status byte (a multi-telegram read: a meter may set a bit in
    any of them), each named once."""
    names: list[str] = []
    for telegram in telegrams:
        status = telegram.get("status") or 0
        names += [name for bit, name in _STATUS_ALARMS if status & bit]
        if application := _APPLICATION_ALARMS.get(status & 0x03):
            names.append(application)
    return tuple(name for name in ALARMS if name in names)


def flagged(flags: int, names: tuple[str, ...]) -> set[str]:
    """The alarms an error flags record (VIF FDh 17h, EN 13757-3:2018 Table 14) raises, by the
    meter's map of its bits (``error_flags`` in its configuration: the standard leaves the bits to
    the manufacturer; the decoder gives the field's bits as an unsigned integer)."""
    return {name for bit, name in enumerate(names) if name and flags >> bit & 1}


def _current(record: dict[str, Any]) -> bool:
    """Storage 0, tariff 0, instantaneous, subunit 0: the meter's own value now."""
    return (
        record["storage"] == 0
        and record["tariff"] == 0
        and record.get("subunit", 0) == 0
        and record["function"] == "instantaneous"
    )


def error_flags_record(telegrams: list[dict[str, Any]]) -> int | None:
    """The value of the first current error flags record (VIF FDh 17h), if the meter sends one."""
    for record in (r for t in telegrams for r in t.get("records", [])):
        if record["quantity"] == "error_flags" and _current(record) and isinstance(record["value"], int):
            return int(record["value"])
    return None


def reading_from_records(
    meter: MeterConfig, telegrams: list[dict[str, Any]], at: datetime, bus: str, protocol: Protocol = "mbus"
) -> Reading:
    """The current volume, flow and backward volume (VIF 13h with the combinable VIFE 3Ch,
    EN 13757-3:2018 Table 15) among all telegrams' records; alarms from every telegram's status
    byte, and from the error flags record by the meter's map of its bits, if it has one. Current:
    storage 0, tariff 0, instantaneous, and subunit 0, the meter itself (a subunit, DIFE bit 6, is
    another device behind it: a second register, a sub-meter)."""
    volume = flow = backward = flags = None
    for record in (r for t in telegrams for r in t.get("records", [])):
        if not _current(record) or not isinstance(record["value"], int | float):
            continue
        if record["quantity"] == "volume" and record["unit"] == "m3" and volume is None:
            volume = float(record["value"])
        elif record["quantity"] == "flow" and record["unit"] == "m3/h" and flow is None:
            flow = float(record["value"])
        elif record["quantity"] == "volume_backward" and record["unit"] == "m3" and backward is None:
            backward = float(record["value"])
        elif record["quantity"] == "error_flags" and isinstance(record["value"], int) and flags is None:
            flags = record["value"]
    if volume is None or volume < 0:
        raise PollError(f"{meter.meter_id}: no current volume record in its answer")
    if within(volume, 0, VOLUME_MAX_M3) is None:
        raise PollError(f"{meter.meter_id}: volume {volume!r} m3 is outside the reads contract")
    alarms = status_alarms(telegrams)
    if flags is not None and meter.error_flags:
        raised = set(alarms) | flagged(flags, meter.error_flags)
        alarms = tuple(name for name in ALARMS if name in raised)
    return Reading(
        meter_id=meter.meter_id,
        ts=millisecond(at),
        volume_m3=volume,
        flow_m3h=within(flow, -FLOW_MAX_M3H, FLOW_MAX_M3H),
        reverse_volume_m3=within(backward, 0, VOLUME_MAX_M3),
        alarms=alarms,
        protocol=protocol,
        bus=bus,
        address=meter.address,
    )


class MBusTransport:
    """``on_late`` is called with the primary address (FDh for a meter read by secondary address) of
    each late answer heard, or None for an E5h no one meter can be charged with (gateway.late_answers:
    :meth:`_heard_pending`, :meth:`_passed_over`, :meth:`_late_e5h`).

    ``identities``: the identification each meter on a primary address answered with first
    (gateway.mbus_identity, gateway.meter_identity), the gateway's, so that a reload, which makes its
    buses anew, keeps it; a transport of its own by default (a scan's). ``late_episodes``: its late
    answers' episodes, the gateway's across reloads likewise (gateway.late_episodes)."""

    def __init__(
        self,
        config: MBusBusConfig,
        clock: Clock = utc_now,
        on_late: LateListener | None = None,
        identities: MeterIdentities | None = None,
        late_episodes: BusLateEpisodes | None = None,
    ):
        self.config = config
        self.clock = clock
        self.identities = MeterIdentities() if identities is None else identities
        self.line = MBusLine(config)
        self.late_answers = LateAnswers(config, on_late, episodes=late_episodes)
        self.line.on_pending = self._heard_pending
        self._asking: MeterConfig | None = None  # the meter of the transaction under way (or the last)
        #: the meters whose SND_NKE or selection went unanswered, their E5h not heard since (by meter id),
        #: each with when its answer window closed (the line's monotonic clock): :meth:`_late_e5h`
        self._awaiting_e5h: dict[str, tuple[MeterConfig, float]] = {}
        #: the meters whose poll's REQ_UD2 went unanswered, their RSP_UD not heard since (by meter id),
        #: each with when its answer window closed: a late long frame from one, heard in a search, is
        #: that poll's (:meth:`_said_late_read`), for as long as :meth:`_still_awaited` says
        self._awaiting_data: dict[str, tuple[MeterConfig, float]] = {}
        #: when the line was last read by an exchange (its end): whatever is pending came after it
        self._last_read_at = float("-inf")
        self._exchange_started = float("-inf")  # when the exchange under way (or the last) began
        self._ended_silent = False  # the last transaction ended on silence: its line listens till the next
        #: the last transaction ended on a refusal (:class:`PollRefused`): a whole answer, the line in step
        self._ended_refused = False
        self._initialised: set[str] = set()  # meters that have had their SND_NKE
        self._fcb: dict[str, bool] = {}
        #: the access number of the last telegram taken from each meter (by identification and
        #: manufacturer), polled or searched: :meth:`_sent_before`
        self._access_seen: dict[tuple[Any, Any], int] = {}
        self._lock = threading.Lock()  # the line: held by the thread of the transaction under way
        self._closing = threading.Event()  # set once, by interrupt(): a search under way stops
        self._searching = False  # a secondary-address search is on the line: its E5h answer selections
        self._silent_selections: list[str] = []  # a search's selections unanswered since its last answer
        #: the search's selection answered last (an E5h, or a collision): with none left unanswered since,
        #: the one a late E5h likeliest answers (:meth:`_late_in_search`)
        self._answered_selection: str | None = None
        self._read_selections: list[str] = []  # the selections the search under way (or the last) read after
        #: the last search's late E5h, each as the selections it likeliest answers: those left unanswered
        #: before it came, or, with none since the search's last answer, the selection that answer was to
        #: (:attr:`late_in_search_answered` says which)
        self.late_in_search: list[tuple[str, ...]] = []
        #: beside each of :attr:`late_in_search`, whether its selection is the one answered last (no
        #: selection was left unanswered since): a second meter it selects, acknowledging late
        self.late_in_search_answered: list[bool] = []
        #: beside each of :attr:`late_in_search`, the meters (by id) whose poll's SND_NKE or selection went
        #: unanswered just before, which may have sent that E5h instead (empty: none; :meth:`_late_e5h`)
        self.late_in_search_polls: list[tuple[str, ...]] = []
        #: the identifications of the meters whose answer to the last search's read came late, each once
        self.late_reads_in_search: list[str] = []
        self._stale = threading.Event()  # a reset did not get the line: whoever has it closes it

    @contextmanager
    def _line_held(self) -> Iterator[None]:
        """The line for one transaction; waits for an aborted one still ending for at most the bus's
        timeout (1 s at least). Closes the line first, and on the way out, if a reset asked for it."""
        if not self._lock.acquire(timeout=max(self.config.timeout_s, 1.0)):
            raise PollError(f"{self.config.name}: the line is still held by an aborted transaction")
        try:
            if self._stale.is_set():
                self._close_line()
            yield
        finally:
            if self._stale.is_set():
                self._close_line()
            self._lock.release()

    def _exchange(self, frame: bytes) -> bytes:
        """``frame``'s own answer: a slow meter's late answer taken first is passed over, counted as
        its sender's, and the line read on (:meth:`_passed_over`). A SND_NKE or a selection left
        unanswered: its meter awaits its E5h (:meth:`_late_e5h`)."""
        self._exchange_started = self.line.monotonic()
        try:
            return self.line.exchange(frame, not_the_answer=lambda answer: self._passed_over(frame, answer))
        except NoAnswer:
            if self._asking is not None and not asks_for_data(frame):
                self._awaiting_e5h[self._asking.meter_id] = (self._asking, self.line.monotonic())
            elif self._asking is not None:
                self._awaiting_data[self._asking.meter_id] = (self._asking, self.line.monotonic())
            raise
        finally:
            self._last_read_at = self.line.monotonic()

    # late answers (gateway.late_answers) ---------------------------------------------------------------
    def _late_e5h(self, came_after: float) -> None:
        """An E5h heard late (before a request, or passed over in a REQ_UD2's exchange), which came
        after ``came_after`` (the line's monotonic clock: the end of the exchange before, or the start
        of the one it was passed over in). It names no meter. It is charged to the meter whose
        SND_NKE or selection went unanswered, if one alone awaits its E5h: whichever E5h this is, that
        meter's came after its window (the E5h taken in another meter's exchange meanwhile may have
        been its, this one that meter's own, queued behind it). Before, one passed over in a REQ_UD2
        was charged to the meter asked, and the warning sent the technician to the wrong meter's
        answer window.

        With several awaiting, which one answered is not known: it counts on the bus and is said
        with their names, charged to none, and they go on awaiting (:meth:`LateAnswers.heard_unowned`).
        With none, it is charged to no meter either.

        A meter awaits its E5h for a bounded time (:meth:`_still_awaiting`): a dead meter's SND_NKE
        left it on the list for as long as the line stayed open, and a slow neighbour's late E5h was
        said as "DEAD-3 or SLOW-1", charged to neither, at every poll.

        In a secondary-address search (:meth:`_late_in_search`), the polls' meters still awaiting
        one are looked at first, as outside a search, and the search's selections left unanswered
        since its last answer then: with both, which answered is not known, and it is said with
        both, charged to none (:meth:`_late_e5h_poll_or_search`). Before, a search forgot the polls'
        list as it began, and a poll's late E5h heard during it was said as the search's, "a meter
        too late to be found", sending the technician to search again rather than to the meter."""
        awaiting = self._still_awaiting(came_after)
        if self._searching and self._silent_selections and awaiting:
            self._late_e5h_poll_or_search(awaiting)
            return
        if self._searching and not awaiting:
            self._late_in_search()
            return
        if len(awaiting) == 1:
            self._awaiting_e5h.clear()
            self.late_answers.heard_from(awaiting[0])
        else:
            self.late_answers.heard_unowned(awaiting)

    def _still_awaiting(self, came_after: float) -> list[MeterConfig]:
        """The meters an E5h that came after ``came_after`` may be from; those it cannot be from no
        longer await one. An E5h is a meter's only if it came within the bus's ``timeout_s`` after
        that meter's window closed (an exchange's longest: the answer window and then the longest
        frame; EN 13757-2 has a slave start within 330 bit times + 50 ms): a meter whose window closed
        longer before the line was last heard silent (an exchange after it, with nothing from it) did
        not send it. Its own next SND_NKE or selection, unanswered again, starts its wait afresh. A
        meter later than that is not told from a dead one: its E5h, when it comes, is said with
        what is known, as an E5h no one awaits."""
        return self._still_awaited(self._awaiting_e5h, came_after)

    def _still_awaited(self, awaiting: dict[str, tuple[MeterConfig, float]], came_after: float) -> list[MeterConfig]:
        """The meters of ``awaiting`` (an E5h's or an RSP_UD's list, each meter with when its answer
        window closed) an answer that came after ``came_after`` may be from: those whose window
        closed more than the bus's ``timeout_s`` before are dropped from it (:meth:`_still_awaiting`
        says why)."""
        for meter_id, (_, closed) in list(awaiting.items()):
            if came_after - closed > self.config.timeout_s:
                del awaiting[meter_id]
        return [meter for meter, _ in awaiting.values()]

    def _late_in_search(self) -> None:
        """A late E5h in a secondary-address search: an answer to a selection, whose meter the search
        cannot find (its window is over), and which no identification names. What is known is the
        selections left unanswered since the search's last answer (the likeliest to be its own):
        counted on the bus, said (:meth:`LateAnswers.heard_in_search`) and kept for the scan's words
        (:attr:`late_in_search`). Before, it was dropped uncounted, and the search's last selection's
        was not heard at all.

        With none left unanswered since (a lone E5h right after the answer to the search's read, or
        before the next selection), the selection answered last is the likeliest: a second meter it
        selects, acknowledging after the window, beside the one (or those) that answered in time. It is
        said as such (:attr:`late_in_search_answered`). Before, it was said with an empty list, "after no
        selection left unanswered since the search's last answer", naming nothing to look at."""
        selections, answered = tuple(self._silent_selections), False
        if not selections and self._answered_selection is not None:
            selections, answered = (self._answered_selection,), True
        self._silent_selections.clear()
        self.late_in_search.append(selections)
        self.late_in_search_answered.append(answered)
        self.late_in_search_polls.append(())
        self.late_answers.heard_in_search(selections, answered=answered)

    def _late_e5h_poll_or_search(self, awaiting: list[MeterConfig]) -> None:
        """A late E5h in a search that a poll's meter (``awaiting``, its SND_NKE or selection left
        unanswered within the bus's ``timeout_s``) or one of the search's selections left unanswered
        may have sent: counted on the bus and said with both, charged to none
        (:meth:`LateAnswers.heard_in_search`), kept for the scan's words (:attr:`late_in_search`: it
        may be a meter too late to be found, and :attr:`late_in_search_polls`: or those meters' poll's,
        which the scan's reply says beside it). Both go on awaiting: the next E5h is as unknown."""
        selections = tuple(self._silent_selections)
        self.late_in_search.append(selections)
        self.late_in_search_answered.append(False)
        self.late_in_search_polls.append(tuple(m.meter_id for m in awaiting))
        self.late_answers.heard_in_search(selections, awaiting)

    def _late_read_in_search(self, frame: bytes, came_after: float) -> bool:
        """Whether ``frame``, a whole answer heard in a secondary-address search, is a late answer to
        the search's read (a long frame: a selection is answered by an E5h; or to a poll's, as
        :meth:`_said_late_read` tells), said by the meter's identification, which it carries: counted
        on the bus, said (:meth:`LateAnswers.heard_late_read`) and kept for the scan's words
        (:attr:`late_reads_in_search`). Before, one taken in the next selection's window was read as
        a collision (the search narrowed that selection down for nothing, and said nothing of the
        meter), and one heard before a selection was charged to the configured meter it named, the
        scan saying ``# unit 253 answered …`` for a meter read by secondary address (FDh is the
        secondary addressing address, no unit)."""
        telegram = _long_frame(frame)
        if telegram is None:  # an E5h, or not a whole telegram: a collision, as before
            return False
        return self._said_late_read(telegram, came_after)

    def _said_late_read(self, telegram: dict[str, Any], came_after: float) -> bool:
        """A late long frame heard in a search, ``telegram``, which came after ``came_after`` (as
        :meth:`_late_e5h` takes it), counted and said as the answer to the request it answers, as far
        as is known:

        - a poll's, if it is from a configured meter whose poll's REQ_UD2 went unanswered, its answer
          not heard since, within the bus's ``timeout_s`` after its window as far as the line shows
          (:meth:`_still_awaited`, as an E5h is awaited): said as that meter's late answer
          (:meth:`LateAnswers.heard_from`), as outside a search. A meter answers its requests in
          turn: were the search's read of it left unanswered too, the poll's answer comes first.
          Before, a poll's REQ_UD2 left unanswered had its meter await its RSP_UD for as long as the
          port stayed open: a meter silent to a poll an hour before, selected and read by a search
          and answering it late, had that answer said as the hour-old poll's;
        - the search's read's, if a selection the search read after selects it (:func:`selected_by`):
          said by its identification (:meth:`LateAnswers.heard_late_read`);
        - else, from a configured meter, a poll's all the same (the search never asked it); from a
          meter that is not, a search's (only a search asks such a meter: an earlier one).

        Before, each was said as the search's, "too late to be found" by a search that never selected
        it: a slow meter's late answer to its poll, come as a search began, sent the technician to
        search again rather than to raise the bus's answer window for that meter's polls."""
        sender = self._meter_of(telegram)
        polled = sender is not None and sender in self._still_awaited(self._awaiting_data, came_after)
        searched = any(selected_by(telegram, pattern) for pattern in self._read_selections)
        if sender is not None and (polled or not searched):
            self._answered(sender)
            self.late_answers.heard_from(sender)
            return True
        identification = str(telegram.get("id"))
        if identification not in self.late_reads_in_search:
            self.late_reads_in_search.append(identification)
        self.late_answers.heard_late_read(identification, self._meter_of(telegram))
        return True

    def _not_the_selected_meter_s(self, pattern: str, frame: bytes) -> bool:
        """Whether ``frame``, a whole answer taken in the window of the search's read after the
        selection ``pattern`` was acknowledged, is provably another meter's: a long frame whose
        identification the selection does not match (:func:`selected_by`), a late answer to an
        earlier read of the search, passed over and said by its identification
        (:meth:`_late_read_in_search`); the read goes on, within its window, for the selected meter's
        own. Before, the read took any long frame: a slow meter's late answer to its own read, come in
        its neighbour's, had that neighbour "found" under the slow meter's identification (a
        technician configured that address, and the neighbour was never polled).

        An E5h, and a frame that does not decode, are taken as before (the read fails, and the
        selection is narrowed down)."""
        telegram = _long_frame(frame)
        if telegram is None or selected_by(telegram, pattern):
            return False
        return self._said_late_read(telegram, self._exchange_started)  # decoded once

    def _answered(self, meter: MeterConfig) -> None:
        """A long frame from ``meter`` came: a meter answers its requests in turn, so an E5h it still
        owed to an earlier one has come by now, or never will; and a long frame it owed to a poll's
        REQ_UD2 is this one, or came before it."""
        self._awaiting_e5h.pop(meter.meter_id, None)
        self._awaiting_data.pop(meter.meter_id, None)

    def _meter_of(self, telegram: dict[str, Any]) -> MeterConfig | None:
        meters = self.config.meters
        by_id = [m for m in meters if m.secondary_address is not None and m.secondary_address == telegram.get("id")]
        by_address = [m for m in meters if m.secondary_address is None and m.unit_id == telegram.get("a_field")]
        found = by_id or by_address
        return found[0] if found else None

    def _heard_pending(self, pending: bytes) -> None:
        """What came on the line since the last exchange (:attr:`MBusLine.on_pending`): each whole
        answer in it is a late one (nothing was asked), counted for the meter it came from."""
        for frame in mbus_frames(pending):
            if frame == bytes([ACK]):
                self._late_e5h(came_after=self._last_read_at)
                continue
            if self._searching:
                self._late_read_in_search(frame, came_after=self._last_read_at)
                continue
            telegram = _long_frame(frame)
            if telegram is None:  # a whole frame by its checksum that does not decode: no one's to say
                continue
            self._heard_late(telegram)

    def _passed_over(self, request: bytes, answer: bytes) -> bool:
        """Whether a whole ``answer`` taken in the exchange of ``request`` is provably not its answer,
        but a late answer to an earlier request: counted as its sender's (gateway.late_answers), and
        passed over (the exchange reads on, within the answer window, for its own). Provably: an
        E5h to a REQ_UD2 (whose answer is an RSP_UD; charged as :meth:`_late_e5h` says), a long
        frame to a SND_NKE or a selection (whose answer is an E5h), a long frame to a REQ_UD2 from
        another meter than asked (another primary address, or at FDh another identification than the
        selected meter's: EN 13757-2, a slave answers with its own address). Before, each failed the
        exchange, and a slow meter's late answer failed the next meter's poll too.

        Not provably, and taken as the answer as before: a long frame that does not decode, and an
        E5h to a SND_NKE or a selection. An E5h carries no address; only its timing could tell a
        late one (started before this request could have been answered, 11 bit times after its
        last byte) from this meter's own, and the gateway does not know when its request's last
        byte left the converter (a USB adapter's flush returns before; a pty's has no wire), so it
        cannot be proved. Taken, it lets this meter's exchange go on, and this meter's own E5h, if it
        comes, is heard before the next request, or passed over in the REQ_UD2 that follows, and
        charged to the meter whose window closed without one (:meth:`_late_e5h`)."""
        data_asked = asks_for_data(request)
        if answer == bytes([ACK]):
            if not data_asked:
                return False
            self._late_e5h(came_after=self._exchange_started)
            return True
        try:
            telegram = decode_frame(answer)
        except DecodeError:
            return False  # its caller fails it, as before
        if data_asked and not self._from_another(request[2], telegram):
            return False
        self._heard_late(telegram)
        return True

    def _heard_late(self, telegram: dict[str, Any]) -> None:
        """A late long frame outside a search, counted and said as its sender's: a configured meter's
        (:meth:`LateAnswers.heard_from`), or a device's no meter of the bus is configured with, said by
        the address and identification it carries (:meth:`LateAnswers.heard_unconfigured`). Before,
        the latter was dropped uncounted: a device answering with another address than it is asked at
        failed its meter's polls as "no answer", its answers on the line, and nothing said so."""
        sender = self._meter_of(telegram)
        if sender is None:
            a_field, identification = telegram.get("a_field"), telegram.get("id")
            self.late_answers.heard_unconfigured(
                a_field if isinstance(a_field, int) else None,
                identification if isinstance(identification, str) else None,
            )
            return
        self._answered(sender)
        self.late_answers.heard_from(sender)

    def _from_another(self, address: int, telegram: dict[str, Any]) -> bool:
        """Whether ``telegram`` came from another meter than the one a REQ_UD2 to ``address`` asks."""
        if address != NETWORK_LAYER:
            return bool(telegram.get("a_field") != address)
        selected = self._asking.secondary_address if self._asking is not None else None
        return selected is not None and telegram.get("id") != selected

    def _exchange_with_all(self, frame: bytes, not_the_answer: Callable[[bytes], bool] | None = None) -> bytes:
        """An exchange several slaves may answer: every answer they may give is waited for."""
        self._exchange_started = self.line.monotonic()
        try:
            return self.line.exchange(frame, whole_window=True, not_the_answer=not_the_answer)
        finally:
            self._last_read_at = self.line.monotonic()

    def _request(self, frame: bytes, repeats: int) -> bytes:
        """Within a multi-telegram read, a lost answer is asked for again with the same FCB: the meter
        then repeats its last telegram instead of moving on (EN 13757-2 clause 5.5.2)."""
        for attempt in range(repeats + 1):
            try:
                return self._exchange(frame)
            except PollError:
                if attempt == repeats:
                    raise
        raise AssertionError("unreachable")

    def _initialise(self, meter: MeterConfig) -> None:
        """SND_NKE before a meter's first request on this line, and after a failure: it resets the
        meter's link layer (EN 13757-2 clause 5.3), so the first request's FCB is taken as new. A
        meter read by secondary address takes it at FDh once selected, which also deselects it
        (EN 13757-3 Annex E; :meth:`read_blocking` selects it again). Without it, a meter whose last
        request (from the gateway before a restart, or a hand-held reader) carried FCB = 1 took our
        first as a repeat and sent its old telegram again, stamped with the time of our read."""
        if meter.meter_id in self._initialised:
            return
        if meter.secondary_address is None:
            answer = self._exchange(build_snd_nke(meter.unit_id))
        else:
            self._select(meter)
            answer = self._exchange(build_snd_nke(NETWORK_LAYER))
        if answer != bytes([ACK]):
            raise PollError("SND_NKE not acknowledged")
        self._initialised.add(meter.meter_id)
        self._fcb[meter.meter_id] = True  # the first request after SND_NKE carries FCB = 1

    def _select(self, meter: MeterConfig) -> None:
        assert meter.secondary_address is not None
        answer = self._exchange(build_snd_ud_select(meter.secondary_address))
        if answer != bytes([ACK]):
            raise PollError("selection not acknowledged")

    def read_blocking(self, meter: MeterConfig) -> Reading:
        with self._line_held():
            self._asking, self._ended_silent, self._ended_refused = meter, False, False
            try:
                self._initialise(meter)
                if meter.secondary_address is not None:
                    self._select(meter)
                address = NETWORK_LAYER if meter.secondary_address is not None else meter.unit_id
                telegrams: list[dict[str, Any]] = []
                for _ in range(MAX_TELEGRAMS):
                    fcb = self._fcb.get(meter.meter_id, True)
                    answer = self._request(
                        build_req_ud2(address, fcb=fcb), repeats=self.config.retries if telegrams else 0
                    )
                    try:
                        telegram = decode_frame(answer)
                    except DecodeError as error:
                        raise PollError(str(error)) from error
                    if telegram.get("function") != "RSP_UD":
                        raise PollError(f"answered {telegram.get('function')}, not RSP_UD")
                    if meter.secondary_address is not None and telegram.get("id") != meter.secondary_address:
                        raise PollError(f"answer from {telegram.get('id')}, not the selected meter")
                    if meter.secondary_address is None and telegram.get("a_field") != meter.unit_id:
                        # a slow meter's late answer to the request before (EN 13757-2: a slave
                        # answers with its own address): not this meter's register
                        raise PollError(f"answer from address {telegram.get('a_field')}, not {meter.unit_id}")
                    if meter.secondary_address is None:
                        # the meter at this address, but is it this meter? (a meter exchanged, or
                        # addresses swapped: its register is not this meter's)
                        check_identification(self.identities, meter, telegram, self.clock(), self.config.meters)
                    self._fcb[meter.meter_id] = not fcb  # exchange complete: the next request toggles
                    self._answered(meter)
                    self._remember_access(telegram)
                    telegrams.append(telegram)
                    if not telegram.get("more_records_follow"):
                        break
                else:
                    raise PollError(f"more than {MAX_TELEGRAMS} telegrams")
            except LineUnusable:
                self._initialised.discard(meter.meter_id)
                # the bus's failure, not the meter's: said as a Modbus RTU bus's is (``mbus-1: cannot
                # open …``), and still a LineUnusable (before, ``MB000001: mbus-1: cannot open …``)
                raise
            except NoAnswer as error:
                self._initialised.discard(meter.meter_id)
                self._ended_silent = True
                raise NoAnswer(f"{meter.meter_id}: no answer from {addressed(meter)}") from error
            except PollError as error:
                self._initialised.discard(meter.meter_id)  # SND_NKE again next time
                self._ended_refused = isinstance(error, PollRefused)
                # a refusal stays one (an IdentificationMismatch), so the scheduler does not ask again
                failure = type(error) if isinstance(error, PollRefused) else PollError
                raise failure(f"{meter.meter_id}: {error}") from error
            return reading_from_records(meter, telegrams, self.clock(), self.config.name)

    async def read(self, meter: MeterConfig) -> Reading:
        return await asyncio.to_thread(self.read_blocking, meter)

    async def reset(self) -> None:
        """After a failed or timed-out attempt: abort the transaction under way (its thread may still
        be reading: a line that never goes quiet) and close the line, without waiting for that thread
        longer than it takes to see the abort. Every meter then has its SND_NKE on the reopened line
        (a port that failed mid-read, or an adapter plugged in again, leaves no knowledge of the
        meters' FCB state).

        Not after an attempt that ended on silence (a meter that did not answer in the answer window,
        the transaction over): the line stays open, listening until the next exchange, which hears
        its late answer (:meth:`_heard_pending`). Closed, a port hears nothing: a meter answering
        after the window every time looked like one that is not there.

        Nor after a refused answer (:class:`PollRefused`, another meter's at this meter's address):
        it came whole, the transaction is over, and the other meters' link layers are as they were.
        Closed, every meter of the bus had its SND_NKE again at its next poll, a request more each of
        the slow bus's time at every poll interval for as long as one meter is refused."""
        if self._listening():
            return
        await self._abort_and_close()

    def _listening(self) -> bool:
        """Whether the last transaction ended on silence or on a refused answer, and is over (its
        thread let go of the line): the line is in step, and stays open."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            return self._ended_silent or self._ended_refused
        finally:
            self._lock.release()

    async def _abort_and_close(self) -> None:
        self.line.abort()
        await asyncio.to_thread(self._close_when_free)

    def _close_when_free(self) -> None:
        if self._lock.acquire(timeout=RESET_WAIT_S):
            try:
                self._close_line()
            finally:
                self._lock.release()
        else:  # the aborted thread is stuck beyond a read (a write?): it closes the line once it lets go
            self._stale.set()

    def _close_line(self) -> None:
        self._stale.clear()
        self.line.close()
        self._initialised.clear()
        self._awaiting_e5h.clear()
        self._awaiting_data.clear()
        self._ended_silent = self._ended_refused = False

    async def close(self) -> None:
        await self._abort_and_close()

    def interrupt(self) -> None:
        """The bus is closing: stop a search under way, and abort the transaction on the line."""
        self._closing.set()
        self.line.abort()

    # secondary-address search (EN 13757-3 Annex E) ---------------------------------------------------
    def search_blocking(self, prefix: str = "") -> list[FoundMBus]:
        """Every meter on the line by its secondary identification: wildcard selections narrowed digit
        by digit.

        A selection answered by exactly one E5h holds one meter, read at FDh for its identification
        (and the reading and error flags its answer carries, which the scan's snippet says); the read
        takes only an answer whose identification the selection matches (another's is a late one:
        :meth:`_not_the_selected_meter_s`); a garbled answer is a collision, narrowed by the next
        digit; silence means none.

        A selection answered after the window (:meth:`_late_in_search`): heard before the next one,
        and after the last one, for which the line is listened to for as long again as the window
        before the search ends (an empty-looking line's only selection is its last).
        """
        found: list[FoundMBus] = []
        with self._line_held():
            self.line.listen(0)  # what came since the last poll is the polls' (a slow meter's E5h): theirs
            # a search's silences are no one's; the polls' E5h still awaited stay so (:meth:`_late_e5h`)
            self._asking, self._ended_silent, self._ended_refused = None, False, False
            self._silent_selections.clear()
            self._answered_selection = None
            self._read_selections.clear()
            self.late_in_search = []
            self.late_in_search_answered = []
            self.late_in_search_polls = []
            self.late_reads_in_search = []
            self._searching = True
            try:
                self._search(prefix, found)
                if self._silent_selections:  # the last selection went unanswered: its answer may come
                    self.line.listen(self.config.answer_timeout_s)
                    # heard till now: what comes next came after the listen (gateway.late_answers' bound)
                    self._last_read_at = self.line.monotonic()
            finally:
                self._searching = False
        return found

    def _found(self, telegram: dict[str, Any]) -> FoundMBus:
        """What a search says of the meter whose first telegram this is: the volume it reads (as a
        poll would take it) or why there is none, and its error flags record's value, if it has one."""
        identification = str(telegram["id"])
        address = telegram.get("a_field")  # the meter's primary address, as its answers carry it
        primary = address if isinstance(address, int) and address <= MAX_PRIMARY_ADDRESS else None
        probe = MeterConfig(identification, NETWORK_LAYER, "mbus", secondary_address=identification)
        try:
            volume = reading_from_records(probe, [telegram], self.clock(), self.config.name).volume_m3
        except (PollError, ValueError) as error:
            return FoundMBus(
                identification,
                None,
                str(error).removeprefix(f"{identification}: "),
                error_flags_record([telegram]),
                primary,
            )
        return FoundMBus(identification, volume, None, error_flags_record([telegram]), primary)

    def _search(self, prefix: str, found: list[FoundMBus]) -> None:
        closing = f"{self.config.name}: search stopped, the bus is closing ({len(found)} found by then)"
        if self._closing.is_set():
            raise PollError(closing)
        pattern = prefix + "F" * (8 - len(prefix))
        try:
            # a long frame is no selection's answer: a late one to the search's read, passed over
            answer = self._exchange_with_all(
                build_snd_ud_select(pattern),
                not_the_answer=lambda frame: self._late_read_in_search(frame, self._exchange_started),
            )
        except (LineNeverQuiet, LineUnusable, TransactionAborted) as error:
            # not a collision: narrowing down would take 10^8 selections (a device that would not open
            # was taken for one, and searched at 100% CPU for good, deaf to Ctrl-C)
            if self._closing.is_set():
                raise PollError(closing) from error
            raise PollError(f"{self.config.name}: search stopped, {len(found)} found by then: {error}") from error
        except NoAnswer:
            self._silent_selections.append(pattern)
            return
        except PollError:
            answer = b""  # collision or garbage: more than one meter matches
        self._silent_selections.clear()
        self._answered_selection = pattern
        if answer == bytes([ACK]):
            self._read_selections.append(pattern)
            try:
                # only the selected meter's answer: a slow one's late answer to its own read is passed over
                read = self._exchange_with_all(
                    build_req_ud2(NETWORK_LAYER, fcb=True),
                    not_the_answer=lambda frame: self._not_the_selected_meter_s(pattern, frame),
                )
            except PollError:
                self._initialised.clear()  # which meter took the read is not known: every one's SND_NKE again
            else:
                try:
                    telegram = decode_frame(read)
                    if self._sent_before(telegram):
                        telegram = self._read_again(pattern)
                    self._read_by_search(telegram)
                    found.append(self._found(telegram))
                    return
                except (PollError, DecodeError, KeyError):
                    self._initialised.clear()
            # read failed: narrow down as if two had answered
        if len(prefix) == 8:
            return
        for digit in "0123456789":
            self._search(prefix + digit, found)

    def _read_by_search(self, telegram: dict[str, Any]) -> None:
        """The meter that sent ``telegram``, read by the search with FCB = 1 outside its polls' FCB
        tracking, gets SND_NKE before its next poll (:meth:`_initialise`). EN 13757-2 (FCB/FCV): a meter
        takes a REQ_UD2 with FCV set and the same FCB as the last one it answered as a repeat, and
        sends its last telegram again. Before, a configured meter whose next poll carried FCB = 1 (a
        two-telegram read ends on FCB = 0) answered that poll with the search's telegram, its volume
        at the search stamped with the poll's time; and a meter with more telegrams was left in the
        middle of its sequence (the search reads only the first). A read that failed may have been
        taken by any meter the selection holds: the search's caller clears every meter's link state."""
        self._remember_access(telegram)
        sender = self._meter_of(telegram)
        if sender is not None:
            self._initialised.discard(sender.meter_id)

    def _remember_access(self, telegram: dict[str, Any]) -> None:
        if isinstance(access := telegram.get("access_no"), int):
            self._access_seen[telegram.get("id"), telegram.get("manufacturer")] = access

    def _sent_before(self, telegram: dict[str, Any]) -> bool:
        """Whether ``telegram``, the answer to the search's read, is the last one this gateway took from
        its meter, sent again: the same access number (EN 13757-3, counted on by one with each new
        RSP_UD; a repeat is the same telegram). The search reads with FCB = 1 and cannot reset the meter
        first (an SND_NKE at FDh deselects it, EN 13757-3 Annex E): a meter whose last request, a poll's
        or an earlier search's, carried FCB = 1 took the read as a repeat (EN 13757-2, FCB/FCV). Before,
        the scan said that telegram's volume, the meter's at that request, as what it read now. A
        meter this gateway never read is not known so (its last request may be a hand-held reader's)."""
        access = telegram.get("access_no")
        seen = self._access_seen.get((telegram.get("id"), telegram.get("manufacturer")))
        return isinstance(access, int) and seen == access

    def _read_again(self, pattern: str) -> dict[str, Any]:
        """The selected meter read again with FCB = 0: after its answer to FCB = 1, a new request
        whatever its state, so a fresh telegram: the first of its sequence if the one repeated said no
        more records follow (a read that ended), else the next (with no current volume, the scan says
        so: not a stale volume). One exchange more, only for a meter that sent a telegram again; an
        access number that comes round again after 256 telegrams costs one more read, still fresh."""
        read = self._exchange_with_all(
            build_req_ud2(NETWORK_LAYER, fcb=False),
            not_the_answer=lambda frame: self._not_the_selected_meter_s(pattern, frame),
        )
        return decode_frame(read)

    async def search(self) -> list[FoundMBus]:
        return await asyncio.to_thread(self.search_blocking)
