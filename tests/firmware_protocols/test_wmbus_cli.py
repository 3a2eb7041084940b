"""``aquami decode wmbus``: hex in, one JSON line per telegram out, keys per meter, errors per line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from aquami.cli import app
from firmware_protocols.wmbus import build_telegram
from firmware_protocols.wmbus.receiver import DEVMGMT_ID, build_indication, build_message

KEY = bytes.fromhex("0102030405060708090A0B0C0D0E0F11")
# OMS Specification Vol. 2 security mode 5 example (see test_wmbus_vectors.py).
OMS_MODE5 = "2E4493157856341233037A2A0020255923C95AAA26D1B2E7493B013EC4A6F6D3529B520EDFF0EA6DEFC99D6D69EBF3"


def test_decodes_with_a_key_and_reports_a_missing_one() -> None:
    other = build_telegram(
        bytes.fromhex("0413D2040000"),
        manufacturer="ABC",
        id="55555555",
        version=1,
        medium="water",
        access_no=3,
        key=KEY,
        crcs=False,
    ).hex()
    arguments = ["decode", "wmbus", "--no-crcs", "--key", f"12345678={KEY.hex()}", OMS_MODE5, other]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 1
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["id"] == "12345678" and first["records"][0]["value"] == 28504.27
    assert "meter 55555555" in second["error"]


def test_reads_stdin_and_honours_no_crcs() -> None:
    result = CliRunner().invoke(
        app, ["decode", "wmbus", "--no-crcs", "--key", f"12345678={KEY.hex()}"], input=OMS_MODE5 + "\n"
    )
    assert result.exit_code == 0, result.stdout
    assert json.loads(result.stdout)["crcs"] is False


def test_a_telegram_without_crcs_needs_no_crcs() -> None:
    """Without --no-crcs, a CRC-less telegram cannot be told from a garbled format B one: its last
    two bytes fail as a CRC, and the error says what to do."""
    result = CliRunner().invoke(app, ["decode", "wmbus", "--key", f"12345678={KEY.hex()}", OMS_MODE5])
    assert result.exit_code == 1
    assert "--no-crcs" in json.loads(result.stdout)["error"]


def test_bad_key_option() -> None:
    result = CliRunner().invoke(app, ["decode", "wmbus", "--key", "12345678", OMS_MODE5])
    assert result.exit_code != 0


@pytest.mark.parametrize("hex_key", ["0102", KEY.hex() + "00", ""])
def test_a_key_that_is_not_16_bytes_is_refused_once_up_front(hex_key: str) -> None:
    """A 2-byte key was accepted and then refused again at every telegram, each its own error line
    (exit 1); an AES-128 key is 16 bytes, which the option can tell before any telegram is read."""
    arguments = ["decode", "wmbus", "--no-crcs", "--key", f"12345678={hex_key}", OMS_MODE5, OMS_MODE5]
    result = CliRunner().invoke(app, arguments, env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert "Invalid value for --key: meter '12345678': the key has" in result.output
    assert "AES-128 takes 16" in result.output and '"error"' not in result.output


WRONG = bytes.fromhex("FFEEDDCCBBAA99887766554433221100")


@pytest.mark.parametrize("ids", [("12345678", "12345678"), ("abcdef12", "ABCDEF12")])
@pytest.mark.parametrize("keys", [(KEY, WRONG), (WRONG, KEY)])
def test_one_meter_given_two_different_keys_is_refused(ids: tuple[str, str], keys: tuple[bytes, bytes]) -> None:
    """Two --key for one meter: the last one won silently, so the telegrams decoded or failed on
    the order of the options. Now the command refuses, naming the meter (in either case: telegrams
    find a meter's key in either), not the keys."""
    given = [arg for meter, key in zip(ids, keys, strict=True) for arg in ("--key", f"{meter}={key.hex()}")]
    result = CliRunner().invoke(app, ["decode", "wmbus", "--no-crcs", *given, OMS_MODE5], env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert f"Invalid value for --key: meter{'s' if ids[0] != ids[1] else ''} '{ids[0]}'" in result.output
    assert "given two different keys" in result.output and '"error"' not in result.output
    assert KEY.hex() not in result.output.lower() and WRONG.hex() not in result.output.lower()


def test_one_meter_given_the_same_key_twice_decodes() -> None:
    given = ["--key", f"12345678={KEY.hex()}", "--key", f"12345678={KEY.hex().upper()}"]
    result = CliRunner().invoke(app, ["decode", "wmbus", "--no-crcs", *given, OMS_MODE5])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["records"][0]["value"] == 28504.27


@pytest.mark.parametrize(
    ("option", "says"),
    [
        (f"12345678={KEY.hex()[:-2]}ZZ", "Invalid value for --key: meter '12345678': the key is not hex"),
        (KEY.hex(), "Invalid value for --key: the 1st --key is not METER_ID=HEX"),  # the meter's id forgotten
        # as a key sheet may print it: said what is wrong, where it said Python's words, "non-hexadecimal
        # number found in fromhex() arg at position 1"
        (
            f"12345678=0x{KEY.hex()}",
            "meter '12345678': the key is not hex: an AES-128 key is 32 hexadecimal digits, written without 0x",
        ),
        (
            f"12345678={KEY.hex(':')}",
            "the key is not hex: an AES-128 key is 32 hexadecimal digits (0-9, A-F) and nothing else: "
            "this one has ':' in it",
        ),
        (f"={KEY.hex()}", "Invalid value for --key: the 1st --key is not METER_ID=HEX"),
    ],
)
def test_a_malformed_key_is_refused_without_echoing_it(option: str, says: str) -> None:
    """A key that was not hex, or given without its meter, was refused with the option's text in
    the message: the key, a secret, went to the terminal and whatever logs it. Now the error names
    the meter (or which --key), never the key's digits."""
    result = CliRunner().invoke(
        app, ["decode", "wmbus", "--no-crcs", "--key", option, OMS_MODE5], env={"COLUMNS": "400"}
    )
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert KEY.hex()[:20] not in result.output.lower()


@pytest.mark.parametrize("name", ["W000001", "7700000", "770000011", "12-45678"])
def test_a_key_under_anything_but_an_identification_is_refused(name: str) -> None:
    """A technician gave the key under the meter's id in the gateway file (`W000001`), the name
    every other command knows it by: the telegram, matched by its 8-digit identification, found no
    key and said "no key was given for it", though one was. Now the key is refused up front, saying
    what it goes with."""
    result = CliRunner().invoke(
        app, ["decode", "wmbus", "--no-crcs", "--key", f"{name}={KEY.hex()}", OMS_MODE5], env={"COLUMNS": "400"}
    )
    assert result.exit_code == 2, result.output
    assert f"Invalid value for --key: meter '{name}': a key goes with the meter's identification" in result.output
    assert '"error"' not in result.output and KEY.hex() not in result.output.lower()


# A telegram as an iM871A logged it (test_wmbus_receiver.py's CAPTURED[1], a Kamstrup C1 telegram
# with an encrypted ELL): the whole HCI message, and its payload, the telegram from its C-field on.
IM871A_MESSAGE = "a5820321442d2c952742761b168d206d82c40222942c7a5414f7be5ea4411ebab435fe4995ff91"
IM871A_PAYLOAD = IM871A_MESSAGE[8:-4]


def test_bytes_from_an_im871a_log_decode_with_receiver_im871a_and_are_refused_saying_so_without() -> None:
    """The iM871A passes a telegram on without its L-field (and its CRCs): pasted from its log, the
    bytes were refused for a length their first byte, the C-field, did not announce, and nothing said
    how to decode them. With --receiver im871a they decode up to the meter's key (none given here),
    its whole HCI message too; without, the refusal says to give it."""
    runner = CliRunner()
    for given in (IM871A_PAYLOAD, IM871A_MESSAGE):
        result = runner.invoke(app, ["decode", "wmbus", "--receiver", "im871a", given])
        assert result.exit_code == 1, result.output
        assert "no key" in json.loads(result.stdout)["error"] and "meter 76422795" in result.stdout
    refused = runner.invoke(app, ["decode", "wmbus", IM871A_PAYLOAD])
    assert refused.exit_code == 1
    error = json.loads(refused.stdout)["error"]
    assert error.startswith("telegram has 33 bytes, its L-field 0x44 announces") and "--receiver im871a" in error


def test_receiver_im871a_decodes_what_the_receiver_passed_on_as_the_telegram_itself() -> None:
    telegram = build_telegram(
        bytes.fromhex("0413D2040000"), manufacturer="ABC", id="55555555", version=1, medium="water",
        access_no=3, key=KEY, crcs=False,
    )  # fmt: skip
    key = f"55555555={KEY.hex()}"
    expected = CliRunner().invoke(app, ["decode", "wmbus", "--no-crcs", "--key", key, telegram.hex()])
    for given in (telegram[1:].hex(), build_indication(telegram, rssi=200).hex()):
        result = CliRunner().invoke(app, ["decode", "wmbus", "--receiver", "im871a", "--key", key, given])
        assert result.exit_code == expected.exit_code == 0, result.output
        assert json.loads(result.stdout) == json.loads(expected.stdout)
        assert json.loads(result.stdout)["records"][0]["value"] == 1.234


def test_receiver_im871a_takes_no_crcs_and_no_other_message() -> None:
    """The receiver removes the CRCs: --crcs with it is refused by name; an HCI message that is not a
    received telegram (a ping's answer) says so."""
    with_crcs = CliRunner().invoke(app, ["decode", "wmbus", "--receiver", "im871a", "--crcs", IM871A_PAYLOAD])
    assert with_crcs.exit_code == 2 and "--crcs" in with_crcs.output
    ping = build_message(DEVMGMT_ID, 0x02, b"").hex()
    result = CliRunner().invoke(app, ["decode", "wmbus", "--receiver", "im871a", ping])
    assert result.exit_code == 1
    assert "not a received telegram (RADIOLINK_MSG_WMBUSMSG_IND" in json.loads(result.stdout)["error"]
