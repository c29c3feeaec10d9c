"""openai_gate run in-process against a real HTTP server on 127.0.0.1 (the standard library's, in a thread)
that answers /v1/models and /v1/chat/completions with vLLM 0.32's recorded answers; and its pure helpers."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.npufleet.ascend.plugins.modules import openai_gate

# Recorded from vLLM 0.32 serving a tiny Qwen2 as "tiny".
MODELS = (
    '{"object":"list","data":[{"id":"tiny","object":"model","created":1796188267,"owned_by":"vllm",'
    '"root":"out/models/tiny-qwen2","parent":null,"max_model_len":512}]}'
)
COMPLETION = (
    '{"id":"chatcmpl-9c33da94ddefd910","object":"chat.completion","created":1796188267,"model":"tiny",'
    '"choices":[{"index":0,"message":{"role":"assistant","content":"eet image","refusal":null},'
    '"logprobs":null,"finish_reason":"length","stop_reason":null}],'
    '"usage":{"prompt_tokens":20,"total_tokens":28,"completion_tokens":8}}'
)
UNAUTHORIZED = '{"error":"Unauthorized"}'
VLLM_ERROR = (
    '{"object":"error","message":"This model\'s maximum context length is 512 tokens.",'
    '"type":"BadRequestError","param":null,"code":400}'
)
SECRET = "sk-npufleet-secret-4711"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(40))


class FakeServer:
    """What the server answers per path, what it received, and (optionally) the key it requires."""

    def __init__(self) -> None:
        self.routes = {"/v1/models": (200, MODELS), "/v1/chat/completions": (200, COMPLETION)}
        self.received: list[dict] = []
        self.api_key: str | None = None
        self.delay = 0.0
        self.url = ""


@pytest.fixture
def server():
    fake = FakeServer()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fake.received.append(
                {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
            )
            if fake.delay:
                time.sleep(fake.delay)
            if fake.api_key is not None and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                status, text = 401, UNAUTHORIZED
            else:
                status, text = fake.routes.get(self.path, (404, '{"detail":"Not Found"}'))
            data = text.encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout)

        do_GET = do_POST = _answer

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def run_module(capsys, **args) -> tuple[dict, str]:
    with patch_module_args(args), pytest.raises(SystemExit):
        openai_gate.main()
    out = capsys.readouterr().out
    return json.loads(out), out


def chat_request(server) -> dict:
    posts = [r for r in server.received if r["path"] == "/v1/chat/completions"]
    assert len(posts) == 1
    return json.loads(posts[0]["body"])


# The module against the server.


def test_lists_the_model_and_returns_the_completion(server, capsys):
    result, _ = run_module(capsys, url=server.url + "/", model="tiny", prompt="Hi", max_tokens=8)
    assert result.get("failed") is not True, result
    assert result["changed"] is False
    assert result["models"] == ["tiny"]
    assert result["content"] == "eet image"
    assert result["completion_tokens"] == 8
    assert isinstance(result["elapsed"], float) and result["elapsed"] >= 0
    assert result["status"] == {"models": 200, "completion": 200}
    assert [(r["method"], r["path"]) for r in server.received] == [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
    ]
    assert "Authorization" not in server.received[0]["headers"]
    assert chat_request(server) == {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 8,
        "stream": False,
    }


def test_goes_straight_to_a_server_on_this_machine_whatever_http_proxy_says(server, capsys, monkeypatch):
    # A proxy that answers nothing (a closed port): the gate must not go through it.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, proxy)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    result, _ = run_module(capsys, url=server.url, model="tiny")
    assert result.get("failed") is not True, result
    assert [r["path"] for r in server.received] == ["/v1/models", "/v1/chat/completions"]


def test_check_models_false_sends_only_the_completion(server, capsys):
    result, _ = run_module(capsys, url=server.url, model="tiny", check_models=False)
    assert result["models"] == [] and result["content"] == "eet image"
    assert [r["path"] for r in server.received] == ["/v1/chat/completions"]
    assert chat_request(server)["messages"][0]["content"] == "Say hello."


def test_a_model_not_listed_names_the_listed_ones_and_the_fix(server, capsys):
    result, _ = run_module(capsys, url=server.url, model="/models/qwen2-7b")
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"] == (
        "/v1/models lists [tiny], not /models/qwen2-7b: set serve_served_model_name to the name clients"
        " should use"
    )
    assert [r["path"] for r in server.received] == ["/v1/models"]


def test_401_without_a_key_asks_for_serve_api_key(server, capsys):
    server.api_key = SECRET
    result, _ = run_module(capsys, url=server.url, model="tiny")
    assert result["failed"] is True
    assert result["msg"] == (
        f"{server.url} refused the request (HTTP 401): the server requires an API key: set serve_api_key to"
        " the key it was started with"
    )
    assert result["status"] == {"models": 401}
    assert result["error"] == "Unauthorized"


def test_401_with_a_key_says_the_key_differs_and_never_shows_it(server, capsys):
    server.api_key = "the-servers-key"
    result, out = run_module(capsys, url=server.url, model="tiny", api_key=SECRET)
    assert result["failed"] is True
    assert result["msg"] == (
        f"{server.url} rejected the API key (HTTP 401): serve_api_key differs from the server's key"
    )
    assert server.received[0]["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert SECRET not in out


def test_the_right_key_is_sent_on_both_requests_and_never_returned(server, capsys):
    server.api_key = SECRET
    result, out = run_module(capsys, url=server.url, model="tiny", api_key=SECRET)
    assert result.get("failed") is not True, result
    assert result["content"] == "eet image"
    assert [r["headers"]["Authorization"] for r in server.received] == [f"Bearer {SECRET}"] * 2
    assert SECRET not in out


def test_an_error_echoing_the_key_is_redacted(server, capsys):
    server.routes["/v1/chat/completions"] = (400, json.dumps({"error": {"message": f"bad key {SECRET}"}}))
    result, out = run_module(capsys, url=server.url, model="tiny", api_key=SECRET)
    assert result["failed"] is True
    assert result["msg"].startswith("the chat completion failed (HTTP 400): bad key ")
    assert SECRET not in out


def test_a_closed_port_is_no_answer(capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result, _ = run_module(capsys, url=url, model="tiny", timeout=5)
    assert result["failed"] is True
    assert result["msg"].startswith(f"no answer from {url}/v1/models: ")
    assert "refused" in result["msg"].lower()
    assert result["msg"].endswith(": is the server up on this port?")


def test_a_slow_server_times_out(server, capsys):
    server.delay = 1.0
    result, _ = run_module(capsys, url=server.url, model="tiny", timeout=0.2)
    assert result["failed"] is True
    assert result["msg"] == (
        f"no answer from {server.url}/v1/models: timed out after 0.2 s: is the server up on this port?"
    )


def test_the_image_file_travels_base64_in_the_message(server, tmp_path, capsys):
    image = tmp_path / "gate.bin"  # no extension: the type is read from the magic bytes
    image.write_bytes(PNG)
    result, _ = run_module(capsys, url=server.url, model="tiny", prompt="What is this?", image=str(image))
    assert result.get("failed") is not True, result
    content = chat_request(server)["messages"][0]["content"]
    assert content == [
        {"type": "text", "text": "What is this?"},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode("ascii")},
        },
    ]


def test_image_base64_travels_with_its_mime(server, capsys):
    b64 = base64.b64encode(b"\xff\xd8\xff\xe0jpeg").decode("ascii")
    run_module(capsys, url=server.url, model="tiny", image_base64=b64, image_mime="image/jpeg")
    part = chat_request(server)["messages"][0]["content"][1]
    assert part == {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{b64}"}}


def test_image_and_image_base64_are_exclusive(server, tmp_path, capsys):
    image = str(tmp_path / "a.png")
    result, _ = run_module(capsys, url=server.url, model="tiny", image=image, image_base64="x")
    assert result["failed"] is True and "mutually exclusive" in result["msg"]
    assert server.received == []


def test_an_image_that_is_not_png_or_jpeg_fails_before_sending(server, tmp_path, capsys):
    image = tmp_path / "gate.gif"
    image.write_bytes(b"GIF89a....")
    result, _ = run_module(capsys, url=server.url, model="tiny", image=str(image))
    assert result["failed"] is True
    assert result["msg"] == f"the image {image} is neither PNG nor JPEG: set image to a PNG or JPEG file"
    assert server.received == []


def test_a_missing_image_is_named(server, tmp_path, capsys):
    image = tmp_path / "missing.png"
    result, _ = run_module(capsys, url=server.url, model="tiny", image=str(image))
    assert result["failed"] is True
    assert result["msg"].startswith(f"the image {image} can't be read: ")
    assert server.received == []


def test_a_vllm_error_on_the_completion_gives_status_and_message(server, capsys):
    server.routes["/v1/chat/completions"] = (400, VLLM_ERROR)
    result, _ = run_module(capsys, url=server.url, model="tiny")
    assert result["failed"] is True
    assert result["msg"] == (
        "the chat completion failed (HTTP 400): This model's maximum context length is 512 tokens."
    )
    assert result["status"] == {"models": 200, "completion": 400}


def test_an_openai_error_on_the_completion_gives_its_message(server, capsys):
    server.routes["/v1/chat/completions"] = (
        404,
        '{"error":{"message":"The model `tiny` does not exist.","type":"NotFoundError","code":404}}',
    )
    result, _ = run_module(capsys, url=server.url, model="tiny")
    assert result["msg"] == "the chat completion failed (HTTP 404): The model `tiny` does not exist."


def test_a_200_without_a_choice_shows_the_body(server, capsys):
    server.routes["/v1/chat/completions"] = (200, '{"id":"x","choices":[]}')
    result, _ = run_module(capsys, url=server.url, model="tiny")
    assert result["failed"] is True
    assert result["msg"] == 'the completion came back without a choice: {"id":"x","choices":[]}'


def test_check_mode_sends_nothing(server, capsys):
    result, _ = run_module(capsys, url=server.url, model="tiny", _ansible_check_mode=True)
    assert result["changed"] is False and result["skipped"] is True
    assert "nothing sent" in result["msg"]
    time.sleep(0.1)
    assert server.received == []


# The pure helpers.


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000"),
        (" http://node:8000/api ", "http://node:8000/api"),
    ],
)
def test_base_url(url, expected):
    assert openai_gate.base_url(url) == expected


def test_chat_body_text_and_image():
    assert openai_gate.chat_body("tiny", "Hi", 4) == {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 4,
        "stream": False,
    }
    body = openai_gate.chat_body("tiny", "Hi", 4, "data:image/png;base64,AAAA")
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Hi"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]


def test_image_mime_by_extension_then_magic():
    assert openai_gate.image_mime("a.PNG", b"") == "image/png"
    assert openai_gate.image_mime("a.jpeg", b"") == "image/jpeg"
    assert openai_gate.image_mime("a.jpg", PNG) == "image/jpeg"
    assert openai_gate.image_mime("a", PNG) == "image/png"
    assert openai_gate.image_mime("a.img", b"\xff\xd8\xff\xdb") == "image/jpeg"
    assert openai_gate.image_mime("a.gif", b"GIF89a") is None


def test_data_url():
    assert openai_gate.data_url("AA\nAA", "image/png") == "data:image/png;base64,AAAA"
    assert openai_gate.data_url("data:image/jpeg;base64,AAAA", "image/png") == "data:image/jpeg;base64,AAAA"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (UNAUTHORIZED, "Unauthorized"),
        (VLLM_ERROR, "This model's maximum context length is 512 tokens."),
        ('{"error":{"message":"no such model","type":"NotFoundError"}}', "no such model"),
        (b'{"detail":"Not Found"}', "Not Found"),
        ("<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        ("x" * 500, "x" * 300),
        (b"", ""),
    ],
)
def test_error_message(body, message):
    assert openai_gate.error_message(body) == message


def test_listed_models():
    assert openai_gate.listed_models(MODELS) == ["tiny"]
    assert openai_gate.listed_models('{"data":[{"id":"a"},{"id":"b"}]}') == ["a", "b"]
    assert openai_gate.listed_models("not json") is None
    assert openai_gate.listed_models('{"object":"list"}') is None


def test_completion_of():
    message, usage = openai_gate.completion_of(COMPLETION)
    assert message["content"] == "eet image"
    assert usage["completion_tokens"] == 8
    assert openai_gate.completion_of('{"choices":[{"index":0}]}') is None
    assert openai_gate.completion_of('{"choices":[]}') is None
    assert openai_gate.completion_of("<html>") is None
    assert openai_gate.completion_of('{"choices":[{"message":{"content":"x"}}]}') == ({"content": "x"}, {})
