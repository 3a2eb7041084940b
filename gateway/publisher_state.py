"""What every part of the publisher (:mod:`gateway.publisher`) is given: the run's settings and the
two signals that cross threads. Each part keeps its own state; this is all they share."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from aquami.contracts.reads import reads_topic, status_topic
from aquami.mqtt import MqttEndpoint
from gateway.config import MqttOptions
from gateway.spool import Spool

log = logging.getLogger("gateway.publisher")  # one logger for all the publisher's modules, as operators know it

CommandHandler = Callable[[str, bytes], None]
FatalHandler = Callable[[str], None]


@dataclass(frozen=True, eq=False)
class PublisherState:
    """Fixed for the run; the two events are the only things in it that change."""

    spool: Spool
    gateway_id: str
    endpoint: MqttEndpoint
    options: MqttOptions
    batch_size: int
    window: int
    topic_root: str
    #: set by :meth:`gateway.publisher.Publisher.stop` (any thread) or by a failure
    #: (:class:`gateway.publisher_failure.Failure`): the publisher's thread ends after this turn
    stop: threading.Event = field(default_factory=threading.Event)
    #: set when the broker accepts a session, cleared when it ends (read by ``Publisher.stop``)
    connected: threading.Event = field(default_factory=threading.Event)

    @property
    def status_topic(self) -> str:
        return status_topic(self.gateway_id, self.topic_root)

    @property
    def command_topic(self) -> str:
        return f"{self.topic_root}/{self.gateway_id}/cmd/+"

    @property
    def reads_topic(self) -> str:
        return reads_topic(self.gateway_id, self.topic_root)
