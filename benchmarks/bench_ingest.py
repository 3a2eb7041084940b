"""Ingest speed: readings per second from MQTT to committed rows, beside raw ``COPY`` of the same rows,
and the query time of consumption over the maintained tables with 10,000 meters of data.

Needs Mosquitto and TimescaleDB, started as the test fixtures start them (tests/services.py;
``AQUAMI_TEST_DATABASE_URL`` points at another TimescaleDB). Each measurement gets a fresh database.

- raw COPY: the same rows, binary ``COPY`` straight into ``readings``: the database's ceiling.
- MQTT → rows: the batches are queued in the broker for the collector's persistent session while it
  is offline, then the collector starts; timed from its start until its counters say every reading
  is committed. The broker is configured with a receive window of 1000 in-flight messages per
  client (``max_inflight_messages``; Mosquitto's default of 20 caps a collector that acknowledges
  only after commit: its throughput at 20 is printed too).
- queries: one meter's daily consumption over a year, and one DMA's hourly totals over a month,
  from ``consumption_daily`` / ``dma_consumption_hourly``; for comparison, the meter's days computed
  on the fly from its readings, and the DMA's hours summed from its meters' ``consumption_hourly``
  rows. Each baseline must return the very rows the maintained table does, or the benchmark stops.

    python -m benchmarks.bench_ingest [--meters 10000 --hours 24 --batch 1000] [--query-days 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg

from aquami.mqtt import MqttEndpoint
from collector.migrate import migrate
from collector.service import Collector, CollectorConfig
from tests.services import MosquittoBroker, admin_url, create_database, drop_database

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class BenchBroker(MosquittoBroker):
    def __init__(self, inflight: int) -> None:
        super().__init__()
        self.inflight = inflight

    def _write_config(self) -> Path:
        conf = super()._write_config()
        with conf.open("a") as f:
            f.write(f"max_inflight_messages {self.inflight}\nmax_queued_messages 0\nmax_queued_bytes 0\n")
        return conf


def make_batches(meters: int, hours: int, batch: int) -> tuple[list[tuple[str, bytes]], int]:
    """Gateway batches of ``batch`` readings: 100 meters per gateway, every gateway's hours in order."""
    per_gateway = 100
    messages = []
    total = 0
    seq: dict[str, int] = {}
    for g in range(0, meters, per_gateway):
        gateway = f"gw-{g // per_gateway:04d}"
        readings = [
            {
                "meter_id": f"M{m:05d}",
                "ts": (T0 + timedelta(hours=h)).isoformat().replace("+00:00", "Z"),
                "volume_m3": round(100 + m * 0.01 + h * 0.013, 3),
                "flow_m3h": 0.013,
                "source": {"protocol": "wmbus"},
            }
            for h in range(hours)
            for m in range(g, min(g + per_gateway, meters))
        ]
        for i in range(0, len(readings), batch):
            seq[gateway] = seq.get(gateway, 0) + 1
            chunk = readings[i : i + batch]
            payload = {
                "gateway_id": gateway,
                "batch_seq": seq[gateway],
                "sent_at": "2026-01-02T00:00:00Z",
                "readings": chunk,
            }
            messages.append((f"aquami/v1/{gateway}/reads", json.dumps(payload, separators=(",", ":")).encode()))
            total += len(chunk)
    return messages, total


def raw_copy(url: str, messages: list[tuple[str, bytes]]) -> tuple[int, float]:
    rows = []
    for _, payload in messages:
        message = json.loads(payload)
        for r in message["readings"]:
            rows.append(
                (
                    r["meter_id"],
                    datetime.fromisoformat(r["ts"]),
                    Decimal(repr(r["volume_m3"])),
                    r["flow_m3h"],
                    message["gateway_id"],
                    message["batch_seq"],
                )
            )
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        with cur.copy(
            "COPY readings (meter_id, ts, volume_m3, flow_m3h, gateway_id, batch_seq) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["text", "timestamptz", "numeric", "float8", "text", "int8"])
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return len(rows), time.perf_counter() - started


def mqtt_ingest(
    url: str, broker: MosquittoBroker, messages: list[tuple[str, bytes]], total: int
) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) from the collector's start to the last commit."""
    endpoint = MqttEndpoint.parse(broker.url)
    client_id = f"bench-collector-{uuid.uuid4().hex[:6]}"
    config = CollectorConfig(url, endpoint, client_id=client_id)
    first = Collector(config)  # make the persistent session and its subscription, then go offline
    first.start()
    deadline = time.monotonic() + 20
    while not first._client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    first.stop()

    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
    publisher.max_inflight_messages_set(1000)
    publisher.connect(endpoint.host, endpoint.port)
    publisher.loop_start()
    infos = [publisher.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(60)
    publisher.loop_stop()
    publisher.disconnect()

    collector = Collector(config)
    started = time.perf_counter()
    cpu_started = time.process_time()
    collector.start()
    try:
        while collector.counters.snapshot()["readings_stored"] < total:
            if time.perf_counter() - started > 600:
                raise RuntimeError(f"collector stuck at {collector.counters.snapshot()}")
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    finally:
        collector.stop()
    counts = collector.counters.snapshot()
    assert counts["dead_letters"] == 0 and counts["readings_stored"] == total, counts
    return elapsed, cpu


def _median_ms(conn: psycopg.Connection, sql: str, params: tuple, runs: int = 7) -> tuple[float, list[tuple]]:
    """(median milliseconds, the rows) of ``runs`` runs of the query."""
    times = []
    rows: list[tuple] = []
    for _ in range(runs):
        started = time.perf_counter()
        rows = conn.execute(sql, params).fetchall()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, rows


def _same_rows(what: str, maintained: list[tuple], baseline: list[tuple]) -> None:
    """A baseline that returns other rows times other work: stop the benchmark if they differ."""
    if maintained != baseline:
        differ = [(a, b) for a, b in zip(maintained, baseline, strict=False) if a != b][:3]
        raise SystemExit(
            f"{what}: the maintained table gives {len(maintained)} rows, its baseline {len(baseline)}; "
            f"first differences {differ}"
        )


def queries(url: str, meters: int, days: int) -> dict[str, float]:
    """10,000 meters × ``days`` of hourly reads in 20 DMAs, one meter over a whole year."""
    month_end = T0 + timedelta(days=days)
    year_end = T0 + timedelta(days=365)
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute(
            "INSERT INTO meters (meter_id, registered, dma) "
            "SELECT format('M%%s', lpad(m::text, 5, '0')), true, format('DMA-%%s', m %% 20) "
            "FROM generate_series(0, %s - 1) m",
            (meters,),
        )
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3, flow_m3h) "
            "SELECT format('M%%s', lpad(m::text, 5, '0')), t, "
            "       round((100 + m * 0.01 + extract(epoch FROM t - %(t0)s) / 3600 * (0.005 + (m %% 7) * 0.002))"
            "             ::numeric, 3), 0.01 "
            "FROM generate_series(0, %(meters)s - 1) m, generate_series(%(t0)s, %(end)s, interval '1 hour') t",
            {"t0": T0, "end": month_end, "meters": meters},
        )
        conn.execute(  # M00000 has a whole year
            "INSERT INTO readings (meter_id, ts, volume_m3) "
            "SELECT 'M00000', t, round((100 + extract(epoch FROM t - %(t0)s) / 3600 * 0.02)::numeric, 3) "
            "FROM generate_series(%(start)s, %(end)s, interval '1 hour') t",
            {"t0": T0, "start": month_end + timedelta(hours=1), "end": year_end},
        )
        load_s = time.perf_counter() - started
        conn.execute("ANALYZE readings")
        started = time.perf_counter()
        conn.execute("SELECT refresh_consumption(%s, %s)", (T0, year_end))
        refresh_s = time.perf_counter() - started
        conn.execute("ANALYZE consumption_hourly; ANALYZE consumption_daily; ANALYZE dma_consumption_hourly")
        results = {"load_s": load_s, "refresh_s": refresh_s}
        results["meter_year_daily_ms"], n1 = _median_ms(
            conn,
            "SELECT day, consumption_m3 FROM consumption_daily WHERE meter_id = %s AND day >= %s AND day < %s "
            "ORDER BY day",
            ("M00000", T0, year_end),
        )
        # each interval counts on the day it ends in, as consumption_* count it: the year's first
        # reading only opens the first interval and closes none of the year's (unchecked, its
        # difference with nothing made a 366th row, 31 December 2025, of unknown consumption)
        results["meter_year_daily_on_the_fly_ms"], n2 = _median_ms(
            conn,
            """SELECT date_bin('1 day', ts - interval '1 microsecond', %s) AS day, sum(c) FROM (
                       SELECT ts, volume_m3 - lag(volume_m3) OVER (ORDER BY ts) AS c FROM readings
                       WHERE meter_id = %s AND ts >= %s AND ts <= %s) d WHERE ts > %s GROUP BY 1 ORDER BY 1""",
            (T0, "M00000", T0, year_end, T0),
        )
        _same_rows("one meter's days over a year", n1, n2)
        results["dma_month_hourly_ms"], n3 = _median_ms(
            conn,
            "SELECT hour, consumption_m3 FROM dma_consumption_hourly WHERE dma = %s AND hour >= %s AND hour < %s "
            "ORDER BY hour",
            ("DMA-3", T0, month_end),
        )
        results["dma_month_hourly_from_meter_hours_ms"], n4 = _median_ms(
            conn,
            "SELECT c.hour, sum(c.consumption_m3) FROM consumption_hourly c JOIN meters m USING (meter_id) "
            "WHERE m.dma = %s AND c.hour >= %s AND c.hour < %s GROUP BY 1 ORDER BY 1",
            ("DMA-3", T0, month_end),
            runs=3,
        )
        _same_rows("one DMA's hours over a month", n3, n4)
        results["rows"] = {"meter_year_days": len(n1), "dma_hours": len(n3)}  # type: ignore[assignment]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--hours", type=int, default=24, help="hourly readings per meter to ingest")
    parser.add_argument("--batch", type=int, default=1000, help="readings per MQTT message")
    parser.add_argument("--query-meters", type=int, default=10_000)
    parser.add_argument("--query-days", type=int, default=30)
    parser.add_argument("--skip-queries", action="store_true")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of raw COPY and MQTT; best of each")
    parser.add_argument("--also-default-inflight", action="store_true", help="also measure with Mosquitto's 20")
    args = parser.parse_args()

    server = admin_url()
    messages, total = make_batches(args.meters, args.hours, args.batch)
    print(f"{total} readings in {len(messages)} messages of up to {args.batch}", flush=True)
    result: dict[str, object] = {"readings": total, "messages": len(messages)}

    raw_rates: list[float] = []
    mqtt_rates: dict[int, list[float]] = {1000: [], 20: []}
    for attempt in range(args.repeat):  # alternate, so both see the same (shared, noisy) machine
        raw_db = create_database(server)
        try:
            migrate(raw_db)
            rows, raw_s = raw_copy(raw_db, messages)
        finally:
            drop_database(server, raw_db)
        raw_rates.append(rows / raw_s)
        print(
            f"[{attempt + 1}] raw binary COPY          : {rows / raw_s:10,.0f} readings/s ({raw_s:.2f} s)", flush=True
        )
        for inflight in [1000, 20] if args.also_default_inflight else [1000]:
            db = create_database(server)
            broker = BenchBroker(inflight)
            try:
                migrate(db)
                broker.start()
                mqtt_s, cpu_s = mqtt_ingest(db, broker, messages, total)
            finally:
                broker.close()
                drop_database(server, db)
            mqtt_rates[inflight].append(total / mqtt_s)
            print(
                f"[{attempt + 1}] MQTT → rows (window {inflight:4d}): {total / mqtt_s:10,.0f} readings/s "
                f"({mqtt_s:.2f} s; collector CPU {cpu_s / mqtt_s:.0%} of one core) "
                f"= {total / mqtt_s / (rows / raw_s):.0%} of this round's raw COPY",
                flush=True,
            )
    best_raw = max(raw_rates)
    result["raw_copy_per_s"] = round(best_raw)
    for inflight, rates in mqtt_rates.items():
        if rates:
            result[f"mqtt_per_s_inflight_{inflight}"] = round(max(rates))
    result["ratio_to_raw_copy"] = round(max(mqtt_rates[1000]) / best_raw, 3)
    print(
        f"best of {args.repeat}: raw COPY {best_raw:,.0f}/s, MQTT → rows {max(mqtt_rates[1000]):,.0f}/s "
        f"= {result['ratio_to_raw_copy']:.0%}",
        flush=True,
    )

    if not args.skip_queries:
        db = create_database(server)
        try:
            migrate(db)
            q = queries(db, args.query_meters, args.query_days)
        finally:
            drop_database(server, db)
        result["queries"] = q
        print(
            f"query data: {args.query_meters} meters × {args.query_days} days hourly + one meter for a year; "
            f"load {q['load_s']:.1f} s, refresh_consumption {q['refresh_s']:.1f} s"
        )
        counts = q["rows"]
        print(
            f"one meter, daily over a year   : {q['meter_year_daily_ms']:7.2f} ms "
            f"(on the fly from readings: {q['meter_year_daily_on_the_fly_ms']:.2f} ms; "
            f"the same {counts['meter_year_days']} days)"  # type: ignore[index]
        )
        print(
            f"one DMA, hourly over a month   : {q['dma_month_hourly_ms']:7.2f} ms "
            f"(summing its meters' rows of consumption_hourly: {q['dma_month_hourly_from_meter_hours_ms']:.2f} ms; "
            f"the same {counts['dma_hours']} hours)"  # type: ignore[index]
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
