"""Wired M-Bus: EN 13757-2 link layer and EN 13757-3 application layer, parse and build.

Public API:

- :func:`decode_frame`: a whole frame (E5h, short, control, long) to a JSON-ready dict;
  :func:`decode_master_frame`: the same for what a slave receives (SND_NKE, REQ_UD2, SND_UD).
- ``records.decode_records``: the records after an application header (wireless M-Bus uses it).
- ``header``: identification, manufacturer, medium (device type), long and short headers.
- Builders for simulators and masters: :func:`build_rsp_ud` (records as :class:`RecordSpec`,
  :class:`~firmware_protocols.records.DataRecord`, or ``(DataRecord, coding)``), :func:`build_ack`
  (E5h), :func:`build_snd_nke`, :func:`build_req_ud2`, :func:`build_snd_ud_select` (wildcards),
  and :func:`secondary_address_matches` for a slave deciding whether a selection is for it.

Modules: ``link`` (EN 13757-2 frames), ``header``, ``dib`` (DIF/DIFE), ``vib`` (VIF/VIFE structure),
``vif_tables`` (their meaning), ``codings`` (data field types), ``timetypes`` (types F, G, I, J),
``record`` (a whole record, Construct), ``normalise`` (to DataRecord), ``fastpath`` (cached plans),
``fixed`` (CI 73h), ``master`` (master-to-slave commands), ``frame`` (CI dispatch), ``build``.
"""

from firmware_protocols.mbus.build import (
    RecordSpec,
    build_ack,
    build_rsp_ud,
    build_snd_ud_select,
    encode_record,
)
from firmware_protocols.mbus.frame import decode_frame, decode_master_frame
from firmware_protocols.mbus.link import SINGLE_CHARACTER, build_req_ud2, build_snd_nke
from firmware_protocols.mbus.master import matches as secondary_address_matches

__all__ = [
    "SINGLE_CHARACTER",
    "RecordSpec",
    "build_ack",
    "build_req_ud2",
    "build_rsp_ud",
    "build_snd_nke",
    "build_snd_ud_select",
    "decode_frame",
    "decode_master_frame",
    "encode_record",
    "secondary_address_matches",
]
