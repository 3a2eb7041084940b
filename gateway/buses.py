"""The transport for each kind of bus, and a one-off attempt outside any schedule (for ``scan``)."""

from __future__ import annotations

import asyncio
import termios

from aquami.clock import Clock, utc_now
from aquami.contracts.reads import Reading
from gateway.config import BusConfig, MBusBusConfig, MeterConfig, ModbusRtuBusConfig, ModbusTcpBusConfig
from gateway.late_answers import LateListener
from gateway.late_episodes import BusLateEpisodes
from gateway.mbus import MAX_TELEGRAMS, MBusTransport
from gateway.meter_identity import MeterIdentities
from gateway.modbus_transport import ModbusRtuTransport, ModbusTcpTransport
from gateway.profiles import ProfileBook
from gateway.transport import NoAnswer, PollError, Transport


def make_transport(
    bus: BusConfig,
    profiles: ProfileBook,
    clock: Clock = utc_now,
    on_late: LateListener | None = None,
    identities: MeterIdentities | None = None,
    late_episodes: BusLateEpisodes | None = None,
) -> Transport:
    """The transport of a polled bus (a wireless M-Bus receiver is listened to: gateway.wmbus).

    ``clock`` timestamps the readings: the wall clock in the field, a simulated one in a test rig
    that replays days in minutes. ``on_late`` is called with the unit (M-Bus: the primary address) of
    each answer heard after its attempt gave up, or None where no one unit is known (gateway.late_answers).
    ``identities``: the meters' first answers' identities (a wired M-Bus meter's identification, a
    Modbus meter's serial number: gateway.meter_identity), the gateway's across reloads; the
    transport's own when None. ``late_episodes``: its late answers' episodes (gateway.late_episodes),
    the gateway's across reloads likewise.
    """
    if isinstance(bus, ModbusTcpBusConfig):
        return ModbusTcpTransport(bus, profiles, clock, on_late, identities, late_episodes)
    if isinstance(bus, ModbusRtuBusConfig):
        return ModbusRtuTransport(bus, profiles, clock, on_late, identities, late_episodes)
    if isinstance(bus, MBusBusConfig):
        return MBusTransport(bus, clock, on_late, identities, late_episodes)
    raise ValueError(f"bus {bus.name}: a {bus.protocol} bus is not polled")


def attempt_limit_s(bus: BusConfig) -> float:
    """The longest one attempt may take: M-Bus multi-telegram reads take several frame times."""
    return bus.timeout_s * (MAX_TELEGRAMS + 2 if isinstance(bus, MBusBusConfig) else 3)


async def attempt_once(transport: Transport, bus: BusConfig, meter: MeterConfig) -> Reading:
    """One attempt bounded by the bus's timeout; any failure is a :class:`PollError` and resets."""
    read = asyncio.ensure_future(transport.read(meter))
    read.add_done_callback(_outcome_taken)
    try:
        return await asyncio.wait_for(read, attempt_limit_s(bus))
    except (PollError, TimeoutError, ConnectionError, OSError, termios.error) as error:
        # termios.error is no OSError: pyserial raises it from a port whose USB converter was
        # unplugged (reset_input_buffer, the timeout setter); uncaught, it ended the poll's task
        # silently, with no failed attempt, no warning, and the meter never offline
        await transport.reset()
        if isinstance(error, PollError):  # as it is: a LineUnusable stays one (a scan stops on it)
            raise
        failure = NoAnswer if isinstance(error, TimeoutError) else PollError  # the whole attempt's limit
        raise failure(str(error) or type(error).__name__) from error


def _outcome_taken(read: asyncio.Future[Reading]) -> None:
    """Take the outcome of an attempt's read, which runs in a task of its own (the time limit's).
    When the poll is cancelled while pymodbus waits (the gateway stopping), pymodbus ends the read
    with its ModbusIOException (a NoAnswer) instead of the cancellation, and nobody waits for it any
    more: asyncio logged "Task exception was never retrieved" with pymodbus's traceback. The poll
    itself is cancelled all the same (wait_for raises the cancellation)."""
    if not read.cancelled():
        read.exception()
