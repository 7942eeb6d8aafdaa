"""Admin changes that may take longer than an HTTP call should wait (loading and validating a model version) run as
operations: a task of the worker that took the call, not tied to the request (a caller who stops waiting, or the
request timeout, does not stop it), with an id whose record every worker of every replica reads from the control
store (`GET /admin/operations/{id}`).

A record is `running` from the start, then `succeeded` with the change's result or `failed` with the error's code,
status and message. While it runs, its worker rewrites it every `heartbeat_s`: a `running` record whose
`updated_at` is much older than that lost its worker (stopped or killed mid-change), and what the change did is
in `GET /admin/routes` and the audit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from inference.errors import InferenceError
from inference.logs import LOGGER_NAME
from inference.serving.control import ControlStore, OperationRecord, store_unavailable

logger = logging.getLogger(LOGGER_NAME)

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
HEARTBEAT_S = 10.0
FINAL_SAVE_ATTEMPTS = 6  # 1 + 2 + 4 + 8 + 16 s between them: a store back within half a minute gets the outcome

Work = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class StartedOperation:
    record: OperationRecord  # as first written: running
    task: asyncio.Task[OperationRecord]

    async def outcome(self, wait_s: float) -> OperationRecord | None:
        """The finished record when the operation ends within `wait_s`, else None. It goes on either way: neither
        the timeout nor the cancellation of the caller waiting here cancels it."""
        done, _ = await asyncio.wait({self.task}, timeout=wait_s)
        return self.task.result() if done else None


class Operations:
    """Starts operations in this worker and keeps them running until they finish, whoever waits for them."""

    def __init__(self, store: ControlStore, *, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.store = store
        self.heartbeat_s = heartbeat_s
        self.worker = f"{socket.gethostname()}/{os.getpid()}"
        self._tasks: set[asyncio.Task[OperationRecord]] = set()  # a task nothing refers to may be collected

    async def start(self, action: str, *, actor: str, work: Work) -> StartedOperation:
        """Record the operation as running (`ControlUnavailable` when the store cannot take it: nothing started)
        and start `work`, whose result (or error) the finished record holds."""
        record: OperationRecord = {
            "id": uuid.uuid4().hex,
            "action": action,
            "status": RUNNING,
            "started_by": actor,
            "started_at": _now(),
            "finished_at": None,
            "worker": self.worker,
            "result": None,
            "error": None,
        }
        try:
            record = await asyncio.to_thread(self.store.save_operation, record)
        except Exception as err:
            raise store_unavailable(self.store.kind, err) from err
        task = asyncio.get_running_loop().create_task(self._run(record, work), name=f"operation-{record['id']}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        logger.info("operation %s started by %s: %s", record["id"], actor, action)
        return StartedOperation(record, task)

    async def _run(self, record: OperationRecord, work: Work) -> OperationRecord:
        finished = asyncio.Event()
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(record, finished))
        try:
            result = await work()
            outcome = {**record, "status": SUCCEEDED, "result": result}
        except InferenceError as err:
            error = {"code": err.code, "status": int(err.status), "message": err.message}
            outcome = {**record, "status": FAILED, "error": error}
        except Exception as err:  # the trace goes to the log; the record says no more than a 500 would
            logger.exception("operation %s (%s) failed", record["id"], record["action"])
            message = f"an unexpected {type(err).__name__}; the worker's log ({self.worker}) has the details"
            outcome = {
                **record,
                "status": FAILED,
                "error": {"code": "internal_error", "status": 500, "message": message},
            }
        finally:
            finished.set()
        await heartbeat  # a heartbeat being written lands before the outcome, never after it
        outcome["finished_at"] = _now()
        logger.info("operation %s %s: %s", record["id"], outcome["status"], outcome["result"] or outcome["error"])
        return await self._save_outcome(outcome)

    async def _heartbeat(self, record: OperationRecord, finished: asyncio.Event) -> None:
        while True:
            try:
                await asyncio.wait_for(finished.wait(), timeout=self.heartbeat_s)
                return
            except TimeoutError:
                pass
            try:
                await asyncio.to_thread(self.store.save_operation, record)
            except Exception as err:  # the outcome is what matters; a missed heartbeat only ages the record
                logger.warning("operation %s: could not update its record: %s", record["id"], err)

    async def _save_outcome(self, outcome: OperationRecord) -> OperationRecord:
        delay = 1.0
        for _ in range(FINAL_SAVE_ATTEMPTS - 1):
            try:
                return await asyncio.to_thread(self.store.save_operation, outcome)
            except Exception as err:
                logger.warning("operation %s: could not write its outcome (%s); trying again", outcome["id"], err)
            await asyncio.sleep(delay)
            delay *= 2
        try:
            return await asyncio.to_thread(self.store.save_operation, outcome)
        except Exception as err:
            logger.error(
                "operation %s %s, but its record could not be written (%s); it reads running until pruned",
                outcome["id"],
                outcome["status"],
                err,
            )
            return outcome


def seconds_since(timestamp: str | None) -> float | None:
    """Seconds from an ISO 8601 time of a record until now; None without one."""
    if not timestamp:
        return None
    return round((datetime.now(UTC) - datetime.fromisoformat(timestamp)).total_seconds(), 1)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
