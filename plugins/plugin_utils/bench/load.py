"""Offered load: fixed concurrency, or a request rate on a schedule computed up front and kept
against the clock (sleeping to absolute deadlines, so late sends do not push the later ones)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .client import Prompt, RequestResult

Sender = Callable[[Prompt], Awaitable[RequestResult]]


def arrival_offsets(count: int, rate: float, kind: str = "poisson", seed: int = 0) -> list[float]:
    """Send times (seconds from the start) of ``count`` requests at ``rate`` per second: constant
    spacing, or a Poisson process (exponential gaps) drawn from ``seed``. The first is at 0."""
    if rate <= 0:
        raise ValueError(f"rate must be above 0 requests/s, got {rate}")
    if kind not in ("poisson", "constant"):
        raise ValueError(f"arrival kind must be poisson or constant, got {kind!r}")
    if kind == "constant":
        return [index / rate for index in range(count)]
    generator = random.Random(seed)
    offsets, now = [], 0.0
    for index in range(count):
        if index:
            now += generator.expovariate(rate)
        offsets.append(now)
    return offsets


@dataclass
class LoadRun:
    results: list[RequestResult]
    started: float
    ended: float
    send_times: list[float]  # seconds after started, when each request was actually sent
    planned: list[float] | None = None  # the schedule, in rate mode

    @property
    def duration(self) -> float:
        return self.ended - self.started

    def achieved_rate(self) -> float | None:
        """Requests sent per second, from the first send to the last (rate mode)."""
        if len(self.send_times) < 2:
            return None
        span = max(self.send_times) - min(self.send_times)
        return (len(self.send_times) - 1) / span if span > 0 else None


async def at_concurrency(sender: Sender, prompts: list[Prompt], concurrency: int) -> LoadRun:
    """Keep ``concurrency`` requests in flight until every prompt has been sent."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    queue = list(reversed(prompts))
    results: list[RequestResult] = []
    send_times: list[float] = []
    started = time.monotonic()

    async def worker() -> None:
        while queue:
            prompt = queue.pop()
            send_times.append(time.monotonic() - started)
            results.append(await sender(prompt))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(prompts)))))
    return LoadRun(results, started, time.monotonic(), send_times)


async def at_rate(
    sender: Sender,
    prompts: list[Prompt],
    rate: float,
    *,
    kind: str = "poisson",
    seed: int = 0,
    max_concurrency: int | None = None,
) -> LoadRun:
    """Send ``prompts`` on a schedule at ``rate`` requests/s (optionally capped in flight)."""
    planned = arrival_offsets(len(prompts), rate, kind, seed)
    limit = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    send_times: list[float] = [0.0] * len(prompts)
    started = time.monotonic()

    async def one(index: int, prompt: Prompt) -> RequestResult:
        if limit:
            async with limit:
                send_times[index] = time.monotonic() - started
                return await sender(prompt)
        send_times[index] = time.monotonic() - started
        return await sender(prompt)

    tasks = []
    for index, (offset, prompt) in enumerate(zip(planned, prompts, strict=True)):
        delay = started + offset - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, prompt)))
    results = list(await asyncio.gather(*tasks))
    return LoadRun(results, started, time.monotonic(), send_times, planned)
