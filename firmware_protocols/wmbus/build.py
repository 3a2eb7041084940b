"""Builders for simulated meters: record bytes to a telegram a real receiver would accept.

>>> from firmware_protocols.wmbus import build_telegram, decode_telegram
>>> key = bytes(range(16))
>>> data = build_telegram(bytes.fromhex("0413E8030000"), manufacturer="KAM", id="12345678", version=1,
...                       medium="water", access_no=7, key=key)
>>> decode_telegram(data, {"12345678": key})["records"][0]["value"]
1.0
"""

from __future__ import annotations

from typing import Literal

from construct import Container

from firmware_protocols.wmbus import ell as ell_layer
from firmware_protocols.wmbus import tpl as tpl_layer
from firmware_protocols.wmbus.link import FrameFormat
from firmware_protocols.wmbus.security import BLOCK, VERIFICATION, pad
from firmware_protocols.wmbus.telegram import Telegram, encode_telegram

SecurityMode = Literal[0, 5, 7]
EllKind = Literal["plain", "aes_ctr"]

#: At most 15 blocks can be announced in the configuration field's four bits.
MAX_ENCRYPTED_BLOCKS = 15
#: AFL message control for mode 7: message counter present, AES-CMAC-128 truncated to 8 bytes (AT 5).
_MODE7_MESSAGE_CONTROL = Container(
    reserved=False,
    message_length_in_message=False,
    message_counter_in_message=True,
    key_information_in_message=False,
    authentication_type=5,
)


def make_telegram(
    records: bytes,
    *,
    manufacturer: str,
    id: str,
    version: int,
    medium: str,
    access_no: int,
    security_mode: SecurityMode = 0,
    status: int = 0,
    c_field: int = 0x44,
    frame_format: FrameFormat = "A",
    crcs: bool = True,
    header: Literal["short", "long"] = "short",
    message_counter: int = 0,
    ell: EllKind | None = None,
    session_number: int = 0,
) -> Telegram:
    """The :class:`Telegram` that :func:`build_telegram` encodes (see there for the arguments)."""
    address = Container(manufacturer=manufacturer, id=id, version=version, medium=medium)
    link = Container(length=0, c_field=c_field, **address)
    application = records
    encrypted_blocks = 0
    if security_mode:
        application = pad(VERIFICATION + records)
        encrypted_blocks = len(application) // BLOCK
        if encrypted_blocks > MAX_ENCRYPTED_BLOCKS:
            raise ValueError(f"{len(records)} bytes of records: more than {MAX_ENCRYPTED_BLOCKS} encrypted blocks")
    signature = tpl_layer.signature_of(
        dict(
            bidirectional=False,
            accessibility=False,
            synchronous=False,
            security_mode=security_mode,
            encrypted_blocks=encrypted_blocks,
            content=0,
            repeated_access=False,
            hop_counter=False,
        )
    )
    fields = Container(access_no=access_no, status=status, signature=signature)
    if header == "long":
        fields = Container(identification=id, manufacturer=manufacturer, version=version, medium=medium, **fields)
    tpl = Container(ci_field=tpl_layer.CI_LONG if header == "long" else tpl_layer.CI_SHORT, header=fields)
    extension = afl = None
    if security_mode == 7:
        extension = Container(reserved=0, kdf_selection=1, key_id=0)
        afl = _mode7_afl(message_counter)
    return Telegram(
        frame_format=frame_format,
        crcs=crcs,
        link=link,
        ell=_ell(ell, access_no, session_number) if ell else None,
        afl=afl,
        tpl=tpl,
        configuration_extension=extension,
        application=application,
    )


def _mode7_afl(message_counter: int) -> Container:
    fcl = Container(
        reserved=False,
        more_fragments=False,
        message_control_present=True,
        message_length_present=False,
        message_counter_present=True,
        mac_present=True,
        key_information_present=False,
        reserved_8=False,
        fragment_id=0,
    )
    return Container(
        fcl=fcl,
        mcl=_MODE7_MESSAGE_CONTROL,
        key_information=None,
        message_counter=message_counter,
        mac=bytes(8),  # computed when encoding
        message_length=None,
    )


def _ell(kind: EllKind, access_no: int, session_number: int) -> Container:
    cc = Container(
        bidirectional=False,
        response_delay=False,
        synchronized=True,
        hop_count=False,
        priority=False,
        accessibility=False,
        repeated_access=False,
        reserved=False,
    )
    encryption = ell_layer.ENC_AES_CTR if kind == "aes_ctr" else ell_layer.ENC_NONE
    sn = Container(encryption=encryption, time=session_number >> 4, session=session_number & 0x0F)
    return Container(ci_field=0x8D, cc=cc, access_no=access_no, sn=sn)


def build_telegram(
    records: bytes,
    *,
    manufacturer: str,
    id: str,
    version: int,
    medium: str,
    access_no: int,
    key: bytes | None = None,
    security_mode: SecurityMode | None = None,
    status: int = 0,
    c_field: int = 0x44,
    frame_format: FrameFormat = "A",
    crcs: bool = True,
    header: Literal["short", "long"] = "short",
    message_counter: int = 0,
    ell: EllKind | None = None,
    session_number: int = 0,
) -> bytes:
    """A telegram as a meter sends it, from the variable data records' bytes (EN 13757-3 DIF/VIF/data).

    - ``manufacturer`` (3 letters), ``id`` (8 digits), ``version``, ``medium`` (a name of EN 13757-3
      Table 12, e.g. ``"water"``): the meter, in the link header and, with ``header="long"``, in the
      long TPL header (CI 0x72) too; ``header="short"`` gives CI 0x7A.
    - ``key``: with a key and no ``security_mode`` the telegram is encrypted with OMS security mode 5
      (AES-128-CBC, IV from M-field, A-field and ``access_no``); ``security_mode=7`` derives Kenc and
      Kmac from ``key`` and ``message_counter`` and adds the AFL with its MAC. Encrypted data starts
      with 2F 2F and is filled with 2F to whole blocks, as real meters do.
    - ``frame_format`` ``"A"`` or ``"B"``, ``crcs=False`` for the telegram as a receiver hands it on.
    - ``ell="plain"`` or ``"aes_ctr"`` adds an extended link layer (CI 0x8D) with that encryption.
    """
    mode: SecurityMode = security_mode if security_mode is not None else (5 if key is not None else 0)
    if key is not None and mode == 0 and ell != "aes_ctr":
        raise ValueError("a key was given but neither the TPL (security_mode) nor the ELL is encrypted")
    telegram = make_telegram(
        records,
        manufacturer=manufacturer,
        id=id,
        version=version,
        medium=medium,
        access_no=access_no,
        security_mode=mode,
        status=status,
        c_field=c_field,
        frame_format=frame_format,
        crcs=crcs,
        header=header,
        message_counter=message_counter,
        ell=ell,
        session_number=session_number,
    )
    return encode_telegram(telegram, key)
