"""The JSON shapes of customer care's enquiries."""

from __future__ import annotations

from pydantic import BaseModel, Field

from server.instants import UtcInstant


class EnquiryUpdate(BaseModel):
    at: UtcInstant
    by: str
    note: str


class Enquiry(BaseModel):
    enquiry_id: int
    kind: str = Field(description="enquiry, complaint or service_request")
    category: str
    source: str = Field(description="customer, staff or detection")
    status: str = Field(description="open, in_progress, escalated or closed")
    priority: str = Field(description="low, normal, high or urgent")
    subject: str
    account_id: str | None
    service_point_id: str | None
    meter_id: str | None
    dma: str | None
    alert_id: str | None = Field(description="the alert that raised it, for enquiries from detection")
    opened_at: UtcInstant
    updated_at: UtcInstant
    closed_at: UtcInstant | None


class EnquiryWithUpdates(Enquiry):
    updates: list[EnquiryUpdate]


class EnquiryPage(BaseModel):
    items: list[Enquiry]
    next: str | None = Field(description="URL of the next page, or null on the last page")
