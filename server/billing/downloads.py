"""The ``Content-Disposition`` of a file the billing API sends.

A header is Latin-1 at most, and h11 drops the connection, with no answer, over a CR or LF in one:
a file name built from a request's text ("2026-11-01€00:00Z", an account id "ACC-Ő1") was a 500 or
no response at all. The name is written in ASCII, with the exact one in ``filename*`` (RFC 6266
section 4.3, RFC 8187 encoding) when it has other characters.
"""

from __future__ import annotations

import re
from urllib.parse import quote

#: What a file name keeps as it is; anything else (quotes, slashes, controls, other scripts) is "_".
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def attachment(filename: str) -> str:
    """``attachment; filename="…"`` in ASCII, plus ``filename*`` with the exact name if that differs."""
    ascii_name = _UNSAFE.sub("_", filename)
    header = f'attachment; filename="{ascii_name}"'
    if ascii_name != filename:
        header += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return header
