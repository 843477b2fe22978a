"""Probing the network before a download, so that a machine without network fails in seconds
with a message naming the fix, instead of waiting through a library's retries (tfds: ten, with
exponential backoff, about 3.5 minutes). Used for tfds datasets (:mod:`swinjax.data.sources`)
and hub weights (:mod:`swinjax.weights.load`).
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from collections.abc import Iterable

PROBE_TIMEOUT_S = 5.0  # per host


def unreachable_hosts(urls: Iterable[str]) -> list[str]:
    """The hosts of ``urls`` (or the proxy in front of them) that do not accept a TCP connection
    within PROBE_TIMEOUT_S, each with the reason; [] if one of them answers (or there are none)."""
    hosts = {
        (u.hostname, u.port or (443 if u.scheme == "https" else 80))
        for u in map(urllib.parse.urlparse, urls)
        if u.hostname
    }
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    proxy = proxy or os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy")
    if proxy and hosts:
        p = urllib.parse.urlparse(proxy if "://" in proxy else f"http://{proxy}")
        hosts = {(p.hostname, p.port or 80)}
    failures = []
    for host, port in sorted(hosts):
        try:
            with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
                return []
        except OSError as e:
            failures.append(f"{host}:{port}: {e}")
    return failures
