"""``aquami demo``: simulated meters → gateway → MQTT broker → collector → database → API and web page.

Everything runs in this one process on embedded defaults (PostgreSQL from a wheel, a Python MQTT
broker), or against real services given by URL. It prints the web address and an API key, shows
progress, and stops cleanly on Ctrl-C or after ``duration`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import random
import shutil
import signal
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import psycopg
from psycopg import sql

from aquami.demo_folders import clear_left_overs, make_demo_folder
from aquami.demo_keys import issue_demo_key, revoke_on_stop
from aquami.demo_tally import let_collector_catch_up, tally
from aquami.embedded import EmbeddedBroker, start_embedded_postgres
from aquami.mqtt import MqttEndpoint, redacted
from aquami.ports import free_port, port_is_free
from collector.detection_job import DetectionJobConfig, DetectionScheduler, grid_end
from collector.migrate import migrate
from collector.service import Collector, CollectorConfig
from collector.store import ReadingStore
from firmware_protocols.modbus import load_profile
from gateway.config import GatewayConfig, MeterConfig, ModbusTcpBusConfig, MqttOptions
from gateway.service import Gateway
from server.auth import key_id_of
from server.meters.repository import register_meters
from server.sign_in_links import make_link
from simulators.events import Leak, ReverseFlow, Tamper
from simulators.meter_model import MeterModel
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.modelled_meter import ModelledMeter

log = logging.getLogger(__name__)

#: Days of hourly history loaded at start: what the leak detector learns each meter's habits from.
HISTORY_DAYS = 21


@dataclass(frozen=True)
class DemoOptions:
    meters: int = 20
    poll_interval_s: float = 5.0
    duration_s: float | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str | None = None
    mqtt_url: str | None = None
    data_dir: Path | None = None
    seed: int = 7
    progress_every_s: float = 5.0
    detect_every_s: float = 60.0


#: How long before the fleet's epoch its meters were installed (:func:`demo_fleet`).
INSTALLED_BEFORE_EPOCH = timedelta(days=HISTORY_DAYS + 30)


def demo_fleet(count: int, seed: int, now: datetime) -> list[ModelledMeter]:
    """Households on the consumption model, as of ``now`` (the demo's epoch: see :func:`fleet_epoch`);
    one has had a leak for 40 hours by then, one is tampered with, and through one water has gone
    back into the main for 20 hours (its backward register shows it). The epoch must stay the same
    from one run to the next (it sets the installation date): built around a later one, the
    registers read less, going back."""
    rng = random.Random(seed)
    profile = load_profile("smart_water_meter")
    installed = now - INSTALLED_BEFORE_EPOCH
    fleet = []
    for unit in range(1, count + 1):
        model = MeterModel(
            f"WM-{unit:05d}", installed=installed, seed=seed, initial_m3=rng.randrange(50_000, 900_000) / 1000,
            dma=demo_dma(unit),
        )  # fmt: skip
        if unit == 3:
            model.inject(Leak(start=now - timedelta(hours=40), rate_lph=25.0))
        if unit == 7:
            model.inject(Tamper(start=now - timedelta(days=2)))
        if unit == 12:
            model.inject(ReverseFlow(start=now - timedelta(hours=20), rate_lph=40.0))
        fleet.append(ModelledMeter(unit, profile, model))
    return fleet


@dataclass(frozen=True)
class HistoryLoaded:
    """What :func:`load_history` did: ``read`` reads made from the meters' model, ``stored`` of them
    new to the database (a read already stored, an earlier run's, is left as it is: readings are
    unique by meter and instant)."""

    read: int
    stored: int

    def line(self) -> str:
        """The demo's line about it: on a database an earlier run filled, most or all of the history
        is there already, and "10100 historical readings loaded" claimed what did not happen."""
        kept = self.read - self.stored
        if kept == 0:
            return f"· {self.stored} historical readings loaded"
        if self.stored == 0:
            return f"· the {self.read} historical readings were stored already (an earlier run's): none loaded"
        return f"· {self.stored} historical readings loaded ({kept} more were stored already, an earlier run's)"


def load_history(database_url: str, fleet: list[ModelledMeter], now: datetime, days: int) -> HistoryLoaded:
    """The meters' hourly reads before the demo started, as a head-end migration would load them.

    They end at the newest hour at or before ``now``, the newest instant of detection's grid, and
    begin ``days`` before it: the first detection run sees a read at every instant of its window.
    """
    last = grid_end(now, timedelta(hours=1))
    rows = []
    for unit in fleet:
        for hours_ago in range(days * 24, -1, -1):
            reading = unit.meter.read(last - timedelta(hours=hours_ago))
            rows.append(
                (unit.meter_id, reading.ts.isoformat(), repr(reading.volume_m3), reading.flow_m3h,
                 repr(reading.reverse_volume_m3), sorted(reading.alarms), "history", 0)
            )  # fmt: skip
    store = ReadingStore(database_url)
    try:
        result = store.write(rows)
    finally:
        store.close()
    return HistoryLoaded(read=result.written, stored=result.inserted)


def history_consumption(database_url: str, now: datetime, days: int) -> None:
    """The consumption (hourly, daily, per DMA) of the history :func:`load_history` wrote, worked out
    as a VEE round does for the reads it passes: before, it waited for the demo's first round, an hour
    after start, and a meter's page showed no daily consumption for the whole of a demo's first hour."""
    last = grid_end(now, timedelta(hours=1))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT refresh_consumption(%s, %s)", (last - timedelta(days=days), last + timedelta(hours=1)))


def fleet_epoch(conn: psycopg.Connection[Any], now: datetime) -> datetime:
    """The instant the demo's fleet is built around: the first run's hour, kept in the database as
    the start of the installations it recorded (``HISTORY_DAYS`` before it). A run on a database
    kept from an earlier one (``--data-dir``, ``--database-url``) builds the same meters again: built
    around its own hour, their registers would have read less than the stored ones, going back."""
    row = conn.execute("SELECT min(installed_at) FROM meter_installations WHERE meter_id LIKE 'WM-%'").fetchone()
    first = row[0] if row else None
    return first + timedelta(days=HISTORY_DAYS) if first is not None else grid_end(now, timedelta(hours=1))


def register_customers(conn: psycopg.Connection[Any], fleet: list[ModelledMeter], since: datetime) -> None:
    """One household per meter: account ACC-…, service point SP-…, agreement and installation since
    the history starts, so billing and customer care have someone to refer to."""
    rows = [(m.meter_id, m.meter_id.replace("WM-", ""), demo_dma(m.unit_id)) for m in fleet]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO accounts (account_id, name) VALUES ('ACC-' || %s, 'Household ' || %s) ON CONFLICT DO NOTHING",
            [(n, n) for _, n, _ in rows],
        )
        cur.executemany(
            "INSERT INTO service_points (service_point_id, dma, address) VALUES ('SP-' || %s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            [(n, dma, f"{int(n)} Demo Street") for _, n, dma in rows],
        )
        cur.executemany(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at) "
            "SELECT 'ACC-' || %(n)s, 'SP-' || %(n)s, %(since)s WHERE NOT EXISTS "
            "(SELECT 1 FROM service_agreements WHERE service_point_id = 'SP-' || %(n)s)",
            [{"n": n, "since": since} for _, n, _ in rows],
        )
        cur.executemany(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, initial_register_m3) "
            "SELECT 'SP-' || %(n)s, %(meter)s, %(since)s, NULL WHERE NOT EXISTS "
            "(SELECT 1 FROM meter_installations WHERE meter_id = %(meter)s)",
            [{"n": n, "meter": meter, "since": since} for meter, n, _ in rows],
        )


#: The table that marks a database as the demo's own: made when the demo first fills a database.
DEMO_MARK = "aquami_demo"

#: Tables whose rows say a database holds something: meters, their reads, customers.
_HOLDINGS = ("meters", "readings", "accounts")


class NotTheDemosDatabase(Exception):
    """A database given to the demo holds meters, readings or accounts the demo did not make."""


def claim_database(database_url: str, *, ours: bool = False) -> None:
    """Mark the database as the demo's, or refuse it when it holds data the demo did not make.

    The demo registers its meters WM-00001 … and invents their history: in a utility's database it
    would re-register the utility's own WM-00001 into the demo's DMA and write hundreds of invented
    'actual' reads around its real ones. So a database is used only when it is empty, or when the
    demo filled it before (``DEMO_MARK``). ``ours``: the embedded database in the demo's own folder,
    the demo's by construction (one kept with ``--data-dir`` from before the mark existed too).
    Raises :class:`NotTheDemosDatabase` having written nothing.
    """
    with psycopg.connect(database_url) as conn:  # one transaction: the check and the mark
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (DEMO_MARK,)).fetchone() == (True,):
            return
        if not ours:
            for table in _HOLDINGS:
                exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone() == (True,)
                query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))
                if exists and conn.execute(query).fetchone() == (True,):
                    raise NotTheDemosDatabase(
                        f"the database holds {table} the demo did not make; the demo writes its simulated "
                        "meters and invented readings only into an empty database or one it filled before: "
                        "give it an empty one, or none (it then starts its own)"
                    )
        conn.execute(
            sql.SQL("CREATE TABLE {} (made_at timestamptz NOT NULL DEFAULT now())").format(sql.Identifier(DEMO_MARK))
        )
        conn.execute(sql.SQL("INSERT INTO {} DEFAULT VALUES").format(sql.Identifier(DEMO_MARK)))
        conn.execute(
            sql.SQL("COMMENT ON TABLE {} IS {}").format(
                sql.Identifier(DEMO_MARK),
                sql.Literal("aquami demo: its simulated meters and invented readings are in this database"),
            )
        )


def demo_dma(unit_id: int) -> str:
    """The demo's meters sit in two district metered areas."""
    return "DMA-NORTH" if unit_id % 2 else "DMA-SOUTH"


class Demo:
    def __init__(self, options: DemoOptions, out: TextIO | None = None):
        self.options = options
        # sys.stdout when it says something, not when this is defined: the stream in place at import
        # (a test runner's, closed since) is not the one in place when the demo runs
        self._out = out
        self.stop = asyncio.Event()
        self.api_key = ""
        self.web_url = ""
        self.database_url = ""
        self._web_task: asyncio.Task[None] | None = None

    def _going_on(self) -> None:
        """Between start-up's phases: a Ctrl-C while the history loads stops there, not once every
        part has started and the banner has been shown."""
        if self.stop.is_set():
            raise _StoppedStarting

    def say(self, text: str) -> None:
        out = sys.stdout if self._out is None else self._out
        out.write(text + "\n")
        out.flush()

    async def run(self) -> None:
        o = self.options
        if o.database_url:  # before anything starts: a refused database is left as it was
            await asyncio.to_thread(claim_database, o.database_url)
        # what killed demos left in the temporary folder: their PostgreSQL would run for ever
        await asyncio.to_thread(clear_left_overs, lambda line: self.say(f"· {line}"))
        workdir = o.data_dir or make_demo_folder()
        workdir.mkdir(parents=True, exist_ok=True)  # the demo's own: the gateway's spool needs its folder there
        started = time.monotonic()
        pg_server = broker = simulator = collector = gateway = web = detection = None
        tasks: list[asyncio.Task[Any]] = []
        try:
            if o.database_url:
                self.database_url = o.database_url
            else:
                self.say("· starting embedded PostgreSQL …")
                pg_server, self.database_url = await asyncio.to_thread(
                    start_embedded_postgres, workdir, lambda line: self.say(f"· {line}")
                )
                await asyncio.to_thread(claim_database, self.database_url, ours=True)
            self._going_on()
            applied = await asyncio.to_thread(migrate, self.database_url)
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                epoch = fleet_epoch(conn, datetime.now(UTC))
                meters = demo_fleet(o.meters, o.seed, epoch)
                self.api_key = issue_demo_key(conn)  # the keys earlier runs printed no longer sign in
                register_meters(conn, [(m.meter_id, demo_dma(m.unit_id), "customer") for m in meters])
                # From the first historical read on, so every determinant opens on a read.
                register_customers(conn, meters, epoch - timedelta(days=HISTORY_DAYS))
            self.say(f"· database ready ({len(applied)} migrations applied, {len(meters)} meters registered)")
            self._going_on()
            self.say(f"· loading {HISTORY_DAYS} days of hourly history …")
            loaded_at = datetime.now(UTC)
            loaded = await asyncio.to_thread(load_history, self.database_url, meters, loaded_at, HISTORY_DAYS)
            await asyncio.to_thread(history_consumption, self.database_url, loaded_at, HISTORY_DAYS)
            self.say(loaded.line())
            self._going_on()
            if o.mqtt_url:
                mqtt_url = o.mqtt_url
            else:
                broker = EmbeddedBroker(free_port())
                await broker.start()
                mqtt_url = broker.url
            self.say(f"· MQTT broker at {redacted(mqtt_url)}")

            simulator = ModbusTcpSimulator(meters)
            await simulator.start()
            self.say(f"· {len(meters)} simulated Modbus TCP meters on 127.0.0.1:{simulator.port}")

            collector = Collector(CollectorConfig(database_url=self.database_url, mqtt=MqttEndpoint.parse(mqtt_url)))
            collector.start()

            gateway = Gateway(
                GatewayConfig(
                    gateway_id="demo-gw-1",
                    mqtt=MqttEndpoint.parse(mqtt_url),
                    spool_path=workdir / "gateway-spool.sqlite",
                    buses=(
                        ModbusTcpBusConfig(
                            name="modbus-tcp-1",
                            host="127.0.0.1",
                            port=simulator.port,
                            meters=tuple(MeterConfig(m.meter_id, m.unit_id) for m in meters),
                            poll_interval_s=o.poll_interval_s,
                        ),
                    ),
                    # The embedded broker speaks MQTT 3.1.1 only: say so rather than wait for the fallback.
                    # The embedded broker has no ACL: MQTT 3.1.1's acknowledged refusal cannot happen.
                    mqtt_options=MqttOptions(protocol="auto" if o.mqtt_url else "3.1.1", broker_acl=bool(o.mqtt_url)),
                )
            )
            tasks.append(asyncio.create_task(gateway.run(self.stop)))
            detection = DetectionScheduler(
                self.database_url, every=timedelta(seconds=o.detect_every_s),
                config=DetectionJobConfig(history_days=HISTORY_DAYS),
            )  # fmt: skip
            detection.start()

            web = await self._start_web()
            self._going_on()
            sign_in = await asyncio.to_thread(self._sign_in_link)
            self._banner(sign_in)
            await self._progress(collector, gateway, started)
        except _StoppedStarting:
            self.say("· stopped while starting")
        finally:
            self.stop.set()
            for task in tasks:
                with suppress(Exception):
                    await asyncio.wait_for(task, timeout=10)
            if web is not None and self._web_task is not None:
                web.should_exit = True
                with suppress(Exception):
                    await asyncio.wait_for(self._web_task, timeout=5)
            if self.api_key:  # the key printed above no longer signs in
                await asyncio.to_thread(revoke_on_stop, self.database_url)
            if detection is not None:
                await asyncio.to_thread(detection.stop)
            if collector is not None:
                if gateway is not None:
                    await let_collector_catch_up(collector, gateway)
                await asyncio.to_thread(collector.stop)
                if gateway is not None:
                    self.say(
                        tally(collector, gateway).line(gateway.config.spool_path, spool_kept=o.data_dir is not None)
                    )
            if simulator is not None:
                await simulator.stop()
            if broker is not None:
                await broker.stop()
            if pg_server is not None:
                await asyncio.to_thread(pg_server.cleanup)
            if o.data_dir is None:
                shutil.rmtree(workdir, ignore_errors=True)
            self.say("· stopped cleanly")

    async def _start_web(self) -> Any:
        import uvicorn

        from server.app import create_app

        port = self.options.port
        if port == 0 or not port_is_free(port, self.options.host):
            chosen = free_port(self.options.host)
            if port:
                self.say(f"· port {port} is taken; using {chosen}")
            port = chosen
        # log_config=None: uvicorn's lines go to the process's own logging (aquami.logging_setup)
        config = uvicorn.Config(
            create_app(self.database_url), host=self.options.host, port=port, log_level="warning", log_config=None
        )
        server = uvicorn.Server(config)
        self._web_task = asyncio.create_task(server.serve())
        while not server.started:
            if self._web_task.done():
                self._web_task.result()  # raises what stopped it
                raise RuntimeError("the web server stopped before it started")
            await asyncio.sleep(0.05)
        self.web_url = f"http://{self.options.host}:{port}"
        return server

    def _sign_in_link(self) -> str:
        """A one-time sign-in link for the demo's key (server.sign_in_links): the link printed before,
        ``/login?key=``, left the admin key itself in the browser's history."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            link = make_link(conn, key_id_of(self.api_key))
        return f"{self.web_url}/login?token={link.token}"

    def _banner(self, sign_in: str) -> None:
        self.say("")
        self.say(f"  aquami demo is running: {self.web_url}/")
        self.say(f"  sign in with this API key (role admin): {self.api_key}")
        self.say(f"  or open: {sign_in}  (signs in once, within 10 minutes)")
        self.say(f"  API:      curl -H 'Authorization: Bearer {self.api_key}' {self.web_url}/meters")
        self.say(f"  billing:  {self.web_url}/billing/determinants?period={datetime.now(UTC):%Y-%m}  (same key)")
        self.say(f"  care:     {self.web_url}/care/enquiries  (the care desk: the enquiries detection raised)")
        self.say(f"  API docs: {self.web_url}/docs")
        self.say(
            "  Ctrl-C stops it." if self.options.duration_s is None else f"  stops after {self.options.duration_s:g} s."
        )
        self.say("")

    async def _progress(self, collector: Collector, gateway: Gateway, started: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if self.options.duration_s is None else loop.time() + self.options.duration_s
        while not self.stop.is_set():
            wait = self.options.progress_every_s
            if deadline is not None:
                wait = min(wait, deadline - loop.time())
                if wait <= 0:
                    break
            with suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=wait)
            counts = collector.counters.snapshot()
            self.say(
                f"  t+{time.monotonic() - started:5.0f}s  polled {gateway.readings_spooled:6d}  "
                f"stored {counts['readings_stored']:6d}  waiting in spool {gateway.spool.depth():4d}  "
                f"dead letters {counts['dead_letters']}"
            )


class _StoppedStarting(Exception):
    """Ctrl-C (or SIGTERM) came during start-up."""


def run_demo(options: DemoOptions) -> None:
    async def main() -> None:
        demo = Demo(options)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, demo.stop.set)
        await demo.run()

    asyncio.run(main())
