"""A synthetic OpenAI-compatible server whose timing is known: it answers after ``ttft`` seconds,
then one chunk every ``itl`` seconds, and records when it wrote each chunk (the truth a load
generator's measurements are compared with). For tests and the accuracy benchmark; loopback only.

    PYTHONPATH=collections python -m \
        ansible_collections.npufleet.ascend.plugins.plugin_utils.bench.synthetic --port 8000 --ttft-ms 50

With an API key (``--api-key-env NAME``: the key from that environment variable, never from argv), it
answers /v1/ requests without ``Authorization: Bearer <key>`` as vLLM does (401, ``{"error":
"Unauthorized"}``); /health stays open.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import time
from dataclasses import dataclass, field
from typing import ClassVar

from . import run_loop


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
    api_key: str = field(default="", repr=False)  # required on /v1/ (Authorization: Bearer), like vLLM's


@dataclass
class Truth:
    arrived: float
    first_content: float | None = None
    chunks: list[float] = field(default_factory=list)
    tokens: int = 0
    ended: float | None = None


class SyntheticServer:
    """HTTP/1.1 with keep-alive on a bare asyncio protocol rather than a web framework: the truth
    is stamped when the request's last byte arrives and when each chunk is handed to the kernel,
    so the server adds as little unrecorded delay as it can to what a client measures."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.truth: dict[str, Truth] = {}
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port)
        bound = self._server.sockets[0].getsockname()
        self.url = f"http://{host}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()

    def handle(
        self,
        connection: _Connection,
        method: str,
        path: str,
        body: bytes,
        arrived: float,
        *,
        headers: dict | None = None,
    ) -> None:
        """Answer at once, or schedule the answer's chunks on the loop's clock (callbacks rather
        than a task per request: less work per request, so stamps stay close under load)."""
        key = self.behaviour.api_key
        if key and path.startswith("/v1/") and (headers or {}).get("authorization") != f"Bearer {key}":
            connection.respond_json(401, {"error": "Unauthorized"})  # vLLM's answer without the key
            return
        try:
            if method == "GET" and path == "/health":
                connection.respond(200, b"ok", "text/plain")
            elif method == "GET" and path == "/v1/models":
                models = {"object": "list", "data": [{"id": "synthetic", "object": "model"}]}
                connection.respond_json(200, models)
            elif method == "GET" and path == "/truth":
                connection.respond_json(200, {key: value.__dict__ for key, value in self.truth.items()})
            elif method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
                payload = json.loads(body or b"{}")
                self._answer(connection, payload, path.endswith("chat/completions"), arrived)
            else:
                connection.respond_json(404, {"error": {"message": f"no route {method} {path}"}})
        except (ValueError, TypeError, AttributeError) as error:
            connection.respond_json(400, {"error": {"message": f"bad request: {error}"}})

    def _answer(self, connection: _Connection, body: dict, chat: bool, arrived: float) -> None:
        number = next(self._ids)
        request_id = f"req-{number}"
        behaviour = self.behaviour
        if behaviour.fail_every and number % behaviour.fail_every == 0:
            connection.respond_json(500, {"error": {"message": "synthetic failure"}})
            return
        # Chat clients use max_completion_tokens (OpenAI's newer name) or max_tokens.
        tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 16)
        prompt = body.get("prompt") or " ".join(_text(m.get("content")) for m in body.get("messages", []))
        prompt_tokens = len(str(prompt).split())
        truth = self.truth[request_id] = Truth(arrived=arrived, tokens=tokens)
        chunks = [behaviour.tokens_per_chunk] * (tokens // behaviour.tokens_per_chunk)
        if tokens % behaviour.tokens_per_chunk:
            chunks.append(tokens % behaviour.tokens_per_chunk)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": tokens,
            "total_tokens": prompt_tokens + tokens,
        }
        headers = {"x-request-id": request_id}
        # The loop's clock may differ from time.monotonic() (uvloop's): deadlines are set on it.
        loop = asyncio.get_running_loop()
        offset = loop.time() - time.monotonic()
        if not body.get("stream"):
            text = "tok " * tokens
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message} if chat else {"index": 0, "text": text}
            answer = {"id": request_id, "choices": [choice], "usage": usage}

            def whole() -> None:
                connection.respond_json(200, answer, headers)
                truth.first_content = truth.ended = time.monotonic()

            deadline = arrived + behaviour.ttft + behaviour.itl * (len(chunks) - 1)
            connection.schedule(loop.call_at(deadline + offset, whole))
            return
        connection.start_stream(headers | {"Content-Type": "text/event-stream"})
        sep = b"data: " if behaviour.space_after_colon else b"data:"

        def event(payload: dict | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            if behaviour.pad_bytes and not isinstance(payload, str):
                data = json.dumps(payload | {"padding": " " * behaviour.pad_bytes})
            raw = (b": keep-alive\n\n" if behaviour.comments else b"") + sep + data.encode() + b"\n\n"
            step = 7 if behaviour.split_writes else len(raw)
            for start in range(0, len(raw), step):
                connection.stream_chunk(raw[start : start + step])

        if behaviour.role_chunk and chat:
            role = {"index": 0, "delta": {"role": "assistant", "content": ""}}
            event({"id": request_id, "choices": [role]})
        sent = 0
        for index, count in enumerate(chunks):
            sent += count
            text = "tok " * count
            choice = {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}
            payload: dict = {"id": request_id, "choices": [choice]}
            if behaviour.usage == "continuous":
                payload["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": sent}
            last = index == len(chunks) - 1

            def content(payload: dict = payload, last: bool = last) -> None:
                event(payload)
                now = time.monotonic()
                truth.chunks.append(now)
                if truth.first_content is None:
                    truth.first_content = now
                if last:
                    if behaviour.usage in ("continuous", "final"):
                        event({"id": request_id, "choices": [], "usage": usage})
                    event("[DONE]")
                    connection.end_stream()
                    truth.ended = time.monotonic()

            deadline = arrived + behaviour.ttft + behaviour.itl * index
            connection.schedule(loop.call_at(deadline + offset, content))
        if not chunks:
            event("[DONE]")
            connection.end_stream()
            truth.ended = time.monotonic()


class _Connection(asyncio.Protocol):
    """One client connection: parses requests (Content-Length bodies), one at a time."""

    _REASONS: ClassVar[dict[int, str]] = {
        200: "OK",
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        500: "Internal Server Error",
    }

    def __init__(self, server: SyntheticServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self._timers: list = []  # asyncio's TimerHandle, or uvloop's

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, _exc: Exception | None) -> None:
        # The client went away: the rest of its answer is not sent (the transport buffers the
        # rest of a slow reader's answer; no flow control needed for a test server).
        self.transport = None
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def schedule(self, timer: asyncio.Handle) -> None:
        """Keep an answer's pending callbacks, to cancel them if the client goes away. For a deadline
        already past, uvloop's call_at returns a plain Handle, without when(): it runs on the loop's
        next turn, and is not kept."""
        now = asyncio.get_running_loop().time()
        self._timers = [pending for pending in self._timers if pending.when() > now]
        if callable(getattr(timer, "when", None)):
            self._timers.append(timer)

    def data_received(self, data: bytes) -> None:
        arrived = time.monotonic()
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        lines = self.buffer[:head_end].decode("latin-1").split("\r\n")
        method, path, _version = lines[0].split(" ", 2)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }
        length = int(headers.get("content-length") or 0)
        if len(self.buffer) < head_end + 4 + length:
            return  # the body is still arriving; the request counts as arrived with its last byte
        body = self.buffer[head_end + 4 : head_end + 4 + length]
        self.buffer = self.buffer[head_end + 4 + length :]
        # Answered on the loop's next turn: the other connections' bytes that are ready now get
        # their arrival stamped first, rather than after this request's answer is built.
        route = path.split("?", 1)[0]
        asyncio.get_running_loop().call_soon(
            lambda: self.server.handle(self, method, route, body, arrived, headers=headers)
        )

    def _head(self, status: int, headers: dict) -> bytes:
        lines = [f"HTTP/1.1 {status} {self._REASONS.get(status, 'Status')}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def respond(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        head = (headers or {}) | {"Content-Type": content_type, "Content-Length": str(len(body))}
        self._write(self._head(status, head) + body)

    def respond_json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        self.respond(status, json.dumps(payload).encode(), "application/json", headers)

    def start_stream(self, headers: dict) -> None:
        self._write(self._head(200, headers | {"Transfer-Encoding": "chunked", "Cache-Control": "no-cache"}))

    def stream_chunk(self, data: bytes) -> None:
        self._write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self) -> None:
        self._write(b"0\r\n\r\n")


def _text(content: str | list | None) -> str:
    """A message's text: a string, or the text parts of a list of content parts (OpenAI's form)."""
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--ttft-ms", type=float, default=50)
    parser.add_argument("--itl-ms", type=float, default=10)
    parser.add_argument("--tokens-per-chunk", type=int, default=1)
    parser.add_argument("--api-key-env", help="require the API key held in this environment variable")
    args = parser.parse_args()
    api_key = os.environ.get(args.api_key_env, "") if args.api_key_env else ""
    if args.api_key_env and not api_key:
        parser.error(f"--api-key-env {args.api_key_env}: that variable is not set")
    server = SyntheticServer(Behaviour(ttft=args.ttft_ms / 1000, itl=args.itl_ms / 1000,
                                       tokens_per_chunk=args.tokens_per_chunk, api_key=api_key))  # fmt: skip

    async def serve() -> None:
        await server.start(args.host, args.port)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        run_loop(serve())


if __name__ == "__main__":
    main()
