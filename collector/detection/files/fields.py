"""Columns of a CSV file parsed as whole NumPy arrays: fixed-width byte fields, meter ids, decimals.

Millions of fields are parsed without a Python loop per field: fields are cut from the file's bytes
at offsets found with NumPy, meter ids are compared as fixed-width byte strings, and decimals are
read as integer mantissas divided by a power of ten (which gives the same double as ``float()``).
Anything unusual (exponents, signs, mixed layouts) falls back to NumPy's own conversion.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

ZERO = ord("0")


def fixed_width(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """(rows, width) uint8: each field left-aligned, zero-padded (rows copied from a strided view).

    A field within ``width`` bytes of the file's end (the last row's last column, shorter than the
    column's longest) is cut from a zero-padded copy of that tail alone: a window cannot start there
    (it was moved back, and a meter id "A" in the last column read as the bytes before it)."""
    near_end = starts > data.size - width
    if not near_end.any():
        chars: np.ndarray = sliding_window_view(data, width)[starts]
    else:
        chars = np.empty((starts.size, width), dtype=np.uint8)
        lo = int(starts[near_end].min())
        tail = np.concatenate([data[lo:], np.zeros(width, dtype=np.uint8)])
        chars[near_end] = sliding_window_view(tail, width)[starts[near_end] - lo]
        if not near_end.all():
            chars[~near_end] = sliding_window_view(data, width)[starts[~near_end]]
    chars *= np.arange(width) < (ends - starts)[:, None]
    return chars


def factorize(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys, index of each key); fast when rows come grouped by meter, as they usually do."""
    if keys.size == 0:
        return keys, np.zeros(0, dtype=np.intp)
    heads = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    uniq, inverse = np.unique(keys[heads], return_inverse=True)
    run_lengths = np.diff(np.r_[heads, keys.size])
    return uniq, np.repeat(inverse, run_lengths)


class NotADecimal(ValueError):
    def __init__(self, index: int, text: str) -> None:
        super().__init__(f"field {index}: {text!r} is not a decimal number")
        self.index, self.text = index, text


def parse_optional_decimals(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Like :func:`parse_decimals`, NaN for empty fields."""
    out = np.full(starts.shape, np.nan)
    given = np.flatnonzero(ends > starts)
    if given.size:
        try:
            out[given] = parse_decimals(data, starts[given], ends[given])
        except NotADecimal as bad:
            raise NotADecimal(int(given[bad.index]), bad.text) from None
    return out


def parse_decimals(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The fields as doubles; raises :class:`NotADecimal` with the first field that is no number."""
    width = int(np.max(ends - starts, initial=1))
    fast = _parse_fixed_point(data, starts, ends, width)
    if fast is not None:
        return fast
    chars = fixed_width(data, starts, ends, width)
    digit = chars - ZERO
    is_digit = (chars >= ZERO) & (chars <= ZERO + 9)
    is_dot = chars == ord(".")
    negative = chars[:, 0] == ord("-")
    allowed = is_digit | is_dot | (chars == 0)
    allowed[:, 0] |= negative | (chars[:, 0] == ord("+"))
    if width > 19 or not allowed.all() or np.any(is_dot.sum(axis=1) > 1) or not is_digit.any(axis=1).all():
        text = np.char.strip(chars.view(f"S{width}").ravel())
        try:
            return text.astype(np.float64)
        except ValueError:
            i = next(i for i, t in enumerate(text.tolist()) if not _is_float(t))
            raise NotADecimal(i, text[i].decode("utf-8", "replace")) from None
    # digits after each digit, ignoring the point: its power of ten in the integer mantissa
    after: np.ndarray = np.cumsum(is_digit[:, ::-1], axis=1)[:, ::-1] - is_digit
    powers = 10 ** np.arange(20, dtype=np.int64)
    mantissa = np.sum(np.where(is_digit, digit.astype(np.int64) * powers[after], 0), axis=1)
    has_dot = is_dot.any(axis=1)
    dot_at = np.argmax(is_dot, axis=1)
    fraction_digits = np.where(has_dot, (ends - starts) - dot_at - 1, 0)
    value = mantissa / powers[fraction_digits].astype(np.float64)
    return np.where(negative, -value, value)


def _is_float(text: bytes) -> bool:
    """Whether the conversion :func:`parse_decimals` makes takes ``text``."""
    try:
        np.array([text]).astype(np.float64)
    except ValueError:
        return False
    return True


def _parse_fixed_point(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray | None:
    """Unsigned decimals that all have the same number of decimals (as meters write them), or None."""
    if starts.size == 0 or width > 19:
        return None
    lengths = ends - starts
    first = bytes(data[starts[0] : ends[0]])
    point = first.rfind(b".")
    fraction = len(first) - point - 1 if point >= 0 else 0
    if point >= 0 and not np.all(data[ends - fraction - 1] == ord(".")):
        return None
    if np.any(lengths < (fraction + 2 if point >= 0 else 1)):
        return None
    windows = sliding_window_view(data, width)
    chars = windows[np.maximum(ends - width, 0)]  # right-aligned: the last character in the last column
    from_right = width - 1 - np.arange(width)
    inside = from_right < lengths[:, None]
    mantissa = np.zeros(starts.size, dtype=np.int64)
    ok = np.ones(starts.size, dtype=bool)
    for k in range(width):
        r = int(from_right[k])
        if point >= 0 and r == fraction:
            continue  # the point
        digit = chars[:, k].astype(np.int64) - ZERO
        digit *= inside[:, k]
        ok &= (digit >= 0) & (digit <= 9)
        mantissa = mantissa * 10 + digit
    if not ok.all() or np.any(ends - width < 0):
        return None
    return mantissa / float(10**fraction)
