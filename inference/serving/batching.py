"""An adaptive batcher: concurrent single requests are scored together in one vectorised call.

When the model is idle, a request is dispatched at once (no wait at low load). While a batch is being
computed on the family's batch thread, requests that arrive queue up and all go together in the next call,
up to `max_batch_size`.
Batch size therefore follows the load by itself, with no learned wait to decay after a burst.
`max_wait_ms` adds an optional fixed wait to gather more items; it is 0 by default.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

logger = logging.getLogger("inference")


class _Submission(Generic[Item, Result]):
    """Items submitted together (at most `max_batch_size`), answered through one future."""

    __slots__ = ("future", "items")

    def __init__(self, items: Sequence[Item], future: asyncio.Future[list[Result]]) -> None:
        self.items = items
        self.future = future


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
    ) -> None:
        """`lone_items_inline`: score a lone item on an idle model on the event loop instead of the batch thread.
        Worth it only for models faster than the thread hand-off (~0.3 ms here, e.g. the skills boosters): it
        blocks the loop while it runs, so a slow model would stall every other request and its timeouts.
        `on_dispatch` hears the size of every batch (for the batch-size metric)."""
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.lone_items_inline = lone_items_inline
        self._on_dispatch = on_dispatch
        self._predict_batch = predict_batch
        # One thread per family: the event loop keeps accepting requests while a batch computes.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{name}")
        self._queue: asyncio.Queue[_Submission[Item, Result]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batch_sizes: list[int] = []  # recent dispatch sizes, bounded; read by tests and benchmarks

    async def submit(self, item: Item) -> Result:
        return (await self.submit_many([item]))[0]

    async def submit_many(self, items: Sequence[Item]) -> list[Result]:
        """Queue `items` together (they land in the same or consecutive batches) and wait for their results.

        One future per chunk of `max_batch_size` items rather than one per item: a 100-item request costs
        the event loop one wake-up, not a hundred.
        """
        if not items:
            return []
        queue = self._ensure_worker()
        loop = asyncio.get_running_loop()
        futures = []
        for start in range(0, len(items), self.max_batch_size):
            future: asyncio.Future[list[Result]] = loop.create_future()
            queue.put_nowait(_Submission(items[start : start + self.max_batch_size], future))
            futures.append(future)
        if len(futures) == 1:
            return await futures[0]
        return [result for chunk in await asyncio.gather(*futures) for result in chunk]

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _ensure_worker(self) -> asyncio.Queue[_Submission[Item, Result]]:
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run(self._queue), name=f"batcher-{self.name}")
        return self._queue

    async def _run(self, queue: asyncio.Queue[_Submission[Item, Result]]) -> None:
        loop = asyncio.get_running_loop()
        pending: _Submission[Item, Result] | None = None  # taken from the queue but did not fit the last batch
        while True:
            batch = [pending if pending is not None else await queue.get()]
            pending = None
            size = len(batch[0].items)
            deadline = loop.time() + self.max_wait
            while size < self.max_batch_size:
                if not queue.empty():
                    submission = queue.get_nowait()
                elif self.max_wait > 0 and (remaining := deadline - loop.time()) > 0:
                    try:
                        submission = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        break
                else:
                    break
                if size + len(submission.items) > self.max_batch_size:
                    pending = submission
                    break
                batch.append(submission)
                size += len(submission.items)
            await self._dispatch(loop, batch, size)

    async def _dispatch(
        self, loop: asyncio.AbstractEventLoop, batch: list[_Submission[Item, Result]], size: int
    ) -> None:
        self.batch_sizes.append(size)
        del self.batch_sizes[:-1000]
        if self._on_dispatch is not None:
            self._on_dispatch(size)
        items = [item for submission in batch for item in submission.items]
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
        start = 0
        for submission in batch:
            end = start + len(submission.items)
            if not submission.future.done():  # a caller that went away cancelled its future
                submission.future.set_result(list(results[start:end]))
            start = end
