"""own_address: which URLs name this machine (bound, never sent to), and the opener without a proxy."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request

import pytest
from ansible_collections.npufleet.ascend.plugins.module_utils.own_address import direct_opener, is_own_address


def global_addresses() -> list[str]:
    """This machine's addresses on its interfaces, other than loopback (``ip -o addr``)."""
    if not shutil.which("ip"):
        return []
    listing = subprocess.run(
        ["ip", "-o", "addr", "show", "scope", "global"], check=True, capture_output=True, text=True
    )
    return [line.split()[3].split("/")[0] for line in listing.stdout.splitlines() if len(line.split()) > 3]


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000", "http://127.1.2.3:8000/health", "http://localhost:8000", "http://[::1]:8000"],
)
def test_loopback_is_this_machine(url):
    assert is_own_address(url)


@pytest.mark.parametrize(
    # Documentation ranges (RFC 5737, RFC 3849): assigned to no machine; binding them fails.
    "url",
    ["http://198.51.100.7:8000", "http://203.0.113.9:8000", "http://[2001:db8::5]:8000", "", "http://:80"],
)
def test_other_addresses_are_not(url):
    assert not is_own_address(url)


def test_each_address_of_this_machines_interfaces_is_its_own():
    addresses = global_addresses()
    if not addresses:
        pytest.skip("no address besides loopback here")
    for address in addresses:
        host = f"[{address}]" if ":" in address else address
        assert is_own_address(f"http://{host}:8000"), address


def proxies(opener: urllib.request.OpenerDirector) -> dict:
    """The proxies the opener uses (an empty ProxyHandler is left out of it: none)."""
    found = [
        handler.proxies for handler in opener.handlers if isinstance(handler, urllib.request.ProxyHandler)
    ]
    return found[0] if found else {}


def test_the_opener_skips_the_proxy_for_this_machine_only(monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert proxies(direct_opener("http://127.0.0.1:8000")) == {}
    for address in global_addresses():
        host = f"[{address}]" if ":" in address else address
        assert proxies(direct_opener(f"http://{host}:8000")) == {}, address
    assert proxies(direct_opener("http://198.51.100.7:8000"))["http"] == "http://127.0.0.1:9"
