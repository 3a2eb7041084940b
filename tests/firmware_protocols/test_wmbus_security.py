"""Crypto building blocks: AES-CMAC, OMS key derivation, IVs, the configuration field."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from firmware_protocols.wmbus import tpl
from firmware_protocols.wmbus.afl import AuthenticationFragmentationLayer, mac_input
from firmware_protocols.wmbus.ell import ctr_iv
from firmware_protocols.wmbus.kdf import DC_KENC_FROM_METER, DC_KMAC_FROM_METER, aes_cmac, derive_key
from firmware_protocols.wmbus.link import strip_format_b
from firmware_protocols.wmbus.security import cbc_decrypt, cbc_encrypt, mode5_iv, pad
from tests.firmware_protocols.test_wmbus_vectors import SENSOSTAR_B

RFC4493_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")


def test_aes_cmac_rfc4493_examples() -> None:
    assert aes_cmac(RFC4493_KEY, b"") == bytes.fromhex("bb1d6929e95937287fa37d129b756746")
    message = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    assert aes_cmac(RFC4493_KEY, message) == bytes.fromhex("070a16b46b4d4144f79bdd9dd04a287c")


def test_kdf_reproduces_a_real_meter_mac() -> None:
    """The Sensostar telegram (test_wmbus_vectors.py), CRCs removed: its AFL MAC is
    AES-CMAC(Kmac, MCL || MCR || TPL), Kmac derived from the meter key, MCR and the ID bytes."""
    frame = strip_format_b(bytes.fromhex(SENSOSTAR_B))
    key = bytes.fromhex("622b9656991ff0c1574c0950cf9278d1")
    afl = AuthenticationFragmentationLayer.parse(frame[13:]).body
    assert afl.message_counter == 0x00025E89
    kmac = derive_key(key, DC_KMAC_FROM_METER, afl.message_counter, frame[4:8])
    assert aes_cmac(kmac, mac_input(afl, frame[13 + 17 :]))[:8] == afl.mac == bytes.fromhex("3B0877D31DA840B1")
    kenc = derive_key(key, DC_KENC_FROM_METER, afl.message_counter, frame[4:8])
    first_block = cbc_decrypt(kenc, bytes(16), frame[13 + 17 + 6 : 13 + 17 + 6 + 16])
    assert first_block[:2] == b"\x2f\x2f"


def test_derivation_input_layout() -> None:
    """K_x = CMAC(K, DC || MCR (LE) || ID || 07 * 7): one block, computed here by hand."""
    key, counter, identification = bytes(range(16)), 0x01020304, bytes.fromhex("78563412")
    block = bytes([0x01, 0x04, 0x03, 0x02, 0x01, 0x78, 0x56, 0x34, 0x12]) + b"\x07" * 7
    assert derive_key(key, 0x01, counter, identification) == aes_cmac(key, block)


def test_mode5_iv_layout() -> None:
    address = bytes.fromhex("9315785634123303")  # M-field, ID, version, device type as sent
    assert mode5_iv(address, 0x2A) == address + b"\x2a" * 8


def test_ctr_iv_masks_repeater_bits() -> None:
    iv = ctr_iv(bytes(8), 0xFF, b"\x01\x02\x03\x04")
    assert iv == bytes(8) + bytes([0xFF & ~0x12]) + b"\x01\x02\x03\x04" + bytes(3)
    assert len(iv) == 16


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16), st.binary(max_size=100))
def test_cbc_round_trip(key: bytes, iv: bytes, plain: bytes) -> None:
    padded = pad(plain)
    assert len(padded) % 16 == 0 and padded.startswith(plain) and set(padded[len(plain) :]) <= {0x2F}
    assert cbc_decrypt(key, iv, cbc_encrypt(key, iv, padded)) == padded


def test_configuration_field_of_the_oms_example() -> None:
    # OMS mode 5 example: configuration 0x2520 -> S=1, mode 5, 2 blocks.
    configuration = tpl.ConfigurationField.parse(bytes([0x20, 0x25]))
    assert configuration.synchronous and not configuration.bidirectional
    assert (configuration.security_mode, configuration.encrypted_blocks) == (5, 2)


@given(st.integers(0, 0xFFFF))
def test_configuration_field_bits(signature: int) -> None:
    configuration = tpl.ConfigurationField.parse(signature.to_bytes(2, "little"))
    assert configuration.security_mode == (signature >> 8) & 0x1F
    assert configuration.encrypted_blocks == (signature >> 4) & 0x0F
    assert configuration.bidirectional == bool(signature & 0x8000)
    assert configuration.hop_counter == bool(signature & 0x0001)
    assert tpl.signature_of(configuration) == signature
