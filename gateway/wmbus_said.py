"""What a wireless M-Bus receiver's listeners have said about it and its meters, kept across the
listeners a reload makes anew.

A failure that lasts is said once an episode (:mod:`gateway.episodes`): the receiver failing, a
meter's telegrams not decoding (a wrong or missing key), naming another meter, or a silent meter
while ids close to its own are heard; and some things once per meter (a telegram with its id from
another make or medium, a replay refused, records sent in the clear after the encrypted blocks).
These lived in the listener, which a reload of the gateway's configuration makes anew: with an
operator's automation pushing the file every 10 minutes, each warning was said again every 10
minutes (12 an hour in place of one and a reminder), and an episode's end ("… decode again after
2 h, 1,234 not decoded") told only the time since the last reload. The receiver's memory
(:class:`gateway.wmbus_unconfigured.ReceiverMemory`) now holds them, per receiver device:

- the receiver's own episode (and why it fails, for a silent interval's reason) is kept while the
  receiver is configured;
- a meter's episodes are kept while it is configured on the receiver, whatever else changed in its
  entry: they are the meter's, and their end says what a change did (a key corrected at a reload:
  the next telegram decoded says "decode again after 2 h, 1,234 not decoded"; an id corrected: "heard
  again"), where forgetting them would end them unsaid;
- what was said once per meter is said again once its radio id, manufacturer or key changed (it was
  about what the old entry let in), and forgotten with a meter no longer configured on the receiver
  (configured again later, everything of it is said afresh).

The times are the monotonic clock's; a gateway restart begins afresh (the memory is the running
gateway's, not the spool's).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from aquami.clock import Clock, utc_now
from gateway.config import MeterConfig
from gateway.episodes import REMIND_EVERY_S, Episodes

#: What a meter's entry says of which telegrams are its: the once-per-meter lines are about it.
Identity = tuple[str | None, str | None, bytes | None]


def identity(meter: MeterConfig) -> Identity:
    """``meter``'s radio id, manufacturer and key: the entry's part that decides which telegrams are its."""
    return meter.wmbus_id, meter.manufacturer, meter.key


class ReceiverSayings:
    """The episodes going on, and the meters already warned about once, on one receiver.
    ``monotonic`` and ``clock``: the real ones but in a test."""

    def __init__(
        self,
        remind_every_s: float = REMIND_EVERY_S,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Clock = utc_now,
    ) -> None:
        def episodes() -> Episodes[str]:
            return Episodes(remind_every_s, monotonic, clock)

        self.unusable = episodes()  # the receiver failing (by device)
        self.undecoded = episodes()  # a meter's telegrams not decoding (by meter id), likewise below
        self.naming_another = episodes()  # a meter's telegrams naming another meter
        self.mistyped = episodes()  # a silent meter while ids close to its own are heard
        #: why the receiver cannot be read, while it cannot (a silent interval's reason)
        self.receiver_failing: str | None = None
        self.other_senders_logged: set[str] = set()  # meters whose id came from another make or medium
        self.replay_logged: set[str] = set()  # meters a replay was refused of
        self.clear_records_logged: set[str] = set()  # meters that sent records in the clear after encrypted ones
        self._identities: dict[str, Identity] = {}  # each meter configured: its id, manufacturer and key

    @property
    def _meters_episodes(self) -> tuple[Episodes[str], ...]:
        return self.undecoded, self.naming_another, self.mistyped

    def remind_every(self, seconds: float) -> None:
        """Remind each episode going on every ``seconds`` (the listener's setting)."""
        for episodes in (self.unusable, *self._meters_episodes):
            episodes.remind_every_s = seconds

    def listened_to(self, meters: Iterable[MeterConfig]) -> set[str]:
        """A listener for ``meters`` starts: forget what concerns meters no longer configured, and
        what was said once of a meter whose id, manufacturer or key changed. Returns the meters
        configured anew (gone, or changed), whose other remembered things the caller forgets too."""
        now = {meter.meter_id: identity(meter) for meter in meters}
        for episodes in self._meters_episodes:
            episodes.keep_only(now)
        anew = {m for m, before in self._identities.items() if now.get(m) != before}
        for logged in (self.other_senders_logged, self.replay_logged, self.clear_records_logged):
            logged -= anew
        self._identities = now
        return anew
