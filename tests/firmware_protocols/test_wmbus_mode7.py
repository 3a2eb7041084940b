"""Security mode 7 is authenticated or refused: OMS Vol. 2 security profile B (EN 13757-7:2018
clause 9 with the AFL of 6.3) needs an AFL with message counter and AES-CMAC, and KDF-A.

The forgeries are made as someone without the key would: from a genuine telegram's bytes, taking
the AFL's MAC or counter away, or the whole AFL, or selecting KDF 0. Each decoded before, its
records unauthenticated, and the gateway took them as the meter's reading.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from construct import Container
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_protocols.wmbus import AuthenticationError, decode_telegram, encode_telegram, make_telegram
from firmware_protocols.wmbus.afl import AuthenticationFragmentationLayer

METER: dict[str, Any] = dict(manufacturer="KAM", id="12345678", version=1, medium="water")
keys = st.binary(min_size=16, max_size=16)
counters = st.integers(0, 2**32 - 1)
# an OMS water meter's records: date-time (04 6D), error flags (02 FD 17), volume (04 13, litres)
volumes = st.integers(0, 2**31 - 1).map(
    lambda litres: bytes.fromhex("046D2A0B2135 02FD170000 0413") + litres.to_bytes(4, "little")
)


def _genuine(records: bytes, key: bytes, counter: int, access_no: int = 9) -> bytes:
    telegram = make_telegram(
        records, **METER, access_no=access_no, security_mode=7, message_counter=counter, crcs=False
    )
    return encode_telegram(telegram, key)


def _with_afl(genuine: bytes, afl: bytes) -> bytes:
    """``genuine`` (no CRCs, no ELL) with its AFL replaced by ``afl`` (b"": none), the L-field recounted."""
    tpl = genuine[12 + genuine[11] :]
    body = genuine[1:10] + afl + tpl
    return bytes([len(body)]) + body


def _afl_without(genuine: bytes, field: str) -> bytes:
    """The genuine AFL with its message counter or MAC left out (its FCL flag cleared too)."""
    body = AuthenticationFragmentationLayer.parse(genuine[10:]).body
    flag = {"message_counter": "message_counter_present", "mac": "mac_present"}[field]
    fcl = Container({k: v for k, v in body.fcl.items() if not k.startswith("_")} | {flag: False})
    fields = {k: v for k, v in body.items() if not k.startswith("_")} | {"fcl": fcl, field: None}
    return AuthenticationFragmentationLayer.build({"body": fields})


@settings(max_examples=40, deadline=None)
@given(keys, counters, volumes, st.sampled_from(["no AFL", "no MAC", "no message counter"]))
def test_mode7_without_what_authenticates_it_is_refused(key: bytes, counter: int, records: bytes, cut: str) -> None:
    genuine = _genuine(records, key, counter)
    assert decode_telegram(genuine, {"12345678": key}, crcs=False)["security_mode"] == 7
    afl = {
        "no AFL": b"",
        "no MAC": _afl_without(genuine, "mac"),
        "no message counter": _afl_without(genuine, "message_counter"),
    }[cut]
    forged = _with_afl(genuine, afl)
    with pytest.raises(AuthenticationError, match=r"meter 12345678: security mode 7 .*unauthenticated"):
        decode_telegram(forged, {"12345678": key}, crcs=False)


def test_a_forged_volume_after_fewer_encrypted_blocks_with_the_mac_stripped_is_refused() -> None:
    """The review's proof: one encrypted block announced instead of two, the volume's upper bytes
    written in the clear after it, the MAC taken away: 999,999.808 m3 was decoded as the meter's."""
    key = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
    genuine = _genuine(bytes.fromhex("046D2A0B2135 02FD170000 0413") + (123456).to_bytes(4, "little"), key, 4711)
    tpl = bytearray(genuine[12 + genuine[11] :])  # 7A ACC ST CFG CFG EXT | encrypted blocks
    cfg = int.from_bytes(tpl[3:5], "little")
    tpl[3:5] = ((cfg & ~0x00F0) | 0x10).to_bytes(2, "little")  # N = 1
    forged_tpl = bytes(tpl[:22]) + (999_999_999 >> 8).to_bytes(3, "little") + b"\x2f\x2f"
    no_mac = _afl_without(genuine, "mac")
    body = genuine[1:10] + no_mac + forged_tpl
    with pytest.raises(AuthenticationError, match="without a MAC"):
        decode_telegram(bytes([len(body)]) + body, {"12345678": key}, crcs=False)


@settings(max_examples=30, deadline=None)
@given(keys, counters, volumes, st.booleans())
def test_mode7_without_key_derivation_is_refused_with_or_without_an_afl(
    key: bytes, counter: int, records: bytes, keep_afl: bool
) -> None:
    """KDF 0 uses the key as it is and derives no MAC key: refused whether or not an AFL comes with it
    (without one it decoded, unauthenticated)."""
    telegram = make_telegram(records, **METER, access_no=1, security_mode=7, message_counter=counter, crcs=False)
    assert telegram.configuration_extension is not None
    no_kdf = Container({**telegram.configuration_extension, "kdf_selection": 0})
    data = encode_telegram(
        dataclasses.replace(telegram, configuration_extension=no_kdf, afl=telegram.afl if keep_afl else None), key
    )
    with pytest.raises(AuthenticationError, match="KDF 0"):
        decode_telegram(data, {"12345678": key}, crcs=False)
