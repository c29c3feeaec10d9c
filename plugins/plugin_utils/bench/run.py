"""A whole benchmark: warm-up, then one load run per concurrency or request rate, summarized."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import run_loop
from .client import Prompt, new_session, send
from .load import LoadRun, at_concurrency, at_rate
from .metrics import summarize


@dataclass
class Settings:
    url: str
    model: str
    endpoint: str = "chat"
    stream: bool = True
    concurrencies: list[int] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    arrival: str = "poisson"
    seed: int = 0
    max_concurrency: int | None = None
    warmup: int = 2
    timeout: float = 600
    slo: dict = field(default_factory=dict)
    # A secret: sent as "Authorization: Bearer <key>", never written in the report (repr=False: nor shown).
    api_key: str = field(default="", repr=False)

    def headers(self) -> dict | None:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None

    def check(self) -> None:
        if bool(self.concurrencies) == bool(self.rates):
            raise ValueError(
                "give concurrencies (concurrency, --concurrency) or rates (rate, --rate): one, not both"
            )
        if self.endpoint not in ("chat", "completions"):
            raise ValueError(f"endpoint must be chat or completions, got {self.endpoint!r}")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        if any(level < 1 for level in self.concurrencies):
            raise ValueError(f"every concurrency must be at least 1, got {self.concurrencies}")
        if any(rate <= 0 for rate in self.rates):
            raise ValueError(f"every request rate must be above 0, got {self.rates}")


def _samples(run: LoadRun) -> dict:
    ok = [result for result in run.results if result.ok]
    return {
        "ttft_ms": [round(result.ttft * 1000, 3) for result in ok if result.ttft is not None],
        "e2e_ms": [round(result.e2e * 1000, 3) for result in ok],
        "tpot_ms": [round(result.tpot * 1000, 3) for result in ok if result.tpot is not None],
    }


async def run_benchmark(settings: Settings, prompts: list[Prompt]) -> dict:
    """Run every level on the same prompts; returns the report's data (config, runs with samples)."""
    settings.check()
    async with new_session() as session:

        def sender(prompt: Prompt):
            return send(session, settings.url, settings.model, prompt, endpoint=settings.endpoint,
                        stream=settings.stream, timeout=settings.timeout,
                        headers=settings.headers())  # fmt: skip

        warm = None
        if settings.warmup:
            warm = await at_concurrency(
                sender, prompts[: settings.warmup] or prompts[:1], min(settings.warmup, 4)
            )
        runs = []
        for level in settings.concurrencies:
            run = await at_concurrency(sender, prompts, level)
            runs.append({"mode": "concurrency", "level": level} | {"summary": summarize(run, settings.slo)}
                        | {"samples": _samples(run)})  # fmt: skip
        for rate in settings.rates:
            run = await at_rate(sender, prompts, rate, kind=settings.arrival, seed=settings.seed,
                                max_concurrency=settings.max_concurrency)  # fmt: skip
            runs.append({"mode": "rate", "level": rate} | {"summary": summarize(run, settings.slo)}
                        | {"samples": _samples(run)})  # fmt: skip
    config = {key: value for key, value in settings.__dict__.items() if key != "api_key"}
    config["api_key_sent"] = bool(settings.api_key)  # whether one was sent; the key itself, never
    config["requests_per_level"] = len(prompts)
    warm_failed = sum(1 for result in warm.results if not result.ok) if warm else 0
    return {"config": config, "warmup": {"requests": settings.warmup, "failed": warm_failed}, "runs": runs}


def benchmark(settings: Settings, prompts: list[Prompt]) -> dict:
    return run_loop(run_benchmark(settings, prompts))
