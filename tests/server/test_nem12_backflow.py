"""NEM12: water back through a meter is a stream of its own (B1), never a negative interval value.

Before, an hour of backflow (the register down 0.040 m³, the reverse register up 0.040 m³) was
written ``-0.04`` flagged ``A`` in the meter's one stream E1: NEM12's interval values are volumes,
the direction is the stream's (AEMO: ``E`` what the network delivers, ``B`` what flows back into
it), so an MDM read it as 0.04 m³ delivered or refused the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.store import ReadingStore
from collector.vee.rounds import vee_round
from server.app import create_app
from server.auth import create_api_key
from server.billing.nem12 import nem12_file
from tests.server.test_billing_vee_issues import _setup

DAY = datetime(2026, 11, 2, tzinfo=UTC)


def _streams(text: str) -> dict[str, list[list[str]]]:
    """Each 200 record's suffix with its 300 records' fields."""
    streams: dict[str, list[list[str]]] = {}
    suffix = ""
    for fields in (line.split(",") for line in text.splitlines()):
        if fields[0] == "200":
            suffix = fields[4]
            streams[suffix] = [fields]
        elif fields[0] == "300":
            streams[suffix].append(fields)
    return streams


def _values(records: list[list[str]]) -> list[Decimal]:
    return [Decimal(v) for day in records[1:] for v in day[2:26]]


def test_an_hour_of_backflow_is_in_the_b1_stream_and_e1_less_b1_is_what_the_determinant_bills(
    migrated_database_url: str,
) -> None:
    url = migrated_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "billing", ["billing"])
        _setup(conn, "M1", [(datetime(2026, 10, 1, tzinfo=UTC), None)])
    rows: list[tuple[str, str, str, float | None, str | None, list[str], str, int]] = []
    volume, reverse = Decimal("100.000"), Decimal("0.000")
    for h in range(24 * 3 + 1):
        ts = DAY - timedelta(days=2) + timedelta(hours=h)
        if ts == DAY + timedelta(hours=5):  # the 04:00-05:00 hour: backflow, the register down, the reverse up
            volume, reverse = volume - Decimal("0.040"), reverse + Decimal("0.040")
        elif h:
            volume += Decimal("0.010")
        rows.append(("M1", ts.isoformat(), str(volume), None, str(reverse), [], "gw1", h + 1))
    store = ReadingStore(url)
    store.write(rows)
    store.close()
    vee_round(url, DAY + timedelta(days=1, minutes=30))
    with TestClient(create_app(url)) as client:
        headers = {"Authorization": f"Bearer {key}"}
        period = {"period": "2026-11-02/2026-11-03"}
        text = client.get("/billing/nem12", params=period, headers=headers).text
        line = client.get("/billing/determinants", params=period, headers=headers).json()["items"][0]
    streams = _streams(text)
    assert [s[0][1:6] for s in streams.values()] == [
        ["SP-M1", "E1B1", "1", "E1", "N1"],
        ["SP-M1", "E1B1", "2", "B1", "N2"],
    ]
    forward, backward = _values(streams["E1"]), _values(streams["B1"])
    assert forward == [Decimal("0.01")] * 4 + [Decimal(0)] + [Decimal("0.01")] * 19
    assert backward == [Decimal(0)] * 4 + [Decimal("0.04")] + [Decimal(0)] * 19
    assert [day[26] for s in streams.values() for day in s[1:]] == ["A", "A"]
    assert (line["consumption_m3"], line["complete"]) == ("0.190000", True)
    assert sum(forward) - sum(backward) == Decimal(line["consumption_m3"])


def test_a_meter_without_backflow_has_its_one_stream_e1(migrated_database_url: str) -> None:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        _setup(conn, "M2", [(DAY - timedelta(days=1), None)])
        conn.execute(
            "INSERT INTO consumption_hourly (meter_id, hour, consumption_m3, intervals, not_actual, unknown)"
            " SELECT 'M2', h, 0.01, 1, 0, 0 FROM generate_series(%s::timestamptz, %s, '1 hour') h",
            (DAY, DAY + timedelta(hours=23)),
        )
        text = nem12_file(conn, DAY, DAY + timedelta(days=1))
    assert [line for line in text.splitlines() if line.startswith("200,")] == ["200,SP-M2,E1,1,E1,N1,M2,KL,60,"]


@pytest.fixture
def meter_db(migrated_database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        _setup(conn, "P", [(DAY - timedelta(days=1), None)])
        yield conn


nets = st.lists(
    st.decimals(min_value=Decimal("-2"), max_value=Decimal("2"), places=3, allow_nan=False), min_size=48, max_size=48
)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(net=nets)
def test_for_any_hourly_net_series_e1_less_b1_is_it_and_neither_is_negative(
    meter_db: psycopg.Connection, net: list[Decimal]
) -> None:
    meter_db.execute("DELETE FROM consumption_hourly")
    with meter_db.cursor().copy(
        "COPY consumption_hourly (meter_id, hour, consumption_m3, intervals, not_actual, unknown) FROM STDIN"
    ) as copy:
        for h, value in enumerate(net):
            copy.write_row(("P", DAY + timedelta(hours=h), value, 1, 0, 0))
    streams = _streams(nem12_file(meter_db, DAY, DAY + timedelta(days=2)))
    forward = _values(streams["E1"])
    backward = _values(streams["B1"]) if "B1" in streams else [Decimal(0)] * len(net)
    assert ("B1" in streams) == any(v < 0 for v in net)
    assert all(v >= 0 for v in forward + backward)
    assert [f - b for f, b in zip(forward, backward, strict=True)] == net
    assert sum(forward) - sum(backward) == sum(net)
