"""``collector run --vee-config FILE``: the collector's hourly VEE rounds run with a utility's VEE
settings, as ``collector vee --config`` does, and record them (server migration 0065's
``vee_settings``) for a person's correction to be judged by. Before, ``collector run`` had no way to
be given them: its rounds always ran with VeeConfig's defaults, so a utility whose meters pass 20 m³/h
had every round flag them over 5 m³/h, and its corrections judged by 5 m³/h."""

from __future__ import annotations

import json
import os
import signal
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

import collector.vee.rounds
from aquami.cli import app
from collector.vee.config import VeeConfig


def test_the_collector_s_rounds_run_with_the_vee_settings_given_and_record_them(
    migrated_database_url: str, mosquitto: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = tmp_path / "vee.json"
    settings.write_text(json.dumps({"default_max_flow_m3h": 20, "max_flow_slack": 0.1}))
    real_round = collector.vee.rounds.vee_round
    given: list[VeeConfig | None] = []

    def one_round_then_stop(
        database_url: str, now: datetime, config: VeeConfig | None = None, every: timedelta | None = None
    ) -> Any:
        given.append(config)
        try:
            return real_round(database_url, now, config, every)
        finally:  # what Ctrl-C does: the collector stops (sent to the process, as a terminal does)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(collector.vee.rounds, "vee_round", one_round_then_stop)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = CliRunner().invoke(
            app,
            ["collector", "run", "--vee-every", "0.05", "--detect-every", "0", "--client-id", "vee-config",
             "--vee-config", str(settings)],
            env={"AQUAMI_DATABASE_URL": migrated_database_url, "AQUAMI_MQTT_URL": mosquitto.url},
        )  # fmt: skip
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    assert result.exit_code == 0, result.output
    assert given and given[0] == VeeConfig(default_max_flow_m3h=20, max_flow_slack=0.1)
    with psycopg.connect(migrated_database_url) as conn:
        assert conn.execute("SELECT default_max_flow_m3h, max_flow_slack FROM vee_settings").fetchall() == [(20.0, 0.1)]


def test_a_bad_vee_settings_file_is_refused_naming_the_option_before_the_database(tmp_path: Path) -> None:
    (tmp_path / "vee.json").write_text('{"max_flow": 3}')
    result = CliRunner().invoke(
        app,
        ["collector", "run", "--database-url", "postgresql://127.0.0.1:1/none", "--mqtt-url", "mqtt://127.0.0.1:1",
         "--vee-config", str(tmp_path / "vee.json")],
        env={"COLUMNS": "400"},
    )  # fmt: skip
    said = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2, said
    assert "Invalid value for --vee-config" in said and "unknown VEE setting(s): max_flow" in said
