"""Request bodies read with JSON's numbers as exact decimals, not as binary floats.

A register or an amount of money sent as a JSON number went through ``json.loads`` as a float
before Pydantic saw it: ``12345678901.234567`` became ``12345678901.234568`` and was stored so,
answered 200. Reading numbers as ``Decimal`` keeps them as written; a ``float`` field still takes
them (Pydantic converts).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import Request, Response

from server.query_params import KnownQueryRoute


class _ExactJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), parse_float=Decimal)
        return self._json


class ExactJsonRoute(KnownQueryRoute):
    """A route whose JSON body keeps its numbers' digits (FastAPI's custom route class pattern), and
    whose query takes only the parameters it declares (:class:`KnownQueryRoute`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def exact(request: Request) -> Response:
            return await handler(_ExactJsonRequest(request.scope, request.receive))

        return exact
