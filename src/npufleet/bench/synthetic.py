"""A synthetic OpenAI-compatible server whose timing is known: it answers after ``ttft`` seconds,
then one chunk every ``itl`` seconds, and records when it wrote each chunk (the truth a load
generator's measurements are compared with). For tests and the accuracy benchmark; loopback only.

    python -m npufleet.bench.synthetic --port 8000 --ttft-ms 50 --itl-ms 10
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Behaviour:
    ttft: float = 0.05
    itl: float = 0.01
    tokens_per_chunk: int = 1
    # What real servers do that a client must tolerate:
    role_chunk: bool = True  # a first chunk with the role and empty content (vLLM, LLaMA-Factory)
    comments: bool = False  # ': keep-alive' comment lines between events
    space_after_colon: bool = True  # 'data: {...}' or 'data:{...}'
    usage: str = "continuous"  # per-chunk usage (vLLM's continuous_usage_stats), "final" or "none"
    pad_bytes: int = 0  # padding in each event, for large chunks
    split_writes: bool = False  # write every event in pieces of 7 bytes
    fail_every: int = 0  # answer HTTP 500 to every n-th request


@dataclass
class Truth:
    arrived: float
    first_content: float | None = None
    chunks: list[float] = field(default_factory=list)
    tokens: int = 0
    ended: float | None = None


class SyntheticServer:
    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.truth: dict[str, Truth] = {}
        self._ids = itertools.count(1)
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self._chat)
        self.app.router.add_post("/v1/completions", self._completions)
        self.app.router.add_get("/v1/models", self._models)
        self.app.router.add_get("/health", self._health)
        self.app.router.add_get("/truth", self._truth)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()  # aiohttp has no public accessor for the port
        self.url = f"http://{host}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _models(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "synthetic", "object": "model"}]})

    async def _health(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _truth(self, _request: web.Request) -> web.Response:
        return web.json_response({key: value.__dict__ for key, value in self.truth.items()})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, chat=False)

    async def _answer(self, request: web.Request, chat: bool) -> web.StreamResponse:
        arrived = time.monotonic()
        number = next(self._ids)
        request_id = f"req-{number}"
        behaviour = self.behaviour
        body = await request.json()
        if behaviour.fail_every and number % behaviour.fail_every == 0:
            return web.json_response({"error": {"message": "synthetic failure"}}, status=500)
        tokens = int(body.get("max_tokens") or 16)
        prompt = body.get("prompt") or " ".join(m.get("content", "") for m in body.get("messages", []))
        prompt_tokens = len(str(prompt).split())
        truth = self.truth[request_id] = Truth(arrived=arrived, tokens=tokens)
        chunks = [behaviour.tokens_per_chunk] * (tokens // behaviour.tokens_per_chunk)
        if tokens % behaviour.tokens_per_chunk:
            chunks.append(tokens % behaviour.tokens_per_chunk)
        headers = {"x-request-id": request_id}
        if not body.get("stream"):
            await _sleep_until(arrived + behaviour.ttft + behaviour.itl * (len(chunks) - 1))
            text = "tok " * tokens
            choice = (
                {"index": 0, "message": {"role": "assistant", "content": text}}
                if chat
                else {"index": 0, "text": text}
            )
            truth.first_content = truth.ended = time.monotonic()
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": tokens,
                "total_tokens": prompt_tokens + tokens,
            }
            return web.json_response({"id": request_id, "choices": [choice], "usage": usage}, headers=headers)
        response = web.StreamResponse(headers=headers | {"Content-Type": "text/event-stream"})
        await response.prepare(request)
        sep = b"data: " if behaviour.space_after_colon else b"data:"

        async def event(payload: dict | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            if behaviour.pad_bytes and not isinstance(payload, str):
                data = json.dumps(payload | {"padding": " " * behaviour.pad_bytes})
            raw = (b": keep-alive\n\n" if behaviour.comments else b"") + sep + data.encode() + b"\n\n"
            if behaviour.split_writes:
                for start in range(0, len(raw), 7):
                    await response.write(raw[start : start + 7])
            else:
                await response.write(raw)

        if behaviour.role_chunk and chat:
            await event(
                {"id": request_id, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
            )
        sent = 0
        for index, count in enumerate(chunks):
            await _sleep_until(arrived + behaviour.ttft + behaviour.itl * index)
            sent += count
            text = "tok " * count
            choice = {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}
            payload: dict = {"id": request_id, "choices": [choice]}
            if behaviour.usage == "continuous":
                payload["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": sent}
            await event(payload)
            now = time.monotonic()
            truth.chunks.append(now)
            if truth.first_content is None:
                truth.first_content = now
        if behaviour.usage in ("continuous", "final"):
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": tokens,
                "total_tokens": prompt_tokens + tokens,
            }
            await event({"id": request_id, "choices": [], "usage": usage})
        await event("[DONE]")
        await response.write_eof()
        truth.ended = time.monotonic()
        return response


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--ttft-ms", type=float, default=50)
    parser.add_argument("--itl-ms", type=float, default=10)
    parser.add_argument("--tokens-per-chunk", type=int, default=1)
    args = parser.parse_args()
    server = SyntheticServer(Behaviour(ttft=args.ttft_ms / 1000, itl=args.itl_ms / 1000,
                                       tokens_per_chunk=args.tokens_per_chunk))  # fmt: skip
    web.run_app(server.app, host=args.host, port=args.port, access_log=None)


if __name__ == "__main__":
    main()
