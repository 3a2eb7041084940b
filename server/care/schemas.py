"""The JSON shapes of customer care's enquiries."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, Field, model_validator

from server.instants import UtcInstant
from server.words import words_field

EnquiryStatus = Literal["open", "in_progress", "escalated", "closed"]  # server migration 0030's CHECK
EnquiryPriority = Literal["urgent", "high", "normal", "low"]  # the most urgent first
EnquirySource = Literal["customer", "staff", "detection"]
#: The longest category the enquiry filters take (GET /enquiries, the care desk). Categories are
#: written only by the server's migrations (alert_enquiry_rules, open311_services), none longer; a
#: test holds every stored one within it.
CATEGORY_MAX_LENGTH = 64


class EnquiryUpdate(BaseModel):
    at: UtcInstant
    by: str
    by_key_id: str | None = Field(default=None, description="the id of the API key `by` names, if a key's")
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
    duplicate_of: int | None = Field(
        description="the enquiry this one was folded into as its duplicate, closed (one episode of water "
        "escaping at a meter is one piece of work: server migration 0045); null for one that was not"
    )


class Open311Contact(BaseModel):
    """How to reach the person who raised it, as they gave it (each may be missing)."""

    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None


class Open311Given(BaseModel):
    """What a person or an app gave when raising an enquiry through Open311 (server migration 0043)."""

    service_code: str
    service_name: str
    description: str | None = Field(description="their words, exactly as written")
    lat: float | None
    long: float | None
    address_string: str | None
    address_id: str | None
    media_url: str | None
    attribute: dict[str, str] = Field(description="the service's attributes answered (account, meter), as given")
    contact: Open311Contact
    raised_by: str = Field(description="the name of the key it was raised with (an app's, or a member of staff's)")


class EnquiryWithUpdates(Enquiry):
    updates: list[EnquiryUpdate]
    duplicates: list[int] = Field(description="the enquiries folded into this one as its duplicates, oldest first")
    open311: Open311Given | None = Field(
        default=None,
        description="what was given with it through Open311, the person's contact details among it (personal "
        "data): present, null when it was not raised through Open311, for a customer_care or admin key only; "
        "left out for the other keys",
    )


class EnquiryPage(BaseModel):
    items: list[Enquiry]
    next: str | None = Field(description="URL of the next page, or null on the last page")


class EnquiryChange(BaseModel):
    """What a person did about an enquiry: a new status, priority or category, a note, or several (one
    at least)."""

    status: EnquiryStatus | None = Field(
        default=None, description="the new status (server.care.workflow: a closed one reopens as open or in_progress)"
    )
    priority: EnquiryPriority | None = Field(
        default=None, description="the new priority (urgent, high, normal or low): a person's judgement of the work"
    )
    category: str | None = Field(
        default=None,
        max_length=CATEGORY_MAX_LENGTH,
        description="the new category, one of the care desk's (Open311's services' and detection's): a person "
        "refiling the enquiry; detection then keeps it there when its alert's kind changes",
    )
    note: str | None = words_field(
        2000, "what was done or found: words, not only blanks, marks or invisible characters; no NUL", default=None
    )
    expected_updated_at: UtcInstant | None = Field(
        default=None,
        description="the enquiry's updated_at as last read: when given and the enquiry has changed since (a "
        "colleague's update, or this one sent twice), nothing is saved and the answer is 409",
    )

    @model_validator(mode="after")
    def _says_something(self) -> Self:
        if self.status is None and self.note is None and self.priority is None and self.category is None:
            raise ValueError("give a status, a priority, a category or a note (one at least)")
        return self
