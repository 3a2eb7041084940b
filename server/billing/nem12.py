"""Hourly interval consumption in the AEMO NEM12 layout (MDFF), for MDM-style integrations.

Records: 100 header, 200 per data stream (here: a meter at a service point, the service point id
standing in for the NMI), 300 per day with 24 hourly values in kilolitres (= m³), 400 where a day
mixes qualities (its 300 record then carries ``V``), 900 end. Quality flags: A actual, E estimated,
S substituted, F final substituted (aquami's ``edited``: a person's final value), N null (no data).
The two-digit method that follows E/S/F is aquami's mapping of how the value was obtained
(``METHODS``); confirm it against the receiving MDM's expectations.

Values come from ``consumption_hourly`` (collector: refresh_consumption); an hour's quality is the
weakest among the reads that close it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

FLAGS = {"actual": "A", "estimated": "E", "substituted": "S", "edited": "F", "missing": "N"}
METHODS = {"vee:linear": "54", "vee:profile": "52"}  # linear interpolation; the meter's own history
PERSON_METHOD = "55"  # agreed with / supplied by a person
_RANK = {"estimated": 0, "missing": 0, "substituted": 1, "edited": 2, "actual": 3}

_HOURLY = """
WITH streams AS (
    SELECT DISTINCT mi.service_point_id, mi.meter_id
    FROM meter_installations mi
    LEFT JOIN service_agreements sa ON sa.service_point_id = mi.service_point_id
    WHERE mi.installed_at < %(to)s AND (mi.removed_at IS NULL OR mi.removed_at > %(from)s)
      AND (%(account)s::text IS NULL OR (sa.account_id = %(account)s AND sa.start_at < %(to)s
                                         AND (sa.end_at IS NULL OR sa.end_at > %(from)s)))
), quality AS (
    SELECT r.meter_id, date_bin('1 hour', r.ts - interval '1 microsecond', '2000-01-01T00:00:00Z') AS hour,
           (array_agg(r.quality ORDER BY CASE r.quality WHEN 'estimated' THEN 0 WHEN 'substituted' THEN 1
                                                         WHEN 'edited' THEN 2 ELSE 3 END))[1] AS quality,
           (array_agg(r.quality_by ORDER BY CASE r.quality WHEN 'estimated' THEN 0 WHEN 'substituted' THEN 1
                                                            WHEN 'edited' THEN 2 ELSE 3 END))[1] AS quality_by
    FROM readings r JOIN streams s USING (meter_id)
    WHERE r.ts > %(from)s AND r.ts <= %(to)s
    GROUP BY 1, 2
)
SELECT s.service_point_id, s.meter_id, c.hour, c.consumption_m3, c.unknown, q.quality, q.quality_by
FROM streams s
LEFT JOIN consumption_hourly c ON c.meter_id = s.meter_id AND c.hour >= %(from)s AND c.hour < %(to)s
LEFT JOIN quality q ON q.meter_id = c.meter_id AND q.hour = c.hour
ORDER BY 1, 2, 3
"""


def _method(quality: str, quality_by: str | None) -> str:
    flag = FLAGS[quality]
    if flag in ("A", "N"):
        return flag
    return flag + METHODS.get(quality_by or "", PERSON_METHOD)


def _value(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if "." not in text else text.rstrip("0").rstrip(".")


def nem12_file(
    conn: psycopg.Connection,
    start: datetime,
    end: datetime,
    *,
    account: str | None = None,
    sender: str = "AQUAMI",
    receiver: str = "BILLING",
    now: datetime | None = None,
) -> str:
    """A NEM12 file for whole UTC days in [start, end)."""
    day0 = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = max(1, (end - day0 + timedelta(days=1) - timedelta(microseconds=1)).days)
    stamp = (now or datetime.now(UTC)).astimezone(UTC)
    rows: list[dict[str, Any]] = conn.execute(  # type: ignore[assignment]
        _HOURLY, {"from": day0, "to": day0 + timedelta(days=days), "account": account}
    ).fetchall()
    streams: dict[tuple[str, str], dict[datetime, tuple[Decimal, str, str | None]]] = defaultdict(dict)
    for r in rows:
        r = (
            r
            if isinstance(r, dict)
            else dict(
                zip(
                    ("service_point_id", "meter_id", "hour", "consumption_m3", "unknown", "quality", "quality_by"),
                    r,
                    strict=True,
                )
            )
        )
        key = (r["service_point_id"], r["meter_id"])
        streams.setdefault(key, {})
        if r["hour"] is not None:
            quality = "missing" if r["unknown"] else (r["quality"] or "actual")
            streams[key][r["hour"]] = (r["consumption_m3"], quality, r["quality_by"])
    lines = [f"100,NEM12,{stamp:%Y%m%d%H%M},{sender},{receiver}"]
    for (service_point, meter), hours in streams.items():
        lines.append(f"200,{service_point},E1,1,E1,N1,{meter},KL,60,")
        for d in range(days):
            day = day0 + timedelta(days=d)
            cells = [hours.get(day + timedelta(hours=h), (Decimal(0), "missing", None)) for h in range(24)]
            methods = [_method(q, by) for _, q, by in cells]
            flag = methods[0] if len(set(methods)) == 1 else "V"
            values = ",".join(_value(v) for v, _, _ in cells)
            lines.append(f"300,{day:%Y%m%d},{values},{flag},,,{stamp:%Y%m%d%H%M%S},")
            if flag == "V":
                run_start = 0
                for h in range(1, 25):
                    if h == 24 or methods[h] != methods[run_start]:
                        lines.append(f"400,{run_start + 1},{h},{methods[run_start]},,")
                        run_start = h
    lines.append("900")
    return "\r\n".join(lines) + "\r\n"
