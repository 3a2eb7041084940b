"""Register value types and their wire layouts (Modbus Application Protocol v1.1b3, clause 4.2).

Modbus itself only knows 16-bit registers sent big-endian; wider values span several registers,
and meters disagree on the order of those registers (``word_order``) and sometimes on the byte
order within each (``byte_order``). Each layout is a Construct, so one definition parses and builds.
"""

from __future__ import annotations

from typing import Any, Literal

import construct as c

ValueType = Literal["u16", "s16", "u32", "s32", "f32", "u64"]
Order = Literal["big", "little"]

# Register count and the big-endian Construct of each type.
_BIG_ENDIAN: dict[str, tuple[int, Any]] = {
    "u16": (1, c.Int16ub),
    "s16": (1, c.Int16sb),
    "u32": (2, c.Int32ub),
    "s32": (2, c.Int32sb),
    "f32": (2, c.Float32b),
    "u64": (4, c.Int64ub),
}


def register_count(value_type: ValueType) -> int:
    return _BIG_ENDIAN[value_type][0]


def _reorder(data: bytes, word_order: Order, byte_order: Order) -> bytes:
    """Bring registers as sent into one big-endian value (the transformation is its own inverse)."""
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if byte_order == "little":
        words = [w[::-1] for w in words]
    if word_order == "little":
        words.reverse()
    return b"".join(words)


def value_construct(value_type: ValueType, word_order: Order = "big", byte_order: Order = "big") -> Any:
    """The Construct for one value of ``value_type`` as the meter lays it out in its registers."""
    count, big_endian = _BIG_ENDIAN[value_type]
    if word_order == "big" and byte_order == "big":
        return big_endian
    size = 2 * count

    def reorder(data: bytes) -> bytes:
        return _reorder(data, word_order, byte_order)

    return c.Transformed(big_endian, reorder, size, reorder, size)
