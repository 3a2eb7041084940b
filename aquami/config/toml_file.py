"""A hand-written TOML file's text and document, refused in one line naming the file.

Shared by the loaders of the gateway's and the rig's configuration. The text must be UTF-8 (TOML's
own rule); a leading byte order mark, which editors on Windows write, is dropped: ``tomllib``
refuses it as an "Invalid statement" at line 1, column 1, which says nothing a person can act on.
"""

from __future__ import annotations

import tomllib
from typing import Any

from aquami.config.reader import ConfigError

#: The byte order mark, as it reads once decoded.
BOM = "\ufeff"


def decode(data: bytes, source: str) -> str:
    """``data`` as text, without a leading byte order mark; ConfigError when it is not UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ConfigError(
            f"{source}:{line}: not UTF-8 (byte 0x{data[error.start]:02x}): save the file as UTF-8"
        ) from None
    return without_bom(text)


def without_bom(text: str) -> str:
    return text.removeprefix(BOM)


def parse(text: str, source: str) -> dict[str, Any]:
    """The document of ``text`` (a byte order mark dropped); ConfigError saying where it is not TOML."""
    try:
        return tomllib.loads(without_bom(text))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML: {error}") from None
