"""The JSON shapes of the billing API. Volumes are decimals, sent as strings: exact, as stored."""

from __future__ import annotations

from pydantic import BaseModel, Field

from server.decimals import ExactDecimal
from server.instants import UtcInstant


class BillingRead(BaseModel):
    ts: UtcInstant
    service_point_id: str
    meter_id: str
    volume_m3: ExactDecimal
    quality: str = Field(description="actual, estimated, substituted or edited")
    quality_by: str | None = None
    quality_by_key_id: str | None = Field(
        default=None, description="the id of the API key quality_by names, if a key's (a person's edit or supply)"
    )
    quality_reason: str | None = None
    vee_flags: list[str] = Field(default_factory=list, description="validation rules this read broke")
    received_at: UtcInstant = Field(
        description="when this version of the read was written: it arrived, or VEE estimated it, or a person "
        "edited or supplied it"
    )


class RemovedRead(BaseModel):
    """A read a billing system may hold that is gone: VEE deleted an estimate (a read came into its
    gap) or an edited estimate gave way to the meter's own read."""

    ts: UtcInstant
    service_point_id: str
    meter_id: str
    removed_at: UtcInstant
    removed_by: str | None = None
    removed_reason: str | None = None


class BillingReadPage(BaseModel):
    account_id: str
    start: UtcInstant
    end: UtcInstant
    changed_since: UtcInstant | None = Field(
        default=None, description="as asked: only reads written or revised at or after it, and those removed"
    )
    items: list[BillingRead]
    removed: list[RemovedRead] = Field(
        default_factory=list,
        description="with changed_since: the keys of reads removed since and not stored again, or no longer "
        "counting for the account, in this page's range of (ts, meter_id); drop them from your copy. A page's "
        "items and removed keys together are at most 'limit'",
    )
    next_changed_since: UtcInstant = Field(
        description="the changed_since of your next pull: when this pull's first page read the database, or the "
        "start of a transaction then still writing; the same on every page of a pull"
    )
    next: str | None = Field(description="URL of the next page, or null on the last page")


class RegisterRead(BaseModel):
    ts: UtcInstant
    volume_m3: ExactDecimal
    quality: str


class LeakOnLine(BaseModel):
    """A leak or burst detected behind the line's meter: what a leak adjustment starts from."""

    alert_id: str
    kind: str = Field(description="leak or burst")
    status: str = Field(description="open, ongoing or resolved (dismissed alerts are left out)")
    start: UtcInstant = Field(description="estimated start, or the line's start if later")
    end: UtcInstant = Field(description="when it ended or was last seen, or the line's end if earlier")
    rate_l_h: float = Field(description="estimated flow of the leak (a rate, not money or a register)")
    estimated_volume_m3: ExactDecimal = Field(description="rate × duration within the line: an estimate")


class DeterminantLine(BaseModel):
    service_point_id: str
    meter_id: str
    start: UtcInstant = Field(description="where this meter starts counting for the account in the period")
    end: UtcInstant
    opening: RegisterRead | None
    closing: RegisterRead | None
    opening_distance_s: int | None = Field(
        default=None, description="seconds between the line's start and its opening read (null: no read)"
    )
    closing_distance_s: int | None = Field(
        default=None, description="seconds between its closing read and the line's end (null: no read)"
    )
    consumption_m3: ExactDecimal | None = Field(description="null when some interval's consumption is unknown")
    estimated_m3: ExactDecimal | None = Field(
        default=None,
        description="of the consumption, the water in intervals VEE estimated: between two reads either of which "
        "is an estimate (null when the consumption is)",
    )
    actual_m3: ExactDecimal | None = Field(
        default=None,
        description="the rest: intervals between reads neither of which is an estimate (actual, substituted or "
        "edited), and the job cards'; estimated_m3 + actual_m3 = consumption_m3",
    )
    estimated_share: ExactDecimal | None = Field(
        default=None,
        description="estimated_m3 / consumption_m3, to 3 places (null unless the consumption is above 0)",
    )
    quality: str = Field(
        default="actual",
        description="the weaker of its opening and closing reads' qualities, and estimated when 10% or more of "
        "its consumption is (estimated_share at least 0.1, or any estimated water with no consumption above 0)",
    )
    complete: bool = Field(description="a known consumption with nothing in ``issues``: fit to bill as it is")
    issues: list[str] = Field(
        default_factory=list,
        description="why the line is not complete: consumption_unknown, unconfirmed_replacement (VEE saw a "
        "register replacement no installation job card confirms), over_max_flow (water faster than the meter's "
        "maximum flow), opening_read_far and closing_read_far (the read is more than the meter's read "
        "interval, as VEE found it (3600 s until it has; 86400 s for a daily meter), from the line's start or end: "
        "the water between is not in the consumption), no_read_after_end (no read yet at or after the line's end: "
        "a read for the time before the end may still arrive and become the closing register)",
    )
    as_of: UtcInstant | None = Field(
        default=None,
        description="when the newest of the reads this line rests on arrived (opening read to the first read at "
        "or after its end; a person's edit counts as arriving when made), or an agreement or job card moving the "
        "line's start or end was recorded, or a job card's register its water rests on was corrected, if later: "
        "a later as_of for the same line and period means the line was revised since (its leaks are not in it)",
    )
    leaks: list[LeakOnLine] = Field(default_factory=list, description="detected leaks and bursts in the line")
    leak_estimated_m3: ExactDecimal | None = Field(
        default=None,
        description="the water the listed leaks and bursts lost within the line, each moment counted once at the "
        "largest rate flowing then (a burst during a leak: the burst's rate while it runs, the leak's before and "
        "after; the alerts' estimated_volume_m3 summed count the overlap twice), to the litre; null without any",
    )


class Determinant(BaseModel):
    account_id: str
    consumption_m3: ExactDecimal | None = Field(description="sum of the lines; null if any line is unknown")
    complete: bool = Field(description="every line is complete (each line's ``issues`` say why not)")
    quality: str = Field(
        description="the weakest of its lines' qualities; missing in place of actual when its consumption is unknown"
    )
    as_of: UtcInstant | None = Field(default=None, description="the latest of its lines' as_of")
    lines: list[DeterminantLine]


class DeterminantPage(BaseModel):
    start: UtcInstant
    end: UtcInstant
    items: list[Determinant]
    next: str | None = Field(description="URL of the next page, or null on the last page")
