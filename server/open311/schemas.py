"""The JSON shapes of GeoReport v2 (http://wiki.open311.org/GeoReport_v2), as aquami serves them.

Field names are the spec's, in its sections "GET Service List", "GET Service Definition", "POST
Service Request" and "GET Service Requests"; ``aquami_status`` is aquami's own (the enquiry's
detailed status, which the spec's open/closed cannot say).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from server.instants import UtcInstant
from server.visible import shows_something

#: Text a person writes: no NUL (PostgreSQL's text cannot hold it), and more than blanks.
_TEXT = r"^[^\x00]*[^\s\x00][^\x00]*$"
_NO_NUL = r"^[^\x00]+$"
_EMAIL = r"^[^@\s\x00]+@[^@\s\x00]+$"
_PHONE = r"^[0-9 +().\-]*[0-9][0-9 +().\-]*$"
_MEDIA_URL = r"^https?://[^\s\x00]+$"
#: What a field refused by its pattern is told, in place of pydantic's "String should match pattern
#: '^https?://[^\s\x00]+$'", which the person behind a customers' app cannot read (as server.problems'
#: NO_WORDS for a person's words).
PATTERN_WORDS = {
    _TEXT: "needs a character other than blanks, and no NUL character",
    _NO_NUL: "no NUL character",
    _EMAIL: "an email address: a name, one @ and a domain, without blanks",
    _PHONE: "a phone number: digits, and spaces, +, (, ), . or - between them",
    _MEDIA_URL: "an http:// or https:// address, without blanks",
}
#: A form's own limit for a description ("POST Service Request": "limited to 4,000 characters").
DESCRIPTION_MAX = 4000
#: A request's service_code: longer than any the services list holds (people's services and
#: detection's ``detected_`` ones, written by the server's migrations); a test holds them within it.
SERVICE_CODE_MAX_LENGTH = 64
#: What an attribute's answer may be (the account reference, as printed on a bill): longer than any
#: account id stored (register-accounts takes at most the contract's 64 characters, and nothing else
#: but the demo writes accounts; a test holds it). A code :data:`ANSWER_MAX` lists has its own.
ATTRIBUTE_MAX = 100
#: The answers bounded otherwise, by code (None: by the request body's limit alone, server.body_limit).
#: The meter reference takes any length, as the meter filters do: ``meters.meter_id`` is unchecked
#: text, and a database from before register-meters checked ids (at most 64) may hold longer ones;
#: at 100 characters such a meter could not be named.
ANSWER_MAX: dict[str, int | None] = {"meter": None}
#: address_id (GeoReport v2: "the internal address ID used by a jurisdiction's master address
#: repository") names nothing aquami stores: it is kept as given, matched to no service point.
ADDRESS_ID_MAX = 100


def answer_max(code: str) -> int | None:
    """The most characters attribute ``code``'s answer may have (None: no limit of its own)."""
    return ANSWER_MAX.get(code, ATTRIBUTE_MAX)


def _a_coordinate(value: object) -> object:
    """JSON's true and false are no coordinates (pydantic would take them as 1.0 and 0.0), nor is NaN
    or an infinity (a form's ``lat=nan`` was told "Input should be greater than or equal to -90"); a
    number, or the form's text of one, is. Text that is no number is left for pydantic to say so."""
    if isinstance(value, bool):
        raise ValueError("a coordinate is a number, not true or false")
    try:
        number = float(value) if isinstance(value, int | float | str) else None
    except ValueError:
        return value
    if number is not None and not math.isfinite(number):
        raise ValueError("a coordinate is a finite number, not NaN or infinity")
    return value


#: A latitude or longitude: a finite number (JSON) or its text (a form), never a boolean.
Coordinate = Annotated[float, BeforeValidator(_a_coordinate)]


class Service(BaseModel):
    """One entry of "GET Service List"."""

    service_code: str
    service_name: str
    description: str
    metadata: bool = Field(description="whether GET services/{service_code}.json lists attributes")
    type: Literal["realtime"] = Field(description="a request's id is answered at once (no tokens)")
    keywords: str = Field(description="comma-separated")
    group: str


class ServiceAttribute(BaseModel):
    """One attribute of "GET Service Definition" (text answers only: no ``values`` to choose from)."""

    variable: bool = True
    code: str
    datatype: str
    required: bool
    datatype_description: str
    order: int
    description: str
    values: list[dict[str, str]] = Field(default_factory=list)


class ServiceDefinition(BaseModel):
    service_code: str
    attributes: list[ServiceAttribute]


class RequestIn(BaseModel):
    """The fields of "POST Service Request" aquami keeps; others (``jurisdiction_id``, ``device_id``,
    the app's own ``account_id``) are not kept; ``device_id`` and ``account_id`` tell a retry from another
    person's report (server.open311.repository's ``fingerprint``). A blank field is taken as not given."""

    model_config = ConfigDict(extra="ignore")

    service_code: str = Field(min_length=1, max_length=SERVICE_CODE_MAX_LENGTH, pattern=_NO_NUL)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX, pattern=_TEXT)
    lat: Coordinate | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    long: Coordinate | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    address_string: str | None = Field(default=None, max_length=500, pattern=_TEXT)
    address_id: str | None = Field(default=None, max_length=ADDRESS_ID_MAX, pattern=_TEXT)
    email: str | None = Field(default=None, max_length=254, pattern=_EMAIL)
    first_name: str | None = Field(default=None, max_length=100, pattern=_TEXT)
    last_name: str | None = Field(default=None, max_length=100, pattern=_TEXT)
    phone: str | None = Field(default=None, max_length=40, pattern=_PHONE)
    media_url: str | None = Field(default=None, max_length=2048, pattern=_MEDIA_URL)
    #: each answer's length is held by :func:`answer_max` (server.open311.router), which names its code
    attribute: dict[str, Annotated[str, Field(pattern=_TEXT), AfterValidator(shows_something)]] = Field(
        default_factory=dict
    )

    @field_validator("description", "address_string", "address_id", "first_name", "last_name")
    @classmethod
    def _written(cls, text: str | None) -> str | None:
        """A person's words hold something visible (after the field's length and pattern)."""
        return None if text is None else shows_something(text)


class RequestCreated(BaseModel):
    """The answer to "POST Service Request" (a realtime service: the id at once, never a token)."""

    service_request_id: str
    service_notice: str
    account_id: None = Field(default=None, description="the spec's account of the app's user: aquami has none")


class ServiceRequest(BaseModel):
    """One entry of "GET Service Requests" and "GET Service Request"."""

    service_request_id: str
    status: Literal["open", "closed"]
    aquami_status: str = Field(description="open, in_progress, escalated or closed (not in the spec)")
    status_notes: str | None = Field(description="the enquiry's latest update")
    service_name: str | None
    service_code: str
    description: str | None
    agency_responsible: str
    service_notice: str | None
    requested_datetime: UtcInstant
    updated_datetime: UtcInstant
    expected_datetime: UtcInstant | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float | None
    long: float | None
    media_url: str | None
