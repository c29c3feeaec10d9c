"""The load generator: SSE parsing, schedules, percentiles, and requests timed against a synthetic
OpenAI-compatible server on loopback whose first-token delay and inter-chunk delay are known."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from ansible_collections.npufleet.ascend.plugins.plugin_utils.bench.client import (
    Prompt,
    RequestResult,
    build_payload,
    new_session,
    send,
)
from ansible_collections.npufleet.ascend.plugins.plugin_utils.bench.entry import run_benchmark
from ansible_collections.npufleet.ascend.plugins.plugin_utils.bench.load import (
    arrival_offsets,
    at_concurrency,
    at_rate,
)
from ansible_collections.npufleet.ascend.plugins.plugin_utils.bench.metrics import (
    describe,
    percentile,
    summarize,
)
from ansible_collections.npufleet.ascend.plugins.plugin_utils.bench.prompts import (
    from_jsonl,
    multimodal,
    synthetic,
)
from ansible_collections.npufleet.ascend.plugins.plugin_utils.bench.sse import SSEParser
from ansible_collections.npufleet.ascend.plugins.plugin_utils.bench.synthetic import (
    Behaviour,
    SyntheticServer,
)

ROOT = Path(__file__).resolve().parents[4]
SYNTHETIC = "ansible_collections.npufleet.ascend.plugins.plugin_utils.bench.synthetic"

STREAM = (
    b": ping\r\n\r\n"
    b'data: {"a": 1}\r\n\r\n'
    b'data:{"b": 2}\n\n'
    b"event: message\nid: 7\ndata: line one\ndata: line two\n\n"
    b"retry: 10\n\r"
    b"data: [DONE]\r\r"
)
EVENTS = ['{"a": 1}', '{"b": 2}', "line one\nline two", "[DONE]"]


def test_sse_whole_stream():
    parser = SSEParser()
    assert parser.feed(STREAM) + parser.close() == EVENTS


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_sse_any_split_gives_the_same_events(size):
    parser = SSEParser()
    events = []
    for start in range(0, len(STREAM), size):
        events += parser.feed(STREAM[start : start + size])
    assert events + parser.close() == EVENTS


def test_sse_last_event_without_blank_line_and_large_chunks():
    parser = SSEParser()
    big = json.dumps({"x": "y" * 200_000})
    assert parser.feed(f"data: {big}\n\ndata: tail".encode()) == [big]
    assert parser.close() == ["tail"]
    assert SSEParser().feed(b"data\n\n") == [""]  # a field with no colon: empty data


def test_arrival_offsets():
    assert arrival_offsets(4, 2.0, "constant") == [0.0, 0.5, 1.0, 1.5]
    poisson = arrival_offsets(20_000, 50.0, "poisson", seed=3)
    assert poisson == arrival_offsets(20_000, 50.0, "poisson", seed=3)
    assert poisson[0] == 0.0 and all(b >= a for a, b in itertools.pairwise(poisson))
    assert poisson[-1] / (len(poisson) - 1) == pytest.approx(1 / 50, rel=0.02)
    with pytest.raises(ValueError, match="rate must be above 0 requests/s, got 0"):
        arrival_offsets(3, 0)
    with pytest.raises(ValueError, match="arrival kind must be poisson or constant, got 'gamma'"):
        arrival_offsets(3, 1, "gamma")


def test_percentiles_interpolate_like_numpy():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([1, 2, 3, 4], 90) == pytest.approx(3.7)
    assert percentile([5], 99) == 5
    assert describe([]) == {"count": 0}
    assert describe([1.0, 3.0]) == {"count": 2, "mean": 2.0, "p50": 2.0, "p90": 2.8, "p99": 2.98}


def test_tpot_and_itl_definitions():
    result = RequestResult(ok=True, start=10.0, end=10.5, ttft=0.1, chunk_times=[0.1, 0.2, 0.5],
                           chunk_tokens=[1, 2, 3], output_tokens=6)  # fmt: skip
    assert result.e2e == pytest.approx(0.5)
    assert result.tpot == pytest.approx((0.5 - 0.1) / 5)
    assert result.itl() == pytest.approx([0.05, 0.05, 0.1, 0.1, 0.1])
    assert RequestResult(ok=True, start=0, end=1, ttft=1, output_tokens=1).tpot is None


def run_with_server(behaviour: Behaviour, scenario):
    async def main():
        server = SyntheticServer(behaviour)
        url = await server.start()
        try:
            async with new_session() as session:
                return await scenario(session, url, server)
        finally:
            await server.stop()

    return asyncio.run(main())


def test_the_synthetic_server_on_uvloop_streams_answers_whose_deadlines_have_passed():
    # uvloop's call_at returns a plain Handle (no when()) for a deadline already past: the server
    # once failed the next chunk of the answer with a 400 in the middle of the stream.
    uvloop = pytest.importorskip("uvloop")

    async def main():
        server = SyntheticServer(Behaviour(ttft=0.0, itl=0.0))
        url = await server.start()
        try:
            async with new_session() as session:
                return [await send(session, url, "synthetic", Prompt("x", 6)) for _ in range(3)]
        finally:
            await server.stop()

    for result in uvloop.run(main()):
        assert result.ok and not result.error, result.error
        assert result.output_tokens == 6


@pytest.mark.parametrize(
    ("behaviour", "chunk_tokens"),
    [
        (Behaviour(ttft=0.06, itl=0.01), [1] * 12),
        (Behaviour(ttft=0.06, itl=0.01, tokens_per_chunk=3, comments=True, space_after_colon=False), [3] * 4),
        (Behaviour(ttft=0.06, itl=0.01, tokens_per_chunk=5, usage="final", split_writes=True), [4, 4, 4]),
        (Behaviour(ttft=0.06, itl=0.01, tokens_per_chunk=4, usage="none", pad_bytes=100_000), [1, 1, 1]),
    ],
)
def test_a_streamed_chat_request_is_timed_against_the_servers_truth(behaviour, chunk_tokens):
    async def scenario(session, url, server):
        return await send(session, url, "synthetic", Prompt("two words", 12)), server

    result, server = run_with_server(behaviour, scenario)
    assert result.ok, result.error
    truth = server.truth[result.request_id]
    # TTFT ends when the first content chunk arrives (not the role-only chunk before it): after the
    # server wrote it. How soon after is measured by benchmarks/, not asserted here.
    lag = (result.start + result.ttft) - truth.first_content
    assert 0 <= lag < 1.0
    assert result.ttft >= behaviour.ttft
    assert result.chunk_tokens == chunk_tokens
    assert result.text == "tok " * 12
    expected_tokens = 12 if behaviour.usage != "none" else len(chunk_tokens)
    assert result.output_tokens == expected_tokens
    assert result.prompt_tokens == (2 if behaviour.usage != "none" else None)
    assert len(result.itl()) == sum(chunk_tokens[1:])
    assert all(value > 0 for value in result.itl())


def test_the_clock_starts_when_the_request_left_and_chunks_are_stamped_on_arrival():
    async def scenario(session, url, server):
        hooked = await send(session, url, "synthetic", Prompt("a b", 4))
        async with aiohttp.ClientSession() as plain:  # no hook: timed from the call, still correct
            unhooked = await send(plain, url, "synthetic", Prompt("a b", 4))
        return hooked, unhooked, server

    hooked, unhooked, server = run_with_server(Behaviour(ttft=0.03, itl=0.005), scenario)
    for result in (hooked, unhooked):
        truth = server.truth[result.request_id]
        assert result.ok, result.error
        # The request left the client before the server had all of it, and the first chunk was
        # stamped after the server wrote it.
        assert result.start <= truth.arrived
        assert result.start + result.ttft >= truth.first_content
    assert hooked.send_delay > 0
    assert unhooked.send_delay == 0


def test_the_synthetic_server_takes_content_parts_and_max_completion_tokens():
    # guidellm's form of a chat request: content as a list of parts, OpenAI's newer token cap.
    async def scenario(session, url, server):
        payload = {
            "model": "synthetic",
            "max_completion_tokens": 3,
            "stream": False,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "one two three"}]}],
        }
        async with session.post(f"{url}/v1/chat/completions", json=payload) as response:
            return response.status, await response.json()

    status, body = run_with_server(Behaviour(ttft=0.0, itl=0.0), scenario)
    assert status == 200
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}


def test_completions_and_non_streaming():
    async def scenario(session, url, _server):
        streamed = await send(session, url, "synthetic", Prompt("a b c", 5), endpoint="completions")
        whole = await send(session, url, "synthetic", Prompt("a b c", 5), stream=False)
        return streamed, whole

    streamed, whole = run_with_server(Behaviour(ttft=0.02, itl=0.01), scenario)
    assert streamed.ok and streamed.output_tokens == 5 and streamed.text == "tok " * 5
    assert whole.ok and whole.output_tokens == 5 and whole.prompt_tokens == 3
    assert whole.ttft == whole.e2e >= 0.02 + 0.01 * 4


def test_errors_are_counted_by_kind_never_dropped():
    async def scenario(session, url, _server):
        prompts = [Prompt("x", 3)] * 6
        run = await at_concurrency(lambda p: send(session, url, "synthetic", p), prompts, 2)
        refused = await send(session, "http://127.0.0.1:9", "synthetic", Prompt("x", 3))
        return run, refused

    run, refused = run_with_server(Behaviour(ttft=0.0, itl=0.0, fail_every=3), scenario)
    summary = summarize(run)
    assert (summary["requests"], summary["completed"], summary["failed"]) == (6, 4, 2)
    assert summary["errors"] == {"http_500": 2}
    assert not refused.ok and refused.error_kind == "connection"


def test_rate_mode_keeps_the_schedule_and_goodput_applies_slos():
    async def scenario(session, url, _server):
        prompts = [Prompt("x", 4)] * 60
        return await at_rate(lambda p: send(session, url, "synthetic", p), prompts, 100.0, kind="constant")

    run = run_with_server(Behaviour(ttft=0.01, itl=0.002), scenario)
    assert run.planned == [index / 100.0 for index in range(60)]
    # Never early (sleeps end at absolute deadlines); how late is measured by benchmarks/.
    assert all(actual >= planned - 1e-3 for actual, planned in zip(run.send_times, run.planned, strict=True))
    assert run.achieved_rate() <= 100.0 * 1.01
    summary = summarize(run, slo={"ttft_ms": 10_000, "e2e_ms": 10_000})
    assert summary["goodput"] == pytest.approx(summary["request_throughput"])
    assert summarize(run, slo={"ttft_ms": 1})["goodput"] == 0


def test_prompts_synthetic_jsonl_and_multimodal(tmp_path):
    made = synthetic(3, 16, 8, seed=1)
    assert [len(p.text.split()) for p in made] == [16, 16, 16]
    assert made[0].extra == {"ignore_eos": True} and made[0].max_tokens == 8
    assert synthetic(3, 16, 8, seed=1)[2].text == made[2].text
    data = tmp_path / "prompts.jsonl"
    data.write_text(
        '{"prompt": "hi", "max_tokens": 4}\n\n{"messages": [{"role": "user", "content": "yo"}]}\n'
    )
    loaded = from_jsonl(data, count=3, default_max_tokens=9)
    assert [(p.text, p.max_tokens) for p in loaded] == [("hi", 4), ("", 9), ("hi", 4)]
    assert [p.extra for p in loaded] == [{}, {}, {}]  # no ignore_eos unless a line asks for it
    data.write_text(
        '{"prompt": "hi", "max_tokens": 4, "ignore_eos": true}\n{"prompt": "yo", "ignore_eos": false}\n'
    )
    same = from_jsonl(data)
    assert [p.extra for p in same] == [{"ignore_eos": True}, {}]
    assert build_payload(same[0], "m", "chat", stream=True)["ignore_eos"] is True
    data.write_text('{"prompt": "hi", "ignore_eos": "yes"}\n')
    with pytest.raises(ValueError, match=r"prompts.jsonl:1: 'ignore_eos' must be true or false"):
        from_jsonl(data)
    data.write_text('{"prompt": "hi"}\n{"text": "no"}\n')
    with pytest.raises(ValueError, match=r"prompts.jsonl:2: each line needs 'prompt' \(text\) or 'messages'"):
        from_jsonl(data)
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG fake")
    (request,) = multimodal(1, "What is in the image?", image, 16, stop_token_ids=[0, 92543, 92542])
    payload = build_payload(request, "internvl2", "chat", stream=False)
    # The manual's online_serving.py payload: text, then the image as a data URL; stop_token_ids.
    assert payload["messages"][0]["content"] == [
        {"type": "text", "text": "What is in the image?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORyBmYWtl"}},
    ]
    assert payload["stop_token_ids"] == [0, 92543, 92542] and payload["max_tokens"] == 16


def test_npufleet_bench_against_the_synthetic_server(tmp_path):
    with synthetic_server(ttft_ms=20, itl_ms=2) as port:
        out = tmp_path / "bench"
        result = subprocess.run(
            [str(Path(sys.executable).parent / "npufleet"), "bench", "--url", f"http://127.0.0.1:{port}",
             "--model", "synthetic", "--concurrency", "1,4", "--requests", "12", "--output-tokens", "8",
             "--input-tokens", "5", "--slo-ttft-ms", "5000", "--out", str(out)],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "bench.json").read_text())
    assert [run["level"] for run in data["runs"]] == [1, 4]
    for run in data["runs"]:
        summary = run["summary"]
        assert (summary["completed"], summary["failed"], summary["output_tokens"]) == (12, 0, 96)
        assert summary["prompt_tokens"] == 60 and summary["usage_from_server"]
        assert summary["ttft_ms"]["p50"] >= 20 and summary["goodput"] == pytest.approx(
            summary["request_throughput"]
        )
    assert "| 4 | 12 / 0 |" in result.stdout
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_npufleet_bench_refuses_bad_input_and_reports_a_dead_server(tmp_path):
    npufleet = str(Path(sys.executable).parent / "npufleet")
    bad = subprocess.run([npufleet, "bench", "--url", "127.0.0.1:8000", "--model", "m", "--concurrency", "2"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert bad.returncode == 2
    assert "url must start with http:// or https://, got '127.0.0.1:8000'" in bad.stderr
    zero = subprocess.run([npufleet, "bench", "--url", "http://127.0.0.1:9", "--model", "m",
                           "--concurrency", "0"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert zero.returncode == 2 and "every concurrency must be at least 1, got [0]" in zero.stderr
    dead = subprocess.run(
        [npufleet, "bench", "--url", f"http://127.0.0.1:{socket_port()}", "--model", "m",
         "--concurrency", "2",
         "--requests", "3", "--warmup", "0", "--out", str(tmp_path / "dead")],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert dead.returncode == 1
    assert "every request failed: is the server up at that address?" in dead.stderr
    assert json.loads((tmp_path / "dead" / "bench.json").read_text())["runs"][0]["summary"]["errors"] == {
        "connection": 3
    }


@contextlib.contextmanager
def synthetic_server(ttft_ms: float, itl_ms: float, api_key: str = ""):
    """The synthetic server (``python -m`` its module, with the checkout's collections/ on the path) on a
    free loopback port, for as long as the block runs; with ``api_key``, it requires that key (handed
    over by environment, as the server's own key should be)."""
    port = socket_port()
    path = os.pathsep.join(filter(None, [str(ROOT / "collections"), os.environ.get("PYTHONPATH")]))
    env = os.environ | {"PYTHONPATH": path}
    key_option = []
    if api_key:
        env["SYNTHETIC_API_KEY"] = api_key
        key_option = ["--api-key-env", "SYNTHETIC_API_KEY"]
    server = subprocess.Popen(
        [sys.executable, "-m", SYNTHETIC, "--port", str(port),
         "--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms), *key_option],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        wait_for_port(port)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def socket_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int) -> None:
    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def test_an_answer_without_content_is_completed_and_counted_as_empty():
    async def scenario(session, url, _server):
        return await at_concurrency(lambda p: send(session, url, "synthetic", p), [Prompt("x", 1)], 1)

    run = run_with_server(Behaviour(ttft=0.0, itl=0.0, tokens_per_chunk=2, usage="final"), scenario)
    assert run.results[0].ok and run.results[0].output_tokens == 1
    # Here the only chunk has content; a server that sends none is summarized the same way:
    empty = RequestResult(ok=True, start=0.0, end=0.2, output_tokens=0)
    run.results.append(empty)
    summary = summarize(run)
    assert (summary["completed"], summary["failed"], summary["empty_responses"]) == (2, 0, 1)
    assert summary["ttft_ms"]["count"] == 1 and summary["e2e_ms"]["count"] == 2


def test_run_benchmark_takes_the_modules_options_and_their_defaults(tmp_path):
    # The one entry point of the action plugin (backend npufleet) and the CLI.
    with synthetic_server(ttft_ms=5, itl_ms=1) as port:
        # An empty rate and a None count as not given, as the CLI passes them.
        params = {"url": f"http://127.0.0.1:{port}", "model": "synthetic", "concurrency": [2], "rate": [],
                  "requests": 6, "input_tokens": 3, "output_tokens": 4, "warmup": None,
                  "dest": str(tmp_path / "entry")}  # fmt: skip
        outcome = run_benchmark(params)
    data = outcome["data"]
    assert data["config"]["endpoint"] == "chat" and data["config"]["stream"] is True
    assert data["warmup"]["requests"] == 2 and data["config"]["timeout"] == 600
    ((level, summary),) = [(run["level"], run["summary"]) for run in data["runs"]]
    assert (level, summary["completed"], summary["output_tokens"]) == (2, 6, 24)
    suffixes = {"json": "json", "markdown": "md", "png": "png"}
    assert outcome["files"] == {
        key: str(tmp_path / "entry" / f"bench.{end}") for key, end in suffixes.items()
    }
    assert json.loads(Path(outcome["files"]["json"]).read_text())["runs"][0]["level"] == 2


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"url": "http://h:1", "model": "m", "concurrency": [1]}, "missing required arguments: dest"),
        (
            {"url": "http://h:1", "model": "m", "dest": "d"},
            "give concurrencies (concurrency, --concurrency) or rates",
        ),
        (
            {"url": "http://h:1", "model": "m", "dest": "d", "concurrency": [1], "rate": [1.0]},
            "parameters are mutually exclusive: concurrency|rate",
        ),
        (
            {"url": "http://h:1", "model": "m", "dest": "d", "concurrency": ["many"]},
            "cannot be converted to an int",
        ),
        ({"url": "http://h:1", "model": "m", "dest": "d", "concurrency": [1], "colour": "red"}, "colour"),
        (
            {"url": "h:1", "model": "m", "dest": "d", "concurrency": [1]},
            "url must start with http:// or https://",
        ),
        (
            {"url": "http://h:1", "model": "m", "dest": "d", "concurrency": [0]},
            "every concurrency must be at least 1",
        ),
        (
            {"url": "http://h:1", "model": "m", "dest": "d", "concurrency": [1], "backend": "vllm"},
            "backend vllm runs on the node",
        ),
        # Accepted silently before (bench_requests: 0 "ran" a benchmark of nothing).
        ({"url": "http://h:1", "model": "m", "dest": "d", "concurrency": [1], "requests": 0},
         "requests must be at least 1, got 0"),
        ({"url": "http://h:1", "model": "m", "dest": "d", "concurrency": [1], "output_tokens": 0},
         "output_tokens must be at least 1, got 0"),
        ({"url": "http://h:1", "model": "m", "dest": "d", "concurrency": [1], "timeout": -5},
         "timeout must be a number of seconds above 0, got -5"),
        ({"url": "http://h:1", "model": "m", "dest": "d", "concurrency": [1], "warmup": -1},
         "warmup must be at least 0, got -1"),
    ],
)  # fmt: skip
def test_run_benchmark_refuses_bad_input_with_value_error(tmp_path, params, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        run_benchmark(params | {"dest": str(tmp_path / params["dest"])} if "dest" in params else params)
    assert not (tmp_path / "d").exists()


SECRET = "sk-test-0123456789abcdef"


def test_the_synthetic_server_requires_its_key_as_vllm_does_and_send_carries_it():
    async def scenario(session, url, _server):
        async with session.get(f"{url}/health") as health:
            open_health = health.status
        async with session.post(f"{url}/v1/chat/completions", json={"model": "m"}) as refused:
            refusal = refused.status, await refused.json()
        wrong = await send(session, url, "synthetic", Prompt("x", 3), headers={"Authorization": "Bearer no"})
        right = await send(session, url, "synthetic", Prompt("x", 3),
                           headers={"Authorization": f"Bearer {SECRET}"})  # fmt: skip
        return open_health, refusal, wrong, right

    open_health, refusal, wrong, right = run_with_server(
        Behaviour(ttft=0.0, itl=0.0, api_key=SECRET), scenario
    )
    assert open_health == 200
    assert refusal == (401, {"error": "Unauthorized"})
    assert not wrong.ok and wrong.error_kind == "http_401" and "Unauthorized" in wrong.error
    assert right.ok and right.output_tokens == 3
    assert SECRET not in repr(Behaviour(api_key=SECRET))


def test_run_benchmark_sends_the_key_and_never_writes_it(tmp_path):
    with synthetic_server(ttft_ms=2, itl_ms=1, api_key=SECRET) as port:
        params = {"url": f"http://127.0.0.1:{port}", "model": "synthetic", "concurrency": [2], "requests": 4,
                  "output_tokens": 3, "input_tokens": 2, "dest": str(tmp_path / "keyed")}  # fmt: skip
        keyed = run_benchmark(params | {"api_key": SECRET})
        keyless = run_benchmark(params | {"dest": str(tmp_path / "keyless"), "warmup": 0})
    assert keyed["data"]["runs"][0]["summary"]["completed"] == 4
    assert keyed["data"]["config"]["api_key_sent"] is True and "api_key" not in keyed["data"]["config"]
    for path in (tmp_path / "keyed").iterdir():
        assert SECRET.encode() not in path.read_bytes(), path
    summary = keyless["data"]["runs"][0]["summary"]
    assert (summary["completed"], summary["errors"]) == (0, {"http_401": 4})
    assert keyless["data"]["config"]["api_key_sent"] is False
