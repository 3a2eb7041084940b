"""A wireless M-Bus telegram layer by layer: parse (and open) it, or seal and encode it again.

:func:`parse_telegram` goes outside in: link layer CRC blocks, link header, extended link layer
(AES-CTR), authentication and fragmentation layer, transport layer (AES-CBC, modes 5 and 7). The
result, :class:`Telegram`, holds each layer's header as parsed and the application data in the
clear, so :func:`encode_telegram` with the same key gives back the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from construct import Construct, ConstructError, Container, StreamError

from firmware_protocols.mbus.header import medium_code
from firmware_protocols.wmbus import afl as afl_layer
from firmware_protocols.wmbus import ell as ell_layer
from firmware_protocols.wmbus import tpl as tpl_layer
from firmware_protocols.wmbus.errors import (
    AuthenticationError,
    DecodeError,
    KeyMissingError,
    TruncatedTelegramError,
    UnknownCiError,
    UnsupportedSecurityError,
    WrongKeyError,
)
from firmware_protocols.wmbus.kdf import DC_KENC_FROM_METER, DC_KMAC_FROM_METER, aes_cmac, derive_key
from firmware_protocols.wmbus.link import LINK_HEADER_SIZE, MAX_L_FIELD, FrameFormat, LinkHeader, enframe, unframe
from firmware_protocols.wmbus.security import (
    BLOCK,
    ZERO_IV,
    cbc_decrypt,
    cbc_encrypt,
    check_verification,
    mode5_iv,
)

_TPL_HEADER_SIZE = {tpl_layer.CI_SHORT: 5, tpl_layer.CI_LONG: 13, tpl_layer.CI_NONE: 1}
_AFL_CI = 0x90


@dataclass(frozen=True, slots=True)
class Telegram:
    """One telegram: each layer's parsed header and the application data (records) in the clear.

    The containers may be shared with a parse cache: treat them as read-only, and build a new
    telegram (``dataclasses.replace`` with fresh containers) to change one.
    """

    frame_format: FrameFormat | None  # None: CRCs were already removed, the format is unknown
    crcs: bool
    link: Container  # LinkHeader; its length is recomputed when encoding
    ell: Container | None  # one of ell.EllI .. ell.EllIV
    afl: Container | None  # the body of afl.AuthenticationFragmentationLayer
    tpl: Container  # tpl.ShortTpl, tpl.LongTpl or tpl.NoneTpl
    configuration_extension: Container | None  # mode 7 only
    application: bytes  # the decrypted blocks (2F 2F first), then what travelled in the clear

    @property
    def meter_id(self) -> str:
        """The meter the records belong to: the long TPL header's, else the link layer's."""
        return str(self.tpl.header.identification) if self.tpl.ci_field == tpl_layer.CI_LONG else str(self.link.id)

    @property
    def security_mode(self) -> int:
        if self.tpl.ci_field == tpl_layer.CI_NONE:
            return tpl_layer.SECURITY_MODE_NONE
        return int(tpl_layer.configuration_of(self.tpl.header).security_mode)

    @property
    def encrypted_length(self) -> int:
        """How many bytes of :attr:`application`, from the first, travelled encrypted: all of them
        behind an extended link layer encrypted with AES-CTR (EN 13757-4:2019), else the N blocks the
        configuration field announces in security modes 5 and 7 (EN 13757-7:2018 7.5, 9), else none.
        Whatever follows the N blocks travelled in the clear."""
        if self.ell is not None and "sn" in self.ell and self.ell.sn.encryption == ell_layer.ENC_AES_CTR:
            return len(self.application)
        if self.security_mode in (tpl_layer.SECURITY_MODE_AES_CBC_IV, tpl_layer.SECURITY_MODE_AES_CBC_NO_IV):
            return BLOCK * int(tpl_layer.configuration_of(self.tpl.header).encrypted_blocks)
        return 0


def _parse(construct: Construct, data: bytes, what: str) -> Any:
    try:
        return construct.parse(data)
    except StreamError as error:
        raise TruncatedTelegramError(f"{what}: telegram ends inside it ({error})") from None
    except ConstructError as error:
        raise DecodeError(f"{what}: {error}") from None


@lru_cache(maxsize=4096)
def _link_header(data: bytes) -> Container:
    """The parsed link header, cached: a receiver hears the same meters' headers again and again."""
    return _parse(LinkHeader, data, "link header")


def _key_for(keys: Mapping[str, bytes], meter_id: str, purpose: str) -> bytes:
    key = keys.get(meter_id)
    if key is None:
        key = keys.get(meter_id.upper(), keys.get(meter_id.lower()))
    if key is None:
        raise KeyMissingError(f"meter {meter_id}: {purpose} is encrypted and no key was given for it")
    if len(key) != 16:
        raise KeyMissingError(f"meter {meter_id}: key has {len(key)} bytes, AES-128 needs 16")
    return bytes(key)


def _link_address(frame_or_header: bytes) -> bytes:
    """The 8 bytes M-field and A-field as sent, from a telegram starting at its L-field."""
    return frame_or_header[2:LINK_HEADER_SIZE]


def _tpl_address(tpl_bytes: bytes) -> bytes:
    """M-field and A-field order (M, ID, version, device type) from a long TPL header as sent."""
    return tpl_bytes[5:7] + tpl_bytes[1:5] + tpl_bytes[7:9]


# --- addressing ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeterAddress:
    """Who sent a telegram: manufacturer (FLAG code), identification, version and device type."""

    manufacturer: str
    id: str
    version: int
    medium: str  # a name of EN 13757-3:2018 Table 12, e.g. "water"

    @property
    def device_type(self) -> int:
        return medium_code(self.medium)


def telegram_address(data: bytes, *, crcs: bool | None = None, frame_format: FrameFormat | None = None) -> MeterAddress:
    """The meter a telegram is from, read without a key and without decrypting anything.

    That is the long TPL header's address (CI 0x72, EN 13757-7:2018 7.4) when it can be read in
    the clear, as :func:`parse_telegram` takes it to look up the key; otherwise (short or no TPL
    header, or an extended link layer encrypted with AES-CTR before it) the link layer's
    (EN 13757-4:2019 12.5.5, 12.5.6). A receiver can so tell its meters' telegrams from its
    neighbours' before opening any. Raises :class:`DecodeError` if the headers do not parse.
    """
    frame, _, _ = unframe(bytes(data), crcs, frame_format)
    if len(frame) <= LINK_HEADER_SIZE:
        raise TruncatedTelegramError(f"telegram of L = {frame[0]}: it ends before its CI field")
    link = _link_header(frame[:LINK_HEADER_SIZE])
    rest = frame[LINK_HEADER_SIZE:]
    if rest[0] in ell_layer.ELL_BY_CI:
        table, size = ell_layer.ELL_BY_CI[rest[0]]
        ell = _parse(table, rest[:size], f"extended link layer (CI {rest[0]:02X})")
        if "sn" in ell and ell.sn.encryption != ell_layer.ENC_NONE:
            return MeterAddress(link.manufacturer, link.id, link.version, link.medium)
        rest = rest[size + (2 if "sn" in ell else 0) :]  # and its payload CRC
    if rest[:1] == bytes([_AFL_CI]) and len(rest) > 1:
        rest = rest[2 + rest[1] :]
    if rest[:1] == bytes([tpl_layer.CI_LONG]):
        header = _parse(tpl_layer.LongTpl, rest, "transport layer header (CI 72)").header
        return MeterAddress(header.manufacturer, header.identification, header.version, header.medium)
    return MeterAddress(link.manufacturer, link.id, link.version, link.medium)


# --- parsing ------------------------------------------------------------------------------------------


def parse_telegram(
    data: bytes,
    keys: Mapping[str, bytes],
    *,
    crcs: bool | None = None,
    frame_format: FrameFormat | None = None,
) -> Telegram:
    """Parse and decrypt a telegram as received; every failure is a :class:`DecodeError` saying where."""
    frame, detected_format, had_crcs = unframe(bytes(data), crcs, frame_format)
    if len(frame) <= LINK_HEADER_SIZE:  # with its CRCs gone, a link header alone (L = 9) is left
        raise TruncatedTelegramError(f"telegram of L = {frame[0]}: it ends before its CI field")
    link = _link_header(frame[:LINK_HEADER_SIZE])
    rest = frame[LINK_HEADER_SIZE:]
    ell = None
    if rest[0] in ell_layer.ELL_BY_CI:
        ell, rest = _open_ell(frame, rest, link.id, keys)
    afl = None
    if rest and rest[0] == _AFL_CI:
        afl, rest = _parse_afl(rest)
    if not rest:
        raise TruncatedTelegramError("telegram ends before its transport layer CI field")
    tpl, extension, application = _open_tpl(frame, rest, afl, link.id, keys)
    return Telegram(detected_format, had_crcs, link, ell, afl, tpl, extension, application)


def _open_ell(frame: bytes, rest: bytes, meter_id: str, keys: Mapping[str, bytes]) -> tuple[Container, bytes]:
    table, size = ell_layer.ELL_BY_CI[rest[0]]
    ell = _parse(table, rest[:size], f"extended link layer (CI {rest[0]:02X})")
    body = rest[size:]
    if "sn" in ell:
        if len(body) < 2:
            raise TruncatedTelegramError("extended link layer: telegram ends before its payload CRC")
        if ell.sn.encryption == ell_layer.ENC_AES_CTR:
            key = _key_for(keys, meter_id, "the extended link layer (AES-CTR)")
            iv = ell_layer.ctr_iv(_link_address(frame), rest[1], rest[size - 4 : size])
            body = ell_layer.aes_ctr(key, iv, body)
            if ell_layer.payload_crc(body[2:]) != body[:2]:
                raise WrongKeyError(
                    f"meter {meter_id}: extended link layer payload CRC fails after AES-CTR decryption; "
                    "the key is wrong"
                )
        elif ell.sn.encryption == ell_layer.ENC_NONE:
            if ell_layer.payload_crc(body[2:]) != body[:2]:
                raise DecodeError("extended link layer: payload CRC does not match")
        else:
            raise UnsupportedSecurityError(
                f"meter {meter_id}: extended link layer encryption {ell.sn.encryption} is not supported"
            )
        body = body[2:]
    if not body:
        raise TruncatedTelegramError("telegram ends after its extended link layer")
    return ell, body


def _parse_afl(rest: bytes) -> tuple[Container, bytes]:
    parsed = _parse(afl_layer.AuthenticationFragmentationLayer, rest, "authentication and fragmentation layer")
    body = parsed.body
    size = 2 + rest[1]
    if len(afl_layer.AuthenticationFragmentationLayer.build(parsed)) != size:
        raise DecodeError(f"authentication and fragmentation layer: AFLL {rest[1]} does not match its fields")
    if body.fcl.more_fragments or body.fcl.fragment_id != 0:
        raise UnknownCiError("authentication and fragmentation layer: fragmented messages are not supported")
    if body.fcl.mac_present and body.mcl is None:
        raise DecodeError("authentication and fragmentation layer: MAC present but no message control field")
    if body.mcl is not None and body.mcl.authentication_type not in afl_layer.MAC_LENGTH:
        raise UnsupportedSecurityError(
            f"authentication and fragmentation layer: authentication type {body.mcl.authentication_type}"
        )
    return body, rest[size:]


def _open_tpl(
    frame: bytes, rest: bytes, afl: Container | None, link_id: str, keys: Mapping[str, bytes]
) -> tuple[Container, Container | None, bytes]:
    ci = rest[0]
    table = tpl_layer.TPL_BY_CI.get(ci)
    if table is None:
        offset = len(frame) - len(rest)
        raise UnknownCiError(f"unknown or unsupported CI field 0x{ci:02X} at byte {offset}")
    tpl = _parse(table, rest, f"transport layer header (CI {ci:02X})")
    after = rest[_TPL_HEADER_SIZE[ci] :]
    if ci == tpl_layer.CI_NONE:
        return tpl, None, after
    configuration = tpl_layer.configuration_of(tpl.header)
    mode = configuration.security_mode
    long_header = ci == tpl_layer.CI_LONG
    meter_id = str(tpl.header.identification) if long_header else link_id
    if mode == tpl_layer.SECURITY_MODE_NONE:
        return tpl, None, after
    encrypted = BLOCK * configuration.encrypted_blocks
    if mode == tpl_layer.SECURITY_MODE_AES_CBC_IV:
        if len(after) < encrypted:
            raise TruncatedTelegramError(
                f"meter {meter_id}: {configuration.encrypted_blocks} encrypted blocks announced, "
                f"{len(after)} bytes present"
            )
        if encrypted == 0:
            return tpl, None, after
        key = _key_for(keys, meter_id, "the transport layer (security mode 5)")
        address = _tpl_address(rest) if long_header else _link_address(frame)
        plain = cbc_decrypt(key, mode5_iv(address, tpl.header.access_no), after[:encrypted])
        check_verification(plain, meter_id, mode)
        return tpl, None, plain + after[encrypted:]
    if mode == tpl_layer.SECURITY_MODE_AES_CBC_NO_IV:
        extension, application = _open_mode7(frame, rest, after, configuration.encrypted_blocks, afl, meter_id, keys)
        return tpl, extension, application
    raise UnsupportedSecurityError(f"meter {meter_id}: security mode {mode} is not supported (only 0, 5 and 7)")


def _open_mode7(
    frame: bytes,
    rest: bytes,
    after: bytes,
    blocks: int,
    afl: Container | None,
    meter_id: str,
    keys: Mapping[str, bytes],
) -> tuple[Container, bytes]:
    """Security mode 7: the TPL's first ``blocks`` blocks in AES-CBC under Kenc with a zero IV, the
    whole TPL authenticated by the AFL's AES-CMAC under Kmac (EN 13757-7:2018 clause 9, 6.3.6)."""
    encrypted = BLOCK * blocks
    if len(after) < 1 + encrypted:
        raise TruncatedTelegramError(f"meter {meter_id}: telegram ends inside its mode 7 encrypted blocks")
    extension = tpl_layer.ConfigurationFieldExtension.parse(after[:1])
    after = after[1:]
    counter, mac = _mode7_authentication(afl, extension, meter_id)
    key = _key_for(keys, meter_id, "the transport layer (security mode 7)")
    identification = rest[1:5] if rest[0] == tpl_layer.CI_LONG else frame[4:8]
    kenc = derive_key(key, DC_KENC_FROM_METER, counter, identification)
    kmac = derive_key(key, DC_KMAC_FROM_METER, counter, identification)
    plain = b""
    if encrypted:  # N = 0: nothing encrypted, so no 2F 2F to check; the MAC still is
        plain = cbc_decrypt(kenc, ZERO_IV, after[:encrypted])
        check_verification(plain, meter_id, tpl_layer.SECURITY_MODE_AES_CBC_NO_IV)
    if aes_cmac(kmac, afl_layer.mac_input(afl, rest))[: len(mac)] != mac:
        raise AuthenticationError(f"meter {meter_id}: AFL MAC does not match; the telegram was altered")
    return extension, plain + after[encrypted:]


def _mode7_authentication(afl: Container | None, extension: Container, meter_id: str) -> tuple[int, bytes]:
    """The AFL message counter and MAC a mode 7 telegram must carry, or :class:`AuthenticationError`.

    OMS Vol. 2 security profile B (its annex on security profiles; EN 13757-7:2018 clause 9 with
    6.3) is mode 7 with key derivation KDF-A (KDF selection 1), an AFL with the message counter
    (6.3.5) and an AES-CMAC (6.3.6). Only that MAC authenticates mode 7: in CBC, flipping bits of
    one encrypted block flips the same bits of the next block's plain text, and the records after
    the N encrypted blocks travel in the clear. A telegram without the AFL, its counter or its MAC
    could be altered by anyone, and KDF 0 derives no MAC key: each is refused, never taken unchecked.
    """
    if extension.kdf_selection not in (0, 1):
        raise UnsupportedSecurityError(f"meter {meter_id}: key derivation function {extension.kdf_selection}")
    if extension.kdf_selection == 0:
        raise AuthenticationError(
            f"meter {meter_id}: security mode 7 without key derivation (KDF 0) gives no MAC key; "
            "OMS security profile B needs KDF-A (1): refused as unauthenticated"
        )
    if afl is None:
        raise AuthenticationError(
            f"meter {meter_id}: security mode 7 without an AFL (no message counter, no MAC): refused as unauthenticated"
        )
    if afl.message_counter is None:
        raise AuthenticationError(
            f"meter {meter_id}: security mode 7 AFL without a message counter: refused as unauthenticated"
        )
    if afl.mac is None:
        raise AuthenticationError(f"meter {meter_id}: security mode 7 AFL without a MAC: refused as unauthenticated")
    if afl.mcl.authentication_type == afl_layer.AT_AES_GMAC:
        raise UnsupportedSecurityError(
            f"meter {meter_id}: its AFL MAC cannot be verified: authentication type 8 (AES-GMAC) is not supported"
        )
    if not _is_cmac(afl):
        raise AuthenticationError(
            f"meter {meter_id}: security mode 7 AFL authentication type {afl.mcl.authentication_type} "
            "is no AES-CMAC: refused as unauthenticated"
        )
    return int(afl.message_counter), bytes(afl.mac)


def _is_cmac(afl: Container) -> bool:
    """Whether the AFL MAC is an AES-CMAC (EN 13757-7:2018 6.3.3, AT 3 to 7), the MAC this decoder
    verifies and the encoder computes; an AES-GMAC (AT 8) is neither."""
    return afl.mcl is not None and afl.mcl.authentication_type in afl_layer.AT_AES_CMAC


def _mode7_keys(
    key: bytes, extension: Container, afl: Container | None, identification: bytes, meter_id: str
) -> tuple[bytes, bytes | None]:
    """Kenc and Kmac for mode 7: derived with the AFL message counter (KDF 1), or the key itself (KDF 0)."""
    if extension.kdf_selection == 0:
        return key, None
    if extension.kdf_selection != 1:
        raise UnsupportedSecurityError(f"meter {meter_id}: key derivation function {extension.kdf_selection}")
    if afl is None or afl.message_counter is None:
        raise DecodeError(f"meter {meter_id}: security mode 7 key derivation needs the AFL message counter")
    counter = afl.message_counter
    kenc = derive_key(key, DC_KENC_FROM_METER, counter, identification)
    kmac = derive_key(key, DC_KMAC_FROM_METER, counter, identification)
    return kenc, kmac


# --- encoding -----------------------------------------------------------------------------------------


def encode_telegram(telegram: Telegram, key: bytes | None = None) -> bytes:
    """Seal and encode a telegram: encrypt as its headers say (with ``key``), add CRCs as its format says.

    The L-field, AFL length, ELL payload CRC and AFL MAC are computed, not taken from ``telegram``.
    """
    link_bytes = LinkHeader.build({**telegram.link, "length": 0})
    tpl_bytes, kmac = _seal_tpl(telegram, link_bytes, key)
    inner = tpl_bytes
    if telegram.afl is not None:
        body = dict(telegram.afl)
        if body["mac"] is not None and kmac is not None and _is_cmac(Container(body)):
            mac_length = len(body["mac"])
            body["mac"] = aes_cmac(kmac, afl_layer.mac_input(Container(body), tpl_bytes))[:mac_length]
        inner = afl_layer.AuthenticationFragmentationLayer.build({"body": body}) + tpl_bytes
    if telegram.ell is not None:
        inner = _seal_ell(telegram.ell, link_bytes, inner, key)
    l_field = LINK_HEADER_SIZE - 1 + len(inner)
    if l_field > MAX_L_FIELD:
        raise ValueError(f"telegram with {l_field} bytes after its L-field: at most {MAX_L_FIELD} fit")
    frame = bytes([l_field]) + link_bytes[1:] + inner
    return enframe(frame, telegram.crcs, telegram.frame_format)


def _seal_tpl(telegram: Telegram, link_bytes: bytes, key: bytes | None) -> tuple[bytes, bytes | None]:
    ci = telegram.tpl.ci_field
    header = tpl_layer.TPL_BY_CI[ci].build(telegram.tpl)
    application = telegram.application
    mode = telegram.security_mode
    if mode == tpl_layer.SECURITY_MODE_NONE:
        return header + application, None
    blocks = tpl_layer.configuration_of(telegram.tpl.header).encrypted_blocks
    encrypted = BLOCK * blocks
    if len(application) < encrypted:
        raise ValueError(f"{blocks} encrypted blocks announced but only {len(application)} bytes of data")
    if encrypted and key is None:
        raise ValueError(f"security mode {mode} needs a key")
    long_header = ci == tpl_layer.CI_LONG
    if mode == tpl_layer.SECURITY_MODE_AES_CBC_IV:
        if not encrypted or key is None:
            return header + application, None
        address = _tpl_address(header) if long_header else _link_address(link_bytes)
        sealed = cbc_encrypt(key, mode5_iv(address, telegram.tpl.header.access_no), application[:encrypted])
        return header + sealed + application[encrypted:], None
    if mode == tpl_layer.SECURITY_MODE_AES_CBC_NO_IV and telegram.configuration_extension is not None:
        extension = tpl_layer.ConfigurationFieldExtension.build(telegram.configuration_extension)
        if key is None:
            raise ValueError("security mode 7 needs a key")
        identification = header[1:5] if long_header else link_bytes[4:8]
        kenc, kmac = _mode7_keys(key, telegram.configuration_extension, telegram.afl, identification, "")
        sealed = cbc_encrypt(kenc, ZERO_IV, application[:encrypted])
        return header + extension + sealed + application[encrypted:], kmac
    raise ValueError(f"security mode {mode} cannot be encoded")


def _seal_ell(ell: Container, link_bytes: bytes, inner: bytes, key: bytes | None) -> bytes:
    table, _ = ell_layer.ELL_BY_CI[ell.ci_field]
    header = table.build(ell)
    if "sn" not in ell:
        return header + inner
    body = ell_layer.payload_crc(inner) + inner
    if ell.sn.encryption == ell_layer.ENC_AES_CTR:
        if key is None:
            raise ValueError("extended link layer encryption needs a key")
        iv = ell_layer.ctr_iv(_link_address(link_bytes), header[1], header[-4:])
        body = ell_layer.aes_ctr(key, iv, body)
    return header + body
