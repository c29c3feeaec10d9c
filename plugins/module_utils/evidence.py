# Copyright: npufleet contributors
# Apache License 2.0
"""Pure logic of evidence_collect: bounding a file to its tail, and redacting secrets from text."""

from __future__ import annotations

import json
import re

# Names of secrets: passwords, secrets, API keys and tokens (hf_token, --hf-token, accessToken), but
# not token counts and lengths (max_tokens, --max-tokens, input_token_len). Wider than the names the
# controller's API refuses in extra vars: here a missed name leaks, there a wrong one only refuses.
SECRET_NAME = re.compile(
    r"password|passwd|secret|api[_-]?key|(?:^|[_.-])token(?:$|[_.-](?!len|count|limit))|[a-z]Token$",
    re.IGNORECASE,
)
REDACTED = "<redacted>"

# A secret written as a setting: NAME=value, "name": "value", name: value, and a command-line flag
# with its value after a space (--password x); the name says it is one.
_SETTING = re.compile(
    r"(?P<name>[A-Za-z0-9_.-]*(?:password|passwd|secret|api[_-]?key|token)[A-Za-z0-9_.-]*)"
    r"(?P<sep>\\?[\"']?\s*[:=]\s*\\?[\"']?|(?<=[A-Za-z0-9])\s+(?=[^\s-]))(?P<value>[^\s\"'\\,;}]+)",
    re.IGNORECASE,
)
# Credentials in a URL: scheme://user:password@host.
_URL_CREDENTIALS = re.compile(r"(?P<name>://[^/\s:@]+:)(?P<value>[^@\s/]+)(?=@)")
_BEARER = re.compile(
    r"(?P<name>Authorization\\?\"?\s*[:=]\s*\\?\"?(?:Bearer|Basic|token)\s+)(?P<value>[^\s\"'\\]+)",
    re.IGNORECASE,
)
# Tokens that say what they are by their form: HuggingFace's hf_..., and Docker's auth strings in
# a config.json ("auth": "base64").
_TOKEN_FORMS = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
_DOCKER_AUTH = re.compile(r"(?P<name>\"auth\"\s*:\s*\")(?P<value>[A-Za-z0-9+/=]{8,})")
# Counts and lengths named like tokens are no secrets (max_tokens=128, input_token_len: 64).
_NOT_SECRET_VALUE = re.compile(r"^[0-9]+$")


def tail_bytes(data: bytes, limit: int) -> tuple[bytes, bool]:
    """The last ``limit`` bytes of ``data`` from a line start, and whether anything was cut."""
    if len(data) <= limit:
        return data, False
    cut = data[-limit:]
    newline = cut.find(b"\n")
    if 0 <= newline < len(cut) - 1:
        cut = cut[newline + 1 :]
    return cut, True


def redact(text: str, values: list[str] | tuple[str, ...] = ()) -> tuple[str, int]:
    """``text`` with secrets replaced by <redacted>: the values given (the vault's, the registry
    password), settings whose name says they are secret, bearer headers and known token forms.
    Returns the text and how many were replaced."""
    count = [0]
    for value in sorted({value for value in values if value and len(value) >= 4}, key=len, reverse=True):
        count[0] += text.count(value)
        text = text.replace(value, REDACTED)

    def setting(match: re.Match) -> str:
        value, name = match.group("value"), match.group("name")
        flag_pair = not any(mark in match.group("sep") for mark in ":=")
        if value == REDACTED or _NOT_SECRET_VALUE.match(value) or not SECRET_NAME.search(name.lstrip("-")):
            return match.group(0)
        if name.lower().endswith(("_file", "-file", "_path", "-path")):
            # Where a secret is kept, not the secret (HF_TOKEN_FILE, --api-key-file).
            return match.group(0)
        if flag_pair and not name.startswith("-"):
            # "token given" is prose; only a flag (--password x) takes the next word as its value.
            return match.group(0)
        count[0] += 1
        return match.group("name") + match.group("sep") + REDACTED

    def named(match: re.Match) -> str:
        count[0] += 1
        return match.group("name") + REDACTED

    def whole(match: re.Match) -> str:
        count[0] += 1
        return REDACTED

    text = _SETTING.sub(setting, text)
    text = _BEARER.sub(named, text)
    text = _URL_CREDENTIALS.sub(named, text)
    text = _DOCKER_AUTH.sub(named, text)
    text = _TOKEN_FORMS.sub(whole, text)
    return text, count[0]


def redact_inspect(text: str, values: list[str] | tuple[str, ...] = ()) -> tuple[str, int]:
    """``docker inspect`` output with the secret-named environment values redacted (HF_TOKEN=...),
    then the text redacted as any other."""
    count = 0
    try:
        containers = json.loads(text)
    except ValueError:
        return redact(text, values)
    for container in containers if isinstance(containers, list) else []:
        config = container.get("Config") or {}
        env = config.get("Env") or []
        for index, item in enumerate(env):
            name, sep, value = item.partition("=")
            if sep and value and SECRET_NAME.search(name):
                env[index] = name + "=" + REDACTED
                count += 1
    text, more = redact(json.dumps(containers, indent=2), values)
    return text, count + more
