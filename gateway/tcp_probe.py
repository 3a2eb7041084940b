"""Why a TCP peer will not take a connection, in a few words (pymodbus 3.16 only logs it)."""

from __future__ import annotations

import asyncio
import contextlib
import os


async def why_no_connection(host: str, port: int, timeout_s: float) -> str | None:
    """``Connection refused``, ``No route to host``, ``no answer within 0.5 s``…, or None when a
    connection is made now (it is closed at once, nothing sent)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except OSError as error:
        # asyncio's "Multiple exceptions: [Errno 111] Connect call failed …" for a name with several
        # addresses has no errno: said as it is
        return os.strerror(error.errno) if error.errno else str(error) or type(error).__name__
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None
