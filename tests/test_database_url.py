"""A database URL that is none is said at once, in one line with its password hidden, and exit 1
(78, ``EX_CONFIG``, from ``collector run`` and ``server run``, which their units do not restart on).

Before, ``postgresql//aquami:S3cretDB@db:5432/aquami`` (its colon missing) let the server start:
/health answered 200, every API call 503 "try again shortly", and psycopg_pool logged the whole URL,
password and all, about every 7 s; ``collector migrate`` and ``collector run`` printed it too."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aquami.database_url import BadDatabaseUrl, check_database_url
from aquami.redact import hide_password, redacted

SECRET = "S3cretDB"
BAD = f"postgresql//aquami:{SECRET}@db:5432/aquami"
_LOWER = "abcdefghijklmnopqrstuvwxyz0123456789"

passwords = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n\r\x00"), max_size=12).map(
    lambda tail: SECRET + tail
)
schemes = st.sampled_from(["postgresql://", "postgres://", "postgresql//", "postgresql:/", "", "http://"])
users = st.text(alphabet=_LOWER, min_size=1, max_size=8)
hosts = st.text(alphabet=_LOWER + ".-", max_size=12)
tails = st.sampled_from(["", ":5432/aquami", "/aquami?sslmode=require", ":x/y", "/db?foo=1"])


@given(scheme=schemes, user=users, password=passwords, host=hosts, tail=tails)
def test_no_message_about_a_database_url_shows_its_password(
    scheme: str, user: str, password: str, host: str, tail: str
) -> None:
    url = f"{scheme}{user}:{password}@{host}{tail}"
    assert SECRET not in redacted(url)
    try:
        assert check_database_url(url) == url
    except BadDatabaseUrl as error:
        assert SECRET not in str(error) and "\n" not in str(error), str(error)


@given(password=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n\r\x00'\\"), max_size=12))
def test_a_password_setting_is_hidden_too(password: str) -> None:
    url = f"host=db user=aquami password='{SECRET}{password}' dbname=aquami sslmode=require x"
    said = hide_password(f"connection info {url} and {SECRET}{password}", url)
    assert SECRET not in said and SECRET not in redacted(url)
    with pytest.raises(BadDatabaseUrl) as refused:
        check_database_url(url)
    assert SECRET not in str(refused.value)


def test_a_good_url_passes_unchanged() -> None:
    for url in ("postgresql://aquami:pw@db:5432/aquami", "host=db dbname=aquami", ""):
        assert check_database_url(url) == url


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["collector", "migrate"], 1),
        (["collector", "run", "--mqtt-url", "mqtt://127.0.0.1:1"], 78),  # EX_CONFIG: its unit not restarted
        (["server", "run", "--port", "0"], 78),
        (["server", "list-keys"], 1),
    ],
)
def test_a_command_given_a_bad_database_url_says_so_in_one_line_and_exits_1_or_78_as_a_service(
    command: list[str], code: int
) -> None:
    env = {**os.environ, "AQUAMI_DATABASE_URL": BAD}
    result = subprocess.run(
        [sys.executable, "-m", "aquami", *command], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == code, result.stderr
    assert result.stderr == (
        "error: database: URL 'postgresql//aquami:***@db:5432/aquami': missing \"=\" after "
        '"postgresql//aquami:***@db:5432/aquami" in connection info string '
        "(give postgresql://USER:PASSWORD@HOST:PORT/DATABASE)\n"
    )
