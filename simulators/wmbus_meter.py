"""A wireless M-Bus water meter (EN 13757-4, OMS) sending encrypted telegrams from a live meter model.

Each transmission is one SND_NR telegram (C-field 44h), frame format A, with the short transport
header (CI 7Ah) and OMS security mode 5 (AES-128-CBC with the meter's key, IV from the link
address and access number; EN 13757-7, OMS Vol. 2): the access number counts up with every
telegram and the encrypted part starts with 2F 2F. With ``security_mode=7`` (OMS Specification
Vol. 2, security profile B; EN 13757-7:2018 clauses 6 and 9) the telegram carries an AFL (CI 90h)
with a message counter and an AES-CMAC truncated to 8 bytes, and is encrypted and authenticated
with the session keys Kenc and Kmac that KDF-A derives from the meter's key and that counter. The
counter rises with every telegram and never goes back across a restart of the simulator (as a real
meter keeps its counter through a battery change), so a gateway that remembers the last counter it
accepted (gateway.wmbus_replay) takes a restarted rig's telegrams: it is at least the whole seconds
since 1970 (UTC), whatever the meter's installation date, and a meter given ``reserve`` (the rig,
which keeps what it returns in its state file) starts from the last counter reserved and reserves
ahead before it sends past it, so a meter sending more often than once a second, whose counter runs
ahead of the clock, goes on above what it sent too. The records are the ones OMS water meters
commonly send (EN 13757-3 clause 6):

- volume (storage 0, DIF 04h VIF 13h: 32-bit binary litres), backward volume (VIFE 3Ch), flow
  (VIF 3Bh, l/h), the meter's clock (VIF 6Dh, type F), error flags (VIF FDh 17h, bits as
  :data:`simulators.mbus_slave.ERROR_FLAG_BITS`), and the due-date volume with its date (storage 1).

Telegrams are built by ``firmware_protocols.wmbus.build_telegram``, the definitions the gateway
decodes with; :meth:`WMBusMeter.telegram` gives the telegram as a receiver hands it on (the link
layer's CRCs checked and removed), :meth:`WMBusMeter.radio_telegram` as it goes on air.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from firmware_protocols.mbus import RecordSpec, encode_record
from firmware_protocols.mbus.build import build_user_data
from firmware_protocols.records import DataRecord
from firmware_protocols.wmbus import build_telegram
from simulators.mbus_slave import ERROR_FLAG_BITS, MBusWaterMeter, RegisterMeter, last_due_date

KEY_BYTES = 16
#: The AFL message counter's width (EN 13757-7:2018 6.3.5, AFL.MCR: 32 bits).
MESSAGE_COUNTER_MODULUS = 1 << 32
#: The clock the message counter never falls below: whole seconds since this instant (2**32 s of it
#: end in 2106). Not the meter's installation: a rig file whose ``installed`` is moved later, its
#: meters counting from nearer, sent counters below those the gateway had taken and was refused.
COUNTER_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECURITY_MODES = (5, 7)


@dataclass
class WMBusMeter:
    """One OMS water meter: its radio identity, its key and how often it sends."""

    meter: RegisterMeter
    identification: str  # 8 decimal digits
    key: bytes  # AES-128 key (mode 5: the key itself; mode 7: the master key KDF-A derives from)
    manufacturer: str = "AQM"
    version: int = 1
    medium: str = "water"
    interval_s: float = 16.0  # OMS T1 meters send every few seconds to minutes
    due_month: int = 1
    due_day: int = 1
    security_mode: Literal[5, 7] = 5
    access_no: int = field(default=0, init=False)
    #: the AFL's, mode 7: the last one sent (a restarted rig's meter: the last it had reserved)
    message_counter: int = 0
    #: mode 7: called with a counter about to be sent past the last reserved; returns the new
    #: reservation, a counter at least as high, kept where a restart finds it (the rig's state file)
    reserve: Callable[[int], int] | None = None
    _reserved: int = field(default=0, init=False, repr=False)
    last_sent: datetime | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if len(self.identification) != 8 or not self.identification.isdigit():
            raise ValueError(f"identification {self.identification!r}: 8 decimal digits")
        if len(self.key) != KEY_BYTES:
            raise ValueError(f"key: {len(self.key)} bytes, AES-128 needs 16")
        if self.interval_s <= 0:
            raise ValueError("interval_s must be positive")
        if self.security_mode not in SECURITY_MODES:
            raise ValueError(f"security_mode {self.security_mode!r}: 5 or 7 (OMS Vol. 2 security profiles A and B)")
        self._reserved = self.message_counter  # sent at most this far before a restart

    @property
    def meter_id(self) -> str:
        return self.meter.meter_id

    @property
    def address(self) -> int:
        """The number wire faults use for this meter: its identification as an integer."""
        return int(self.identification)

    def records(self, at: datetime) -> bytes:
        reading = self.meter.read(at)
        flags = sum(1 << bit for bit, name in enumerate(ERROR_FLAG_BITS) if name in reading.alarms)
        clock = reading.meter_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
        specs = [
            RecordSpec("int32", 0x13, round(reading.volume_m3 * 1000)),
            RecordSpec("int32", 0x13, round(reading.reverse_volume_m3 * 1000), vifes=(0x3C,)),
            RecordSpec("int32", 0x3B, round(reading.flow_m3h * 1000)),
            encode_record(DataRecord("datetime", None, clock)),
            RecordSpec("int16", 0x7D, flags, vifes=(0x17,)),
        ]
        due = last_due_date(at, self.due_month, self.due_day)
        if due >= self.meter.installed:
            specs += [
                RecordSpec("int32", 0x13, round(self.meter.volume_m3(due) * 1000), storage=1),
                encode_record(DataRecord("date", None, due.date().isoformat(), storage=1)),
            ]
        return build_user_data(specs)

    def _build(self, at: datetime, crcs: bool) -> bytes:
        return build_telegram(
            self.records(at),
            manufacturer=self.manufacturer,
            id=self.identification,
            version=self.version,
            medium=self.medium,
            access_no=self.access_no,
            status=MBusWaterMeter.status(self.meter.read(at)),
            key=self.key,
            security_mode=self.security_mode,
            message_counter=self.message_counter,
            crcs=crcs,
        )

    def next_message_counter(self, at: datetime) -> int:
        """Mode 7's next AFL message counter: one above the last sent, and at least the whole seconds
        since :data:`COUNTER_EPOCH`, so a simulator started again without its reservation goes on
        above what it sent before (for send intervals of a second or more; with its reservation, for
        any). A gateway refuses a counter not above the last it accepted."""
        clock = int((at - COUNTER_EPOCH).total_seconds())
        counter = max(self.message_counter + 1, clock)
        if counter >= MESSAGE_COUNTER_MODULUS:  # 2106: no meter lives so long
            raise ValueError(f"meter {self.meter_id}: the AFL message counter would pass 2**32 - 1")
        return counter

    def telegram(self, at: datetime) -> bytes:
        """The next transmission, as a receiver hands it on (no link-layer CRCs); counts the access
        number, and in mode 7 the AFL message counter."""
        if self.security_mode == 7:
            counter = self.next_message_counter(at)
            if self.reserve is not None and counter > self._reserved:
                self._reserved = self.reserve(counter)
            self.message_counter = counter
        # counted last, so one who sees the access number move sees the counter it goes with
        self.access_no = (self.access_no + 1) & 0xFF
        self.last_sent = at
        return self._build(at, crcs=False)

    def radio_telegram(self, at: datetime) -> bytes:
        """The telegram :meth:`telegram` last gave, as it went on air (frame format A, with CRCs)."""
        return self._build(at, crcs=True)
