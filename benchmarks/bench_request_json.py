"""What refusing a JSON member named twice costs a request's body parse (server.exact_json.loads_exact,
a Python hook per object) beside the parse it replaced (``json.loads`` with numbers as Decimal, the
last of two members silently kept), on the API's bodies: a dismissal's reason, a reading's correction,
an enquiry's update, and the largest body a request may carry (64 KiB: a member holding 2,897
small objects, the worst case for a hook called once per object).

It prints, per body, both parses' medians in microseconds, their ratio and the difference: what
each request taking that body pays more.

    python -m benchmarks.bench_request_json
    python -m benchmarks.bench_request_json --rounds 50 --number 2000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from server.body_limit import MAX_BODY_BYTES
from server.exact_json import loads_exact


def _largest() -> bytes:
    """A body as close under the 64 KiB cap as whole small objects make it."""
    items: list[dict[str, Any]] = []
    size = len(json.dumps({"items": []}))
    while True:
        item = {"n": len(items), "v": 1.5}
        size += len(json.dumps(item)) + 2  # and its ", "
        if size > MAX_BODY_BYTES:
            return json.dumps({"items": items}).encode()
        items.append(item)


BODIES = {
    "dismissal": b'{"reason": "the customer fixed the dripping tap; checked on site"}',
    "correction": b'{"volume_m3": 12345678901.234567, "reason": "register photographed on site"}',
    "enquiry update": b'{"status": "resolved", "note": "valve replaced", "expected_updated_at": "2026-01-01T00:00Z"}',
    "64 KiB of small objects": _largest(),
}


def _before(raw: bytes) -> Any:
    return json.loads(raw, parse_float=Decimal)


def _median_us(parse: Callable[[bytes], Any], raw: bytes, rounds: int, number: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(number):
            parse(raw)
        times.append((time.perf_counter() - started) / number)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21, help="timed rounds of each parse per body")
    parser.add_argument("--number", type=int, default=1000, help="parses per round (a tenth for the 64 KiB body)")
    args = parser.parse_args()
    for name, raw in BODIES.items():
        assert loads_exact(raw) == _before(raw)
        number = max(1, args.number // 10) if len(raw) > 1000 else args.number
        before, after = 0.0, 0.0
        for _ in range(2):  # alternating halves: the machine's load falls on both alike
            before += _median_us(_before, raw, args.rounds // 2 + 1, number) / 2
            after += _median_us(loads_exact, raw, args.rounds // 2 + 1, number) / 2
        print(
            f"{name:<24} {len(raw):>6,} B  json.loads {before:9.2f} us  loads_exact {after:9.2f} us  "
            f"ratio {after / before:5.2f}  extra {after - before:8.2f} us a request"
        )


if __name__ == "__main__":
    main()
