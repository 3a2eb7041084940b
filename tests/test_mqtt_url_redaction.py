"""A message that shows an MQTT URL never shows its password: before, a bad --mqtt-url was echoed
whole (``Invalid value for --mqtt-url: MQTT URL 'mqtts+tls://coll:MQS3cret@…'``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from aquami.cli import app
from aquami.mqtt import MqttEndpoint, redacted
from gateway.config import ConfigError, parse_config_text

SECRET = "MQS3cret"
_LOWER = "abcdefghijklmnopqrstuvwxyz0123456789"

# A password of any characters, some a URL treats as delimiters; marked so it is found in any text.
passwords = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=12).map(
    lambda tail: SECRET + tail
)
schemes = st.sampled_from(["mqtt://", "mqtts://", "mqtts+tls://", "http://", "", "tcp:/"])
users = st.text(alphabet=_LOWER, min_size=1, max_size=8)
hosts = st.text(alphabet=_LOWER + ".-", max_size=12)
ports = st.sampled_from(["", ":1883", ":99999", ":x"])


@given(scheme=schemes, user=users, password=passwords, host=hosts, port=ports)
def test_no_message_about_a_url_shows_its_password(scheme: str, user: str, password: str, host: str, port: str) -> None:
    url = f"{scheme}{user}:{password}@{host}{port}"
    assert SECRET not in redacted(url) and ":***@" in redacted(url)
    try:
        endpoint = MqttEndpoint.parse(url)
    except ValueError as error:
        assert SECRET not in str(error), str(error)
    else:  # a URL that parses still gives the broker its password
        assert endpoint.password is not None and SECRET in endpoint.password
        assert SECRET not in endpoint.url


@given(url=st.text(alphabet=_LOWER + ":/.", max_size=30))
def test_a_url_without_a_password_is_shown_as_it_is(url: str) -> None:
    assert redacted(url) == url


def test_the_collector_command_does_not_echo_the_password() -> None:
    url = f"mqtts+tls://coll:{SECRET}@broker.example:8883"
    result = CliRunner().invoke(
        app, ["collector", "run", "--database-url", "postgresql://unused/x", "--mqtt-url", url], terminal_width=400
    )
    assert result.exit_code == 2, result.output
    assert "--mqtt-url" in result.output and "coll:***@broker.example" in result.output
    assert SECRET not in result.output


@pytest.mark.parametrize("url", [f"mqtts+tls://coll:{SECRET}@broker:8883", f"mqtt://coll:{SECRET}/x@:1883"])
def test_the_gateway_configuration_does_not_echo_the_password(url: str, tmp_path: Path) -> None:
    text = f'gateway_id = "gw-1"\n\n[mqtt]\nurl = "{url}"\n'
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text, "gw.toml")
    assert "url" in str(caught.value) and SECRET not in str(caught.value)
