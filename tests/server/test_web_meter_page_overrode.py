"""The meter page's readings say when a correction was confirmed past a check: which check, in words
(out of sequence, faster than the meter), who confirmed it and when, as the meters API does
(``quality_overrode``, ``quality_overrode_at``: server migration 0066). Before, the page showed
"edited by Bea (meterization): reason" alone, as for a value the checks took, and a care agent could
not tell a register a person pushed past a check. Through the real API and database."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta

from tests.server.test_reading_correction_order import (
    END,
    METER,
    TYPO_AT,
    _auth,
    walkthrough,  # noqa: F401 (the fixture)
)

WHO = "Bea (meterization)"  # the walkthrough's key


def _quality_cells(page: str) -> dict[str, str]:
    """Each reading row's Quality cell as a person reads it (tags dropped, spaces folded), by its time."""
    table = page.split("<h2>Readings")[1].split("</table>")[0]
    found = {}
    for row in table.split("<tbody>")[1].split("<tr>")[1:]:
        cells = [
            " ".join(html.unescape(re.sub(r"<[^>]+>", "", c)).split())
            for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        found[cells[0]] = cells[-1]
    return found


def test_a_correction_confirmed_past_a_check_says_which_who_and_when(walkthrough) -> None:  # noqa: F811
    client, key, volumes = walkthrough
    fixed = client.put(
        f"/meters/{METER}/readings/{TYPO_AT.isoformat()}",
        json={"volume_m3": "1.000", "reason": "meter exchanged on site", "out_of_sequence": "confirmed"},
        headers=_auth(key),
    )
    assert fixed.status_code == 200, fixed.text
    newest = END + timedelta(hours=1)
    supplied = client.post(
        f"/meters/{METER}/readings",
        json={"ts": newest.isoformat(), "volume_m3": str(volumes[-1] + 50), "reason": "site visit",
              "out_of_sequence": "confirmed"},
        headers=_auth(key),
    )  # fmt: skip
    assert supplied.status_code == 201, supplied.text
    plain = TYPO_AT - timedelta(hours=5)  # corrected in order (its own register again): overrides nothing
    listed = client.get(f"/meters/{METER}/readings", params={"from": plain.isoformat(), "limit": 1}, headers=_auth(key))
    register = listed.json()["items"][0]["volume_m3"]
    again = client.put(
        f"/meters/{METER}/readings/{plain.isoformat()}",
        json={"volume_m3": register, "reason": "typo"},
        headers=_auth(key),
    )
    assert again.status_code == 200 and again.json()["quality_overrode"] is None, again.text

    answer = client.get(f"/care/meters/{METER}", headers=_auth(key))
    assert answer.status_code == 200, answer.text
    quality = _quality_cells(answer.text)
    at = {
        name: datetime.fromisoformat(reading.json()["quality_overrode_at"]).strftime("%Y-%m-%d %H:%M")
        for name, reading in (("fixed", fixed), ("supplied", supplied))
    }
    assert quality[f"{TYPO_AT:%Y-%m-%d %H:%M:%S}"] == (
        f"edited by {WHO}: meter exchanged on site; confirmed out of sequence by {WHO} on {at['fixed']} UTC "
        "(refused at first: below the reading before it or above the one after)"
    )
    assert quality[f"{newest:%Y-%m-%d %H:%M:%S}"] == (
        f"substituted by {WHO}: site visit; confirmed faster than the meter by {WHO} on {at['supplied']} UTC "
        "(refused at first: further above the reading before it than the meter can pass in the time between)"
    )
    assert quality[f"{plain:%Y-%m-%d %H:%M:%S}"] == f"edited by {WHO}: typo"  # overrode nothing: says nothing of it
    # the check's words are a badge, as the quality is: the stylesheet's colours, readable (test_web_contrast)
    assert '<span class="badge">confirmed out of sequence</span>' in answer.text
