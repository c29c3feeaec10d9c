#!/usr/bin/python
# Copyright: npufleet contributors
# Apache License 2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: openai_gate
short_description: Check that an OpenAI-compatible server lists its model and answers a chat completion
description:
  - The serve role's health gates, after an OpenAI-compatible server (vLLM, LLaMA-Factory's API) answers
    C(/health). Runs on the node, and asks the server at the address it listens on (the node's own
    address, or C(127.0.0.1) for a server that listens on every interface).
  - First C(GET {url}/v1/models), and checks that O(model) is one of the ids listed (C(data[].id)).
  - Then C(POST {url}/v1/chat/completions) with one user message of O(prompt) and O(max_tokens), and
    checks that a choice with a message came back.
  - With O(image) or O(image_base64) the user message also carries that image, as the OpenAI multimodal
    request does (a content list of a C(text) part and an C(image_url) part with a C(data:) URL).
  - Each failure names the problem and its fix (no answer on the port, a missing or wrong API key, the
    model listed under another name, the server's own error message).
  - Read-only; it never changes anything.
version_added: "0.1.0"
author:
  - npufleet contributors
options:
  url:
    description:
      - Base URL of the server, without C(/v1), for example V(http://192.168.0.10:8000) or
        V(http://127.0.0.1:8000).
      - A trailing C(/) or C(/v1) is dropped.
    type: str
    required: true
  model:
    description: The model name clients use (vLLM's C(--served-model-name), else the model's path).
    type: str
    required: true
  api_key:
    description:
      - "Sent as C(Authorization: Bearer <key>) when not empty (vLLM's C(--api-key))."
      - Never returned or printed.
    type: str
    default: ""
  prompt:
    description: Text of the one user message.
    type: str
    default: "Say hello."
  max_tokens:
    description: C(max_tokens) of the completion.
    type: int
    default: 8
  image:
    description:
      - A PNG or JPEG file on the node, sent base64-encoded in the user message (a multimodal check).
      - Its type is read from the extension, else from its first bytes.
      - Exclusive with O(image_base64).
    type: path
  image_base64:
    description:
      - An image already base64-encoded, sent in the user message; exclusive with O(image).
      - A full C(data:) URL is sent as it is.
    type: str
  image_mime:
    description: Media type of O(image_base64).
    type: str
    default: image/png
  timeout:
    description: Seconds each request may take.
    type: float
    default: 120
  check_models:
    description: Check C(/v1/models) first; V(false) sends only the chat completion.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: In check mode nothing is sent; the task reports that it was skipped.
  diff_mode:
    support: none
    description: It changes nothing.
notes:
  - Connects without a proxy to this node's own addresses (C(localhost), C(127.0.0.0/8), C(::1), and any
    address of its interfaces, which it can bind), whatever E(http_proxy) says; other addresses follow
    the proxy variables.
"""

EXAMPLES = r"""
- name: The served model is listed and answers a chat completion
  npufleet.ascend.openai_gate:
    url: http://127.0.0.1:8000
    model: qwen2-7b
  register: gate

- name: Show the answer
  ansible.builtin.debug:
    msg: "{{ gate.content }} ({{ gate.completion_tokens }} tokens in {{ gate.elapsed }} s)"

- name: With the server's API key, a multimodal request with an image on the node
  npufleet.ascend.openai_gate:
    url: http://127.0.0.1:8000
    model: qwen2-vl-7b
    api_key: "{{ serve_api_key }}"
    prompt: What is in this image?
    image: /tmp/npufleet-gate.png
    max_tokens: 16
    timeout: 300
"""

RETURN = r"""
models:
  description: The ids C(/v1/models) listed (empty with O(check_models=false)).
  returned: success
  type: list
  elements: str
  sample: [qwen2-7b]
content:
  description: The text of the first choice's message (null if the server sent none).
  returned: success
  type: str
  sample: Hello! How can I
completion_tokens:
  description: C(usage.completion_tokens) of the completion, null if the server sent no usage.
  returned: success
  type: int
  sample: 8
elapsed:
  description: Seconds the chat completion request took.
  returned: success
  type: float
  sample: 0.412
status:
  description: HTTP status of each request sent, by C(models) and C(completion).
  returned: always
  type: dict
  sample: {models: 200, completion: 200}
error:
  description: The server's error message, when a request failed with one.
  returned: failure
  type: str
  sample: The model `qwen` does not exist.
"""

import base64
import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.npufleet.ascend.plugins.module_utils.own_address import direct_opener

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
EXTENSIONS = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


class GateError(Exception):
    """A failed gate: the message for the user and extra keys for the task's result."""

    def __init__(self, msg: str, **extra) -> None:
        super().__init__(msg)
        self.msg = msg
        self.extra = extra


def base_url(url: str) -> str:
    """The server's base URL without a trailing ``/`` or ``/v1``."""
    url = url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def image_mime(name: str, head: bytes) -> str | None:
    """image/png or image/jpeg by the file's extension, else by its first bytes; None if neither."""
    mime = EXTENSIONS.get(os.path.splitext(name)[1].lower())
    if mime:
        return mime
    if head.startswith(PNG_MAGIC):
        return "image/png"
    if head.startswith(JPEG_MAGIC):
        return "image/jpeg"
    return None


def data_url(b64: str, mime: str) -> str:
    """A ``data:`` URL of base64 text (one that already is a data URL is kept)."""
    b64 = "".join(b64.split())
    if b64.startswith("data:"):
        return b64
    return f"data:{mime};base64,{b64}"


def chat_body(model: str, prompt: str, max_tokens: int, image_url: str | None = None) -> dict:
    """The chat completion request: one user message, with an image part when image_url is given."""
    if image_url:
        content = [
            {"type": "text", "text": prompt},
            {"type": "image_url", "image_url": {"url": image_url}},
        ]
    else:
        content = prompt
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "stream": False,
    }


def _text(body) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", errors="replace")
    return body or ""


def error_message(body) -> str:
    """The server's error message: OpenAI's ``{"error": {"message": ...}}``, ``{"error": "..."}``,
    vLLM's ``{"message": ..., "object": "error"}``, FastAPI's ``{"detail": ...}``; else the first 300
    characters of the body."""
    text = _text(body)
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        for key in ("message", "detail"):
            if data.get(key):
                value = data[key]
                return value if isinstance(value, str) else json.dumps(value)
    return text.strip()[:300]


def listed_models(body) -> list[str] | None:
    """The ids of a /v1/models answer (``data[].id``), or None if it is not a model list."""
    try:
        data = json.loads(_text(body))
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        return None
    return [str(entry["id"]) for entry in data["data"] if isinstance(entry, dict) and "id" in entry]


def completion_of(body) -> tuple[dict, dict] | None:
    """(the first choice's message, usage) of a chat completion answer, or None without one."""
    try:
        data = json.loads(_text(body))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return None
    usage = data.get("usage")
    return message, usage if isinstance(usage, dict) else {}


class OpenAIGate:
    """The two gates against the server: the model list, then one chat completion."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.url = base_url(self.params["url"])
        self.api_key = self.params["api_key"] or ""
        self.status: dict = {}
        self.opener = direct_opener(self.url)

    def run(self) -> dict:
        params = self.params
        image_url = self._image_url()  # a bad image fails before anything is sent
        models: list[str] = []
        if params["check_models"]:
            models = self._models()
        body = chat_body(params["model"], params["prompt"], params["max_tokens"], image_url)
        started = time.monotonic()
        status, answer = self._request("/v1/chat/completions", "completion", body)
        elapsed = round(time.monotonic() - started, 3)
        if status != 200:
            raise self._http_error("the chat completion", status, answer)
        completion = completion_of(answer)
        if completion is None:
            raise GateError(
                f"the completion came back without a choice: {_text(answer).strip()[:300]}",
                elapsed=elapsed,
            )
        message, usage = completion
        tokens = usage.get("completion_tokens")
        return {
            "changed": False,
            "models": models,
            "content": message.get("content"),
            "completion_tokens": tokens if isinstance(tokens, int) else None,
            "elapsed": elapsed,
            "status": self.status,
        }

    def _image_url(self) -> str | None:
        params = self.params
        if params["image_base64"]:
            return data_url(params["image_base64"], params["image_mime"])
        path = params["image"]
        if not path:
            return None
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except OSError as error:
            raise GateError(
                f"the image {path} can't be read: {error.strerror or error}: set image to a PNG or JPEG"
                " file on the node"
            ) from error
        mime = image_mime(path, raw[:16])
        if mime is None:
            raise GateError(f"the image {path} is neither PNG nor JPEG: set image to a PNG or JPEG file")
        return data_url(base64.b64encode(raw).decode("ascii"), mime)

    def _models(self) -> list[str]:
        model = self.params["model"]
        status, answer = self._request("/v1/models", "models")
        if status != 200:
            raise self._http_error("the model list", status, answer)
        models = listed_models(answer)
        if models is None:
            raise GateError(f"/v1/models did not answer a model list: {_text(answer).strip()[:300]}")
        if model not in models:
            raise GateError(
                f"/v1/models lists [{', '.join(models)}], not {model}: set serve_served_model_name to the"
                " name clients should use",
                models=models,
            )
        return models

    def _request(self, path: str, name: str, body: dict | None = None) -> tuple[int, bytes]:
        """Send one request; the status and body of any HTTP answer (errors included)."""
        url = self.url + path
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
        try:
            with self.opener.open(request, timeout=self.params["timeout"]) as response:
                status, answer = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, answer = error.code, self._read(error)
        except urllib.error.URLError as error:
            raise GateError(self._no_answer(url, error.reason)) from error
        except (OSError, http.client.HTTPException) as error:
            raise GateError(self._no_answer(url, error)) from error
        self.status[name] = status
        return status, answer

    @staticmethod
    def _read(error: urllib.error.HTTPError) -> bytes:
        try:
            return error.read() or b""
        except (OSError, http.client.HTTPException):
            return b""

    def _no_answer(self, url: str, reason) -> str:
        if isinstance(reason, BaseException):
            reason = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
            if reason == "timed out" or reason.endswith("timed out"):
                reason = f"timed out after {self.params['timeout']:g} s"
        return f"no answer from {url}: {reason}: is the server up on this port?"

    def _http_error(self, what: str, status: int, answer: bytes) -> GateError:
        message = error_message(answer)
        if status in (401, 403):
            if self.api_key:
                text = (
                    f"{self.url} rejected the API key (HTTP {status}): serve_api_key differs from the"
                    " server's key"
                )
            else:
                text = (
                    f"{self.url} refused the request (HTTP {status}): the server requires an API key: set"
                    " serve_api_key to the key it was started with"
                )
        else:
            text = f"{what} failed (HTTP {status}): {message}"
        return GateError(text, error=message)


def _redact(value, secret: str):
    if not secret:
        return value
    if isinstance(value, str):
        return value.replace(secret, "********")
    if isinstance(value, dict):
        return {key: _redact(item, secret) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact(item, secret) for item in value]
    return value


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "model": {"type": "str", "required": True},
            "api_key": {"type": "str", "default": "", "no_log": True},
            "prompt": {"type": "str", "default": "Say hello."},
            "max_tokens": {"type": "int", "default": 8},
            "image": {"type": "path"},
            "image_base64": {"type": "str"},
            "image_mime": {"type": "str", "default": "image/png"},
            "timeout": {"type": "float", "default": 120},
            "check_models": {"type": "bool", "default": True},
        },
        mutually_exclusive=[["image", "image_base64"]],
        supports_check_mode=True,
    )
    url = base_url(module.params["url"])
    if module.check_mode:
        module.exit_json(changed=False, skipped=True, status={},
                         msg=f"check mode: nothing sent to {url}")  # fmt: skip
    gate = OpenAIGate(module)
    secret = module.params["api_key"] or ""
    try:
        result = gate.run()
    except GateError as error:
        extra = _redact(error.extra, secret)
        module.fail_json(msg=_redact(error.msg, secret), changed=False, status=gate.status, **extra)
    module.exit_json(**_redact(result, secret))


if __name__ == "__main__":
    main()
