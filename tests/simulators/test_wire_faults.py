"""Wire faults as data: which rule fires, what it does to a reply, and the log it leaves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from simulators.rig.faults import LivePlan
from simulators.wire_faults import PRESENT_KINDS, WireFault, WireFaultKind, WireFaultPlan

T = datetime(2026, 5, 1, 12, tzinfo=UTC)
REPLY = bytes(range(1, 22))


def test_rules_match_by_address_and_window():
    plan = WireFaultPlan([WireFault(WireFaultKind.ABSENT, address=3, start=T, end=T + timedelta(minutes=10))])
    assert plan.apply(REPLY, 3, T - timedelta(seconds=1)).reply == REPLY
    assert plan.apply(REPLY, 3, T).reply is None
    assert plan.apply(REPLY, 4, T + timedelta(minutes=5)).reply == REPLY
    assert plan.apply(REPLY, 3, T + timedelta(minutes=10)).reply == REPLY  # back again
    assert [(a.address, a.kind) for a in plan.log] == [(3, WireFaultKind.ABSENT)]


def test_limit_and_probability_are_reproducible():
    rules = [WireFault(WireFaultKind.NO_REPLY, probability=0.3), WireFault(WireFaultKind.SLOW, limit=2, delay_s=0.2)]
    outcomes = []
    for _ in range(2):
        plan = WireFaultPlan(rules, seed=9)
        outcomes.append([plan.apply(REPLY, 1, T) for _ in range(200)])
    assert outcomes[0] == outcomes[1]
    lost = sum(o.reply is None for o in outcomes[0])
    assert 30 < lost < 90
    slow = [o for o in outcomes[0] if WireFaultKind.SLOW in o.applied]
    assert len(slow) == 2 and all(o.delay_s == 0.2 for o in slow)


def test_corruptions():
    plan = WireFaultPlan(
        [
            WireFault(WireFaultKind.BAD_CHECKSUM, address=1),
            WireFault(WireFaultKind.TRUNCATED, address=2),
            WireFault(WireFaultKind.GARBLED, address=3, flips=3),
        ],
        seed=1,
    )
    bad = plan.apply(REPLY, 1, T, corrupt_checksum=lambda f: f[:-2] + b"\x00\x00").reply
    assert bad == REPLY[:-2] + b"\x00\x00"
    cut = plan.apply(REPLY, 2, T).reply
    assert cut is not None and 1 <= len(cut) < len(REPLY) and REPLY.startswith(cut)
    noisy = plan.apply(REPLY, 3, T).reply
    assert noisy is not None and len(noisy) == len(REPLY)
    flipped = sum(bin(a ^ b).count("1") for a, b in zip(noisy, REPLY, strict=True))
    assert flipped == 3


def test_rules_round_trip_through_json():
    rule = WireFault(WireFaultKind.SLOW, address=7, probability=0.5, start=T, limit=3, delay_s=1.5)
    assert WireFault.from_json(rule.to_json()) == rule
    plan = WireFaultPlan.from_json([{"kind": "no_reply", "address": 2}])
    assert plan.apply(REPLY, 2, T).reply is None


def test_absence_asked_on_its_own_then_the_other_kinds_applied():
    """A bus whose absent devices must not hear a request asks :meth:`absent` first, then applies the rest."""
    rules = [WireFault(WireFaultKind.ABSENT, address=3, limit=1), WireFault(WireFaultKind.SLOW, address=3, delay_s=0.2)]
    live = LivePlan(seed=2)  # the rig's: rules come and go
    for rule in rules:
        live.add(rule)
    for plan in (WireFaultPlan(rules, seed=2), live):
        assert [plan.absent(3, T), plan.absent(3, T), plan.absent(4, T)] == [True, False, False]
        outcome = plan.apply(REPLY, 3, T, kinds=PRESENT_KINDS)
        assert (outcome.reply, outcome.delay_s) == (REPLY, 0.2)
        assert [(a.address, a.kind) for a in plan.log] == [(3, WireFaultKind.ABSENT), (3, WireFaultKind.SLOW)]
