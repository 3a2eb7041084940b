"""Calling a running rig's fault endpoint (what ``aquami simulate fault`` does), with the standard library."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class RigClientError(RuntimeError):
    """The rig could not be reached, or refused the request (the message is its ``detail``)."""


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs; values are numbers where they read as numbers (finite ones: ``nan`` is refused)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise RigClientError(f"option {pair!r}: expected NAME=VALUE")
        options[name] = _value(pair, value)
    return options


def _value(pair: str, text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        raise RigClientError(f"option {pair!r}: {text} is not a finite number")
    return number


def _call(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    try:
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    except ValueError as error:  # not a URL at all
        raise RigClientError(f"--rig {url!r}: {error}; give the rig's address, e.g. http://127.0.0.1:8470") from None
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        try:
            detail = json.loads(error.read()).get("detail", error.reason)
        except (ValueError, AttributeError):
            detail = error.reason
        raise RigClientError(f"{error.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as error:
        raise RigClientError(f"cannot reach the rig at {url}: {error}") from None


def inject_fault(rig_url: str, meter: str, fault: str, options: dict[str, Any] | None = None) -> Any:
    return _call("POST", f"{rig_url.rstrip('/')}/faults", {"meter": meter, "fault": fault, **(options or {})})


def clear_faults(rig_url: str, meter: str, fault_id: int | None = None) -> Any:
    """Clear ``meter``'s fault ``fault_id``, or all its faults; the rig refuses a fault of another meter."""
    base = rig_url.rstrip("/")
    query = f"meter={urllib.parse.quote(meter)}"
    if fault_id is not None:
        return _call("DELETE", f"{base}/faults/{fault_id}?{query}")
    return _call("DELETE", f"{base}/faults?{query}")


def meters(rig_url: str) -> Any:
    return _call("GET", f"{rig_url.rstrip('/')}/meters")
