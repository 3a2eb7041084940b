"""Whether the gateway's secrets can be read by every user of its box.

The configuration file holds the MQTT password (``[mqtt] password``, or in its ``url``) and each
encrypted wireless M-Bus meter's AES-128 key; ``[mqtt] key_file`` is the TLS client certificate's
private key. Any of them readable by every account on the box lets that account publish as the
gateway (its readings are then stored as the meters') or read what its meters send. Before, nothing
said so, and the README's install made the file 0644.

``aquami gateway check`` and ``gateway run`` say it, one line a file, and go on: a gateway that stopped
for it would stop reading its meters, whose readings would be lost. The cure is a chmod (``chmod
0640`` with the file's group the gateway's, or ``0600`` owned by the gateway's user).
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

from gateway.config import GatewayConfig

log = logging.getLogger(__name__)


def _readable_by_every_user(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:  # not there or not to be looked at: the configuration's own checks say it
        return False


def _secrets_held(config: GatewayConfig) -> list[str]:
    """What secrets the configuration file itself holds, as a person names them."""
    held = []
    if config.mqtt.password is not None:
        held.append("the MQTT password")
    keyed = sum(1 for meter in config.meters if meter.key is not None)
    if keyed:
        held.append(f"{keyed} wireless M-Bus meter key{'s' if keyed > 1 else ''}")
    return held


def secrets_open_to_every_user(config_path: Path, config: GatewayConfig) -> list[str]:
    """One sentence for each file holding a secret of the gateway that every user of this machine may
    read: the configuration file, the TLS client key. None where each is closed to them."""
    said = []
    held = _secrets_held(config)
    if held and _readable_by_every_user(config_path):
        mode = stat.S_IMODE(config_path.stat().st_mode)
        said.append(
            f"{config_path} holds {' and '.join(held)} and every user of this machine can read it "
            f"(mode {mode:04o}): chmod 0640 it, its group the gateway's (chgrp aquami)"
        )
    key_file = config.mqtt_options.key_file
    if key_file is not None and _readable_by_every_user(key_file):
        mode = stat.S_IMODE(key_file.stat().st_mode)
        said.append(
            f"{key_file}, the gateway's TLS private key, can be read by every user of this machine "
            f"(mode {mode:04o}): chmod 0640 it, its group the gateway's (chgrp aquami)"
        )
    return said


def log_secrets_open_to_every_user(config_path: Path, config: GatewayConfig) -> None:
    """``gateway run``'s warning at start, one line a file (see :func:`secrets_open_to_every_user`)."""
    for sentence in secrets_open_to_every_user(config_path, config):
        log.warning("%s", sentence)
