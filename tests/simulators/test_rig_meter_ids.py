"""The rig's meter ids and transport names are ones a gateway takes: the gateway file the rig writes
(``--gateway-config``) loads with the rig's own ids, and an id the rig prints can be copied into a
gateway's configuration.

Before, the rig took any text: a rig file with ``id = "Zähler 1"`` (or a transport ``"bus 1"``) ran,
served and printed that meter, and the gateway refused the file written for it
(``meters[0].meter_id: 'Zähler 1' is not an identifier``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aquami.contracts.reads import IDENTIFIER_PATTERN, is_identifier
from gateway.config import parse_config_text
from simulators.rig.config import ConfigError, parse_rig_text
from simulators.rig.gateway_config import gateway_config_text
from simulators.rig.runner import Rig

NOW = datetime(2026, 3, 4, 3, 30, tzinfo=UTC)
IDS = st.from_regex(IDENTIFIER_PATTERN, fullmatch=True)  # beside any text: ids a gateway takes, and long ones


def _rig_text(meter_id: str, transport: str = "tcp") -> str:
    return f"""
[rig]
installed = "2026-01-01T00:00:00Z"

[[transport]]
name = {_basic_string(transport)}
protocol = "modbus_tcp"

[[meter]]
id = {_basic_string(meter_id)}
kind = "smart_water_meter"
transport = {_basic_string(transport)}
address = 1
"""


def _basic_string(text: str) -> str:
    """``text`` as a TOML basic string (every character escaped: any text is a valid one)."""
    return '"' + "".join(f"\\U{ord(c):08X}" for c in text) + '"'


def _gateway_file_meters(rig_text: str) -> dict[str, str]:
    """The meters (id to bus) of the gateway file the rig writes for this rig file, as the gateway
    loads it; the rig's transport placed where a started rig would say it listens."""
    rig = Rig(parse_rig_text(rig_text, now=NOW))
    rig.where = {t.name: "127.0.0.1:5020" for t in rig.config.transports}
    config = parse_config_text(gateway_config_text(rig, "mqtt://127.0.0.1:1883", "spool.sqlite"), "gw.toml")
    return {m.meter_id: bus.name for bus in config.buses for m in bus.meters}


@pytest.mark.parametrize(
    ("meter_id", "transport", "message"),
    [
        ("Zähler 1", "tcp", r"meter\[0\]\.id: 'Zähler 1' is not a meter id a gateway takes \(letters, digits"),
        ("M 1", "tcp", r"meter\[0\]\.id: 'M 1' is not a meter id a gateway takes"),
        ("-M1", "tcp", r"meter\[0\]\.id: '-M1' is not a meter id a gateway takes"),
        ("M" * 65, "tcp", r"meter\[0\]\.id: 'M{65}' is not a meter id a gateway takes .*at most 64\)"),
        ("M1", "bus 1", r"transport\[0\]\.name: 'bus 1' is not a bus name a gateway takes"),
    ],
)
def test_an_id_a_gateway_would_refuse_is_refused_by_the_rig_naming_the_field(
    meter_id: str, transport: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_rig_text(_rig_text(meter_id, transport), now=NOW)


def test_the_gateway_file_carries_the_rig_s_own_ids() -> None:
    assert _gateway_file_meters(_rig_text("DMA1-INLET.2:a_b", "rtu_1.x")) == {"DMA1-INLET.2:a_b": "rtu_1.x"}


@settings(max_examples=60, deadline=None)
@given(
    meter_id=st.one_of(IDS, st.text(min_size=1, max_size=70)),
    transport=st.one_of(IDS, st.text(min_size=1, max_size=70)),
)
def test_whatever_the_rig_takes_the_gateway_takes_under_the_same_ids(meter_id: str, transport: str) -> None:
    """Any rig file's ids: refused by the rig, or carried as they are into a gateway file the gateway
    loads (and valid under the readings contract the gateway publishes them in)."""
    text = _rig_text(meter_id, transport)
    try:
        parse_rig_text(text, now=NOW)
    except ConfigError as error:
        assert not (is_identifier(meter_id) and is_identifier(transport)), error
        return
    assert is_identifier(meter_id) and is_identifier(transport)
    assert _gateway_file_meters(text) == {meter_id: transport}
