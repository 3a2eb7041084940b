"""A slow meter's late answer still arriving when the next meter is asked: that meter's polls spoiled.

On the project's M-Bus simulator (a pty with the wire's timing, 2400 baud 8E1, the standard's answer
window of 330 bit times + 50 ms: 0.19 s), SLOW-1 acknowledges its SND_NKE at once but sends its
RSP_UD 0.3 s after its REQ_UD2, after the window: about one request period late. FAST-2, which
answers at once, is polled right after SLOW-1's poll fails, each round a little later, so that its
first request goes out at points spread over SLOW-1's late frame (33 bytes, 0.14 s; ``--history 24``:
200 bytes, 0.92 s): before it starts, while it is arriving, after it ended.

Counted: FAST-2's polls that failed (spoiled), and what the gateway made of SLOW-1's late frames:
those handed over whole before a request or right behind an E5h (with the identification they
decode to), those handed over as a fragment (a head, no whole frame in it: not counted), and the late
answers counted in all (``on_late``: the one taken in FAST-2's window too). No baseline runs beside
it: run it on the code before a change for the figure to compare with.

    .venv/bin/python -m benchmarks.mbus_late_answer_cut [--polls 20] [--history 0]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass, field
from typing import Literal

from firmware_protocols.mbus import decode_frame
from gateway.config import MBusBusConfig, MeterConfig
from gateway.late_answers import mbus_frames
from gateway.mbus import MBusTransport
from gateway.scheduler import BusScheduler
from gateway.transport import PollError
from simulators.serial_line import LineSettings, SerialLine, pty_accepts_parity
from tests.gateway.mbus_slaves import MBusSlave, ReadsAnsweredLate

BAUDRATE = 2400
LATE_BY_S = 0.3  # SLOW-1's RSP_UD leaves this long after its REQ_UD2: after the 0.19 s window
#: FAST-2 is polled this long after SLOW-1's poll failed, from the first to the last round: its first
#: request goes out from before SLOW-1's late frame begins (0.13 s after) to after it ended
FIRST_GAP_S, LAST_GAP_S = 0.08, 0.36
ROUND_PAUSE_S = 0.6  # after FAST-2's poll, before the next round: the line quiet again


@dataclass
class Outcome:
    polls: int = 0
    spoiled: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    whole: dict[str, int] = field(default_factory=dict)  # identification of a late frame handed over whole
    fragments: int = 0  # bytes handed over with no whole answer in them
    counted: list[int | None] = field(default_factory=list)  # on_late: the late answers counted


async def _run(polls: int, history: int) -> Outcome:
    slow = MBusSlave(1, "11110001", 500.0, history=history)
    slaves = ReadsAnsweredLate([slow, MBusSlave(2, "11110002", 40.0)], LATE_BY_S, slow={slow.identification})
    line = slaves.line = SerialLine(slaves, LineSettings(BAUDRATE, parity="E"))
    line.start()
    parity: Literal["E", "N"] = "E" if pty_accepts_parity() else "N"
    slow_1, fast_2 = MeterConfig("SLOW-1", 1), MeterConfig("FAST-2", 2)
    bus = MBusBusConfig("mbus-1", line.port, (slow_1, fast_2), baudrate=BAUDRATE, parity=parity, retries=0)
    outcome = Outcome()
    transport = MBusTransport(bus, on_late=outcome.counted.append)
    told = transport.line.on_pending
    assert told is not None

    def pending(heard: bytes) -> None:
        frames = mbus_frames(heard)
        for frame in frames:
            if len(frame) > 1:
                identification = str(decode_frame(frame).get("id"))
                outcome.whole[identification] = outcome.whole.get(identification, 0) + 1
        if heard and not frames:
            outcome.fragments += 1
        told(heard)

    transport.line.on_pending = pending

    async def taken(_: object) -> None:
        pass

    scheduler = BusScheduler(bus, transport, on_reading=taken)
    try:
        for round_ in range(polls):
            await scheduler.poll(slow_1)
            await asyncio.sleep(FIRST_GAP_S + (LAST_GAP_S - FIRST_GAP_S) * round_ / max(polls - 1, 1))
            outcome.polls += 1
            try:
                await scheduler.attempt(fast_2)  # the bus's one attempt (retries = 0), its error kept
            except PollError as error:
                outcome.spoiled += 1
                why = str(error).removeprefix("FAST-2: ")
                outcome.errors[why] = outcome.errors.get(why, 0) + 1
            await asyncio.sleep(ROUND_PAUSE_S)
    finally:
        await transport.close()
        slaves.stop()
        line.stop()
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=20, help="rounds: FAST-2's polls (default 20)")
    parser.add_argument("--history", type=int, default=0, help="stored volumes in SLOW-1's frame (24: 200 bytes)")
    args = parser.parse_args()
    logging.getLogger("gateway").setLevel(logging.ERROR)  # the polls' and late answers' warnings: counted here
    frame = MBusSlave(1, "11110001", 500.0, history=args.history).telegram(0, 1)
    outcome = asyncio.run(_run(args.polls, args.history))
    char_s = LineSettings(BAUDRATE, parity="E").char_time_s
    print(
        f"M-Bus {BAUDRATE} baud, SLOW-1's RSP_UD {LATE_BY_S:g} s late ({len(frame)} bytes, {len(frame) * char_s:.2f} s "
        f"on the wire), FAST-2 polled {FIRST_GAP_S:g} to {LAST_GAP_S:g} s after SLOW-1's poll failed"
    )
    print(f"FAST-2 polls spoiled: {outcome.spoiled} of {outcome.polls}")
    for why, count in sorted(outcome.errors.items(), key=lambda item: -item[1]):
        print(f"  {count} x {why}")
    whole = ", ".join(f"{identification} x {count}" for identification, count in outcome.whole.items()) or "none"
    print(
        f"late frames handed over whole (before a request, or right behind an E5h): {whole}; "
        f"as a fragment (not counted): {outcome.fragments}"
    )
    print(f"late answers counted: {len(outcome.counted)} ({outcome.counted.count(1)} for SLOW-1's address 1)")


if __name__ == "__main__":
    main()
