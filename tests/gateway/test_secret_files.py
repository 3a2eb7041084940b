"""A gateway's secrets (its MQTT password, its wireless M-Bus meters' keys, its TLS private key) in
a file every user of its box may read are said by ``gateway check`` and ``gateway run``, which go on
(gateway.secret_files). Before, neither said a word, and the README installed the file 0644."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.gateway.helpers import config_text
from tests.services import free_port

AQUAMI = str(Path(sys.executable).with_name("aquami"))


def _config(tmp_path: Path, mode: int, *, url_password: bool = True, key_file: Path | None = None) -> Path:
    """A gateway file (one Modbus TCP bus) with its MQTT password in its URL, at ``mode``."""
    credentials = "gw-1:S3cret@" if url_password else ""
    url = f"mqtt://{credentials}127.0.0.1:{free_port()}"
    text = config_text(url, {"b": free_port()}, {"b": [1]}, str(tmp_path / "gw.sqlite"))
    if key_file is not None:
        certificate = key_file.with_suffix(".pem")
        certificate.write_text("-----BEGIN CERTIFICATE-----\n")
        text = text.replace("[mqtt]\n", f'[mqtt]\ncert_file = "{certificate}"\nkey_file = "{key_file}"\n', 1)
    config = tmp_path / "gw.toml"
    config.write_text(text)
    os.chmod(config, mode)
    return config


def _check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AQUAMI, "gateway", "check", str(config)], capture_output=True, text=True, timeout=60)


def test_check_says_a_password_every_user_can_read_and_passes(tmp_path: Path) -> None:
    config = _config(tmp_path, 0o644)
    done = _check(config)
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        f"warning: {config} holds the MQTT password and every user of this machine can read it (mode 0644): "
        "chmod 0640 it, its group the gateway's (chgrp aquami)"
    ]
    assert "S3cret" not in done.stdout + done.stderr


def test_check_says_nothing_of_a_file_closed_to_other_users_or_holding_no_secret(tmp_path: Path) -> None:
    closed = _check(_config(tmp_path, 0o640))
    assert (closed.returncode, closed.stderr) == (0, "")
    no_secret = _check(_config(tmp_path, 0o644, url_password=False))
    assert (no_secret.returncode, no_secret.stderr) == (0, "")


def test_check_says_a_tls_private_key_every_user_can_read(tmp_path: Path) -> None:
    key = tmp_path / "gw-1.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    os.chmod(key, 0o644)
    done = _check(_config(tmp_path, 0o600, url_password=False, key_file=key))
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        f"warning: {key}, the gateway's TLS private key, can be read by every user of this machine (mode 0644): "
        "chmod 0640 it, its group the gateway's (chgrp aquami)"
    ]


def test_the_example_configuration_s_meter_key_is_said_too(tmp_path: Path) -> None:
    """The shipped example holds a wireless M-Bus meter's AES key (HOUSE-77)."""
    example = Path(__file__).resolve().parents[2] / "gateway" / "examples" / "gateway.toml"
    copy = tmp_path / "gateway.toml"
    copy.write_text(example.read_text())
    os.chmod(copy, 0o604)
    done = _check(copy)
    assert done.returncode == 0
    assert f"warning: {copy} holds 1 wireless M-Bus meter key and every user" in done.stderr


def test_run_logs_it_at_start_and_goes_on_polling(tmp_path: Path) -> None:
    config = _config(tmp_path, 0o644)
    log = tmp_path / "gateway.log"
    with log.open("w") as written:
        gateway = subprocess.Popen([AQUAMI, "gateway", "run", str(config)], stderr=written, text=True)
    try:
        deadline = time.monotonic() + 30
        while "every user of this machine can read it" not in log.read_text() and time.monotonic() < deadline:
            assert gateway.poll() is None, log.read_text()
            time.sleep(0.1)
        said = [line for line in log.read_text().splitlines() if "every user of this machine" in line]
        assert len(said) == 1 and said[0].endswith(
            f"WARNING gateway.secret_files: {config} holds the MQTT password and every user of this machine can "
            "read it (mode 0644): chmod 0640 it, its group the gateway's (chgrp aquami)"
        ), said
        time.sleep(1)
        assert gateway.poll() is None  # it goes on: its meters are still read
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=60)
