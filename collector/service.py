"""The collector process: subscribe to gateways' reads and events, store them, then acknowledge.

A message is acknowledged (paho's manual ack of the QoS 1 PUBLISH) only after its rows are committed,
so a collector that dies between receiving and committing loses nothing: the broker still holds the
message for this client's persistent session and delivers it again. A message that breaks the
contract goes to ``dead_letters`` with the reason and is acknowledged: it is stored, not lost.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from aquami.counted import counted, waits
from aquami.guarded import CallbackGuard
from aquami.mqtt import Client, MqttEndpoint, new_client
from aquami.outage import SETTLE_S, Outage
from aquami.paho_log import lost_because, pass_paho_log
from collector.batch_parser import ParsedMessage, RejectedMessage, parse_reads_message
from collector.events_parser import EventRow, parse_events_message
from collector.gateway_status import GatewayStatus, parse_status_message, status_gateway
from collector.ready_file import ReadyFile
from collector.store import TRANSACTION_CONFLICTS, ReadingStore, StoreResult

log = logging.getLogger(__name__)

# How many times a write that conflicted with another transaction (a deadlock, a serialization
# failure: rolled back whole) is tried again at once before it is handled as any other failure.
_CONFLICT_RETRIES = 3
Parsed = ParsedMessage | list[EventRow] | GatewayStatus | RejectedMessage

#: The collector's MQTT keepalive, in seconds: MQTT's Keep Alive is two bytes (0 turns it off,
#: which would leave a half-open link to the broker unnoticed for good, so 1 is the least)
MQTT_KEEPALIVE_DEFAULT_S = 30
MQTT_KEEPALIVE_MIN_S = 1
MQTT_KEEPALIVE_MAX_S = 65535
#: How long the writer may sit idle before it checks its database connection, in seconds; the check
#: (and the one before the first write after an idle spell) waits as long again for the answer, at
#: most a write's deadline (collector.service.Collector._check_database). Under a second
#: a database busy for a moment (a checkpoint) would cost the writer its connection; over an hour
#: the check is no check (``aquami collector run --database-check``).
DATABASE_CHECK_DEFAULT_S = 10.0
DATABASE_CHECK_MIN_S = 1.0
DATABASE_CHECK_MAX_S = 3600.0


def _size(result: Parsed) -> int:
    if isinstance(result, ParsedMessage):
        return result.count
    return len(result) if isinstance(result, list) else 1


def _readings_in(result: Parsed) -> int:
    """The readings a ``reads`` message came with, those refused included (its untimely ones, or all
    of a message whose every reading was untimely); 0 for any other message, and for one that
    breaks the contract (a dead letter whole: its readings are no readings to count)."""
    if isinstance(result, ParsedMessage):
        return result.arrived
    return result.readings if isinstance(result, RejectedMessage) else 0


def _events_in(result: Parsed) -> int:
    """The meter events an ``events`` message came with, those refused included (of a meter its
    gateway may not report, or of a message the database refused); 0 for any other message, and for
    one that breaks the contract (a dead letter whole)."""
    return len(result) if isinstance(result, list) else 0


@dataclass(frozen=True, slots=True)
class Received:
    """A message as it arrived, and on which of the collector's connections to the broker (the
    first is 1): its packet id means something to the broker only while that connection lasts."""

    message: mqtt.MQTTMessage
    connection: int
    at: datetime  # when it arrived


def _parse(received: Received) -> Parsed:
    message = received.message
    try:
        if message.topic.endswith("/events"):
            return parse_events_message(message.topic, message.payload, received.at)
        if status_gateway(message.topic) is not None:
            return parse_status_message(message.topic, message.payload, received.at)
        return parse_reads_message(message.topic, message.payload, received.at)
    except Exception as error:  # a parser bug must not kill the parser thread
        log.exception("could not parse a message from %s", message.topic)
        return RejectedMessage(f"collector could not parse it: {error!r}")


@dataclass
class CollectorCounters:
    """What this collector did since it started (logged every 30 s by ``aquami collector run``).

    ``messages`` is the MQTT messages it took and is done with (stored, in whole or in part, or kept
    as dead letters), each once: ``aquami collector leave-group`` takes it reaching the messages that
    arrived for every one stored. ``dead_letters`` is the dead letters it wrote: a message may give
    several (its untimely readings, one per meter its gateway may not report, itself when the
    database refuses its rows), so it is no count of messages.

    ``new_meters`` is the ``meters`` rows its committed writes created, each once (the INSERT's own
    row count: a meter another collector, an earlier run or meterization created is not counted);
    it is no count of the table, which holds fewer only if rows were deleted since.

    ``readings_received`` is the readings of the ``reads`` messages it took that keep to the contract,
    those it refused included (untimely, of a meter their gateway may not report, or of a message
    the database refused); ``readings_stored`` the new ones it stored, and ``duplicates`` those it
    wrote whose key was stored already (a repeat, or a conflict). Before, ``readings_received``
    counted only the readings written, so refused ones showed nowhere but as dead letters.
    ``events_received`` and ``events_stored`` are the same for meter events: every event of the
    ``events`` messages that keep to the contract, those refused for their gateway or with their
    message by the database included (before, only those written), and the new ones stored."""

    messages: int = 0
    readings_received: int = 0
    readings_stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    new_meters: int = 0
    database_errors: int = 0
    write_conflicts: int = 0
    conflicts: int = 0
    events_received: int = 0
    events_stored: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {k: v for k, v in vars(self).items() if isinstance(v, int)}


@dataclass(frozen=True)
class CollectorConfig:
    database_url: str
    mqtt: MqttEndpoint
    client_id: str = "aquami-collector"
    topic_root: str = "aquami/v1"
    shared_group: str | None = None  # MQTT 5 shared subscription group, for several collectors
    max_batch_readings: int = 50_000
    min_batch_readings: int = 1_000  # a smaller batch waits up to max_delay_s for company
    max_delay_s: float = 0.1
    # the writer's bound on a statement; a write that takes twice this has its connection cut
    statement_timeout_s: float = 30.0
    # written once the broker has granted the subscriptions, removed while the collector is not
    # connected to the broker and at stop (collector.ready_file): what a deployment
    # waits for before starting gateways (docker-compose.yml), since until the collector's session
    # exists the broker keeps nothing for it, and a gateway deletes what the broker acknowledged
    ready_file: Path | None = None
    # hold each gateway to its meters (collector.meter_gateways): off only where every gateway is trusted
    check_meter_gateways: bool = True
    # a meter no gateway is assigned to is not claimed by the first gateway heard: its readings are
    # dead letters until assign-meters (--replay stores them); needs check_meter_gateways
    assigned_meters_only: bool = False
    # paho sends a PINGREQ after this long without traffic and gives the link up when no answer
    # comes within as long again: a half-open link to the broker costs up to twice this
    mqtt_keepalive_s: int = MQTT_KEEPALIVE_DEFAULT_S
    # an idle writer asks the database for an answer after this long without one, and gives its
    # connection up when none comes within as long again: a dead link is found within twice this;
    # a busy writer's write that waited this long is cut where the database waits on it
    # (collector.dead_link_look): found within 1.5 times this
    database_check_s: float = DATABASE_CHECK_DEFAULT_S
    # the database said back once it has answered this long without a failure (aquami.outage): a
    # link that drops again and again (a proxy or firewall ending connections) is one outage, as the
    # broker's; 0 says it back at its first answer (a test's)
    database_settle_s: float = SETTLE_S
    # the broker said back the same way, once its link has stayed up this long (as the gateway's)
    broker_settle_s: float = SETTLE_S

    def __post_init__(self) -> None:
        if not DATABASE_CHECK_MIN_S <= self.database_check_s <= DATABASE_CHECK_MAX_S:  # (nan too)
            raise ValueError(
                f"database check every {self.database_check_s!r} s: "
                f"give {DATABASE_CHECK_MIN_S:g} to {DATABASE_CHECK_MAX_S:g} seconds"
            )
        if not MQTT_KEEPALIVE_MIN_S <= self.mqtt_keepalive_s <= MQTT_KEEPALIVE_MAX_S:
            raise ValueError(
                f"MQTT keepalive {self.mqtt_keepalive_s!r} s: give {MQTT_KEEPALIVE_MIN_S} to {MQTT_KEEPALIVE_MAX_S}"
            )

    @property
    def subscription(self) -> str:
        return self.subscriptions[0]

    @property
    def subscriptions(self) -> list[str]:
        topics = [f"{self.topic_root}/+/reads", f"{self.topic_root}/+/events"]
        shared = [f"$share/{self.shared_group}/{t}" if self.shared_group else t for t in topics]
        # The gateways' own status (collector.gateway_status), to every collector of a group: a shared
        # subscription is sent no retained message, and each collector storing the same newest state
        # is harmless (an upsert; the link's since moves only when it changes).
        return [*shared, f"{self.topic_root}/+/status", f"{self.topic_root}/+/status/health"]


class Collector:
    """``on_fatal`` is told why the collector cannot go on (a callback of paho's failed, or the ready
    file could not be written): ``aquami collector run`` then stops and exits 1. Without it, it is
    only logged."""

    def __init__(self, config: CollectorConfig, on_fatal: Callable[[str], None] | None = None):
        self.config = config
        self._on_fatal = on_fatal
        #: why the collector cannot go on; None while it can
        self.failure: str | None = None
        self._ready = None if config.ready_file is None else ReadyFile(config.ready_file)
        self.counters = CollectorCounters()
        # Messages are parsed, and their COPY text built, on a parser thread as they arrive, so that
        # work overlaps the writer's time in the database (psycopg releases the GIL while it waits);
        # the writer only streams the bytes, commits, then acknowledges. Not on paho's network
        # thread: while it parses it answers no keepalive, and a message that took 75 s to explain
        # (1.8 MB of 600,000 `{}`) had the broker drop the collector and send it again, for good.
        self._arrivals: queue.Queue[Received | None] = queue.Queue()
        self._inbox: queue.Queue[tuple[Received, Parsed]] = queue.Queue()
        self._connection = 0  # counts successful connects: which connection a message came on
        self._connected = False
        # said when the broker goes (or cannot be reached, or refuses), now and then while it stays
        # away, and once it has stayed back broker_settle_s (90 s), as the gateway says its broker: not
        # a line before, for minutes; then, with no settling, a warning (and an "available again") at
        # every drop of a link that drops each connection (a NAT or a modem): 20 for 20 drops.
        self.broker = Outage(log, f"MQTT broker {config.mqtt.url}", settle_s=config.broker_settle_s)
        # the writer's failed commits and checks: a line when the database goes, now and then while
        # it is away, and once it has stayed back database_settle_s (90 s), as the broker (before, a
        # two-line warning every second, and nothing at the end; then, with no settling, a warning
        # and an "available again" at every drop of a link that drops each connection: 20 for 20)
        self.database = Outage(log, "database", settle_s=config.database_settle_s)
        # any other failure to store (a bug, a trigger that raises): before, a traceback a second
        self._storing = Outage(log, "storing messages")
        self._conflicting = False  # the last write conflicted with another transaction: said already
        self._stop = threading.Event()
        self._store = ReadingStore(
            config.database_url,
            config.statement_timeout_s,
            check_gateways=config.check_meter_gateways,
            assigned_only=config.assigned_meters_only,
            topic_root=config.topic_root,
            # a busy writer is never idle: its write on a dead link is given up as an idle look's
            look_after_s=config.database_check_s,
        )
        self._client = new_client(config.mqtt, client_id=config.client_id, manual_ack=True)
        pass_paho_log(self._client)  # a reset connection's reason into the outage's words (aquami.paho_log)
        # An exception that leaves a callback kills paho's network thread: nothing more is received
        # while the process runs on. Each is caught, logged, and stops the collector.
        guarded = CallbackGuard("collector", self._fail, log)
        self._client.on_connect = guarded(self._on_connect)
        self._client.on_message = guarded(self._on_message)
        self._client.on_subscribe = guarded(self._on_subscribe)
        self._client.on_disconnect = guarded(self._on_disconnect)
        self._client.on_connect_fail = guarded(self._on_connect_fail)
        self._parser = threading.Thread(target=self._parse_loop, name="collector-parser", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="collector-writer", daemon=True)

    def _fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
            log.error("%s: the collector stops", reason)
            if self._on_fatal is not None:
                self._on_fatal(reason)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self.broker.failed(f"refused the connection: {reason}{_why_refused(reason, self.config.client_id)}")
            return
        self._connected = True
        self.broker.recovered()
        self._connection += 1
        client.subscribe([(topic, 1) for topic in self.config.subscriptions])

    def _on_connect_fail(self, client: Client, userdata: Any) -> None:
        error = client.last_connect_error
        self.broker.failed(f"cannot connect: {error}" if error is not None else "cannot connect")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        """Not ready while not connected: the ready file goes until the subscriptions are granted
        again (a deployment's healthcheck sees the outage), and the loss is said."""
        if self._ready is not None:
            self._ready.remove()
        if self._connected and not self._stop.is_set():
            self.broker.failed(f"connection lost: {lost_because(reason, client)}")
        self._connected = False

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[Any], properties: Any) -> None:
        refused = [
            (topic, str(reason))
            for topic, reason in zip(self.config.subscriptions, reasons, strict=False)
            if reason.is_failure
        ]
        essential = [(topic, reason) for topic, reason in refused if status_gateway(topic) is None]
        if essential:
            said = ", ".join(f"{topic}: {reason}" for topic, reason in essential)
            log.error("broker refused the subscription (%s): nothing will be stored", said)
            return
        if refused:  # a broker whose rules let the collector read reads and events but not statuses
            said = ", ".join(f"{topic}: {reason}" for topic, reason in refused)
            log.warning("broker refused the gateways' status topics (%s): GET /gateways will not know them", said)
        # said once the broker granted it (said when asked, it came before a refusal, or for nothing);
        # at the run's first connection and the first reconnection of an outage, not at the ones
        # after it of a link that keeps dropping, which the outage counts as drops (as the gateway's
        # "connected to")
        granted = [topic for topic in self.config.subscriptions if topic not in dict(refused)]
        if not self.broker.ongoing or self.broker.drops == 0:
            log.info("subscribed to %s on %s", ", ".join(granted), self.config.mqtt.url)
        if self._ready is not None:
            try:
                self._ready.write(f"subscribed to {', '.join(self.config.subscriptions)}\n")
            except OSError as error:  # checked at start; the folder gone or the disk full since
                self._fail(f"could not write the ready file {self._ready.path} ({error.strerror})")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._arrivals.put(Received(message, self._connection, datetime.now(UTC)))

    def _parse_loop(self) -> None:
        while (received := self._arrivals.get()) is not None:
            self._inbox.put((received, _parse(received)))

    def start(self) -> None:
        """Connect and start storing; :class:`ReadyFileUnusable` first when the ready file cannot be
        written."""
        if self._ready is not None:
            self._ready.check()
            self._ready.remove()  # a crashed run's: this one is not subscribed yet
        self._client.connect_async(self.config.mqtt.host, self.config.mqtt.port, keepalive=self.config.mqtt_keepalive_s)
        self._client.loop_start()
        self._parser.start()
        self._writer.start()

    def stop(self) -> None:
        self._stop.set()
        self.broker.stop()  # a link back but not settled is not said back after the collector stopped
        self._writer.join(timeout=10)
        self.database.stop()  # (after the writer: nothing more it says)
        # The network thread first (it sends what is queued, the writer's acknowledgements, before it
        # ends), then the DISCONNECT, written from here: the other way round, its last turn could
        # find the socket closed, and paho said "Client is not connected" at ERROR at most stops.
        self._client.loop_stop()
        self._client.disconnect()
        self._arrivals.put(None)
        self._parser.join(timeout=10)
        self._store.close()
        if self._ready is not None:
            self._ready.remove()

    def _take_batch(self) -> list[tuple[Received, Parsed]]:
        """What has arrived, up to ``max_batch_readings``; a small batch waits briefly for more."""
        try:
            first = self._inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        readings = _size(first[1])
        deadline = time.monotonic() + self.config.max_delay_s
        while readings < self.config.max_batch_readings:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if readings >= self.config.min_batch_readings or remaining <= 0:
                    break
                try:
                    item = self._inbox.get(timeout=remaining)
                except queue.Empty:
                    break
            batch.append(item)
            readings += _size(item[1])
        return batch

    def _write_loop(self) -> None:
        pending: list[tuple[Received, Parsed]] = []
        # positions in ``pending`` already committed by a try stored message by message: not again
        done: set[int] = set()
        answered = time.monotonic()  # when the database last answered the writer (or was asked)
        idle = False  # the writer found nothing to write since its last write
        while not self._stop.is_set() or pending:
            if not pending:
                pending = self._take_batch()
                if not pending:
                    idle = True
                    if time.monotonic() - answered >= self.config.database_check_s and not self._stop.is_set():
                        self._check_database()
                        answered = time.monotonic()
                    continue
                if idle and self._store.connected:
                    self._check_database(waiting=len(pending))
                    answered = time.monotonic()
                idle = False
            try:
                self._store_retrying_conflicts(pending, done)
            except Exception as error:
                waiting = _still_waiting(pending, done)
                # The database away (OperationalError), or not taking writes (a standby after a
                # failover: ReadOnlySqlTransaction), or any other failure that is not one message's
                # data (those become dead letters in _store_messages): the messages wait,
                # unacknowledged, and the next try starts on a new connection. The thread must
                # outlive it: a writer that died left the collector receiving and storing nothing.
                self.counters.database_errors += 1
                self._store.close()
                if isinstance(error, (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction)):
                    # (not a traceback: a failover's standby is no fault of ours)
                    self.database.failed(error, f"; {waits(waiting)}, unacknowledged")
                else:  # a bug, or a trigger that raises: its traceback once, not every second
                    if not self._storing.ongoing:
                        log.exception(
                            "could not store %s; %s, unacknowledged",
                            counted(waiting, "message"), "it waits" if waiting == 1 else "they wait",
                        )  # fmt: skip
                    self._storing.failed(f"{type(error).__name__}: {error}", f"; {waits(waiting)}")
                if self._stop.wait(1.0):
                    return  # unacknowledged: the broker delivers them again to the next collector
                continue
            self.database.recovered()
            self._storing.recovered()
            self._acknowledge(pending)
            pending = []
            done.clear()
            answered = time.monotonic()

    def _store_retrying_conflicts(self, pending: list[tuple[Received, Parsed]], done: set[int]) -> None:
        """Store ``pending`` (those at positions in ``done`` committed already: :meth:`_store_messages`),
        trying again at once, on the same connection, a write another transaction's conflicted with
        (a deadlock or a serialization failure, which PostgreSQL resolves by rolling one side back:
        nothing of it was written).

        Before, such a conflict was taken for the database away (it is an ``OperationalError``):
        ``database_errors`` counted, the connection closed, "database unavailable" logged and the
        batch tried again a second later. Now counted in ``write_conflicts`` and said once an
        episode; after ``_CONFLICT_RETRIES`` retries that conflicted again, the last conflict goes to
        the caller's handling of any other failure."""
        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                self._store_messages(pending, done)
            except TRANSACTION_CONFLICTS as conflict:
                if attempt == _CONFLICT_RETRIES:
                    raise
                with self.counters.lock:
                    self.counters.write_conflicts += 1
                if not self._conflicting:
                    self._conflicting = True
                    log.warning(
                        "a write of %s conflicted with another transaction (%s); tried again at once",
                        counted(_still_waiting(pending, done), "message"),
                        str(conflict).splitlines()[0] if str(conflict) else type(conflict).__name__,
                    )
                continue
            self._conflicting = False
            return

    def _check_database(self, waiting: int = 0) -> None:
        """An idle writer's look at its database, and its first write's after an idle spell, on the
        connection it is about to use (``waiting``: the messages of that write).

        Without the idle look, a link that died while no message came (the database host gone, a
        firewall or NAT that forgot the connection) was found only by the next write, which then
        waited for it up to its deadline (60 s by default), and nothing said the database was away
        meanwhile. Now said within twice ``database_check_s``, the connection given up, and a new one
        tried at each check until the database answers again. A link that died less than
        ``database_check_s`` before a message came escaped it: the message waited 61 s (the write's
        deadline, then a second before the retry on a new connection), where the write after the
        look waits ``database_check_s`` at most (the write's deadline, if less) before its new
        connection. The look costs a write after an idle spell a few round trips; writes back to back
        (a busy collector) have none: their link is watched while a write waits (the store's
        ``look_after_s``, :mod:`collector.dead_link_look`)."""
        try:
            self._store.check(self._check_bound())
        except psycopg.Error as error:  # whatever it is, the next write starts on a new connection
            self._store.close()
            self.database.failed(error, f"; {waits(waiting)}, unacknowledged" if waiting else "; no message waits")
            return
        self.database.recovered()

    def _check_bound(self) -> float:
        """How long a check waits for the answer: ``database_check_s``, at most a write's deadline
        (twice the statement timeout, where there is one): a look before a write on a dead link
        never holds its messages longer than the write would have."""
        write_s = 2 * self.config.statement_timeout_s
        return min(self.config.database_check_s, write_s) if write_s > 0 else self.config.database_check_s

    def _acknowledge(self, stored: list[tuple[Received, Parsed]]) -> None:
        """PUBACK what came on the current connection. A message that came on an earlier one is
        stored but not acknowledged: a broker that lost the session has given its packet id to
        another message since (acknowledging it dropped that one uncommitted), and one that kept
        the session sends it again on this connection, to be acknowledged then (a repeat, a no-op)."""
        current = self._connection
        for received, _ in stored:
            if received.connection == current:
                self._client.ack(received.message.mid, received.message.qos)

    def _store_messages(self, messages: list[tuple[Received, Parsed]], done: set[int]) -> None:
        """Store ``messages`` in one transaction, those at positions in ``done`` left out; should the
        database refuse one message's rows, message by message (:meth:`_store_one_by_one`), each
        position added to ``done`` once its message is committed and counted."""
        todo = [(i, received, result) for i, (received, result) in enumerate(messages) if i not in done]
        reads: list[ParsedMessage] = []
        events: list[EventRow] = []
        statuses: list[GatewayStatus] = []
        dead: list[tuple[str, str, bytes]] = []
        for _, received, result in todo:
            letters = _letters_of(received, result)
            for topic, reason, _payload in letters:
                log.warning("dead letter from %s: %s", topic, reason)
            dead += letters
            if isinstance(result, ParsedMessage):
                reads.append(result)
            elif isinstance(result, GatewayStatus):
                statuses.append(result)
            elif isinstance(result, list):
                events.extend(result)
        try:
            outcome = self._store.write_messages(reads, dead, events, statuses)
        except (psycopg.DataError, psycopg.IntegrityError):
            # One message's rows upset the database: store message by message, so the bad one
            # becomes a dead letter and the others are kept.
            self._store_one_by_one(todo, done)
            return
        results = [result for _, _, result in todo]
        self._count(len(todo), outcome, len(dead), sum(map(_readings_in, results)), sum(map(_events_in, results)))

    def _store_one_by_one(self, todo: list[tuple[int, Received, Parsed]], done: set[int]) -> None:
        """Each message of ``todo`` (its position in the batch, as received, parsed) in a transaction
        of its own, with its dead letters, and counted: the messages the parser refused whole first,
        together; then each other, with the letter of its untimely readings, or, should the database
        refuse its rows, as a letter of its own beside that one. Each message counted once (before,
        a message whose untimely readings are a letter was counted once more with the letters: 6
        messages for 4).

        The position of each message committed is added to ``done``: a later message's write that
        fails (rolled back for a conflict with another transaction, and tried again at once; the
        database away, and tried again later) leaves the batch's next try the messages not committed.
        Before, the next try stored the whole batch again: the messages committed before the failure
        were counted again (as received, their readings as duplicates), and their dead letters
        written again (two rows for one refused message)."""
        rejected = [(i, received, result) for i, received, result in todo if isinstance(result, RejectedMessage)]
        if rejected:
            letters = [letter for _, received, result in rejected for letter in _letters_of(received, result)]
            outcome = self._store.write([], letters)
            self._count(len(rejected), outcome, len(letters), sum(_readings_in(r) for _, _, r in rejected), 0)
            done.update(i for i, _, _ in rejected)
        for i, received, result in todo:
            if isinstance(result, RejectedMessage):
                continue
            untimely = _letters_of(received, result)
            try:
                if isinstance(result, ParsedMessage):
                    outcome = self._store.write_messages([result], untimely)
                elif isinstance(result, GatewayStatus):
                    outcome = self._store.write([], untimely, (), [result])
                else:
                    outcome = self._store.write([], untimely, result)
                self._count(1, outcome, len(untimely), _readings_in(result), _events_in(result))
            except (psycopg.DataError, psycopg.IntegrityError) as error:
                message = received.message
                reason = f"database refused the rows: {error}".strip()
                payload = bytes(message.payload)
                if isinstance(result, ParsedMessage) and result.untimely is not None:
                    # its untimely readings are a letter already: before, they were in this one too
                    reason += f" (its {result.untimely_count} untimely readings are a dead letter of their own)"
                    payload = result.timely_payload()
                letters = [*untimely, (message.topic, reason, payload)]
                outcome = self._store.write([], letters)
                self._count(1, outcome, len(letters), _readings_in(result), _events_in(result))
            done.add(i)

    def _count(
        self, messages: int, outcome: StoreResult, dead: int, readings_received: int, events_received: int
    ) -> None:
        """``readings_received`` and ``events_received``: the readings and meter events the
        ``messages`` came with (:func:`_readings_in`, :func:`_events_in`)."""
        with self.counters.lock:
            c = self.counters
            c.messages += messages
            c.readings_received += readings_received
            c.readings_stored += outcome.inserted
            c.duplicates += outcome.duplicates
            c.conflicts += outcome.conflicts
            c.new_meters += outcome.new_meters
            c.events_received += events_received
            c.events_stored += outcome.events_inserted
            c.dead_letters += dead + len(outcome.refused)
        _log_refused(outcome.refused)


def _still_waiting(pending: list[tuple[Received, Parsed]], done: set[int]) -> int:
    """How many messages of ``pending`` a failed write leaves waiting to be stored: those not at a
    position in ``done`` (committed by a try message by message before the failure, acknowledged
    with the rest once they are stored).

    Before, the writer's lines said all of ``pending``: a batch of 3 whose first 2 were committed,
    one by one, before the third failed was "3 messages wait" where 1 did."""
    return len(pending) - len(done)


def _letters_of(received: Received, result: Parsed) -> list[tuple[str, str, bytes]]:
    """The dead letters a message is before it is written: itself, refused whole by the parser, or
    its untimely readings (a letter of their own, the message's other readings stored)."""
    topic = received.message.topic
    if isinstance(result, RejectedMessage):
        return [(topic, result.reason, bytes(received.message.payload))]
    if isinstance(result, ParsedMessage) and result.untimely is not None:
        return [(topic, *result.untimely)]
    return []


def _log_refused(refused: tuple[tuple[str, str], ...]) -> None:
    """One line a topic for the dead letters of meters a gateway may not report (one a meter)."""
    by_topic: dict[str, list[str]] = {}
    for topic, reason in refused:
        by_topic.setdefault(topic, []).append(reason)
    for topic, reasons in by_topic.items():
        more = f"; and {len(reasons) - 3} more" if len(reasons) > 3 else ""
        log.warning("dead letters from %s: %s%s", topic, "; ".join(reasons[:3]), more)


_CLIENT_ID_NOT_VALID = 133  # CONNACK reason 0x85; paho maps a 3.1.1 broker's return code 2 to it
_CLIENT_ID_MAX = 23  # MQTT 3.1.1 and 5, 3.1.3.1: what every broker must take (letters and digits)


def _why_refused(reason: Any, client_id: str) -> str:
    """What to do about a broker refusing the collector's client id (an MQTT broker need take only 1
    to 23 letters and digits; the default in a shared group, ``aquami-collector-HOSTNAME``, is
    longer). Not replaced by one the broker would take, as the gateway's is: the id names the
    collector's persistent session, so the operator chooses it, once."""
    if getattr(reason, "value", 0) != _CLIENT_ID_NOT_VALID:
        return ""
    return (
        f" (client id {client_id!r}, {len(client_id)} characters: a broker need take only 1 to {_CLIENT_ID_MAX} "
        "letters and digits; give one such with --client-id, the same at every start)"
    )
