"""How a person moves an enquiry along: which status may follow which.

- ``open`` (in the queue): worked (``in_progress``), ``escalated``, or ``closed``;
- ``in_progress``: handed back to the queue (``open``), ``escalated``, or ``closed``;
- ``escalated``: taken back to be worked (``in_progress``), or ``closed``;
- ``closed``: reopened as ``open`` or ``in_progress`` (the leak came back, the customer called
  again); escalating it is a second decision, made on the reopened enquiry.

A status is never set to itself (closing a closed enquiry says it is closed already). The triggers
of server migrations 0033 (an alert running again reopens a closed enquiry as ``open``) and 0039 (a
folded alarm's open enquiry closed as a duplicate) make moves within the same graph.
"""

from __future__ import annotations

from collections.abc import Mapping

TRANSITIONS: Mapping[str, frozenset[str]] = {
    "open": frozenset({"in_progress", "escalated", "closed"}),
    "in_progress": frozenset({"open", "escalated", "closed"}),
    "escalated": frozenset({"in_progress", "closed"}),
    "closed": frozenset({"open", "in_progress"}),
}


class TransitionRefused(ValueError):
    """A status change the workflow does not allow (the API answers 409)."""


def check_transition(current: str, new: str) -> None:
    """Raise :class:`TransitionRefused`, saying what may follow, unless ``current`` may become ``new``."""
    if new == current:
        raise TransitionRefused(f"the enquiry is already {current}")
    allowed = TRANSITIONS[current]
    if new not in allowed:
        raise TransitionRefused(f"an enquiry {current} cannot become {new}; it can become {', '.join(sorted(allowed))}")


def update_note(
    current: str, new: str | None, note: str | None, *, refiled: tuple[tuple[str, str, str], ...] = ()
) -> str:
    """The enquiry update's note: the status change, if any, then each other field a person changed
    (``refiled``: its name, what it was, what it is now: priority, category), then the person's words."""
    change = f"status {current} → {new}" if new is not None else None
    fields = tuple(f"{name} {was} → {now}" for name, was, now in refiled)
    return "; ".join(part for part in (change, *fields, note) if part is not None)
