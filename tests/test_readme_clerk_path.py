"""README's meterization clerk's path runs as written, and leaves what README says it does.

The block is README's own text, run by bash with ``aquami`` on the PATH and a fresh database in
``AQUAMI_DATABASE_URL``: a command renamed, an option dropped, a file refused or a row that no longer
records as it says fails here, naming the command (``bash -x``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from tests.readme_names import readme_text

HEADING = "### The meterization clerk's path"
WITHDRAW_STEP = "# 5. The wrong row withdrawn"


def clerk_block() -> str:
    """The first ``sh`` code block after the section's heading."""
    text = readme_text()
    section = text[text.index(HEADING) :]
    match = re.search(r"^```sh\n(.*?)^```", section, re.S | re.M)
    assert match is not None, f"README: no ```sh block under {HEADING!r}"
    return match.group(1)


def run_block(script: str, folder: Path, url: str) -> subprocess.CompletedProcess[str]:
    aquami = Path(sys.executable).parent / "aquami"
    assert aquami.exists(), f"{aquami}: the package's console script (pip install -e .)"
    env = dict(os.environ, AQUAMI_DATABASE_URL=url, PATH=f"{aquami.parent}{os.pathsep}{os.environ['PATH']}")
    env["COLUMNS"] = "400"  # the refusals in one line, as README quotes them
    return subprocess.run(
        ["bash", "-euxo", "pipefail", "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )


def last_json(output: str) -> dict[str, Any]:
    """The last JSON object the block printed (each command prints one, some over several lines)."""
    decoder, found = json.JSONDecoder(), None
    for start in (match.start() for match in re.finditer(r"^\{", output, re.M)):
        found = decoder.raw_decode(output, start)[0]
    assert isinstance(found, dict), output
    return found


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_the_clerk_s_path_runs_as_written_and_records_what_readme_says(
    tmp_path: Path, migrated_database_url: str
) -> None:
    url = migrated_database_url
    done = run_block(clerk_block(), tmp_path, url)
    assert done.returncode == 0, done.stderr[-3000:]
    with psycopg.connect(url) as conn:
        installations = conn.execute(
            "SELECT meter_id, service_point_id, installed_at, removed_at, initial_register_m3, final_register_m3 "
            "FROM meter_installations ORDER BY meter_id"
        ).fetchall()
        withdrawn = conn.execute(
            "SELECT meter_id, service_point_id, installed_at, withdrawn_by, reason FROM withdrawn_installations"
        ).fetchall()
        agreements = conn.execute(
            "SELECT account_id, service_point_id FROM service_agreements ORDER BY account_id"
        ).fetchall()
        agreements_withdrawn = conn.execute(
            "SELECT account_id, service_point_id, start_at, withdrawn_by FROM withdrawn_agreements"
        ).fetchall()
        gateways = conn.execute(
            "SELECT meter_id, gateway_id FROM meter_gateways WHERE until IS NULL ORDER BY meter_id"
        ).fetchall()
    assert installations == [
        ("M-100", "SP-1", utc("2026-10-01T08:00"), utc("2026-11-10T09:30"), Decimal("0.000"), Decimal("12.345")),
        ("M-200", "SP-2", utc("2026-10-01T10:00"), None, Decimal("0.000"), None),  # its date corrected
        ("M-300", "SP-1", utc("2026-11-10T09:30"), None, Decimal("0.002"), None),
        ("M-400", "SP-3", utc("2026-11-20T10:00"), None, Decimal("0.000"), None),
    ]
    assert withdrawn == [
        ("M-300", "SP-3", utc("2026-11-20T10:00"), "Ann Clerk", "M-400's card keyed with M-300's number")
    ]
    assert agreements == [("ACC-1", "SP-1"), ("ACC-2", "SP-2")]
    assert agreements_withdrawn == [("ACC-2", "SP-3", utc("2026-11-20T00:00"), "Ann Clerk")]
    assert gateways == [("M-100", "gw-north"), ("M-200", "gw-north"), ("M-300", "gw-north"), ("M-400", "gw-east")]

    # step 10: ACC-1's M-100 to the exchange, closing on its removal card, and M-300 from then
    (account,) = last_json(done.stdout)["items"]
    lines = [(line["meter_id"], line["start"], line["end"]) for line in account["lines"]]
    assert lines == [
        ("M-100", "2026-11-01T00:00:00Z", "2026-11-10T09:30:00Z"),
        ("M-300", "2026-11-10T09:30:00Z", "2026-12-01T00:00:00Z"),
    ]
    assert account["lines"][0]["closing"]["volume_m3"] == "12.345"
    assert account["lines"][1]["opening"]["volume_m3"] == "0.002"

    # the withdrawn row does not come back with step 4's file, as README says
    again = run_block("aquami server register-meters card.csv", tmp_path, url)
    assert again.returncode == 2
    said = " ".join(again.stderr.replace("│", " ").split())
    assert "card.csv: row 2: meter M-300 at SP-3 from 2026-11-20T10:00:00Z was withdrawn at" in said, said
    assert "take the row out of the file, or give --reinstate-withdrawn to record it again" in said, said


def test_without_the_withdrawal_the_exchange_is_refused_as_readme_quotes(
    tmp_path: Path, migrated_database_url: str
) -> None:
    """Step 4's wrong card blocks step 6's exchange: the refusal README quotes, in the same words."""
    block = clerk_block()
    upto_exchange = block[: block.index("# 7. ")].replace(block[block.index(WITHDRAW_STEP) : block.index("# 6. ")], "")
    done = run_block(upto_exchange, tmp_path, migrated_database_url)
    assert done.returncode == 2
    said = " ".join(done.stderr.replace("│", " ").split())
    quoted = re.search(r"\(`(meters\.csv: row 4: a meter is in one place.*?)`\)", " ".join(readme_text().split()))
    assert quoted is not None
    assert quoted.group(1) in said, said
