"""The writers' own guard on a district's (DMA's) name: the rule (at most ``DMA_MAX_LENGTH``
characters, one line, and why) is :mod:`aquami.districts`, shared with ``aquami detect``'s
METERS.csv reader."""

from __future__ import annotations

from collections.abc import Iterable

from aquami.districts import dma_refusal
from aquami.excerpt import quoted


def check_dmas(named: Iterable[tuple[str, str | None]]) -> None:
    """Raise ValueError for the first (meter id, district) whose district cannot be stored: the
    writers' own guard, so nothing reaches PostgreSQL that its indexes would refuse mid-statement."""
    for meter_id, dma in named:
        refused = dma_refusal(dma) if dma is not None else None
        if refused:
            raise ValueError(f"meter {quoted(meter_id)}: {refused}")
