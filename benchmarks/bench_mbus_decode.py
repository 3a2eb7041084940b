"""Wired M-Bus decoding speed: aquami against pyMeterBus and m-bus-parser (Rust, ``pymbusparser``).

Decodes libmbus's corpus of real meters' RSP_UD frames (read in place from ../shared/conformance)
over and over and prints frames per second for each decoder, in the same run, with ratios to
pyMeterBus (without pyMeterBus installed, to aquami's Construct reference path). Only frames every
installed decoder accepts are timed, so each does the same work.

aquami keeps a decoding plan per record layout (``firmware_protocols.mbus.fastpath``); the peers
keep nothing between frames. Timed over and over, every frame's layout has been seen before: that
is a bus's steady state (the same meters polled again), and it is printed as such. Beside it,
aquami with the plan cache emptied before every frame: each layout seen for the first time (a
gateway's first poll of each meter, or a corpus of meters all different).

    python -m benchmarks.bench_mbus_decode [--rounds 5] [--seconds 0.25]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "conformance" / "libmbus" / "test-frames"
WATER_FRAME = "GWF-MTKcoder"  # a water meter: volume, date/time, status
SECONDS_PER_ROUND = 0.25  # per decoder
ROUNDS = 5
WARM = "aquami, layouts seen before (plans cached)"
COLD = "aquami, each layout new (cache emptied)"
REFERENCE = "aquami (Construct reference path)"
PEER = "pyMeterBus load()"


def load_frames() -> list[bytes]:
    """The corpus's frames; SystemExit naming the folder expected if it holds none."""
    paths = sorted(CORPUS.glob("*.hex"))
    if not paths:
        raise SystemExit(
            f"no libmbus test frames (*.hex) in {CORPUS.resolve()}: the conformance corpus is expected in "
            "../shared/conformance beside the repository"
        )
    return [bytes.fromhex("".join(path.read_text(encoding="latin-1").split())) for path in paths]


def _first_sight(data: bytes) -> Any:
    """aquami's decode with its plan cache emptied first: the frame's layout is new to it."""
    from firmware_protocols.mbus import decode_frame, fastpath

    fastpath._PLANS.clear()
    fastpath._count = 0
    return decode_frame(data)


def _decoders() -> dict[str, Callable[[bytes], Any]]:
    from firmware_protocols.mbus import decode_frame
    from firmware_protocols.mbus.frame import decode_frame_reference

    decoders: dict[str, Callable[[bytes], Any]] = {
        WARM: decode_frame,
        COLD: _first_sight,
        REFERENCE: decode_frame_reference,
    }
    try:
        import meterbus

        decoders[PEER] = meterbus.load
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


def _warm_up(decode: Callable[[bytes], Any], frames: list[bytes]) -> None:
    """One untimed pass: a decoder keeping plans between frames has each frame's plan from here on
    (the decoder with its cache emptied, timed before, leaves it holding one plan)."""
    for data in frames:
        decode(data)


def _passes_for(decode: Callable[[bytes], Any], frames: list[bytes], seconds: float) -> int:
    """How many passes over ``frames`` take about ``seconds``."""
    _warm_up(decode, frames)
    start = time.perf_counter()
    passes = 0
    while time.perf_counter() - start < 0.1:
        for data in frames:
            decode(data)
        passes += 1
    return max(1, int(seconds * passes / (time.perf_counter() - start)))


def measure(
    decoders: dict[str, Callable[[bytes], Any]],
    frames: list[bytes],
    rounds: int = ROUNDS,
    seconds: float = SECONDS_PER_ROUND,
) -> dict[str, float]:
    """Frames per second for each decoder: the best of ``rounds`` rounds of about ``seconds`` each.

    The decoders take turns within each round, so a change in the machine's load (it is shared)
    touches all of them alike and the ratios stay fair. Each turn begins with an untimed pass
    (:func:`_warm_up`): the decoder with its plan cache emptied empties the cache the decoder with
    plans cached uses, so that one's timed passes began with a cold cache, and at the corpus's
    73 frames its first pass, making every plan, was most of its time (about 1,000 frames/s
    measured where the steady state is tens of thousands).
    """
    passes = {name: _passes_for(decode, frames, seconds) for name, decode in decoders.items()}
    best = dict.fromkeys(decoders, 0.0)
    for _ in range(rounds):
        for name, decode in decoders.items():
            _warm_up(decode, frames)
            start = time.perf_counter()
            for _ in range(passes[name]):
                for data in frames:
                    decode(data)
            rate = passes[name] * len(frames) / (time.perf_counter() - start)
            best[name] = max(best[name], rate)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds of every decoder in turns; best of them")
    parser.add_argument("--seconds", type=float, default=SECONDS_PER_ROUND, help="per decoder and round")
    args = parser.parse_args()
    corpus = load_frames()
    decoders = _decoders()
    frames = [data for data in corpus if all(_accepts(decode, data) for decode in decoders.values())]
    mean_size = sum(map(len, frames)) / max(1, len(frames))
    print(
        f"M-Bus decode: {len(frames)} of {len(corpus)} libmbus corpus frames that every decoder accepts "
        f"(mean {mean_size:.0f} bytes), best of {args.rounds} rounds"
    )
    _report(measure(decoders, frames, args.rounds, args.seconds))
    water = (CORPUS / f"{WATER_FRAME}.hex").read_text(encoding="latin-1")
    single = [bytes.fromhex("".join(water.split()))]
    print(f"One water meter's frame, {WATER_FRAME} ({len(single[0])} bytes), decoded over and over:")
    _report(measure(decoders, single, args.rounds, args.seconds))
    print(
        f"'{WARM}': steady state, the same meters polled again. '{COLD}': the plan cache emptied "
        "before every frame, as at a gateway's first poll of each meter. pyMeterBus and m-bus-parser "
        "keep nothing between frames."
    )


def _report(results: dict[str, float]) -> None:
    """Each decoder's rate and its ratio to pyMeterBus; without pyMeterBus (the ``bench`` extra not
    installed, as in CI), to aquami's Construct reference path, so a same-run comparison is printed."""
    baseline = PEER if PEER in results else REFERENCE
    for name, rate in results.items():
        print(f"  {name:44s} {rate:10,.0f} frames/s  {rate / results[baseline]:5.2f}x {baseline}")


if __name__ == "__main__":
    main()
