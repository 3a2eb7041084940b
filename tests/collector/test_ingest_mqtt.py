"""Ingest through a real Mosquitto: dead letters, and a collector SIGKILLed before commit."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from psycopg import sql

from aquami.mqtt import MqttEndpoint
from collector.service import Collector, CollectorConfig
from tests.lock_waits import lock_waits
from tests.services import MosquittoBroker, drop_database, with_database


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextmanager
def publisher(url: str) -> Iterator[Callable[[str, bytes], None]]:
    endpoint = MqttEndpoint.parse(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}")
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()

    def publish(topic: str, payload: bytes) -> None:
        client.publish(topic, payload, qos=1).wait_for_publish(10)

    try:
        yield publish
    finally:
        # DISCONNECT first: it wakes the network thread, which then ends. Stopped first, the thread
        # ended only at its select's next timeout, up to a second after every ``with publisher``.
        # Nothing is lost: each publish waited for the broker's PUBACK.
        client.disconnect()
        client.loop_stop()


def reads(gateway: str, seq: int, readings: list[tuple[str, str, float]]) -> bytes:
    return json.dumps(
        {
            "gateway_id": gateway,
            "batch_seq": seq,
            "sent_at": "2026-03-02T00:00:00Z",
            "readings": [{"meter_id": m, "ts": ts, "volume_m3": v} for m, ts, v in readings],
        }
    ).encode()


def count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


@contextmanager
def running_collector(database_url: str, mqtt_url: str, **config: Any) -> Iterator[Collector]:
    """A collector of ``database_url`` and ``mqtt_url``, its other settings ``config``'s or the defaults."""
    endpoint, client_id = MqttEndpoint.parse(mqtt_url), f"test-col-{uuid.uuid4().hex[:8]}"
    collector = Collector(CollectorConfig(database_url, endpoint, client_id=client_id, **config))
    collector.start()
    try:
        yield collector
    finally:
        collector.stop()


def _ready(publish: Callable[[str, bytes], None], url: str, gateway: str) -> None:
    """Publish probes until one is stored: the collector is connected and subscribed."""
    deadline = time.monotonic() + 30
    seq = 0
    while count(url, f"SELECT count(*) FROM readings WHERE meter_id = '{gateway}-probe'") == 0:
        assert time.monotonic() < deadline, "the collector never stored a probe"
        probe = (f"{gateway}-probe", f"2026-01-01T00:00:{seq % 60:02d}Z", 1.0)
        publish(f"aquami/v1/{gateway}/reads", reads(gateway, seq, [probe]))
        seq += 1
        time.sleep(0.3)


def test_a_malformed_batch_lands_in_dead_letters_with_its_reason_and_the_next_good_one_is_stored(
    migrated_database_url, mosquitto
):
    url, gw = migrated_database_url, "gw-dead"
    with running_collector(url, mosquitto.url), publisher(mosquitto.url) as publish:
        _ready(publish, url, gw)
        publish(f"aquami/v1/{gw}/reads", b"{not json")
        publish(f"aquami/v1/{gw}/reads", reads(gw, 1, [("M1", "2026-03-01T00:00:00Z", -5)]))
        publish(f"aquami/v1/{gw}/reads", reads(gw, 2, [("M1", "2026-03-01T01:00:00Z", 5.5)]))
        wait_for(lambda: count(url, "SELECT count(*) FROM readings WHERE meter_id = 'M1'") == 1, 20, "good batch")
        wait_for(lambda: count(url, "SELECT count(*) FROM dead_letters") == 2, 20, "dead letters")
    with psycopg.connect(url) as conn:
        letters = conn.execute("SELECT topic, reason, payload FROM dead_letters ORDER BY id").fetchall()
        stored = conn.execute("SELECT volume_m3 FROM readings WHERE meter_id = 'M1'").fetchone()
    assert [topic for topic, _, _ in letters] == [f"aquami/v1/{gw}/reads"] * 2
    assert "not JSON" in letters[0][1] and bytes(letters[0][2]) == b"{not json"
    assert "readings/0/volume_m3" in letters[1][1]
    assert stored == (Decimal("5.5"),)


def test_a_message_with_600_000_empty_readings_is_a_dead_letter_in_seconds_and_the_next_ones_are_stored(
    migrated_database_url, fresh_mosquitto
):
    """1.8 MB of ``{}`` as readings took 75 s to explain on paho's network thread: the broker dropped
    the collector past 1.5 keepalives, the dead letter's PUBACK never came, and the message came
    first again after every reconnect (19 of 200 good batches stored in 8 minutes)."""
    url, gw = migrated_database_url, "gw-slow"
    head = f'{{"gateway_id":"{gw}","batch_seq":1,"sent_at":"2026-03-02T00:00:00Z","readings":['
    poison = (head + ",".join(["{}"] * 600_000) + "]}").encode()
    with running_collector(url, fresh_mosquitto.url), publisher(fresh_mosquitto.url) as publish:
        _ready(publish, url, gw)
        publish(f"aquami/v1/{gw}/reads", poison)
        for seq in range(2, 22):
            publish(f"aquami/v1/{gw}/reads", reads(gw, seq, [("P1", f"2026-03-01T00:{seq:02d}:00Z", seq + 0.5)]))
        wait_for(lambda: count(url, "SELECT count(*) FROM readings WHERE meter_id = 'P1'") == 20, 10, "the good ones")
        assert count(url, "SELECT count(*) FROM dead_letters WHERE reason LIKE 'readings: 600000 items%'") == 1


def _collector_process(
    database_url: str, mqtt_url: str, client_id: str, *options: str, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """``aquami collector run`` as a process; its log (stderr) goes to ``log`` if given."""
    env = {**os.environ, "AQUAMI_DATABASE_URL": database_url, "AQUAMI_MQTT_URL": mqtt_url}
    aquami = os.path.join(os.path.dirname(sys.executable), "aquami")
    with open(log if log is not None else os.devnull, "ab") as stderr:
        return subprocess.Popen(
            [aquami, "collector", "run", "--client-id", client_id, *options],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def test_a_collector_killed_between_receiving_and_committing_loses_nothing(migrated_database_url, fresh_mosquitto):
    url, gw, client_id = migrated_database_url, "gw-kill", f"col-{uuid.uuid4().hex[:8]}"
    batches = [
        reads(gw, seq, [(f"K{m}", f"2026-03-01T{seq:02d}:00:00Z", seq + m / 10) for m in range(50)])
        for seq in range(1, 6)
    ]
    process = _collector_process(url, fresh_mosquitto.url, client_id)
    try:
        with publisher(fresh_mosquitto.url) as publish:
            _ready(publish, url, gw)
            with psycopg.connect(url) as blocker:
                # Hold the merge: the collector receives, stages, and then waits on this lock,
                # uncommitted and unacknowledged, when it is killed.
                blocker.execute("LOCK TABLE readings IN SHARE MODE")
                for batch in batches:
                    publish(f"aquami/v1/{gw}/reads", batch)
                wait_for(
                    lambda: (
                        count(
                            url,
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND datname = current_database() AND query ~ '^\\s*(INSERT INTO|COPY) readings'",
                        )
                        >= 1
                    ),
                    20,
                    "the collector to be stuck committing",
                )
                process.send_signal(signal.SIGKILL)
                process.wait(10)
                blocker.rollback()
            assert count(url, "SELECT count(*) FROM readings WHERE meter_id LIKE 'K%'") == 0
            process = _collector_process(url, fresh_mosquitto.url, client_id)  # same session: redelivery
            wait_for(
                lambda: count(url, "SELECT count(*) FROM readings WHERE meter_id LIKE 'K%'") == 250,
                60,
                "the redelivered batches",
            )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)
        assert conn.execute("SELECT sum(volume_m3) FROM readings WHERE meter_id LIKE 'K%'").fetchone() == (
            sum(Decimal(seq) + Decimal(m) / 10 for seq in range(1, 6) for m in range(50)),
        )


def test_collectors_in_a_shared_group_split_the_batches_and_store_each_once(migrated_database_url, fresh_mosquitto):
    url, gw = migrated_database_url, "gw-shared"
    endpoint = MqttEndpoint.parse(fresh_mosquitto.url)
    collectors = [
        Collector(CollectorConfig(url, endpoint, client_id=f"shared-{i}-{uuid.uuid4().hex[:6]}", shared_group="g1"))
        for i in range(2)
    ]
    for collector in collectors:
        collector.start()
    received = lambda: [c.counters.snapshot()["readings_received"] for c in collectors]  # noqa: E731
    published = 0
    try:
        with publisher(fresh_mosquitto.url) as publish:
            wait_for(lambda: all(c._client.is_connected() for c in collectors), 20, "both collectors")
            # Publish until both have had a share (their SUBSCRIBEs take a moment), at least 40 batches.
            while published < 40 or (min(received()) == 0 and published < 400):
                ts = f"2026-03-01T{published % 24:02d}:{published // 24:02d}:00Z"
                publish(f"aquami/v1/{gw}/reads", reads(gw, published, [(f"S{m}", ts, 1.0) for m in range(10)]))
                published += 1
                time.sleep(0.01)
            wait_for(lambda: sum(received()) >= published * 10, 30, "every batch")
    finally:
        for collector in collectors:
            collector.stop()
    shares = received()
    assert count(url, "SELECT count(*) FROM readings WHERE meter_id LIKE 'S%'") == published * 10
    assert sum(shares) == published * 10 and all(share > 0 for share in shares), shares  # split, nothing twice


def test_the_collector_keeps_storing_when_its_periodic_vee_fails(migrated_database_url, mosquitto):
    """``collector run --vee-every``: a VEE round that fails on the database (here its consumption
    refresh is gone) is logged, and the collector goes on storing reads; it used to exit."""
    url, gw, client_id = migrated_database_url, "gw-vee", f"col-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER FUNCTION refresh_consumption(timestamptz, timestamptz) RENAME TO refresh_elsewhere")
    process = _collector_process(url, mosquitto.url, client_id, "--vee-every", "1", "--detect-every", "0")
    try:
        with publisher(mosquitto.url) as publish:
            _ready(publish, url, gw)
            time.sleep(3)  # a few VEE rounds, each failing
            publish(f"aquami/v1/{gw}/reads", reads(gw, 1, [("V1", "2026-03-01T00:00:00Z", 1.5)]))
            wait_for(lambda: count(url, "SELECT count(*) FROM readings WHERE meter_id = 'V1'") == 1, 20, "the read")
        assert process.poll() is None, "the collector exited"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_database_that_stops_taking_writes_for_a_while_loses_nothing(migrated_database_url, mosquitto, caplog):
    """The collector's connection is cut and the database comes back read-only (a standby, as after
    a failover): writes fail, the batch waits unacknowledged, and once the database takes writes
    again it is stored. Said in a line each second, not a traceback (a standby is no fault)."""
    url, gw = migrated_database_url, "gw-ro"
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with running_collector(url, mosquitto.url) as collector, publisher(mosquitto.url) as publish:
        _ready(publish, url, gw)
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            publish(f"aquami/v1/{gw}/reads", reads(gw, 1, [("R1", "2026-03-01T00:00:00Z", 2.5)]))
            wait_for(lambda: collector.counters.database_errors >= 3, 30, "writes refused")
            assert count(url, "SELECT count(*) FROM readings WHERE meter_id = 'R1'") == 0
            admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        wait_for(lambda: count(url, "SELECT count(*) FROM readings WHERE meter_id = 'R1'") == 1, 30, "the read")
    said = [r for r in caplog.records if r.name == "collector.service"]
    assert any("database unavailable" in r.getMessage() for r in said)
    assert not [r for r in said if r.levelno >= logging.ERROR]


def test_the_shipped_broker_settings_keep_the_collector_s_backlog_while_the_database_is_away(
    migrated_database_url,
):
    """1,500 batches arrive while the database takes no writes: the gateways have their PUBACKs and
    have deleted them, so the broker must hold them all for the collector. With Mosquitto's default
    queue (1,000 messages a client) 1,021 of 1,501 were stored; with the settings the project ships
    (collector/examples/mosquitto.conf) every one is."""
    queue = _shipped_broker_settings(("max_queued",))
    assert queue == ["max_queued_messages 0", "max_queued_bytes 0"]
    url, gw = migrated_database_url, "gw-backlog"
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    broker = MosquittoBroker(settings=queue)
    broker.start()
    try:
        with running_collector(url, broker.url) as collector, publisher(broker.url) as publish:
            _ready(publish, url, gw)
            with psycopg.connect(url, autocommit=True) as admin:
                _refuse_writes(admin, name)
                for seq in range(1, 1501):
                    ts = f"2026-03-01T{seq // 3600:02d}:{seq // 60 % 60:02d}:{seq % 60:02d}Z"
                    publish(f"aquami/v1/{gw}/reads", reads(gw, seq, [("Q1", ts, float(seq))]))
                wait_for(lambda: collector.counters.database_errors >= 1, 30, "writes refused")
                admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
            wait_for(lambda: count(url, "SELECT count(*) FROM readings WHERE meter_id = 'Q1'") == 1500, 120, "all")
    finally:
        broker.close()


def _refuse_writes(admin: psycopg.Connection, name: object) -> None:
    """The database ``name`` takes no writes from now on, its open sessions included (cut, so the
    collector reconnects into read-only ones): a failover's standby, as the collector sees it."""
    admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    )


def _shipped_broker_settings(prefixes: tuple[str, ...]) -> list[str]:
    shipped = (Path(__file__).resolve().parents[2] / "collector" / "examples" / "mosquitto.conf").read_text()
    return [line for line in shipped.splitlines() if line.startswith(prefixes)]


def test_the_shipped_broker_settings_keep_the_collector_s_backlog_when_the_broker_crashes(migrated_database_url):
    """A backlog builds up while the database takes no writes (the gateways have deleted it on
    PUBACK), then the broker is SIGKILLed. Mosquitto wrote its persistence file every 1,800 s by
    default: the crash lost 4,700 of 8,200 readings. With the shipped settings every one is kept."""
    settings = _shipped_broker_settings(("max_queued", "autosave"))
    assert "autosave_interval 1" in settings
    url, gw = migrated_database_url, "gw-crash"
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    broker = MosquittoBroker(persistence=True, settings=settings)
    broker.start()
    try:
        with running_collector(url, broker.url) as collector, publisher(broker.url) as publish:
            _ready(publish, url, gw)
            with psycopg.connect(url, autocommit=True) as admin:
                _refuse_writes(admin, name)
                for seq in range(1, 301):
                    publish(
                        f"aquami/v1/{gw}/reads",
                        reads(gw, seq, [("C1", f"2026-03-01T00:{seq // 60:02d}:{seq % 60:02d}Z", seq)]),
                    )
                wait_for(lambda: collector.counters.database_errors >= 1, 30, "writes refused")
                # the broker writes its file every second (what a crash loses is the last second's): two
                # saves after all 300 were acknowledged, the second begun after that for sure (a fixed 2 s
                # could end before one on a loaded machine)
                for _ in range(2):
                    _wait_for_a_save(broker)
                broker.kill()
                broker.start()
                admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
            wait_for(lambda: count(url, "SELECT count(*) FROM readings WHERE meter_id = 'C1'") == 300, 60, "all")
    finally:
        broker.close()


def _wait_for_a_save(broker: MosquittoBroker) -> None:
    """Until ``broker`` has written its persistence file anew, from now."""
    saved = broker.persistence_file

    def mtime() -> int:
        return saved.stat().st_mtime_ns if saved.exists() else 0

    before = max(mtime(), time.time_ns())
    wait_for(lambda: mtime() > before, 30, "the broker to save its state")


def test_a_collector_started_before_its_database_waits_for_it(timescale_admin_url, mosquitto):
    """``collector run`` with its database not there yet (a host's boot order): it waits, trying
    again every few seconds, then migrates and stores. It used to exit with a traceback."""
    name = f"aquami_test_{uuid.uuid4().hex[:12]}"
    url = with_database(timescale_admin_url, name)
    gw, client_id = "gw-late-db", f"col-{uuid.uuid4().hex[:8]}"
    process = _collector_process(url, mosquitto.url, client_id, "--vee-every", "0", "--detect-every", "0")
    try:
        time.sleep(3)  # its first tries fail: the database does not exist
        assert process.poll() is None, "the collector exited"
        with psycopg.connect(timescale_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        wait_for(lambda: _migrated(url), 30, "the migrations")
        with publisher(mosquitto.url) as publish:
            _ready(publish, url, gw)
            publish(f"aquami/v1/{gw}/reads", reads(gw, 1, [("L1", "2026-03-01T00:00:00Z", 2.5)]))
            wait_for(lambda: count(url, "SELECT count(*) FROM readings WHERE meter_id = 'L1'") == 1, 20, "the read")
    finally:
        process.terminate()
        process.wait(timeout=30)
        drop_database(timescale_admin_url, url)


def _migrated(url: str) -> bool:
    try:
        return count(url, "SELECT count(*) FROM pg_tables WHERE tablename = 'readings'") == 1
    except psycopg.OperationalError:
        return False


def test_the_ready_file_appears_once_the_broker_keeps_messages_for_the_collector(migrated_database_url, tmp_path):
    """A gateway started before the collector's first subscription publishes to no one: the broker
    acknowledges, the gateway deletes, nothing is stored. ``--ready-file`` tells a deployment (the
    compose file's gateway waits for it) when the subscriptions are granted; from then on even a
    batch published while the collector is down is kept for it."""
    url, gw, client_id = migrated_database_url, "gw-ready", f"col-{uuid.uuid4().hex[:8]}"
    ready = tmp_path / "collector.subscribed"
    ready.write_text("left by a run that crashed\n")
    broker = MosquittoBroker(persistence=True)
    options = ("--ready-file", str(ready), "--detect-every", "0", "--vee-every", "0")
    process = _collector_process(url, broker.url, client_id, *options)
    try:
        wait_for(lambda: not ready.exists(), 20, "the stale ready file to go")
        time.sleep(1.5)
        assert not ready.exists(), "ready with no broker to subscribe on"
        broker.start()
        wait_for(ready.exists, 30, "the ready file")
        assert "aquami/v1/+/reads" in ready.read_text()
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
        assert not ready.exists(), "a stopped collector is not ready"
        with publisher(broker.url) as publish:  # while the collector is down
            publish(f"aquami/v1/{gw}/reads", reads(gw, 1, [("R1", "2026-03-01T00:00:00Z", 1.25)]))
        process = _collector_process(url, broker.url, client_id, *options)
        wait_for(lambda: count(url, "SELECT count(*) FROM readings WHERE meter_id = 'R1'") == 1, 30, "the kept batch")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
        broker.close()


def test_messages_of_a_lost_broker_session_do_not_acknowledge_the_new_session_s_messages(
    migrated_database_url, fresh_mosquitto, tmp_path
):
    """The broker restarts without the collector's session while it holds five batches it cannot
    commit. Acknowledged after the commit by their old packet ids (1-5), they acknowledged the five
    batches the new session had given the same ids, not yet committed: the broker dropped those,
    and a collector killed then lost them (0 of 5 stored). Now only the current connection's
    messages are acknowledged."""
    url, gw, client_id = migrated_database_url, "gw", f"col-{uuid.uuid4().hex[:8]}"
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    # Every batch of the writer's here is closed by its size, never by its wait: five messages make
    # the readings that close a batch at once (CollectorConfig.min_batch_readings), four do not. The
    # five OLD messages must be one held batch (the writer retries that batch alone; one left out of
    # it, with the 0.1 s wait of the default, joined the new session's batches, held up by the locker
    # below, and OLD was never stored: 1 run in 9 on a loaded machine), and they are: the batch
    # closes as the fifth arrives, and the wait (30 s) is there only should one be late.
    per_message = -(-_batch_closing_readings() // 5)
    start = datetime(2026, 3, 1, tzinfo=UTC)

    def batch(meter: str, seq: int, readings: int) -> bytes:
        at = [start + timedelta(minutes=seq * readings + k) for k in range(readings)]
        return reads(gw, seq, [(meter, f"{ts:%Y-%m-%dT%H:%M:%SZ}", seq + k / 1000) for k, ts in enumerate(at)])

    def batches(meter: str) -> list[bytes]:
        return [batch(meter, seq, per_message) for seq in range(1, 6)]

    def stored(meter: str) -> int:
        return count(url, f"SELECT count(*) FROM readings WHERE meter_id = '{meter}'")

    ready = tmp_path / "collector.subscribed"
    options = ("--vee-every", "0", "--detect-every", "0", "--batch-wait", "30", "--ready-file", str(ready))
    log = tmp_path / "collector.log"
    process = _collector_process(url, fresh_mosquitto.url, client_id, *options, log=log)
    admin = psycopg.connect(url, autocommit=True)
    locker = psycopg.connect(url)
    try:
        # subscribed (the ready file), then one probe stored, a batch of its own: the writer's
        # connection is up and nothing is left in its batch when the database is cut (a probe
        # published before the subscription was lost, and one after the one seen stored waited in
        # the writer's batch, where it joined the five OLD messages: "6 messages wait")
        wait_for(ready.exists, 30, "the collector's subscriptions")
        with publisher(fresh_mosquitto.url) as publish:
            publish(f"aquami/v1/{gw}/reads", batch(f"{gw}-probe", 0, _batch_closing_readings()))
        wait_for(lambda: stored(f"{gw}-probe") == _batch_closing_readings(), 30, "the probe")
        admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        admin.close()
        # and the collector is stopped while they are published: all five wait in its socket
        process.send_signal(signal.SIGSTOP)
        try:
            with publisher(fresh_mosquitto.url) as publish:
                for old in batches("OLD"):
                    publish(f"aquami/v1/{gw}/reads", old)  # acknowledged by the broker: queued to the collector
        finally:
            process.send_signal(signal.SIGCONT)
        held = re.compile(r"(\d+) messages wait, unacknowledged")
        wait_for(  # the collector holds them, its writes refused
            lambda: held.search(log.read_text()), 30, "the collector to hold the old session's messages"
        )
        assert [int(n) for n in held.findall(log.read_text())][:1] == [5], log.read_text()
        fresh_mosquitto.restart()  # no persistence: the collector's session is gone
        # the collector reconnects and subscribes again, and the broker grants it (a fixed 2 s could
        # end before, and NEW was published to no one): its second "subscribed to", then the ready file
        # (gone when the connection was lost) back
        wait_for(lambda: log.read_text().count(" subscribed to ") >= 2 and ready.exists(), 30, "the new subscription")
        locker = psycopg.connect(url)
        locker.execute("SET transaction_read_only = off")
        locker.execute("INSERT INTO meters (meter_id) VALUES ('NEW')")  # holds NEW's write
        # each acknowledged by the broker once queued to the collector's new session, with its packet
        # id (mosquitto gives the id as it queues, before its PUBACK): the ids OLD's would acknowledge
        with publisher(fresh_mosquitto.url) as publish:
            for new in batches("NEW"):
                publish(f"aquami/v1/{gw}/reads", new)
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SET default_transaction_read_only = off")
            admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        wait_for(lambda: stored("OLD") == 5 * per_message, 30, "the old session's batches")
        # the writer acknowledges a batch once it is committed, before it takes the next: once its
        # write of NEW waits on the locker, OLD's acknowledgements (none now) were given
        with psycopg.connect(url, autocommit=True) as monitor:
            wait_for(lambda: lock_waits(monitor), 30, "the collector's write of NEW to wait on the locker")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        locker.rollback()
        assert stored("NEW") == 0
        process = _collector_process(url, fresh_mosquitto.url, client_id, *options)  # same session
        wait_for(lambda: stored("NEW") == 5 * per_message, 30, "the new session's batches, sent again")
    finally:
        locker.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def _batch_closing_readings() -> int:
    """The readings at which the collector's writer closes a batch without waiting for more."""
    return CollectorConfig("", MqttEndpoint.parse("mqtt://127.0.0.1")).min_batch_readings


def test_untimely_readings_and_large_payloads_make_bounded_dead_letters(migrated_database_url, mosquitto):
    """A reading dated 9999-12-31 was stored as actual, and a refused 60 MB payload kept whole in
    ``dead_letters``. Now the reading is a dead letter (the message's others stored), and a dead
    letter keeps the first 64 KiB with the payload's length and SHA-256."""
    url, gw = migrated_database_url, "gw-bounds"
    garbage = b"[" * 1_000_000
    with running_collector(url, mosquitto.url), publisher(mosquitto.url) as publish:
        _ready(publish, url, gw)
        publish(
            f"aquami/v1/{gw}/reads",
            reads(gw, 1, [("T1", "2026-03-01T00:00:00Z", 1.5), ("T2", "9999-12-31T23:59:59Z", 2.5)]),
        )
        publish(f"aquami/v1/{gw}/reads", garbage)
        wait_for(lambda: count(url, "SELECT count(*) FROM dead_letters") == 2, 20, "the dead letters")
    assert count(url, "SELECT count(*) FROM readings WHERE meter_id = 'T1'") == 1
    assert count(url, "SELECT count(*) FROM readings WHERE meter_id = 'T2'") == 0
    with psycopg.connect(url) as conn:
        letters = conn.execute(
            "SELECT reason, payload, payload_bytes, payload_sha256 FROM dead_letters ORDER BY id"
        ).fetchall()
    (untimely, payload, _, _), (_, kept, size, digest) = letters
    assert untimely.startswith("1 of 2 readings refused: readings/1/ts: '9999-12-31T23:59:59Z' is more than a day")
    assert [r["meter_id"] for r in json.loads(payload)["readings"]] == ["T2"]
    assert (bytes(kept), size, bytes(digest)) == (garbage[:65536], len(garbage), hashlib.sha256(garbage).digest())
