"""Durations in the words an operator or a clerk reads, the same in every part's log and answer."""

from __future__ import annotations


def lasted(seconds: float) -> str:
    """A duration as an operator reads it: ``45 s``, ``12 min``, ``2 h 13 min``, ``3 d 4 h``."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes = whole // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
