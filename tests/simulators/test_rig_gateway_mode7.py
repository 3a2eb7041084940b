"""The example rig's mode 7 radio meter (W000002) read end to end: rig, its gateway file, a gateway,
Mosquitto, as a technician goes (tests/simulators/test_rig_gateway_config.py). Before, the rig had no
mode 7 meter: ``security_mode`` was an unknown key of a rig file.

A gateway given a wrong key for the meter publishes nothing of it (its mode 5 neighbour is read),
and says so naming the meter; with the key of the rig's file, its readings are the rig's register.
"""

from __future__ import annotations

import re
from pathlib import Path

from simulators.rig.client import meters as rig_meters
from tests.gateway.helpers import Subscriber
from tests.services import MosquittoBroker
from tests.simulators.test_rig_gateway_config import _rig_file, _running, _wait_for

RIGHT_KEY = 'key = "F0E1D2C3B4A5968778695A4B3C2D1E0F"'
WRONG_KEY = 'key = "F0E1D2C3B4A5968778695A4B3C2D1E0E"'


def _register(control: str, meter: str) -> float:
    (row,) = [r for r in rig_meters(control) if r["meter"] == meter]
    return float(str(row["register"]).removesuffix(" m3"))  # "165.021 m3", as the live table shows it


def test_the_rig_s_mode_7_meter_is_read_by_a_gateway_with_its_key_only(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    rig_file, config = _rig_file(tmp_path), tmp_path / "gw.toml"
    subscriber = Subscriber(mosquitto.url, ["aquami/v1/aquami-rig/reads"], client_id="rig-mode7-test")
    rig_log = tmp_path / "rig.log"

    def readings(meter: str) -> list[dict]:
        return [r for b in subscriber.payloads("/reads") for r in b["readings"] if r["meter_id"] == meter]

    try:
        rig_args = ["simulate", "rig", "--config", str(rig_file), "--no-table"]
        with _running([*rig_args, "--gateway-config", str(config), "--gateway-mqtt", mosquitto.url], rig_log) as rig:
            said = f"gateway config: {config}  (aquami gateway run {config})"
            _wait_for(lambda: said in rig_log.read_text() or rig.poll() is not None, 60, "the rig's gateway config")
            assert rig.poll() is None, rig_log.read_text()
            (control,) = re.findall(r"^faults: (http://\S+)", rig_log.read_text(), re.MULTILINE)
            text = config.read_text()
            assert text.count(RIGHT_KEY) == 1, text  # W000002's, as the rig file gives it

            # A gateway with a wrong key for W000002 (its own folder: its own spool).
            (tmp_path / "wrong").mkdir()
            wrong, wrong_log = tmp_path / "wrong" / "gw.toml", tmp_path / "wrong" / "gateway.log"
            wrong.write_text(text.replace(RIGHT_KEY, WRONG_KEY))
            with _running(["gateway", "run", str(wrong)], wrong_log):
                _wait_for(lambda: len(readings("W000001")) >= 3, 90, "three readings of the mode 5 neighbour")
                _wait_for(lambda: "W000002" in wrong_log.read_text(), 30, "the gateway to name W000002")
            assert readings("W000002") == [], readings("W000002")
            assert "does not decrypt with the key configured for it" in wrong_log.read_text(), wrong_log.read_text()

            gateway_log = tmp_path / "gateway.log"
            low = _register(control, "W000002")
            with _running(["gateway", "run", str(config)], gateway_log):
                _wait_for(lambda: len(readings("W000002")) >= 2, 90, "two readings of W000002")
            high = _register(control, "W000002")
            assert "WARNING" not in gateway_log.read_text(), gateway_log.read_text()
        taken = readings("W000002")
        assert all(r["source"]["bus"] == "wmbus-usb" for r in taken), taken
        # the rig's register, as it was while the gateway listened (it only rises without faults)
        assert all(low <= r["volume_m3"] <= high for r in taken), (low, high, taken)
    finally:
        subscriber.close()
