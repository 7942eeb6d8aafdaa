"""The labels of the scoring request being answered, filled where they become known and read where it ends.

The edge (`inference.http.edge`) measures a request from its first byte to its answer's last and counts it by its
HTTP status; only the serving path knows which version and segment answered. The edge puts a `RequestLabels` in
`CURRENT_REQUEST` before calling the route; `Observer.request` fills it in; the edge reads it back once the answer
is sent. A context variable, so that the routes in between need not carry it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class RequestLabels:
    family: str | None = None  # None until the serving path says (the edge then uses the route's)
    endpoint: str | None = None
    segment: str = ""
    version: str = "none"


CURRENT_REQUEST: ContextVar[RequestLabels | None] = ContextVar("inference_request_labels", default=None)
