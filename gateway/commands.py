"""Downlink: commands a gateway takes from ``{root}/{gateway_id}/cmd/{name}``, each replied to on
``cmd/{name}/reply`` with a JSON object carrying the request's ``request_id`` (if it gave one).

- ``read-now`` ``{"meter_id": ...}``: poll that meter now (it is spooled and published as usual too);
  the reply carries the reading.
- ``reload``: re-read the configuration file and swap buses and meters; the spool is untouched.
- ``scan`` ``{"bus": ..., "first": 1, "last": 247, "profile": ...}``: try unit ids on a Modbus bus, or
  search an M-Bus line for secondary addresses; the reply lists what answered and a ``[[meters]]``
  snippet for the configuration. A Modbus scan's ``serial_numbers`` are its units' (a profile that
  reads one), each with the bus's meter known by it, if one is: configured with it or remembered
  with it (the gateway's identities), so a swap is seen in a scan; its ``configured_meters`` say what
  answered at each configured meter's unit in first..last (an M-Bus search's: at each meter's primary
  address, or whether its secondary address was found): its own serial number or identification,
  another meter's, one no meter has (the meter exchanged?), or nothing. Its ``problems`` are the units
  that answered but gave no reading (``{"unit_id": 1, "error": "...exception response..."}``: a
  device not of the profile asked with, or not well), as ``aquami gateway scan`` says them; a unit
  that does not answer is an empty address, not said, and pymodbus's lines for it are kept out of the gateway's log
  (gateway.scan). ``profile`` is a shipped profile's name or one the gateway's Modbus meters are
  configured with, by the name or path the configuration gives; any other is refused, the error
  listing those (before, any path: the gateway opened whatever ``.toml`` a sender named, and its
  error said whether the file was there). ``first``, ``last`` and ``profile`` sent for an M-Bus
  line are refused (before, ignored: the whole line searched). An M-Bus search's late E5h are
  ``late_selections``, each the selections left unanswered before it came, or, with none since the
  search's last answer, the selection that answer was to (a second meter it selects, acknowledging
  late), which ``late_selections_answered`` marks true (one entry each, in the same order); one a poll's
  meter may have sent instead (its SND_NKE or selection left unanswered just before) has that meter
  beside it in ``late_selections_may_be_polls`` (one entry each, in the same order), as the gateway's
  log says it (gateway.late_answers ``heard_in_search``).

A bus that fails during a command (a Modbus bus that will not open, an M-Bus search stopped by a
reload or a device that is not there) is a :class:`PollError`: answered ``{"ok": false}`` with its
one line, which says why, and logged as one warning. Before, "internal error: PollError: …" and a
traceback, as for a bug of ours, which is what "internal error" is kept for.

Each request is checked against its JSON Schema (``aquami/contracts/commands.schema.json``, through
:func:`aquami.contracts.commands.request_problem`) before it is acted on: a field of the wrong type,
out of range, missing or unknown is answered ``{"ok": false, "error": ...}``, the error one line naming
the field. Before, fields were read ad hoc: ``"first": "x"`` was answered "invalid literal for int()
with base 10: 'x'", a misspelt ``"frist": 200`` was ignored and units 1 to 247 scanned, and a scan
with an unknown profile (or ``pulse_counter``, whose ``litres_per_pulse`` a command cannot give)
answered ok, every unit that answered a "problem".
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aquami.contracts.commands import request_problem, valid_request_id
from aquami.counted import counted
from firmware_protocols.modbus import available_profiles, load_profile
from firmware_protocols.modbus.profile import ProfileError
from gateway.config import ConfigError, MeterConfig, ModbusRtuBusConfig, ModbusTcpBusConfig, load_config
from gateway.late_answers import late_units_during
from gateway.mbus import MBusTransport
from gateway.meter_identity import IDENTIFICATION, SERIAL_NUMBER
from gateway.modbus_identity import NOT_SET
from gateway.scan import (
    Found,
    SerialOwner,
    mbus_snippet,
    scan_modbus,
    serial_numbers_heard,
    serial_owners,
    snippet,
    unpinned,
)
from gateway.scan_configured import mbus_configured_answers, modbus_configured
from gateway.spool import NotSpooled
from gateway.transport import PollError

if TYPE_CHECKING:
    from gateway.service import Gateway

log = logging.getLogger(__name__)
MODBUS_ONLY = ("first", "last", "profile")  # a scan's fields that an M-Bus search has no use for


class Commands:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self._tasks: set[asyncio.Task[None]] = set()
        self.handled = 0

    def dispatch(self, name: str, payload: bytes) -> None:
        task = asyncio.create_task(self._run(name, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _reply(self, name: str, body: dict[str, Any]) -> None:
        g = self.gateway
        topic = f"{g.config.topic_root}/{g.config.gateway_id}/cmd/{name}/reply"
        g.publisher.send(topic, json.dumps(body, separators=(",", ":")).encode())

    async def _run(self, name: str, payload: bytes) -> None:
        try:
            request = json.loads(payload) if payload.strip() else {}
            if not isinstance(request, dict):
                raise ValueError("a command's payload is a JSON object")
        except ValueError as error:
            self._reply(name, {"ok": False, "error": f"bad payload: {error}"})
            return
        request_id = request.get("request_id")
        reply: dict[str, Any] = {"request_id": request_id if valid_request_id(request_id) else None}
        handler = {"read-now": self.read_now, "reload": self.reload, "scan": self.scan}.get(name)
        try:
            if handler is None:
                raise ValueError(f"unknown command {name!r} (read-now, reload, scan)")
            problem = request_problem(name, request)
            if problem is not None:
                if problem.startswith("bus "):
                    problem = self._with_buses(problem)
                elif problem.startswith("profile"):
                    problem = f"{problem} ({self._profiles_said()})"
                raise ValueError(problem)
            reply.update(await handler(request))
            reply.setdefault("ok", True)
        except (ValueError, KeyError, ConfigError, NotSpooled) as error:  # NotSpooled: a full disk
            reply.update(ok=False, error=str(error))
        except PollError as error:  # a bus that will not open, a search a reload stopped: the field's, not ours
            said = " ".join(str(error).split()) or type(error).__name__
            log.warning("command %s: %s", name, said)
            reply.update(ok=False, error=said)
        except Exception as error:  # a fault of ours: the sender still gets an answer, the log the traceback
            log.exception("command %s failed", name)
            reply.update(ok=False, error=f"internal error: {type(error).__name__}: {error}")
        self.handled += 1
        self._reply(name, reply)

    async def _owners(self, meters: Sequence[MeterConfig], kind: str) -> dict[str, SerialOwner]:
        """The bus's meters by serial number (identification: ``kind``), pinned or remembered by this
        gateway, the remembered ones not known yet read from the spool in a thread, not on the event
        loop (gateway.meter_identity.MeterIdentities.read_ahead)."""
        remembered = await self.gateway.identities.read_ahead(unpinned(meters))
        return serial_owners(meters, kind, remembered)

    def _with_buses(self, problem: str) -> str:
        """A scan's problem with its ``bus``, said with the buses there are."""
        return f"{problem} (buses: {', '.join(self.gateway.schedulers)})"

    def profiles(self) -> list[str]:
        """The profiles a scan command may name: the shipped ones, and those the gateway's Modbus
        meters are configured with (an operator's own file, by the path the configuration gives).
        Not any file: a command naming a path made the gateway open any ``.toml`` on its disk, and
        its error said whether that path existed."""
        configured = {
            meter.profile
            for bus in self.gateway.config.buses
            if isinstance(bus, ModbusTcpBusConfig | ModbusRtuBusConfig)
            for meter in bus.meters
        }
        shipped = available_profiles()
        return shipped + sorted(configured - set(shipped))

    def _profiles_said(self) -> str:
        return f"profiles: {', '.join(self.profiles())}"

    async def read_now(self, request: dict[str, Any]) -> dict[str, Any]:
        meter_id = request["meter_id"]  # a string: request_problem has checked the request
        for scheduler in self.gateway.schedulers.values():
            if meter_id in scheduler.meters:
                reading, why, attempts = await scheduler.read_now(str(meter_id))
                if reading is None:  # before: "no answer" alone, the reason only in the gateway's log
                    # the attempts made: a refused answer is asked once, a bus closed by a reload not
                    # again (before, retries + 1 was said whatever was made)
                    made = f"after {counted(attempts, 'attempt')}" if attempts else "(no attempt made)"
                    error = f"{meter_id}: no reading {made}: {why}"
                    return {"ok": False, "error": error, "meter_id": meter_id}
                return {"ok": True, "meter_id": meter_id, "reading": reading.to_json()}
        for listener in self.gateway.listeners.values():
            if any(m.meter_id == meter_id for m in listener.config.meters):
                raise ValueError(f"{meter_id} is a wireless M-Bus meter: it is heard when it sends, not polled")
        raise ValueError(f"no meter {meter_id!r} on this gateway")

    async def reload(self, request: dict[str, Any]) -> dict[str, Any]:
        path = self.gateway.config_path
        if path is None:
            raise ValueError("this gateway was not started from a file; nothing to reload")
        # said in the gateway's own log, as a restart is: before, a reload sent from the head-end,
        # taken or refused, was in its reply alone, and the field box's log never showed its meters change
        try:
            config = await asyncio.to_thread(load_config, path)
            notes = await self.gateway.apply_config(config)
        except (ValueError, ConfigError) as error:
            log.warning("reload: configuration not reloaded, the running one kept: %s", " ".join(str(error).split()))
            raise
        buses, meters = len(config.buses), len(config.meters)
        log.info(
            "reload: configuration read again from %s: %s%s",
            path,
            config.size(),
            "".join(f"; {note}" for note in notes),
        )
        return {"buses": buses, "meters": meters, "notes": notes}

    async def scan(self, request: dict[str, Any]) -> dict[str, Any]:
        bus = request.get("bus")
        scheduler = self.gateway.schedulers.get(str(bus))
        if scheduler is None:
            raise ValueError(f"no bus {bus!r} (buses: {', '.join(self.gateway.schedulers)})")
        if isinstance(scheduler.transport, MBusTransport):
            for field in MODBUS_ONLY:
                if field in request:  # before: ignored, the line searched as if it had not been sent
                    raise ValueError(f"{field}: applies to Modbus buses only; {bus!r} is an M-Bus line")
            async with scheduler.lock:
                if scheduler.closed:
                    raise ValueError(f"bus {bus!r} was reloaded; scan it again")
                searched = await scheduler.transport.search()
                # an E5h heard after the answer window names no meter: the selections left unanswered
                # before each one came (gateway.mbus); before, it was not heard, or not said
                late_selections = [list(selections) for selections in scheduler.transport.late_in_search]
                late_answered = list(scheduler.transport.late_in_search_answered)
                late_polls = [list(meters) for meters in scheduler.transport.late_in_search_polls]
                late_reads = list(scheduler.transport.late_reads_in_search)
            name, meters = scheduler.config.name, scheduler.config.meters
            owners = await self._owners(meters, IDENTIFICATION)
            configured, searched = mbus_configured_answers(name, meters, owners, searched, late_reads)
            found_ids = [f.identification for f in searched]
            snippet_text = mbus_snippet(name, searched)
            searched_reply: dict[str, Any] = {"found": found_ids, "snippet": snippet_text}
            if configured:  # before, a meter exchanged or not found was not said
                searched_reply["configured_meters"] = [a.to_json() for a in configured]
            if late_selections:
                searched_reply["late_selections"] = late_selections
            # an entry that is the selection answered last, none left unanswered since: before, the entry was
            # empty, naming nothing
            if any(late_answered):
                searched_reply["late_selections_answered"] = late_answered
            # an entry a poll's meter may have sent instead (its SND_NKE or selection left unanswered just
            # before): said as the gateway's log says it; before, the reply said it as the search's alone
            if any(late_polls):
                searched_reply["late_selections_may_be_polls"] = late_polls
            # a read's late answer names its meter: before, it was read as a collision and not said
            if late_found := [i for i in late_reads if i not in found_ids]:
                searched_reply["late_identifications"] = late_found
            return searched_reply
        first, last = int(request.get("first", 1)), int(request.get("last", 247))
        if not 1 <= first <= last <= 247:
            raise ValueError("first and last are Modbus unit ids, 1 <= first <= last <= 247")
        profile = str(request.get("profile", "smart_water_meter"))
        if profile not in self.profiles():
            raise ValueError(f"profile: {profile!r} is not a profile of this gateway ({self._profiles_said()})")
        try:  # not per unit: each would fail alike, the scan an ok reply with 247 problems
            load_profile(profile, {})
        except ProfileError as error:
            if profile in available_profiles():  # a shipped profile: it loads but for its parameters
                raise ValueError(
                    f"profile: {profile} needs parameters a scan command cannot give"
                    f" (aquami gateway scan --profile {profile} --param NAME=VALUE on the gateway can)"
                ) from None
            raise ValueError(f"profile: {error}") from None
        problems: list[dict[str, Any]] = []
        # pinned, or remembered by this gateway: a swap or a moved meter is seen in the reply
        owners = await self._owners(scheduler.config.meters, SERIAL_NUMBER)

        def on_problem(unit_id: int, error: PollError) -> None:
            problems.append({"unit_id": unit_id, "error": str(error)})

        late: list[int] = []

        def on_late(unit_id: int | None) -> None:  # (a meter polled meanwhile outside first..last: not this scan's)
            if unit_id is not None and first <= unit_id <= last and unit_id not in late:
                late.append(unit_id)

        units = range(first, last + 1)
        with late_units_during(scheduler.transport, on_late):
            found = await scan_modbus(
                scheduler.attempt,
                scheduler.config.name,
                units,
                profile,
                on_problem=on_problem,
                linger_s=scheduler.config.timeout_s,  # the last unit's late answer: heard as the others' are
                heard=serial_numbers_heard(scheduler.transport),
                owners=owners,
            )
        problem_units = {p["unit_id"] for p in problems}
        configured, found = modbus_configured(
            scheduler.config.name, scheduler.config.meters, owners, found, units, problem_units, late
        )
        reply: dict[str, Any] = {
            "found": [f.unit_id for f in found],
            "problems": problems,
            "snippet": snippet(scheduler.config.name, found),
        }
        # before, no serial number: a technician pinning meters, or looking for a swap, read labels
        if serials := [_serial_number_entry(f) for f in found if f.serial_number is not None]:
            reply["serial_numbers"] = serials
        # before, a configured meter's unit answering with a serial number no meter has (exchanged?) or
        # not answering was not said
        if configured:
            reply["configured_meters"] = [a.to_json() for a in configured]
        # before, a unit answering after the bus's timeout_s was absent from the reply, as an empty
        # address is, while the command line's scan said it with the cure (gateway.scan.LateUnits)
        found_units = {f.unit_id for f in found}
        if late_not_found := [u for u in late if u not in found_units]:
            reply["late"] = late_not_found
        return reply


def _serial_number_entry(found: Found) -> dict[str, Any]:
    """``{"unit_id": 6, "serial_number": "40000005"}``, with ``meter_id``, ``meter_unit_id`` and
    ``pinned`` when a meter of the bus is known by that serial number (gateway.scan.SerialOwner)."""
    serial_number = None if found.serial_number == NOT_SET else found.serial_number  # (null: never set)
    entry: dict[str, Any] = {"unit_id": found.unit_id, "serial_number": serial_number}
    if found.owner is not None:
        entry.update(meter_id=found.owner.meter_id, meter_unit_id=found.owner.unit_id, pinned=found.owner.pinned)
    return entry
