"""Wireless M-Bus: listen to a receiver (iM871A HCI over a serial port); nothing is polled.

Each telegram's sender is read first, without decrypting anything
(:func:`firmware_protocols.wmbus.telegram.telegram_address`): telegrams of configured meters are
decoded (and decrypted with the meter's key) by :func:`firmware_protocols.wmbus.decode.decode_telegram`;
others, a neighbour's encrypted meters among them, are counted as unknown meters and ignored, neither
a failed attempt of the bus nor a warning; they are remembered (a bounded number), so that a silent
meter whose id looks typed wrong, one the receiver hears close to it, says so
(:mod:`gateway.wmbus_unconfigured`). A configured meter's telegram that cannot be opened (a
wrong or missing key, a garbled telegram) is a failed attempt, said once per episode naming the meter
and what to do, and the reason its meter's health gives for the interval. A telegram carrying a
configured meter's identification is its meter's only if it comes from a water meter and, where the
meter's ``manufacturer`` is configured, from that manufacturer; one that opens with the meter's key
but whose encrypted transport header names another meter is not its reading (a failed attempt, said,
and its interval's reason: :meth:`WMBusListener._names_another`). One telegram
can be heard twice (directly and through a repeater, or by two receivers): a telegram whose meter,
access number and records were already taken within ``duplicate_window_s`` is dropped, a reload of
the configuration in between or not (:mod:`gateway.wmbus_duplicates`). One recorded
and sent again later is refused by its AFL message counter or the meter's clock
(:mod:`gateway.wmbus_replay`).

Health works in intervals of the bus's ``poll_interval_s`` (the meters' send interval): a meter heard
counts as a good poll; an interval without it as a failed one (each interval from the meter's last
telegram, and a quarter of it more for its send times' jitter), so ``offline_after`` silent intervals
raise ``meter_offline``, and the next telegram ``meter_online``. A silent interval's failure says
why it may have been silent: the receiver failing, or bytes from it dropped as garbled meanwhile.
Each meter's interval under way is the receiver's memory's, not the listener's, so a reload of the
configuration carries it on rather than beginning it again (:mod:`gateway.wmbus_intervals`). So are
the episodes said once while they last and the lines said once per meter (:mod:`gateway.wmbus_said`):
a reload neither says a warning again nor ends an episode unsaid.

A receiver that will not open (unplugged) or fails its reads is tried again after a growing wait,
up to 30 s, and said once per episode (gateway.episodes): its first failure with the reason, a
reminder every hour while it goes on, and its working again (the first read after opening it) at
INFO. Before, each try was a warning: 2,880 a day for a stick left out.
"""

from __future__ import annotations

import asyncio
import logging
import termios
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import serial

from aquami.clock import Clock, utc_now
from aquami.contracts.reads import Reading, utc_iso
from aquami.durations import lasted
from firmware_protocols.errors import DecodeError
from firmware_protocols.mbus.header import WATER_METER_TYPES
from firmware_protocols.wmbus.decode import decode_telegram
from firmware_protocols.wmbus.errors import KeyMissingError, WrongKeyError
from firmware_protocols.wmbus.receiver import ReceiverStreamParser
from firmware_protocols.wmbus.telegram import MeterAddress, telegram_address
from gateway.backoff import Backoff, pause
from gateway.config import MeterConfig, WMBusBusConfig
from gateway.episodes import REMIND_EVERY_S, Episodes
from gateway.mbus import reading_from_records
from gateway.serial_port import open_exclusive, why_open_failed, why_tcsetattr_failed
from gateway.spool import NotSpooled
from gateway.transport import PollError
from gateway.wmbus_duplicates import DuplicateFilter
from gateway.wmbus_replay import Freshness, FreshnessStore, ReplayGuard, freshness_of
from gateway.wmbus_unconfigured import ReceiverMemory, mistyped_hint

log = logging.getLogger(__name__)
_REOPEN_MIN_S, _REOPEN_MAX_S = 0.5, 30.0  # waits before reopening a receiver that failed, or opening one
#: A message still not whole after the line has been this quiet never will be (the longest takes
#: 45 ms at 57,600 baud): its start was noise, and the bytes after it are read again.
_QUIET_S = 0.5


def _was_encrypted(decoded: dict[str, Any]) -> bool:
    """Whether the telegram's data came encrypted: the transport layer's (security mode 5 or 7 with
    blocks announced) or the extended link layer's (AES-CTR)."""
    session = ((decoded.get("ell") or {}).get("session_number")) or {}
    if session.get("encryption"):
        return True
    configuration = decoded.get("configuration") or {}
    return bool(decoded.get("security_mode")) and configuration.get("encrypted_blocks", 1) > 0


def _why_not_decoded(meter: MeterConfig, device: str, error: DecodeError) -> str:
    """Why ``meter``'s telegram was not taken, and what the technician does about it."""
    who = f"{meter.meter_id} (id {device})"
    if isinstance(error, WrongKeyError):
        return (
            f"{who}: its telegram does not decrypt with the key configured for it ({error}): nothing taken; "
            f"check the meter's key in the gateway's file against its key sheet"
        )
    if isinstance(error, KeyMissingError):
        return (
            f"{who} sends encrypted telegrams and the gateway's file gives it no key ({error}): nothing taken; "
            f'add key = "…" (the 32 hex digits of its key sheet) to its [[meters]] entry'
        )
    return f"{who}: telegram not decoded: {error}"


class OnHeard(Protocol):
    """A meter heard (``ok``) or not in its interval; ``error`` says why a telegram heard failed."""

    def __call__(self, meter: MeterConfig, ok: bool, error: str | None = None) -> None: ...


class WMBusListener:
    def __init__(
        self,
        config: WMBusBusConfig,
        on_reading: Callable[[Reading], Awaitable[None]],
        on_heard: OnHeard,
        on_attempt: Callable[[bool], None] | None = None,
        clock: Clock = utc_now,
        may_take: Callable[[], bool] = lambda: True,
        on_skip: Callable[[], None] | None = None,
        freshness: FreshnessStore | None = None,
        on_replay: Callable[[], None] | None = None,
        remind_every_s: float = REMIND_EVERY_S,
        on_unconfigured: Callable[[int], None] | None = None,
        memory: ReceiverMemory | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.config = config
        self.on_reading = on_reading
        self.on_heard = on_heard
        self.on_attempt = on_attempt
        self.may_take = may_take  # the stop_polling policy: no readings while the spool is full
        self.on_skip = on_skip
        self.on_replay = on_replay  # the bus's health counts replayed telegrams
        self.on_unconfigured = on_unconfigured  # the bus's health shows how many unconfigured senders it hears
        self.replay_guard = ReplayGuard(freshness)  # the spool keeps what was last accepted per meter
        self.clock = clock
        self.monotonic = monotonic  # when a telegram is heard, and the checks' time: a meter's interval
        self.meters = {m.wmbus_id: m for m in config.meters if m.wmbus_id}
        self.keys = {ident: m.key for ident, m in self.meters.items() if m.key is not None}
        self.parser = self._new_parser()
        self.telegrams = 0
        self.duplicates_dropped = 0
        self.unknown_meters = 0
        self.undecodable = 0
        self.unencrypted_refused = 0  # telegrams in the clear from a meter given a key: forged, or misconfigured
        #: telegrams opened with a meter's key whose encrypted header names another meter (_names_another)
        self.naming_another = 0
        self.clear_records_dropped = 0  # records a keyed meter's mode 5 telegram carried in the clear
        self.replayed = 0  # telegrams older than one already taken from their meter (gateway.wmbus_replay)
        # each meter's send interval (its own, or the bus's); when its current one ends is the memory's
        self._interval = {m.meter_id: m.poll_interval_s or config.poll_interval_s for m in config.meters}
        #: the receiver's port is open: what it sends from now on is heard (before, it goes nowhere)
        self.port_open = False
        #: who else the receiver hears, for a mistyped id's hint, the noise it dropped, each meter's
        #: current send interval, the episodes said once while they last (the receiver failing, a
        #: meter's telegrams not decoding, naming another, a silent meter with ids close to its own),
        #: the lines said once per meter, and the telegrams taken lately (a repeater's copy dropped):
        #: the gateway's, kept across reloads (gateway.wmbus_unconfigured, gateway.wmbus_intervals,
        #: gateway.wmbus_said, gateway.wmbus_duplicates), so a reload neither begins a meter's interval
        #: again, nor says a warning again, nor takes a repeater's copy as a second reading
        self.memory = ReceiverMemory() if memory is None else memory
        self.memory.listened_to(config.meters, self._interval, self.clock())
        self.unconfigured = self.memory.senders
        self.intervals = self.memory.intervals
        self.said = self.memory.said
        self.said.remind_every(remind_every_s)
        self.duplicates: DuplicateFilter = self.memory.duplicates
        self.duplicates.window_s = config.duplicate_window_s  # a reload's change applies to what it holds

    def _new_parser(self) -> ReceiverStreamParser:
        return ReceiverStreamParser(require_fcs=self.config.require_fcs)

    def _why_not_open(self, error: serial.SerialException | OSError | termios.error) -> str:
        """The reason once, as an M-Bus or Modbus RTU bus says it (not pyserial's ``[Errno 2] could
        not open port /dev/ttyUSB2: [Errno 2] No such file or directory: '/dev/ttyUSB2'``)."""
        if isinstance(error, termios.error):
            return why_tcsetattr_failed(error, self.config.framing)
        return why_open_failed(error)

    def _open(self) -> serial.Serial:
        c = self.config
        return open_exclusive(c.device, c.framing, 0.2)  # locked: another program's reads would take its bytes

    async def handle(self, telegram: bytes) -> Reading | None:
        """One telegram from the receiver: a reading, or None (unknown meter, duplicate, undecodable)."""
        self.telegrams += 1
        self.memory.telegrams += 1
        at = self.clock()
        heard_at = self.monotonic()  # its meter's next interval begins here if it is taken
        try:  # whose telegram, before any decryption: a neighbour's is none of this bus's business
            address = telegram_address(telegram, crcs=False)
        except DecodeError as error:
            self._failed(f"telegram not decoded: {error}")
            return None
        meter = self.meters.get(address.id)
        if meter is None or not self._is_meter(meter, address):
            self.unknown_meters += 1
            self._heard_unconfigured(address)
            return None
        try:
            decoded = decode_telegram(telegram, self.keys, crcs=False)
        except DecodeError as error:
            self._not_decoded(meter, address.id, error)
            return None
        self._decoded_again(meter)
        ident = (decoded.get("meter") or {}).get("id") or decoded["id"]
        if ident != address.id:  # an ELL encrypted with AES-CTR hid a long TPL header naming another
            self._names_another(meter, address.id, decoded)
            return None
        self._names_itself_again(meter)
        if self.on_attempt:
            self.on_attempt(True)
        if meter.key is not None and not _was_encrypted(decoded):
            # wmbusmeters refuses these too: anyone can send a plain telegram with the meter's id
            self.unencrypted_refused += 1
            log.warning("%s: %s sent a telegram in the clear though it has a key: refused", self.config.name, ident)
            return None
        decoded = self._trusted(meter, decoded)
        if not self.duplicates.first_time(meter.meter_id, decoded.get("access_no") or 0, decoded["records"]):
            self.duplicates_dropped += 1  # a repeater's copy: heard twice within the window
            return None
        heard = freshness_of(decoded) if meter.key is not None else None  # a plain one anyone can forge
        if heard is not None and not self.replay_guard.known(meter.meter_id, address.id):
            # the meter's first telegram in this run: what was last accepted from it is read from the
            # spool (SQLite, on an SD card tens of ms or more, behind the spool's lock if another write
            # holds it), in a thread, as its write is below. Before, on the event loop: the gateway's
            # MQTT keepalives and every bus's polls waited on it.
            await asyncio.to_thread(self.replay_guard.last, meter.meter_id, address.id)
        if heard is not None and self._replayed(meter, address.id, heard):
            return None
        if not self.may_take():  # like a skipped poll: the meter's next telegram carries its register
            self._heard_at(meter, heard_at)
            if self.on_skip:
                self.on_skip()
            return None
        try:
            reading = reading_from_records(meter, [decoded], at, self.config.name, protocol="wmbus")
        except PollError as error:  # a telegram without the current volume (only a flow, say)
            self.undecodable += 1
            log.warning("%s: telegram gives no reading: %s", self.config.name, error)
            return None
        self._heard_at(meter, heard_at)  # heard: its interval's outcome is told here
        try:
            await self.on_reading(reading)
        except Exception as refused:  # a full disk: heard, but its reading will not be delivered
            self.on_heard(meter, False, f"spool: {refused}")
            raise NotSpooled(f"{meter.meter_id}: heard, but not spooled: {refused}") from refused
        if heard is not None:
            await asyncio.to_thread(self.replay_guard.accept, meter.meter_id, address.id, heard)
        self.on_heard(meter, True)
        self._heard_again(meter)
        return reading

    def _heard_at(self, meter: MeterConfig, at: float) -> None:
        """``meter`` heard at ``at`` (monotonic): its next send interval begins then
        (:meth:`gateway.wmbus_intervals.SendIntervals.heard`)."""
        length_s = self._interval[meter.meter_id]
        self.intervals.heard(meter.meter_id, at, length_s, self.memory.telegrams, self.noise_bytes)

    def _heard_unconfigured(self, address: MeterAddress) -> None:
        """A sender no meter is configured with (or not of the configured make or medium): remembered
        as the listener's latest telegram, never taken."""
        before = len(self.unconfigured)
        self.unconfigured.heard(address, self.memory.telegrams)
        if self.on_unconfigured and len(self.unconfigured) != before:
            self.on_unconfigured(len(self.unconfigured))

    def _heard_again(self, meter: MeterConfig) -> None:
        """``meter``'s reading taken: the end of its episode of silence with ids close to its own."""
        ended = self.said.mistyped.ended(meter.meter_id)
        if ended is not None:
            name, ident = meter.meter_id, meter.wmbus_id
            log.info("%s: %s (id %s) heard again after %s", self.config.name, name, ident, lasted(ended[1]))

    def _say_mistyped(self, meter: MeterConfig, why: str) -> None:
        """A silent interval of ``meter`` while ids close to its own were heard: said once an
        episode, reminded while it lasts."""
        episode = self.said.mistyped.failed(meter.meter_id)
        if episode is None:
            return
        if episode.first:
            log.warning(
                "%s: %s (id %s): %s (said again every %s while it lasts)",
                self.config.name, meter.meter_id, meter.wmbus_id, why, lasted(self.said.mistyped.remind_every_s),
            )  # fmt: skip
        else:
            log.warning(
                "%s: %s (id %s) still silent, %s intervals since %s, the last: %s",
                self.config.name, meter.meter_id, meter.wmbus_id, f"{episode.failures:,}", utc_iso(episode.since), why,
            )  # fmt: skip

    def _replayed(self, meter: MeterConfig, device: str, heard: Freshness) -> bool:
        """Whether the telegram is older than one already taken from the meter: counted as replayed
        (not a failed attempt of the bus), logged once per meter with what gave it away."""
        why = self.replay_guard.why_replayed(meter.meter_id, device, heard)
        if why is None:
            return False
        self.replayed += 1
        if self.on_replay:
            self.on_replay()
        if meter.meter_id not in self.said.replay_logged:
            self.said.replay_logged.add(meter.meter_id)
            log.warning(
                "%s: %s (id %s) sent a telegram whose %s: refused as a replay (logged once per meter)",
                self.config.name,
                meter.meter_id,
                device,
                why,
            )
        return True

    def _is_meter(self, meter: MeterConfig, address: MeterAddress) -> bool:
        """Whether a telegram with ``meter``'s identification is from it: the identification is unique
        only with the manufacturer and device type (EN 13757-4:2019 12.5.5, 12.5.6), so it must come
        from a water meter (EN 13757-3:2018 Table 12: 06h, 07h, 15h, 16h) and, where ``manufacturer``
        is configured, from that manufacturer. Another (a neighbour's heat meter with the same
        serial) is logged once per meter and counted as an unknown meter."""
        ours = address.device_type in WATER_METER_TYPES and meter.manufacturer in (None, address.manufacturer)
        if not ours and meter.meter_id not in self.said.other_senders_logged:
            self.said.other_senders_logged.add(meter.meter_id)
            expected = f"{meter.manufacturer or 'any manufacturer'}'s water meter"
            log.warning(
                "%s: a telegram with %s's id %s comes from %s %s (device type %02Xh), not %s: not taken "
                "(logged once per meter)",
                self.config.name,
                meter.meter_id,
                address.id,
                address.manufacturer,
                address.medium,
                address.device_type,
                expected,
            )
        return ours

    def _trusted(self, meter: MeterConfig, decoded: dict[str, Any]) -> dict[str, Any]:
        """The telegram with only the records its key vouches for. In security mode 5 the records
        after the N encrypted blocks travel in the clear, authenticated by nothing (EN 13757-7:2018
        7.5, 9): anyone could lower N and write a volume there. For a meter with a key they are
        dropped (counted, logged once per meter). In mode 7 the AFL MAC, which the decoder always
        verifies, covers them; behind an ELL encrypted with AES-CTR every record was encrypted."""
        if meter.key is None or decoded.get("security_mode") != 5:
            return decoded
        records = decoded["records"]
        kept = decoded["encrypted_records"]
        if kept == len(records):
            return decoded
        self.clear_records_dropped += len(records) - kept
        if meter.meter_id not in self.said.clear_records_logged:
            self.said.clear_records_logged.add(meter.meter_id)
            log.warning(
                "%s: %s sent %d of %d records after its encrypted blocks, in the clear (security mode 5): "
                "dropped, as anyone could have written them (logged once per meter)",
                self.config.name,
                meter.meter_id,
                len(records) - kept,
                len(records),
            )
        return {**decoded, "records": records[:kept]}

    def _not_decoded(self, meter: MeterConfig, device: str, error: DecodeError) -> None:
        """A configured meter's telegram that cannot be opened (a wrong or missing key, a garbled
        telegram): a failed attempt of the bus, the reason its meter's health gives at the end of
        its interval, and a warning once per episode that names the meter and what to do. Before,
        each telegram logged ``radio-1: telegram not decoded: meter 77000001: … the key is wrong``,
        the gateway's meter unnamed, every send interval, and the meter's health said no reason."""
        self.undecodable += 1
        if self.on_attempt:
            self.on_attempt(False)
        why = _why_not_decoded(meter, device, error)
        self.intervals.fail(meter.meter_id, why)
        self._warn_once_an_episode(self.said.undecoded, meter, why, "its telegrams decode", "not decoded")

    def _names_another(self, meter: MeterConfig, device: str, decoded: dict[str, Any]) -> None:
        """``meter``'s telegram, opened with its key (an extended link layer encrypted with AES-CTR,
        under the link address ``device``), whose long transport header inside names another meter.

        The records are that meter's (EN 13757-7:2018 7.4: the long header names the meter, the link
        address may be a radio module's), or the telegram was altered on the air (AES-CTR lets bits
        be flipped without the key, its payload CRC mended). Either way none is ``meter``'s reading:
        a failed attempt, the reason its health gives for the interval (it said "no telegram heard"),
        said once an episode. The id inside is not remembered as an unconfigured sender heard: the
        receiver does not hear it, only ``meter``'s key shows it, and "is the id … mistyped?" would
        send the technician to configure an id the gateway still cannot read (it looks a telegram up
        by the link address, the only one readable before decrypting)."""
        self.naming_another += 1
        if self.on_attempt:
            self.on_attempt(False)
        inner = decoded.get("meter") or {}
        why = (
            f"{meter.meter_id} (id {device}): its telegram opens with its key, but the transport header "
            f"encrypted in it names meter {inner.get('id')} ({inner.get('manufacturer')}, {inner.get('medium')}): "
            f"nothing taken (a radio module sending that meter's records under the id {device}, which the "
            "gateway cannot take as this meter's, or a telegram altered on the air, which the extended link "
            "layer's AES-CTR does not prevent)"
        )
        self.intervals.fail(meter.meter_id, why)
        self._warn_once_an_episode(self.said.naming_another, meter, why, "its telegrams name it", "name another meter")

    def _warn_once_an_episode(
        self, episodes: Episodes[str], meter: MeterConfig, why: str, until: str, still: str
    ) -> None:
        """A failure of ``meter`` in ``episodes`` (by meter id) warned if it begins an episode (``why``,
        and that it is said again until ``until``), or a reminder is due (its telegrams ``still``…)."""
        episode = episodes.failed(meter.meter_id)
        if episode is None:
            return
        if episode.first:
            log.warning(
                "%s: %s (said again every %s while it lasts, and once %s)",
                self.config.name, why, lasted(episodes.remind_every_s), until,
            )  # fmt: skip
        else:
            log.warning(
                "%s: %s's telegrams still %s, %s since %s, the last: %s",
                self.config.name, meter.meter_id, still, f"{episode.failures:,}", utc_iso(episode.since), why,
            )  # fmt: skip

    def _names_itself_again(self, meter: MeterConfig) -> None:
        """A telegram of ``meter`` naming it: the end of its episode of telegrams naming another, if any."""
        ended = self.said.naming_another.ended(meter.meter_id)
        if ended is not None:
            episode, seconds = ended
            log.info(
                "%s: %s's telegrams name it again after %s, %s named another meter",
                self.config.name, meter.meter_id, lasted(seconds), f"{episode.failures:,}",
            )  # fmt: skip

    def _decoded_again(self, meter: MeterConfig) -> None:
        """A telegram of ``meter`` decoded: the end of its episode of undecodable ones, if any."""
        ended = self.said.undecoded.ended(meter.meter_id)
        if ended is not None:
            episode, seconds = ended
            log.info(
                "%s: %s's telegrams decode again after %s, %s not decoded",
                self.config.name, meter.meter_id, lasted(seconds), f"{episode.failures:,}",
            )  # fmt: skip

    def _failed(self, why: str) -> None:
        """A telegram that cannot be read (its headers garbled), or a configured meter's that cannot
        be opened: a failed attempt of the bus, logged."""
        self.undecodable += 1
        if self.on_attempt:
            self.on_attempt(False)
        log.warning("%s: %s", self.config.name, why)

    def check_silence(self, now: float | None = None) -> None:
        """Each meter whose send interval (its own ``poll_interval_s``, or the bus's) has ended
        without a telegram counts a failed poll (a meter sending every 15 minutes on a bus checked
        every 5 went offline and online again every quarter of an hour). A meter's interval begins at
        its last telegram heard and ends a grace after its length; unheard, the next begins where
        it ended, not at this check (gateway.wmbus_intervals: before, the boundaries drifted through
        the meter's send times, and an interval with no telegram in it was a failed poll of a meter
        sending every interval). A meter's first interval begins at the first check of the first
        listener that has it, or at its first telegram if that comes sooner; a reload's listener
        carries on the interval under way."""
        now = self.monotonic() if now is None else now
        for meter in self.config.meters:
            length_s = self._interval[meter.meter_id]
            interval = self.intervals.current.get(meter.meter_id)
            if interval is None:
                self.intervals.begin(meter.meter_id, now, length_s, self.memory.telegrams, self.noise_bytes)
                continue
            if now < interval.ends:
                continue
            # a telegram that failed in the interval says why; else the silence, what the receiver's
            # line shows of it, and the ids heard meanwhile close to the meter's
            why = self.intervals.outcome(meter.meter_id)
            if why is None:
                why = self._why_silent(meter, self.noise_bytes - interval.noise_at)
                close = self.unconfigured.close_to(meter, interval.telegrams_at)
                if close:
                    why = f"{why}; {mistyped_hint(meter, close)}"
                    self._say_mistyped(meter, why)
            self.on_heard(meter, False, why)
            self.intervals.next_after(meter.meter_id, now, self.memory.telegrams, self.noise_bytes)

    @property
    def noise_bytes(self) -> int:
        """Bytes from the receiver dropped as no message whole and intact (a garbled or cut-off
        message, line noise), since the gateway started (its listeners before a reload's among them)."""
        return self.memory.noise_bytes + self.parser.discarded_bytes

    def _retire_parser(self) -> None:
        """The parser reads no more (the receiver lost, or the listener stopping): its noise is kept
        in the receiver's memory, and a new parser begins clean (a message cut off is not continued)."""
        self.memory.noise_bytes += self.parser.discarded_bytes
        self.parser = self._new_parser()

    def _why_silent(self, meter: MeterConfig, dropped: int) -> str:
        """Why a meter's interval ended unheard, as its health's ``last_error``: before, ``null``,
        whether the receiver was unplugged, its line garbled the telegram, or the meter was silent."""
        interval = lasted(self._interval[meter.meter_id])
        why = f"no telegram heard from it in its send interval ({interval})"
        if self.said.receiver_failing is not None:
            return f"{why}: the receiver on {self.config.device} fails ({self.said.receiver_failing})"
        if dropped:
            return (
                f"{why}; {dropped:,} bytes of garbled or cut-off messages from the receiver were dropped "
                "meanwhile (its telegram may be among them: check the receiver's cable and port)"
            )
        return why

    async def _watch(self, stop: asyncio.Event) -> None:
        self.check_silence()  # each meter's first interval starts now
        every = min([self.config.poll_interval_s, *self._interval.values()])
        while not stop.is_set():
            await pause(stop, every)
            if not stop.is_set():
                self.check_silence()

    def _say_unusable(self, why: str, then: str) -> None:
        """The receiver failed (``why``): said whole with what comes ``then`` if it begins an
        episode, as a reminder if one is due, else not."""
        self.said.receiver_failing = why
        episode = self.said.unusable.failed(self.config.device)
        if episode is None:
            return
        if episode.first:
            log.warning(
                "%s: %s; %s (said again every %s while it fails, and once it works)",
                self.config.name, why, then, lasted(self.said.unusable.remind_every_s),
            )  # fmt: skip
        else:
            log.warning(
                "%s: receiver on %s still failing, %s tries failed since %s, the last: %s",
                self.config.name, self.config.device, f"{episode.failures:,}", utc_iso(episode.since), why,
            )  # fmt: skip

    def _say_working(self) -> None:
        """A read from the open receiver went through: the end of its episode of failures, if any."""
        self.said.receiver_failing = None
        ended = self.said.unusable.ended(self.config.device)
        if ended is not None:
            episode, seconds = ended
            log.info(
                "%s: receiver on %s works again after %s, %s tries failed",
                self.config.name, self.config.device, lasted(seconds), f"{episode.failures:,}",
            )  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        watcher = asyncio.create_task(self._watch(stop))
        port: serial.Serial | None = None
        # a receiver that opens but fails every read (a USB stick in a bad state) is reopened after
        # a growing wait, not at once: that spun the loop, logging, as fast as it could fail; one
        # that will not open (unplugged) is tried again after the same growing wait, up to 30 s
        # (a fixed 5 s logged 17,280 warnings a day for a stick left out; the 30 s cap, 2,880: now
        # said once an episode, reminded hourly)
        reopen = Backoff(_REOPEN_MIN_S, _REOPEN_MAX_S)
        quiet_since = time.monotonic()
        try:
            while not stop.is_set():
                if port is None:
                    try:
                        port = await asyncio.to_thread(self._open)
                        self.port_open = True
                    except (serial.SerialException, OSError, termios.error) as error:  # termios.error: no OSError
                        wait = reopen.next()
                        why = f"cannot open {self.config.device}: {self._why_not_open(error)}"
                        self._say_unusable(why, f"trying again in {wait:.1f} s")
                        await pause(stop, wait)
                        continue
                try:
                    data = await asyncio.to_thread(port.read, 4096)
                except (serial.SerialException, OSError, termios.error) as error:  # termios.error: no OSError
                    wait = reopen.next()
                    self._say_unusable(f"receiver lost: {error}", f"reopening in {wait:.1f} s")
                    port.close()
                    port = None
                    self.port_open = False
                    # a message cut off by the stick's going is not continued by the next one
                    self._retire_parser()
                    await pause(stop, wait)
                    continue
                self._say_working()
                if data:
                    reopen.reset()
                    quiet_since = time.monotonic()
                    heard = self.parser.feed(data)
                elif self.parser.waiting and time.monotonic() - quiet_since > _QUIET_S:
                    heard = self.parser.resync()  # a last message without FCS is whole; one never whole, noise
                else:
                    heard = []
                for received in heard:
                    try:
                        await self.handle(received.telegram)
                    except NotSpooled:  # a failure of the meter's, in its health; the spool's writer said why
                        pass
                    except Exception:  # anything else lost one telegram, not the bus
                        log.exception("%s: telegram not taken", self.config.name)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            self._retire_parser()  # its noise counts in the intervals a reload's listener carries on
            if port is not None:
                port.close()
            self.port_open = False
