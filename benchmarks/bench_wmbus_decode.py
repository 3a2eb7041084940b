"""Benchmark: decode encrypted wireless M-Bus telegrams (OMS security mode 5), aquami against a peer.

Run as ``python -m benchmarks.bench_wmbus_decode``. A fleet of water meters, each with its own key,
sends format A telegrams with link-layer CRCs and mode 5 encryption (records: volume, flow, date and
time, error flags). Each decoder gets the same bytes and key, decrypts and decodes every record; the
best of several rounds is reported as telegrams per second.

The peer is pymbusparser (Python binding of the Rust m-bus-parser), which decodes wireless telegrams
with mode 5 keys; its parse is called with ``include_enrichment=False`` so it does no more than
decoding. Before timing, both decoders must agree on every meter's volume. Without pymbusparser the
comparison falls back to a naive baseline: fixed offsets, no checks, AES-CBC and the record decoder.

    python -m benchmarks.bench_wmbus_decode [--meters 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from firmware_protocols.mbus.records import decode_records
from firmware_protocols.wmbus import build_telegram, decode_telegram
from firmware_protocols.wmbus.link import strip_format_a

METERS = 200
ROUNDS = 5

Telegram = tuple[bytes, str, bytes]  # telegram, meter id, key


def make_telegrams(count: int = METERS) -> list[Telegram]:
    telegrams = []
    for number in range(count):
        meter_id = f"{10_000_000 + number * 7919:08d}"
        key = bytes((number * 31 + i) & 0xFF for i in range(16))
        litres = 1_000_000 + number * 1_234
        records = b"".join(
            [
                bytes([0x04, 0x13]) + litres.to_bytes(4, "little"),  # volume, litres
                bytes([0x02, 0x3B]) + (number % 500).to_bytes(2, "little"),  # volume flow, l/h
                bytes.fromhex("046D32371F15"),  # date and time (type F)
                bytes.fromhex("02FD170000"),  # error flags
            ]
        )
        data = build_telegram(
            records, manufacturer="AQU", id=meter_id, version=1, medium="water", access_no=number & 0xFF, key=key
        )
        telegrams.append((data, meter_id, key))
    return telegrams


def aquami_decode(telegrams: list[Telegram]) -> list[float]:
    volumes = []
    for data, meter_id, key in telegrams:
        result = decode_telegram(data, {meter_id: key})
        volumes.append(result["records"][0]["value"])
    return volumes


def pymbusparser_decode(telegrams: list[Telegram]) -> list[float]:
    import pymbusparser

    volumes = []
    for data, _, key in telegrams:
        result = pymbusparser.parse(data, key=key, include_enrichment=False)
        volumes.append(float(result["records"][0]["value"]["value"]))
    return volumes


def naive_decode(telegrams: list[Telegram]) -> list[float]:
    """Fixed offsets for this one telegram layout: strip CRCs, AES-CBC, records. No header parsing."""
    volumes = []
    for data, _, key in telegrams:
        frame = strip_format_a(data)
        iv = frame[2:10] + bytes([frame[11]]) * 8
        blocks = (frame[13] >> 4) * 16
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        plain = decryptor.update(frame[15 : 15 + blocks]) + decryptor.finalize()
        records, _, _ = decode_records(plain)
        volumes.append(float(records[0].value))  # type: ignore[arg-type]
    return volumes


def rate(decode: Callable[[list[Telegram]], Any], telegrams: list[Telegram], rounds: int = ROUNDS) -> float:
    """Telegrams per second, best of ``rounds``."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        decode(telegrams)
        best = min(best, time.perf_counter() - started)
    return len(telegrams) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=METERS, help="telegrams, one per meter, each with its own key")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="passes over them per decoder; best of them")
    args = parser.parse_args()
    telegrams = make_telegrams(args.meters)
    ours = aquami_decode(telegrams)
    try:
        import pymbusparser  # noqa: F401

        peer_name, peer = "pymbusparser", pymbusparser_decode
    except ImportError:
        peer_name, peer = "naive baseline (pymbusparser not installed)", naive_decode
    theirs = peer(telegrams)
    if any(abs(a - b) > 1e-9 for a, b in zip(ours, theirs, strict=True)):
        raise SystemExit(f"decoders disagree: aquami {ours[:3]}... {peer_name} {theirs[:3]}...")
    print(f"{len(telegrams)} mode 5 telegrams (format A, CRCs, 4 records), best of {args.rounds} rounds")
    aquami_rate = rate(aquami_decode, telegrams, args.rounds)
    peer_rate = rate(peer, telegrams, args.rounds)
    print(f"aquami        {aquami_rate:10.0f} telegrams/s")
    print(f"{peer_name:13} {peer_rate:10.0f} telegrams/s")
    print(f"ratio aquami/{peer_name.split()[0]}: {aquami_rate / peer_rate:.2f}")


if __name__ == "__main__":
    main()
