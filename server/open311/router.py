"""HTTP of Open311 GeoReport v2 at /open311/v2, JSON only (http://wiki.open311.org/GeoReport_v2).

The spec's methods, by its section names: "GET Service List" and "GET Service Definition" (no key:
they hold no one's data), "POST Service Request" (a customers' app or customer care; a retry is
answered with the first try's request: server.open311.repository), "GET Service Requests" and "GET
Service Request" (customer care, every request; a customers' app, those its customers raised, without
customer care's notes: requests hold customers' words, addresses and meters). "GET
service_request_id from a token" is not served: every service is realtime. Errors are
the API's problem+json, not the spec's list of code and description; a ``.xml`` URL is a 404 saying
only JSON is served. ``jurisdiction_id`` is taken and ignored: one server is one utility. Any other
query parameter than the spec's for the method is refused (server.query_params), but ``api_key``,
which clients may add to any call's query: taken and ignored there (the key is the form's field or
the header; a key in a query string would be logged).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.routing import APIRoute
from pydantic import ValidationError

from server.auth import Principal, may
from server.db import get_connection
from server.instants import UtcInstant
from server.methods import allowed_methods
from server.open311 import repository
from server.open311.intake import (
    FORM,
    RAISERS,
    READERS,
    STAFF,
    Body,
    bad_request,
    read_body,
    signed_by,
    source_of,
)
from server.open311.schemas import (
    PATTERN_WORDS,
    RequestCreated,
    RequestIn,
    Service,
    ServiceAttribute,
    ServiceDefinition,
    ServiceRequest,
    answer_max,
)
from server.problem_docs import TOO_LARGE, key_problems, problems
from server.problems import Problem, method_not_allowed
from server.query_params import KnownQueryRoute
from server.security_docs import HEADER_KEY, key_security

PREFIX = "/open311/v2"


class Open311Route(KnownQueryRoute):
    """GeoReport v2 defines ``jurisdiction_id`` on every method; its clients send ``api_key`` too."""

    also_takes = frozenset({"jurisdiction_id", "api_key"})


router = APIRouter(prefix=PREFIX, tags=["Open311 GeoReport v2"], route_class=Open311Route)
Connection = Annotated[psycopg.Connection, Depends(get_connection)]

#: "GET Service Requests": "Default query limit is a span of 90 days or first 1000 requests
#: returned, whichever is smallest"; a start and end date may not span more than 90 days.
WINDOW = timedelta(days=90)
MAX_REQUESTS = 1000
EARLIEST, LATEST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
AGENCY = "customer care"


@router.get("/services.json", response_model=list[Service], summary="GET Service List: what a request can be about")
def list_services(conn: Connection) -> list[Service]:
    return [
        Service(
            service_code=row["service_code"],
            service_name=row["service_name"],
            description=row["description"],
            metadata=row["metadata"],
            type="realtime",
            keywords=",".join(row["keywords"]),
            group=row["group_name"],
        )
        for row in repository.list_services(conn)
    ]


@router.get(
    "/services/{service_code}.json",
    response_model=ServiceDefinition,
    responses=problems({404: "Unknown service: no service of that code"}),
    summary="GET Service Definition: the attributes a service asks",
)
def service_definition(service_code: str, conn: Connection) -> ServiceDefinition:
    if repository.get_service(conn, service_code) is None:
        raise Problem(
            404, f"no service {service_code!r}; GET {PREFIX}/services.json lists them", title="Unknown service"
        )
    attributes = [
        ServiceAttribute(
            code=row["code"],
            datatype=row["datatype"],
            required=row["required"],
            datatype_description=row["datatype_description"],
            order=row["position"],
            description=row["description"],
        )
        for row in repository.service_attributes(conn, service_code)
    ]
    return ServiceDefinition(service_code=service_code, attributes=attributes)


GivenBody = Annotated[Body, Depends(read_body)]


def _raiser(request: Request, body: GivenBody, conn: Connection) -> Principal:
    """The key of a request raising one (the body's ``api_key`` or the header's), checked as a
    dependency, before the query is (server.query_params) and the body's problem said: without a valid
    key, a 401 whatever was sent, as on every role-protected route. The body and the connection are
    the handler's own (FastAPI solves a dependency once per request)."""
    return signed_by(conn, request, body, *RAISERS)


Raiser = Annotated[Principal, Depends(_raiser)]


@router.post(
    "/requests.json",
    response_model=list[RequestCreated],
    responses=problems(
        {
            400: "Invalid service request: the fields named in errors, or a form not UTF-8 or a body not JSON",
            **key_problems(*RAISERS),
            413: TOO_LARGE,
            415: f"Unsupported Media Type: the body is neither {FORM} nor application/json",
            422: "Idempotency-Key reused: the key's Idempotency-Key came, within 24 hours, with another request",
        }
    ),
    summary="POST Service Request: raise an enquiry",
    description="The key: the form's (or JSON object's) `api_key` field, as GeoReport v2 posts it, or the "
    "API's header (`Authorization: Bearer`, `X-API-Key`); never the web page's cookie. A retry raises no "
    "second enquiry: a request sent again by the same key with the same `Idempotency-Key` (within 24 hours), "
    "or without one the same request again (within 10 minutes), is answered with the first's "
    "`service_request_id`.",
    openapi_extra=key_security(*RAISERS, schemes=HEADER_KEY),
)
def post_request(
    principal: Raiser,
    body: GivenBody,
    conn: Connection,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="the app's own id for this report (a UUID), the same on every retry of it "
            "(IETF draft-ietf-httpapi-idempotency-key-header): up to 255 printable ASCII characters, "
            "bare or as a quoted string",
        ),
    ] = None,
) -> list[RequestCreated]:
    if body.problem is not None:
        raise body.problem
    retry_of = _idempotency_key(idempotency_key)
    given = _checked(body)
    service = repository.get_service(conn, given.service_code)
    if service is None:
        raise bad_request("service_code", f"no service {given.service_code!r}; GET {PREFIX}/services.json lists them")
    if not service["raised_by_people"]:
        raise bad_request(
            "service_code", f"{given.service_code!r} is raised by the meters' own detection, not by people"
        )
    _check_attributes(given, repository.service_attributes(conn, given.service_code))
    _check_location(given)
    source, by = source_of(principal)
    try:
        raised = repository.raise_request(
            conn,
            given,
            service,
            source=source,
            by=by,
            by_key_id=principal.key_id,
            idempotency_key=retry_of,
            sender=body.fields,
        )
    except repository.IdempotencyKeyReused as reused:
        raise Problem(
            422,
            f"Idempotency-Key {retry_of!r} came with another request at {reused.received_at:%Y-%m-%dT%H:%M:%SZ} "
            f"(service request {reused.enquiry_id}): a new report needs a new Idempotency-Key",
            title="Idempotency-Key reused",
        ) from None
    return [RequestCreated(service_request_id=str(raised.enquiry_id), service_notice=raised.service_notice)]


#: An Idempotency-Key: printable ASCII (a Structured Field string's characters), at most 255 of them.
_IDEMPOTENCY_KEY_MAX = 255


def _idempotency_key(header: str | None) -> str | None:
    """The header's key: the draft's Structured Field string (``"8e03978e-…"``), or bare as Stripe's
    clients send it; a 400 naming the header for one that is blank, too long or not printable ASCII."""
    if header is None:
        return None
    key = header.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = re.sub(r'\\(["\\])', r"\1", key[1:-1])
    if not 0 < len(key) <= _IDEMPOTENCY_KEY_MAX or not all(" " <= c <= "~" for c in key):
        raise bad_request("Idempotency-Key", f"1 to {_IDEMPOTENCY_KEY_MAX} printable ASCII characters (a UUID is best)")
    return key


def _checked(body: Body) -> RequestIn:
    try:
        given = RequestIn.model_validate({**body.fields, "attribute": body.attributes})
    except ValidationError as error:
        errors = [{"location": _where(e["loc"]), "message": _message(e)} for e in error.errors()]
        raise Problem(
            400,
            "; ".join(f"{e['location']}: {e['message']}" for e in errors),
            title="Invalid service request",
            errors=errors,
        ) from None
    for code, answer in given.attribute.items():  # each code its own limit (the meter's: none)
        limit = answer_max(code)
        if limit is not None and len(answer) > limit:
            raise bad_request(f"attribute[{code}]", f"String should have at most {limit} characters")
    return given


def _message(error: Any) -> str:
    """pydantic's message, a pattern's in words (:data:`PATTERN_WORDS`), or a check's own words
    without pydantic's "Value error, " before them."""
    context = error.get("ctx") or {}
    if error["type"] == "string_pattern_mismatch" and context.get("pattern") in PATTERN_WORDS:
        return PATTERN_WORDS[context["pattern"]]
    if error["type"] == "value_error" and "error" in context:
        return str(context["error"])
    return str(error["msg"])


def _where(loc: tuple[int | str, ...]) -> str:
    if len(loc) >= 2 and loc[0] == "attribute":
        return f"attribute[{loc[1]}]"
    return "/".join(str(part) for part in loc) or "body"


def _check_attributes(given: RequestIn, attributes: list[dict[str, Any]]) -> None:
    asked = {row["code"] for row in attributes}
    for code in given.attribute:
        if code not in asked:
            listed = ", ".join(sorted(asked)) or "none"
            raise bad_request(
                f"attribute[{code}]", f"{given.service_code!r} asks no such attribute (it asks: {listed})"
            )
    for row in attributes:
        if row["required"] and row["code"] not in given.attribute:
            raise bad_request(f"attribute[{row['code']}]", "required by this service")


def _check_location(given: RequestIn) -> None:
    """GeoReport v2 requires a location (lat and long, address_string or address_id); aquami also
    takes the utility's own account or meter reference, which locates the premises."""
    if (given.lat is None) != (given.long is None):
        missing = "long" if given.long is None else "lat"
        raise bad_request(missing, "lat and long are given together")
    located = given.lat is not None or given.address_string is not None or given.address_id is not None
    if not located and not {"account", "meter"} & given.attribute.keys():
        raise bad_request(
            "location", "give lat and long, address_string or address_id, or the account or meter attribute"
        )


def _reader(request: Request, conn: Connection) -> Principal:
    """The key of a request that reads requests, checked as a dependency rather than in the
    handler: FastAPI solves a route's dependencies before it validates its query, so a request
    without a valid key is a 401 whatever its query, as on every role-protected route (before,
    ``start_date=yesterday`` without a key was a 422 saying what the dates must be)."""
    return signed_by(conn, request, None, *READERS)


Reader = Annotated[Principal, Depends(_reader)]

_WHO_READS = (
    "A customer_care (or admin) key reads every request, with customer care's latest note as `status_notes`. "
    "A customer_app key reads the requests its customers raised (by keys of its name: a rotated key still "
    "reads them), with `status_notes` null: the notes are written for colleagues. No key reads a person's "
    "contact details here."
)


def _apps_own(principal: Principal) -> str | None:
    """The name whose requests a customers' app reads (see repository's ``_raised_by``); None for staff,
    who read every request."""
    return None if may(principal, STAFF) else principal.name


@router.get(
    "/requests.json",
    response_model=list[ServiceRequest],
    responses=problems(
        {
            400: "Invalid ids, status, a blank or unknown service code, or dates (end before start, or over 90 days)",
            **key_problems(*READERS),
        }
    ),
    summary="GET Service Requests: enquiries, newest first",
    description=_WHO_READS,
    openapi_extra=key_security(*READERS, schemes=HEADER_KEY),
)
def list_requests(
    principal: Reader,
    conn: Connection,
    service_request_id: Annotated[str | None, Query(description="comma-separated; overrides the other filters")] = None,
    service_code: Annotated[str | None, Query(description="comma-separated")] = None,
    start_date: Annotated[UtcInstant | None, Query()] = None,
    end_date: Annotated[UtcInstant | None, Query()] = None,
    status: Annotated[str | None, Query(description="open, closed, or both comma-separated")] = None,
) -> list[ServiceRequest]:
    start, end = _window(start_date, end_date)
    rows = repository.list_requests(
        conn,
        ids=_ids(service_request_id) if service_request_id is not None else None,
        service_codes=_known_codes(conn, _codes(service_code)),
        statuses=_statuses(status),
        start=start,
        end=end,
        limit=MAX_REQUESTS,
        raised_by=_apps_own(principal),
    )
    return [_as_request(row, for_staff=may(principal, STAFF)) for row in rows]


@router.get(
    "/requests/{service_request_id}.json",
    response_model=list[ServiceRequest],
    responses=problems(
        {
            400: "Several ids in the path: GET requests.json?service_request_id= reads several",
            **key_problems(*READERS),
            404: "Unknown service request: no request of that id",
        }
    ),
    summary="GET Service Request: one enquiry (a list of one, as the spec answers)",
    description=_WHO_READS,
    openapi_extra=key_security(*READERS, schemes=HEADER_KEY),
)
def get_request(principal: Reader, service_request_id: str, conn: Connection) -> list[ServiceRequest]:
    if "," in service_request_id:  # before: "at most 1 ids"
        raise bad_request(
            "service_request_id",
            f"one id in the path; GET {PREFIX}/requests.json?service_request_id=1,2 reads several",
        )
    (enquiry_id,) = _ids(service_request_id, where="service_request_id", at_most=1)
    row = repository.get_request(conn, enquiry_id, raised_by=_apps_own(principal))
    if row is None:  # another app's, or staff's, is answered as one that does not exist
        raise Problem(404, f"no service request {service_request_id}", title="Unknown service request")
    return [_as_request(row, for_staff=may(principal, STAFF))]


#: Every method: the catch-all answers each one a resource above does not serve (405), or that none is (404).
_EVERY_METHOD = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


@router.api_route("/{rest:path}", methods=_EVERY_METHOD, include_in_schema=False)
def not_served(request: Request, rest: str) -> None:
    allowed = allowed_methods(request, besides=not_served)
    if allowed:  # a resource above, asked with a method it does not serve
        raise method_not_allowed(request, allowed)
    if rest.lower().endswith(".xml"):
        raise Problem(
            404,
            f"aquami serves Open311 as JSON only: ask for {PREFIX}/{rest[:-4]}.json",
            title="Format not served",
        )
    served = _as_json(rest)
    if served is not None:  # before: "Open311 has no /open311/v2/services/no_water here"
        raise Problem(404, f"Open311's resources end in .json: ask for {served}", title="Not Found")
    raise Problem(404, f"Open311 has no {PREFIX}/{rest} here", title="Not Found")


def _as_json(rest: str) -> str | None:
    """The path a resource is served at when ``rest`` names it without ``.json`` or with another
    case of it (``services/no_water``, ``services.JSON``), else None."""
    stem, dot, extension = rest.rpartition(".")
    path = f"{PREFIX}/{stem if dot and extension.lower() == 'json' else rest}.json"
    for route in router.routes:
        if isinstance(route, APIRoute) and route.endpoint is not not_served and route.path_regex.match(path):
            return path
    return None


def _window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """The dates given, or the 90 days before the end or after the start given (the last 90 days
    without either), cut at the calendar's first or last instant: ``end_date=0001-01-02`` is the
    window from 0001-01-01, where subtracting 90 days overflowed (a 500)."""
    if start is None and end is None:
        end = datetime.now(UTC)
    if start is None:
        assert end is not None
        return end - min(WINDOW, end - EARLIEST), end
    if end is None:
        return start, start + min(WINDOW, LATEST - start)
    if end < start:
        raise bad_request("end_date", "before start_date")
    if end - start > WINDOW:
        raise bad_request("end_date", f"start_date and end_date span more than {WINDOW.days} days")
    return start, end


def _listed(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",")]


def _ids(text: str, *, where: str = "service_request_id", at_most: int = MAX_REQUESTS) -> list[int]:
    parts = [part.strip() for part in text.split(",")]
    if len(parts) > at_most:
        raise bad_request(where, f"at most {at_most} ids")
    if not all(part.isascii() and part.isdigit() and 0 < int(part) < 2**63 for part in parts):
        if at_most == 1:
            raise Problem(404, f"no service request {text}", title="Unknown service request")
        raise bad_request(where, "ids are whole numbers, comma-separated")
    return [int(part) for part in parts]


def _codes(text: str | None) -> list[str] | None:
    """The service codes asked, none blank: ``service_code=`` answered no request at all (200, []),
    which reads as "there are none", where ``status=`` was a 400."""
    codes = _listed(text)
    if codes is not None and "" in codes:
        raise bad_request("service_code", "service codes, comma-separated, none blank")
    return codes


def _known_codes(conn: psycopg.Connection, codes: list[str] | None) -> list[str] | None:
    """The codes asked, when every one is a service's: a typo (``service_code=leak_steet``) answered
    ``[]``, which reads as "no such request", where POST requests.json refuses an unknown code."""
    unknown = repository.unknown_service_codes(conn, codes) if codes else []
    if unknown:
        named = ", ".join(repr(code) for code in unknown)
        raise bad_request("service_code", f"no service {named}; GET {PREFIX}/services.json lists them")
    return codes


def _statuses(text: str | None) -> list[str] | None:
    statuses = _listed(text)
    if statuses is not None and not set(statuses) <= {"open", "closed"}:
        raise bad_request("status", "open, closed, or both comma-separated")
    return statuses


def _as_request(row: dict[str, Any], *, for_staff: bool) -> ServiceRequest:
    """An enquiry as GeoReport v2 shows a request: open until closed (in progress and escalated
    are open to the customer; ``aquami_status`` says which), its latest update as the notes for
    staff; none for a customers' app (care's notes are written for colleagues: names, calls made)."""
    return ServiceRequest(
        service_request_id=str(row["enquiry_id"]),
        status="closed" if row["status"] == "closed" else "open",
        aquami_status=row["status"],
        status_notes=row["latest_note"] if for_staff else None,
        service_name=row["service_name"],
        service_code=row["service_code"],
        description=_description(row),
        agency_responsible=AGENCY,
        service_notice=row["service_notice"] or None,
        requested_datetime=row["opened_at"],
        updated_datetime=row["updated_at"],
        expected_datetime=None,
        address=row["address_string"],
        address_id=row["address_id"],
        zipcode=None,
        lat=row["lat"],
        long=row["long"],
        media_url=row["media_url"],
    )


def _description(row: dict[str, Any]) -> str | None:
    """What the person wrote (None when they wrote nothing: the subject names the account or meter
    linked, which a GET does not show); an enquiry raised otherwise is described by its subject."""
    return row["description"] if row["raised_through_open311"] else row["subject"]
