"""``aquami decode mbus|wmbus|modbus``: decode frames given as hex, one JSON object per line.

Frames come as arguments or, with none, one per line on standard input (spaces allowed). A frame that
cannot be decoded prints ``{"error": ..., "input": ...}`` on its own line (a long frame's input its
first 32 hex digits and its size: aquami.excerpt); the others still decode, and the exit status is 1
if any failed.
"""

from __future__ import annotations

import enum
import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import typer

from aquami.cli_params import PARAM_OPTION
from aquami.cli_text import checked_text
from aquami.excerpt import frame_excerpt


def _frames_from(arguments: list[str]) -> Iterable[str]:
    if arguments:
        yield from arguments
        return
    for line in sys.stdin:
        if line.strip():
            yield line


def _hex_to_bytes(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def _not_finite(value: Any, path: str = "") -> str | None:
    """Where in a decoded frame a number is NaN or infinite (``volume_m3 = inf``), if anywhere."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path or 'value'} = {value!r}"
    items: Iterable[tuple[str, Any]] = ()
    if isinstance(value, dict):
        items = ((f"{path}.{key}" if path else str(key), item) for key, item in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    for where, item in items:
        found = _not_finite(item, where)
        if found is not None:
            return found
    return None


def decode_lines(frames: Iterable[str], decode: Callable[[bytes], dict[str, Any]], *, hint: str = "") -> int:
    """Decode every frame, print one JSON line each, and return the exit status (1 if any failed).

    A frame that decodes to a number JSON cannot carry (an overflow to infinity: a count times a
    ``--param`` of 1e308 litres) fails like one that does not decode; ``hint`` says what to check."""
    from firmware_protocols.errors import DecodeError

    failed = False
    for text in frames:
        try:
            result = decode(_hex_to_bytes(text))
        except (DecodeError, ValueError) as error:
            failed = True
            result = {"error": str(error), "input": frame_excerpt(text)}
        else:
            beyond = _not_finite(result)
            if beyond is not None:
                failed = True
                result = {"error": f"{beyond}: out of the range of a JSON number{hint}", "input": frame_excerpt(text)}
        sys.stdout.write(json.dumps(result, allow_nan=False) + "\n")
    return 1 if failed else 0


#: A wireless meter's identification as its telegrams carry it (EN 13757-4: 4 BCD bytes; a few
#: manufacturers put hex digits in), the one name ``decode_telegram`` looks a key up by.
_IDENTIFICATION = re.compile(r"[0-9A-Fa-f]{8}")


def _meter_keys(items: list[str]) -> dict[str, bytes]:
    """Each ``--key METER_ID=HEX`` as the key its meter's telegrams are opened with. A key is a secret:
    an error names the meter, never the key's text. One meter given two different keys is refused
    (before, the last one won silently); the same key again is only said twice."""
    keys: dict[str, bytes] = {}
    given: dict[str, tuple[str, bytes]] = {}  # by the id as telegrams are matched to it: in either case
    for number, item in enumerate(items, 1):
        meter_id, sep, hex_key = item.partition("=")
        meter_id = meter_id.strip()
        if not sep or not meter_id:  # no meter to name; the text may be the key itself, so it is not shown
            raise typer.BadParameter(
                f"the {_ordinal(number)} --key is not METER_ID=HEX (not shown: it may hold a key)", param_hint="--key"
            )
        try:
            secret = _hex_to_bytes(hex_key)
        except ValueError:  # said as a gateway's file says it, not Python's "fromhex() arg at position 1"
            from firmware_protocols.wmbus.keys import why_not_an_aes_key  # the CLI starts without construct

            why = why_not_an_aes_key(hex_key)
            raise typer.BadParameter(f"meter {meter_id!r}: the key is not hex: {why}", param_hint="--key") from None
        if len(secret) != 16:  # refused once here, not again at every telegram of the meter
            raise typer.BadParameter(
                f"meter {meter_id!r}: the key has {len(secret)} bytes; AES-128 takes 16 (32 hex digits)",
                param_hint="--key",
            )
        if not _IDENTIFICATION.fullmatch(meter_id):  # never matched by a telegram: said, not a silent miss
            raise typer.BadParameter(
                f"meter {meter_id!r}: a key goes with the meter's identification, the 8 digits its "
                "telegrams carry (a gateway file's `id`, such as 77000001), not its meter_id",
                param_hint="--key",
            )
        earlier = given.setdefault(meter_id.upper(), (meter_id, secret))
        if earlier[1] != secret:
            same = f"meter {meter_id!r}" if earlier[0] == meter_id else f"meters {earlier[0]!r} and {meter_id!r}"
            raise typer.BadParameter(f"{same}: given two different keys; give one", param_hint="--key")
        keys[meter_id] = secret
    return keys


class Receiver(enum.StrEnum):
    """Where wM-Bus bytes were copied from, when not a telegram as on air (from its L-field)."""

    IM871A = "im871a"


#: What a refusal adds when the bytes decode as an iM871A's (the telegram without its L-field).
_IM871A_HINT = (
    "; these bytes decode as an iM871A receiver's, the telegram from its C-field on, without its "
    "L-field: give --receiver im871a"
)


def _wmbus_decoder(
    keys: Mapping[str, bytes], crcs: bool | None, receiver: Receiver | None
) -> Callable[[bytes], dict[str, Any]]:
    """How ``decode wmbus`` decodes each telegram's bytes. An iM871A leaves the L-field out of the
    telegrams it passes on (its HCI message's payload starts at the C-field), and its CRCs: with
    ``--receiver im871a`` such bytes, or the whole HCI message, decode; without it, bytes that fail
    as a telegram but decode as an iM871A's are refused saying so. They are not taken silently: a
    telegram whose L-field the radio garbled would decode as another telegram."""
    from firmware_protocols.wmbus import decode_telegram
    from firmware_protocols.wmbus.errors import DecodeError, KeyMissingError
    from firmware_protocols.wmbus.receiver import indication_telegram, logged_telegram

    if receiver is Receiver.IM871A:
        return lambda data: decode_telegram(logged_telegram(data), keys, crcs=False)

    def as_im871a(data: bytes) -> bool:
        try:
            decode_telegram(indication_telegram(data), keys, crcs=False)
        except KeyMissingError:  # decoded up to its encryption: a key missing or wrong
            return True
        except DecodeError:
            return False
        return True

    def decode(data: bytes) -> dict[str, Any]:
        try:
            return decode_telegram(data, keys, crcs=crcs)
        except DecodeError as error:
            if crcs is not True and as_im871a(data):
                raise DecodeError(f"{error}{_IM871A_HINT}") from error
            raise

    return decode


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def register(app: typer.Typer) -> None:
    decode_app = typer.Typer(help="Decode meter frames (hex) into normalised JSON, one object per line.")

    @decode_app.command("mbus")
    def mbus(frames: list[str] = typer.Argument(None, help="Wired M-Bus frames as hex (default: stdin).")) -> None:
        """Wired M-Bus (EN 13757-2 link layer, EN 13757-3 application layer)."""
        from firmware_protocols.mbus import decode_frame

        raise typer.Exit(decode_lines(_frames_from(frames or []), decode_frame))

    @decode_app.command("wmbus")
    def wmbus(
        frames: list[str] = typer.Argument(None, help="Wireless M-Bus telegrams as hex (default: stdin)."),
        key: list[str] = typer.Option(
            [],
            "--key",
            callback=checked_text("--key"),
            help=(
                "METER_ID=HEX: a meter's identification (the 8 digits its telegrams carry, e.g. 77000001) "
                "and its AES-128 key; repeat per meter."
            ),
        ),
        crcs: bool | None = typer.Option(
            None,
            "--crcs/--no-crcs",
            help="Link-layer CRCs present or already removed (default: present, format from the length).",
        ),
        receiver: Receiver | None = typer.Option(
            None,
            "--receiver",
            help=(
                "im871a: bytes copied from an IMST iM871A's log, the telegram from its C-field on (the "
                "receiver leaves the L-field out and removes the CRCs), or its whole HCI message (A5 ...)."
            ),
        ),
    ) -> None:
        """Wireless M-Bus (EN 13757-4) with OMS security modes 5 and 7."""
        if receiver is not None and crcs:
            raise typer.BadParameter(
                f"an {receiver.value} removes the link-layer CRCs: --crcs does not go with --receiver",
                param_hint="--crcs",
            )
        keys = _meter_keys(key)
        raise typer.Exit(decode_lines(_frames_from(frames or []), _wmbus_decoder(keys, crcs, receiver)))

    @decode_app.command("modbus")
    def modbus(
        registers: list[str] = typer.Argument(None, help="Register blocks as hex (default: stdin)."),
        profile: str = typer.Option(
            ..., "--profile", callback=checked_text("--profile"), help="Meter profile name, e.g. smart_water_meter."
        ),
        param: list[str] = PARAM_OPTION,
    ) -> None:
        """Modbus register blocks through a meter profile (registers as big-endian 16-bit words)."""
        from aquami.cli_params import profile_parameters
        from firmware_protocols.modbus import load_profile
        from firmware_protocols.modbus.profile import ProfileError

        try:
            meter_profile = load_profile(profile, profile_parameters(param))
        except ProfileError as error:
            raise typer.BadParameter(str(error), param_hint="--profile/--param") from None
        hint = " (check --param)" if param else ""
        raise typer.Exit(decode_lines(_frames_from(registers or []), meter_profile.decode_bytes, hint=hint))

    app.add_typer(decode_app, name="decode")
