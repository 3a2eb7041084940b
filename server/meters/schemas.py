"""The JSON shapes of the meters API. Volumes are decimals, sent as strings: exact, as stored."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

from server.decimals import ExactDecimal
from server.instants import ReadingInstant, UtcInstant
from server.words import words_field

#: The check a person overrode by confirming a value it refused (collector.vee.register_order).
Overridden = Literal["out_of_sequence", "faster_than_the_meter"]
OVERRODE = (
    'the check quality_by overrode, sending the value again with "out_of_sequence": "confirmed" after it was '
    "refused: out_of_sequence (below the reading before or above the one after) or faster_than_the_meter (a "
    "newest read further above the one before than the meter passes); null when the value overrode none"
)


class Reading(BaseModel):
    ts: UtcInstant
    volume_m3: ExactDecimal
    flow_m3h: float | None = None
    reverse_volume_m3: ExactDecimal | None = None
    alarms: list[str] = Field(default_factory=list)
    quality: str = "actual"
    quality_by: str | None = None
    quality_by_key_id: str | None = Field(default=None, description="the id of the API key quality_by names")
    quality_reason: str | None = None
    quality_overrode: Overridden | None = Field(default=None, description=OVERRODE)
    quality_overrode_at: UtcInstant | None = Field(
        default=None, description="when quality_by overrode it (the edit's time); null when the value overrode none"
    )


class Meter(BaseModel):
    meter_id: str
    registered: bool
    dma: str | None
    role: str
    bulk: bool = Field(description="supplies many premises (a block of flats): its continuous flow is no leak")
    first_seen: UtcInstant
    last_gateway_id: str | None = Field(
        description="the gateway that delivered its latest reading; where that is an estimate or a person's, "
        "or it has none, the gateway it was assigned to last; null if none"
    )
    gateways: list[str] = Field(
        default_factory=list, description="the gateways assigned to report it now, the latest assigned first"
    )
    latest: Reading | None
    offline_since: UtcInstant | None = Field(
        description="when its gateway reported it offline (it stopped answering polls), if not back online since"
    )


class MeterPage(BaseModel):
    items: list[Meter]
    next: str | None = Field(description="URL of the next page, or null on the last page")


class ReadingPage(BaseModel):
    meter_id: str
    items: list[Reading]
    next: str | None = Field(description="URL of the next page, or null on the last page")


def meter_from_row(row: dict[str, Any]) -> Meter:
    latest = None
    if row["latest_ts"] is not None:
        latest = Reading(
            ts=row["latest_ts"],
            volume_m3=row["latest_volume_m3"],
            flow_m3h=row["latest_flow_m3h"],
            reverse_volume_m3=row["latest_reverse_volume_m3"],
            alarms=row["latest_alarms"] or [],
            quality=row["latest_quality"],
        )
    return Meter(
        meter_id=row["meter_id"],
        registered=row["registered"],
        dma=row["dma"],
        role=row["role"],
        bulk=row["bulk"],
        first_seen=row["first_seen"],
        last_gateway_id=row["last_gateway_id"],
        gateways=row["gateways"],
        latest=latest,
        offline_since=row["offline_since"],
    )


class ReadingCorrection(BaseModel):
    """A person's correction of a stored reading's register, with the reason (kept with the original)."""

    volume_m3: Decimal = Field(ge=0, max_digits=18, decimal_places=6, description="the corrected register")
    reason: str = words_field(
        500, "why: words, not only blanks, marks or invisible characters (as an alert's dismissal); no NUL"
    )
    out_of_sequence: Literal["confirmed"] | None = Field(
        default=None,
        description="a register below the meter's measured reading before it, or above the one after it, is "
        'refused (409) unless this says "confirmed": it is meant (a meter exchanged or rolled over, one of a run '
        "of bad reads)",
    )


class ReadingSubstitution(ReadingCorrection):
    """A reading a person obtained otherwise (a site visit, a photo of the register)."""

    ts: ReadingInstant = Field(description="with a UTC offset; from 2000-01-01 to a day from now, as meters' readings")


class ReadingVersion(BaseModel):
    """An earlier version of a reading, replaced by an edit, a substitution or an actual read."""

    volume_m3: ExactDecimal
    flow_m3h: float | None
    reverse_volume_m3: ExactDecimal | None
    alarms: list[str]
    quality: str
    quality_by: str | None
    quality_by_key_id: str | None = Field(description="the id of the API key quality_by names, if a key's")
    quality_reason: str | None
    quality_overrode: Overridden | None = Field(description=OVERRODE)
    superseded_at: UtcInstant
    superseded_by: str | None
    superseded_by_key_id: str | None = Field(description="the id of the API key superseded_by names, if a key's")
    superseded_reason: str | None
    superseded_quality: str | None
    superseded_overrode: Overridden | None = Field(
        description="the check superseded_by overrode with the version that replaced this one, as quality_overrode"
    )
