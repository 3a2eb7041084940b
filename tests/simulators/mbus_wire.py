"""A test's M-Bus master on a simulator's pty: one request, and its answer once it is whole."""

from __future__ import annotations

import time

import serial

from simulators.serial_line import pty_accepts_parity

PARITY = serial.PARITY_EVEN if pty_accepts_parity() else serial.PARITY_NONE


def mbus(port: str, frame: bytes, wait_s: float = 10.0, baudrate: int = 2400) -> bytes:
    """Send ``frame``; the answer once it is whole (a single E5h, or a long frame of its announced
    L + 6 bytes), else what came within ``wait_s`` (nothing, from a silent meter: pass a short
    ``wait_s`` where no answer is expected). Not a pause in the bytes, nor a short deadline: the
    rig's line thread on a loaded machine pauses mid-frame for longer than the 0.2 s of quiet once
    taken for the answer's end (a 62-byte frame came back as 58), and a long frame takes ~0.3 s on
    the wire at 2400 baud."""

    def whole(got: bytes | bytearray) -> bool:
        return got == b"\xe5" or (len(got) >= 4 and got[0] == 0x68 and len(got) >= got[1] + 6)

    with serial.Serial(port, baudrate, parity=PARITY, timeout=0) as s:
        s.write(frame)
        got, deadline = bytearray(), time.monotonic() + wait_s
        while not whole(got) and time.monotonic() < deadline:
            chunk = s.read(512)
            if chunk:
                got += chunk
            else:
                time.sleep(0.002)
        return bytes(got + s.read(512))  # and whatever else has come with it
