# Copyright: npufleet contributors
# Apache License 2.0
"""A pull through the Docker engine's API on its unix socket, with the registry login in the
request's X-Registry-Auth header.

``docker login`` writes the login into a client config file, which stays on the node if the run is
killed while the pull goes on. The header lives only in this process and the engine's memory, so
nothing of the login is ever written on the node. Standard library only (the node's Python, 3.8+)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
from urllib.parse import urlencode

DEFAULT_SOCKET = "/var/run/docker.sock"


class EngineError(Exception):
    """The engine refused the request or reported an error while pulling; the text is the engine's."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def engine_socket(environ=None) -> str:
    """The engine's socket: DOCKER_HOST when it names a unix socket, else Docker's default."""
    host = (environ if environ is not None else os.environ).get("DOCKER_HOST", "")
    return host[len("unix://") :] if host.startswith("unix://") else DEFAULT_SOCKET


def split_reference(reference: str) -> tuple[str, str]:
    """``(repository, tag or digest)`` as the API's fromImage and tag: ``host:5000/a/b:1`` gives
    ``("host:5000/a/b", "1")``, ``a/b@sha256:…`` gives ``("a/b", "sha256:…")``, no tag gives latest."""
    name, at, digest = reference.partition("@")
    if at:
        return name, digest
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repository, _, tag = name.rpartition(":")
        return repository, tag
    return name, "latest"


def registry_auth_header(username: str, password: str, registry: str) -> str:
    login = {"username": username, "password": password, "serveraddress": registry}
    return base64.urlsafe_b64encode(json.dumps(login).encode()).decode()


def pull(reference: str, auth: str | None, socket_path: str = DEFAULT_SOCKET, timeout: float | None = None):
    """Pull ``reference`` and return the engine's last status line; EngineError with the engine's
    message when it fails. ``auth``: an X-Registry-Auth value, or None for an anonymous pull.
    ``timeout``: seconds the engine may stay silent (no progress line) before the pull is abandoned."""
    repository, tag = split_reference(reference)
    connection = _UnixConnection(socket_path, timeout)
    headers = {"X-Registry-Auth": auth} if auth else {}
    try:
        connection.request(
            "POST", "/images/create?" + urlencode({"fromImage": repository, "tag": tag}), headers=headers
        )
        response = connection.getresponse()
        if response.status != 200:
            body = response.read().decode(errors="replace")
            try:
                message = json.loads(body).get("message", body)
            except ValueError:
                message = body
            raise EngineError(f"Error response from daemon: {message.strip()}")
        status = ""
        # One JSON object per line; an error arrives as a line of its own with a 200 status.
        for line in response:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("error"):
                raise EngineError(str(event["error"]).strip())
            status = event.get("status", status)
        return status
    except socket.timeout as error:
        raise EngineError(
            f"the engine sent nothing for {timeout} s while pulling {reference}: i/o timeout"
        ) from error
    except OSError as error:
        raise EngineError(f"cannot reach the Docker engine at {socket_path}: {error}") from error
    finally:
        connection.close()
