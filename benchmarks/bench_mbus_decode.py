"""Wired M-Bus decoding speed: aquami against pyMeterBus and m-bus-parser (Rust, ``pymbusparser``).

Decodes libmbus's corpus of real meters' RSP_UD frames (read in place from ../shared/conformance)
over and over and prints frames per second for each decoder, in the same run, with ratios to
pyMeterBus. Only frames every installed decoder accepts are timed, so each does the same work.

    python -m benchmarks.bench_mbus_decode
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "conformance" / "libmbus" / "test-frames"
WATER_FRAME = "GWF-MTKcoder"  # a water meter: volume, date/time, status
SECONDS_PER_ROUND = 0.25  # per decoder
ROUNDS = 5


def load_frames() -> list[bytes]:
    return [bytes.fromhex("".join(path.read_text(encoding="latin-1").split())) for path in sorted(CORPUS.glob("*.hex"))]


def _decoders() -> dict[str, Callable[[bytes], Any]]:
    from firmware_protocols.mbus import decode_frame
    from firmware_protocols.mbus.frame import decode_frame_reference

    decoders: dict[str, Callable[[bytes], Any]] = {
        "aquami": decode_frame,
        "aquami (Construct reference path)": decode_frame_reference,
    }
    try:
        import meterbus

        decoders["pyMeterBus load()"] = meterbus.load
        decoders["pyMeterBus load() + record values"] = lambda data: [
            record.parsed_value for record in meterbus.load(data).records
        ]
    except ImportError:
        print("pyMeterBus not installed (pip install pyMeterBus): skipped")
    try:
        import pymbusparser

        decoders["m-bus-parser (Rust) parse()"] = pymbusparser.parse
    except ImportError:
        print("pymbusparser not installed (pip install pymbusparser): skipped")
    return decoders


def _accepts(decode: Callable[[bytes], Any], data: bytes) -> bool:
    try:
        decode(data)
    except Exception:  # any failure of a third-party decoder: leave the frame out for everyone
        return False
    return True


def _passes_for(decode: Callable[[bytes], Any], frames: list[bytes], seconds: float) -> int:
    """How many passes over ``frames`` take about ``seconds``."""
    start = time.perf_counter()
    passes = 0
    while time.perf_counter() - start < 0.1:
        for data in frames:
            decode(data)
        passes += 1
    return max(1, int(seconds * passes / (time.perf_counter() - start)))


def measure(decoders: dict[str, Callable[[bytes], Any]], frames: list[bytes]) -> dict[str, float]:
    """Frames per second for each decoder: the best of ``ROUNDS`` rounds.

    The decoders take turns within each round, so a change in the machine's load (it is shared)
    touches all of them alike and the ratios stay fair.
    """
    passes = {name: _passes_for(decode, frames, SECONDS_PER_ROUND) for name, decode in decoders.items()}
    best = dict.fromkeys(decoders, 0.0)
    for _ in range(ROUNDS):
        for name, decode in decoders.items():
            start = time.perf_counter()
            for _ in range(passes[name]):
                for data in frames:
                    decode(data)
            rate = passes[name] * len(frames) / (time.perf_counter() - start)
            best[name] = max(best[name], rate)
    return best


def main() -> None:
    decoders = _decoders()
    corpus = load_frames()
    frames = [data for data in corpus if all(_accepts(decode, data) for decode in decoders.values())]
    mean_size = sum(map(len, frames)) / max(1, len(frames))
    print(
        f"M-Bus decode: {len(frames)} of {len(corpus)} libmbus corpus frames that every decoder accepts "
        f"(mean {mean_size:.0f} bytes)"
    )
    _report(measure(decoders, frames))
    water = (CORPUS / f"{WATER_FRAME}.hex").read_text(encoding="latin-1")
    single = [bytes.fromhex("".join(water.split()))]
    print(f"One water meter's frame, {WATER_FRAME} ({len(single[0])} bytes), decoded over and over:")
    _report(measure(decoders, single))


def _report(results: dict[str, float]) -> None:
    baseline = results.get("pyMeterBus load()")
    for name, rate in results.items():
        ratio = f"  {rate / baseline:5.1f}x pyMeterBus load()" if baseline else ""
        print(f"  {name:40s} {rate:10,.0f} frames/s{ratio}")


if __name__ == "__main__":
    main()
