"""A gateway configuration for the running rig: its transports as buses, its meters as the gateway's.

The rig's serial transports are new ptys at each start (``/dev/pts/7`` one run, ``/dev/pts/3`` the
next) and a Modbus TCP transport on port 0 takes a free port: a gateway file written by hand for
the rig is out of date at its next start. ``aquami simulate rig --gateway-config gw.toml`` writes one
once the rig listens, naming where each transport does now, with the framing its pty opens with
(:func:`simulators.serial_line.port_parity`), so ``aquami gateway run gw.toml`` reads every meter
without an edit. The file's first line marks it as the rig's: it is written again at each start,
and a file without that line (a gateway's own configuration) is never overwritten.
"""

from __future__ import annotations

import json
from pathlib import Path

from simulators.mbus_slave import ERROR_FLAG_BITS
from simulators.rig.config import MeterConfig, TransportConfig, serial_never_set, serial_number
from simulators.rig.runner import Rig
from simulators.serial_line import port_parity

MARK = "# Written by `aquami simulate rig`"
GATEWAY_ID = "aquami-rig"
POLL_INTERVAL_S = 60  # a technician at the rig sees each meter read within a minute
BUS_PROTOCOL = {"modbus_tcp": "modbus-tcp", "modbus_rtu": "modbus-rtu", "mbus": "mbus", "wmbus": "wmbus"}
PROFILE = {
    "smart_water_meter": "smart_water_meter",
    "pulse_counter": "pulse_counter",
    "dma_inlet": "electromagnetic_flow_meter",
}


class NotTheRigsFile(ValueError):
    """The file named for the gateway configuration is there and was not written by a rig."""


def check_writable(path: Path) -> None:
    """Refuse, before the rig starts, a file that is there and is not one a rig wrote."""
    try:
        with path.open(encoding="utf-8", errors="replace") as existing:
            first = existing.readline()
    except FileNotFoundError:
        return
    except OSError as error:
        raise NotTheRigsFile(f"{path}: cannot read: {error.strerror}") from None
    if not first.startswith(MARK):
        raise NotTheRigsFile(
            f"{path} is there and was not written by a rig (its first line is not {MARK!r}): not overwritten"
        )


def _toml(value: object) -> str:
    """A TOML value: a JSON string is a TOML basic string; numbers and booleans as TOML writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _table(header: str, values: dict[str, object]) -> str:
    return "\n".join([header, *(f"{key} = {_toml(value)}" for key, value in values.items())]) + "\n"


def _bus(rig: Rig, transport: TransportConfig, meters: list[MeterConfig]) -> dict[str, object]:
    bus: dict[str, object] = {"name": transport.name, "protocol": BUS_PROTOCOL[transport.protocol]}
    where = rig.where[transport.name]
    if transport.protocol == "modbus_tcp":
        host, _, port = where.rpartition(":")
        return bus | {"host": host, "port": int(port), "poll_interval_s": POLL_INTERVAL_S}
    settings = rig.framing[transport.name]
    bus |= {"device": where, "baudrate": settings.baudrate, "parity": port_parity(settings)}
    if transport.protocol != "wmbus":
        return bus | {"poll_interval_s": POLL_INTERVAL_S}
    # listened to: a meter is offline after [health] offline_after of its send intervals unheard
    longest = max((m.interval_s for m in meters), default=POLL_INTERVAL_S)
    return bus | {"poll_interval_s": float(longest), "require_fcs": True}  # the rig's stream has its CRC-16


def _meter(m: MeterConfig) -> dict[str, object]:
    meter: dict[str, object] = {"meter_id": m.meter_id, "bus": m.transport}
    if m.kind in PROFILE:
        meter |= {"unit_id": m.address, "profile": PROFILE[m.kind]}
        serial = serial_number(m)
        # its answers checked: another meter at its unit id is refused. One never set (0, or all
        # ones: a rig file's, to rehearse a meter as it leaves the factory) tells no meter from
        # another: the gateway refuses it configured (gateway.config) and reads such a meter
        # unchecked, with a warning. Before, the file named it, and the gateway refused the file.
        if serial is not None and not serial_never_set(serial):
            meter["serial_number"] = serial
        if m.kind == "pulse_counter":
            meter["parameters"] = {"litres_per_pulse": m.litres_per_pulse}
    elif m.kind == "mbus_water":  # a primary address of 0 is an unconfigured meter: its secondary one
        meter |= {"address": m.address} if m.address else {"secondary_address": m.secondary}
        if m.address and m.secondary:  # its answers checked: another meter at its address is refused
            meter["identification"] = m.secondary
    else:
        meter |= {"id": m.secondary, "key": (m.key or b"").hex().upper(), "manufacturer": m.manufacturer}
    if m.kind in ("mbus_water", "wmbus_oms"):
        # the bits of the rig's meters' error flags record: without the map the gateway does not read
        # the record, and their leak, burst, tamper, reverse flow and dry alarms reached no one
        meter["error_flags"] = list(ERROR_FLAG_BITS)
    return meter


def gateway_config_text(rig: Rig, mqtt_url: str, spool: str) -> str:
    """The configuration of a gateway reading every meter of the started ``rig``, publishing to
    ``mqtt_url``, its spool at ``spool`` (relative to the file)."""
    parts = [
        f"{MARK} at its start: where its transports listen now.\n"
        "# Written again at each start (its ptys change); edit the rig file, not this one.\n",
        f"gateway_id = {_toml(GATEWAY_ID)}\n",
        _table("[mqtt]", {"url": mqtt_url}),
        _table("[spool]", {"path": spool}),
    ]
    for transport in rig.config.transports:
        meters = [m for m in rig.config.meters if m.transport == transport.name]
        if meters:  # a bus without meters has nothing to read
            parts.append(_table("[[buses]]", _bus(rig, transport, meters)))
    for m in rig.config.meters:
        meter = _meter(m)
        parameters = meter.pop("parameters", None)
        text = _table("[[meters]]", meter)
        if isinstance(parameters, dict):
            inline = ", ".join(f"{key} = {_toml(value)}" for key, value in parameters.items())
            text += f"parameters = {{ {inline} }}\n"
        parts.append(text)
    return "\n".join(parts)


def write_gateway_config(rig: Rig, path: Path, mqtt_url: str) -> None:
    """Write :func:`gateway_config_text` to ``path`` (whole or not at all), its spool beside it;
    readable by its owner alone, the last run's file too, as it may hold wireless meters' keys (the
    gateway warns of a file holding a key that every user can read: gateway.secret_files)."""
    from aquami import atomic_write

    text = gateway_config_text(rig, mqtt_url, f"{path.stem}-spool.sqlite")
    try:
        atomic_write.write_text(path, text, mode=0o600)
    except OSError as error:
        raise OSError(error.errno, f"--gateway-config {path}: {error.strerror}") from None
