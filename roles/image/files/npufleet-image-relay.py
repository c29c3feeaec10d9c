#!/usr/bin/python3
"""Relay one image from its registry to the nodes of a cluster, fetching each blob once.

Part of npufleet's image fan-out (image_fanout_method relay): runs on the seed node as a transient
systemd unit for the length of one transfer. It speaks the registry API's read side for one
repository. Each node's engine pulls through it (the seed's too), from 127.0.0.1 on its own node,
where node_image forwards the connection here. Each manifest and blob is fetched from the registry
once. It is passed on to every node that asks as it arrives, so the nodes pull at the same time as
the seed, not after it. The compressed blobs are kept in this server's private folder until it stops.

A connection must begin with the line ``NPUFLEET-RELAY <token>``: the token comes from the secrets
file, as do the registry login's user and password. The file is read and removed at start, so
nothing of the login stays on disk. A blob whose bytes do not match its digest is cut off, so the
engine that asked for it fails the pull. Standard library only; runs on Python 3.8 and newer.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.server
import ipaddress
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request

CHUNK = 1 << 20
PREAMBLE = b"NPUFLEET-RELAY "
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
REFERENCE = re.compile(r"^(sha256:[0-9a-f]{64}|[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$")
# Headers of a manifest response passed on to the engine.
MANIFEST_HEADERS = ("Content-Type", "Docker-Content-Digest")


def docker_allows_http(registry: str) -> bool:
    """Whether the node's Docker engine treats the registry as insecure (then HTTP is allowed, as
    Docker allows it): listed by name, or its address in one of the insecure ranges."""
    done = subprocess.run(
        ["docker", "info", "--format", "{{json .RegistryConfig}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return False
    config = json.loads(done.stdout or "{}") or {}
    index = (config.get("IndexConfigs") or {}).get(registry)
    if index is not None:
        return not index.get("Secure", True)
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    try:
        address = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError):
        return False
    return any(address in ipaddress.ip_network(cidr) for cidr in config.get("InsecureRegistryCIDRs") or [])


def split_name(name: str) -> tuple:
    """Registry host and repository path, as Docker reads an image name (node_image's rule too)."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    # Docker Hub, whose API answers at registry-1.docker.io; short names are under library/.
    return "registry-1.docker.io", name if "/" in name else f"library/{name}"


def parse_challenge(header: str) -> tuple:
    """``Bearer realm="…",service="…",scope="…"`` -> ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


class Upstream:
    """The registry, logged in to as it asks (HTTP Basic, or a bearer token from its realm)."""

    def __init__(self, registry: str, repository: str, username: str, password: str, allow_http: bool):
        self.registry = registry
        self.repository = repository
        self.basic = (
            "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode() if username else ""
        )
        self.allow_http = allow_http
        self.authorization = ""
        self.base = ""
        self.lock = threading.Lock()

    def _context(self):
        # An insecure registry may have a certificate Docker does not check either.
        return ssl._create_unverified_context() if self.allow_http else ssl.create_default_context()

    def _base(self) -> str:
        with self.lock:
            if not self.base:
                self.base = f"https://{self.registry}"
                try:
                    urllib.request.urlopen(f"{self.base}/v2/", timeout=30, context=self._context()).close()
                except urllib.error.HTTPError:
                    pass  # it answers HTTPS (401 before login is normal)
                except (urllib.error.URLError, OSError):
                    if not self.allow_http:
                        raise
                    self.base = f"http://{self.registry}"
            return self.base

    def _login(self, challenge: str) -> None:
        scheme, fields = parse_challenge(challenge)
        if scheme == "basic":
            if not self.basic:
                raise PermissionError("the registry asks for a login and none was given")
            self.authorization = self.basic
            return
        if scheme != "bearer" or "realm" not in fields:
            raise PermissionError(f"the registry asks for an unknown login: {scheme or 'none'}")
        query = urllib.parse.urlencode({key: fields[key] for key in ("service", "scope") if key in fields})
        request = urllib.request.Request(fields["realm"] + ("?" + query if query else ""))
        if self.basic:
            request.add_unredirected_header("Authorization", self.basic)
        with urllib.request.urlopen(request, timeout=60, context=self._context()) as response:
            answer = json.loads(response.read().decode())
        self.authorization = "Bearer " + (answer.get("token") or answer.get("access_token") or "")

    def open(self, path: str, headers: dict):
        """The registry's response to GET /v2/<repository>/<path>."""
        url = f"{self._base()}/v2/{self.repository}/{path}"
        for attempt in (1, 2):
            request = urllib.request.Request(url, headers=headers)
            if self.authorization:
                # Not carried over a redirect: blob stores sign their own URLs.
                request.add_unredirected_header("Authorization", self.authorization)
            try:
                return urllib.request.urlopen(request, timeout=60, context=self._context())
            except urllib.error.HTTPError as error:
                if error.code != 401 or attempt == 2:
                    raise
                challenge = error.headers.get("WWW-Authenticate", "")
                error.close()
                self._login(challenge)
        raise AssertionError("unreachable")


class Blob:
    """One blob, fetched once into the private folder and read by every engine as it arrives."""

    def __init__(self, digest: str, folder: str) -> None:
        self.digest = digest
        self.path = os.path.join(folder, digest.replace(":", "-"))
        self.changed = threading.Condition()
        self.started = False
        self.size = None
        self.written = 0
        self.done = False
        self.error = ""

    def fetch(self, upstream: Upstream) -> None:
        hasher = hashlib.sha256()
        try:
            with upstream.open(f"blobs/{self.digest}", {}) as response, open(self.path, "wb") as out:
                length = response.headers.get("Content-Length")
                with self.changed:
                    self.size = int(length) if length else None
                    self.started = True
                    self.changed.notify_all()
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    out.flush()
                    hasher.update(chunk)
                    with self.changed:
                        self.written += len(chunk)
                        self.changed.notify_all()
            if f"sha256:{hasher.hexdigest()}" != self.digest:
                raise ValueError(f"the registry sent bytes that do not match {self.digest}")
            with self.changed:
                self.size = self.written
                self.done = True
                self.changed.notify_all()
        except (OSError, ValueError, PermissionError, urllib.error.URLError) as error:
            with self.changed:
                self.error = str(error) or type(error).__name__
                self.changed.notify_all()

    def wait_started(self) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.started or self.error or self.done)
            if self.size is None and not self.error:
                # No length from the registry: the engine gets it once the whole blob is here.
                self.changed.wait_for(lambda: self.done or self.error)

    def ranges(self):
        """(offset, length) of the blob's bytes as they arrive, all but the last byte until the whole
        blob matches its digest: a blob that does not is never passed on whole. Raises when the
        fetch fails."""
        sent = 0

        def ready() -> bool:
            return self.done or bool(self.error) or self.written - 1 > sent

        while True:
            with self.changed:
                self.changed.wait_for(ready)
                if self.error:
                    raise ConnectionAbortedError(self.error)
                finished = self.done
                available = self.written if finished else self.written - 1
            if available > sent:
                yield sent, available - sent
                sent = available
            if finished:
                return


class Relay:
    def __init__(self, upstream: Upstream, folder: str) -> None:
        self.upstream = upstream
        self.folder = folder
        self.lock = threading.Lock()
        self.blobs: dict = {}
        self.manifests: dict = {}

    def blob(self, digest: str) -> Blob:
        with self.lock:
            found = self.blobs.get(digest)
            if found is None or found.error:
                found = self.blobs[digest] = Blob(digest, self.folder)
                threading.Thread(target=found.fetch, args=(self.upstream,), daemon=True).start()
            return found

    def manifest(self, reference: str, accept: str) -> tuple:
        key = (reference, accept)
        with self.lock:
            if key not in self.manifests:
                with self.upstream.open(
                    f"manifests/{reference}", {"Accept": accept} if accept else {}
                ) as found:
                    headers = {
                        name: found.headers[name] for name in MANIFEST_HEADERS if found.headers.get(name)
                    }
                    self.manifests[key] = (headers, found.read())
            return self.manifests[key]


def make_handler(relay: Relay, repository: str):
    route = re.compile(rf"^/v2/{re.escape(repository)}/(manifests|blobs)/([^/?]+)$")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def send_json_error(self, status: int, code: str, message: str) -> None:
            body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/v2/":
                self.send_response(200)
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            found = route.match(self.path)
            if not found or not REFERENCE.match(found.group(2)):
                self.send_json_error(404, "NAME_UNKNOWN", f"this relay serves {repository} only")
                return
            kind, reference = found.groups()
            try:
                if kind == "manifests":
                    self.send_manifest(reference)
                elif DIGEST.match(reference):
                    self.send_blob(reference)
                else:
                    self.send_json_error(404, "BLOB_UNKNOWN", "blobs are asked for by sha256 digest")
            except urllib.error.HTTPError as error:
                self.send_json_error(
                    error.code, "UPSTREAM", f"the registry answered {error.code} {error.reason}"
                )
            except (OSError, ValueError, PermissionError) as error:
                self.log_error("%s %s: %s", kind, reference, error)
                self.close_connection = True

        do_HEAD = do_GET

        def send_manifest(self, reference: str) -> None:
            # Engines send one Accept line per media type they take.
            headers, body = relay.manifest(reference, ", ".join(self.headers.get_all("Accept") or []))
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def send_blob(self, digest: str) -> None:
            blob = relay.blob(digest)
            blob.wait_started()
            if blob.error:
                self.send_json_error(502, "UPSTREAM", blob.error)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(blob.size))
            self.send_header("Docker-Content-Digest", digest)
            self.end_headers()
            if self.command == "HEAD":
                return
            try:
                with open(blob.path, "rb") as source:
                    for offset, length in blob.ranges():
                        # The kernel copies from the file to the socket (sendfile), not this process.
                        self.connection.sendfile(source, offset, length)
            except ConnectionAbortedError as error:
                # Cut off: the engine sees a short blob and fails, rather than keep bad bytes.
                self.log_error("blob %s: %s", digest, error)
                self.close_connection = True

    return Handler


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    token = b""

    def finish_request(self, request, client_address) -> None:
        # Only connections that open with the transfer's token reach the HTTP handler.
        request.settimeout(30)
        line = b""
        while not line.endswith(b"\n") and len(line) < 128:
            byte = request.recv(1)
            if not byte:
                return
            line += byte
        if not hmac.compare_digest(line.strip(), PREAMBLE + self.token):
            return
        request.settimeout(None)
        super().finish_request(request, client_address)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", required=True, help="address to listen on")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--image", required=True, help="the image's name: registry host and repository")
    parser.add_argument("--secrets", required=True, help="JSON file of token, username, password (removed)")
    parser.add_argument("--folder", required=True, help="private folder for the blobs")
    parser.add_argument("--plain-http", action="store_true", help="the registry may answer over HTTP")
    args = parser.parse_args()

    with open(args.secrets, encoding="utf-8") as handle:
        secrets = json.load(handle)
    os.unlink(args.secrets)
    registry, repository = split_name(args.image)
    upstream = Upstream(
        registry,
        repository,
        secrets.get("username", ""),
        secrets.get("password", ""),
        args.plain_http or docker_allows_http(registry),
    )
    server = Server((args.bind, args.port), make_handler(Relay(upstream, args.folder), repository))
    server.token = secrets["token"].encode()
    server.serve_forever()


if __name__ == "__main__":
    main()
