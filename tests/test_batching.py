import asyncio
import threading
import time

import pytest

from inference.serving.batching import AdaptiveBatcher


def test_an_idle_batcher_dispatches_a_single_item_at_once():
    calls = []

    def double(items):
        calls.append(list(items))
        return [item * 2 for item in items]

    async def scenario():
        batcher = AdaptiveBatcher(double, name="t")
        started = time.perf_counter()
        result = await batcher.submit(21)
        elapsed = time.perf_counter() - started
        batcher.close()
        return result, elapsed

    result, elapsed = asyncio.run(scenario())
    assert result == 42
    assert calls == [[21]]
    assert elapsed < 0.5  # no gathering wait by default (generous bound: this is not a timing test)


def test_requests_arriving_while_the_model_is_busy_go_together_in_the_next_call():
    gate = threading.Event()
    calls = []

    def slow_identity(items):
        calls.append(list(items))
        gate.wait(5)
        return list(items)

    async def scenario():
        batcher = AdaptiveBatcher(slow_identity, name="t")
        first = asyncio.create_task(batcher.submit_many([-1, 0]))
        await asyncio.sleep(0.05)  # the first call (two items: on the batch thread) is running, held by the gate
        rest = [asyncio.create_task(batcher.submit(i)) for i in range(1, 21)]
        await asyncio.sleep(0.05)
        gate.set()
        results = await asyncio.gather(first, *rest)
        batcher.close()
        return results

    results = asyncio.run(scenario())
    assert results == [[-1, 0], *range(1, 21)]
    assert calls == [[-1, 0], list(range(1, 21))]


class RecordingIdentity:
    """A batch function that returns its items and records each call's size."""

    def __init__(self):
        self.calls = []

    def __call__(self, items):
        self.calls.append(len(items))
        return list(items)


class Gated:
    """A batch function that records each call's items and holds every call until `gate` is set."""

    def __init__(self):
        self.gate = threading.Event()
        self.calls = []

    def __call__(self, items):
        self.calls.append(list(items))
        self.gate.wait(5)
        return list(items)


def test_max_batch_size_splits_a_large_submission():
    identity = RecordingIdentity()

    async def scenario():
        batcher = AdaptiveBatcher(identity, name="t", max_batch_size=4)
        results = await batcher.submit_many(list(range(10)))
        batcher.close()
        return results

    assert asyncio.run(scenario()) == list(range(10))
    assert identity.calls == [4, 4, 2]


def test_a_failing_batch_fails_each_caller_and_the_batcher_keeps_serving():
    def fragile(items):
        if any(item < 0 for item in items):
            raise RuntimeError("model exploded")
        return list(items)

    async def scenario():
        batcher = AdaptiveBatcher(fragile, name="t")
        with pytest.raises(RuntimeError, match="model exploded"):
            await batcher.submit(-1)
        result = await batcher.submit(5)
        batcher.close()
        return result

    assert asyncio.run(scenario()) == 5


def test_max_wait_gathers_items_submitted_shortly_after_each_other():
    identity = RecordingIdentity()

    async def scenario():
        batcher = AdaptiveBatcher(identity, name="t", max_wait_ms=2000)  # far longer than the 40 ms of submissions
        tasks = []
        for i in range(5):
            tasks.append(asyncio.create_task(batcher.submit(i)))
            await asyncio.sleep(0.01)
        results = await asyncio.gather(*tasks)
        batcher.close()
        return results

    assert asyncio.run(scenario()) == list(range(5))
    assert identity.calls == [5]


def test_invalid_max_batch_size_is_refused():
    with pytest.raises(ValueError, match="max_batch_size"):
        AdaptiveBatcher(list, name="t", max_batch_size=0)


def test_whole_submissions_share_a_batch_up_to_max_batch_size():
    gate = threading.Event()
    calls = []

    def gated_identity(items):
        calls.append(list(items))
        gate.wait(5)
        return list(items)

    async def scenario():
        batcher = AdaptiveBatcher(gated_identity, name="t", max_batch_size=10)
        first = asyncio.create_task(batcher.submit_many([-1, 0]))
        await asyncio.sleep(0.05)  # the first call is running; the next three submissions queue behind it
        queued = [asyncio.create_task(batcher.submit_many(list(range(start, start + 4)))) for start in (1, 5, 9)]
        await asyncio.sleep(0.05)
        gate.set()
        results = await asyncio.gather(first, *queued)
        batcher.close()
        return results

    results = asyncio.run(scenario())
    assert results == [[-1, 0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    # 4 + 4 fit in 10 rows; the third submission of 4 would not, so it goes whole in the next call.
    assert calls == [[-1, 0], [1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11, 12]]


def test_a_batch_function_returning_the_wrong_number_of_results_fails_its_callers():
    async def scenario():
        batcher = AdaptiveBatcher(lambda items: list(items)[:-1], name="t")
        with pytest.raises(RuntimeError, match="1 results for 2 items"):
            await batcher.submit_many([1, 2])
        batcher.close()

    asyncio.run(scenario())


def test_lone_items_can_be_scored_on_the_event_loop_and_batches_always_go_to_the_batch_thread():
    gate = threading.Event()
    threads = []

    def record_thread(items):
        threads.append((len(items), threading.current_thread().name))
        if len(threads) == 2:
            gate.wait(5)  # hold the first batch so that the next submissions queue behind it
        return list(items)

    async def scenario():
        batcher = AdaptiveBatcher(record_thread, name="t", lone_items_inline=True)
        await batcher.submit(0)
        held = asyncio.create_task(batcher.submit_many([1, 2]))
        await asyncio.sleep(0.05)
        queued = [asyncio.create_task(batcher.submit(i)) for i in (3, 4)]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(held, *queued)
        batcher.close()

    asyncio.run(scenario())
    main = threading.main_thread().name
    assert threads[0] == (1, main)
    assert threads[1][0] == 2 and threads[1][1].startswith("batch-t")
    assert threads[2][0] == 2 and threads[2][1].startswith("batch-t")


def test_by_default_a_lone_item_is_scored_on_the_batch_thread():
    threads = []

    def record_thread(items):
        threads.append(threading.current_thread().name)
        return list(items)

    async def scenario():
        batcher = AdaptiveBatcher(record_thread, name="t")
        await batcher.submit(0)
        batcher.close()

    asyncio.run(scenario())
    assert threads[0].startswith("batch-t")


def test_submissions_whose_caller_has_gone_are_skipped_when_their_turn_comes():
    gated_identity = Gated()
    gate, calls = gated_identity.gate, gated_identity.calls

    async def scenario():
        batcher = AdaptiveBatcher(gated_identity, name="t")
        first = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.05)  # the first call is running, held by the gate
        abandoned = asyncio.create_task(batcher.submit_many([1, 2, 3]))
        kept = asyncio.create_task(batcher.submit(4))
        await asyncio.sleep(0.05)
        assert batcher.queued_items == 4
        abandoned.cancel()  # its request timed out, or its client went away
        await asyncio.sleep(0.01)
        gate.set()
        results = await asyncio.gather(first, kept)
        batcher.close()
        return results, batcher

    (first, kept), batcher = asyncio.run(scenario())
    assert (first, kept) == (0, 4)
    assert calls == [[0], [4]]  # nothing computed for the abandoned items
    assert batcher.skipped == 3 and batcher.queued_items == 0


def test_a_large_submission_goes_in_chunks_of_units_and_stops_once_cancelled():
    gated_identity = Gated()
    gate, calls = gated_identity.gate, gated_identity.calls

    async def scenario():
        batcher = AdaptiveBatcher(gated_identity, name="t", cost=float, chunk_units=10)
        large = asyncio.create_task(batcher.submit_many([4, 4, 4, 4, 4, 4, 4, 4]))  # 32 units: chunks of 2 items
        await asyncio.sleep(0.05)
        assert calls == [[4, 4]] and batcher.queued_items == 0  # the next chunk waits for this one
        large.cancel()
        await asyncio.sleep(0.01)
        gate.set()
        follow = await batcher.submit(1)
        batcher.close()
        return follow

    assert asyncio.run(scenario()) == 1
    assert calls == [[4, 4], [1]]  # the chunk in hand finished; the three after it were never queued


def test_a_small_request_waits_for_one_chunk_of_a_large_one_not_for_all_of_it():
    gated_identity = Gated()
    gate, calls = gated_identity.gate, gated_identity.calls

    async def scenario():
        batcher = AdaptiveBatcher(gated_identity, name="t", cost=float, chunk_units=10)
        large = asyncio.create_task(batcher.submit_many([4] * 8))  # four chunks of two items
        await asyncio.sleep(0.05)
        small = asyncio.create_task(batcher.submit(1))
        await asyncio.sleep(0.01)
        gate.set()
        results = await asyncio.gather(large, small)
        batcher.close()
        return results

    large, small = asyncio.run(scenario())
    assert large == [4] * 8 and small == 1
    assert calls[:2] == [[4, 4], [4, 4, 1]] or calls[:2] == [[4, 4], [1]]  # the small one in the second call
    assert calls[-1] == [4, 4]


def test_a_submission_that_would_wait_longer_than_the_bound_is_refused_at_once():
    from inference.errors import Overloaded
    from inference.serving.batching import CostModel

    gated_identity = Gated()
    gate = gated_identity.gate

    async def scenario():
        # A call costs 10 ms plus 1 ms a unit here: 300 queued units are ~0.3 s of work, over the 0.1 s bound.
        costs = CostModel(seconds_per_call=0.01, seconds_per_unit=0.001)
        batcher = AdaptiveBatcher(gated_identity, name="t", max_queue_wait_s=0.1, cost_model=costs, retry_after_s=2)
        running = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.05)
        queued = asyncio.create_task(batcher.submit_many(list(range(300))))  # admitted: nothing was queued
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(1)
        refused_in = time.perf_counter() - started
        gate.set()
        results = await asyncio.gather(running, queued)
        batcher.close()
        return refused.value, refused_in, results

    error, refused_in, results = asyncio.run(scenario())
    assert error.status == 503 and error.retry_after_s == 2 and error.limit == "queue_wait"
    assert "300 items are queued ahead" in error.message
    assert refused_in < 0.5  # refused at once, not after waiting (generous: this is not a timing test)
    assert results[1] == list(range(300))


def test_the_cost_model_learns_a_calls_fixed_part_from_small_calls_and_a_units_from_large_ones():
    from inference.serving.batching import CostModel

    costs = CostModel(seconds_per_call=0.01, seconds_per_unit=0.001)  # a guess 5x and 100x too high
    for _ in range(100):
        costs.observe(1, 0.002)  # small calls: about the fixed part
        costs.observe(1000, 0.002 + 1000 * 0.00001)  # large calls: the fixed part plus 10 µs a unit
    assert costs.seconds_per_call == pytest.approx(0.002, rel=0.01)
    assert costs.seconds_per_unit == pytest.approx(0.00001, rel=0.05)
    assert costs.seconds(500, calls=2) == pytest.approx(0.004 + 0.005, rel=0.05)
