"""Which MQTT version the gateway's next CONNECT speaks, and how long it waits for the CONNACK.

With ``protocol = "auto"`` the gateway asks in MQTT 5 and falls back to MQTT 3.1.1 for a broker
that says "unsupported protocol version" (CONNACK 0x84, or 3.1.1's return code 1), or that says
nothing for :data:`CONNACK_TIMEOUT_S` (some 3.1.1 brokers cannot parse MQTT 5 properties and stay
silent). A broker's answer is final; silence is not. A link that accepts TCP and forwards nothing
(a proxy or load balancer in front of a dead broker, a half-open NAT, a modem still attaching) is
as silent to MQTT 5 as such a broker, so after a fallback on silence MQTT 3.1.1 must earn its place:

* a 3.1.1 CONNECT that goes unanswered too (or cannot connect) says the silence was the link's or
  the broker's, not MQTT 5's: the next CONNECT asks in MQTT 5 again, and so on in turn;
* a 3.1.1 CONNECT answered at once shows a working link: the gateway holds that session, sending
  nothing on it, and asks in MQTT 5 once more beside it (the link may have come back just after the
  MQTT 5 CONNECT went into it; :mod:`gateway.mqtt_recheck`). Silent again while the held session
  answers after that wait, the broker is one without MQTT 5: MQTT 3.1.1 on the held session and
  until the gateway restarts, with no more 3 s spent at later reconnections. The held session
  silent too, the link is: both end, and the next CONNECT asks in MQTT 5 (before, the 3.1.1
  session was hung up first, and a link silent again within those 3 s settled 3.1.1);
* a 3.1.1 CONNECT answered as slowly as the MQTT 5 one was not was a slow broker's: the next
  connection asks in MQTT 5 again, waiting as long as for any CONNACK (:data:`CONNACK_WAIT_S`).

The stages are :class:`Stage`'s members, and :class:`VersionChoice` moves between them.

Before, the first fallback on silence was for good: a gateway started behind a silent link spoke
3.1.1 until restarted, and in 3.1.1 a publish the broker's ACL refuses is acknowledged (PUBACK),
so the spool deleted readings the broker had dropped. A broker that has accepted an MQTT 5
CONNECT in this run is not taken for one without it at all (``tests/gateway/test_dead_link.py``).
"""

from __future__ import annotations

import logging
from enum import Enum, auto
from typing import Any, Literal

Version = Literal["5", "3.1.1"]

#: an MQTT 5 CONNECT unanswered this long (protocol "auto", no MQTT 5 answer yet): try 3.1.1
CONNACK_TIMEOUT_S = 3.0
#: any other CONNECT unanswered this long (or a keepalive period, if shorter) is given up, and the
#: next one goes after the reconnection wait. A CONNACK is one round trip after the TCP and TLS
#: handshakes (done before the CONNECT goes out), plus the broker's check of the credentials: a
#: round trip of up to 2 s on a GPRS or satellite link, TCP's resend of a lost CONNECT or CONNACK
#: (1 s, then 2 s), and an authentication backend's few seconds fit well within 10 s; a broker
#: slower than that to accept a connection is not serving it.
CONNACK_WAIT_S = 10.0
#: CONNACK reason 0x84; paho maps a 3.1.1 broker's return code 1 to it
UNSUPPORTED_PROTOCOL = 132


def connack_code(reason: Any) -> int | None:
    """A CONNACK's reason (paho's ``ReasonCode``) as its number; None: no CONNACK came."""
    return None if reason is None else int(getattr(reason, "value", 0))


class Stage(Enum):
    """Where the choice stands: the kind of CONNECT that goes (or went) out next, and so its version."""

    FIRST = auto()  # MQTT 5, nothing heard yet in this run: silence tries 3.1.1
    AGAIN = auto()  # MQTT 5 again, after a fallback that did not earn its place: silence tries 3.1.1
    MQTT5 = auto()  # a broker accepted MQTT 5 in this run (or configured): MQTT 5 whatever the silences
    FELL_BACK = auto()  # 3.1.1 after an unanswered MQTT 5 CONNECT, not answered yet
    HOLD = auto()  # that 3.1.1 CONNECT was answered at once: held unused, MQTT 5 asked beside it (:meth:`rechecked`)
    SLOW = auto()  # that 3.1.1 CONNECT was answered slowly: a slow broker's, kept; then MQTT 5 again
    MQTT311 = auto()  # 3.1.1 for good: the broker said 0x84, or was silent on a working link (or configured)

    @property
    def version(self) -> Version:
        return "3.1.1" if self in (Stage.FELL_BACK, Stage.HOLD, Stage.SLOW, Stage.MQTT311) else "5"


class VersionChoice:
    """The MQTT version of the next CONNECT, told how each one went (:meth:`answered`,
    :meth:`rechecked`, :meth:`ended`)."""

    def __init__(self, configured: Literal["auto", "5", "3.1.1"], url: str, log: logging.Logger) -> None:
        self.configured = configured
        self.url = url
        self._log = log
        self.stage = {"auto": Stage.FIRST, "5": Stage.MQTT5, "3.1.1": Stage.MQTT311}[configured]
        self._slow = False  # a 3.1.1 CONNACK after a fallback took over CONNACK_TIMEOUT_S: MQTT 5 waits longer
        self._quiet = False  # the silent spell's fallback and retry were said: the next at DEBUG

    @property
    def auto(self) -> bool:
        return self.configured == "auto"

    @property
    def version(self) -> Version:
        """The version of the session under way, then (after :meth:`ended`) of the next CONNECT."""
        return self.stage.version

    def patience(self, keepalive_s: float, wait_s: float = CONNACK_WAIT_S) -> float:
        """How long this CONNECT waits for its CONNACK: :data:`CONNACK_TIMEOUT_S` for an MQTT 5 one
        that may fall back (in :attr:`Stage.HOLD`, the one asked beside the held session), and
        ``wait_s`` (``[mqtt] connack_wait_s``, :data:`CONNACK_WAIT_S` by default; or the keepalive, if
        shorter) for any other. Before, any other waited
        a keepalive period (30 s by default): a CONNECT that went into a silent link just before it
        came back held delivery up for that long."""
        may_fall_back = self.stage in (Stage.FIRST, Stage.AGAIN, Stage.HOLD) and not self._slow
        return CONNACK_TIMEOUT_S if may_fall_back else min(keepalive_s, wait_s)

    def answered(self, waited_s: float) -> bool:
        """The broker accepted this CONNECT ``waited_s`` after it went out. False: send nothing on this
        session but hold it open, ask in MQTT 5 on a second connection beside it, and say how that
        went (:meth:`rechecked`)."""
        self._quiet = False
        if self.version == "5":
            if self.stage is Stage.AGAIN:
                self._log.info("%s answered in MQTT 5: speaking MQTT 5 from now on", self.url)
            self.stage = Stage.MQTT5
            return True
        if self.stage is not Stage.FELL_BACK:
            return True
        if waited_s > CONNACK_TIMEOUT_S:
            self._slow, self.stage = True, Stage.SLOW
            return True
        self.stage = Stage.HOLD
        self._log.info(
            "%s answered in MQTT 3.1.1 at once: asking in MQTT 5 once more, beside that session (held unused), "
            "now that the link carries an answer (the MQTT 5 CONNECT's silence may have been the link's)",
            self.url,
        )
        return False

    def rechecked(self, connack: int | None, timed_out: bool, held_answered: bool) -> Version | None:
        """How the MQTT 5 CONNECT asked beside the held 3.1.1 session went: its CONNACK's reason code
        (None: none came), whether that was for want of one within :meth:`patience`, and whether the
        held session answered a request sent once that wait was over. The session to go on with:
        "5" the new one, "3.1.1" the held one, None neither (both end; the next CONNECT, in MQTT 5,
        after the reconnection wait).

        MQTT 5 unanswered is the broker's doing only if the held session answered after it: the link
        carried answers on both sides of the MQTT 5 CONNECT's wait, on a connection opened before it.
        Before, the MQTT 5 CONNECT was asked after the 3.1.1 session was hung up, and its silence
        alone settled 3.1.1 until the gateway restarted: a link that went silent again within those
        3 s (flapping) left a broker with MQTT 5 spoken to in 3.1.1, its ACL's refusals acknowledged
        and the refused readings deleted from the spool."""
        if connack is not None and connack < 0x80:
            self._log.info("%s answered in MQTT 5: speaking MQTT 5 from now on", self.url)
            self.stage = Stage.MQTT5
            return "5"
        if connack == UNSUPPORTED_PROTOCOL:
            self._log.warning("%s does not speak MQTT 5 (it said so); falling back to MQTT 3.1.1", self.url)
            self.stage = Stage.MQTT311
            return "3.1.1"
        self.stage = Stage.AGAIN
        if connack is not None or not timed_out:
            return None  # refused in MQTT 5, or hung up on: an answer of sorts, not silence
        if not held_answered:
            self._say(
                "%s went silent while asked in MQTT 5 once more (its MQTT 3.1.1 session too): the link is "
                "silent, which says nothing of MQTT 5; asking in MQTT 5 again",
                logging.INFO,
            )
            self._quiet = True
            return None
        self.stage = Stage.MQTT311
        self._log.warning(
            "%s answers in MQTT 3.1.1 but not in MQTT 5: speaking MQTT 3.1.1 until the gateway restarts", self.url
        )
        return "3.1.1"

    def ended(self, connack: int | None, timed_out: bool) -> bool:
        """A session ended: its CONNACK's reason code (None: none came), and whether that was for want
        of one within :meth:`patience`. True: connect again at once, in :attr:`version`; False: after
        the reconnection wait."""
        if not self.auto:
            return False
        stage = self.stage
        if stage is Stage.HOLD:  # ended before MQTT 5 could be asked beside it (stopped, or failed)
            self.stage = Stage.AGAIN
            return False
        if stage.version == "5":
            return self._after_mqtt5(connack, timed_out)
        if stage is Stage.FELL_BACK and connack is None:
            self.stage = Stage.AGAIN
            self._say(
                "%s did not answer in MQTT 3.1.1 either: the link or the broker is silent, which says nothing of "
                "MQTT 5; asking in MQTT 5 again",
                logging.INFO,
            )
            self._quiet = True
        elif stage is Stage.SLOW or (self._slow and stage is Stage.FELL_BACK):
            self._log.info("%s was slow, not without MQTT 5: asking in MQTT 5 again", self.url)
            self.stage = Stage.AGAIN
        return False

    def _after_mqtt5(self, connack: int | None, timed_out: bool) -> bool:
        if connack == UNSUPPORTED_PROTOCOL:
            self._log.warning("%s does not speak MQTT 5 (it said so); falling back to MQTT 3.1.1", self.url)
            self.stage = Stage.MQTT311
            return True
        if connack is not None or not timed_out or self.stage is Stage.MQTT5:
            return False  # a hang-up, a refusal, or a dead link under a broker known to speak MQTT 5
        self.stage = Stage.FELL_BACK
        self._say(
            "%s does not speak MQTT 5, or the link to it is silent (no CONNACK in %g s): trying MQTT 3.1.1",
            logging.WARNING,
            CONNACK_TIMEOUT_S,
        )
        return True

    def _say(self, message: str, level: int, *args: object) -> None:
        """Said once a silent spell (until a CONNACK), then at DEBUG: the fallback and the retry take
        turns for as long as the link stays silent, and the broker's outage is said anyway."""
        self._log.log(logging.DEBUG if self._quiet else level, message, self.url, *args)
