"""The downlink's contract (aquami/contracts/commands.schema.json), held by a real gateway through a
real broker: any JSON object sent as a command is either one its request schema takes, or answered
ok=false with one line that names the field it refuses; never a crash, never ignored."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema.protocols import Validator

from aquami.contracts.commands import COMMANDS, commands_schema, reply_errors
from aquami.contracts.schema_files import ContractValidator
from gateway.config import load_config
from gateway.service import Gateway
from simulators.modbus_tcp import ModbusTcpSimulator
from tests.gateway.helpers import Subscriber, config_text, meters, running
from tests.gateway.test_commands import listening

pytestmark = pytest.mark.services
GATEWAY_ID = "gw-cmd-contract"  # its own: a gateway another test left behind must not take its client id
ROOT = f"aquami/v1/{GATEWAY_ID}"

FIELDS = ("request_id", "meter_id", "bus", "first", "last", "profile")
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
# values a sender might mean as well as anything: the gateway's meters and bus, units in and out of range
plausible = st.sampled_from(
    [
        *("WM-0001", "WM-0009", "b", "nope", "", "a b", 1.0),
        *("smart_water_meter", "pulse_counter", "no_such_profile", "../gw.toml", "/etc/hostname"),
    ]
)
requests = st.dictionaries(
    st.sampled_from(FIELDS) | st.text(max_size=6),
    plausible | st.integers(-2, 250) | json_values,
    max_size=5,
)


def request_schema(name: str) -> Validator:
    """The request's schema read here from the file, apart from the code that checks requests (its
    patterns as ECMA-262 reads them: "WM-1\\n" is no meter id)."""
    return ContractValidator({**commands_schema(), "$ref": f"#/$defs/{name}_request"})


def refused_fields(name: str, request: dict[str, Any]) -> set[str]:
    """The fields the request schema refuses in ``request`` (a missing one, an unknown one, a bad one)."""
    fields = set()
    for error in request_schema(name).iter_errors(request):
        wanted: Any = error.validator_value  # (typed Unset too: a ValidationError not from a validator)
        schema: Any = error.schema
        if error.validator == "required":
            fields |= {f for f in wanted if f not in request}
        elif error.validator == "additionalProperties":
            fields |= {repr(f) for f in request if f not in schema["properties"]}
        else:
            fields.add(str(error.absolute_path[0]))
    return fields


def test_any_json_object_is_taken_by_the_schema_or_refused_naming_the_field(tmp_path: Path, mosquitto) -> None:
    """Before, fields were read ad hoc: a misspelt ``frist`` was ignored (a scan of 1..247 answered
    ok), ``"first": "x"`` was answered "invalid literal for int() with base 10: 'x'", a scan with an
    unknown profile answered ok, and a list as request_id was echoed back."""
    subscriber = Subscriber(mosquitto.url, [f"{ROOT}/cmd/+/reply"], client_id="cmd-contract-sub")
    config = tmp_path / "gw.toml"
    seen: dict[str, int] = {"taken": 0, "refused": 0, "ok": 0}

    @settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
    @given(name=st.sampled_from([*COMMANDS, "reboot"]), request=requests)
    def each(name: str, request: dict[str, Any]) -> None:
        topic = f"/cmd/{name}/reply"
        before = subscriber.count(topic)
        subscriber.client.publish(f"{ROOT}/cmd/{name}", json.dumps(request), qos=1)
        subscriber.wait_for(lambda: subscriber.count(topic) > before, 30, f"a reply to {name} {request!r}")
        reply = subscriber.payloads(topic)[before]
        assert reply_errors(name, reply) == [], (request, reply)
        if name not in COMMANDS:
            assert reply["ok"] is False and reply["error"].startswith("unknown command 'reboot'")
            return
        refused = refused_fields(name, request)
        if refused:
            seen["refused"] += 1
            assert reply["ok"] is False, (request, reply)
            assert any(reply["error"].startswith(field) for field in refused), (request, refused, reply)
        else:
            seen["taken"] += 1
            seen["ok"] += reply["ok"]
            assert reply["request_id"] == request.get("request_id"), (request, reply)
        if not reply["ok"]:
            assert not reply["error"].startswith("internal error"), (request, reply)

    async def scenario() -> None:
        simulator = ModbusTcpSimulator(meters(2))
        await simulator.start()
        config.write_text(
            config_text(
                mosquitto.url,
                {"b": simulator.port},
                {"b": [1, 2]},
                str(tmp_path / "s.sqlite"),
                gateway_id=GATEWAY_ID,
                poll_interval_s=3600,
                timeout_s=2.0,  # absent units are refused at once; a present one may be slow under load
                extra_bus="jitter = 0.0",
            )
        )
        gateway = Gateway(load_config(config), config_path=config)
        async with running(gateway):
            await asyncio.to_thread(gateway.publisher.connected.wait, 10)
            await listening(subscriber, root=ROOT)
            await asyncio.to_thread(each)
        await simulator.stop()

    try:
        asyncio.run(scenario())
    finally:
        subscriber.close()
    assert seen["refused"] > 0 and seen["taken"] > 0 and seen["ok"] > 0, seen


@pytest.mark.parametrize(
    ("name", "request_", "said"),
    [
        ("read-now", {}, "meter_id is required"),
        ("read-now", {"meter_id": 7}, "meter_id must be a string, not 7"),
        ("read-now", {"meter_id": "a b"}, "meter_id must be a meter id ("),
        ("reload", {"force": True}, "'force': not a field of reload (its fields: request_id)"),
        ("scan", {"bus": "b", "first": 0}, "first must be a Modbus unit id, 1 to 247, not 0"),
        ("scan", {"bus": "b", "last": True}, "last must be an integer, not True"),
        ("scan", {"bus": ""}, "bus must not be empty"),
        ("scan", {"bus": "b", "profile": "x" * 500}, "profile must be at most 128 characters long"),
        ("scan", {"bus": "b", "profile": "/etc/hostname"}, "profile must be a profile's name (letters, digits,"),
        ("scan", {"bus": "b", "profile": "../smart_water_meter"}, "profile must be a profile's name ("),
    ],
)
def test_a_refused_request_is_said_in_one_line_from_its_field(name: str, request_: dict[str, Any], said: str) -> None:
    from aquami.contracts.commands import request_problem

    problem = request_problem(name, request_)
    assert problem is not None and problem.startswith(said) and "\n" not in problem, problem
