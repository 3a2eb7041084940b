"""What a bus scheduler needs from a transport: one read attempt of one meter, and a reset."""

from __future__ import annotations

from typing import Protocol

from aquami.contracts.reads import Reading
from gateway.config import MeterConfig


class PollError(Exception):
    """A meter did not give a usable answer this time (no answer, garbled, an exception response)."""


class PollRefused(PollError):
    """An answer that came whole and is provably not this meter's to take (another meter's, at its
    primary address): asked again within the same poll, the same meter gives the same answer, so the
    scheduler does not retry it. Each retry was a SND_NKE and a whole read, bus time taken from the
    other meters of a slow line at every poll interval; the next poll asks again. A failure a retry
    can mend (noise, a collision, a late answer to the request before) stays a plain PollError."""


class NoAnswer(PollError):
    """Nothing came back from the unit asked: a scan passes over it without a word (an empty
    address), where a unit that answered unusably is said."""


class LineUnusable(PollError):
    """The bus itself cannot be used now (its serial device will not open, its TCP peer refuses):
    no meter on it answers, whichever is asked. A scan stops on it rather than trying every address."""


class TransactionAborted(PollError):
    """The transaction was aborted from another thread (the bus is being reset or closed)."""


class Transport(Protocol):
    async def read(self, meter: MeterConfig) -> Reading:
        """One attempt, bounded by the bus's timeout; raises :class:`PollError` on any failure."""

    async def reset(self) -> None:
        """After a failure: drop whatever state might be out of step (a TCP connection, a half frame)."""

    async def close(self) -> None: ...

    def interrupt(self) -> None:
        """The bus is closing: cut short long work under way (an M-Bus secondary-address search,
        which holds the bus for minutes), so a stop or reload need not wait for it."""
