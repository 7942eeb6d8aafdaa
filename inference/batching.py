"""An adaptive batcher: concurrent single requests are scored together in one vectorised call.

When the model is idle, a request is dispatched at once (no wait at low load). While a batch is being
computed, requests that arrive queue up and all go together in the next call, up to `max_batch_size`.
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


class AdaptiveBatcher(Generic[Item, Result]):
    def __init__(
        self,
        predict_batch: Callable[[Sequence[Item]], Sequence[Result]],
        *,
        name: str,
        max_batch_size: int = 1024,
        max_wait_ms: float = 0.0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self._predict_batch = predict_batch
        # One thread per family: the event loop keeps accepting requests while a batch computes.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{name}")
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[Result]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batch_sizes: list[int] = []  # recent dispatch sizes, bounded; read by tests and benchmarks

    async def submit(self, item: Item) -> Result:
        return (await self.submit_many([item]))[0]

    async def submit_many(self, items: Sequence[Item]) -> list[Result]:
        """Queue `items` together (they land in the same or consecutive batches) and wait for their results."""
        queue = self._ensure_worker()
        loop = asyncio.get_running_loop()
        futures = []
        for item in items:
            future: asyncio.Future[Result] = loop.create_future()
            queue.put_nowait((item, future))
            futures.append(future)
        return list(await asyncio.gather(*futures))

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _ensure_worker(self) -> asyncio.Queue[tuple[Item, asyncio.Future[Result]]]:
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run(self._queue), name=f"batcher-{self.name}")
        return self._queue

    async def _run(self, queue: asyncio.Queue[tuple[Item, asyncio.Future[Result]]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            if self.max_wait > 0:
                deadline = loop.time() + self.max_wait
                while len(batch) < self.max_batch_size and (remaining := deadline - loop.time()) > 0:
                    try:
                        batch.append(await asyncio.wait_for(queue.get(), remaining))
                    except TimeoutError:
                        break
            while len(batch) < self.max_batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            await self._dispatch(loop, batch)

    async def _dispatch(
        self, loop: asyncio.AbstractEventLoop, batch: list[tuple[Item, asyncio.Future[Result]]]
    ) -> None:
        self.batch_sizes.append(len(batch))
        del self.batch_sizes[:-1000]
        items = [item for item, _ in batch]
        try:
            results = await loop.run_in_executor(self._executor, self._predict_batch, items)
        except Exception as err:  # the whole batch failed: every caller gets the error
            logger.exception("batcher %s: a batch of %d failed", self.name, len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # a caller that went away cancelled its future
                future.set_result(result)
