"""Modbus transports (TCP and RTU): one client per bus, one transaction at a time on it.

After any failed attempt the next one opens a client afresh: a reply that arrives after its
timeout, or a partial frame still on a serial line, must not be taken as the answer to the next
request. The failed attempt's client is kept listening until then (and closed then, or when the bus
closes), so that an answer that comes late is heard and said (gateway.late_answers); before, it was
closed at once, and a meter answering after the timeout every time looked like a silent one.

An RS-485 adapter that echoes the request (``echo = true``): pymodbus drops the echo before the
answer (``handle_local_echo``). Without the setting, a failed read whose answer began with the
request says so (gateway.echo).

An RTU answer that is whole but fails its CRC (noise on the line) fails the attempt at once
(:class:`CrcWatch`). pymodbus (3.16) drops such a frame and waits for another, which a Modbus device
never sends: every such attempt held the bus for the whole ``timeout_s``, and a noisy meter held it
for ``timeout_s`` × (retries + 1) a poll, delaying every other meter on the bus. No pymodbus setting
changes it (``timeout`` shortens every wait, a good answer's too; ``retries`` adds waits).

An answer that began and stopped short (pymodbus waits for its rest, then says what it says of
silence) fails as ``answer cut short (7 of 25 bytes) from unit 5``, not ``no answer``
(gateway.cut_answers): a device is there, and the line is to be looked at, not its address.

A bus that will not open is a :class:`LineUnusable` whose one line says why (pymodbus 3.16 logs its
reason only, in a second line, which is dropped): the serial port's lock held by another program,
its device missing, the TCP peer refusing or not answering, a port that refuses the configured
framing (:func:`gateway.serial_port.release_leaked_port`).

pymodbus keeps one record of the last frames sent and received a process (3.16's ``Log.frame_dump``,
its last 20, of every client, kept while its logger is not at DEBUG), which it appends to its own
ERROR and CRITICAL lines (``>>>>> send: 0x5 0x4 …``), and one last line's text (``Log.last_log_text``,
for its ``Repeating....``). With two Modbus buses polled at once those frames may be another bus's.
The transport decides nothing from either: every frame it judges (a late answer, an answer cut
short, a wrong CRC, an echo) reaches it through its own client's ``trace_packet`` chain
(:class:`gateway.late_answers.LateAnswerWatch`, :class:`gateway.cut_answers.CutWatch`,
:class:`CrcWatch`, :class:`gateway.echo.EchoWatch`), which pymodbus calls with that client's bytes
alone; the lines it drops are judged by pymodbus's own words at their start, not by the frames
appended (:func:`_said_by_us`), and a ``Repeating....`` by the line it stands for
(:mod:`aquami.pymodbus_lines`). So no frame or error is charged to another bus; what may show
another bus's frames is only a pymodbus ERROR line the gateway lets through, where they are
pymodbus's own words (``tests/gateway/test_late_answers.py``: two RTU buses polled at once).
"""

from __future__ import annotations

import asyncio
import termios
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.framer import FramerRTU

from aquami.clock import Clock, utc_now
from aquami.contracts.reads import Reading
from aquami.pymodbus_lines import drop_pymodbus_lines, pymodbus_at_debug
from firmware_protocols.modbus import MeterProfile
from firmware_protocols.modbus.profile import SERIAL_FIELD
from gateway.config import MeterConfig, ModbusRtuBusConfig, ModbusTcpBusConfig
from gateway.cut_answers import CutWatch
from gateway.echo import EchoWatch, begins_with_request
from gateway.late_answers import LateAnswers, LateAnswerWatch, LateListener
from gateway.late_episodes import BusLateEpisodes
from gateway.meter_identity import MeterIdentities
from gateway.modbus_identity import NOT_SET, check_serial_number, taken_from_memory
from gateway.modbus_read import decoded, read_registers, reading_of
from gateway.profiles import ProfileBook
from gateway.pulse import is_pulse_counter
from gateway.serial_port import release_leaked_port, why_not_open, why_tcsetattr_failed
from gateway.tcp_probe import why_no_connection
from gateway.transport import LineUnusable, NoAnswer, PollError

_SAID_BY_LINE_UNUSABLE = ("Could not exclusively lock port", "Failed to connect")
# pymodbus 3.16's line for a request left unanswered (its frames appended: ">>>>> send: …"); the
# attempt's NoAnswer says it, in the scheduler's "failed after N attempts" line
_SAID_BY_NO_ANSWER = "No response received after"
# pymodbus 3.16's lines for an answer that came once it had stopped waiting: after the attempt's
# timeout (said by gateway.late_answers), or for a read cancelled as the gateway stops; and, on RTU,
# for one that came during another unit's request (a late answer too)
_SAID_BY_LATE_ANSWER = ("ERROR: received pdu without a corresponding request", "ERROR: request ask for id=")


def _said_by_us(message: str) -> bool:
    """Whether pymodbus's line ``message`` (its frames appended, on an ERROR) is one the gateway says
    in its own words, and is dropped (aquami.pymodbus_lines, with its ``Repeating....``).

    pymodbus's own warnings of a bus that will not open (a port another program holds, a connect
    that failed, with its reason): the failed attempt's :class:`LineUnusable` says it, naming the bus
    and the reason (a scan's error was two lines, and only pymodbus's said why). Unless pymodbus's
    logger is at DEBUG (``--verbose``, of ``gateway run`` or ``gateway scan``), where each is one of
    the frames' lines asked for, also: its line for each request that got no answer, with the frames
    it sent (the scheduler's warning of the failed poll says it: an offline meter was three lines a
    poll); its ERROR line for an answer that came after it stopped waiting (a late answer to a poll
    the scheduler has already said failed, or to a read cancelled as the gateway stops: a stray ERROR
    just before ``gateway_stopped``, now and then); and on RTU its ERROR line for an answer from
    another unit than the one asked (``request ask for id=6 but got id=5, Skipping.``), a late answer:
    :class:`gateway.late_answers.LateAnswers` says each episode of those, naming the meter and the
    timeout."""
    if any(said in message for said in _SAID_BY_LINE_UNUSABLE):
        return True
    if pymodbus_at_debug():
        return False
    return message.startswith((_SAID_BY_NO_ANSWER, *_SAID_BY_LATE_ANSWER))


_not_said_by_us = drop_pymodbus_lines(_said_by_us)

_READS = (0x03, 0x04)  # the function codes the gateway asks with: their answers carry a byte count at 2


def garbled_answer(heard: bytes, sent: bytes) -> bool:
    """Whether ``heard`` (the receive buffer as pymodbus's framer takes it) begins with a whole
    answer to the read ``sent`` (its unit, its function code or that code's exception) whose CRC is
    wrong: the frame pymodbus's RTU framer drops (sizing it as this does), after which no answer
    comes. An echo of the request is not one (gateway.echo says what it is). Tied to pymodbus
    3.16's ``FramerRTU.decode`` (which drops the whole buffer on a CRC failure; pyproject pins
    <3.17): a framer that looks further, as pymodbus's development branch does, wants this again."""
    if len(sent) < 2 or sent[1] not in _READS or len(heard) < 5 or heard[0] != sent[0]:
        return False
    if begins_with_request(heard, sent):
        return False
    if heard[1] == sent[1] | 0x80:
        size = 5  # unit, function | 80h, exception code, CRC
    elif heard[1] == sent[1]:
        size = 5 + heard[2]  # unit, function, byte count, the bytes, CRC
    else:
        return False
    if len(heard) < size:
        return False  # not all there yet
    return FramerRTU.compute_CRC(heard[: size - 2]) != int.from_bytes(heard[size - 2 : size], "big")


class CrcWatch:
    """pymodbus's ``trace_packet`` hook on an RTU line: :attr:`garbled` is set when an answer to the
    last request came whole with a wrong CRC (:func:`garbled_answer`); ``then`` is the hook it
    passes the packets on to (an :class:`gateway.echo.EchoWatch`)."""

    def __init__(self, then: Callable[[bool, bytes], bytes] | None = None):
        self.then = then
        self.sent = b""
        self.garbled = asyncio.Event()

    def __call__(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self.sent = data
            self.garbled.clear()
        elif garbled_answer(data, self.sent):
            self.garbled.set()
        return data if self.then is None else self.then(sending, data)


ModbusClient = AsyncModbusTcpClient | AsyncModbusSerialClient


class _ModbusTransport:
    protocol: Literal["modbus-tcp", "modbus-rtu"]

    def __init__(
        self,
        config: ModbusTcpBusConfig | ModbusRtuBusConfig,
        profiles: ProfileBook,
        clock: Clock = utc_now,
        on_late: LateListener | None = None,
        identities: MeterIdentities | None = None,
        late_episodes: BusLateEpisodes | None = None,
    ):
        self.config = config
        self.profiles = profiles
        self.clock = clock
        #: each meter's first answer's serial number (gateway.modbus_identity), the gateway's, so that a
        #: reload, which makes its buses anew, keeps it; a transport of its own by default (a scan's)
        self.identities = MeterIdentities() if identities is None else identities
        #: the serial number the last answer at each unit id carried, whichever meter it was read for:
        #: a scan shows it (gateway.scan), its probes being none of the bus's meters; NOT_SET for a
        #: serial number never set
        self.serial_numbers_heard: dict[int, str] = {}
        self.client: ModbusClient | None = None
        self.listening: ModbusClient | None = None  # a failed attempt's client, till the next attempt
        #: the late answers' episodes are the gateway's, kept across reloads (gateway.late_episodes); a
        #: transport's own by default (a scan's)
        self.late_answers = LateAnswers(config, on_late, episodes=late_episodes)
        framing: Literal["rtu", "tcp"] = "tcp" if self.protocol == "modbus-tcp" else "rtu"
        self.late = LateAnswerWatch(framing, self.late_answers.heard)
        self.cut = CutWatch(framing)  # an answer begun and stopped short (gateway.cut_answers)
        self.late.then = self.cut

    def _new_client(self) -> ModbusClient:
        raise NotImplementedError

    def _where(self) -> str:
        raise NotImplementedError

    def _echo_error(self) -> str | None:
        """Why a failed read failed, if its answer began with the request (a serial line's echo)."""
        return None

    async def _connect(self, client: ModbusClient) -> bool:
        return await client.connect()

    async def _why_not_open(self) -> str | None:
        """Why the client did not connect, where it can be told (pymodbus logs its reason only)."""
        return None

    async def read(self, meter: MeterConfig) -> Reading:
        self._stop_listening()
        if self.client is None:
            self.client = self._new_client()
        if not self.client.connected and not await self._connect(self.client):
            await self.reset()
            why = await self._why_not_open()
            raise LineUnusable(f"{self.config.name}: cannot open {self._where()}" + (f": {why}" if why else ""))
        profile = self.profiles.profile(meter)
        self.late.waiting = True
        try:
            registers = await self._read_registers(self.client, meter, profile)
        except asyncio.CancelledError:
            self.late.mute()  # abandoned (the gateway stopping), not timed out: its answer is not late
            raise
        except PollError as error:
            cut = self.cut.cut_short(meter.unit_id) if isinstance(error, NoAnswer) else None
            if cut is not None:  # bytes came: not silence, a frame cut short (gateway.cut_answers)
                raise PollError(f"{meter.meter_id}: {cut}") from error
            echo = self._echo_error()
            if echo is None:
                raise
            raise PollError(f"{error}; {echo}") from error
        finally:
            self.late.waiting = False
        at = self.clock()
        fields = decoded(meter, profile, registers)
        if SERIAL_FIELD in fields:  # (None: a serial number never set, shown as such by a scan)
            serial_number = fields[SERIAL_FIELD]
            self.serial_numbers_heard[meter.unit_id] = NOT_SET if serial_number is None else str(serial_number)
            await self._check_serial_number(meter, fields, at, profile)
        if is_pulse_counter(profile):
            return await self._pulse_reading(meter, profile, fields, at)
        return reading_of(meter, profile, fields, at, self.protocol, self.config.name)

    async def _pulse_reading(
        self, meter: MeterConfig, profile: MeterProfile, fields: Mapping[str, Any], at: datetime
    ) -> Reading:
        """A pulse counter's reading, its count unwrapped (gateway.pulse) in a thread: the wrap reads
        the meter's kept state from the spool when it is first built, and each count writes it there
        (SQLite, on an SD card tens of ms or more, behind the spool's lock if another write holds it).
        Before, both ran on the event loop, and the gateway's MQTT keepalives and every bus's polls
        waited on them. An attempt cancelled meanwhile (its time limit, the gateway stopping) waits for
        the count to be judged and kept, as it did on the loop, so that the next attempt, under the
        bus's lock, judges its count against it, never beside it: nothing counted twice."""

        def reading() -> Reading:
            volume_filter = self.profiles.volume_filter(meter)
            return reading_of(meter, profile, fields, at, self.protocol, self.config.name, volume_filter)

        taken = asyncio.ensure_future(asyncio.to_thread(reading))
        try:
            return await asyncio.shield(taken)
        except asyncio.CancelledError:
            await asyncio.wait([taken])
            if not taken.cancelled():
                taken.exception()  # (the attempt is cancelled: its failure, if any, is not its outcome)
            raise

    async def _check_serial_number(
        self, meter: MeterConfig, fields: Mapping[str, Any], at: datetime, profile: MeterProfile
    ) -> None:
        """Another meter's serial number is refused (gateway.modbus_identity), in a thread: the check
        reads the meter's first answer from the spool the first time it is asked for it, and writes
        it there when it is taken (SQLite, on an SD card tens of ms or more, behind the spool's lock
        if another write holds it). Before, both ran on the event loop, and the gateway's MQTT
        keepalives and every bus's polls waited on them. As an M-Bus meter's check runs in its
        reading thread (gateway.mbus), with the gateway's :class:`MeterIdentities`: a refusal, or a
        spool that cannot be read, raises here as it did there. A meter known in this run by the serial
        number it answered with (and not configured with another) is taken without a thread: nothing
        to read, write, refuse or say (gateway.modbus_identity.taken_from_memory)."""
        if taken_from_memory(self.identities, meter, fields, self.config):
            return
        await asyncio.to_thread(check_serial_number, self.identities, meter, fields, at, self.config, profile)

    async def _read_registers(self, client: ModbusClient, meter: MeterConfig, profile: MeterProfile) -> list[int]:
        return await read_registers(client, meter, profile)

    async def reset(self) -> None:
        """After a failed attempt: the next one opens a new client. This one, if connected, listens
        until then, for an answer that comes late (:attr:`late_answers`)."""
        self._stop_listening()
        if self.client is not None:
            if self.client.connected:
                self.listening = self.client
            else:
                self.client.close()
            self.client = None

    def _stop_listening(self) -> None:
        if self.listening is not None:
            self.listening.close()
            self.listening = None

    async def close(self) -> None:
        self._stop_listening()
        if self.client is not None:
            self.client.close()
            self.client = None

    def interrupt(self) -> None:
        pass  # a scan is one short attempt per unit id, each refused once the bus is closed


class ModbusTcpTransport(_ModbusTransport):
    protocol = "modbus-tcp"

    def __init__(
        self,
        config: ModbusTcpBusConfig,
        profiles: ProfileBook,
        clock: Clock = utc_now,
        on_late: LateListener | None = None,
        identities: MeterIdentities | None = None,
        late_episodes: BusLateEpisodes | None = None,
    ):
        super().__init__(config, profiles, clock, on_late, identities, late_episodes)
        self.tcp = config

    def _new_client(self) -> ModbusClient:
        # reconnect_delay=0: no background reconnects; the scheduler decides when to try again.
        c = self.tcp
        return AsyncModbusTcpClient(
            c.host, port=c.port, timeout=c.timeout_s, retries=0, reconnect_delay=0, trace_packet=self.late
        )

    def _where(self) -> str:
        return self.tcp.address

    async def _why_not_open(self) -> str | None:
        """pymodbus 3.16 logs why a connect failed, and returns only False: a second connect says it
        (refused at once; a peer that does not answer costs the bus's timeout again)."""
        return await why_no_connection(self.tcp.host, self.tcp.port, self.tcp.timeout_s)


class ModbusRtuTransport(_ModbusTransport):
    protocol = "modbus-rtu"

    def __init__(
        self,
        config: ModbusRtuBusConfig,
        profiles: ProfileBook,
        clock: Clock = utc_now,
        on_late: LateListener | None = None,
        identities: MeterIdentities | None = None,
        late_episodes: BusLateEpisodes | None = None,
    ):
        super().__init__(config, profiles, clock, on_late, identities, late_episodes)
        self.rtu = config
        self.watch = EchoWatch()
        self.cut.then = None if config.echo else self.watch
        self.crc = CrcWatch(self.cut)

    def _new_client(self) -> ModbusClient:
        c = self.rtu
        self.crc = CrcWatch(self.crc.then)  # its event on this client's event loop
        self.late.then = self.crc
        return AsyncModbusSerialClient(
            c.device,
            **c.framing,
            timeout=c.timeout_s,
            retries=0,
            reconnect_delay=0,
            handle_local_echo=c.echo,
            trace_packet=self.late,
        )

    async def _read_registers(self, client: ModbusClient, meter: MeterConfig, profile: MeterProfile) -> list[int]:
        """The registers, or a :class:`PollError` as soon as an answer comes with a wrong CRC (the
        client is reset after any failed attempt: the request left waiting goes with it)."""
        reading = asyncio.ensure_future(read_registers(client, meter, profile))
        garbled = asyncio.ensure_future(self.crc.garbled.wait())
        try:
            await asyncio.wait({reading, garbled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            garbled.cancel()
            if not reading.done():
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)
        if not reading.cancelled():
            return reading.result()
        raise PollError(f"{meter.meter_id}: the answer's CRC is wrong (noise on the line?)")

    def _echo_error(self) -> str | None:
        return None if self.rtu.echo else self.watch.error()

    async def _connect(self, client: ModbusClient) -> bool:
        """A port that refuses the framing (``tcsetattr`` fails: a pty that takes no parity) is a
        :class:`LineUnusable` saying so; pymodbus 3.16 raised a bare ``termios.error`` (22, 'Invalid
        argument') and left the port open, locked by this program: every later connect was refused
        as "in use" by the gateway itself (:func:`gateway.serial_port.release_leaked_port`)."""
        try:
            return await client.connect()
        except termios.error as error:
            release_leaked_port(error)
            await self.reset()
            why = why_tcsetattr_failed(error, self.rtu.framing)
            raise LineUnusable(f"{self.config.name}: cannot open {self.rtu.device}: {why}") from None

    async def _why_not_open(self) -> str | None:
        """pymodbus 3.16 opens the port with pyserial's ``exclusive=True`` (gateway.serial_port), so a
        port another program holds fails to connect; this says that was why."""
        return await asyncio.to_thread(why_not_open, self.rtu.device, self.rtu.framing)

    def _where(self) -> str:
        return self.rtu.device
