"""The value information block: VIF, plain text and up to ten VIFEs (EN 13757-3:2018 clause 6.4).

The VIF's E bit announces VIFEs. After FBh or FDh the first VIFE is the true VIF from the extension
table (Tables 12 and 14); the rest are combinable VIFEs (Table 15). After the plain-text VIF (7Ch or
FCh) comes a length byte and the unit as ASCII, last character first; real meters (and libmbus)
put the VIFEs after that text.
"""

from __future__ import annotations

from typing import Any

from construct import (
    Adapter,
    Check,
    If,
    Int8ul,
    PascalString,
    RepeatUntil,
    Struct,
    this,
)

MAX_VIFES = 10  # clause 6.4.1: at most ten VIFEs


class _Reversed(Adapter):
    """Plain text arrives last character first."""

    def _decode(self, obj: str, context: Any, path: str) -> str:
        return obj[::-1]

    def _encode(self, obj: str, context: Any, path: str) -> str:
        return obj[::-1]


ValueInformationBlock = Struct(
    "vif" / Int8ul,
    "plain_text" / If(lambda ctx: ctx.vif & 0x7F == 0x7C, _Reversed(PascalString(Int8ul, "latin-1"))),
    "vifes" / If(this.vif & 0x80, RepeatUntil(lambda item, items, ctx: not item & 0x80, Int8ul)),
    Check(lambda ctx: ctx.vifes is None or len(ctx.vifes) <= MAX_VIFES),
)
