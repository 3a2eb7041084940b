"""``aquami gateway run --verbose``: pymodbus's records the gateway's log filter drops come back, with
every frame, as with ``gateway scan --verbose``.

Before, ``gateway run`` had no ``--verbose``: pymodbus's line for a request left unanswered (``No
response received after 0 retries …``, dropped since the scheduler's warning says it) and the frames
could only be seen by editing the code.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

from aquami.ports import free_port
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.tcp_fault_proxy import ModbusTcpFaultProxy
from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan
from tests.gateway.helpers import config_text, meters
from tests.gateway.test_poll_log import AQUAMI

FAILED = "WM-0002 on tcp-1: failed after 1 attempt, the last: "
NO_ANSWER = " pymodbus.logging: No response received after 0 retries"


async def _gateway_log(tmp_path: Path, *options: str) -> str:
    """``aquami gateway run`` on a Modbus TCP bus of two meters, unit 2's requests lost on the wire,
    until unit 2's failure is said and (by then 2 polls failed) 1.5 s more (or 60 s), then SIGTERM:
    its log."""
    tmp_path.mkdir()
    simulator = ModbusTcpSimulator(meters(2))
    await simulator.start()
    proxy = ModbusTcpFaultProxy(
        "127.0.0.1", simulator.port, WireFaultPlan([WireFault(WireFaultKind.NO_REPLY, address=2)])
    )
    await proxy.start()
    config, log_path = tmp_path / "gw.toml", tmp_path / "gateway.log"
    broker = f"mqtt://127.0.0.1:{free_port()}"  # none there: the readings wait in the spool
    spool = str(tmp_path / "s.sqlite")
    config.write_text(config_text(broker, {"tcp-1": proxy.port}, {"tcp-1": [1, 2]}, spool, timeout_s=0.3, retries=0))
    try:
        with log_path.open("w") as log:
            gateway = subprocess.Popen([AQUAMI, "gateway", "run", str(config), *options], stdout=log, stderr=log)
            try:
                deadline = time.monotonic() + 60
                while FAILED not in log_path.read_text() and gateway.poll() is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)  # (the simulator answers meanwhile, on this loop)
                await asyncio.sleep(1.5)  # more polls of unit 2 fail, said no more
            finally:
                gateway.send_signal(signal.SIGTERM)
                await asyncio.to_thread(gateway.wait, 30)
    finally:
        await proxy.stop()
        await simulator.stop()
    return log_path.read_text()


def test_verbose_brings_back_pymodbus_s_dropped_line_and_the_frames(tmp_path: Path) -> None:
    quiet = asyncio.run(_gateway_log(tmp_path / "quiet"))
    assert quiet.count(FAILED) == 1, quiet  # said once an episode (gateway.episodes)
    assert "pymodbus" not in quiet, quiet  # its line dropped, the frames below the level
    verbose = asyncio.run(_gateway_log(tmp_path / "verbose", "--verbose"))
    assert verbose.count(FAILED) == 1, verbose  # (before: "No such option: --verbose", exit 2)
    lines = verbose.splitlines()
    assert any(NO_ANSWER in line for line in lines), verbose  # the record the filter drops without it
    sent = {line.split("send: ")[1].split()[6] for line in lines if " DEBUG pymodbus.logging: send: " in line}
    assert sent == {"0x1", "0x2"}, verbose  # every request's frame (MBAP header, then the unit id)
    assert any(" INFO gateway." in line for line in lines), verbose  # the gateway's own log, still at INFO
    assert all(" DEBUG pymodbus.logging: " in line for line in lines if " DEBUG " in line), verbose  # only pymodbus's
