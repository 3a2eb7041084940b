"""Leak, burst, reverse-flow, stuck-meter and district (DMA) burst detection over arrays of readings.

The database layer fetches a :class:`SeriesBlock` in bulk (meters × a regular time grid of register
values), calls :func:`run_detection` (or :func:`detect` for the alerts alone), and persists what
:func:`merge_alerts` says changed against the alerts it already stores. Everything here is pure
NumPy over whole arrays: no I/O, no clock.

One module per job: :mod:`.flows` (registers → flows per interval), :mod:`.leak`, :mod:`.burst`,
:mod:`.register` (reverse flow, a still register), :mod:`.stuck` (a still register the DMA balance
shows still drawing water), :mod:`.alarms` (the meters' own alarm bits),
:mod:`.district` (main bursts in a DMA's balance; its parts :mod:`.district_bars`,
:mod:`.district_long`, :mod:`.district_overlap` and :mod:`.district_steps`), :mod:`.engine` (runs them all in chunks),
:mod:`.alerts` and :mod:`.lifecycle` (the alert model and its life), :mod:`.files` (files for
``aquami detect``), :mod:`.scoring` (against ground truth, for tests and benchmarks).
"""

from collector.detection.alerts import Alert, AlertKind, AlertSource, AlertStatus
from collector.detection.balance import DmaBalance
from collector.detection.config import DetectionConfig
from collector.detection.engine import DetectionResult, detect, run_detection
from collector.detection.lifecycle import AlertChanges, dismiss, merge_alerts
from collector.detection.series import SeriesBlock

__all__ = [
    "Alert",
    "AlertChanges",
    "AlertKind",
    "AlertSource",
    "AlertStatus",
    "DetectionConfig",
    "DetectionResult",
    "DmaBalance",
    "SeriesBlock",
    "detect",
    "dismiss",
    "merge_alerts",
    "run_detection",
]
