"""ALERTS.json: the alerts ``aquami detect`` found, as a JSON array of :meth:`Alert.to_json` objects."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from aquami import atomic_write
from collector.detection.alerts import Alert


def write_alerts_json(alerts: Sequence[Alert], path: Path) -> None:
    """All or nothing: a write that fails leaves the previous file as it was (see :mod:`aquami.atomic_write`)."""
    atomic_write.write_text(path, json.dumps([a.to_json() for a in alerts], indent=1) + "\n")
