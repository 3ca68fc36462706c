"""Bounded frame queues: every policy, close semantics, counters, and the asyncio API."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

from buffers.queues import FrameQueue, QueueClosed, QueuePolicy, QueueStats
from streamrt.frames import ControlFrame, EndOfStream, ParamUpdate

POLICIES = list(QueuePolicy)


def is_control(item: object) -> bool:
    return isinstance(item, ControlFrame)


def drain(q: FrameQueue) -> list:
    """Everything queued now (stops at empty, or at QueueClosed once a closed queue is drained)."""
    out = []
    try:
        while (item := q.get_nowait()) is not None:
            out.append(item)
    except QueueClosed:
        pass
    return out


def start_thread(fn, *args) -> threading.Thread:
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


# ---------------------------------------------------------------------- construction
def test_every_queue_is_bounded():
    with pytest.raises(ValueError, match="bounded"):
        FrameQueue(0)


@pytest.mark.parametrize("policy", ["lossless", "newest-only", "drop-oldest"])
def test_policy_by_name(policy):
    assert FrameQueue(2, policy).policy is QueuePolicy(policy)


# ---------------------------------------------------------------------- LOSSLESS
def test_lossless_blocks_producer_until_consumer_takes():
    q = FrameQueue(2, QueuePolicy.LOSSLESS)
    q.put(0)
    q.put(1)
    done = threading.Event()

    def produce():
        q.put(2)
        done.set()

    t = start_thread(produce)
    assert not done.wait(0.2), "a full lossless queue must block the producer"
    assert len(q) == 2
    assert q.get() == 0
    assert done.wait(2.0), "the producer must resume once a consumer takes an item"
    t.join(2.0)
    assert drain(q) == [1, 2]
    s = q.stats()
    assert s.waits == 1
    assert s.wait_seconds >= 0.15
    assert s.drops == 0


def test_lossless_put_timeout_raises_and_counts_wait():
    q = FrameQueue(1, QueuePolicy.LOSSLESS, name="q")
    q.put("a")
    start = time.perf_counter()
    with pytest.raises(TimeoutError):
        q.put("b", timeout=0.1)
    assert time.perf_counter() - start >= 0.09
    s = q.stats()
    assert s.waits == 1 and s.wait_seconds >= 0.09
    assert s.puts == 1 and s.depth == 1
    assert drain(q) == ["a"], "a timed-out put must not enqueue"


def test_lossless_put_nowait_refuses_when_full():
    q = FrameQueue(1, QueuePolicy.LOSSLESS)
    assert q.put_nowait(1) is True
    assert q.put_nowait(2) is False
    assert drain(q) == [1]
    assert q.stats().drops == 0


def test_lossless_never_drops_many_items():
    q = FrameQueue(3, QueuePolicy.LOSSLESS)
    n = 200

    def produce():
        for i in range(n):
            q.put(i)
        q.close()

    t = start_thread(produce)
    got = []
    while True:
        try:
            got.append(q.get(timeout=5))
        except QueueClosed:
            break
    t.join(2)
    assert got == list(range(n))
    s = q.stats()
    assert s.max_depth <= 3
    assert s.drops == 0 and s.puts == n and s.gets == n


# ---------------------------------------------------------------------- NEWEST_ONLY
def test_newest_only_keeps_only_newest_data_item():
    q = FrameQueue(4, QueuePolicy.NEWEST_ONLY)
    for i in range(5):
        q.put(i)
    assert len(q) == 1
    assert q.stats().drops == 4
    assert drain(q) == [4]
    q.put(5)
    assert q.get_nowait() == 5
    s = q.stats()
    assert (s.puts, s.gets, s.drops, s.waits) == (6, 2, 4, 0)


def test_newest_only_never_waits():
    q = FrameQueue(1, QueuePolicy.NEWEST_ONLY)
    start = time.perf_counter()
    for i in range(100):
        q.put(i, timeout=0.5)
    assert time.perf_counter() - start < 0.4
    assert q.stats().waits == 0


# ---------------------------------------------------------------------- DROP_OLDEST
def test_drop_oldest_drops_oldest_when_full():
    q = FrameQueue(3, QueuePolicy.DROP_OLDEST)
    for i in range(3):
        q.put(i)
    assert q.stats().drops == 0
    q.put(3)
    q.put(4)
    assert len(q) == 3
    assert drain(q) == [2, 3, 4]
    s = q.stats()
    assert s.drops == 2 and s.waits == 0 and s.max_depth == 3


# ---------------------------------------------------------------------- control frames
@pytest.mark.parametrize("policy", POLICIES)
def test_control_frames_never_dropped_and_keep_their_order(policy):
    q = FrameQueue(8 if policy is QueuePolicy.LOSSLESS else 2, policy)
    u1 = ParamUpdate(params={"a": 1})
    u2 = ParamUpdate(params={"a": 2})
    eos = EndOfStream()
    seq = ["d0", u1, "d1", "d2", u2, "d3", eos]
    for item in seq:
        q.put(item)
    got = drain(q)
    # every control frame arrives, in order
    assert [x for x in got if is_control(x)] == [u1, u2, eos]
    # data that survived arrives in order, and each item's position relative to the control frames is kept
    assert [seq.index(x) for x in got] == sorted(seq.index(x) for x in got)
    if policy is QueuePolicy.LOSSLESS:
        assert got == seq
    if policy is QueuePolicy.NEWEST_ONLY:
        assert got == [u1, u2, "d3", eos]
        assert q.stats().drops == 3


def test_drop_oldest_drops_data_not_control_when_full():
    q = FrameQueue(2, QueuePolicy.DROP_OLDEST)
    u = ParamUpdate(params={"x": 1})
    q.put(u)
    q.put("d0")
    q.put("d1")  # full: "d0" is the oldest data item; the update stays
    got = drain(q)
    assert got == [u, "d1"]
    assert q.stats().drops == 1


def test_custom_droppable_predicate():
    q = FrameQueue(1, QueuePolicy.NEWEST_ONLY, droppable=lambda x: x != "keep")
    for item in ["a", "keep", "b", "c"]:
        q.put(item)
    assert drain(q) == ["keep", "c"]


# ---------------------------------------------------------------------- close
@pytest.mark.parametrize("policy", POLICIES)
def test_close_getters_drain_then_queue_closed(policy):
    q = FrameQueue(4, policy, name="closing")
    q.put("a")
    q.put(EndOfStream())
    q.close()
    assert q.closed
    with pytest.raises(QueueClosed):
        q.put("x")
    with pytest.raises(QueueClosed):
        q.put_nowait("x")
    first = q.get(timeout=1)
    second = q.get(timeout=1)
    assert isinstance(second, EndOfStream)
    assert first == "a"
    with pytest.raises(QueueClosed):
        q.get(timeout=1)
    with pytest.raises(QueueClosed):
        q.get_nowait()


def test_get_timeout_and_get_nowait_on_empty():
    q = FrameQueue(1)
    assert q.get_nowait() is None
    with pytest.raises(TimeoutError):
        q.get(timeout=0.05)


def test_close_wakes_blocked_getter():
    q = FrameQueue(1)
    result: list = []

    def consume():
        try:
            q.get()
        except QueueClosed as exc:
            result.append(exc)

    t = start_thread(consume)
    time.sleep(0.1)
    q.close()
    t.join(2)
    assert not t.is_alive()
    assert len(result) == 1 and isinstance(result[0], QueueClosed)


def test_close_wakes_blocked_lossless_putter():
    q = FrameQueue(1, QueuePolicy.LOSSLESS)
    q.put(1)
    result: list = []

    def produce():
        try:
            q.put(2)
        except QueueClosed as exc:
            result.append(exc)

    t = start_thread(produce)
    time.sleep(0.1)
    q.close()
    t.join(2)
    assert not t.is_alive()
    assert len(result) == 1
    assert drain(q) == [1], "the put that was interrupted by close must not enqueue"


# ---------------------------------------------------------------------- counters
def test_stats_counters():
    q = FrameQueue(3, QueuePolicy.DROP_OLDEST, name="stats")
    for i in range(5):
        q.put(i)
    q.get()
    s = q.stats()
    assert isinstance(s, QueueStats)
    assert s.name == "stats" and s.policy == "drop-oldest" and s.maxsize == 3
    assert s.depth == 2 and len(q) == 2
    assert s.max_depth == 3
    assert s.puts == 5 and s.gets == 1 and s.drops == 2 and s.waits == 0


# ---------------------------------------------------------------------- bounded-ness under random interleavings
def _check_invariants(q: FrameQueue, items: list, policy: QueuePolicy) -> None:
    data = [x for x in items if not is_control(x)]
    control = len(items) - len(data)
    if policy is QueuePolicy.LOSSLESS:
        assert len(items) <= q.maxsize
    elif policy is QueuePolicy.NEWEST_ONLY:
        assert len(data) <= 1
    else:
        assert len(data) <= q.maxsize
        assert len(items) <= q.maxsize + control


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed", range(20))
def test_bounded_under_random_interleaving(policy, seed):
    rng = random.Random(seed)
    maxsize = rng.randint(1, 4)
    q = FrameQueue(maxsize, policy)
    put_order: list = []
    got: list = []
    for step in range(200):
        if rng.random() < 0.55:
            item = ParamUpdate(params={"i": step}) if rng.random() < 0.1 else ("d", step)
            if policy is QueuePolicy.LOSSLESS:
                if q.put_nowait(item):
                    put_order.append(item)
            else:
                q.put(item)
                put_order.append(item)
        else:
            item = q.get_nowait()
            if item is not None:
                got.append(item)
        with q._lock:  # a consistent view of the contents
            items = list(q._items)
        _check_invariants(q, items, policy)
        s = q.stats()
        assert s.depth == len(items)
        assert s.puts == s.gets + s.drops + s.depth
        assert s.max_depth >= s.depth
    got += drain(q)
    # FIFO: what came out is a subsequence of what went in, in order, and every control frame came out
    positions = [put_order.index(x) for x in got]
    assert positions == sorted(positions)
    assert [x for x in got if is_control(x)] == [x for x in put_order if is_control(x)]
    if policy is QueuePolicy.LOSSLESS:
        assert got == put_order


# ---------------------------------------------------------------------- asyncio
def test_async_producer_thread_consumer_coroutine():
    q = FrameQueue(4, QueuePolicy.LOSSLESS)
    n = 300

    def produce():
        for i in range(n):
            q.put(i)
        q.put(EndOfStream())

    async def consume():
        out = []
        while True:
            item = await q.aget()
            if isinstance(item, EndOfStream):
                return out
            out.append(item)

    async def main():
        t = start_thread(produce)
        out = await asyncio.wait_for(consume(), 10)
        t.join(2)
        return out

    assert asyncio.run(main()) == list(range(n))
    assert q.stats().drops == 0


def test_aget_does_not_block_event_loop():
    q = FrameQueue(2)
    ticks_before_item: list[int] = []

    async def main():
        count = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal count
            while not stop.is_set():
                count += 1
                await asyncio.sleep(0.01)

        ticker_task = asyncio.create_task(ticker())
        timer = threading.Timer(0.3, q.put, args=("late",))
        timer.start()
        item = await asyncio.wait_for(q.aget(), 5)
        ticks_before_item.append(count)
        stop.set()
        await ticker_task
        timer.join()
        return item

    assert asyncio.run(main()) == "late"
    assert ticks_before_item[0] >= 5, "another coroutine must keep running while aget waits"


def test_aget_raises_queue_closed_after_drain():
    q = FrameQueue(2)
    q.put("a")

    async def main():
        first = await q.aget()
        threading.Timer(0.1, q.close).start()
        with pytest.raises(QueueClosed):
            await asyncio.wait_for(q.aget(), 5)
        return first

    assert asyncio.run(main()) == "a"


def test_lossless_aput_waits_for_space():
    q = FrameQueue(1, QueuePolicy.LOSSLESS)
    q.put("first")

    async def main():
        count = 0

        async def ticker():
            nonlocal count
            while True:
                count += 1
                await asyncio.sleep(0.01)

        tick = asyncio.create_task(ticker())
        put = asyncio.create_task(q.aput("second"))
        await asyncio.sleep(0.2)
        assert not put.done(), "aput into a full lossless queue must wait"
        assert count >= 5, "the waiting aput must not block the loop"
        assert len(q) == 1
        taken: list = []
        consumer = start_thread(lambda: taken.append(q.get(timeout=5)))
        await asyncio.wait_for(put, 5)
        consumer.join(2)
        tick.cancel()
        return taken

    assert asyncio.run(main()) == ["first"]
    assert drain(q) == ["second"]
    s = q.stats()
    assert s.waits >= 1 and s.wait_seconds >= 0.15 and s.drops == 0


def test_aput_raises_when_closed_while_waiting():
    q = FrameQueue(1, QueuePolicy.LOSSLESS)
    q.put("x")

    async def main():
        threading.Timer(0.1, q.close).start()
        with pytest.raises(QueueClosed):
            await asyncio.wait_for(q.aput("y"), 5)

    asyncio.run(main())
    assert drain(q) == ["x"]


@pytest.mark.parametrize("policy", [QueuePolicy.NEWEST_ONLY, QueuePolicy.DROP_OLDEST])
def test_lossy_aput_never_waits(policy):
    q = FrameQueue(1, policy)

    async def main():
        for i in range(50):
            await asyncio.wait_for(q.aput(i), 0.5)

    asyncio.run(main())
    assert drain(q) == [49]
    s = q.stats()
    assert s.drops == 49 and s.waits == 0


def test_waits_count_waiting_puts_alike_for_threads_and_coroutines():
    # Two producers wait on a full lossless queue; two gets let them through one at a time: two waits, whether the
    # producers are threads or coroutines (a wake-up that finds the queue full again is not a new wait).
    q_threads = FrameQueue(1, QueuePolicy.LOSSLESS)
    q_threads.put("x")
    producers = [start_thread(q_threads.put, i) for i in range(2)]
    time.sleep(0.1)
    q_threads.get(timeout=2)
    time.sleep(0.1)
    q_threads.get(timeout=2)
    for t in producers:
        t.join(2)
    assert q_threads.stats().waits == 2

    q_async = FrameQueue(1, QueuePolicy.LOSSLESS)
    q_async.put("x")

    async def main():
        tasks = [asyncio.create_task(q_async.aput(i)) for i in range(2)]
        await asyncio.sleep(0.1)
        await asyncio.to_thread(q_async.get, 2)
        await asyncio.sleep(0.1)
        assert sum(t.done() for t in tasks) == 1
        await asyncio.to_thread(q_async.get, 2)
        await asyncio.wait_for(asyncio.gather(*tasks), 2)

    asyncio.run(main())
    assert len(q_async) == 1
    assert q_async.stats().waits == 2
