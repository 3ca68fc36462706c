"""Bounded frame queues with a declared policy, usable from threads and from asyncio alike.

Every queue in a session is one of these. The policy says what happens when a producer is faster than its consumer:

- ``LOSSLESS``: the producer waits (offline rendering must never drop a frame);
- ``NEWEST_ONLY``: a new data item replaces everything older that is still queued (live input: a slow generator
  always sees the latest camera frame, so latency stays flat instead of growing);
- ``DROP_OLDEST``: when full, the oldest data item is dropped to make room (live audio, output buffers).

Control frames (``streamrt.frames.ControlFrame``: parameter updates, end of stream, errors) are never dropped by
a policy: losing an end-of-stream would hang a session.

Counters (depth, drops, waits) are kept for metrics. The queue is thread-safe; the ``a*`` methods are for coroutines
and never block the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class QueuePolicy(enum.StrEnum):
    LOSSLESS = "lossless"
    NEWEST_ONLY = "newest-only"
    DROP_OLDEST = "drop-oldest"


class QueueClosed(Exception):
    """The queue was closed: nothing more will be put (get) or accepted (put)."""


@dataclass(frozen=True)
class QueueStats:
    name: str
    policy: str
    maxsize: int
    depth: int
    max_depth: int
    puts: int
    gets: int
    drops: int
    waits: int
    wait_seconds: float


def _is_droppable(item: object) -> bool:
    # Imported lazily: buffers must not depend on streamrt at import time (streamrt imports buffers).
    from streamrt.frames import ControlFrame

    return not isinstance(item, ControlFrame)


class FrameQueue(Generic[T]):
    """A bounded FIFO with a named overflow policy."""

    def __init__(
        self,
        maxsize: int,
        policy: QueuePolicy | str = QueuePolicy.LOSSLESS,
        *,
        name: str = "",
        droppable: Callable[[object], bool] = _is_droppable,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1: every queue in streamrt is bounded")
        self.maxsize = maxsize
        self.policy = QueuePolicy(policy)
        self.name = name
        self._droppable = droppable
        self._items: collections.deque[T] = collections.deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._closed = False
        # asyncio waiters: (loop, future) pairs woken with call_soon_threadsafe from any thread.
        self._async_getters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._async_putters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._max_depth = 0
        self._puts = 0
        self._gets = 0
        self._drops = 0
        self._waits = 0
        self._wait_seconds = 0.0

    # ------------------------------------------------------------------ state
    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> QueueStats:
        with self._lock:
            return QueueStats(
                name=self.name,
                policy=self.policy.value,
                maxsize=self.maxsize,
                depth=len(self._items),
                max_depth=self._max_depth,
                puts=self._puts,
                gets=self._gets,
                drops=self._drops,
                waits=self._waits,
                wait_seconds=self._wait_seconds,
            )

    def close(self) -> None:
        """No more puts. Getters drain what is left, then get ``QueueClosed``."""
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()
            self._wake(self._async_getters)
            self._wake(self._async_putters)

    # ------------------------------------------------------------------ put
    def put(self, item: T, timeout: float | None = None) -> None:
        """Enqueue; only a LOSSLESS queue ever waits. Raises ``QueueClosed`` or ``TimeoutError``."""
        with self._lock:
            if self._closed:
                raise QueueClosed(self.name)
            if self.policy is QueuePolicy.LOSSLESS and len(self._items) >= self.maxsize:
                self._waits += 1
                start = time.perf_counter()
                deadline = None if timeout is None else start + timeout
                while len(self._items) >= self.maxsize and not self._closed:
                    remaining = None if deadline is None else deadline - time.perf_counter()
                    if remaining is not None and remaining <= 0:
                        self._wait_seconds += time.perf_counter() - start
                        raise TimeoutError(f"queue {self.name!r} stayed full for {timeout} s")
                    self._not_full.wait(remaining)
                self._wait_seconds += time.perf_counter() - start
                if self._closed:
                    raise QueueClosed(self.name)
            self._append(item)

    def put_nowait(self, item: T) -> bool:
        """Enqueue without waiting. Returns False (and enqueues nothing) if a LOSSLESS queue is full."""
        with self._lock:
            if self._closed:
                raise QueueClosed(self.name)
            if self.policy is QueuePolicy.LOSSLESS and len(self._items) >= self.maxsize:
                return False
            self._append(item)
            return True

    async def aput(self, item: T) -> None:
        """Coroutine put: waits on the event loop (not a thread) while a LOSSLESS queue is full."""
        counted = False  # one wait per call, however often a woken coroutine loses the race for the slot
        while True:
            with self._lock:
                if self._closed:
                    raise QueueClosed(self.name)
                if self.policy is not QueuePolicy.LOSSLESS or len(self._items) < self.maxsize:
                    self._append(item)
                    return
                if not counted:
                    self._waits += 1
                    counted = True
                fut = self._register(self._async_putters)
            start = time.perf_counter()
            await fut
            with self._lock:
                self._wait_seconds += time.perf_counter() - start

    def _append(self, item: T) -> None:
        # Called with the lock held.
        if self.policy is QueuePolicy.NEWEST_ONLY and self._droppable(item):
            kept = [x for x in self._items if not self._droppable(x)]
            self._drops += len(self._items) - len(kept)
            self._items = collections.deque(kept)
        elif (
            self.policy is QueuePolicy.DROP_OLDEST
            and len(self._items) >= self.maxsize
            and self._droppable(item)
        ):
            for i, old in enumerate(self._items):
                if self._droppable(old):
                    del self._items[i]
                    self._drops += 1
                    break
        self._items.append(item)
        self._puts += 1
        self._max_depth = max(self._max_depth, len(self._items))
        self._not_empty.notify()
        self._wake(self._async_getters)

    # ------------------------------------------------------------------ get
    def get(self, timeout: float | None = None) -> T:
        """Dequeue, waiting for an item. Raises ``QueueClosed`` once closed and drained, or ``TimeoutError``."""
        with self._lock:
            deadline = None if timeout is None else time.perf_counter() + timeout
            while not self._items:
                if self._closed:
                    raise QueueClosed(self.name)
                remaining = None if deadline is None else deadline - time.perf_counter()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"queue {self.name!r} stayed empty for {timeout} s")
                self._not_empty.wait(remaining)
            return self._pop()

    def get_nowait(self) -> T | None:
        """An item, or None when empty. Raises ``QueueClosed`` once closed and drained."""
        with self._lock:
            if not self._items:
                if self._closed:
                    raise QueueClosed(self.name)
                return None
            return self._pop()

    def pop_if(self, accept: Callable[[T], bool]) -> T | None:
        """The first item if there is one and ``accept`` takes it, else None (it stays first). Never waits."""
        with self._lock:
            if self._items and accept(self._items[0]):
                return self._pop()
            return None

    async def aget(self) -> T:
        """Coroutine get: waits on the event loop, never blocks it."""
        while True:
            with self._lock:
                if self._items:
                    return self._pop()
                if self._closed:
                    raise QueueClosed(self.name)
                fut = self._register(self._async_getters)
            await fut

    def _pop(self) -> T:
        item = self._items.popleft()
        self._gets += 1
        self._not_full.notify()
        self._wake(self._async_putters)
        return item

    # ------------------------------------------------------------------ asyncio plumbing
    @staticmethod
    def _register(
        waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]],
    ) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        waiters.append((loop, fut))
        return fut

    @staticmethod
    def _wake(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
        # Wake every waiter: each re-checks the queue under the lock, so spurious wake-ups are harmless.
        for loop, fut in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, fut)
        waiters.clear()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
