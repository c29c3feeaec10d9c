#!/usr/bin/python3
"""Serve one container image to the other nodes of a cluster, streamed from the engine's export.

Part of npufleet's image fan-out: runs on the seed node as a transient systemd unit for the length
of one transfer. It answers GET on exactly one (random) path and 404 on anything else; each request
runs the export command (``docker save REF`` or ``ctr images export - REF``) and copies its output
to the client, so the image is never written to the seed's disk. A failed export leaves the client
with a truncated archive, which its engine refuses. Standard library only.
"""

import argparse
import http.server
import shutil
import subprocess


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", required=True, help="address to listen on")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True, help="the one URL path served")
    parser.add_argument("command", nargs="+", help="export command writing the archive to stdout")
    args = parser.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        # HTTP/1.0: the body ends when the connection closes, so no length is needed up front.
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            if self.path != args.path:
                self.send_error(404)
                return
            export = subprocess.Popen(args.command, stdout=subprocess.PIPE)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-tar")
            self.end_headers()
            try:
                shutil.copyfileobj(export.stdout, self.wfile, 4 * 2**20)
            except (BrokenPipeError, ConnectionResetError):
                export.kill()
            finally:
                code = export.wait()
            if code != 0:
                self.log_error("%s exited %d", args.command[0], code)

    http.server.ThreadingHTTPServer((args.bind, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
