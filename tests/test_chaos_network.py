"""Chaos with dead links and overlapping faults: every reading still stored exactly once.

The plant of :mod:`tests.test_chaos` (simulated meters → ``aquami gateway run`` → Mosquitto →
``aquami collector run`` → TimescaleDB), with a :class:`tests.tcp_cut_proxy.CutProxy` on each of
the three links: gateway → broker, collector → broker, collector → PostgreSQL. Over ~20 s a seeded
schedule starts faults that may overlap: each fault holds only what it touches (a process, a link),
so the broker can be killed while the collector's link is dead, or the gateway's link cut while
the collector is frozen. Faults:

* the process faults of :mod:`tests.test_chaos` (SIGKILL and restart, SIGSTOP/SIGCONT). A broker
  kill freezes the gateway for two autosaves first, and holds the gateway's link as well (a
  PUBLISH held in a black hole and let through after the save would be acknowledged and lost in
  the documented last second, which is not what this test looks for);
* ``drop LINK``: every open connection closed (RST or FIN, the seed says), a router that forgot it;
* ``hole LINK``: a few seconds in which nothing crosses (new connections accepted and held), then
  the held connections go on: a link back before either end gave up;
* ``half-open LINK``: the same, but the held connections never come back, at either end: a NAT or
  modem that returned with an empty table. Only a keepalive finds that out: the gateway's MQTT
  keepalive (``keepalive_s``, set to its minimum, 5 s, here), the collector's (``--mqtt-keepalive``,
  left at its default, 30 s) and the database writer's cut-off (twice its 30 s statement timeout) for the last two.

After every link fault the test measures how long, from the link's return, until the process
made a new connection across it (when it needed one) and says so in its output (``-s``); past a
bound (twice the keepalive and the longest reconnection wait, with room for a loaded machine and
for overlapping faults) it fails: a process that never recovers from a dead link.

It found two defects of the collector's writer, each now reproduced on its own: seed 2 failed that
bound, a database connection gone silent during its setup holding the writer for ever
(``tests/collector/test_db_connection_setup_hang.py``); seed 12 the invariant (3,971 readings not
stored), a transaction cut off before its COMMIT keeping its rows locked on the server, so that
every retry timed out on them (``tests/collector/test_db_zombie_transaction.py``). Writing it
showed a third, in the gateway, which the invariants do not see: a dead link took it off MQTT 5
(``tests/gateway/test_dead_link.py``).

CI runs one seed (23, ~35 s) without the two slow half-open faults (collector's links: 30-60 s each);
``AQUAMI_CHAOS_NET_SEEDS=1,2,3`` runs those seeds with every fault (minutes each, to hunt locally).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.services import MosquittoBroker
from tests.tcp_cut_proxy import CutProxy
from tests.test_chaos import CHAOS_S, Fault, Plant, inflict, run_chaos, shipped_broker

pytestmark = pytest.mark.services
GATEWAY_KEEPALIVE_S = 5
LINKS = ("gateway-link", "collector-link", "database-link")
PROCESS_FAULTS = ("kill gateway", "kill broker", "kill collector", "pause gateway", "pause broker", "pause collector")
NETWORK_FAULTS = tuple(f"{how} {link}" for how in ("drop", "hole", "half-open") for link in LINKS)
SLOW_FAULTS = ("half-open collector-link", "half-open database-link")
#: how long after its link's return each process may take to connect again, at most (see the docstring)
RECOVERY_BOUND_S = {
    "gateway-link": 2 * GATEWAY_KEEPALIVE_S + 15,
    "collector-link": 2 * 30 + 45,
    # the writer connects again only when it has something to write: after the collector's own link
    # came back, when a fault overlapping it left that half-open too (60 s), then the cut-off (60 s)
    "database-link": 2 * 30 + 2 * 30 + 30,
}
_LOCAL = os.environ.get("AQUAMI_CHAOS_NET_SEEDS")
CASES = [(int(s), True) for s in _LOCAL.split(",")] if _LOCAL else [(23, False)]


@dataclass(frozen=True)
class Overlapping:
    at_s: float  # from the start of the schedule
    fault: Fault

    @property
    def holds(self) -> tuple[str, ...]:
        """What the fault needs to itself, sorted (locks taken in one order: no deadlock)."""
        if self.fault.kind == "kill broker":
            return ("broker", "gateway", "gateway-link")
        return (self.fault.kind.split()[1],)


def overlapping_schedule(seed: int, slow: bool) -> list[Overlapping]:
    """Faults starting every 0.3-2 s over ``CHAOS_S``, each lasting 0.2-4 s: several at once. With
    ``slow``, a link stays dead up to 12 s, past the gateway's two keepalives: its session given up,
    what the old connection held may reach the broker after the new one's."""
    rng = random.Random(seed)
    kinds = PROCESS_FAULTS + tuple(k for k in NETWORK_FAULTS if slow or k not in SLOW_FAULTS)
    faults, at = [], 0.0
    while at < CHAOS_S:
        at += round(rng.uniform(0.3, 2.0), 2)
        kind, down_s = rng.choice(kinds), rng.uniform(0.2, 4.0)
        if slow and kind in NETWORK_FAULTS:
            down_s *= 3
        faults.append(Overlapping(at, Fault(0.0, kind, round(down_s, 2))))
    return faults


@dataclass
class Links:
    """The three proxies, by link name."""

    proxies: dict[str, CutProxy]
    recoveries: list[str]

    def inflict(self, fault: Fault, rng: random.Random, log: list[str]) -> None:
        how, link = fault.kind.split()
        proxy = self.proxies[link]
        if how == "drop":
            reset = rng.random() < 0.5
            before = proxy.connections
            dropped = proxy.drop(reset=reset)
            log.append(f"{time.strftime('%H:%M:%S')} drop {link} ({'RST' if reset else 'FIN'}, {dropped} open)")
            if dropped:
                self._await_reconnection(fault.kind, before, time.monotonic())
            return
        log.append(f"{time.strftime('%H:%M:%S')} {fault.kind} for {fault.down_s} s")
        before_hole = proxy.connections
        proxy.black_hole()
        time.sleep(fault.down_s)
        before = proxy.connections
        proxy.restore(stale=how == "half-open")
        if how == "half-open" and before > 0:
            self._await_reconnection(fault.kind, before, time.monotonic())
        elif proxy.connections > before_hole:
            self.recoveries.append(f"{fault.kind}: a new connection during its {fault.down_s} s")

    def _await_reconnection(self, kind: str, before: int, since: float) -> None:
        """Until a connection newer than the ``before``-th crosses the link of ``kind``: how long,
        said; past the bound, the test fails. (A process restarted meanwhile by another fault
        reconnects too, sooner than its keepalive would have: then the time said is shorter.)"""
        link = kind.split()[1]
        proxy, bound = self.proxies[link], RECOVERY_BOUND_S[link]
        while proxy.connections <= before:
            if time.monotonic() - since > bound:
                raise AssertionError(f"nothing reconnected across the {link} within {bound} s of its return")
            time.sleep(0.05)
        self.recoveries.append(f"{kind}: reconnected {time.monotonic() - since:.1f} s after the link's return")


def run_overlapping(plant: Plant, links: Links, faults: list[Overlapping], seed: int) -> list[str]:
    """Each fault on a thread of its own, from its time on, once what it holds is free."""
    locks = {name: threading.Lock() for name in ("gateway", "broker", "collector", *LINKS)}
    inflicted: list[str] = []
    errors: list[BaseException] = []
    start = time.monotonic()

    def run(index: int, item: Overlapping) -> None:
        time.sleep(max(0.0, start + item.at_s - time.monotonic()))
        rng = random.Random(seed * 1000 + index)
        with ExitStack() as held:
            for name in item.holds:
                held.enter_context(locks[name])
            try:
                if item.fault.kind in NETWORK_FAULTS:
                    links.inflict(item.fault, rng, inflicted)
                else:
                    inflict(plant, item.fault, inflicted)
            except BaseException as error:
                errors.append(error)

    threads = [threading.Thread(target=run, args=(i, item), daemon=True) for i, item in enumerate(faults)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    if errors:
        raise AssertionError(f"seed {seed}: {errors[0]}; faults so far {inflicted}") from errors[0]
    assert len(inflicted) == len(faults), inflicted
    return inflicted


@pytest.fixture
def chaos_broker() -> Iterator[MosquittoBroker]:
    with shipped_broker() as broker:
        yield broker


def through(proxy: CutProxy, database_url: str) -> str:
    """``database_url`` by way of ``proxy``."""
    return make_conninfo(database_url, host="127.0.0.1", port=str(proxy.port))


@pytest.mark.parametrize(("seed", "slow"), CASES)
def test_dead_links_and_overlapping_faults_lose_no_reading_and_store_none_twice(
    seed: int, slow: bool, migrated_database_url: str, chaos_broker: MosquittoBroker, tmp_path: Path
) -> None:
    faults = overlapping_schedule(seed, slow)
    database = conninfo_to_dict(migrated_database_url)
    with ExitStack() as stack:
        proxies = {
            "gateway-link": stack.enter_context(CutProxy(chaos_broker.port, name="gateway-link")),
            "collector-link": stack.enter_context(CutProxy(chaos_broker.port, name="collector-link")),
            "database-link": stack.enter_context(
                CutProxy(int(database.get("port") or 5432), str(database.get("host")), name="database-link")
            ),
        }
        links = Links(proxies, [])

        def plant_for(port: int) -> Plant:
            return Plant(
                tmp_path,
                through(proxies["database-link"], migrated_database_url),
                chaos_broker,
                port,
                gateway_mqtt_url=f"mqtt://127.0.0.1:{proxies['gateway-link'].port}",
                collector_mqtt_url=f"mqtt://127.0.0.1:{proxies['collector-link'].port}",
                extra_mqtt=f"keepalive_s = {GATEWAY_KEEPALIVE_S}",
            )

        inflicted = run_chaos(
            seed, migrated_database_url, plant_for, lambda plant: run_overlapping(plant, links, faults, seed)
        )
    print(f"seed {seed}: faults {inflicted}; recoveries: {links.recoveries}")
