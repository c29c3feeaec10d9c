#!/usr/bin/python3
"""Serve one container image to the other nodes of a cluster, streamed from the engine's export.

Part of npufleet's image fan-out: runs on the seed node as a transient systemd unit for the length
of one transfer. It answers GET on exactly one (random) path and 404 on anything else. The peers
that ask together share one run of the export command (``docker save REF`` or
``ctr images export - REF``), whose output is copied to all of them as it comes, so the image is
exported once and never written to the seed's disk. A peer that asks after that export has begun
gets an export of its own. A failed export leaves the peers with a truncated archive, which their
engines refuse. Standard library only.
"""

from __future__ import annotations

import argparse
import http.server
import queue
import subprocess
import threading

CHUNK = 4 * 2**20
# A peer that takes no data for this long is dropped, so it cannot stall the others.
STALL_S = 300


class Broadcast:
    """One export, copied to every peer that joined before it started."""

    def __init__(self, command: list[str], expected: int, gather_s: float) -> None:
        self.command = command
        self.expected = expected
        self.gather_s = gather_s
        self.ready = threading.Condition()
        self.peers: list[queue.Queue] = []
        self.started = False

    def join(self) -> queue.Queue | None:
        """A queue of chunks for this peer, or None when the shared export has already begun."""
        peer: queue.Queue = queue.Queue(maxsize=16)
        with self.ready:
            if self.started:
                return None
            self.peers.append(peer)
            if len(self.peers) >= self.expected:
                self._start()
            else:
                self.ready.wait_for(lambda: self.started, timeout=self.gather_s)
                if not self.started:
                    self._start()
        return peer

    def _start(self) -> None:
        self.started = True
        self.ready.notify_all()
        threading.Thread(target=pump, args=(self.command, list(self.peers)), daemon=True).start()


def pump(command: list[str], peers: list[queue.Queue]) -> None:
    """Copy the export's output to every peer's queue; end each queue with True (complete) or False."""
    live = list(peers)
    complete = False
    try:
        export = subprocess.Popen(command, stdout=subprocess.PIPE)
        while live and (chunk := export.stdout.read(CHUNK)):
            for peer in list(live):
                try:
                    peer.put(chunk, timeout=STALL_S)
                except queue.Full:
                    live.remove(peer)
        export.stdout.close()
        complete = export.wait() == 0
    finally:
        for peer in live:
            peer.put(complete)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", required=True, help="address to listen on")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True, help="the one URL path served")
    parser.add_argument("--peers", type=int, default=1, help="peers expected to ask together")
    parser.add_argument("--gather", type=float, default=20.0, help="seconds to wait for them")
    parser.add_argument("command", nargs="+", help="export command writing the archive to stdout")
    args = parser.parse_args()
    shared = Broadcast(args.command, args.peers, args.gather)

    class Handler(http.server.BaseHTTPRequestHandler):
        # HTTP/1.0: the body ends when the connection closes, so no length is needed up front.
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            if self.path != args.path:
                self.send_error(404)
                return
            peer = shared.join()
            if peer is None:
                peer = queue.Queue(maxsize=16)
                threading.Thread(target=pump, args=(args.command, [peer]), daemon=True).start()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-tar")
            self.end_headers()
            while not isinstance(chunk := peer.get(), bool):
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    # Gone: keep taking its chunks so the shared export does not wait for it.
                    while not isinstance(peer.get(), bool):
                        pass
                    return
            if not chunk:
                self.log_error("%s failed: the archive sent is incomplete", args.command[0])

    http.server.ThreadingHTTPServer((args.bind, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
