"""A job card whose register contradicts the meter's own reads next to it is recorded (the read may
be the wrong one, and an installation card is entered before the first read comes) but said: billing
cannot count the water between card and read, and the line's consumption is unknown until one of them
is corrected. Before, register-meters recorded it without a word, and the clerk learnt of it from a
bill marked consumption_unknown."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
from typer.testing import CliRunner

from aquami.cli import app

HEADER = "meter_id,dma,role,service_point_id,installed_at,removed_at,initial_register_m3,final_register_m3\n"


def register(path: Path, text: str, url: str) -> tuple[int, str, str]:
    path.write_text(HEADER + text)
    result = CliRunner().invoke(
        app, ["server", "register-meters", str(path), "--database-url", url], env={"COLUMNS": "400"}
    )
    return result.exit_code, result.stdout, result.stderr


def test_cards_against_the_reads_next_to_them_are_recorded_and_said(tmp_path: Path, migrated_database_url: str) -> None:
    url = migrated_database_url
    exchange = (
        "M-OLD,D1,customer,SP-1,2026-10-01T00:00Z,2026-11-10T10:30Z,10.000,{final}\n"
        "M-NEW,D1,customer,SP-1,2026-11-10T10:30Z,,{initial},\n"
    )
    code, _, said = register(tmp_path / "m.csv", exchange.format(final="", initial=""), url)
    assert code == 0 and said == ""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3) VALUES "
            "('M-OLD', '2026-11-10T10:00Z', 12.020), ('M-NEW', '2026-11-11T00:00Z', 0.550)"
        )
        conn.execute("UPDATE meters SET has_readings = true")
    # cards that agree with the reads, one within the reads' tolerance (a card written to the litre)
    code, out, said = register(tmp_path / "m.csv", exchange.format(final="12.100", initial="0.5504"), url)
    assert code == 0 and json.loads(out)["installations"] == 2 and said == "", said
    code, out, said = register(tmp_path / "m.csv", exchange.format(final="12.000", initial="0.900"), url)
    assert code == 0 and json.loads(out)["installations"] == 2, out
    assert said.splitlines() == [
        f"warning: {tmp_path / 'm.csv'}: row 2: final_register_m3 12.000 is below M-OLD's last read before its "
        "removal, 12.020 m³ at 2026-11-10T10:00:00Z: billing cannot count the water between them (the line's "
        "consumption unknown) until the card or the read is corrected",
        f"warning: {tmp_path / 'm.csv'}: row 3: initial_register_m3 0.900 is above M-NEW's first read after its "
        "installation, 0.550 m³ at 2026-11-11T00:00:00Z: billing cannot count the water between them (the line's "
        "consumption unknown) until the card or the read is corrected",
    ]
    with psycopg.connect(url) as conn:  # recorded all the same
        cards = conn.execute(
            "SELECT meter_id, initial_register_m3, final_register_m3 FROM meter_installations ORDER BY installed_at"
        ).fetchall()
    assert [(m, str(i), f and str(f)) for m, i, f in cards] == [("M-OLD", "10.000", "12.000"), ("M-NEW", "0.900", None)]


def test_a_card_pair_whose_removal_register_is_below_its_installation_s_is_recorded_and_said(
    tmp_path: Path, migrated_database_url: str
) -> None:
    """A meter fitted with 3.000 and removed with 2.000, no read between: the pair contradicts itself
    and billing cannot count the line (before, recorded without a word). Pairs that go forward, or back
    within the reads' tolerance, say nothing; with a read between, the reads' own warnings say it once."""
    url = migrated_database_url
    text = (
        "M-BACK,D1,customer,SP-1,2026-10-01T00:00Z,2026-10-20T00:00Z,3.000,2.000\n"
        "M-FWD,D1,customer,SP-2,2026-10-01T00:00Z,2026-10-20T00:00Z,3.000,5.000\n"
        "M-TOL,D1,customer,SP-3,2026-10-01T00:00Z,2026-10-20T00:00Z,3.0004,3.000\n"
        "M-READ,D1,customer,SP-4,2026-10-01T00:00Z,2026-10-20T00:00Z,3.000,2.000\n"
    )
    no_cards = "".join(line.rsplit(",", 2)[0] + ",,\n" for line in text.splitlines())
    code, _, said = register(tmp_path / "m.csv", no_cards, url)  # the meters first, as a rollout does
    assert code == 0 and said == "", said
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('M-READ', '2026-10-10T00:00Z', 2.500)")
        conn.execute("UPDATE meters SET has_readings = true WHERE meter_id = 'M-READ'")
    code, out, said = register(tmp_path / "m.csv", text, url)
    assert code == 0 and json.loads(out)["installations"] == 4, out
    name = tmp_path / "m.csv"
    assert said.splitlines() == [
        f"warning: {name}: row 2: final_register_m3 2.000 is below the card's initial_register_m3 3.000, with no read "
        "of M-BACK between: a register does not go backwards, billing cannot count the meter's water (the line's "
        "consumption unknown) until a card is corrected",
        f"warning: {name}: row 5: initial_register_m3 3.000 is above M-READ's first read after its installation, "
        "2.500 m³ at 2026-10-10T00:00:00Z: billing cannot count the water between them (the line's consumption "
        "unknown) until the card or the read is corrected",
        f"warning: {name}: row 5: final_register_m3 2.000 is below M-READ's last read before its removal, 2.500 m³ "
        "at 2026-10-10T00:00:00Z: billing cannot count the water between them (the line's consumption unknown) "
        "until the card or the read is corrected",
    ]
    with psycopg.connect(url) as conn:  # recorded all the same
        card = conn.execute(
            "SELECT initial_register_m3, final_register_m3 FROM meter_installations WHERE meter_id = 'M-BACK'"
        ).fetchone()
    assert card is not None and (str(card[0]), str(card[1])) == ("3.000", "2.000")


def test_a_read_at_the_installation_s_instant_is_the_installation_s_for_every_card_look(
    tmp_path: Path, migrated_database_url: str
) -> None:
    """An installation's reads are those from its installed_at to its removed_at, both included, as
    billing counts them (a read at the installation's instant opens its line in the card's place). The
    removal card's look and the pair's took a read at installed_at as the installation's, the
    installation card's look did not: M-AT fitted with 3.000 at 00:00, read 1.500 at 00:00, removed with
    2.000 was said by none (the pair's look saw a read between, the installation card's saw no read
    after, and 2.000 is above 1.500). Now the installation card is said against that read, and a removal
    card against a read at its own instant likewise."""
    url = migrated_database_url
    text = (
        "M-AT,D1,customer,SP-1,2026-10-01T00:00Z,2026-10-20T00:00Z,3.000,2.000\n"
        "M-END,D1,customer,SP-2,2026-10-01T00:00Z,2026-10-20T00:00Z,1.000,4.000\n"
    )
    no_cards = "".join(line.rsplit(",", 2)[0] + ",,\n" for line in text.splitlines())
    code, _, said = register(tmp_path / "m.csv", no_cards, url)
    assert code == 0 and said == "", said
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('M-AT', '2026-10-01T00:00Z', 1.500), "
            "('M-END', '2026-10-10T00:00Z', 4.200), ('M-END', '2026-10-20T00:00Z', 4.500)"
        )
        conn.execute("UPDATE meters SET has_readings = true")
    code, out, said = register(tmp_path / "m.csv", text, url)
    assert code == 0 and json.loads(out)["installations"] == 2, out
    name = tmp_path / "m.csv"
    assert said.splitlines() == [
        f"warning: {name}: row 2: initial_register_m3 3.000 is above M-AT's read at its installation, 1.500 m³ at "
        "2026-10-01T00:00:00Z, the same instant: billing opens the installation on the read, not the card; correct "
        "whichever is wrong",
        f"warning: {name}: row 3: final_register_m3 4.000 is below M-END's read at its removal, 4.500 m³ at "
        "2026-10-20T00:00:00Z, the same instant: billing closes the installation on the read, not the card; correct "
        "whichever is wrong",
    ]
