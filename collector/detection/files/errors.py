"""What a file ``aquami detect`` (or ``aquami server register-meters``) cannot read raises."""

from __future__ import annotations


class CsvFormatError(ValueError):
    """The file is not what the command expects; the message says where."""
