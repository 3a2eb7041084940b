"""paho's own log lines, passed to the ``paho`` logger, but for the one it says at every dropped
connection, which goes into the drop's own words instead.

When a connection ends under it (a RST from a NAT, a modem or the broker; a socket timeout), paho
logs ``failed to receive on socket: [Errno 104] Connection reset by peer`` at ERROR, then tells its
``on_disconnect`` only ``Unspecified error``. The service then said ``connection lost: Unspecified
error`` (its outage, :class:`aquami.outage.Outage`: once, then every 5 minutes) while paho said the
real reason at every drop: 360 ERROR lines an hour for a link dropped every 10 s, each paging an
operator alerting on errors for what the outage already said.

What is per-drop noise, and only that, is said at DEBUG and kept for the disconnect callback
(:meth:`PahoLog.take_drop`): paho's lines for an :class:`OSError` from the socket (``failed to
receive on socket: …``, said for a failed send too, and ``timeout on socket: …``), each followed at
once, on the same thread, by the client's ``on_disconnect``. It is demoted only while the client has
an ``on_disconnect`` to say the drop; a client closed without one keeps paho's ERROR. Every other
line paho says at ERROR means something else and stays ERROR: an exception in a callback
(``Caught exception in on_message: …``, a bug), a packet it cannot read (``Error: Unrecognised
command …``), a loop run on a client with no connection (``Client is not connected. …``). A paho
release that words the per-drop lines otherwise has them pass at ERROR again, not hidden.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import paho.mqtt.client as mqtt

#: paho's format strings (paho-mqtt 2.x, ``Client._packet_read`` and ``_packet_write``) for a
#: connection ended under it: each argument is the socket's :class:`OSError`
PER_DROP_FORMATS = frozenset({"failed to receive on socket: %s", "timeout on socket: %s"})

#: what paho tells ``on_disconnect`` for a connection lost (``MQTT_ERR_CONN_LOST``), whatever ended it
_CONN_LOST = "Unspecified error"


class PahoLog(logging.LoggerAdapter[logging.Logger]):
    """The ``paho`` logger as one client logs into it (:func:`pass_paho_log`). paho calls only
    :meth:`log`, with its format and arguments: formatted only if the level is logged, as before."""

    def __init__(self, client: mqtt.Client, logger: logging.Logger) -> None:
        super().__init__(logger, {})
        self._client = client
        self._drop: str | None = None

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level >= logging.ERROR and msg in PER_DROP_FORMATS and self._client.on_disconnect is not None:
            self._drop = one_error(args[0]) if args else None
            level = logging.DEBUG
        super().log(level, msg, *args, **kwargs)

    def take_drop(self) -> str | None:
        """The socket's error paho said of the connection's end since the last call, if any."""
        drop, self._drop = self._drop, None
        return drop


def one_error(error: object) -> str:
    """A socket's error as said: ``[Errno 104] Connection reset by peer``; ``timed out``."""
    return str(error) or type(error).__name__


def pass_paho_log(client: mqtt.Client, logger: logging.Logger | None = None) -> PahoLog:
    """Let ``client``'s log lines through to ``logger`` (``paho``), a dropped connection's at DEBUG
    (see the module's words), kept for :func:`lost_because`."""
    lines = PahoLog(client, logger or logging.getLogger("paho"))
    client.enable_logger(cast(logging.Logger, lines))  # paho calls its logger's log() only
    return lines


def lost_because(reason: object, client: mqtt.Client) -> str:
    """Why ``client``'s connection was lost, for its ``on_disconnect``'s ``reason``: the socket's
    error paho logged (``[Errno 104] Connection reset by peer``, :func:`pass_paho_log`) where paho
    says only ``Unspecified error``; both where it said something else too; ``reason`` alone where
    no socket error came (a connection closed by the broker without a word, a DISCONNECT with its
    reason)."""
    lines: object = client.logger
    drop = lines.take_drop() if isinstance(lines, PahoLog) else None
    said = str(reason)
    if drop is None:
        return said
    return drop if said == _CONN_LOST else f"{said}; {drop}"
