"""How many simulated Modbus TCP meters one process serves, and how true the serial wire's timing is.

1. **Modbus TCP capacity.** A server process serves meters (unit ids 1..247 per port, as many ports
   as needed); this process is the load: raw-socket clients sending Read Input Registers (8
   registers, the smart water meter profile) as fast as answers come, for a few seconds. Polls per
   second = meters served at one poll per meter per second. Baseline, same run, same load:
   pymodbus's own server with static registers (no model, no profile). Then a paced run: every
   meter of a simulator sized at 80 % of the measured capacity polled once a second, to show it
   keeps up (achieved rate, 99th percentile latency).
2. **Wire timing.** An M-Bus meter on the pty at 2400 and 9600 baud 8E1, read with REQ_UD2 by a
   pyserial master: the time from the master's write to the last byte of the answer against what
   the line allows (request and answer at 11 bits per character, plus the meter's turnaround), and
   the spacing of the answer's bytes on the line. Bytes must never come faster (error ≥ 0).

    python -m benchmarks.bench_simulators [--meters 1000 --seconds 4 --clients 16] [--paced-meters N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import struct
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

import serial

if TYPE_CHECKING:
    from simulators.serial_line import SerialLine, Transaction

UNITS_PER_PORT = 247


def _installed() -> datetime:
    """Three days before today: the served meters read at the real time, as in a rig."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=3)


# ---- the server process ---------------------------------------------------------------------------


async def _serve(kind: str, meters: int, conn: Connection) -> None:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    from firmware_protocols.modbus import load_profile
    from simulators.meter_model import MeterModel
    from simulators.modbus_tcp import ModbusTcpSimulator
    from simulators.modelled_meter import ModelledMeter

    profile = load_profile("smart_water_meter")
    installed = _installed()
    ports: list[int] = []
    stoppers = []
    tasks: list[asyncio.Task[None]] = []
    for first in range(0, meters, UNITS_PER_PORT):
        units = range(1, min(UNITS_PER_PORT, meters - first) + 1)
        if kind == "simulator":
            models = [
                ModelledMeter(u, profile, MeterModel(f"M{first + u:06d}", installed=installed, seed=u)) for u in units
            ]
            for m in models:
                m.registers_at(datetime.now(UTC))  # the model's days worked out before the clock starts
            sim = ModbusTcpSimulator(models, port=0)
            await sim.start()
            ports.append(sim.port)
            stoppers.append(sim.stop)
        else:
            values = profile.encode({"volume_m3": 123.456, "flow_m3h": 0.5, "alarms": []})
            devices = [
                SimDevice(
                    id=u,
                    simdata=(
                        [SimData(0, count=1, values=False, datatype=DataType.BITS)],
                        [SimData(0, count=1, values=False, datatype=DataType.BITS)],
                        [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)],
                        [SimData(0, count=len(values), values=values, datatype=DataType.REGISTERS)],
                    ),
                )
                for u in units
            ]
            server = ModbusTcpServer(devices, address=("127.0.0.1", 0))
            tasks.append(asyncio.create_task(server.serve_forever()))
            while (transport := getattr(server, "transport", None)) is None:
                await asyncio.sleep(0.01)
            ports.append(transport.sockets[0].getsockname()[1])
            stoppers.append(server.shutdown)
    conn.send(ports)
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    for stop in stoppers:
        await stop()


def _server_main(kind: str, meters: int, conn: Connection) -> None:
    asyncio.run(_serve(kind, meters, conn))


# ---- the load -----------------------------------------------------------------------------------------


def _request(tid: int, unit: int) -> bytes:
    return struct.pack(">HHHBBHH", tid & 0xFFFF, 0, 6, unit, 0x04, 0, 8)


async def _client(port: int, units: list[int], until: float, latencies: list[float], period: float | None) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done, tid = 0, 0
    next_at = time.monotonic()
    try:
        while time.monotonic() < until:
            for unit in units:
                if period is not None:
                    next_at += period / len(units)
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if time.monotonic() >= until:
                    break
                tid += 1
                t0 = time.monotonic()
                writer.write(_request(tid, unit))
                header = await reader.readexactly(7)
                await reader.readexactly(struct.unpack(">H", header[4:6])[0] - 1)
                latencies.append(time.monotonic() - t0)
                done += 1
    finally:
        writer.close()
    return done


async def _load(ports: list[int], meters: int, clients: int, seconds: float, paced: bool) -> tuple[float, list[float]]:
    """Polls per second and latencies; ``paced``: every meter once a second, else as fast as answered."""
    all_units = [(ports[i // UNITS_PER_PORT], i % UNITS_PER_PORT + 1) for i in range(meters)]
    groups: list[tuple[int, list[int]]] = []
    for port in ports:  # clients per port in proportion to its meters, at least one
        units = [u for p, u in all_units if p == port]
        n = max(1, round(clients * len(units) / meters))
        groups += [(port, units[k::n]) for k in range(n) if units[k::n]]
    latencies: list[float] = []
    start = time.monotonic()
    until = start + seconds
    counts = await asyncio.gather(*(_client(p, u, until, latencies, 1.0 if paced else None) for p, u in groups))
    return sum(counts) / (time.monotonic() - start), latencies


def _measure(kind: str, meters: int, clients: int, seconds: float, paced: bool = False) -> tuple[float, list[float]]:
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    process = ctx.Process(target=_server_main, args=(kind, meters, theirs), daemon=True)
    process.start()
    try:
        ports = ours.recv()
        return asyncio.run(_load(ports, meters, clients, seconds, paced))
    finally:
        ours.send("stop")
        process.join(10)
        if process.is_alive():
            process.kill()


# ---- wire timing --------------------------------------------------------------------------------------


def _wire_timing(baudrate: int, reads: int) -> dict[str, float]:
    from firmware_protocols.mbus import build_req_ud2
    from simulators.mbus_bus import MBusSimulator, mbus_line
    from simulators.mbus_slave import MBusWaterMeter
    from simulators.meter_model import MeterModel
    from simulators.serial_line import pty_accepts_parity

    settings = mbus_line(baudrate)
    now = datetime.now(UTC)
    model = MeterModel("MB1", installed=_installed(), seed=1)
    model.read(now)
    meter = MBusWaterMeter(model, 1, "26000001", history_months=0)
    parity = serial.PARITY_EVEN if pty_accepts_parity() else serial.PARITY_NONE
    end_to_end: list[float] = []
    margins: list[float] = []
    with MBusSimulator([meter], settings, clock=lambda: now) as sim:
        # A blocking read (select under pyserial, GIL released) rather than a busy poll: a master
        # spinning on read(timeout=0) takes the GIL from the line's thread and skews what it measures.
        port = serial.Serial(sim.port, baudrate, parity=parity, timeout=0.5)
        for i in range(reads):
            request = build_req_ud2(1, fcb=bool(i % 2))
            port.reset_input_buffer()
            previous = sim.line.transactions[-1] if sim.line.transactions else None
            t0 = time.monotonic()
            port.write(request)
            got = b""
            while len(got) < 5 or len(got) < got[1] + 6:
                got += port.read(max(1, port.in_waiting))
                if time.monotonic() - t0 > 5:
                    raise RuntimeError("no answer")
            elapsed = time.monotonic() - t0
            allowed = (len(request) + len(got)) * settings.char_time_s + meter.turnaround_bits / baudrate
            end_to_end.append(elapsed / allowed - 1.0)
            # on the line: byte i leaves no earlier than the request's end + turnaround + (i + 1) characters
            tx = _transaction_after(sim.line, previous, request, got)
            start = tx.request_end + meter.turnaround_bits / baudrate
            margins.append(min(t - (start + (i + 1) * settings.char_time_s) for i, t in enumerate(tx.reply_times)))
        port.close()
    return {
        "baudrate": baudrate,
        "reads": reads,
        "frame_bytes": len(got),
        "end_to_end_error_min": min(end_to_end),
        "end_to_end_error_median": statistics.median(end_to_end),
        "end_to_end_error_max": max(end_to_end),
        "earliest_byte_margin_ms": min(margins) * 1e3,
    }


def _transaction_after(line: SerialLine, previous: Transaction | None, request: bytes, reply: bytes) -> Transaction:
    """The line's record of the exchange that followed ``previous``.

    The line's thread writes an answer's last byte and only then records the transaction, so a
    master holding the whole answer can be ahead of the record: reading ``transactions[-1]`` at
    once finds nothing (the first read) or, worse, the previous read's record. Wait for the new one.
    """
    deadline = time.monotonic() + 2.0
    while True:
        last = line.transactions[-1] if line.transactions else None
        if last is not None and last is not previous:
            if last.request != request or last.reply != reply:
                raise RuntimeError(f"the line recorded {last.request.hex()} -> {last.reply!r}, not this exchange")
            return last
        if time.monotonic() > deadline:
            raise RuntimeError("the line recorded no transaction for an answered request")
        time.sleep(0.001)


# ---- report -------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=1000, help="meters in the saturation runs")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=16, help="concurrent TCP connections of the load")
    parser.add_argument("--reads", type=int, default=20, help="M-Bus reads per baud rate")
    parser.add_argument(
        "--paced-meters", type=int, default=0, help="meters of the paced run (default 80%% of the measured capacity)"
    )
    args = parser.parse_args()

    sim_rate, sim_lat = _measure("simulator", args.meters, args.clients, args.seconds)
    base_rate, base_lat = _measure("static", args.meters, args.clients, args.seconds)
    print(f"Modbus TCP, {args.meters} meters, {args.clients} connections, as fast as answered:")
    for label, rate, latencies in (
        ("aquami simulator (live meter models)", sim_rate, sim_lat),
        ("pymodbus static datastore (baseline)", base_rate, base_lat),
    ):
        print(f"  {label}: {rate:8.0f} polls/s  median {statistics.median(latencies) * 1e3:.1f} ms")
    print(f"  ratio simulator / baseline: {sim_rate / base_rate:.2f}")
    paced_meters = args.paced_meters or max(1, int(sim_rate * 0.8))
    paced_rate, paced_lat = _measure("simulator", paced_meters, args.clients, args.seconds, paced=True)
    p99 = statistics.quantiles(paced_lat, n=100)[98] if len(paced_lat) >= 100 else max(paced_lat)
    print(
        f"  paced: {paced_meters} meters at one poll per meter per second -> {paced_rate:.0f} polls/s "
        f"({paced_rate / paced_meters:.2f} of target), p99 latency {p99 * 1e3:.1f} ms"
    )
    timing = [_wire_timing(b, args.reads) for b in (2400, 9600)]
    print("Wire timing (M-Bus REQ_UD2 -> RSP_UD on the pty; error = measured / line-allowed - 1, never < 0):")
    for t in timing:
        print(
            f"  {t['baudrate']:5d} baud 8E1, {t['frame_bytes']} byte answer: end-to-end error "
            f"min {t['end_to_end_error_min']:+.2%} median {t['end_to_end_error_median']:+.2%} "
            f"max {t['end_to_end_error_max']:+.2%}; earliest byte vs its slot on the line "
            f"{t['earliest_byte_margin_ms']:+.2f} ms"
        )
    summary = {
        "modbus_tcp": {
            "meters": args.meters,
            "simulator_polls_per_s": round(sim_rate),
            "baseline_polls_per_s": round(base_rate),
            "ratio": round(sim_rate / base_rate, 3),
            "meters_at_1_poll_per_s": paced_meters,
            "paced_achieved": round(paced_rate / paced_meters, 3),
            "paced_p99_ms": round(p99 * 1e3, 1),
        },
        "wire_timing": timing,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
