"""A wired M-Bus water meter (a slave, EN 13757-2/-3) answering from a live meter model.

What it understands, per frame the master sends (decoded with ``firmware_protocols.mbus``):

- ``SND_NKE`` (EN 13757-2 clause 5.3): reset the link: the FCB history and the multi-telegram
  sequence start again; answered with E5h. To address FDh it also deselects the meter (EN 13757-3
  Annex E, "deselection").
- ``SND_UD`` with CI 52h (EN 13757-3 clause 5 Table 2, Annex E): secondary selection. The meter is
  selected when the secondary address (identification with Fh wildcard digits, manufacturer, version,
  medium with FFh wildcards) matches it and deselected otherwise; a selected meter answers E5h.
  CI 51h (data send) with a bus-address record (VIF 7Ah) sets the primary address, if it is one
  (0..250; 251..255 are reserved or broadcast, EN 13757-2 clause 5.4): like a record it cannot use,
  any other value is ignored. CI 50h (application reset) restarts the telegram sequence. Both
  answered with E5h.
- ``REQ_UD2`` (EN 13757-2 clause 5.3, the C-field's FCB and FCV bits): a request whose FCB equals
  the last one's is a repeat (the master lost the answer) and gets the same bytes again; a toggled
  FCB is a new request and gets the next telegram of a multi-telegram readout (DIF 1Fh "more records follow", EN 13757-3
  special DIF) or, after the last, the first again with the access number counted on.

What it sends (RSP_UD, CI 72h long header, EN 13757-3 clause 6 records), at the register's 1 l resolution:

- telegram 1: volume (storage 0, VIF 13h, 8-digit BCD litres), backward volume (VIFE 3Ch), flow
  (VIF 3Bh, l/h), the meter's clock (VIF 6Dh, type F), error flags (VIF FDh 17h, bits below), the
  due-date value (storage 1, with its date, VIF 6Ch type G), then DIF 1Fh when history follows;
- telegram 2: the volume at the start of each of the last ``history_months`` months (storages 2..),
  each with its date.

Status byte (EN 13757-3, the header's status field): bit 2 power low (``low_battery``), bit 3
permanent error (``meter_error``), bit 4 temporary error (``dry``: nothing to measure). Error flags (their meaning is
the manufacturer's; this simulator's): bit 0 leak, 1 burst, 2 tamper, 3 reverse_flow, 4 dry,
5 low_battery, 6 meter_error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from firmware_protocols.mbus import RecordSpec, build_ack, build_rsp_ud, encode_record, link, secondary_address_matches
from firmware_protocols.records import DataRecord
from simulators.meter_model import MeterReading

ERROR_FLAG_BITS = ("leak", "burst", "tamper", "reverse_flow", "dry", "low_battery", "meter_error")
STATUS_POWER_LOW = 0x04
STATUS_PERMANENT_ERROR = 0x08
STATUS_TEMPORARY_ERROR = 0x10
CI_DATA_SEND = 0x51
CI_APPLICATION_RESET = 0x50
CI_SELECTION = 0x52
MAX_PRIMARY_ADDRESS = 250  # 251..252 reserved, 253 (FDh) secondary addressing, 254/255 broadcasts
#: EN 13757-2 slave timing: the answer starts 11 to 330 bit times (+50 ms) after the request.
MIN_TURNAROUND_BITS = 11
MAX_TURNAROUND_BITS = 330

Addressing = Literal["primary", "secondary", "broadcast"]


class RegisterMeter(Protocol):
    """A live meter with a register: :class:`~simulators.meter_model.MeterModel` is one."""

    @property
    def meter_id(self) -> str: ...

    @property
    def installed(self) -> datetime: ...

    def read(self, t: datetime) -> MeterReading: ...

    def volume_m3(self, at: datetime) -> float: ...


def _litres(volume_m3: float) -> int:
    return round(volume_m3 * 1000) % 100_000_000  # 8 BCD digits


def _month_starts(at: datetime, months: int) -> list[datetime]:
    """The first instants of the current month and the ``months - 1`` before it, newest first."""
    year, month = at.year, at.month
    out = []
    for _ in range(months):
        out.append(datetime(year, month, 1, tzinfo=UTC))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return out


def last_due_date(at: datetime, month: int, day: int) -> datetime:
    """The most recent due date (``month``/``day`` at 00:00 UTC) at or before ``at``."""
    due = datetime(at.year, month, day, tzinfo=UTC)
    return due if due <= at else datetime(at.year - 1, month, day, tzinfo=UTC)


@dataclass
class MBusWaterMeter:
    """One meter on an M-Bus: its addresses, its link state and the telegrams it builds."""

    meter: RegisterMeter
    primary_address: int
    identification: str  # 8 decimal digits: the secondary address' identification number
    manufacturer: str = "AQM"
    version: int = 1
    medium: str = "water"
    due_month: int = 1
    due_day: int = 1
    history_months: int = 12
    turnaround_bits: int = 22  # EN 13757-2: 11 to 330 bit times (+50 ms) after the request
    selected: bool = field(default=False, init=False)
    last_request: datetime | None = field(default=None, init=False)
    access_no: int = field(default=0, init=False)
    _last_fcb: bool | None = field(default=None, init=False, repr=False)
    _last_reply: bytes | None = field(default=None, init=False, repr=False)
    _next_telegram: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not is_primary_address(self.primary_address):
            raise ValueError(f"primary address {self.primary_address}: 0..250 (EN 13757-2 clause 5.4)")
        if len(self.identification) != 8 or not self.identification.isdigit():
            raise ValueError(f"identification {self.identification!r}: 8 decimal digits")
        if not MIN_TURNAROUND_BITS <= self.turnaround_bits <= MAX_TURNAROUND_BITS:
            raise ValueError(f"turnaround_bits {self.turnaround_bits}: 11..330 (EN 13757-2)")

    @property
    def meter_id(self) -> str:
        return self.meter.meter_id

    @property
    def fault_address(self) -> int:
        """The identification as an integer: whom a wire fault means (a primary address is not the
        meter's own: several share 0, and a master may change it)."""
        return int(self.identification)

    # ---- the link layer -----------------------------------------------------------------------

    def receive(self, request: dict[str, Any], addressing: Addressing, at: datetime) -> bytes | None:
        """The answer to a decoded master frame that reached this meter (None: it stays silent).

        ``addressing`` says how the frame reached it: by its primary address, through selection
        (address FDh) or as a broadcast (FEh; the bus keeps FFh broadcasts silent itself).
        """
        function = request.get("function")
        if function == "SND_NKE":
            self.reset_link()
            if addressing == "secondary":
                self.selected = False
            return build_ack()
        if function == "SND_UD":
            return self._snd_ud(request, addressing)
        if function == "REQ_UD2":
            self.last_request = at
            return self._req_ud2(bool(request.get("fcb")), bool(request.get("fcv")), at)
        return None

    def select(self, selection: dict[str, Any]) -> bool:
        """A secondary selection (CI 52h) went over the bus: be selected if it matches, else not."""
        self.selected = secondary_address_matches(
            selection, self.identification, self.manufacturer, self.version, self.medium
        )
        return self.selected

    def reset_link(self) -> None:
        self._last_fcb = None
        self._last_reply = None
        self._next_telegram = 0

    def _snd_ud(self, request: dict[str, Any], addressing: Addressing) -> bytes | None:
        ci = request.get("ci_field")
        if ci == CI_SELECTION:
            return build_ack() if self.selected else None  # the bus applied the selection to every meter
        if ci == CI_APPLICATION_RESET:
            self.reset_link()
            return build_ack()
        if ci == CI_DATA_SEND:
            for record in request.get("records", []):
                if record["quantity"] == "bus_address" and is_primary_address(record["value"]):
                    self.primary_address = record["value"]
            return build_ack()
        return None

    def _req_ud2(self, fcb: bool, fcv: bool, at: datetime) -> bytes:
        if fcv and self._last_reply is not None and fcb == self._last_fcb:
            return self._last_reply  # a repeat: the master did not get the last answer
        telegrams = self.telegrams(at)
        index = self._next_telegram if fcv and self._last_fcb is not None else 0
        index = index if index < len(telegrams) else 0
        more = index < len(telegrams) - 1
        self._next_telegram = index + 1 if more else 0
        self.access_no = (self.access_no + 1) & 0xFF
        reply = build_rsp_ud(
            self.primary_address,
            self.identification,
            self.manufacturer,
            self.version,
            self.medium,
            self.access_no,
            self.status(self.meter.read(at)),
            telegrams[index],
            more_records_follow=more,
        )
        self._last_fcb = fcb if fcv else None
        self._last_reply = reply
        return reply

    # ---- the application layer ----------------------------------------------------------------

    @staticmethod
    def status(reading: MeterReading) -> int:
        status = 0
        if "low_battery" in reading.alarms:
            status |= STATUS_POWER_LOW
        if "meter_error" in reading.alarms:
            status |= STATUS_PERMANENT_ERROR
        if "dry" in reading.alarms:
            status |= STATUS_TEMPORARY_ERROR
        return status

    def _stored(self, storage: int, at: datetime) -> list[RecordSpec]:
        return [
            RecordSpec("bcd8", 0x13, _litres(self.meter.volume_m3(at)), storage=storage),
            encode_record(DataRecord("date", None, at.date().isoformat(), storage=storage)),
        ]

    def telegrams(self, at: datetime) -> list[list[RecordSpec]]:
        """The records of each telegram of a full readout at ``at``."""
        reading = self.meter.read(at)
        flags = sum(1 << bit for bit, name in enumerate(ERROR_FLAG_BITS) if name in reading.alarms)
        clock = reading.meter_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
        first = [
            RecordSpec("bcd8", 0x13, _litres(reading.volume_m3)),
            RecordSpec("bcd8", 0x13, _litres(reading.reverse_volume_m3), vifes=(0x3C,)),
            RecordSpec("int32", 0x3B, round(reading.flow_m3h * 1000)),
            encode_record(DataRecord("datetime", None, clock)),
            RecordSpec("int16", 0x7D, flags, vifes=(0x17,)),
        ]
        due = last_due_date(at, self.due_month, self.due_day)
        if due >= self.meter.installed:
            first += self._stored(1, due)
        history = [
            record
            for storage, start in enumerate(_month_starts(at, self.history_months), start=2)
            if start >= self.meter.installed
            for record in self._stored(storage, start)
        ]
        return [first, history] if history else [first]


def is_primary_address(value: object) -> bool:
    """A meter's own primary address: 0 (unconfigured) to 250 (EN 13757-2 clause 5.4)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_PRIMARY_ADDRESS


def is_broadcast(address: int) -> bool:
    return address in (link.ADDRESS_BROADCAST_REPLY, link.ADDRESS_BROADCAST_NO_REPLY)
