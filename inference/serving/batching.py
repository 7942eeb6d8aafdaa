"""An adaptive batcher: concurrent single requests are scored together in one vectorised call.

When the model is idle, a request is dispatched at once (no wait at low load). While a batch is being
computed on the family's batch thread, requests that arrive queue up and all go together in the next call,
up to `max_batch_size` items and `chunk_units` units of cost. Batch size therefore follows the load by itself,
with no learned wait to decay after a burst. `max_wait_ms` adds an optional fixed wait to gather more items; it
is 0 by default.

The queue is bounded by time, not by count: each item has a cost in units (a row; a text's characters), the
batcher measures what a unit and a call cost on this machine, and a submission that would wait longer than
`max_queue_wait_s` behind the work already queued is refused at once with `Overloaded` (503 with Retry-After),
instead of waiting into the request timeout. A submission whose caller has gone (its request timed out, was
cancelled, or its client disconnected) is skipped when its turn comes: nobody pays for work nobody waits for.
A large request is split into chunks of at most `chunk_units`, queued one after the other as each is scored: other
callers' items get their turn between its chunks (a request waits for one chunk of each request ahead of it), and
a cancelled one stops after the chunk in hand.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from inference.errors import Overloaded

Item = TypeVar("Item")
Result = TypeVar("Result")

logger = logging.getLogger("inference")

SMALL_CALL_UNITS = 4  # calls this small measure the fixed cost of a call
LARGE_CALL_UNITS = 32  # calls this large measure the cost of a unit
SMOOTHING = 0.2  # weight of the newest measurement in the running averages


class _Submission(Generic[Item, Result]):
    """Items submitted together (at most `max_batch_size`), answered through one future."""

    __slots__ = ("future", "items", "units")

    def __init__(self, items: Sequence[Item], units: float, future: asyncio.Future[list[Result]]) -> None:
        self.items = items
        self.units = units
        self.future = future


class CostModel:
    """What a call of the batch function costs here: a fixed part and a part per unit of cost, each a running
    average of measured calls (small calls measure the fixed part, large ones the part per unit). Starts from
    the family's guesses, which only matter until the first calls have been measured."""

    def __init__(self, *, seconds_per_call: float, seconds_per_unit: float) -> None:
        self.seconds_per_call = seconds_per_call
        self.seconds_per_unit = seconds_per_unit

    def observe(self, units: float, seconds: float) -> None:
        if units <= SMALL_CALL_UNITS:
            self.seconds_per_call += SMOOTHING * (seconds - self.seconds_per_call)
        elif units >= LARGE_CALL_UNITS:
            per_unit = max(seconds - self.seconds_per_call, 0.0) / units
            self.seconds_per_unit += SMOOTHING * (per_unit - self.seconds_per_unit)

    def seconds(self, units: float, calls: int = 1) -> float:
        return calls * self.seconds_per_call + units * self.seconds_per_unit


class Backlogs:
    """The batchers of this process by family, so that the edge can refuse a request whose family is already
    over its queue bound before reading its body: a refusal then costs no parsing. Weak references: a version's
    batchers go when it is dropped."""

    def __init__(self) -> None:
        self._batchers: dict[str, weakref.WeakSet[AdaptiveBatcher[Any, Any]]] = {}

    def register(self, family: str, batcher: AdaptiveBatcher[Any, Any]) -> None:
        self._batchers.setdefault(family, weakref.WeakSet()).add(batcher)

    def refusal(self, family: str) -> Overloaded | None:
        """The `Overloaded` a request of `family` would get from its batcher now, if any of them is over its bound
        (a request may go to any version's)."""
        for batcher in list(self._batchers.get(family, ())):
            refusal = batcher.refusal()
            if refusal is not None:
                return refusal
        return None


BACKLOGS = Backlogs()


@dataclass(frozen=True)
class BatcherOptions:
    """The settings every batcher of a server shares (the family adds its own costs): sizes, the gathering wait,
    the queue's bound in seconds, the Retry-After of a refusal, and where to report dispatches and queue changes."""

    max_batch_size: int = 1024
    max_wait_ms: float = 0.0
    max_queue_wait_s: float = math.inf
    retry_after_s: int = 1
    on_dispatch: Callable[[int], None] | None = None
    on_queued: Callable[[int], None] | None = None

    def batcher(
        self,
        predict_batch: Callable[[Sequence[Item]], Sequence[Result]],
        *,
        name: str,
        cost: Callable[[Item], float] | None = None,
        chunk_units: float = math.inf,
        cost_model: CostModel | None = None,
        lone_items_inline: bool = False,
        family: str | None = None,
    ) -> AdaptiveBatcher[Item, Result]:
        """`family`: the family whose requests this batcher's refusals refuse (its backlog is then checked at the
        edge); None for a batcher whose overload is answered otherwise (the ensemble: classic answers)."""
        batcher = AdaptiveBatcher(
            predict_batch,
            name=name,
            max_batch_size=self.max_batch_size,
            max_wait_ms=self.max_wait_ms,
            lone_items_inline=lone_items_inline,
            on_dispatch=self.on_dispatch,
            cost=cost,
            chunk_units=chunk_units,
            max_queue_wait_s=self.max_queue_wait_s,
            retry_after_s=self.retry_after_s,
            on_queued=self.on_queued,
            cost_model=cost_model,
        )
        if family is not None:
            BACKLOGS.register(family, batcher)
        return batcher


class AdaptiveBatcher(Generic[Item, Result]):
    def __init__(
        self,
        predict_batch: Callable[[Sequence[Item]], Sequence[Result]],
        *,
        name: str,
        max_batch_size: int = 1024,
        max_wait_ms: float = 0.0,
        lone_items_inline: bool = False,
        on_dispatch: Callable[[int], None] | None = None,
        cost: Callable[[Item], float] | None = None,
        chunk_units: float = math.inf,
        max_queue_wait_s: float = math.inf,
        retry_after_s: int = 1,
        on_queued: Callable[[int], None] | None = None,
        cost_model: CostModel | None = None,
    ) -> None:
        """`lone_items_inline`: score a lone item on an idle model on the event loop instead of the batch thread.
        Worth it only for models faster than the thread hand-off (~0.3 ms here, e.g. the skills boosters): it
        blocks the loop while it runs, so a slow model would stall every other request and its timeouts.
        `on_dispatch` hears the size of every batch (for the batch-size metric), `on_queued` every change of
        the items waiting (for the queue gauge). `cost` gives an item's units (1 each by default)."""
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.lone_items_inline = lone_items_inline
        self.chunk_units = chunk_units
        self.max_queue_wait_s = max_queue_wait_s
        self.retry_after_s = retry_after_s
        self.costs = cost_model or CostModel(seconds_per_call=0.0005, seconds_per_unit=0.0001)
        self._cost = cost
        self._on_dispatch = on_dispatch
        self._on_queued = on_queued
        self._predict_batch = predict_batch
        # One thread per family: the event loop keeps accepting requests while a batch computes.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{name}")
        self._queue: asyncio.Queue[_Submission[Item, Result]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.queued_items = 0  # items waiting (not yet dispatched)
        self.queued_units = 0.0
        self._running_until = 0.0  # monotonic time the call in hand is expected to end
        self.batch_sizes: list[int] = []  # recent dispatch sizes, bounded; read by tests and benchmarks
        self.skipped = 0  # items skipped because their caller had gone

    async def submit(self, item: Item) -> Result:
        return (await self.submit_many([item]))[0]

    async def submit_many(self, items: Sequence[Item]) -> list[Result]:
        """Queue `items` together (they land in the same or consecutive batches) and wait for their results.

        One future per chunk (at most `max_batch_size` items and `chunk_units` units) rather than one per item:
        a 100-item request costs the event loop one wake-up, not a hundred. `Overloaded` when the work queued
        ahead is expected to take longer than `max_queue_wait_s`; once admitted, every chunk is scored."""
        if not items:
            return []
        self.admit()
        queue = self._ensure_worker()
        loop = asyncio.get_running_loop()
        results: list[Result] = []
        # A chunk at a time: the next is queued once the one before is scored, so a request arriving meanwhile
        # waits for at most one chunk of each request ahead of it, not for all of a large one.
        for chunk, units in self._chunks(items):
            future: asyncio.Future[list[Result]] = loop.create_future()
            queue.put_nowait(_Submission(chunk, units, future))
            self._queued(len(chunk), units)
            results += await future
        return results

    def expected_wait_s(self) -> float:
        """How long a submission made now is expected to wait before its call starts: the call in hand, then the
        calls that take what is queued (together, as many as the batch size and chunk bound need)."""
        running = max(self._running_until - time.monotonic(), 0.0)
        calls = max(math.ceil(self.queued_items / self.max_batch_size), 1)
        if math.isfinite(self.chunk_units):
            calls = max(calls, math.ceil(self.queued_units / self.chunk_units))
        return running + self.costs.seconds(self.queued_units, calls)

    def admit(self) -> None:
        """Raise the refusal a new submission gets now, if any."""
        refusal = self.refusal()
        if refusal is not None:
            raise refusal

    def refusal(self) -> Overloaded | None:
        """`Overloaded` when the work ahead would keep a new submission waiting too long. An idle batcher admits
        anything: a request is bounded by the request limits, and refusing work on an idle model helps nobody."""
        if not self.queued_items:
            return None
        wait = self.expected_wait_s()
        if wait <= self.max_queue_wait_s:
            return None
        return Overloaded(
            f"{self.name}: {self.queued_items} items are queued ahead, about {wait:.1f} s of work, more than "
            f"INFERENCE_MAX_QUEUE_WAIT_MS allows ({self.max_queue_wait_s * 1000:.0f} ms); retry after the "
            "Retry-After seconds",
            retry_after_s=self.retry_after_s,
        )

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _chunks(self, items: Sequence[Item]) -> list[tuple[Sequence[Item], float]]:
        if self._cost is None:
            size = self.max_batch_size
            if math.isfinite(self.chunk_units):
                size = max(1, min(size, int(self.chunk_units)))
            starts = range(0, len(items), size)
            return [(items[start : start + size], float(min(size, len(items) - start))) for start in starts]
        chunks: list[tuple[Sequence[Item], float]] = []
        start, units = 0, 0.0
        for index, item in enumerate(items):
            cost = self._cost(item)
            if index > start and (index - start >= self.max_batch_size or units + cost > self.chunk_units):
                chunks.append((items[start:index], units))
                start, units = index, 0.0
            units += cost
        chunks.append((items[start:], units))
        return chunks

    def _queued(self, items: int, units: float) -> None:
        self.queued_items += items
        self.queued_units = max(self.queued_units + units, 0.0)
        if self._on_queued is not None:
            self._on_queued(items)

    def _ensure_worker(self) -> asyncio.Queue[_Submission[Item, Result]]:
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run(self._queue), name=f"batcher-{self.name}")
        return self._queue

    def _take(self, submission: _Submission[Item, Result]) -> bool:
        """False when the submission's caller has gone: it leaves the queue, skipped. A live one counts as queued
        until its call starts."""
        return not submission.future.done() or self._leave(submission)

    def _leave(self, submission: _Submission[Item, Result]) -> bool:
        """The submission leaves the queue (its call starts, or it is skipped); False when its caller has gone (its
        request timed out, or its client went away)."""
        self._queued(-len(submission.items), -submission.units)
        if submission.future.done():
            self.skipped += len(submission.items)
            return False
        return True

    async def _run(self, queue: asyncio.Queue[_Submission[Item, Result]]) -> None:
        loop = asyncio.get_running_loop()
        pending: _Submission[Item, Result] | None = None  # taken from the queue but did not fit the last batch
        while True:
            if pending is None:
                first = await queue.get()
                if not self._take(first):
                    continue
            else:
                first, pending = pending, None
            batch = [first]
            size, units = len(first.items), first.units
            deadline = loop.time() + self.max_wait
            while size < self.max_batch_size and units < self.chunk_units:
                if not queue.empty():
                    submission = queue.get_nowait()
                elif self.max_wait > 0 and (remaining := deadline - loop.time()) > 0:
                    try:
                        submission = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        break
                else:
                    break
                if not self._take(submission):
                    continue
                if size + len(submission.items) > self.max_batch_size or units + submission.units > self.chunk_units:
                    pending = submission
                    break
                batch.append(submission)
                size += len(submission.items)
                units += submission.units
            await self._dispatch(loop, batch)

    async def _dispatch(self, loop: asyncio.AbstractEventLoop, batch: list[_Submission[Item, Result]]) -> None:
        batch = [submission for submission in batch if self._leave(submission)]  # one gone meanwhile is skipped
        if not batch:
            return
        size = sum(len(submission.items) for submission in batch)
        units = sum(submission.units for submission in batch)
        self.batch_sizes.append(size)
        del self.batch_sizes[:-1000]
        if self._on_dispatch is not None:
            self._on_dispatch(size)
        items = [item for submission in batch for item in submission.items]
        started = time.monotonic()
        self._running_until = started + self.costs.seconds(units)
        try:
            if size == 1 and self.lone_items_inline:
                # Handing a lone item to the thread and back costs more than a fast model's prediction. Batches
                # always go to the thread, so the event loop keeps reading requests while the model computes.
                results = self._predict_batch(items)
            else:
                results = await loop.run_in_executor(self._executor, self._predict_batch, items)
            if len(results) != size:
                raise RuntimeError(f"the batch function returned {len(results)} results for {size} items")
        except Exception as err:  # the whole batch failed: every caller gets the error
            logger.exception("batcher %s: a batch of %d failed", self.name, size)
            for submission in batch:
                if not submission.future.done():
                    submission.future.set_exception(err)
            return
        finally:
            self._running_until = 0.0
        self.costs.observe(units, time.monotonic() - started)
        start = 0
        for submission in batch:
            end = start + len(submission.items)
            if not submission.future.done():  # a caller that went away cancelled its future
                submission.future.set_result(list(results[start:end]))
            start = end
