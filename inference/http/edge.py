"""The edge: the service's first ASGI middleware, the one place every request passes before BentoML or a route
does any work for it.

In order, for each request:

0. **Its id**: the caller's `X-Request-ID` when it is one (printable ASCII, at most 128 characters), else a new one
   (32 random hex digits); set in `inference.logs.REQUEST_ID` while the request is answered, so every log record
   of it carries the id, and returned in the answer's `X-Request-ID`, whoever answers (the route, BentoML, or the
   edge itself refusing).
1. **Which route it is**, by template (`/v2/models/{name}/infer`, never the raw path): the label of every metric
   here, so that a caller inventing paths cannot invent metric series (an unknown path is `unmatched`).
2. **Load**: a worker works on at most `max_concurrent_requests` at once; the next one is answered 503
   `overloaded` with `Retry-After` at once, before its body is read (probes and /metrics are never refused).
3. **Tokens** of the routes that store what a writer sends (ratings, labelled feedback), before the body is read.
4. **The body**: JSON only where the route reads JSON; its size (the route's own limit: a single-item route
   takes a few KiB, a batch route up to `max_body_bytes`), from `Content-Length` or while it arrives; its
   nesting depth and the element counts the route limits (items per batch, features per item), read from the
   bytes' structure without parsing them (`inference.http.jsonscan`). Over a limit: a 4xx in the API's error
   shape naming it, counted in `inference_limit_rejections_total`.
5. **The caller going away**: once the body is read, a disconnect cancels the request's work (its queued
   batches are then skipped), so an abandoned request costs nothing more.
6. **What came of it**: `inference_http_requests_total{route, method, status}` and the time from here to the
   answer's last byte (`inference_http_request_duration_seconds`, queueing in the worker included); for a
   scoring route also `inference_requests_total{family, endpoint, segment, model_version, outcome}` and
   `inference_request_duration_seconds`, with the outcome from the status (a 503 or 504 is a server error) and
   the version and segment the serving path reports (`inference.monitoring.request_labels`). A request
   cancelled by BentoML's timeout is counted as the 504 BentoML answers; one whose caller went away as 499.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from inference.errors import (
    BodyTooLarge,
    InferenceError,
    InvalidRequest,
    JsonTooDeep,
    Overloaded,
    Unauthorized,
    UnsupportedMediaType,
    WriterDisabled,
)
from inference.http.errors import error_bytes, error_headers
from inference.http.jsonscan import JsonShape, json_shape
from inference.http.tokens import token_name
from inference.logs import REQUEST_ID
from inference.monitoring.request_labels import CURRENT_REQUEST, RequestLabels

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
UNMATCHED = "unmatched"
CLIENT_GONE = 499  # nginx's status for a request whose client closed the connection before the answer
TIMED_OUT = 504
SCAN_PREFIX_BYTES = 256 * 1024
WATCH_AFTER_S = 0.05  # a request still unanswered this long is watched for its caller going away
REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is taken as it is when it is printable ASCII of at most 128 characters; any other is replaced (and
# not echoed: it could carry a line break into a log, or be a megabyte).
ACCEPTED_REQUEST_ID = re.compile(rb"[\x20-\x7e]{1,128}")
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()


@dataclass(frozen=True)
class Count:
    """A limit on the elements of the body's containers at `depth` (1: the top object's members, 2: the elements
    of an array in it, ...), named as the client knows it: `items: at most 1000 items per request, got 5000`."""

    depth: int
    field: str
    noun: str
    per: str
    most: int
    error: type[InvalidRequest]

    def check(self, widest: int, *, at_least: bool = False) -> None:
        """`at_least`: `widest` was counted in a prefix of the body (the whole may hold more)."""
        if widest > self.most:
            got = f"at least {widest}" if at_least else str(widest)
            raise self.error(f"{self.field}: at most {self.most} {self.noun}s {self.per}, got {got}")


@dataclass(frozen=True)
class RouteSpec:
    """What the edge knows of a route: its template (the metric label), the family its limits are counted
    under, its body limit (None: the server's), the counts it limits, whether it needs a writer's token, whether
    it reads JSON only, and whether it is a probe (never refused for load, not timed)."""

    template: str
    family: str = "other"
    body_bytes: int | None = None
    counts: tuple[Count, ...] = ()
    writer: bool = False
    json_only: bool = True
    probe: bool = False
    endpoint: str | None = None  # a scoring route's endpoint label (single, batch, oip); None: not a scoring route
    batch: bool = False  # many items a request: counted against the worker's bound of batches in hand
    family_of: Callable[[str], str] | None = None  # the family from the path, where the route serves several

    def family_at(self, path: str) -> str:
        """The family a request to `path` is counted under."""
        return self.family_of(path) if self.family_of is not None else self.family


class RouteTable:
    """Route specs by exact path, then by template (`{name}` matches one path segment)."""

    def __init__(self, specs: Iterable[RouteSpec]) -> None:
        self._exact: dict[str, RouteSpec] = {}
        self._patterns: list[tuple[re.Pattern[str], RouteSpec]] = []
        self._prefixes: list[RouteSpec] = []
        for spec in specs:
            if spec.template.endswith("/*"):
                self._prefixes.append(spec)
            elif "{" in spec.template:
                parts = spec.template.split("/")
                pattern = "/".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
                self._patterns.append((re.compile(pattern + "$"), spec))
            else:
                self._exact.setdefault(spec.template, spec)
        self._unmatched = RouteSpec(UNMATCHED)

    def match(self, path: str) -> RouteSpec:
        spec = self._exact.get(path)
        if spec is not None:
            return spec
        for pattern, candidate in self._patterns:
            if pattern.match(path):
                return candidate
        for candidate in self._prefixes:
            if path.startswith(candidate.template[:-1]):
                return candidate
        return self._unmatched

    def templates(self) -> list[str]:
        return [*self._exact, *(spec.template for _, spec in self._patterns), *(s.template for s in self._prefixes)]


class EdgeMetrics(Protocol):
    def request(self, route: str, method: str, status: int, seconds: float) -> None: ...

    def in_flight(self, route: str, delta: int) -> None: ...

    def limit(self, family: str, limit: str) -> None: ...

    def scored(self, family: str, endpoint: str, segment: str, version: str, outcome: str, seconds: float) -> None: ...


class NoEdgeMetrics:
    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        pass

    def in_flight(self, route: str, delta: int) -> None:
        pass

    def limit(self, family: str, limit: str) -> None:
        pass

    def scored(self, family: str, endpoint: str, segment: str, version: str, outcome: str, seconds: float) -> None:
        pass


@dataclass(frozen=True)
class EdgeLimits:
    max_body_bytes: int
    max_json_depth: int
    max_concurrent_requests: int
    retry_after_s: int = 1
    max_loop_lag_s: float = float("inf")
    max_concurrent_batches: int = 1_000_000


class LoopLag:
    """How late the event loop runs a timer due every `interval_s`: the time a request just read waits before the
    loop gets to it. A request waiting there is not yet in any count the edge keeps (it has not reached the edge),
    so this is the signal that the worker took more than it can answer in time. `lag_s` is the worst lateness of
    the last `window_s`: one late tick is seen by the requests that follow it, not only until the next tick."""

    def __init__(self, interval_s: float = 0.01, window_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.window_s = window_s
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._peak, self._peak_at = 0.0, 0.0

    @property
    def lag_s(self) -> float:
        if self._loop is None or self._loop.time() - self._peak_at > self.window_s:
            return 0.0
        return self._peak

    def start(self) -> None:
        if not self._running:
            self._running = True
            self._loop = asyncio.get_running_loop()
            self._loop.call_later(self.interval_s, self._tick, self._loop.time() + self.interval_s)

    def _tick(self, due: float) -> None:
        assert self._loop is not None
        now = self._loop.time()
        lag = max(now - due, 0.0)
        if lag >= self._peak or now - self._peak_at > self.window_s:
            self._peak, self._peak_at = lag, now
        self._loop.call_later(self.interval_s, self._tick, now + self.interval_s)


class Edge:
    """The middleware; `metrics` is called once, in the worker, before the first request is counted."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: RouteTable,
        limits: EdgeLimits,
        writer_tokens: Mapping[str, str] | None = None,
        writer_setting: str = "INFERENCE_RATINGS_TOKEN",
        metrics: Callable[[], EdgeMetrics] = NoEdgeMetrics,
        backlog: Callable[[str], InferenceError | None] | None = None,
    ) -> None:
        """`backlog(family)`: the refusal a family's queue gives a new request now, if it is over its bound: the
        edge answers it before reading the body."""
        self.app = app
        self.routes = routes
        self.limits = limits
        self.writer_tokens = dict(writer_tokens or {})
        self.writer_setting = writer_setting
        self._metrics_factory = metrics
        self.backlog = backlog
        self._metrics: EdgeMetrics | None = None
        self.active = 0  # requests this worker is working on (probes aside)
        self.active_batches = 0  # of which batches
        self.loop_lag = LoopLag()

    @property
    def metrics(self) -> EdgeMetrics:
        if self._metrics is None:
            self._metrics = self._metrics_factory()
        return self._metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        id_header = (_REQUEST_ID_KEY, request_id.encode())
        current = REQUEST_ID.set(request_id)
        try:
            await self._answer(scope, receive, send, id_header)
        finally:
            REQUEST_ID.reset(current)

    async def _answer(self, scope: Scope, receive: Receive, send: Send, id_header: tuple[bytes, bytes]) -> None:
        spec = self.routes.match(scope["path"])
        status = 0
        complete = False

        async def sending(message: Message) -> None:
            nonlocal status, complete
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        if spec.probe:
            await self.app(scope, receive, sending)
            return
        metrics = self.metrics
        started = time.perf_counter()
        labels = None
        if spec.endpoint is not None and scope["method"] == "POST":  # the serving path fills in what answered
            labels = RequestLabels()
            CURRENT_REQUEST.set(labels)
        metrics.in_flight(spec.template, 1)
        try:
            error = self._load_refusal(spec)
            if error is not None:
                await self._refuse(sending, spec, error)
                return
            self.active += 1
            self.active_batches += spec.batch
            try:
                gone = await self._admit(spec, scope, receive, sending, lambda: complete)
            finally:
                self.active -= 1
                self.active_batches -= spec.batch
            if gone and not status:
                status = CLIENT_GONE
        except asyncio.CancelledError:
            status = status or TIMED_OUT  # BentoML's timeout cancelled the request and answers 504 itself
            raise
        finally:
            seconds = time.perf_counter() - started
            status = status or CLIENT_GONE
            metrics.in_flight(spec.template, -1)
            metrics.request(spec.template, scope["method"], status, seconds)
            if labels is not None and spec.endpoint is not None:
                family = labels.family or spec.family_at(scope["path"])
                endpoint = labels.endpoint or spec.endpoint
                metrics.scored(family, endpoint, labels.segment, labels.version, outcome_of(status), seconds)

    def _load_refusal(self, spec: RouteSpec) -> Overloaded | None:
        """A 503 for a worker that has as much as it can answer in time: too many requests in hand, too many batches
        (a batch of a hundred items costs the event loop what a hundred single requests do, so batches have a bound
        of their own, which single requests never wait behind), or an event loop running late."""
        self.loop_lag.start()
        if spec.batch and self.active_batches >= self.limits.max_concurrent_batches:
            return Overloaded(
                f"this worker is answering {self.active_batches} batches, its most "
                "(INFERENCE_MAX_CONCURRENT_BATCHES); retry after the Retry-After seconds",
                retry_after_s=self.limits.retry_after_s,
                limit="concurrent_batches",
            )
        if self.active >= self.limits.max_concurrent_requests:
            return Overloaded(
                f"this worker is answering {self.active} requests, its most (INFERENCE_MAX_CONCURRENT_REQUESTS); "
                "retry after the Retry-After seconds",
                retry_after_s=self.limits.retry_after_s,
                limit="concurrent_requests",
            )
        if self.loop_lag.lag_s > self.limits.max_loop_lag_s:
            return Overloaded(
                f"this worker runs {self.loop_lag.lag_s * 1000:.0f} ms behind, more than "
                "INFERENCE_MAX_EVENT_LOOP_LAG_MS allows; retry after the Retry-After seconds",
                retry_after_s=self.limits.retry_after_s,
                limit="event_loop_lag",
            )
        return None

    async def _admit(
        self, spec: RouteSpec, scope: Scope, receive: Receive, send: Send, answered: Callable[[], bool]
    ) -> bool:
        """The request's checks, then the route; True when the caller went away before the answer."""
        if spec.writer:
            error = self._writer_error(scope)
            if error is not None:
                await self._refuse(send, spec, error)
                return False
        if scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return False
        if spec.endpoint is not None and self.backlog is not None:
            family = spec.family_at(scope["path"])
            refusal = self.backlog(family)
            if refusal is not None:  # its family's queue is full: refused before its body costs anything
                await self._refuse(send, spec, refusal, family=family)
                return False
        try:
            body = await self._body(spec, scope, receive)
        except InferenceError as error:
            await self._refuse(send, spec, error)
            return False
        if body is None:
            return True  # the caller went away while sending
        return await self._run(scope, body, receive, send, answered)

    async def _run(self, scope: Scope, body: bytes, receive: Receive, send: Send, answered: Callable[[], bool]) -> bool:
        """The route with the body replayed; True when the caller disconnected before its answer and the route's
        work was cancelled for it.

        A request answered within `WATCH_AFTER_S` costs nothing more than a timer: only then does a watcher start
        reading the connection for a disconnect (which uvicorn reports through `receive`), to cancel this task."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        gone = False
        watcher: asyncio.Task[None] | None = None
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        async def watch() -> None:
            nonlocal gone
            message = await receive()
            while message["type"] != "http.disconnect":  # a body sent after the one declared: ignored
                message = await receive()
            if not answered() and task is not None and not task.done():
                gone = True
                task.cancel()

        def start_watching() -> None:
            nonlocal watcher
            watcher = loop.create_task(watch())

        timer = loop.call_later(WATCH_AFTER_S, start_watching)
        try:
            await self.app(scope, replay, send)
        except asyncio.CancelledError:
            if gone and task is not None and task.uncancel() == 0:
                return True  # cancelled here, for the caller that went away: nobody to answer
            raise  # cancelled from outside (the timeout): BentoML answers
        finally:
            timer.cancel()
            if watcher is not None:
                watcher.cancel()
        return False

    def _writer_error(self, scope: Scope) -> InferenceError | None:
        if not self.writer_tokens:
            return WriterDisabled(
                f"ratings are off: set {self.writer_setting} (or {self.writer_setting}S) and send it as a bearer token"
            )
        authorization = _header(scope, b"authorization").decode("latin-1") or None
        if token_name(self.writer_tokens, authorization) is None:
            return Unauthorized("a ratings writer's bearer token is required (the admin token is not one)")
        return None

    async def _body(self, spec: RouteSpec, scope: Scope, receive: Receive) -> bytes | None:
        """The body within the route's limits; None when the caller went away before sending it all."""
        media_type = _header(scope, b"content-type").split(b";")[0].strip().lower()
        if spec.json_only and media_type and media_type != b"application/json":
            # BentoML would pick another decoder by this header (a form parser; a pickle loader, which it refuses
            # on the main server): the API reads JSON only.
            raise UnsupportedMediaType(f"Content-Type: expected application/json, got {media_type.decode('latin-1')}")
        most = spec.body_bytes or self.limits.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > most:
            raise _too_large(most, f"{declared} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > most:
                raise _too_large(most, f"more than {most} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if spec.json_only:
            self._check_shape(spec, body)
        return body

    def _check_shape(self, spec: RouteSpec, body: bytes) -> None:
        """Depth and element counts from the body's structure. Most bodies skip the scan: one with no more
        brackets than the depth limit cannot be deeper, one with fewer commas than a count limit cannot exceed it."""
        most_depth = self.limits.max_json_depth
        elements = body.count(b",") + 1 if spec.counts else 0
        counts = [count for count in spec.counts if elements > count.most]
        deep = body.count(b"{") + body.count(b"[") > most_depth
        if not counts and not deep:
            return
        depths = tuple(count.depth for count in counts)
        if len(body) > SCAN_PREFIX_BYTES:
            # A flood of items is over its limit within the first bytes: refused after scanning those alone. A
            # prefix's counts and depth are lower bounds of the whole body's, so a refusal here is exact.
            self._check_counts(json_shape(body[:SCAN_PREFIX_BYTES], depths=depths), counts, prefix=True)
        self._check_counts(json_shape(body, depths=depths), counts)

    def _check_counts(self, shape: JsonShape, counts: list[Count], *, prefix: bool = False) -> None:
        most_depth = self.limits.max_json_depth
        if shape.depth > most_depth:
            got = f"at least {shape.depth}" if prefix else str(shape.depth)
            raise JsonTooDeep(f"request body: JSON nested at most {most_depth} levels deep, got {got}")
        for count in counts:
            count.check(shape.widest_at(count.depth), at_least=prefix)

    async def _refuse(self, send: Send, spec: RouteSpec, error: InferenceError, *, family: str | None = None) -> None:
        if error.limit:
            self.metrics.limit(family or spec.family, error.limit)
        body = error_bytes(error)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(name.lower().encode(), value.encode()) for name, value in error_headers(error).items()]
        if isinstance(error, BodyTooLarge):
            headers.append((b"connection", b"close"))  # the rest of the body is not read
        await send({"type": "http.response.start", "status": int(error.status), "headers": headers})
        await send({"type": "http.response.body", "body": body})


def outcome_of(status: int) -> str:
    """A scoring request's outcome from its HTTP status: what the availability objective counts."""
    if status == CLIENT_GONE:
        return "cancelled"
    if status >= 500:
        return "server_error"  # a 503 shed for load and a 504 timeout among them: the caller got no answer
    return "client_error" if status >= 400 else "ok"


def _too_large(most: int, got: str) -> BodyTooLarge:
    return BodyTooLarge(f"request body: at most {most} bytes for this route, got {got}")


def request_id_of(scope: Scope) -> str:
    """The caller's X-Request-ID when it is acceptable (`ACCEPTED_REQUEST_ID`), else a new id: 32 random hex digits,
    a uuid4's shape (`secrets.token_hex` costs a fifth of `uuid.uuid4().hex`, and this runs for every request)."""
    given = _header(scope, _REQUEST_ID_KEY)
    if given and ACCEPTED_REQUEST_ID.fullmatch(given):
        return given.decode("ascii")
    return secrets.token_hex(16)


def _header(scope: Scope, wanted: bytes) -> bytes:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return bytes(value)
    return b""


def _content_length(scope: Scope) -> int | None:
    try:
        return int(_header(scope, b"content-length"))
    except ValueError:
        return None  # absent (chunked), or malformed, which the server refuses itself
