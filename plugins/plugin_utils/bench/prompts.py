"""What a benchmark sends: synthetic prompts of a given length, a JSONL dataset, or multimodal
requests with a base64 image in the manual's payload schema."""

from __future__ import annotations

import base64
import json
import mimetypes
import random
from pathlib import Path

from .client import Prompt

# Common short words: most BPE tokenizers give one token per word, so N words are about N tokens
# (the server's own count, from its usage field, is what the report uses when it sends one).
_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "his",
    "her",
    "they",
    "this",
    "be",
    "are",
    "have",
    "it",
    "an",
    "not",
    "or",
    "which",
    "one",
    "had",
    "but",
    "were",
    "all",
    "their",
    "there",
    "been",
    "has",
    "when",
    "who",
    "will",
    "more",
    "no",
    "if",
    "out",
    "so",
    "said",
    "what",
    "up",
    "its",
    "about",
    "into",
    "than",
    "them",
    "can",
    "only",
    "other",
    "new",
    "some",
    "time",
    "could",
    "these",
    "two",
    "may",
    "first",
    "then",
]


def synthetic(
    count: int, input_tokens: int, output_tokens: int, *, seed: int = 0, ignore_eos: bool = True
) -> list[Prompt]:
    """``count`` prompts of about ``input_tokens`` words, each asking for ``output_tokens`` tokens
    (``ignore_eos`` asks vLLM to produce exactly that many)."""
    if count < 1 or input_tokens < 1 or output_tokens < 1:
        raise ValueError("requests, input tokens and output tokens must each be at least 1")
    generator = random.Random(seed)
    extra = {"ignore_eos": True} if ignore_eos else {}
    return [
        Prompt(
            " ".join(generator.choice(_WORDS) for _ in range(input_tokens)),
            output_tokens,
            None,
            None,
            dict(extra),
        )
        for _ in range(count)
    ]


def from_jsonl(path: Path, count: int | None = None, default_max_tokens: int = 128) -> list[Prompt]:
    """Prompts from a JSONL file: each line has ``prompt`` (text) or ``messages`` (chat), and
    optionally ``max_tokens`` and ``ignore_eos`` (true: vLLM produces exactly ``max_tokens``, as for
    synthetic prompts; absent: the model may stop early); lines are reused in order when ``count`` is
    larger than the file."""
    prompts = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not JSON ({error.msg})") from error
        if not isinstance(item, dict) or not ("prompt" in item or "messages" in item):
            raise ValueError(f"{path}:{number}: each line needs 'prompt' (text) or 'messages' (chat)")
        ignore_eos = item.get("ignore_eos", False)
        if not isinstance(ignore_eos, bool):
            raise ValueError(f"{path}:{number}: 'ignore_eos' must be true or false")
        prompts.append(Prompt(str(item.get("prompt", "")), int(item.get("max_tokens", default_max_tokens)),
                              item.get("prompt_tokens"), item.get("messages"),
                              {"ignore_eos": True} if ignore_eos else {}))  # fmt: skip
    if not prompts:
        raise ValueError(f"{path} holds no prompt")
    if count:
        prompts = [prompts[index % len(prompts)] for index in range(count)]
    return prompts


def multimodal(
    count: int, text: str, image: Path, output_tokens: int, *, stop_token_ids: list[int] | None = None
) -> list[Prompt]:
    """Chat requests with one image as a base64 data URL, as the manual's online_serving.py sends
    them (``stop_token_ids`` too: InternVL needs [0, 92543, 92542])."""
    data = base64.b64encode(Path(image).read_bytes()).decode()
    kind = mimetypes.guess_type(str(image))[0] or "image/jpeg"
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": f"data:{kind};base64,{data}"}},
            ],
        }
    ]
    extra = {"stop_token_ids": stop_token_ids} if stop_token_ids else {}
    return [Prompt(text, output_tokens, None, messages, dict(extra)) for _ in range(count)]
