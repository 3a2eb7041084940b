"""``aquami collector``'s one-off commands refuse instants and periods that cannot be meant, naming
the option, and store nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from aquami.cli import app


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), terminal_width=400)
    return result.exit_code, " ".join(result.output.replace("│", " ").split())


def _one_meter_reading_until_now(url: str) -> None:
    """Enough for detection to have a meter to look at, so a run is recorded."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered, dma, role) VALUES ('M-1', true, 'D1', 'customer')")
        conn.cursor().executemany(
            "INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('M-1', %s, %s)",
            [(now - timedelta(hours=h), 100 - h / 10) for h in range(48)],
        )


def _runs(url: str) -> list[datetime]:
    with psycopg.connect(url) as conn:
        return [run_at for (run_at,) in conn.execute("SELECT run_at FROM detection_runs ORDER BY run_at")]


@pytest.mark.parametrize("option", ["--at", "--until"])
def test_detect_at_a_future_instant_is_refused_and_stores_nothing(migrated_database_url: str, option: str) -> None:
    """``--at 2027-…`` for 2026 was stored as the latest run: every live run was then refused
    ("would rewind the live alerts") until that instant, a year without detection."""
    _one_meter_reading_until_now(migrated_database_url)
    a_year_ahead = (datetime.now(UTC) + timedelta(days=365)).isoformat()
    args = ["collector", "detect", "--database-url", migrated_database_url, "--history-days", "2"]
    args += ["--at", datetime.now(UTC).isoformat(), "--step", str(365 * 24 * 60)] if option == "--until" else []
    code, said = _invoke(*args, option, a_year_ahead)
    assert code == 2, said
    assert f"Invalid value for {option}" in said and "is in the future" in said
    assert _runs(migrated_database_url) == []


def test_detect_now_and_a_future_dry_run_are_accepted(migrated_database_url: str, tmp_path: Path) -> None:
    _one_meter_reading_until_now(migrated_database_url)
    base = ["collector", "detect", "--database-url", migrated_database_url, "--history-days", "2"]
    ahead = (datetime.now(UTC) + timedelta(days=365)).isoformat()
    code, said = _invoke(*base, "--at", ahead, "--out", str(tmp_path / "alerts.json"))
    assert code == 0, said
    assert _runs(migrated_database_url) == [] and json.loads((tmp_path / "alerts.json").read_text()) == []
    code, said = _invoke(*base)  # now: within the clock skew of itself
    assert code == 0, said
    assert len(_runs(migrated_database_url)) == 1


@pytest.mark.parametrize(
    ("command", "start", "end", "says"),
    [
        ("vee", "--from", "--to", "Invalid value for --to"),
        ("consumption", "--from", "--to", "Invalid value for --to"),
        ("detect", "--at", "--until", "Invalid value for --until"),
    ],
)
def test_a_reversed_period_is_refused_not_done_as_nothing(
    migrated_database_url: str, tmp_path: Path, command: str, start: str, end: str, says: str
) -> None:
    """``--to`` before ``--from`` (``--until`` before ``--at``) did nothing and exited 0."""
    dry = ["--out", str(tmp_path / "x.json")] if command == "detect" else []
    code, said = _invoke(
        "collector", command, "--database-url", migrated_database_url,
        start, "2026-12-01T00:00:00Z", end, "2026-11-01T00:00:00Z", *dry,
    )  # fmt: skip
    assert code == 2, said
    assert says in said
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("command", ["vee", "consumption"])
def test_an_empty_period_is_refused(migrated_database_url: str, command: str) -> None:
    instant = "2026-11-01T00:00:00Z"
    code, said = _invoke(
        "collector", command, "--database-url", migrated_database_url, "--from", instant, "--to", instant
    )
    assert code == 2 and "is not after --from" in said, said


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"no_such_setting": 1}', "unknown VEE setting(s): no_such_setting"),
        ('{"gap_factor": "high"}', "is not a float"),
        ('{"gap_factor": ', "Expecting value"),
        ("[1, 2]", "a JSON object of settings, not list"),
    ],
)
def test_a_bad_vee_settings_file_is_one_message_not_a_traceback(tmp_path: Path, text: str, says: str) -> None:
    """A bad --config printed a 45-line traceback; the database is not needed to say so."""
    (tmp_path / "vee.json").write_text(text)
    code, said = _invoke(
        "collector", "vee", "--database-url", "postgresql://127.0.0.1:1/none", "--config", str(tmp_path / "vee.json"),
        "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-02T00:00:00Z",
    )  # fmt: skip
    assert code == 2, said
    assert "Invalid value for --config" in said and says in said and "Traceback" not in said


class _Started(Exception):
    """Stands in for the collector's start: the test wants only the configuration it was given."""


@pytest.mark.parametrize(
    ("args", "client_id"),
    [
        ([], "aquami-collector"),
        (["--shared-group", "g"], "aquami-collector-pump-house-2"),
        (["--shared-group", "g", "--client-id", "c-2"], "c-2"),
    ],
)
def test_collectors_of_a_shared_group_each_have_their_own_session(
    migrated_database_url: str, monkeypatch: pytest.MonkeyPatch, args: list[str], client_id: str
) -> None:
    """Two collectors of a group took the one default client id, and the broker handed its session
    back and forth between them (19 connections in 20 s). Per host, and the same at every restart:
    the persistent session holds what arrives meanwhile."""
    import signal
    import socket

    import collector.service

    given = []

    def started(config: collector.service.CollectorConfig, **_: object) -> None:
        given.append(config)
        raise _Started

    monkeypatch.setattr(collector.service, "Collector", started)
    monkeypatch.setattr(signal, "signal", lambda *_: None)  # the command's handlers stay out of pytest's way
    monkeypatch.setattr(socket, "gethostname", lambda: "pump-house-2")
    result = CliRunner().invoke(
        app, ["collector", "run", "--database-url", migrated_database_url, "--mqtt-url", "mqtt://127.0.0.1:1", *args]
    )
    assert isinstance(result.exception, _Started), result.output
    assert [c.client_id for c in given] == [client_id]
