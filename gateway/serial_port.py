"""Opening a serial port for one user only: a wired M-Bus line, a wM-Bus receiver, a Modbus RTU line.

Two programs on one bus (a technician's ``aquami gateway scan`` while ``aquami gateway run`` polls
it) interleave their frames: each reads the other's requests and answers, and both fail. So every
port the gateway opens is locked: pyserial's ``exclusive=True`` takes ``flock(LOCK_EX | LOCK_NB)`` on
the port's descriptor before it changes any setting, and the second opener is refused at once,
its settings untouched. pymodbus 3.16 opens its RTU ports the same way (``SerialTransport``), so a
gateway's M-Bus line, receiver and Modbus RTU line all take the one lock. The kernel gives it up when
its holder ends, however it ends. The lock is advisory: a program that opens the port without
``flock`` (a terminal program, ``cat``) is not kept out.
"""

from __future__ import annotations

import errno
import os
import termios

import serial

from gateway.config import SerialFraming

IN_USE = "in use by another program (a running gateway or a scan holds its lock)"


class PortInUse(serial.SerialException):
    """Another program holds the port's lock (the message says so, for after the port's name)."""

    def __init__(self) -> None:
        super().__init__(IN_USE)
        self.errno = errno.EWOULDBLOCK


def open_exclusive(device: str, framing: SerialFraming, timeout: float | None) -> serial.Serial:
    """The port, locked for this program for as long as it is open; :class:`PortInUse` when another
    holds it (anything else that stops it opening is raised as pyserial raises it)."""
    try:
        return serial.Serial(device, **framing, timeout=timeout, exclusive=True)
    except serial.SerialException as error:
        if in_use(error):
            raise PortInUse() from error
        raise


def in_use(error: BaseException) -> bool:
    """Whether ``error`` is pyserial's refusal of a port whose lock another program holds (``flock``
    with ``LOCK_NB`` fails with EWOULDBLOCK; opening a device never does)."""
    return isinstance(error, serial.SerialException) and error.errno in (errno.EAGAIN, errno.EWOULDBLOCK)


def why_not_open(device: str, framing: SerialFraming) -> str | None:
    """Why a port that just failed to open would not (pymodbus says only that it failed, and logs
    why in a line of its own, which is dropped): its lock held by another program, the system's
    reason (``No such file or directory``), or None when it opens now. The port is opened again to
    find out, and closed at once; it changes no setting unless the lock is free, so no one else's
    use is disturbed."""
    try:
        open_exclusive(device, framing, 0).close()
    except (serial.SerialException, OSError, ValueError) as error:
        return why_open_failed(error)
    return None


#: What a port that is not there most often means, and where the technician looks: a USB converter or
#: receiver unplugged, or named otherwise after being plugged in again (ttyUSB1 became ttyUSB2);
#: ``/dev/serial/by-id/`` names each by its make and serial, which does not change.
NO_SUCH_PORT_HINT = "unplugged, or another device name? ls /dev/serial/by-id/"


def why_open_failed(error: serial.SerialException | OSError | ValueError) -> str:
    """The reason a port did not open, once: its lock held by another program, or the system's
    words (``No such file or directory``), not pyserial's ``[Errno 2] could not open port
    /dev/ttyUSB1: [Errno 2] No such file or directory: '/dev/ttyUSB1'``. A port that is not there
    says what to check (:data:`NO_SUCH_PORT_HINT`): the system's words alone gave no hint."""
    if isinstance(error, PortInUse):
        return str(error)
    number = getattr(error, "errno", None)
    if number == errno.ENOENT:
        return f"{os.strerror(number)} ({NO_SUCH_PORT_HINT})"
    return os.strerror(number) if isinstance(number, int) else str(error) or type(error).__name__


def describe_framing(framing: SerialFraming) -> str:
    """``9600 8E1``, as a technician reads a port's settings."""
    return f"{framing['baudrate']} {framing['bytesize']}{framing['parity']}{framing['stopbits']}"


def why_tcsetattr_failed(error: termios.error, framing: SerialFraming) -> str:
    """Why pyserial's ``tcsetattr`` failed, as a technician reads it: EINVAL is the settings, not the
    port (a pty that takes no parity: ``the port refuses the configured framing 2400 8E1 (Invalid
    argument)``); anything else (an unplugged converter: EIO) as the system says it."""
    number, why = error.args if len(error.args) == 2 else (None, str(error) or "termios.error")
    if number == errno.EINVAL:
        return f"the port refuses the configured framing {describe_framing(framing)} ({why})"
    return str(why)


def release_leaked_port(error: BaseException) -> int:
    """Close the ports ``error`` left open and locked; how many.

    pymodbus 3.16's ``SerialTransport.__init__`` opens the port (``serial_for_url``, locked), then
    sets its ``timeout``, which pyserial applies with ``tcsetattr``: where that fails (a port that
    refuses the framing: Linux's ptys drop the parity bit, and glibc's ``tcsetattr`` then fails on
    parity E) the ``termios.error`` leaves ``__init__`` with the port open and no one holding the
    transport to close it, so the port stays locked by this very program until the garbage
    collector finds it, and the next connect was refused as "in use by another program". The port
    is found in the traceback's frames (the ``self`` of the frame that opened it). Tied to pymodbus
    3.16 (pyproject pins <3.17): a version that closes its port on a failed ``__init__`` makes this
    find nothing open."""
    closed = 0
    trace = error.__traceback__
    while trace is not None:
        port = getattr(trace.tb_frame.f_locals.get("self"), "sync_serial", None)
        if isinstance(port, serial.SerialBase) and port.is_open:
            port.close()
            closed += 1
        trace = trace.tb_next
    return closed
