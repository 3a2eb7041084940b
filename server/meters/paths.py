"""A meter id as one part of a URL path, "/" and all.

register-meters takes only ids a gateway can send, but a database from before it checked may hold
"A/B": the page links to it as /meters/A%2FB/readings, and Starlette decodes the path before routing,
so with the default ``{meter_id}`` (no "/") every route of that meter was a 404. Starlette's ``path``
convertor (``.*``) would also take "" and "A/", so /meters/ and /meters/A/ would be 404s for meter
"" and "A/" where they redirect to /meters and /meters/A; this one takes any id that neither is
empty nor begins or ends with "/".
"""

from __future__ import annotations

from starlette.convertors import Convertor


class MeterIdConvertor(Convertor[str]):
    regex = "[^/](?:.*[^/])?"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value
