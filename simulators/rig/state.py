"""What a rig remembers across a restart: every fault it has applied, when it began and when it was cleared.

The meters' water is a pure function of time, the seed, the installation date and the faults, so a
restarted rig reads on from where it was only if it applies the same faults from the same instants.
The state file keeps one record per fault (from the config or the endpoint): its meter, its options
as parsed, the instant it was injected and the instant it was cleared (or none; one over by itself at
its ``duration_s``'s end before its clear: that end, as it ended then, not the clear's time). At
start-up the rig replays them all; a meter fault's water stays on the register long after the fault
has ended. One over by itself and not cleared is known as such, whatever its kind, for its clear to
answer it as over.

The file is JSON, rewritten whole (to a temporary file, then renamed) after every inject and clear,
so a rig killed at any moment leaves either the old or the new file, never half of one. It belongs to
one world: a file written for another seed, installation date or meter step (``[rig] step_s``: the
water is drawn step by step) is refused, not applied to other water. A file with no ``step_s`` was
written before the rig had one: at 60 s, the only step it had.

It also keeps each mode 7 radio meter's AFL message counter reserved (``message_counters``, meter id
to counter): the meter sends no counter above it before a higher one is written, and a restarted
rig's meter counts on from it, so a gateway, which refuses a counter that does not rise
(gateway.wmbus_replay), keeps reading a meter sending more often than once a second. A file with no
``message_counters`` was written before the rig kept them: none reserved.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aquami import atomic_write
from simulators.ground_truth import iso_utc, parse_iso_utc
from simulators.rig.faults import FaultSpec, parse_fault

FORMAT = 1
#: The meters' step of a state file that does not say it: written before ``[rig] step_s``, at the only step then.
STEP_S_BEFORE = 60


class RigStateError(ValueError):
    """The state file cannot be used; the message names the file and what is wrong with it."""


@dataclass
class FaultRecord:
    """One fault the rig has applied. ``config_index`` is its place in the meter's ``faults`` (None: the endpoint's)."""

    fault_id: int
    meter_id: str
    spec: FaultSpec
    since: datetime  # when it was injected (before a meter fault's move to the next step)
    cleared: datetime | None = None
    config_index: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.fault_id,
            "meter": self.meter_id,
            "config_index": self.config_index,
            "since": iso_utc(self.since),
            "cleared": None if self.cleared is None else iso_utc(self.cleared),
            "spec": asdict(self.spec),
        }


def state_path_for(config: Path) -> Path:
    """Where a rig run from ``config`` keeps its state unless told: beside it, ``rig.toml`` → ``rig.state.json``."""
    return config.with_suffix(".state.json")


def save_state(
    path: Path,
    seed: int,
    installed: datetime,
    records: list[FaultRecord],
    step_s: int,
    message_counters: dict[str, int] | None = None,
) -> None:
    document = {
        "format": FORMAT,
        "seed": seed,
        "installed": iso_utc(installed),
        "step_s": step_s,
        "faults": [r.to_json() for r in sorted(records, key=lambda r: r.fault_id)],
        "message_counters": dict(sorted((message_counters or {}).items())),
    }
    atomic_write.write_text(path, json.dumps(document, indent=1) + "\n")


def load_state(
    path: Path, seed: int, installed: datetime, meter_kinds: dict[str, str], step_s: int
) -> list[FaultRecord]:
    """The records in ``path`` (none if there is no file yet); ``meter_kinds`` maps meter id to kind,
    ``step_s`` is the rig's meter step (``[rig] step_s``).

    A record of a meter no longer on the rig is kept as it is (the rig writes it back untouched): the
    meter may come back, and its history with it.
    """
    return load_state_and_counters(path, seed, installed, meter_kinds, step_s)[0]


def load_state_and_counters(
    path: Path, seed: int, installed: datetime, meter_kinds: dict[str, str], step_s: int
) -> tuple[list[FaultRecord], dict[str, int]]:
    """:func:`load_state`'s records, and the message counters reserved per meter id (those of meters
    no longer on the rig kept too)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], {}
    except OSError as error:
        raise RigStateError(f"{path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError:  # the rig writes UTF-8 JSON: this is some other file, or a damaged one
        raise RigStateError(f"{path}: not a rig state file: not UTF-8") from None
    try:
        document = json.loads(text)
        if document.get("format") != FORMAT:
            raise RigStateError(f"{path}: format {document.get('format')!r}, expected {FORMAT}")
        if document["seed"] != seed or parse_iso_utc(document["installed"]) != installed:
            raise RigStateError(
                f"{path}: written for seed {document['seed']} and meters installed {document['installed']}, "
                f"but the rig has seed {seed} and {iso_utc(installed)}: its faults belong to other water. "
                "Move the file away to start afresh, or set seed and installed back"
            )
        written_step_s = document.get("step_s", STEP_S_BEFORE)
        if written_step_s != step_s:
            raise RigStateError(
                f"{path}: written for meters stepping every {written_step_s} s, but the rig's step_s is {step_s}: "
                "its faults belong to other water. Move the file away to start afresh, or set step_s back"
            )
        records = [_record(item, meter_kinds) for item in document["faults"]]
        return records, _counters(document.get("message_counters", {}))
    except RigStateError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as error:  # (a time past year 9999 in UTC)
        raise RigStateError(f"{path}: not a rig state file: {error}") from None


def _counters(items: dict[str, Any]) -> dict[str, int]:
    counters = {}
    for meter_id, counter in items.items():
        if isinstance(counter, bool) or not isinstance(counter, int) or not 0 <= counter < 1 << 32:
            raise ValueError(f"message counter of {meter_id}: {counter!r}, not a 32-bit count")
        counters[str(meter_id)] = counter
    return counters


def _record(item: dict[str, Any], meter_kinds: dict[str, str]) -> FaultRecord:
    meter_id = item["meter"]
    spec_json = item["spec"]
    kind = meter_kinds.get(meter_id)
    try:
        # a meter no longer on the rig: its spec as written (it is not applied, only kept)
        spec = FaultSpec(**spec_json) if kind is None else parse_fault(spec_json, kind, only_its_options=False)
    except ValueError as error:
        raise ValueError(f"fault {item['id']} of {meter_id}: {error}") from None
    index = item["config_index"]
    if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
        raise ValueError(f"fault {item['id']}: config_index {index!r}")
    cleared = item["cleared"]
    return FaultRecord(
        fault_id=int(item["id"]),
        meter_id=str(meter_id),
        spec=spec,
        since=parse_iso_utc(item["since"]),
        cleared=None if cleared is None else parse_iso_utc(cleared),
        config_index=index,
    )
