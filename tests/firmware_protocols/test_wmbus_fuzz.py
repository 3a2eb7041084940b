"""Fuzz: random and mutated telegrams raise DecodeError or decode; nothing else, and never hang.

Hanging is caught by a timeout on each whole test (pytest-timeout), far beyond what the hundreds of
examples take (about 2 s), so a loaded machine does not fail them: how fast decoding is, is measured
in benchmarks/bench_wmbus_decode.py, not asserted here.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aquami.commands.decode import Receiver, _wmbus_decoder
from firmware_protocols.errors import DecodeError
from firmware_protocols.wmbus import build_telegram, decode_telegram

KEY = bytes.fromhex("0102030405060708090A0B0C0D0E0F11")
RECORDS = bytes.fromhex("0413D20400000C1427048502046D32371F1502FD17000001FD0C03")
SEEDS = [
    # Real telegrams (sources in test_wmbus_vectors.py): OMS mode 5 example, Kamstrup ELL.
    bytes.fromhex("2E4493157856341233037A2A0020255923C95AAA26D1B2E7493B013EC4A6F6D3529B520EDFF0EA6DEFC99D6D69EBF3"),
    bytes.fromhex("2A442D2C998734761B168D2091D37CAC21E1D68CDAFFCD3DC452BD802913FF7B1706CA9E355D6C2701CC24"),
]
METER = dict(manufacturer="ELS", id="12345678", version=0x33, medium="gas", access_no=0x2A)
for _options in (
    dict(),
    dict(key=KEY),
    dict(key=KEY, security_mode=7, message_counter=9, frame_format="B"),
    dict(key=KEY, security_mode=0, ell="aes_ctr", crcs=False),
    dict(header="long", crcs=False),
):
    SEEDS.append(build_telegram(RECORDS, **METER, **_options))  # type: ignore[arg-type]
KEYS = {"12345678": KEY, "76348799": bytes.fromhex("28F64A24988064A079AA2C807D6102AE")}
HANG_GUARD_S = 120  # per test, all its examples


def _decode_or_decode_error(data: bytes) -> None:
    for crcs in (None, False):  # told nothing (a CRC-less telegram is then a CRC error), or told no CRCs
        try:
            result = decode_telegram(data, KEYS, crcs=crcs)
        except DecodeError:
            pass
        else:
            assert isinstance(result["records"], list)


@pytest.mark.timeout(HANG_GUARD_S)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _decode_or_decode_error(data)


@pytest.mark.timeout(HANG_GUARD_S)
@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=10, max_size=255))
def test_random_bytes_with_a_matching_l_field(body: bytes) -> None:
    _decode_or_decode_error(bytes([len(body)]) + body)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[position] = draw(st.integers(0, 255))
        elif kind == "insert":
            data.insert(position, draw(st.integers(0, 255)))
        elif kind == "delete" and data:
            del data[position]
        elif kind == "truncate":
            del data[position:]
    if draw(st.booleans()) and data:
        data[0] = len(data) - 1  # keep the L-field consistent so the mutation reaches the layers behind it
    return bytes(data)


@pytest.mark.timeout(HANG_GUARD_S)
@settings(max_examples=800, deadline=None)
@given(mutated())
def test_mutated_telegrams(data: bytes) -> None:
    _decode_or_decode_error(data)


@pytest.mark.timeout(HANG_GUARD_S)
@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300) | mutated().map(lambda data: data[1:]), st.sampled_from([None, Receiver.IM871A]))
def test_decode_commands_decoder_random_and_l_field_less_bytes(data: bytes, receiver: Receiver | None) -> None:
    """``aquami decode wmbus``'s decoding, with --receiver im871a or without (then trying the bytes
    as an iM871A's for its refusal's hint): a decoded telegram or a DecodeError, nothing else."""
    try:
        result = _wmbus_decoder(KEYS, None, receiver)(data)
    except DecodeError:
        return
    assert isinstance(result["records"], list)
