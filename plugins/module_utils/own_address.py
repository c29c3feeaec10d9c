# Copyright: npufleet contributors
# Apache License 2.0
"""Whether a URL names this machine, and an opener that reaches such a URL without a proxy.

The serve role's gates run on the node and ask the server at the address it listens on, the node's
own address unless serve_host is 0.0.0.0: a proxy in the node's environment (http_proxy) would
take that request elsewhere, or refuse it. Runs on the nodes: Python 3.8 and the standard library
only.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
import urllib.request

__all__ = ["direct_opener", "is_own_address"]


def is_own_address(url: str) -> bool:
    """Whether the host of ``url`` is this machine: localhost, a loopback address, or an address a
    socket here can bind (an address of one of its interfaces). A name is resolved first; one that
    does not resolve is not this machine. Nothing is sent anywhere."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    for family, kind, proto, _, address in infos:
        try:
            if ipaddress.ip_address(address[0].split("%")[0]).is_loopback:
                return True
        except ValueError:
            continue
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.bind(address)
            return True
        except OSError:
            continue
    return False


def direct_opener(url: str) -> urllib.request.OpenerDirector:
    """An opener for ``url``: without a proxy when it names this machine, else one that follows the
    proxy variables as urllib does."""
    handlers = [urllib.request.ProxyHandler({})] if is_own_address(url) else []
    return urllib.request.build_opener(*handlers)
