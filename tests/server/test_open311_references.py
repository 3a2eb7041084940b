"""An Open311 request's references name what aquami stores, whatever its length.

A meter is named by the ``meter`` attribute. ``meters.meter_id`` is unchecked text: register-meters
takes the contract's identifiers (at most 64 characters) now, but a database from before it checked
may hold longer ids, as the meter filters take (a meter's page links them). Before, every attribute
answer was capped at 100 characters, so such a meter could not be named: a 400 naming
``attribute[meter]``. The account reference keeps its 100: register-accounts, the only writer of
accounts but the demo, takes ids of at most 64. A meter whose id or district ``meters`` holds but the
enquiries' indexes do not (over some 2,650 bytes that do not compress) is kept as given, unlinked,
and said on the first update, where linking it was a 500.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from aquami.contracts.reads import IDENTIFIER_MAX_LENGTH, is_identifier
from server.app import create_app
from server.auth import create_api_key
from server.open311.schemas import ATTRIBUTE_MAX

V2 = "/open311/v2"


def _incompressible(length: int, seed: int) -> str:
    """``length`` random characters of 4 bytes each in UTF-8: nothing for compression to shrink."""
    rnd = random.Random(seed)
    return "".join(chr(rnd.randrange(0x10000, 0x110000)) for _ in range(length))


#: 2,680 bytes that do not compress: meters_pkey takes it, enquiries_care_desk_by_meter_idx does not.
UNINDEXABLE_ID = _incompressible(670, 1)
#: a district of 2,672 bytes: meters_dma_idx takes it, enquiries_dma_idx does not
UNINDEXABLE_DISTRICT = _incompressible(668, 2)


class Client:
    def __init__(self, client: TestClient, url: str, keys: dict[str, str]) -> None:
        self.client, self.url, self.keys = client, url, keys

    def raise_one(self, attributes: dict[str, str]) -> Any:
        fields = {"service_code": "no_water", "api_key": self.keys["customer_app"]}
        fields |= {f"attribute[{code}]": answer for code, answer in attributes.items()}
        return self.client.post(f"{V2}/requests.json", data=fields)

    def enquiry(self, answer: Any) -> dict[str, Any]:
        assert answer.status_code == 200, answer.text
        enquiry_id = answer.json()[0]["service_request_id"]
        care = {"Authorization": f"Bearer {self.keys['customer_care']}"}
        read = self.client.get(f"/enquiries/{enquiry_id}", headers=care)
        assert read.status_code == 200, read.text
        return read.json()


@pytest.fixture
def app(migrated_database_url: str) -> Iterator[Client]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        keys = {role: create_api_key(conn, role, [role]) for role in ("customer_app", "customer_care")}
    with TestClient(create_app(migrated_database_url)) as client:
        yield Client(client, migrated_database_url, keys)


def _store_meter(url: str, meter_id: str, dma: str) -> None:
    """As register-meters stored a meter before it checked ids (and districts)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO meters (meter_id, dma, registered) VALUES (%s, %s, true)", (meter_id, dma))


@pytest.mark.parametrize(
    "meter_id",
    [
        "M" * IDENTIFIER_MAX_LENGTH,  # the longest register-meters takes now
        "M" * (ATTRIBUTE_MAX + 1),  # before: 400, "attribute[meter]: String should have at most 100 characters"
        "L" * 1000,  # as the meter page's filters are tested
        _incompressible(600, 3),  # 2,400 bytes that do not compress: every enquiries' index takes it
    ],
    ids=["64", "101", "1000", "600x4-bytes"],
)
def test_a_meter_of_any_id_meters_holds_is_named_and_linked(app: Client, meter_id: str) -> None:
    _store_meter(app.url, meter_id, "D1")
    enquiry = app.enquiry(app.raise_one({"meter": meter_id}))
    assert (enquiry["meter_id"], enquiry["dma"]) == (meter_id, "D1")
    assert enquiry["subject"] == f"No water or low pressure (meter {meter_id})"
    assert [u["note"] for u in enquiry["updates"]] == ["raised through Open311 (customer)"]


@pytest.mark.parametrize(
    ("meter_id", "dma"), [(UNINDEXABLE_ID, "D1"), ("M-LONG-DMA", UNINDEXABLE_DISTRICT)], ids=["id", "district"]
)
def test_a_meter_the_enquiries_indexes_cannot_hold_is_kept_unlinked_and_said(
    app: Client, meter_id: str, dma: str
) -> None:
    """Before: a 400 for the id (over 100 characters), a 500 for the district (nothing stored)."""
    _store_meter(app.url, meter_id, dma)
    enquiry = app.enquiry(app.raise_one({"meter": meter_id, "account": "A-9"}))
    assert (enquiry["meter_id"], enquiry["dma"], enquiry["subject"]) == (None, None, "No water or low pressure")
    assert [u["note"] for u in enquiry["updates"]] == [
        "raised through Open311 (customer); an account reference was given that matches no account (see the "
        "request's details); the meter named is not linked: its id or district is too long for the enquiries' "
        "indexes (see the request's details)"
    ]
    assert enquiry["open311"]["attribute"] == {"meter": meter_id, "account": "A-9"}  # kept as given


def test_the_longest_account_id_register_accounts_takes_is_named_and_a_longer_reference_is_refused(
    app: Client,
) -> None:
    """The account reference stays at most ATTRIBUTE_MAX (100) characters: every account id stored
    (register-accounts: identifiers, at most 64) is within it; a longer reference names no account."""
    account = "A" * IDENTIFIER_MAX_LENGTH
    assert is_identifier(account) and not is_identifier(account + "A") and ATTRIBUTE_MAX >= IDENTIFIER_MAX_LENGTH
    with psycopg.connect(app.url, autocommit=True) as conn:
        conn.execute("INSERT INTO accounts (account_id, name) VALUES (%s, 'Household')", (account,))
    enquiry = app.enquiry(app.raise_one({"account": account}))
    assert enquiry["account_id"] == account
    refused = app.raise_one({"account": "A" * (ATTRIBUTE_MAX + 1)})
    assert refused.status_code == 400, refused.text
    assert refused.json()["errors"] == [
        {"location": "attribute[account]", "message": f"String should have at most {ATTRIBUTE_MAX} characters"}
    ]
