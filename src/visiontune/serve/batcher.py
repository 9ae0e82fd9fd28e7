"""An asyncio micro-batcher: requests wait at most ``max_wait`` seconds to share a model call.

``await batcher.submit(item)`` queues one item and returns its result. A background task takes
the first waiting item, then keeps taking items until ``max_batch_size`` are collected or
``max_wait`` has passed since the first one, and runs ``fn(items)`` in a worker thread (the
event loop keeps accepting requests meanwhile). Items already waiting when a batch closes start
the next batch at once, so under load batches fill without waiting at all. A full queue raises
:class:`QueueFull` (the server answers 503); an exception from ``fn`` fails every item of that
batch, and only that batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


class QueueFull(Exception):
    """More requests are waiting than the batcher accepts."""


@dataclass
class BatchStats:
    """Counters of one batcher (read by /metrics and the benchmarks)."""

    batches: int = 0
    items: int = 0
    sizes: dict[int, int] = field(default_factory=dict)
    busy_s: float = 0.0

    def add(self, n: int, seconds: float) -> None:
        """Count one batch of ``n`` items that took ``seconds``."""
        self.batches += 1
        self.items += n
        self.sizes[n] = self.sizes.get(n, 0) + 1
        self.busy_s += seconds

    @property
    def mean_size(self) -> float:
        """Mean items per batch (0 before the first)."""
        return self.items / self.batches if self.batches else 0.0


class MicroBatcher:
    """Group concurrent calls into batches of at most ``max_batch_size``.

    ``fn(list_of_items) -> list_of_results`` runs in a single worker thread, one batch at a
    time. ``on_batch(size, seconds)`` is called after each batch (metrics); ``thread_init``
    runs once in that thread (e.g. to set its torch thread count).
    """

    def __init__(
        self,
        fn: Callable[[list[Any]], list[Any]],
        *,
        max_batch_size: int = 16,
        max_wait: float = 0.01,
        max_queue: int = 1024,
        on_batch: Callable[[int, float], None] | None = None,
        thread_init: Callable[[], None] | None = None,
    ):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if max_wait < 0:
            raise ValueError("max_wait must be >= 0")
        self.fn = fn
        self.max_batch_size = int(max_batch_size)
        self.max_wait = float(max_wait)
        self.max_queue = int(max_queue)
        self.on_batch = on_batch
        self.stats = BatchStats()
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="visiontune-batch", initializer=thread_init
        )

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the batching task on the running event loop."""
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="visiontune-batcher")

    async def stop(self) -> None:
        """Stop batching; items still waiting fail with ``CancelledError``."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._queue is not None:
            while not self._queue.empty():
                _, fut = self._queue.get_nowait()
                if not fut.done():
                    fut.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def depth(self) -> int:
        """Items waiting for a batch."""
        return self._queue.qsize() if self._queue is not None else 0

    # -- use ---------------------------------------------------------------------------------
    async def submit(self, item: Any) -> Any:
        """Queue ``item`` and wait for its result."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull(f"{self._queue.qsize()} requests are already waiting (max_queue={self.max_queue})")
        fut = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, fut))
        return await fut

    async def _collect(self) -> list[tuple[Any, asyncio.Future]]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [(item, fut) for item, fut in batch if not fut.done()]  # drop cancelled (timed-out) ones
            if not live:
                continue
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.fn, [item for item, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(live)} items")
            except Exception as e:  # the batch fails; the loop goes on
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            finally:
                seconds = time.perf_counter() - t0
                self.stats.add(len(live), seconds)
                if self.on_batch is not None:
                    self.on_batch(len(live), seconds)
            for (_, fut), res in zip(live, results):
                if not fut.done():
                    fut.set_result(res)
