"""A job card's register above the meter's next read by no more than a register's resolution (VEE's
backwards tolerance, 0.0005 m³: a card written to the litre, rounded up) is no contradiction.

The water from a card to the read next to it was ``forward_difference`` (server migration 0020):
NULL whenever the later register was lower. A card of 1.0014 m³ before a first read of 1.0010 left the
determinant's consumption unknown and made the NEM12 hour it is in null (``N``, value 0), the old
meter's water in that hour with it, though two reads 0.4 L apart count as they stand (collector
migration 0054). Now a card counts as a read does: within the tolerance, the register's difference,
a little below zero; beyond it, unknown, as before (the card or the read is wrong: a person corrects
the card).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from collector.vee.config import VeeConfig
from server.billing import repository, service
from server.billing.nem12 import nem12_file
from tests.server.test_nem12_meter_exchange import DAY, FROM, NEW_RATE, OLD_RATE, TO, _blocks, _exchanged, _hours

registers = st.decimals(min_value=0, max_value=Decimal("99999.9999"), places=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(earlier=registers, drop=st.decimals(min_value=Decimal("-0.0020"), max_value=Decimal("0.0020"), places=4))
def test_a_card_s_water_follows_the_rule_of_two_reads(
    migrated_database_url: str, earlier: Decimal, drop: Decimal
) -> None:
    """forward_difference(card, read) is interval_consumption(read, card) with no step recorded."""
    later = max(Decimal(0), earlier - drop)
    with psycopg.connect(migrated_database_url) as conn:
        card, reads = conn.execute(
            "SELECT forward_difference(%(e)s, %(l)s), interval_consumption(%(l)s, %(e)s, false, NULL)",
            {"e": earlier, "l": later},
        ).fetchone() or (None, None)
    assert card == reads


def test_a_card_and_vee_share_one_tolerance_for_a_register_stepping_back(migrated_database_url: str) -> None:
    """Server migration 0054 writes VEE's backwards_tolerance_m3 as a literal in forward_difference, as
    collector migration 0054 does in interval_consumption (pinned in tests/collector/test_consumption.py):
    if either drifted from VeeConfig's default, a card would count as water what VEE leaves unknown,
    or the other way round."""
    tolerance = Decimal(str(VeeConfig().backwards_tolerance_m3))
    with psycopg.connect(migrated_database_url) as conn:
        within, beyond = conn.execute(
            "SELECT forward_difference(100, 100 - %s), forward_difference(100, 100 - %s)",
            (tolerance, tolerance + Decimal("0.0000001")),
        ).fetchone() or (None, None)
    assert within == -tolerance and beyond is None


def _with_account(url: str, initial: Decimal) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE meter_installations SET initial_register_m3 = %s WHERE meter_id = 'NEW'", (initial,))
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('AX', 'Ex')")
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at) VALUES ('AX', 'SPX', %s)",
            (FROM - timedelta(days=60),),
        )


SWAP = DAY + timedelta(hours=10, minutes=30)


@pytest.mark.parametrize(("above", "known"), [(Decimal("0.0004"), True), (Decimal("0.0500"), False)])
def test_a_card_a_rounding_above_the_first_read_leaves_the_hour_and_the_bill_known(
    migrated_database_url: str, above: Decimal, known: bool
) -> None:
    url = migrated_database_url
    old, new = _exchanged(url, SWAP, cards=True)  # NEW fitted at 10:30, first read 10:35
    card = new[SWAP + timedelta(minutes=5)] + above
    _with_account(url, card)
    with psycopg.connect(url) as conn:
        text = nem12_file(conn, FROM, TO)
    with psycopg.connect(url, row_factory=dict_row) as conn:
        lines = repository.determinant_lines(conn, FROM, TO, "AX", None, None)  # type: ignore[arg-type]
    hours = _hours(_blocks(text))
    hour = SWAP.replace(minute=0)
    flags = [line.split(",") for line in text.splitlines() if line.startswith("400,")]
    run = next(f for f in flags if int(f[1]) <= hour.hour + 1 <= int(f[2]))
    (determinant,) = service.determinants(lines)
    new_line = next(line for line in lines if line["meter_id"] == "NEW")
    if not known:  # a contradiction: the card's water unknown, the hour null, the bill incomplete
        assert run[3] == "N" and hours[hour] == 0
        assert new_line["consumption_m3"] is None and not determinant.complete
        return
    assert run[3] == "S18"  # the installation card's register, as before for a card below the read
    # OLD's 30 minutes (20 read, 10 by its removal card) and NEW's 25 read, less the card's 0.4 L
    assert hours[hour] == OLD_RATE * 30 + NEW_RATE * 25 - above
    assert new_line["consumption_m3"] == new[TO] - card
    assert determinant.consumption_m3 is not None
    # the file's water and the bill's are the registers' differences, to the litre's tenth
    old_line = next(line for line in lines if line["meter_id"] == "OLD")
    assert determinant.consumption_m3 == old_line["consumption_m3"] + new_line["consumption_m3"]
    in_file = old_line["closing_volume_m3"] - old[FROM] + new[TO] - card
    assert sum(hours.values()) == in_file
