"""One request to an OpenAI-compatible endpoint, timed: streaming (SSE) or not, chat or completions."""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp.client_proto import ResponseHandler

from .sse import SSEParser


@dataclass
class Prompt:
    """What to send: a text prompt (or chat messages), the output length wanted, and its input length."""

    text: str
    max_tokens: int
    prompt_tokens: int | None = None
    messages: list | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class RequestResult:
    ok: bool
    start: float  # time.monotonic() when the request had left the client (see new_session)
    send_delay: float = 0.0  # seconds the client itself took before the request left it
    end: float = 0.0
    ttft: float | None = None
    chunk_times: list[float] = field(default_factory=list)  # content chunk arrivals, seconds after start
    chunk_tokens: list[int] = field(default_factory=list)  # tokens in each content chunk
    output_tokens: int = 0
    prompt_tokens: int | None = None
    usage_from_server: bool = False
    text: str = ""
    error: str = ""
    error_kind: str = ""
    request_id: str = ""

    @property
    def e2e(self) -> float:
        return self.end - self.start

    @property
    def tpot(self) -> float | None:
        if not self.ok or self.ttft is None or self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)

    def itl(self) -> list[float]:
        """Inter-token latencies: each gap between content chunks shared by the later chunk's tokens."""
        values = []
        for index in range(1, len(self.chunk_times)):
            gap = self.chunk_times[index] - self.chunk_times[index - 1]
            tokens = max(1, self.chunk_tokens[index] if index < len(self.chunk_tokens) else 1)
            values.extend([gap / tokens] * tokens)
        return values


class _SentAt:
    """Where the trace hook stamps the moment the request's last byte was handed to the socket."""

    __slots__ = ("time",)

    def __init__(self) -> None:
        self.time: float | None = None


async def _stamp_sent(_session, context, _params) -> None:
    stamp = context.trace_request_ctx
    if isinstance(stamp, _SentAt):
        stamp.time = time.monotonic()


class _ArrivalStampingHandler(ResponseHandler):
    """aiohttp's connection protocol, noting when bytes reached the process. When many streams
    get a chunk at once (a server's decode step), the coroutines reading them wake one after
    another; the stamp taken here, before any of them runs, is when the chunk really arrived."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.first_unread: float | None = None

    def data_received(self, data: bytes) -> None:
        if self.first_unread is None:
            self.first_unread = time.monotonic()
        super().data_received(data)


class _StampingConnector(aiohttp.TCPConnector):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # aiohttp builds each connection's protocol from this factory (no public hook for it);
        # without it (another aiohttp), chunks are stamped when their reader wakes instead.
        if hasattr(self, "_factory"):
            self._factory = functools.partial(_ArrivalStampingHandler, loop=self._loop)


def _arrival(response: aiohttp.ClientResponse, not_before: float) -> float:
    """When the data just read arrived: the protocol's stamp, unless absent or older than the
    request (left over from an earlier answer on the same connection); then now."""
    now = time.monotonic()
    protocol = response.connection.protocol if response.connection else None
    stamp = getattr(protocol, "first_unread", None)
    if protocol is not None and stamp is not None:
        protocol.first_unread = None
        if not_before <= stamp <= now:
            return stamp
    return now


def new_session(**kwargs) -> aiohttp.ClientSession:
    """A client session for ``send``: no connection limit; each request's clock starts when its
    body was written, not when the client began building it (under a burst of requests the
    client's own work before the write is not the server's latency: it is reported apart as
    ``send_delay``), and each chunk is timed when its bytes arrived, not when its reader woke."""
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_stamp_sent)
    trace.on_request_chunk_sent.append(_stamp_sent)
    kwargs.setdefault("connector", _StampingConnector(limit=0))
    return aiohttp.ClientSession(trace_configs=[trace], **kwargs)


def build_payload(prompt: Prompt, model: str, endpoint: str, stream: bool) -> dict:
    payload: dict = {"model": model, "max_tokens": prompt.max_tokens, "stream": stream}
    if endpoint == "chat":
        payload["messages"] = prompt.messages or [{"role": "user", "content": prompt.text}]
    else:
        payload["prompt"] = prompt.text
    if stream:
        payload["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
    return payload | prompt.extra


def _content(choice: dict, endpoint: str) -> str:
    if endpoint == "chat":
        delta = choice.get("delta") or choice.get("message") or {}
        return (delta.get("content") or "") + (delta.get("reasoning_content") or "")
    return choice.get("text") or ""


def _spread(chunk_usage: list[int | None], total: int | None, chunks: int) -> list[int]:
    """Tokens per content chunk: the server's per-chunk usage where it sent it, else its total
    spread evenly over the chunks, else one per chunk."""
    if chunks and all(value is not None for value in chunk_usage) and len(chunk_usage) == chunks:
        return [int(value) for value in chunk_usage]
    if total and chunks:
        base, extra = divmod(total, chunks)
        return [base + (1 if index < extra else 0) for index in range(chunks)]
    return [1] * chunks


async def send(
    session: aiohttp.ClientSession,
    url: str,
    model: str,
    prompt: Prompt,
    *,
    endpoint: str = "chat",
    stream: bool = True,
    timeout: float = 600,
    headers: dict | None = None,
) -> RequestResult:
    """Send one request and time it; failures are returned with their kind, never raised."""
    path = "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"
    payload = build_payload(prompt, model, endpoint, stream)
    result = RequestResult(ok=False, start=time.monotonic(), prompt_tokens=prompt.prompt_tokens)
    sent = _SentAt()
    chunk_usage: list[int | None] = []
    last_completion_tokens = 0
    total_tokens: int | None = None
    try:
        async with session.post(
            url.rstrip("/") + path,
            json=payload,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
            trace_request_ctx=sent,
        ) as response:
            # A session without the hook (not from new_session) keeps the clock from the start.
            if sent.time is not None:
                result.send_delay = sent.time - result.start
                result.start = sent.time
            result.request_id = response.headers.get("x-request-id", "")
            if response.status != 200:
                body = (await response.text())[:300]
                result.end = time.monotonic()
                result.error, result.error_kind = f"HTTP {response.status}: {body}", f"http_{response.status}"
                return result
            if not stream:
                body = await response.json(content_type=None)
                result.end = time.monotonic()
                choice = (body.get("choices") or [{}])[0]
                result.text = _content(choice, endpoint)
                usage = body.get("usage") or {}
                result.ttft = result.e2e
                result.chunk_times = [result.e2e] if result.text else []
                result.output_tokens = int(usage.get("completion_tokens") or 0)
                result.usage_from_server = "completion_tokens" in usage
                result.chunk_tokens = [result.output_tokens or 1] if result.text else []
                if usage.get("prompt_tokens") is not None:
                    result.prompt_tokens = int(usage["prompt_tokens"])
                result.ok = True
                return result
            parser = SSEParser()
            done = False
            async for raw in response.content.iter_any():
                arrived = _arrival(response, result.start) - result.start
                events = parser.feed(raw)
                for data in events:
                    if data.strip() == "[DONE]":
                        done = True
                        continue
                    event = json.loads(data)
                    if "error" in event:
                        raise RuntimeError(f"server error in stream: {event['error']}")
                    usage = event.get("usage") or {}
                    text = "".join(_content(choice, endpoint) for choice in event.get("choices") or [])
                    if text:
                        result.text += text
                        result.chunk_times.append(arrived)
                        if result.ttft is None:
                            result.ttft = arrived
                        if usage.get("completion_tokens") is not None:
                            chunk_usage.append(int(usage["completion_tokens"]) - last_completion_tokens)
                        else:
                            chunk_usage.append(None)
                    if usage.get("completion_tokens") is not None:
                        last_completion_tokens = int(usage["completion_tokens"])
                        total_tokens = last_completion_tokens
                        result.usage_from_server = True
                    if usage.get("prompt_tokens") is not None:
                        result.prompt_tokens = int(usage["prompt_tokens"])
            for data in parser.close():
                done = done or data.strip() == "[DONE]"
            result.end = time.monotonic()
            result.chunk_tokens = _spread(chunk_usage, total_tokens, len(result.chunk_times))
            result.output_tokens = total_tokens if total_tokens is not None else len(result.chunk_times)
            # A stream without content is an answer too (the model stopped at once): it counts as
            # completed with no TTFT, and the summary says how many there were.
            result.ok = True
            if not done:
                result.error = "the stream ended without [DONE]"
            return result
    except TimeoutError:
        result.error, result.error_kind = f"no complete answer within {timeout} s", "timeout"
    except aiohttp.ClientError as error:
        result.error, result.error_kind = f"{type(error).__name__}: {error}", "connection"
    except (ValueError, RuntimeError) as error:
        result.error, result.error_kind = str(error), "protocol"
    result.end = time.monotonic()
    return result
