"""The gateway process: schedule every bus, spool each reading, publish from the spool, report health.

Readings go to the spool through one writer task that commits whatever has arrived since its last
commit in one transaction (group commit), and a poll counts as done only once its reading is on disk.
Events go through another writer task, in the order emitted, each with the meter health it changes;
both writers store in a thread, so SQLite's writes and fsyncs never hold up the event loop.
The MQTT side runs on the publisher's own thread; commands from the broker are handed to this event
loop (:mod:`gateway.commands`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aquami.clock import Clock, utc_now
from aquami.contracts.reads import Reading, events_topic, utc_iso
from gateway.backoff import pause
from gateway.buses import make_transport
from gateway.commands import Commands
from gateway.config import GatewayConfig, MeterConfig, WMBusBusConfig
from gateway.event_json import EventNotJson, event_json, logged_value
from gateway.health import Health, LinkState, SavedMeter
from gateway.late_episodes import LateEpisodes
from gateway.meter_identity import MeterIdentities
from gateway.poll_episodes import PolledEpisodes
from gateway.profiles import ProfileBook
from gateway.publisher import Publisher
from gateway.publisher_spool import SPOOL_ERRORS
from gateway.room_looks import RoomLooks
from gateway.scheduler import BusScheduler
from gateway.spool import Spool, SpoolFull, SpoolUnusable
from gateway.spool_writes import SpoolWrites, Written
from gateway.unwritable_events import UnwritableEvents
from gateway.wmbus import WMBusListener
from gateway.wmbus_unconfigured import ReceiverMemory

log = logging.getLogger(__name__)

OVERFLOW_EVENT_EVERY_S = 10.0  # drops are reported at once, then summed into one event per this interval

#: What becomes of the events a failing spool does not store (said with its first failure).
_EVENTS_MEANWHILE = (
    "the events meanwhile are in this log alone (each its `event …` line), not sent to the broker, "
    "and counted in events_not_spooled"
)

#: What becomes of the readings a failing spool does not store (said with its first failure).
_READINGS_MEANWHILE = "each poll meanwhile fails with it, its reading lost and counted in readings_not_spooled"

#: An event's fields its log line leaves out: the gateway's log names the gateway and dates the line.
_SAID_BY_THE_LOG = ("gateway_id", "event", "meter_id", "ts")


@dataclass(frozen=True)
class _EventWrite:
    """An event (or, with no topic, meters' health alone) waiting for the event writer's thread;
    ``stored``, if given, is done once the writer has stored it (or said why not)."""

    topic: str | None
    payload: bytes
    meter_health: list[SavedMeter]
    stored: asyncio.Future[None] | None = field(default=None, compare=False)


def event_line(event: dict[str, Any]) -> str:
    """An event as the gateway's log says it: its name, its meter if it has one, and its details
    (``event gateway_stopped: reason="SIGTERM" spool_depth=0``), each value as JSON, so a reason's
    spaces or line breaks keep to one line. Before, the details were left out: ``event
    gateway_stopped`` said neither why nor what the spool held, ``event spool_overflow`` not how many
    readings were dropped; they were in the events table alone, or in the spool while the broker was
    away. A value with no JSON form is said by its ``repr`` (:func:`gateway.event_json.logged_value`):
    before, the line raised, and with it :meth:`Gateway.emit` into whatever raised the event."""
    name = " ".join(str(event[key]) for key in ("event", "meter_id") if key in event)
    details = " ".join(f"{key}={logged_value(value)}" for key, value in event.items() if key not in _SAID_BY_THE_LOG)
    return f"event {name}: {details}" if details else f"event {name}"


class Gateway:
    def __init__(self, config: GatewayConfig, config_path: Path | None = None, clock: Clock = utc_now):
        self.config = config
        self.config_path = config_path
        self.clock = clock
        self.spool = Spool(
            config.spool_path,
            config.spool.max_readings,
            config.spool.policy == "drop_oldest",
            on_damage=config.spool.on_damage,
            clock=clock,
        )
        #: the gateway's own writes to the spool failing (meters' health, events, readings): said once an episode
        self._spool_writes = SpoolWrites(self.spool.path, log)
        #: events of a kind the gateway cannot write as JSON (a bug): said once an episode, apart from the spool's
        self._unwritable_events = UnwritableEvents(log)
        self._damage_said: object = None  # the spool's damage (Spool.damage) its spool_damaged event said
        self.health = Health(config.gateway_id, config.health.offline_after, clock, store=self.spool)
        self.profiles = ProfileBook(self.spool)
        self.publisher = Publisher(
            self.spool,
            config.gateway_id,
            config.mqtt,
            batch_size=config.batch_size,
            window=config.window,
            topic_root=config.topic_root,
            options=config.mqtt_options,
            on_command=self._command_from_broker,
            on_fatal=self._publisher_failed,
        )
        #: why the gateway stopped on its own (a bug in the publisher's MQTT callbacks); None otherwise
        self.failure: str | None = None
        #: why it was told to stop (``aquami gateway run``: the signal), for its ``gateway_stopped`` event
        self.stop_reason: str | None = None
        self._stop_event: asyncio.Event | None = None
        self.schedulers: dict[str, BusScheduler] = {}
        self.listeners: dict[str, WMBusListener] = {}
        #: each meter's first answer's identity (a wired M-Bus meter's identification, a Modbus meter's
        #: serial number), kept in the spool across restarts, and across reloads, which make the buses
        #: anew (gateway.meter_identity)
        self.identities = MeterIdentities(self.spool)
        #: what each wireless M-Bus receiver (by device) heard, kept across reloads likewise: a silent
        #: meter's hint after a reload names the close ids heard before it (gateway.wmbus_unconfigured)
        self.wmbus_memories: dict[str, ReceiverMemory] = {}
        #: each polled meter's failure episode (said once while it lasts), kept across reloads likewise:
        #: a dead meter is not warned of again at every reload (gateway.poll_episodes)
        self.poll_episodes = PolledEpisodes()
        #: each polled bus's late answers' episodes (each warned of once while it lasts), kept across
        #: reloads likewise: a meter answering late is not warned of again at every reload (gateway.late_episodes)
        self.late_episodes = LateEpisodes()
        self.readings_spooled = 0
        self.readings_dropped = 0
        self.readings_not_spooled = 0  # read, but refused by the spool (a full disk): lost
        self.events_not_spooled = 0  # refused by the spool (a full disk), or no JSON (a bug): in the log alone
        self.spool_full = False
        self._unusable_said = False  # the spool no longer usable, said by the writer (once: the gateway stops)
        self._overflow_unreported = 0
        self._overflow_reported_at = -OVERFLOW_EVENT_EVERY_S
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._wake_writer = asyncio.Event()
        #: events (and health saved behind them) for the event writer, in the order emitted; while it
        #: runs (:meth:`_event_writer`), SQLite's writes and fsyncs happen in its thread, off the loop
        self._event_writes: list[_EventWrite] = []
        self._event_writes_busy = False  # a batch in the writer's thread
        self._wake_event_writer = asyncio.Event()
        self._event_writer_task: asyncio.Task[None] | None = None
        self._event_writer_closing = False
        #: under ``stop_polling`` while the spool is short of room: the look for room come back, in a thread
        self._room_look: asyncio.Task[None] | None = None
        #: those looks failing (a disk I/O error): said once an episode, not at each poll falling due
        self._room_looks = RoomLooks(self.spool.path, log)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bus_tasks: list[asyncio.Task[None]] = []
        self._bus_stop = asyncio.Event()
        # one swap of the buses at a time: a reload awaits while the buses stop, and a second reload
        # (or the gateway's own start or stop) running in between would start a set whose stop event is lost
        self._buses_lock = asyncio.Lock()
        self._stopping = False
        self._commands: Commands | None = None

    # spooling -------------------------------------------------------------------------------------
    async def spool_reading(self, reading: Reading) -> None:
        """Queue ``reading`` for the next group commit and wait until it is on disk."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((reading.to_json(), done))
        self._wake_writer.set()
        await done

    async def _writer(self, stop: asyncio.Event) -> None:
        while True:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            batch, self._pending = self._pending, []
            if batch:
                try:
                    appended = await asyncio.to_thread(self.spool.append, [body for body, _ in batch])
                except Exception as error:  # a full disk: the polls fail, and say why
                    self._say_not_written(error)
                    self.readings_not_spooled += len(batch)
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(error)
                    continue
                self._spool_writes.takes_readings(self.spool.depth())
                self._spool_writes.worked("readings")
                self.readings_spooled += appended.stored
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
                if appended.dropped:
                    self.readings_dropped += appended.dropped
                    self._overflow_unreported += appended.dropped
                    if time.monotonic() - self._overflow_reported_at >= OVERFLOW_EVENT_EVERY_S:
                        self._report_overflow()
            if stop.is_set() and not self._pending:
                return

    def _say_not_written(self, error: Exception) -> None:
        """Why the writer's batch was not stored: the spool refusing readings (short of room), once an
        episode (before: once however long it lasted, with no reminder); the spool no longer usable (a
        salvage failed: the gateway stops on it), once, in a line and no traceback, where each batch
        until the stop landed logged one; anything else
        (a disk I/O error) once an episode (:mod:`gateway.spool_writes`), where each batch logged
        "cannot write to the spool" with a traceback for as long as it lasted."""
        if isinstance(error, SpoolFull):
            self._spool_writes.full(error)
        elif isinstance(error, SpoolUnusable):
            if not self._unusable_said:
                self._unusable_said = True
                log.error("readings are not stored from now on, the gateway stops: %s", error)
        else:
            self._spool_writes.failed("readings", error, _READINGS_MEANWHILE)

    def _report_overflow(self) -> None:
        """One ``spool_overflow`` event for the drops since the last one (at most one per interval)."""
        if self._overflow_unreported:
            dropped, self._overflow_unreported = self._overflow_unreported, 0
            self._overflow_reported_at = time.monotonic()
            depth = self.spool.depth()
            self.emit(
                self.health.gateway_event("spool_overflow", dropped=dropped, spool_depth=depth, policy="drop_oldest")
            )

    def _may_poll(self) -> bool:
        """The ``stop_polling`` policy: no polls while the spool is at its limit.

        While the spool is short of room, each poll falling due has it look again (the room may come
        back by other means than its deliveries: :meth:`gateway.spool.Spool.is_full`). That look reads
        the database, behind the spool's lock: while the gateway runs it is made in a thread
        (:meth:`_look_at_room`, one at a time) and the poll waits for the next, so the poll due as
        room comes back is skipped; the look says ``spool_full`` or ``spool_resumed``. Before, each
        look held up the event loop (the MQTT keepalives, every bus's polls) while the disk was full."""
        if self.config.spool.policy != "stop_polling":
            return True
        if self._event_writer_task is None:  # not running: a caller's own look, made here as before
            full = self.spool.is_full()
        elif self.spool.short_of_room:
            if self._room_look is None:
                self._room_look = asyncio.create_task(self._look_at_room())
            return False
        else:  # its limit of readings: counted in memory
            full = self.spool.full_as_last_seen()
        self._fullness_seen(full)
        return not full

    async def _look_at_room(self) -> None:
        """Look at the spool's room in a thread, then say whether it is full. A look that fails (a
        failing disk) is said once an episode (:mod:`gateway.room_looks`): before, a warning at each
        poll falling due while it lasted."""
        try:
            await asyncio.to_thread(self.spool.is_full)
        except Exception as error:  # a failing disk: the polls wait for a look that finds room
            self._room_looks.failed(error)
        else:
            self._room_looks.worked()
        finally:
            self._room_look = None
        self._fullness_seen(self.spool.full_as_last_seen())

    def _fullness_seen(self, full: bool) -> None:
        """``spool_full`` or ``spool_resumed`` when the spool's fullness changed since last seen."""
        if full != self.spool_full:
            self.spool_full = full
            name = "spool_full" if full else "spool_resumed"
            self.emit(self.health.gateway_event(name, spool_depth=self.spool.depth(), policy="stop_polling"))

    # events and health ------------------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        """Spool ``event`` for the broker (the publisher sends it); a meter's event with the meter's
        changed health (:meth:`gateway.health.Health.take_unsaved`) in the same transaction, so after
        a restart the stored state says offline exactly when its ``meter_offline`` was spooled.

        Never raises into its caller (a poll's callback, a bus's loop, the spool's writer): an event
        the spool refuses (a full disk) or with a value that has no JSON form (:mod:`gateway.event_json`)
        is in the log's ``event …`` line alone, counted in ``events_not_spooled``, and said once an
        episode: the spool's (:mod:`gateway.spool_writes`), apart from those of events of a kind that
        cannot be written (:mod:`gateway.unwritable_events`), so that neither hides the other. Before,
        a value JSON could not write raised out of the log line, before anything could catch it: a
        poll's task died with it, or the spool's writer (a ``spool_overflow``), after which no reading
        was stored at all."""
        log.info("%s", event_line(event))
        try:
            payload = event_json(event)
        except EventNotJson as error:  # a bug where the event was made: this event is lost, nothing else
            self.events_not_spooled += 1
            self._unwritable_events.failed(error)
            return  # (a meter's changed health stays unsaved: stored at the next status)
        self._unwritable_events.written(str(event.get("event")))
        topic = events_topic(self.config.gateway_id, self.config.topic_root)
        meter_health = self.health.take_unsaved([event["meter_id"]]) if "meter_id" in event else []
        write = _EventWrite(topic, payload, meter_health)
        if self._event_writer_task is not None:  # the gateway runs: its writer's thread stores it, in order
            self._event_writes.append(write)
            self._wake_event_writer.set()
        else:  # (not running: a caller's own, stored at once as before)
            self._event_written(write, self._store_event_writes([write])[0])

    def _store_event_writes(self, writes: list[_EventWrite]) -> list[Exception | None]:
        """Store ``writes`` one after another (on the event writer's thread while the gateway runs):
        for each, the error that refused it, or None."""
        errors: list[Exception | None] = []
        for write in writes:
            try:
                if write.topic is None:
                    if write.meter_health:
                        self.spool.save_meter_health(write.meter_health)
                else:
                    self.publisher.send_durable(write.topic, write.payload, write.meter_health)
            except Exception as error:  # a full disk: this one is lost, not those after it
                errors.append(error)
            else:
                errors.append(None)
        return errors

    def _event_written(self, write: _EventWrite, error: Exception | None) -> None:
        """Count and say how ``write`` went, on the loop. A refused event is lost, not the writer, bus
        or poll that raised it; said once an episode (before: a line for each event, a traceback for an
        error not the spool's); its meter's health is stored at the next try."""
        if write.stored is not None and not write.stored.done():
            write.stored.set_result(None)
        if write.topic is None and not write.meter_health:  # nothing stored: only waited for
            return
        kind: Written = "meters' health" if write.topic is None else "events"
        if error is None:
            self._spool_writes.worked(kind)
            return
        if write.topic is not None:
            self.events_not_spooled += 1
        meanwhile = "kept in memory, tried again at each status" if write.topic is None else _EVENTS_MEANWHILE
        self._spool_writes.failed(kind, error, meanwhile)
        self.health.unsaved_again(write.meter_health)

    async def _event_writer(self) -> None:
        """Store the events emitted since its last turn, in their order, in a thread: a bus dying takes
        its meters offline within a poll round, and each ``meter_offline`` is a SQLite write and fsync
        (tens of ms on an SD card, longer behind the spool's lock), which on the loop held up the MQTT
        keepalives and every other bus's polls. Ends once closing and nothing is left."""
        while True:
            await self._wake_event_writer.wait()
            self._wake_event_writer.clear()
            writes, self._event_writes = self._event_writes, []
            if writes:
                self._event_writes_busy = True
                try:
                    errors = await asyncio.to_thread(self._store_event_writes, writes)
                except BaseException:  # (the writer cancelled: whoever waits for a write is not left waiting)
                    for write in writes:
                        if write.stored is not None and not write.stored.done():
                            write.stored.set_exception(RuntimeError("the event writer stopped"))
                    raise
                finally:
                    self._event_writes_busy = False
                for write, error in zip(writes, errors, strict=True):
                    self._event_written(write, error)
            if self._event_writer_closing and not self._event_writes:
                return

    async def _close_event_writer(self) -> None:
        """Wait until every event emitted so far is stored; events after it are stored at once."""
        task = self._event_writer_task
        if task is None:
            return
        self._event_writer_closing = True
        self._wake_event_writer.set()
        try:
            await task
        finally:
            self._event_writer_task = None

    def _say_damage(self) -> None:
        """The ``spool_damaged`` event, once for each damage the spool found (as it opened, or while
        running) and set aside: spooled, so the head-end hears it after any restart too, where the
        health status's ``spool_damaged`` says it only until this gateway stops."""
        damage = self.spool.damage
        if damage is None or damage is self._damage_said:
            return
        self._damage_said = damage
        self.emit(self.health.gateway_event("spool_damaged", **damage.status()))

    def _damage_found(self, reason: str) -> None:
        """Called by the spool on the thread that met damage while running: with ``on_damage =
        "set_aside"`` it is salvaged already, and said here; with ``"stop"`` the gateway stops (exit 1)."""
        if self._loop is None:
            return
        if self.config.spool.on_damage == "set_aside":
            self._loop.call_soon_threadsafe(self._say_damage)
        else:
            self._loop.call_soon_threadsafe(self._publisher_failed, f"the spool is damaged: {reason}")

    def _spool_unusable(self, reason: str) -> None:
        """Called by the spool on the thread that met damage while running, when its salvage failed (no
        new spool can be made: a full disk): nothing can be stored any more, so the gateway stops, exit 1,
        for its supervisor to start it again; that start salvages the damaged file, left in place."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._publisher_failed, reason)

    def save_health(self) -> None:
        """Store the meters' health changed since last stored (their last good read, above all). A spool
        that fails to store it is said once an episode (:mod:`gateway.spool_writes`): before, a traceback
        at every status interval for as long as the disk refused writes.

        While the gateway runs, it is queued for the event writer's thread (stored there, off the event
        loop: before, with no event waiting, it was stored on the loop, a SQLite write and fsync at each
        status interval), behind the events queued before it, so no older state of a meter, taken with
        its event, is stored over this newer one. :meth:`save_health_stored` waits until it is stored."""
        if self._event_writer_task is not None:
            rows = self.health.take_unsaved()
            if rows:
                self._event_writes.append(_EventWrite(None, b"", rows))
                self._wake_event_writer.set()
            return
        try:
            stored = self.health.save()
        except Exception as error:  # a full disk: kept in memory, and stored at the next try
            self._spool_writes.failed("meters' health", error, "kept in memory, tried again at each status")
        else:
            if stored:
                self._spool_writes.worked("meters' health")

    async def save_health_stored(self) -> None:
        """:meth:`save_health`, returning once the meters' health is stored (or its failure said), and
        every event queued before it: what the caller does next may read it back from the spool."""
        task = self._event_writer_task
        if task is None or task.done():
            self.save_health()
            return
        stored = asyncio.get_running_loop().create_future()
        self._event_writes.append(_EventWrite(None, b"", self.health.take_unsaved(), stored))
        self._wake_event_writer.set()
        await stored

    def status(self, state: LinkState | None = None, events_waiting: int | None = None) -> dict[str, Any]:
        """The health status: ``state`` "online" while :meth:`run` runs, "offline" once it has
        stopped, unless given. Asked after the stop (a test's or a caller's look at how it ended), it
        says what the spool held as it closed: before, it raised "Cannot operate on a closed database".

        ``events_waiting``: the events the spool holds, counted by the caller (:meth:`events_waiting`,
        in a thread, as the gateway's own statuses are); if not given, counted here, in the spool's
        database."""
        if state is None:
            state = "offline" if self.spool.closed else "online"
        return self.health.snapshot(
            self.spool.depth(),
            {
                "readings_spooled": self.readings_spooled,
                "readings_dropped": self.readings_dropped,
                "readings_not_spooled": self.readings_not_spooled,  # the spool refused them: a full disk
                "events_not_spooled": self.events_not_spooled,  # a full disk, or no JSON: in the log alone
                "events_waiting": self.events_waiting() if events_waiting is None else events_waiting,
                "events_dropped": self.spool.messages_dropped_total,
                "batches_acknowledged": self.publisher.acknowledged_batches,
                "batches_refused": self.publisher.refused_batches,  # by the broker (MQTT 5): they wait
                "events_refused": self.publisher.refused_events,  # by the broker (MQTT 5): they wait too
                "batches_resealed": self.publisher.resealed_batches,  # larger than the broker takes
                "messages_too_large": self.publisher.messages_too_large,  # statuses, replies, events: not sent
                "short_connections": self.publisher.short_connections,  # in a row: a flapping link, or an id twice
                "mqtt_protocol": self.publisher.protocol_in_use,
                # the damaged spool file set aside since this gateway started, and what it gave; else null
                "spool_damaged": None
                if self.spool.damage is None
                else {"found_at": utc_iso(self.spool.damage.at), **self.spool.damage.status()},
            },
            state,
        )

    def events_waiting(self) -> int:
        """The events the spool holds; as last counted while it fails to count them: before, the status
        failed on it, and with it the gateway's stop (its offline status is made as it stops). A count
        in the spool's database: the gateway runs it in a thread, off its event loop."""
        try:
            return self.spool.messages_waiting()
        except SPOOL_ERRORS:
            return self.spool.messages_last_counted

    def publish_status(self, state: LinkState = "online", events_waiting: int | None = None) -> None:
        """The retained health status. With thousands of meters it can be larger than a broker takes
        (AWS IoT Core: 128 KB, about 1,200 meters): then it goes with only the meters that fail. The
        last, at a clean stop, says ``"state": "offline"``, as ``status`` then does: the retained
        health said "online" for good after the gateway had stopped. ``events_waiting``: as for
        :meth:`status`."""
        topic = f"{self.config.topic_root}/{self.config.gateway_id}/status/health"
        status = self.status(state, events_waiting)
        full = json.dumps(status, separators=(",", ":")).encode()
        failing = {k: m for k, m in status["meters"].items() if m["offline"] or m["consecutive_failures"]}
        summary = {**status, "meters": failing, "meters_omitted": len(status["meters"]) - len(failing)}
        self.publisher.send(topic, full, retain=True, smaller=json.dumps(summary, separators=(",", ":")).encode())

    def _say_stopped(self) -> None:
        """The ``gateway_stopped`` event (``ts``: now, as the gateway stops; ``reason``; what the
        spool still holds), spooled as every event is: delivered as the publisher drains, or, with the
        broker away, after the next start. Before, the head-end learnt of a stop only from the
        retained offline status and health, sent from memory: with the broker away at that moment
        they were dropped, and the retained ones said "online" until the gateway came back. Those are
        not spooled: sent after the next start, a stale retained "offline" could follow its "online"."""
        reason = self.failure or self.stop_reason or "stopped"
        self.emit(self.health.gateway_event("gateway_stopped", reason=reason[:500], spool_depth=self.spool.depth()))

    async def _reporter(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._report_overflow()
            self.publish_status(events_waiting=await asyncio.to_thread(self.events_waiting))
            self.save_health()
            await pause(stop, self.config.health.status_interval_s)

    # buses ------------------------------------------------------------------------------------------
    def _on_poll(self, meter: MeterConfig, reading: Reading | None, error: str | None) -> None:
        self._on_heard(meter, reading is not None, error)

    def _on_heard(self, meter: MeterConfig, ok: bool, error: str | None = None) -> None:
        """A poll's (or a wireless telegram's) outcome to the meter's health, and its event if any.
        A meter not tracked is one a reload dropped while its poll was under way (a read-now answered,
        its reading being spooled as the reload ran): its outcome is left out, as the reload forgot it.
        Before, the health tracked it again (bus "", in the status until the next reload) and loaded
        its stored state on the event loop."""
        if meter.meter_id not in self.health.meters:
            log.debug("%s: a poll's outcome after a reload dropped the meter, left out of its health", meter.meter_id)
            return
        event = self.health.poll_done(meter.meter_id, ok, error=error)
        if event is not None:
            self.emit(event)

    async def _start_buses(self) -> None:
        """Make and start the configured buses. The health stored of the meters not tracked yet is
        read first, in a thread (one SQLite read each, at the start and for those a reload adds:
        before, on the event loop)."""
        meter_ids = self.health.untracked(m.meter_id for m in self.config.meters)
        stored = await asyncio.to_thread(self.health.read_stored, meter_ids) if meter_ids else {}
        self._bus_stop = asyncio.Event()
        self.schedulers = {}
        self.listeners = {}
        receivers = {bus.device for bus in self.config.buses if isinstance(bus, WMBusBusConfig)}
        self.wmbus_memories = {device: m for device, m in self.wmbus_memories.items() if device in receivers}
        self.poll_episodes.configured(self.config.buses)
        self.late_episodes.configured(self.config.buses)
        for bus in self.config.buses:
            self.health.track(bus.name, (m.meter_id for m in bus.meters), stored)
            name = bus.name
            if isinstance(bus, WMBusBusConfig):
                self.listeners[name] = WMBusListener(
                    bus,
                    on_reading=self.spool_reading,
                    on_heard=self._on_heard,
                    on_attempt=lambda ok, name=name: self.health.attempt(name, ok),  # type: ignore[misc]
                    clock=self.clock,
                    may_take=self._may_poll,
                    on_skip=lambda name=name: self.health.skipped(name),  # type: ignore[misc]
                    freshness=self.spool,
                    on_replay=lambda name=name: self.health.replayed(name),  # type: ignore[misc]
                    on_unconfigured=lambda count, name=name: self.health.unconfigured_heard(name, count),  # type: ignore[misc]
                    memory=self.wmbus_memories.setdefault(bus.device, ReceiverMemory()),
                )
                # those its receiver heard before a reload, less those configured now
                self.health.unconfigured_heard(name, len(self.listeners[name].unconfigured))
                continue
            scheduler = BusScheduler(
                bus,
                make_transport(
                    bus,
                    self.profiles,
                    self.clock,
                    on_late=lambda _unit, name=name: self.health.late_answer(name),  # type: ignore[misc]
                    identities=self.identities,
                    late_episodes=self.late_episodes.of_bus(name),
                ),
                on_reading=self.spool_reading,
                on_poll=self._on_poll,
                on_attempt=lambda ok, name=name: self.health.attempt(name, ok),  # type: ignore[misc]
                may_poll=self._may_poll,
                on_skip=lambda name=name: self.health.skipped(name),  # type: ignore[misc]
                failing=self.poll_episodes.of_bus(name),
            )
            self.schedulers[bus.name] = scheduler
        runs = [s.run(self._bus_stop) for s in self.schedulers.values()]
        runs += [listener.run(self._bus_stop) for listener in self.listeners.values()]
        self._bus_tasks = [asyncio.create_task(run) for run in runs]

    async def _stop_buses(self) -> None:
        stop, tasks, schedulers = self._bus_stop, self._bus_tasks, list(self.schedulers.values())
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for scheduler in schedulers:
            try:
                await scheduler.close()
            except Exception:  # a port that will not close: the other buses, and the new ones, go on
                log.exception("bus %s did not close cleanly", scheduler.config.name)

    async def apply_config(self, config: GatewayConfig) -> list[str]:
        """Swap buses and meters for ``config``'s (``cmd/reload``); the spool and MQTT session stay.

        Returns notes on settings that only a restart applies.
        """
        notes = []
        for name in ("gateway_id", "mqtt", "spool_path", "mqtt_options", "batch_size", "window", "topic_root", "spool"):
            if getattr(config, name) != getattr(self.config, name):
                notes.append(f"{name} changed: takes effect on restart")
        async with self._buses_lock:
            if self._stopping:
                raise ValueError("the gateway is stopping: configuration not reloaded")
            await self._stop_buses()
            kept = config
            if notes:  # keep the running identity and delivery settings, take the buses and health
                kept = replace(self.config, buses=config.buses, health=config.health)
            self.config = kept
            self.health.offline_after = kept.health.offline_after
            # stored before the meters dropped now are forgotten: one configured again is loaded from the spool
            await self.save_health_stored()
            self.health.forget_missing({m.meter_id for m in kept.meters}, {b.name for b in kept.buses})
            # profiles read afresh: a profile file fixed before the reload (or a pulse counter's new
            # litres_per_pulse) took effect only on a restart. The pulse counters' state is the spool's.
            self.profiles = ProfileBook(self.spool)
            await self._start_buses()
        return notes

    # commands from the broker -----------------------------------------------------------------------
    def _command_from_broker(self, name: str, payload: bytes) -> None:
        """Called on the publisher's thread: hand the command to the event loop."""
        if self._loop is not None and self._commands is not None:
            self._loop.call_soon_threadsafe(self._commands.dispatch, name, payload)

    def _publisher_failed(self, reason: str) -> None:
        """Called on the publisher's thread: nothing can be delivered any more, so the gateway stops
        (``aquami gateway run`` exits 1 for its supervisor to restart it; the spool keeps every reading)."""
        self.failure = reason
        if self._loop is not None and self._stop_event is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)

    # the whole ------------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, drain_timeout: float = 2.0) -> None:
        """Until ``stop`` is set, or the publisher fails (:attr:`failure` then says why)."""
        self._loop = asyncio.get_running_loop()
        self._stop_event = stop
        self._commands = Commands(self)
        self.spool.on_damage_found = self._damage_found
        self.spool.on_unusable = self._spool_unusable
        self._say_damage()  # found as the spool opened
        self.publisher.start()
        writer_stop = asyncio.Event()
        writer = asyncio.create_task(self._writer(writer_stop))
        self._event_writer_closing = False
        self._event_writer_task = asyncio.create_task(self._event_writer())
        reporter: asyncio.Task[None] | None = None
        try:
            # under the lock a reload takes: the start reads the meters' stored health in a thread, and a
            # reload come meanwhile (a command waiting in a persistent session comes as the gateway
            # connects) started its own buses too, one set's stop event lost, its polls never stopped
            async with self._buses_lock:
                await self._start_buses()
            # the health status once the meters are tracked: started before, while the start read their
            # stored health in a thread, its first status could list none of them (retained, as if the
            # gateway had no meter)
            reporter = asyncio.create_task(self._reporter(stop))
            await stop.wait()
        finally:
            self._stopping = True
            async with self._buses_lock:  # (after a reload under way: its buses are stopped too)
                await self._stop_buses()
            if self._room_look is not None:  # (its thread reads the spool: done before the spool closes)
                await asyncio.gather(self._room_look, return_exceptions=True)
            self.save_health()
            await self._commands.close()
            writer_stop.set()
            self._wake_writer.set()
            await asyncio.gather(writer, *([reporter] if reporter is not None else []), return_exceptions=True)
            self._report_overflow()
            self._say_stopped()
            await self._close_event_writer()  # every event stored, gateway_stopped last, before the drain
            # before the publisher's goodbye, which sets status offline
            self.publish_status("offline", await asyncio.to_thread(self.events_waiting))
            await asyncio.to_thread(self.publisher.stop, drain_timeout)
            # its spool failing as it drained: exit 1, as for the spool's other failures (before, the
            # stop raised it, and the gateway stopped on a traceback, its spool not closed)
            self.failure = self.failure or self.publisher.failure
            await asyncio.to_thread(self.spool.close)  # (it counts the events left, for the status after it)
