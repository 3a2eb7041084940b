"""Wired M-Bus master (EN 13757-2 link layer, EN 13757-3 data): one serial line, one transaction at a time.

- On first contact with a meter (and after a failure) the master sends SND_NKE and expects E5h, which
  also resets the meter's frame count bit (FCB).
- A read is REQ_UD2 with FCV set and the FCB toggled after each successful exchange; a meter that
  says "more records follow" (DIF 1Fh) is asked again with the FCB toggled until it says no more,
  and the records of all its telegrams make the reading (multi-telegram read). A repeat after a
  missing answer keeps the same FCB, so the meter resends the same telegram rather than the next.
- A meter with a secondary address is selected first (SND_UD to FDh, CI 52h, E5h back) and then read
  at FDh.
- Timeouts follow clause 5.4: the answer must start within 330 bit times + 50 ms; the rest of the
  frame then gets its transfer time plus a margin.

Serial I/O is blocking pyserial in a worker thread; the bus lock of the scheduler makes sure only one
transaction is on the line at a time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime
from typing import Any

import serial

from aquami.clock import Clock, utc_now
from aquami.contracts.reads import FLOW_MAX_M3H, VOLUME_MAX_M3, Protocol, Reading
from firmware_protocols.errors import DecodeError
from firmware_protocols.mbus import build_req_ud2, build_snd_nke, build_snd_ud_select, decode_frame
from gateway.config import MBusBusConfig, MeterConfig
from gateway.modbus_read import millisecond, within
from gateway.transport import PollError

ACK = 0xE5
NETWORK_LAYER = 0xFD
MAX_TELEGRAMS = 8  # a multi-telegram read longer than this is a meter gone wrong

# EN 13757-3 clause 6.2, the status byte: bit 2 power low, bit 3 permanent error, bit 4 temporary error.
_STATUS_ALARMS = ((0x04, "low_battery"), (0x08, "meter_error"), (0x10, "meter_error"))


def reading_from_records(
    meter: MeterConfig, telegrams: list[dict[str, Any]], at: datetime, bus: str, protocol: Protocol = "mbus"
) -> Reading:
    """The current volume, flow and backward volume (VIF 13h with the combinable VIFE 3Ch,
    EN 13757-3:2018 Table 15) among all telegrams' records; alarms from the status byte. Current:
    storage 0, tariff 0, instantaneous, and subunit 0, the meter itself (a subunit, DIFE bit 6,
    is another device behind it: a second register, a sub-meter)."""
    volume = flow = backward = None
    for record in (r for t in telegrams for r in t.get("records", [])):
        current = (
            record["storage"] == 0
            and record["tariff"] == 0
            and record.get("subunit", 0) == 0
            and record["function"] == "instantaneous"
        )
        if not current or not isinstance(record["value"], int | float):
            continue
        if record["quantity"] == "volume" and record["unit"] == "m3" and volume is None:
            volume = float(record["value"])
        elif record["quantity"] == "flow" and record["unit"] == "m3/h" and flow is None:
            flow = float(record["value"])
        elif record["quantity"] == "volume_backward" and record["unit"] == "m3" and backward is None:
            backward = float(record["value"])
    if volume is None or volume < 0:
        raise PollError(f"{meter.meter_id}: no current volume record in its answer")
    if within(volume, 0, VOLUME_MAX_M3) is None:
        raise PollError(f"{meter.meter_id}: volume {volume!r} m3 is outside the reads contract")
    status = telegrams[0].get("status") or 0
    alarms = tuple(dict.fromkeys(name for bit, name in _STATUS_ALARMS if status & bit))
    return Reading(
        meter_id=meter.meter_id,
        ts=millisecond(at),
        volume_m3=volume,
        flow_m3h=within(flow, -FLOW_MAX_M3H, FLOW_MAX_M3H),
        reverse_volume_m3=within(backward, 0, VOLUME_MAX_M3),
        alarms=alarms,
        protocol=protocol,
        bus=bus,
        address=meter.address,
    )


class MBusLine:
    """The blocking side: frames on the serial line, with the standard's timing."""

    def __init__(self, config: MBusBusConfig):
        self.config = config
        self.port: serial.Serial | None = None
        self.char_s = (1 + config.bytesize + (config.parity != "N") + config.stopbits) / config.baudrate
        self.answer_s = 330 / config.baudrate + 0.05  # clause 5.4

    def open(self) -> serial.Serial:
        if self.port is None:
            c = self.config
            try:
                self.port = serial.Serial(c.device, **c.framing, timeout=0)
            except (serial.SerialException, ValueError) as error:
                raise PollError(f"{c.name}: cannot open {c.device}: {error}") from error
        return self.port

    def close(self) -> None:
        if self.port is not None:
            self.port.close()
            self.port = None

    def _read(self, port: serial.Serial, count: int, timeout: float) -> bytes:
        port.timeout = timeout
        return bytes(port.read(count))

    def _drain(self, port: serial.Serial) -> None:
        """Read and drop what is still arriving until the line is quiet, so the rest of a garbled
        answer is not taken for the start of the next one."""
        while self._read(port, 256, 4 * self.char_s + 0.01):
            pass

    def exchange(self, frame: bytes, *, whole_window: bool = False) -> bytes:
        """Send ``frame``; return the answer (E5h or a whole long frame), or raise PollError.

        ``whole_window``: the request may reach several slaves (a secondary-address search), so
        an answer is only taken once the time any slave may still start one has passed in silence.
        Slaves answer 11 to 330 bit times (+50 ms) after the request: a second E5h may come 130 ms
        after the first at 2400 baud, long after the line looked quiet. Taken early, it was read as
        the answer to the next request, and every answer after it was one request late (a search
        found none of two meters answering at 11 and 330 bit times).
        """
        port = self.open()
        port.reset_input_buffer()
        port.write(frame)
        port.flush()
        wait = self.answer_s + len(frame) * self.char_s  # our own bytes leave first
        window_ends = time.monotonic() + wait
        first = self._read(port, 1, wait)
        if not first:
            raise PollError("no answer")
        if first[0] == ACK:
            extra = self._read(port, 1, 3 * self.char_s + 0.01)
            if extra or (whole_window and self._more_within(port, window_ends)):
                self._drain(port)  # more than one slave answered: a collision, in a secondary-address search
                raise PollError("collision")
            return first
        if first[0] != 0x68:
            self._drain(port)
            raise PollError(f"garbled answer (starts {first.hex()})")
        head = first + self._read(port, 3, 4 * self.char_s + 0.05)
        if len(head) < 4 or head[3] != 0x68 or head[1] != head[2]:
            self._drain(port)
            raise PollError(f"garbled long frame header {head.hex()}")
        rest_len = head[1] + 2
        rest = self._read(port, rest_len, rest_len * self.char_s * 1.5 + 0.05)
        if len(rest) != rest_len:
            raise PollError(f"frame cut short ({len(head) + len(rest)} of {rest_len + 4} bytes)")
        if whole_window and self._more_within(port, window_ends):
            self._drain(port)
            raise PollError("collision (a second answer after a whole first one)")
        return head + rest

    def _more_within(self, port: serial.Serial, window_ends: float) -> bool:
        """Whether another slave's answer starts before the answer window closes."""
        left = window_ends - time.monotonic()
        return left > 0 and bool(self._read(port, 1, left + self.char_s + 0.01))


class MBusTransport:
    def __init__(self, config: MBusBusConfig, clock: Clock = utc_now):
        self.config = config
        self.clock = clock
        self.line = MBusLine(config)
        self._initialised: set[str] = set()  # meters that have had their SND_NKE
        self._fcb: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()  # set once, by interrupt(): a search under way stops

    def _exchange(self, frame: bytes) -> bytes:
        return self.line.exchange(frame)

    def _exchange_with_all(self, frame: bytes) -> bytes:
        """An exchange several slaves may answer: every answer they may give is waited for."""
        return self.line.exchange(frame, whole_window=True)

    def _request(self, frame: bytes, repeats: int) -> bytes:
        """Within a multi-telegram read, a lost answer is asked for again with the same FCB: the meter
        then repeats its last telegram instead of moving on (EN 13757-2 clause 5.5.2)."""
        for attempt in range(repeats + 1):
            try:
                return self._exchange(frame)
            except PollError:
                if attempt == repeats:
                    raise
        raise AssertionError("unreachable")

    def _initialise(self, meter: MeterConfig) -> None:
        """SND_NKE before a meter's first request on this line, and after a failure: it resets the
        meter's link layer (EN 13757-2 clause 5.3), so the first request's FCB is taken as new. A
        meter read by secondary address takes it at FDh once selected, which also deselects it
        (EN 13757-3 Annex E; :meth:`read_blocking` selects it again). Without it, a meter whose last
        request (from the gateway before a restart, or a hand-held reader) carried FCB = 1 took our
        first as a repeat and sent its old telegram again, stamped with the time of our read."""
        if meter.meter_id in self._initialised:
            return
        if meter.secondary_address is None:
            answer = self._exchange(build_snd_nke(meter.unit_id))
        else:
            self._select(meter)
            answer = self._exchange(build_snd_nke(NETWORK_LAYER))
        if answer != bytes([ACK]):
            raise PollError("SND_NKE not acknowledged")
        self._initialised.add(meter.meter_id)
        self._fcb[meter.meter_id] = True  # the first request after SND_NKE carries FCB = 1

    def _select(self, meter: MeterConfig) -> None:
        assert meter.secondary_address is not None
        answer = self._exchange(build_snd_ud_select(meter.secondary_address))
        if answer != bytes([ACK]):
            raise PollError("selection not acknowledged")

    def read_blocking(self, meter: MeterConfig) -> Reading:
        with self._lock:
            try:
                self._initialise(meter)
                if meter.secondary_address is not None:
                    self._select(meter)
                address = NETWORK_LAYER if meter.secondary_address is not None else meter.unit_id
                telegrams: list[dict[str, Any]] = []
                for _ in range(MAX_TELEGRAMS):
                    fcb = self._fcb.get(meter.meter_id, True)
                    answer = self._request(
                        build_req_ud2(address, fcb=fcb), repeats=self.config.retries if telegrams else 0
                    )
                    try:
                        telegram = decode_frame(answer)
                    except DecodeError as error:
                        raise PollError(str(error)) from error
                    if telegram.get("function") != "RSP_UD":
                        raise PollError(f"answered {telegram.get('function')}, not RSP_UD")
                    if meter.secondary_address is not None and telegram.get("id") != meter.secondary_address:
                        raise PollError(f"answer from {telegram.get('id')}, not the selected meter")
                    if meter.secondary_address is None and telegram.get("a_field") != meter.unit_id:
                        # a slow meter's late answer to the request before (EN 13757-2: a slave
                        # answers with its own address): not this meter's register
                        raise PollError(f"answer from address {telegram.get('a_field')}, not {meter.unit_id}")
                    self._fcb[meter.meter_id] = not fcb  # exchange complete: the next request toggles
                    telegrams.append(telegram)
                    if not telegram.get("more_records_follow"):
                        break
                else:
                    raise PollError(f"more than {MAX_TELEGRAMS} telegrams")
            except PollError as error:
                self._initialised.discard(meter.meter_id)  # SND_NKE again next time
                raise PollError(f"{meter.meter_id}: {error}") from error
            return reading_from_records(meter, telegrams, self.clock(), self.config.name)

    async def read(self, meter: MeterConfig) -> Reading:
        return await asyncio.to_thread(self.read_blocking, meter)

    async def reset(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        """Close the line; every meter has its SND_NKE again on the reopened one (a port that failed
        mid-read, or an adapter plugged in again, leaves no knowledge of the meters' FCB state)."""
        with self._lock:
            self.line.close()
            self._initialised.clear()

    async def close(self) -> None:
        await self.reset()

    def interrupt(self) -> None:
        self._closing.set()

    # secondary-address search (EN 13757-3 Annex E) ---------------------------------------------------
    def search_blocking(self, prefix: str = "") -> list[str]:
        """Every secondary identification on the line: wildcard selections narrowed digit by digit.

        A selection answered by exactly one E5h holds one meter, read at FDh for its identification;
        a garbled answer is a collision, narrowed by the next digit; silence means none.
        """
        found: list[str] = []
        with self._lock:
            self._search(prefix, found)
        return found

    def _search(self, prefix: str, found: list[str]) -> None:
        if self._closing.is_set():
            raise PollError(f"{self.config.name}: search stopped, the bus is closing ({len(found)} found by then)")
        pattern = prefix + "F" * (8 - len(prefix))
        try:
            answer = self._exchange_with_all(build_snd_ud_select(pattern))
        except PollError as error:
            if str(error) == "no answer":
                return
            answer = b""  # collision or garbage: more than one meter matches
        if answer == bytes([ACK]):
            try:
                telegram = decode_frame(self._exchange_with_all(build_req_ud2(NETWORK_LAYER, fcb=True)))
                found.append(str(telegram["id"]))
                return
            except (PollError, DecodeError, KeyError):
                pass  # read failed: narrow down as if two had answered
        if len(prefix) == 8:
            return
        for digit in "0123456789":
            self._search(prefix + digit, found)

    async def search(self) -> list[str]:
        return await asyncio.to_thread(self.search_blocking)
