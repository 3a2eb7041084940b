"""API keys are listed and revoked with the product: before, nothing wrote ``api_keys.revoked_at``,
so a lost or leaked key could not be stopped, nor a key rotated, but in SQL."""

from __future__ import annotations

import json

import psycopg
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aquami.cli import app
from server.app import create_app

WIDE = CliRunner(env={"COLUMNS": "400"})  # the error box wraps at the terminal's width


def _aquami(url: str, *args: str) -> tuple[int, str]:
    result = WIDE.invoke(app, ["server", *args, "--database-url", url])
    return result.exit_code, result.output


def _create(url: str, name: str, *roles: str) -> str:
    code, output = _aquami(url, "create-key", "--name", name, *(arg for role in roles for arg in ("--role", role)))
    assert code == 0, output
    return output.strip()


def test_keys_are_listed_without_their_secrets_and_a_revoked_key_is_refused(migrated_database_url):
    url = migrated_database_url
    old = _create(url, "billing export (old)", "billing")
    new = _create(url, "billing export", "billing", "reader")
    old_id, new_id = (key.removeprefix("aqk_").partition(".")[0] for key in (old, new))

    code, listing = _aquami(url, "list-keys")
    assert code == 0, listing
    lines = listing.splitlines()
    assert lines[0].split() == ["KEY_ID", "CREATED", "REVOKED", "ROLES", "NAME"]
    assert [line.split()[0] for line in lines[1:]] == [old_id, new_id]
    assert lines[1].split()[2:] == ["-", "billing", "billing", "export", "(old)"]
    with psycopg.connect(url) as conn:
        hashes = [row[0] for row in conn.execute("SELECT secret_hash FROM api_keys")]
    for secret in [old.partition(".")[2], new.partition(".")[2], *hashes]:
        assert secret not in listing

    with TestClient(create_app(url)) as client:
        assert client.get("/billing/nem12?period=2026-11", headers={"X-API-Key": old}).status_code == 200
        code, said = _aquami(url, "revoke-key", old_id)
        assert code == 0 and said.startswith(f"revoked {old_id} at "), said
        refused = client.get("/billing/nem12?period=2026-11", headers={"X-API-Key": old})
        assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
        assert client.get("/billing/nem12?period=2026-11", headers={"X-API-Key": new}).status_code == 200

    code, listing = _aquami(url, "list-keys", "--json")
    records = {record["key_id"]: record for record in map(json.loads, listing.splitlines())}
    assert set(records[old_id]) == {"key_id", "name", "name_problem", "roles", "created_at", "revoked_at"}
    assert records[old_id]["name_problem"] is None
    assert records[old_id]["revoked_at"] is not None and records[new_id]["revoked_at"] is None
    assert records[new_id]["roles"] == ["billing", "reader"] and records[new_id]["name"] == "billing export"


def test_revoking_twice_keeps_the_first_time_and_the_key_itself_names_it(migrated_database_url):
    url = migrated_database_url
    key = _create(url, "a leaked key", "reader")
    code, first = _aquami(url, "revoke-key", key)  # the key as it was leaked: its id is read from it
    assert code == 0, first
    with psycopg.connect(url) as conn:
        (revoked_at,) = conn.execute("SELECT revoked_at FROM api_keys").fetchone() or (None,)
    assert revoked_at is not None
    code, again = _aquami(url, "revoke-key", key.partition(".")[0])
    assert code == 0 and "was revoked at " + first.split(" at ")[1].strip() in again, again
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT revoked_at FROM api_keys").fetchone() == (revoked_at,)


def test_an_unknown_key_id_is_a_clear_error_and_revokes_nothing(migrated_database_url):
    url = migrated_database_url
    _create(url, "someone", "reader")
    code, output = _aquami(url, "revoke-key", "0123456789ab")
    assert code == 2 and "no API key '0123456789ab'" in output, output
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL").fetchone() == (0,)


def test_a_key_cannot_take_a_name_the_system_records_its_own_actions_under(migrated_database_url):
    """A care key named ``detection`` dismissed alerts as the detector: its dismissal with a fold's
    reason closed an urgent burst's enquiry as a duplicate. The system's names are refused, in any
    case; a name merely containing one is a person's."""
    url = migrated_database_url
    for name in ("detection", "Meterization ", "ingest", "VEE", "vee:linear"):
        code, output = _aquami(url, "create-key", "--name", name, "--role", "customer_care")
        assert code == 2 and f"a key cannot be named {name!r}" in output, output
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)
    assert _create(url, "detection desk (A. Clerk)", "customer_care").startswith("aqk_")


def test_a_key_name_of_invisible_characters_alone_is_refused(migrated_database_url):
    """A key named U+200B (a zero-width space) or a Hangul filler was created: every change it made
    read as made by no one. Refused now, naming the character; a name with something visible in it,
    invisible characters and all, is kept as given. A system name behind an invisible character is
    the system's name still."""
    url = migrated_database_url
    for name, said in (
        ("\u200b", "not '\\u200b'"),
        ("\u3164", "(U+3164 HANGUL FILLER shows nothing)"),
        ("\u115f\u1160 \uffa0", "(U+115F HANGUL CHOSEONG FILLER shows nothing)"),
        ("\u2066\u2069", "not '\\u2066\\u2069'"),
    ):
        code, output = _aquami(url, "create-key", "--name", name, "--role", "customer_app")
        assert code == 2, output
        assert "a key needs a name saying who or what it is for" in output and said in output, output
    code, output = _aquami(url, "create-key", "--name", "\u200bdetection", "--role", "customer_care")
    assert code == 2 and "a key cannot be named '\\u200bdetection'" in output, output
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)
    _create(url, "fixit\u200b app \u3164", "customer_app")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT name FROM api_keys").fetchall() == [("fixit\u200b app \u3164",)]


def test_keys_named_before_such_names_were_refused_are_listed_written_out_with_what_to_do(
    migrated_database_url: str,
) -> None:
    """Keys created before create-key refused a name of invisible characters, or a system name, keep
    it: list-keys showed U+3164 as a blank and ``alice\\u200b`` as ``alice``, with nothing to say so.
    Now what shows nothing is written out, and a line under a live key says what is wrong and what to
    do; a readable name (an accent, a backslash typed) is shown as it is, with no line."""
    url = migrated_database_url
    names = {
        "0000000000a1": "\u3164",
        "0000000000a2": "alice\u200b",
        "0000000000a3": "Detection",
        "0000000000a4": "José \\u200b desk",
        "0000000000a5": "\u2066\u2069",  # revoked: written out, nothing to do
        "0000000000a6": "back\\slash\u00ad",
    }
    with psycopg.connect(url, autocommit=True) as conn:
        for number, (key_id, name) in enumerate(names.items()):
            conn.execute(
                "INSERT INTO api_keys (key_id, secret_hash, name, roles, created_at) "
                "VALUES (%s, repeat('0', 64), %s, '{reader}', now() + %s * interval '1 second')",
                (key_id, name, number),
            )
        conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = '0000000000a5'")

    code, listing = _aquami(url, "list-keys")
    assert code == 0, listing
    lines = listing.splitlines()[1:]
    rows = {line.split()[0]: line for line in lines if not line.lstrip().startswith("!")}
    notes = {line.split()[1].rstrip(":"): line for line in lines if line.lstrip().startswith("!")}
    assert rows["0000000000a1"].endswith("  \\u3164")
    assert rows["0000000000a2"].endswith("  alice\\u200b")
    assert rows["0000000000a3"].endswith("  Detection")
    assert rows["0000000000a4"].endswith("  José \\u200b desk")  # typed as six characters: readable
    assert rows["0000000000a5"].endswith("  \\u2066\\u2069")
    assert rows["0000000000a6"].endswith("  back\\\\slash\\xad")  # the typed backslash told from an escape
    assert set(notes) == {"0000000000a1", "0000000000a2", "0000000000a3", "0000000000a6"}
    assert "this name shows nothing: its changes read as made by no one" in notes["0000000000a1"]
    assert "holds U+200B ZERO WIDTH SPACE, which shows nothing: it reads as 'alice'" in notes["0000000000a2"]
    assert "reads as one the system records its own actions under" in notes["0000000000a3"]
    assert "holds U+00AD SOFT HYPHEN" in notes["0000000000a6"]
    for note in notes.values():
        assert note.endswith("(create-key), then revoke this one (revoke-key)"), note
    # each note follows its key's row
    for key_id in notes:
        assert lines[lines.index(rows[key_id]) + 1] == notes[key_id]

    code, listing = _aquami(url, "list-keys", "--json")
    records = {record["key_id"]: record for record in map(json.loads, listing.splitlines())}
    assert {key_id: record["name"] for key_id, record in records.items()} == names  # exact, for scripts
    assert records["0000000000a4"]["name_problem"] is None
    assert records["0000000000a5"]["name_problem"].startswith("this name shows nothing")
    assert records["0000000000a2"]["name_problem"] == notes["0000000000a2"].split(": ", 1)[1]
