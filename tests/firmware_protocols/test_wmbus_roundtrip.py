"""Properties: build then decode gives the values built; parse then encode gives the bytes parsed.

Telegrams cover both frame formats, with and without link-layer CRCs, short and long TPL headers,
plain and encrypted (mode 5, mode 7 with AFL and MAC, ELL AES-CTR). Records are written from explicit
DIF/VIF bytes (EN 13757-3), so the expected values do not come from the code under test.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from construct import Container
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_protocols.mbus.header import MEDIUM, MEDIUM_CODE
from firmware_protocols.wmbus import (
    AuthenticationError,
    UnsupportedSecurityError,
    build_telegram,
    decode_telegram,
    encode_telegram,
    make_telegram,
    parse_telegram,
    telegram_address,
)
from firmware_protocols.wmbus import tpl as tpl_layer
from firmware_protocols.wmbus.afl import MAC_LENGTH
from firmware_protocols.wmbus.ell import payload_crc
from firmware_protocols.wmbus.link import enframe

letters = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3)
identifications = st.text(alphabet="0123456789", min_size=8, max_size=8)
mediums = st.sampled_from(sorted(MEDIUM.values()))
keys = st.binary(min_size=16, max_size=16)


@st.composite
def volume_records(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, float]]]:
    """Records as bytes and the (storage, volume in m3) each must decode to."""
    encoded, expected = [], []
    for _ in range(draw(st.integers(0, 8))):
        storage = draw(st.integers(0, 1))
        if draw(st.booleans()):
            raw = draw(st.integers(0, 2**31 - 1))  # DIF 04: 32-bit integer; VIF 13: litres
            encoded.append(bytes([0x04 | storage << 6, 0x13]) + raw.to_bytes(4, "little"))
            expected.append((storage, raw / 10**3))
        else:
            digits = draw(st.integers(0, 99_999_999))  # DIF 0C: 8-digit BCD; VIF 14: 10 litres
            encoded.append(bytes([0x0C | storage << 6, 0x14]) + bytes.fromhex(f"{digits:08d}")[::-1])
            expected.append((storage, digits / 10**2))
    return b"".join(encoded), expected


@st.composite
def telegram_options(draw: st.DrawFn) -> dict[str, Any]:
    security = draw(st.sampled_from(["none", "mode5", "mode7", "ell"]))
    options: dict[str, Any] = dict(
        manufacturer=draw(letters),
        id=draw(identifications),
        version=draw(st.integers(0, 255)),
        medium=draw(mediums),
        access_no=draw(st.integers(0, 255)),
        status=draw(st.integers(0, 255)),
        c_field=draw(st.sampled_from([0x44, 0x46, 0x08])),
        frame_format=draw(st.sampled_from(["A", "B"])),
        crcs=draw(st.booleans()),
        header=draw(st.sampled_from(["short", "long"])),
        security_mode={"none": 0, "mode5": 5, "mode7": 7, "ell": 0}[security],
    )
    if security != "none":
        options["key"] = draw(keys)
    if security == "mode7":
        options["message_counter"] = draw(st.integers(0, 2**32 - 1))
    if security == "ell":
        options["ell"] = "aes_ctr"
        options["session_number"] = draw(st.integers(0, 2**29 - 1))
    return options


@settings(max_examples=300, deadline=None)
@given(telegram_options(), volume_records())
def test_build_then_decode_gives_the_values(options: dict[str, Any], records: tuple[bytes, list]) -> None:
    record_bytes, expected = records
    data = build_telegram(record_bytes, **options)
    key = options.get("key")
    keys = {options["id"]: key} if key else {}
    crcs = options["crcs"]
    result = decode_telegram(data, keys, crcs=crcs, frame_format=options["frame_format"] if crcs else None)

    for field in ("manufacturer", "id", "version", "medium", "access_no", "status", "c_field", "security_mode"):
        assert result[field] == options[field], field
    assert result["length"] == data[0]
    assert result["crcs"] is crcs
    assert result["frame_format"] == (options["frame_format"] if crcs else None)
    assert result["ci_field"] == (0x72 if options["header"] == "long" else 0x7A)
    if options["header"] == "long":
        assert result["meter"]["id"] == options["id"]
    assert (result["ell"] is not None) == ("ell" in options)
    assert (result["afl"] is not None) == (options["security_mode"] == 7)
    decoded = [(r["storage"], r["value"]) for r in result["records"]]
    assert decoded == expected
    assert all((r["quantity"], r["unit"]) == ("volume", "m3") for r in result["records"])
    if crcs:  # telegrams with CRCs are recognised without being told
        auto = decode_telegram(data, keys)
        assert (auto["frame_format"], auto["crcs"]) == (options["frame_format"], True)


@settings(max_examples=200, deadline=None)
@given(telegram_options(), volume_records())
def test_parse_then_encode_gives_the_same_bytes(options: dict[str, Any], records: tuple[bytes, list]) -> None:
    data = build_telegram(records[0], **options)
    key = options.get("key")
    keys = {options["id"]: key} if key else {}
    crcs = options["crcs"]
    parsed = parse_telegram(data, keys, crcs=crcs, frame_format=options["frame_format"] if crcs else None)
    assert encode_telegram(parsed, key) == data


@st.composite
def afl_headers(draw: st.DrawFn) -> bytes:
    """An unfragmented AFL (CI 0x90) with any optional fields; unverified without mode 7."""
    flags = draw(st.integers(0, 0x3F)) & ~0x20  # MCLP MLP MCRP MACP KIP reserved-8, no MF
    fcl = flags << 8 | 0x2000  # message control always present (it gives the MAC length)
    authentication_type = draw(st.sampled_from([0, 3, 4, 5, 6, 7]))
    fields = fcl.to_bytes(2, "little") + bytes([draw(st.integers(0, 0x7F)) & 0x70 | authentication_type])
    if fcl & 0x0200:
        fields += draw(st.binary(min_size=2, max_size=2))  # KI
    if fcl & 0x0800:
        fields += draw(st.binary(min_size=4, max_size=4))  # MCR
    if fcl & 0x0400:
        fields += draw(st.binary(min_size=MAC_LENGTH[authentication_type], max_size=MAC_LENGTH[authentication_type]))
    if fcl & 0x1000:
        fields += draw(st.binary(min_size=2, max_size=2))  # ML
    return bytes([0x90, len(fields)]) + fields


@st.composite
def ell_headers(draw: st.DrawFn, rest: bytes) -> bytes:
    """No ELL or an unencrypted ELL I to IV before ``rest`` (with its payload CRC where the form has one)."""
    ci = draw(st.sampled_from([None, 0x8C, 0x8D, 0x8E, 0x8F]))
    if ci is None:
        return b""
    ell = bytes([ci]) + draw(st.binary(min_size=2, max_size=2))  # CC, ACC
    if ci in (0x8E, 0x8F):
        manufacturer = draw(st.integers(1, 26)) << 10 | 1 << 5 | 1
        ell += manufacturer.to_bytes(2, "little") + bytes.fromhex(draw(identifications)) + bytes(2)
    if ci in (0x8D, 0x8F):
        session = draw(st.integers(0, 2**29 - 1))  # ENC = 0: not encrypted
        ell += session.to_bytes(4, "little") + payload_crc(rest)
    return ell


@st.composite
def plain_telegrams(draw: st.DrawFn) -> tuple[bytes, bool]:
    """Unencrypted telegrams written byte by byte: any C-field, version, device type, header bits."""
    manufacturer = draw(st.integers(1, 26)) << 10 | draw(st.integers(1, 26)) << 5 | draw(st.integers(1, 26))
    identification = bytes.fromhex(draw(identifications))
    link = bytes([draw(st.integers(0, 255))]) + manufacturer.to_bytes(2, "little") + identification
    link += bytes([draw(st.integers(0, 255)), draw(st.integers(0, 255))])
    ci = draw(st.sampled_from([0x78, 0x7A, 0x72]))
    header = b""
    if ci != 0x78:
        # configuration field with security mode 0 and any other bits
        signature = draw(st.integers(0, 0xFFFF)) & ~0x1F00
        header = bytes([draw(st.integers(0, 255)), draw(st.integers(0, 255))]) + signature.to_bytes(2, "little")
        if ci == 0x72:
            header = link[3:7] + link[1:3] + link[7:9] + header
    application = draw(st.binary(max_size=150))  # headers take at most 69 bytes: L-field <= 255
    tpl = bytes([ci]) + header + application
    if draw(st.booleans()):
        tpl = draw(afl_headers()) + tpl
    body = link + draw(ell_headers(tpl)) + tpl
    frame = bytes([len(body)]) + body
    crcs = draw(st.booleans())
    return enframe(frame, crcs, draw(st.sampled_from(["A", "B"])) if crcs else None), crcs


@settings(max_examples=300, deadline=None)
@given(plain_telegrams())
def test_parse_then_encode_written_telegrams(telegram: tuple[bytes, bool]) -> None:
    data, crcs = telegram
    # Told whether CRCs are present: without them, a frame whose last two bytes happen to be a
    # valid format B CRC would be taken for one (odds 1 in 65536).
    parsed = parse_telegram(data, {}, crcs=crcs)
    assert encode_telegram(parsed) == data


def test_builder_docstring_example() -> None:
    import doctest

    import firmware_protocols.wmbus.build as build_module

    result = doctest.testmod(build_module)
    assert result.attempted > 0 and result.failed == 0


METER7: dict[str, Any] = dict(manufacturer="ELS", id="12345678", version=1, medium="water", access_no=5)


def _mode7_in_the_clear(records: bytes, key: bytes, counter: int, header: Any) -> bytes:
    """A mode 7 telegram whose configuration field announces no encrypted block (N = 0): the
    records travel in the clear, authenticated by the AFL MAC (EN 13757-7:2018 7.5, 9)."""
    telegram = make_telegram(records, **METER7, security_mode=7, message_counter=counter, header=header, crcs=False)
    fields = {k: v for k, v in telegram.tpl.header.items() if not k.startswith("_")}
    configuration = tpl_layer.configuration_json(tpl_layer.configuration_of(telegram.tpl.header))
    fields["signature"] = tpl_layer.signature_of({**configuration, "encrypted_blocks": 0})
    tpl = Container(ci_field=telegram.tpl.ci_field, header=Container(**fields))
    return encode_telegram(dataclasses.replace(telegram, tpl=tpl, application=records), key)


@settings(max_examples=100, deadline=None)
@given(keys, st.integers(0, 2**32 - 1), st.sampled_from(["short", "long"]), volume_records())
def test_mode7_without_encrypted_blocks_decodes(key: bytes, counter: int, header: str, records: tuple) -> None:
    """The builder encodes mode 7 with N = 0 (nothing to encrypt); the decoder must read it back,
    with the MAC still checked, rather than report a wrong key for the empty 2F 2F check."""
    record_bytes, expected = records
    data = _mode7_in_the_clear(record_bytes, key, counter, header)
    result = decode_telegram(data, {"12345678": key}, crcs=False)
    assert result["security_mode"] == 7 and result["configuration"]["encrypted_blocks"] == 0
    assert [(r["storage"], r["value"]) for r in result["records"]] == expected
    if record_bytes:
        altered = data[:-1] + bytes([data[-1] ^ 0x01])
        with pytest.raises(AuthenticationError):
            decode_telegram(altered, {"12345678": key}, crcs=False)


@settings(max_examples=50, deadline=None)
@given(keys, st.integers(0, 2**32 - 1), st.binary(min_size=12, max_size=12), volume_records())
def test_mode7_with_a_gmac_is_refused_as_unsupported_and_never_rewritten(
    key: bytes, counter: int, gmac: bytes, records: tuple
) -> None:
    """AFL authentication type 8 is AES-GMAC-128 with a 12-byte MAC (EN 13757-7:2018 6.3.3), which
    this decoder cannot verify: it refuses the telegram as unsupported (taken unchecked, its readings
    could be altered by flipping ciphertext bits), where it used to reject it as "altered" after
    checking it as a truncated AES-CMAC. Encoding keeps the meter's MAC instead of writing a CMAC."""
    record_bytes, _ = records
    telegram = make_telegram(record_bytes, **METER7, security_mode=7, message_counter=counter, crcs=False)
    assert telegram.afl is not None
    mcl = Container({**{k: v for k, v in telegram.afl.mcl.items() if not k.startswith("_")}, "authentication_type": 8})
    afl = Container({**{k: v for k, v in telegram.afl.items() if not k.startswith("_")}, "mcl": mcl, "mac": gmac})
    data = encode_telegram(dataclasses.replace(telegram, afl=afl), key)
    # L C M A (10), AFL CI, AFLL, FCL (2), MCL, MCR (4), then the 12-byte MAC: the meter's GMAC, as given
    assert data[10] == 0x90 and data[14] & 0x0F == 8
    assert data[19:31] == gmac
    with pytest.raises(UnsupportedSecurityError, match="AES-GMAC"):
        decode_telegram(data, {"12345678": key}, crcs=False)


@settings(max_examples=30, deadline=None)
@given(keys, st.integers(0, 2**32 - 1), volume_records())
def test_mode7_without_key_derivation_refuses_an_afl_mac_it_cannot_verify(
    key: bytes, counter: int, records: tuple
) -> None:
    """Mode 7 with KDF 0 uses the key as it is and derives no MAC key, so an AFL MAC on such a
    telegram cannot be checked: the telegram is refused, not taken unverified (it was decoded as if
    the MAC were fine): unauthenticated, as OMS security profile B has it (test_wmbus_mode7.py)."""
    record_bytes, _ = records
    telegram = make_telegram(record_bytes, **METER7, security_mode=7, message_counter=counter, crcs=False)
    assert telegram.afl is not None and telegram.afl.mac is not None and telegram.configuration_extension is not None
    no_kdf = Container({**telegram.configuration_extension, "kdf_selection": 0})
    data = encode_telegram(dataclasses.replace(telegram, configuration_extension=no_kdf), key)
    with pytest.raises(AuthenticationError, match="KDF 0"):
        decode_telegram(data, {"12345678": key}, crcs=False)


@settings(max_examples=100, deadline=None)
@given(telegram_options(), volume_records())
def test_the_sender_is_read_without_a_key(options: dict[str, Any], records: tuple[bytes, list]) -> None:
    """A receiver tells its meters' telegrams from its neighbours' before it opens any: the address
    comes from the headers in the clear, with no key."""
    data = build_telegram(records[0], **options)
    crcs = options["crcs"]
    address = telegram_address(data, crcs=crcs, frame_format=options["frame_format"] if crcs else None)
    assert (address.manufacturer, address.id, address.version, address.medium) == tuple(
        options[k] for k in ("manufacturer", "id", "version", "medium")
    )
    assert address.device_type == MEDIUM_CODE[options["medium"]]


def test_the_long_tpl_header_names_the_sender_where_it_is_in_the_clear() -> None:
    """A long TPL header (CI 0x72) names the meter itself; the link layer may name a repeater or
    radio adapter (EN 13757-7:2018 7.4). The key is looked up by the TPL's address: so is the sender."""
    telegram = make_telegram(b"", **METER7, header="long", crcs=False)
    link = Container({**telegram.link, "id": "99999999", "medium": "radio_converter_meter_side"})
    data = encode_telegram(dataclasses.replace(telegram, link=link))
    address = telegram_address(data, crcs=False)
    assert (address.id, address.medium) == ("12345678", "water")


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["mode5", "mode7", "ell", "none"]),
    st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=12),
    st.integers(0, 15),
    keys,
    st.sampled_from(["short", "long"]),
)
def test_the_decoder_says_which_records_travelled_encrypted(
    security: str, litres: list[int], blocks: int, key: bytes, header: str
) -> None:
    """Only the first N blocks of a mode 5 or 7 TPL are encrypted (EN 13757-7:2018 7.5); records
    after them travel in the clear, and were returned mixed with the decrypted ones, nothing saying
    which: a forger lowered N and wrote a volume in the clear. ``encrypted_records`` counts the
    records, from the first, that end inside the encrypted blocks (all of them behind an ELL
    encrypted with AES-CTR, none in mode 0)."""
    records = [bytes([0x04, 0x13]) + value.to_bytes(4, "little") for value in litres]  # 6 bytes each
    options: dict[str, Any] = dict(METER7, header=header, crcs=False)
    if security in ("mode5", "mode7"):
        options |= dict(security_mode=5 if security == "mode5" else 7, message_counter=7)
    elif security == "ell":
        options["ell"] = "aes_ctr"
    telegram = make_telegram(b"".join(records), **options)
    if security in ("mode5", "mode7"):  # N lowered: what follows block N goes in the clear
        configuration = tpl_layer.configuration_json(tpl_layer.configuration_of(telegram.tpl.header))
        n = min(blocks, configuration["encrypted_blocks"])
        fields = {k: v for k, v in telegram.tpl.header.items() if not k.startswith("_")}
        fields["signature"] = tpl_layer.signature_of({**configuration, "encrypted_blocks": n})
        tpl = Container(ci_field=telegram.tpl.ci_field, header=Container(**fields))
        telegram = dataclasses.replace(telegram, tpl=tpl)
    data = encode_telegram(telegram, key if security != "none" else None)
    result = decode_telegram(data, {"12345678": key}, crcs=False)
    assert [r["value"] for r in result["records"]] == [value / 1000 for value in litres]
    if security in ("mode5", "mode7"):
        ends = [2 + 6 * (i + 1) for i in range(len(records))]  # each record's end, after 2F 2F
        assert result["encrypted_records"] == sum(end <= 16 * n for end in ends)
    else:
        assert result["encrypted_records"] == (len(records) if security == "ell" else 0)
