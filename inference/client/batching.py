"""Client-side batching: single calls made at about the same time travel as one batch request.

The first call of a batch waits `window_s` for company (or until `max_size` calls have gathered), then they are
sent together through `send_batch`, which returns one outcome per item, in order: a result, or an exception for
that item alone. A failure of the whole batch request is every item's failure, and so is an answer that does not
hold exactly one outcome per item: no call is ever left waiting.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class BatchMismatch(Exception):
    def __init__(self, answered: int, sent: int) -> None:
        super().__init__(f"the batch answer holds {answered} results for {sent} items")


class ThreadBatcher(Generic[Item, Result]):
    """For a client shared by threads: a collector thread (started on first use) forms the batches, and each is
    sent by a thread of its own (at most `max_in_flight` at once), so the next batch gathers while one is sent.
    The threads are daemons: a client the program forgot to close does not keep it alive."""

    def __init__(
        self,
        send_batch: Callable[[Sequence[Item]], Sequence[Result | BaseException]],
        *,
        window_s: float,
        max_size: int,
        max_in_flight: int = 4,
    ) -> None:
        self._send_batch = send_batch
        self._window_s = window_s
        self._max_size = max_size
        self._in_flight = threading.BoundedSemaphore(max_in_flight)
        self._condition = threading.Condition()
        self._pending: list[tuple[Item, Future[Result]]] = []
        self._collector: threading.Thread | None = None
        self._closed = False

    def submit(self, item: Item, *, timeout_s: float) -> Result:
        """The item's outcome; `TimeoutError` when none came within `timeout_s` (a bound, never reached while the
        service answers or fails within the client's own timeouts)."""
        future: Future[Result] = Future()
        with self._condition:
            if self._closed:
                raise RuntimeError("the client is closed")
            self._pending.append((item, future))
            if self._collector is None:
                self._collector = threading.Thread(target=self._collect, name="client-batcher", daemon=True)
                self._collector.start()
            self._condition.notify()
        return future.result(timeout=timeout_s)

    def close(self) -> None:
        """Send what is pending, then stop the collector."""
        with self._condition:
            self._closed = True
            self._condition.notify()
        if self._collector is not None and self._collector is not threading.current_thread():
            self._collector.join()

    def _collect(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._pending or self._closed)
                if not self._pending:
                    return  # closed, nothing left
                if not self._closed:  # the first item waits up to the window for company
                    self._condition.wait_for(lambda: len(self._pending) >= self._max_size, timeout=self._window_s)
                batch, self._pending = self._pending[: self._max_size], self._pending[self._max_size :]
            try:
                self._in_flight.acquire()
                threading.Thread(target=self._send, args=(batch,), name="client-batch", daemon=True).start()
            except BaseException as error:  # e.g. no thread can start while the interpreter shuts down
                self._in_flight.release()
                _fail(batch, error)

    def _send(self, batch: list[tuple[Item, Future[Result]]]) -> None:
        try:
            _deliver(batch, self._send_batch)
        finally:
            self._in_flight.release()


class AsyncBatcher(Generic[Item, Result]):
    """For an asyncio client: one event loop, no locks."""

    def __init__(
        self,
        send_batch: Callable[[Sequence[Item]], Awaitable[Sequence[Result | BaseException]]],
        *,
        window_s: float,
        max_size: int,
    ) -> None:
        self._send_batch = send_batch
        self._window_s = window_s
        self._max_size = max_size
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self._max_size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._window_s, self._flush)
        return await future

    async def close(self) -> None:
        """Send what is pending now and wait for every batch in flight."""
        self._flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._sending.add(task)  # keep a reference until it is done
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            outcomes = await self._send_batch([item for item, _ in batch])
            if len(outcomes) != len(batch):
                raise BatchMismatch(len(outcomes), len(batch))
        except BaseException as error:  # the whole request failed: so did each call
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue  # the caller was cancelled
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


def _deliver(
    batch: list[tuple[Item, Future[Result]]],
    send_batch: Callable[[Sequence[Item]], Sequence[Result | BaseException]],
) -> None:
    try:
        outcomes = send_batch([item for item, _ in batch])
        if len(outcomes) != len(batch):
            raise BatchMismatch(len(outcomes), len(batch))
    except BaseException as error:
        _fail(batch, error)
        return
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _fail(batch: list[tuple[Item, Future[Result]]], error: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)
