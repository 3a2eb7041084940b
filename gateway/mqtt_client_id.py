"""The gateway's MQTT client id, and the one every broker must take, for a broker that refuses it."""

from __future__ import annotations

import hashlib
import re

#: CONNACK reason 0x85; paho maps a 3.1.1 broker's return code 2 to it
CLIENT_ID_NOT_VALID = 133


def client_id(gateway_id: str) -> str:
    """The gateway's MQTT client id, as brokers have known it: ``aquami-gateway-{gateway_id}``."""
    return f"aquami-gateway-{gateway_id}"


#: MQTT 3.1.1 and 5 (3.1.3.1): a broker must take a client id of 1 to 23 letters and digits; it
#: may take more (Mosquitto, EMQX, HiveMQ and AWS IoT Core do), or refuse them
COMPLIANT_CLIENT_ID_MAX = 23


def compliant_client_id(gateway_id: str) -> str:
    """A client id every broker must take, for a broker that refused :func:`client_id` (over 23
    characters from a gateway_id over 8, or its ``-``): "aq", the gateway_id's first 13 letters and
    digits, and 8 hex digits of its SHA-256, so one gateway_id gives one client id at every start
    (two gateways on one gateway_id still take each other's session, as :func:`client_id` does)
    and two that differ only in punctuation ("gw-1", "gw1") do not share one."""
    letters = re.sub(r"[^A-Za-z0-9]", "", gateway_id)[:13]
    return f"aq{letters}{hashlib.sha256(gateway_id.encode()).hexdigest()[:8]}"
