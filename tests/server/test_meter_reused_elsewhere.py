"""A meter number reused at another installation: a refurbished meter re-fitted at another service
point (or back at its first) bills, and exports in NEM12, only the water it measured there.

Before, a line of the new installation without an installation job card opened on the meter's last
read before the period, taken while it was at its earlier service point for another customer: meter M
read 100 -> 150 m³ at SP-A, re-fitted at SP-B reading 10 m³ after its refurbishment, billed SP-B's
account from 150: its consumption unknown (the register's drop across the refurbishment), or, had
the refurbished register read above 150, that difference billed as the new customer's water.
And NEM12 put the interval from SP-A's last read to SP-B's first read in SP-B's hours, and left out
SP-B's installation card whenever the meter had any read before the installation (SP-A's included).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from collector.vee.runner import run_vee
from server.billing import repository, service
from server.billing.nem12 import nem12_file
from tests.server_session import set_as_the_server

DAY0 = datetime(2026, 11, 2, tzinfo=UTC)
DAYS = 6
FROM, TO = DAY0, DAY0 + timedelta(days=DAYS)
SERVICE_POINTS = ("SP-A", "SP-B")


@dataclass(frozen=True)
class Installation:
    """Meter M at a service point from ``installed_at`` to ``removed_at`` (None: still there), its
    reads, and the job cards' registers (None: no card)."""

    service_point: str
    installed_at: datetime
    removed_at: datetime | None
    reads: dict[datetime, Decimal]
    initial: Decimal | None = None
    final: Decimal | None = None


def _store(conn: psycopg.Connection[Any], installations: list[Installation], move: datetime | None = None) -> None:
    """M's installations and reads, each service point with an account whose agreement covers the file;
    with ``move``, SP-B's tenant ACC-SP-B moves out then and ACC-SP-B2 moves in."""
    conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('M', true)")
    for service_point in SERVICE_POINTS:
        account = f"ACC-{service_point}"
        conn.execute("INSERT INTO service_points (service_point_id) VALUES (%s)", (service_point,))
        conn.execute("INSERT INTO accounts (account_id, name) VALUES (%s, %s)", (account, account))
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at, end_at) VALUES (%s, %s, %s, %s)",
            (account, service_point, FROM - timedelta(days=30), move if service_point == "SP-B" else None),
        )
    if move is not None:
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('ACC-SP-B2', 'moved in')")
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at) VALUES ('ACC-SP-B2', 'SP-B', %s)",
            (move,),
        )
    for fitted in installations:
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at, "
            "initial_register_m3, final_register_m3) VALUES (%s, 'M', %s, %s, %s, %s)",
            (fitted.service_point, fitted.installed_at, fitted.removed_at, fitted.initial, fitted.final),
        )
        with conn.cursor() as cur:  # one round trip (a pipeline), each read its own INSERT as before
            cur.executemany("INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('M', %s, %s)", fitted.reads.items())
    conn.execute("SELECT refresh_consumption(%s, %s)", (FROM - timedelta(days=1), TO + timedelta(days=1)))


def _billed(conn: psycopg.Connection[Any], by: str = "service_point_id") -> dict[str, Decimal | None]:
    """Each service point's (``by``: or account's) water in the determinants of [FROM, TO) (None: a
    line's consumption unknown)."""
    lines = repository.determinant_lines(conn, FROM, TO, None, None, None)
    billed: dict[str, Decimal | None] = {}
    for line in lines:
        key, m3 = line[by], line["consumption_m3"]
        before = billed.get(key, Decimal(0))
        billed[key] = None if before is None or m3 is None else before + m3
    return billed


def _exported(conn: psycopg.Connection[Any], account: str | None = None) -> dict[str, Decimal]:
    """Each NMI's (service point's) net water in the NEM12 file of [FROM, TO): its E1 less its B1."""
    exported: dict[str, Decimal] = {}
    nmi, sign = "", Decimal(1)
    for fields in (line.split(",") for line in nem12_file(conn, FROM, TO, account=account).splitlines()):
        if fields[0] == "200":
            nmi, sign = fields[1], Decimal(1) if fields[4] == "E1" else Decimal(-1)
        elif fields[0] == "300":
            exported[nmi] = exported.get(nmi, Decimal(0)) + sign * sum(Decimal(v) for v in fields[2:26])
    return exported


def _hourly(start: datetime, first: Decimal, steps: list[Decimal], offset: timedelta) -> dict[datetime, Decimal]:
    reads, volume = {}, first
    for h, step in enumerate([Decimal(0), *steps]):
        volume += step
        reads[start + offset + timedelta(hours=h)] = volume
    return reads


SP_A_FITTED = DAY0 + timedelta(hours=2)
SP_A_REMOVED = DAY0 + timedelta(days=1, hours=12)
SP_B_FITTED = DAY0 + timedelta(days=2, hours=9, minutes=30)


def _refitted(conn: psycopg.Connection[Any], initial: Decimal | None = None) -> list[Installation]:
    """M at SP-A read 100.000 -> 150.000 m³ hourly, removed without a card; refurbished and re-fitted
    at SP-B at 09:30 (its installation card's register ``initial``, None: no card), read from 10.000 m³
    at 10:00, 0.250 m³ an hour."""
    sp_a = {SP_A_FITTED + timedelta(hours=h): Decimal("100.000") + Decimal("2.000") * h for h in range(26)}
    sp_b = {SP_B_FITTED + timedelta(minutes=30 + 60 * h): Decimal("10.000") + Decimal("0.250") * h for h in range(20)}
    installations = [
        Installation("SP-A", SP_A_FITTED, SP_A_REMOVED, sp_a),
        Installation("SP-B", SP_B_FITTED, None, sp_b, initial),
    ]
    assert max(sp_a.values()) == Decimal("150.000")
    _store(conn, installations)
    return installations


def test_a_meter_refitted_elsewhere_without_a_card_bills_only_the_water_of_its_new_installation(
    migrated_database_url: str,
) -> None:
    with set_as_the_server(psycopg.connect(migrated_database_url, row_factory=dict_row)) as conn:
        _refitted(conn)
        lines = repository.determinant_lines(conn, FROM, TO, "ACC-SP-B", None, None)  # type: ignore[arg-type]
    (line,) = lines
    first_ts = SP_B_FITTED + timedelta(minutes=30)
    # the period opens on SP-B's first read, 30 minutes after the installation: it says how far
    assert (line["opening_ts"], line["opening_volume_m3"]) == (first_ts, Decimal("10.000"))
    assert line["consumption_m3"] == Decimal("0.250") * 19 == line["actual_m3"]
    (determinant,) = service.determinants(lines)
    (shown,) = determinant.lines  # its closing is far from the file's end: SP-B was read for 19 hours
    assert (shown.opening_distance_s, shown.issues) == (1800, ["closing_read_far", "no_read_after_end"])
    # SP-A's account is billed its own water, the register from 100 to 150
    with set_as_the_server(psycopg.connect(migrated_database_url, row_factory=dict_row)) as conn:
        (sp_a,) = repository.determinant_lines(conn, FROM, TO, "ACC-SP-A", None, None)  # type: ignore[arg-type]
    assert sp_a["consumption_m3"] == Decimal("50.000")


def test_a_period_of_a_refitted_meter_opens_on_its_new_installation_s_read(migrated_database_url: str) -> None:
    """A period starting after the re-fit opens on SP-B's last read before it, not SP-A's; a period
    holding the re-fit but no read of SP-B has no opening: nothing to bill yet, not SP-A's register."""
    with set_as_the_server(psycopg.connect(migrated_database_url, row_factory=dict_row)) as conn:
        _refitted(conn)
        later = SP_B_FITTED + timedelta(hours=5)
        (line,) = repository.determinant_lines(conn, later, TO, "ACC-SP-B", None, None)  # type: ignore[arg-type]
        assert line["opening_ts"] == later - timedelta(minutes=30)
        assert line["consumption_m3"] == Decimal("0.250") * 15
        (silent,) = repository.determinant_lines(
            conn,  # type: ignore[arg-type]
            SP_B_FITTED - timedelta(hours=1),
            SP_B_FITTED + timedelta(minutes=20),
            "ACC-SP-B",
            None,
            None,
        )
    assert (silent["opening_ts"], silent["closing_ts"], silent["consumption_m3"]) == (None, None, None)


def test_nem12_holds_the_installation_card_of_a_meter_read_at_its_earlier_service_point(
    migrated_database_url: str,
) -> None:
    """SP-B's installation card (9.900 m³) holds the water from the re-fit to SP-B's first read, as
    the determinant bills it: before, NEM12 left the card out because the meter had reads before its
    installation (SP-A's), and SP-B's NMI held 0.100 m³ less than its determinant."""
    with set_as_the_server(psycopg.connect(migrated_database_url, row_factory=dict_row)) as conn:
        _refitted(conn, initial=Decimal("9.900"))
        sp_b = Decimal("0.100") + Decimal("0.250") * 19
        assert _exported(conn) == {"SP-A": Decimal("50.000"), "SP-B": sp_b} == _billed(conn)
        text = nem12_file(conn, FROM, TO, account="ACC-SP-B")  # type: ignore[arg-type]
    (day,) = [line for line in text.splitlines() if line.startswith(f"300,{SP_B_FITTED:%Y%m%d},")]
    fields = day.split(",")
    assert fields[2 + 9] == "0.1"  # 09:00-10:00: the card's water, closed by the 10:00 read
    assert "400,10,10,S18,0,the installation job card's register" in text.splitlines()


registers = st.decimals(min_value=0, max_value=Decimal("500"), places=3)
steps = st.decimals(min_value=0, max_value=Decimal("0.5"), places=3)
#: Minutes from a removal to the next installation: often within the removal's hour.
refits = st.one_of(st.integers(1, 59), st.integers(1, 600))
card_gaps = st.one_of(st.none(), st.decimals(min_value=0, max_value=Decimal("0.2"), places=3))


@st.composite
def layouts(draw: st.DrawFn) -> list[Installation]:
    """Meter M fitted two or three times, at SP-A, SP-B and back at SP-A: each installation read at
    least twice (the first read at its installation or up to 90 minutes after), its register anywhere
    (a refurbished meter's lower or higher than before), each removal at its last read or up to 90
    minutes after, the next installation a minute to 10 hours later (often within the removal's hour),
    with or without job cards; or, but the last, never read and removed up to 10 hours later, both job
    cards written."""
    installations: list[Installation] = []
    fitted = DAY0 + timedelta(minutes=draw(st.integers(0, 59)))
    count = draw(st.integers(2, 3))
    for i in range(count):
        if i < count - 1 and draw(st.integers(0, 3)) == 0:  # fitted and removed unread: the cards' water only
            initial, unread_until = draw(registers), fitted + timedelta(minutes=draw(st.integers(1, 600)))
            installations.append(
                Installation(SERVICE_POINTS[i % 2], fitted, unread_until, {}, initial, initial + draw(steps))
            )
            fitted = unread_until + timedelta(minutes=draw(refits))
            continue
        ts = fitted + timedelta(minutes=draw(st.sampled_from([0, draw(st.integers(1, 90))])))
        volume = draw(registers)
        reads = {ts: volume}
        for step in draw(st.lists(steps, min_size=1, max_size=10)):
            ts += timedelta(minutes=draw(st.integers(15, 90)))
            volume += step
            reads[ts] = volume
        last = i == count - 1
        removal = ts + timedelta(minutes=draw(st.sampled_from([0, draw(st.integers(1, 90))])))
        removed = None if last else max(removal, fitted + timedelta(minutes=1))
        initial_gap, final_gap = draw(card_gaps), draw(card_gaps)
        first = min(reads)
        installations.append(
            Installation(
                SERVICE_POINTS[i % 2],
                fitted,
                removed,
                reads,
                None if initial_gap is None else max(Decimal(0), reads[first] - initial_gap),
                None if final_gap is None or removed is None else volume + final_gap,
            )
        )
        if removed is not None:
            fitted = removed + timedelta(minutes=draw(refits))
    return installations


def _measured(fitted: Installation) -> Decimal:
    """The installation's water: from its card (unless a read at the installation opens it), else its
    first read, to its removal card (unless a read at the removal closes it), else its last read."""
    if not fitted.reads:
        assert fitted.initial is not None and fitted.final is not None
        return fitted.final - fitted.initial
    first, last = min(fitted.reads), max(fitted.reads)
    opening = fitted.initial if fitted.initial is not None and first > fitted.installed_at else fitted.reads[first]
    card_closes = fitted.final is not None and fitted.removed_at is not None and last < fitted.removed_at
    closing = fitted.final if card_closes and fitted.final is not None else fitted.reads[last]
    return closing - opening


@pytest.fixture
def server_session(migrated_database_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """One connection, set as the server's, for every example of a test, each example rolled back:
    a new one for each cost a new backend, which planned the job-card triggers' queries and compiled
    their functions again (a third of the property's time, 9.2 s against 6.4 s for 40 examples)."""
    with set_as_the_server(psycopg.connect(migrated_database_url, row_factory=dict_row)) as conn:
        yield conn


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    layout=layouts(),
    move=st.one_of(st.none(), st.integers(1, DAYS * 24 * 60 - 1).map(lambda m: FROM + timedelta(minutes=m))),
)
def test_nem12_and_the_determinants_hold_the_same_water_per_service_point_of_a_reused_meter(
    server_session: psycopg.Connection[dict[str, Any]], layout: list[Installation], move: datetime | None
) -> None:
    """For any layout of a reused meter's installations, reads and job cards, each service point's NEM12
    water is what its determinants bill, which is the water measured there: each installation's
    register from its opening (the card, else its first read) to its closing (the card, else its last
    read); and each account's NEM12 file (a tenant moving out of SP-B at ``move``) is its determinants'
    water where they know it."""
    measured: dict[str, Decimal] = {}
    for fitted in layout:
        measured[fitted.service_point] = measured.get(fitted.service_point, Decimal(0)) + _measured(fitted)
    conn = server_session
    with conn.transaction(force_rollback=True):
        _store(conn, layout, move)
        assert _exported(conn) == measured
        if move is None:
            assert _billed(conn) == measured
        for account, water in _billed(conn, by="account_id").items():
            if water is not None:  # a tenant's line with one read or none bills nothing yet (unknown)
                assert sum(_exported(conn, account).values(), Decimal(0)) == water, account


def test_a_meter_refitted_elsewhere_within_its_removal_s_hour_is_counted_once(migrated_database_url: str) -> None:
    """M removed from SP-A at 10:20 (its removal card 0.050 m³ above its 10:00 read) and fitted at
    SP-B at 10:40 (card 20.000 m³, read 20.010 at 10:50): SP-A's NEM12 ends at 10:20, SP-B's begins
    at 10:40. Before, SP-A's 10:00 hour held every interval closing in it, SP-B's 10:50 read's too
    (the register's drop from 110 to 20 m³: the hour null), and its removal card was left out for that
    read; SP-A's NMI was 0.050 m³ below its determinant."""
    removed, refitted = DAY0 + timedelta(hours=10, minutes=20), DAY0 + timedelta(hours=10, minutes=40)
    sp_a = {DAY0 + timedelta(hours=h): Decimal("100.000") + Decimal("1.000") * h for h in range(11)}
    sp_b = {refitted + timedelta(minutes=10 + 60 * h): Decimal("20.010") + Decimal("0.100") * h for h in range(5)}
    with set_as_the_server(psycopg.connect(migrated_database_url, row_factory=dict_row)) as conn:
        _store(
            conn,
            [
                Installation("SP-A", DAY0, removed, sp_a, Decimal("100.000"), Decimal("110.050")),
                Installation("SP-B", refitted, None, sp_b, Decimal("20.000")),
            ],
        )
        expected = {"SP-A": Decimal("10.050"), "SP-B": Decimal("0.010") + Decimal("0.400")}
        assert _billed(conn) == expected
        assert _exported(conn) == expected
        text = nem12_file(conn, FROM, TO, account="ACC-SP-A")  # type: ignore[arg-type]
    (day,) = [line for line in text.splitlines() if line.startswith(f"300,{DAY0:%Y%m%d},")]
    assert day.split(",")[2 + 10] == "0.05"  # 10:00-11:00: the removal card's water, not SP-B's


@pytest.mark.parametrize(("initial", "sp_b_water"), [(Decimal("150.050"), Decimal("0.150")), (None, Decimal(0))])
def test_a_bad_read_at_the_installation_opens_nothing_in_nem12_as_in_billing(
    migrated_database_url: str, initial: Decimal | None, sp_b_water: Decimal
) -> None:
    """M re-fitted at SP-B without refurbishment (its register 150.000 m³ where SP-A left it), read
    0.000 at its installation at 09:30 (a glitch VEE finds a bad read), then 150.200 at 10:00. Billing
    opens on the installation card (150.050), or without one on the 10:00 read, not on the bad read;
    NEM12 now too. Before, the bad read opened SP-B's NEM12 water and left the card out: the 10:00
    read's interval, counted by VEE from SP-A's last read (0.200 m³, 0.150 of it before the re-fit),
    was SP-B's, 0.150 m³ above its determinant with the card and 0.200 without."""
    sp_a = {SP_A_FITTED + timedelta(hours=h): Decimal("100.000") + Decimal("2.000") * h for h in range(26)}
    sp_b = {SP_B_FITTED: Decimal("0.000")}
    sp_b |= {SP_B_FITTED + timedelta(minutes=30 + 60 * h): Decimal("150.200") + Decimal("0.250") * h for h in range(5)}
    with set_as_the_server(psycopg.connect(migrated_database_url, row_factory=dict_row)) as conn:
        _store(
            conn,
            [
                Installation("SP-A", SP_A_FITTED, SP_A_REMOVED, sp_a),
                Installation("SP-B", SP_B_FITTED, None, sp_b, initial),
            ],
        )
        conn.commit()
        with psycopg.connect(migrated_database_url) as vee:
            run_vee(vee, FROM - timedelta(days=1), TO, now=TO, meters=["M"], estimate_gaps=False)
        conn.execute("SELECT refresh_consumption(%s, %s)", (FROM - timedelta(days=1), TO + timedelta(days=1)))
        kinds = conn.execute("SELECT ts, kind FROM register_discontinuities WHERE meter_id = 'M' ORDER BY ts")
        assert [(r["ts"], r["kind"]) for r in kinds] == [
            (SP_B_FITTED, "bad_read"),
            (SP_B_FITTED + timedelta(minutes=30), "after_bad_read"),
        ]
        expected = {"SP-A": Decimal("50.000"), "SP-B": sp_b_water + Decimal("0.250") * 4}
        assert _billed(conn) == expected
        assert _exported(conn) == expected, initial
