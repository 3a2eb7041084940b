"""Test helpers for the gateway: simulated meters that count what they serve, a recording MQTT
subscriber, a broker to take away, a link that stops passing acknowledgements, configuration files
for a gateway under test, and running it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import serial

from aquami.contracts.reads import Reading, schema_errors
from firmware_protocols.modbus import MeterProfile, load_profile
from gateway.config import GatewayConfig, load_config, parse_config_text
from gateway.service import Gateway
from simulators.smart_meter import SmartMeter, SteadyFlow
from tests.services import MosquittoBroker


@dataclass
class StatelessTransport:
    """A test transport's no-op ``reset``, ``close`` and ``interrupt`` (gateway.transport.Transport):
    subclasses say what ``read`` does."""

    async def reset(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def interrupt(self) -> None:
        pass


class CountingMeter(SmartMeter):
    """A simulated meter that counts the register reads it has answered."""

    served: int = 0

    def registers_at(self, at: datetime) -> list[int]:
        self.served += 1
        return super().registers_at(at)


@dataclass
class PulseModule:
    """A pulse-counter I/O module holding a 32-bit count (its profile: ``pulse_counter``)."""

    unit_id: int
    profile: MeterProfile
    count: int

    def registers_at(self, at: datetime) -> list[int]:
        return [self.count >> 16, self.count & 0xFFFF]


def meters(count: int, first_unit: int = 1, prefix: str = "WM") -> list[CountingMeter]:
    profile = load_profile("smart_water_meter")
    start = datetime.now(UTC) - timedelta(days=1)
    return [
        CountingMeter(f"{prefix}-{unit:04d}", unit, profile, SteadyFlow(start, initial_m3=10.0 * unit, rate_m3h=0.5))
        for unit in range(first_unit, first_unit + count)
    ]


class Subscriber:
    """Records every message on ``topics`` (QoS 1). ``persistent`` keeps its session on the broker,
    so what is published while it is away (the broker restarting) waits for it."""

    def __init__(self, url: str, topics: Iterable[str], client_id: str = "test-subscriber", persistent: bool = False):
        parts = urlsplit(url)
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._topics = list(topics)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=not persistent
        )
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async(parts.hostname or "127.0.0.1", parts.port or 1883)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("test subscriber did not subscribe")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        client.subscribe([(t, 1) for t in self._topics])

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def payloads(self, suffix: str) -> list[Any]:
        with self._lock:
            found = [p for t, p in self.messages if t.endswith(suffix)]
        return [json.loads(p) if p[:1] in (b"{", b"[") else p.decode() for p in found]

    def count(self, suffix: str) -> int:
        """How many messages arrived on topics ending with ``suffix`` (cheap: nothing is parsed)."""
        with self._lock:
            return sum(1 for t, _ in self.messages if t.endswith(suffix))

    def batches(self) -> list[dict[str, Any]]:
        batches = self.payloads("/reads")
        for batch in batches:
            assert schema_errors(batch) == [], schema_errors(batch)
        return batches

    def keys(self) -> list[tuple[str, str]]:
        """Every (meter_id, ts) received, in arrival order, repeats included."""
        return [(r["meter_id"], r["ts"]) for b in self.payloads("/reads") for r in b["readings"]]

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def toml_value(value: Any) -> str:
    """``value`` as TOML: strings quoted, tables inline (``{ litres_per_pulse = 10 }``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {toml_value(v)}" for key, v in value.items()) + " }"
    return str(value)


def toml_table(header: str, values: dict[str, Any], extra: str = "") -> list[str]:
    """The lines of one table: ``header`` (``[spool]``, ``[[buses]]``), its keys, then ``extra`` as written."""
    return [header, *(f"{key} = {toml_value(value)}" for key, value in values.items()), *([extra] if extra else [])]


def _head(
    gateway_id: str,
    broker_url: str,
    spool_path: Path | str,
    mqtt: dict[str, Any],
    *,
    extra_top: str = "",
    extra_mqtt: str = "",
    extra_spool: str = "",
) -> list[str]:
    """``gateway_id``, ``[mqtt]`` and ``[spool]``, each ``extra_…`` written as it is."""
    return [
        f"gateway_id = {toml_value(gateway_id)}",
        *([extra_top] if extra_top else []),
        *toml_table("[mqtt]", {"url": broker_url, **mqtt}, extra_mqtt),
        *toml_table("[spool]", {"path": spool_path}, extra_spool),
    ]


def config_text(
    broker_url: str,
    buses: dict[str, int],
    unit_ids: dict[str, Iterable[int]],
    spool_path: str,
    *,
    gateway_id: str = "gw-test",
    poll_interval_s: float = 0.2,
    batch_size: int = 5,
    window: int = 2,
    extra_mqtt: str = "",
    extra_bus: str = "",
    extra_top: str = "",
    extra_spool: str = "",
    timeout_s: float = 0.5,
    retries: int = 1,
    bus_timing: dict[str, dict[str, Any]] | None = None,
) -> str:
    """A gateway file with Modbus TCP buses ``{name: port}`` and meters ``WM-{unit:04d}`` on them;
    ``bus_timing`` ``{name: {"timeout_s": 2.0}}`` overrides, for the buses it names, the timing the
    others get (``poll_interval_s``, ``timeout_s``, ``retries``)."""
    mqtt = {"batch_size": batch_size, "window": window, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}
    extras = {"extra_top": extra_top, "extra_mqtt": extra_mqtt, "extra_spool": extra_spool}
    lines = _head(gateway_id, broker_url, spool_path, mqtt, **extras)
    for name, port in buses.items():
        bus = {"name": name, "protocol": "modbus-tcp", "host": "127.0.0.1", "port": port}
        timing = {"poll_interval_s": poll_interval_s, "timeout_s": timeout_s, "retries": retries}
        timing |= (bus_timing or {}).get(name, {})
        lines += toml_table("[[buses]]", {**bus, **timing, "retry_backoff_s": 0.05}, extra_bus)
    for name, units in unit_ids.items():
        for unit in units:
            lines += toml_table("[[meters]]", {"meter_id": f"WM-{unit:04d}", "bus": name, "unit_id": unit})
    return "\n".join(lines) + "\n"


def bus_config_text(
    broker_url: str,
    spool_path: Path | str,
    bus: dict[str, Any],
    meters: Iterable[dict[str, Any]],
    *,
    gateway_id: str,
    extra_top: str = "",
) -> str:
    """A gateway file with one bus (``bus``: its keys, ``name`` and ``protocol`` first) and ``meters``
    on it (each: ``meter_id``, then how the bus addresses it)."""
    lines = _head(gateway_id, broker_url, spool_path, {}, extra_top=extra_top)
    lines += toml_table("[[buses]]", bus)
    for meter in meters:
        lines += toml_table("[[meters]]", {"meter_id": meter["meter_id"], "bus": bus["name"], **meter})
    return "\n".join(lines) + "\n"


def port_free(port: str) -> bool:
    """Whether another program could open (and lock) the serial port now: the gateway let it go."""
    try:
        serial.Serial(port, timeout=0, exclusive=True).close()
    except serial.SerialException:
        return False
    return True


def record_readings(gateway: Gateway, taken: list[Reading]) -> None:
    """From now on ``gateway`` appends to ``taken`` every reading its spool commits, in order.

    Recorded as the spool's append returns (in the group-commit writer's thread), not as the poll
    that awaits it resumes: a poll cancelled at stop while its reading is being committed never
    resumes, yet the reading is in the spool and is delivered."""
    spool_reading = gateway.spool_reading
    append = gateway.spool.append
    waiting: dict[str, list[Reading]] = {}  # each reading by its body, until committed
    lock = threading.Lock()

    def key(body: dict[str, Any]) -> str:
        return json.dumps(body, sort_keys=True)

    async def registering(reading: Reading) -> None:
        with lock:
            waiting.setdefault(key(reading.to_json()), []).append(reading)
        await spool_reading(reading)

    def recording(readings: Iterable[dict[str, Any]]) -> Any:
        bodies = list(readings)
        appended = append(bodies)
        with lock:  # once committed: a count of these never runs ahead of spool.depth()
            for body in bodies:
                if readings_of_body := waiting.get(key(body)):  # those spool_reading was given
                    taken.append(readings_of_body.pop(0))
        return appended

    gateway.spool_reading = registering  # type: ignore[method-assign]
    gateway.spool.append = recording  # type: ignore[method-assign]


@asynccontextmanager
async def running(gateway: Gateway, **run_options: Any) -> AsyncIterator[Gateway]:
    """``gateway`` runs while the block does; then it is stopped (and waited for), or cancelled if the block failed."""
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop, **run_options))
    try:
        yield gateway
    except BaseException:
        task.cancel()
        raise
    stop.set()
    await task


async def until(condition: Callable[[], bool], timeout: float) -> None:
    """Wait until ``condition`` holds, or ``timeout`` seconds have passed (no error: the test checks)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


def scan_command_after(
    config: Path,
    read_first: Iterable[str],
    change: Callable[[], None],
    request: dict[str, Any],
    timeout_s: float = 60,
) -> dict[str, Any]:
    """Through a gateway started from ``config``: each meter of ``read_first`` read once (so its first
    answer's identification or serial number is remembered), then ``change`` (a simulator's swap or
    exchange), then the ``scan`` command's reply to ``request``."""

    async def scenario() -> dict[str, Any]:
        gateway = Gateway(load_config(config), config_path=config)
        async with running(gateway):
            await until(lambda: gateway._commands is not None, 10)  # (made as the gateway starts)
            commands = gateway._commands
            assert commands is not None
            for meter_id in read_first:
                assert (await commands.read_now({"meter_id": meter_id}))["ok"]
            change()
            return await commands.scan(request)

    return asyncio.run(asyncio.wait_for(scenario(), timeout_s))


def exchanged_across(
    text: str, between: str, exchange: Callable[[], None], meter_id: str
) -> tuple[Gateway, list[Reading], list[Reading]]:
    """A gateway from config ``text`` reads ``meter_id`` once; then ``exchange`` (a simulator's
    exchange of its meter) happens just before a reload (``between == "reload"``, which makes the
    buses anew) or while the gateway is stopped (else, a second gateway from the same file and spool
    starting after it); run until the meter's polls have failed twice. The gateway that ran last, the
    readings taken before the exchange, and those taken after it."""
    first = Gateway(parse_config_text(text))
    before: list[Reading] = []
    after: list[Reading] = []
    record_readings(first, before)

    async def refused(gateway: Gateway) -> None:
        def failing() -> bool:
            health = gateway.health.meters.get(meter_id)  # (tracked once its buses start)
            return health is not None and health.consecutive_failures >= 2

        await until(failing, 20)

    async def scenario() -> Gateway:
        async with running(first):
            await until(lambda: len(before) >= 1, 20)
            if between == "reload":
                exchange()
                record_readings(first, after)
                await first.apply_config(parse_config_text(text))
                await refused(first)
                return first
        exchange()  # the gateway stopped meanwhile
        second = Gateway(parse_config_text(text))
        record_readings(second, after)
        async with running(second):
            await refused(second)
        return second

    return asyncio.run(scenario()), before, after


@contextmanager
def outage_broker(topics: Iterable[str], client_id: str) -> Iterator[tuple[MosquittoBroker, Subscriber]]:
    """A private broker a test may stop and start, keeping sessions across it, with a persistent
    subscriber on ``topics``: what is published while the broker is away reaches it afterwards."""
    broker = MosquittoBroker(persistence=True)
    broker.start()
    try:
        subscriber = Subscriber(broker.url, topics, client_id=client_id, persistent=True)
        try:
            yield broker, subscriber
        finally:
            subscriber.close()
    finally:
        broker.close()


async def run_recording(gateway: Gateway, seconds: float, taken: list[Reading]) -> Gateway:
    """Run ``gateway`` for ``seconds``, appending to ``taken`` every reading it spools, in order."""
    record_readings(gateway, taken)
    async with running(gateway):
        await asyncio.sleep(seconds)
    return gateway


def run_config(config: GatewayConfig, seconds: float) -> tuple[Gateway, list[Reading]]:
    """A gateway on ``config``, run for ``seconds`` in an event loop of its own, and what it spooled."""
    taken: list[Reading] = []

    async def scenario() -> Gateway:
        return await run_recording(Gateway(config), seconds, taken)

    return asyncio.run(scenario()), taken


def run_config_until(
    config: GatewayConfig, done: Callable[[list[Reading]], bool], timeout: float = 60.0
) -> tuple[Gateway, list[Reading]]:
    """A gateway on ``config``, run in an event loop of its own until ``done(what it has spooled)``
    holds, or ``timeout`` seconds have passed (no error: the test checks), and what it spooled.
    Rather than :func:`run_config`'s fixed time, where a test needs so many polls: a loaded machine
    makes fewer in a given time."""
    taken: list[Reading] = []

    async def scenario() -> Gateway:
        gateway = Gateway(config)
        record_readings(gateway, taken)
        async with running(gateway):
            await until(lambda: done(list(taken)), timeout)
        return gateway

    return asyncio.run(scenario()), taken


_PUBACK = 4  # MQTT control packet type (MQTT 3.1.1 §2.2.1, MQTT 5.0 §2.1.2)


async def _mqtt_packet(reader: asyncio.StreamReader) -> bytes | None:
    """One whole MQTT control packet (fixed header, remaining length, the rest), or None at the end."""
    try:
        head = await reader.readexactly(1)
        length_bytes, length, shift = b"", 0, 0
        while True:  # the remaining length: up to four bytes, seven bits each, low first
            byte = await reader.readexactly(1)
            length_bytes += byte
            length |= (byte[0] & 0x7F) << shift
            shift += 7
            if not byte[0] & 0x80:
                break
        return head + length_bytes + await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


class MqttLink:
    """A TCP link from a gateway to a broker on ``broker_port``, passing everything both ways; a
    subclass changes what comes down from the broker (:meth:`down`)."""

    def __init__(self, broker_port: int) -> None:
        from aquami.ports import free_port

        self.port = free_port()
        self._broker_port = broker_port
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    def drop(self) -> None:
        """Cut the connections now open (the gateway reconnects); call it on the link's event loop."""
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", self._broker_port)
        self._writers += [client_writer, broker_writer]
        up = asyncio.create_task(self._pass(client_reader, broker_writer))
        down = asyncio.create_task(self.down(broker_reader, client_writer))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # (also as the test's loop ends, cancelling this)
            for task in (up, down):
                task.cancel()
            client_writer.close()
            broker_writer.close()
            # Every side's end retrieved, the cancelled one's too: a side can end with its own error
            # between the wait and its cancel, and an exception left unretrieved is logged by asyncio
            # when the task is collected, into whichever test runs then, as an ERROR record with a
            # traceback (it failed a test asserting that its gateway logged none).
            outcomes = await asyncio.gather(up, down, return_exceptions=True)
        for outcome in outcomes:  # a cut side is how a link ends; anything else is the link's fault
            if isinstance(outcome, BaseException) and not isinstance(outcome, ConnectionError | asyncio.CancelledError):
                raise outcome

    @staticmethod
    async def _pass(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    async def down(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """What the broker sends, to the gateway: as it is."""
        await self._pass(reader, writer)


class AckStallingLink(MqttLink):
    """A link that passes the broker's first ``acks`` PUBACKs and then drops every later one,
    passing all else: a link gone dead for acknowledgements alone. The gateway keeps publishing
    until its window is full, and the broker has those batches, but the gateway never learns it: a
    kill then lands with batches sent and not acknowledged, whatever the machine's speed."""

    def __init__(self, broker_port: int, acks: int) -> None:
        super().__init__(broker_port)
        self.dropped = 0  # PUBACKs the gateway never got
        self._acks_left = acks

    async def down(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (packet := await _mqtt_packet(reader)) is not None:
            if packet[0] >> 4 == _PUBACK:
                if self._acks_left <= 0:
                    self.dropped += 1
                    continue
                self._acks_left -= 1
            writer.write(packet)
            await writer.drain()


class DelayingLink(MqttLink):
    """A link that holds everything from the broker ``delay_s`` before passing it on, in order: a
    long round trip (a cellular link), so a PUBACK comes back well after its PUBLISH went."""

    def __init__(self, broker_port: int, delay_s: float) -> None:
        super().__init__(broker_port)
        self.delay_s = delay_s

    async def down(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def later() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                writer.write(data)
                await writer.drain()

        passing = asyncio.create_task(later())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + self.delay_s, data))
                if passing.done():  # the gateway's side closed
                    return
        finally:
            passing.cancel()


class SlowConnackLink(MqttLink):
    """A link that holds each connection's first packet from the broker (its CONNACK) for
    ``delay_s``: a broker slow to accept (busy after a restart, or asking a slow authentication
    backend) or a link with a long round trip."""

    def __init__(self, broker_port: int, delay_s: float) -> None:
        super().__init__(broker_port)
        self.delay_s = delay_s

    async def down(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = True
        while data := await reader.read(65536):
            if first:
                await asyncio.sleep(self.delay_s)
                first = False
            writer.write(data)
            await writer.drain()
