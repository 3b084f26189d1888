"""Prometheus metrics shared by both services, and the plumbing of ``GET /metrics``.

Counters and histograms are kept with ``prometheus-client``. A service spreads its work over
processes (the web server's, uWSGI's, Celery's prefork pool), so ``use_directory`` switches the
library to its multiprocess mode, with one directory per data directory: every process on the
machine writes its samples there and ``GET /metrics`` adds them up. What the database knows (jobs
by state, carts by status) is read from it at each scrape by a collector (``DatabaseCollector``),
so it is right whichever process or host did the work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from .errors import PeerRejected, PeerUnavailable

logger = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

# Every metric here has labels: a labelled metric makes its values when first used, after
# ``use_directory`` (an unlabelled one would make its value at import, in this process only).
PEER_REQUESTS = Counter("pacifica_peer_requests", "Requests to the peer services, by peer and outcome "
                        "(ok, rejected: the peer said no, unavailable: down, timed out or 5xx).",
                        ["peer", "outcome"])
PEER_LATENCY = Histogram("pacifica_peer_request_duration_seconds",
                         "Time to a peer's answer (its headers, for a streamed body), by peer.", ["peer"],
                         buckets=LATENCY_BUCKETS)


def use_directory(directory: str) -> str:
    """Keep this process's samples in ``directory``, where every process of the service on this
    machine keeps its own; return the directory.

    Call it before the first sample: values made earlier stay in this process only. The
    environment variable is set too, so the worker processes a server starts share it; a
    process's own data directory always wins over one it inherited.
    """
    os.makedirs(directory, exist_ok=True)
    os.environ[ENV] = directory
    values.ValueClass = values.MultiProcessValue()
    return directory


def peer_label(peer: str) -> str:
    """The ``peer`` label of a peer's name in messages: uniqueid, policy, archiveinterface, metadata
    (the names ``GET /ready`` gives its checks)."""
    label = peer.replace(" ", "").lower()
    return "archiveinterface" if label == "archive" else label


@contextlib.contextmanager
def peer_request(peer: str) -> Iterator[None]:
    """Count one request to ``peer`` and time it, classified by how it ended."""
    peer = peer_label(peer)
    started = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except PeerRejected:
        outcome = "rejected"
        raise
    except PeerUnavailable:
        outcome = "unavailable"
        raise
    except BaseException:
        outcome = "error"
        raise
    finally:
        duration = time.perf_counter() - started
        PEER_LATENCY.labels(peer).observe(duration)
        PEER_REQUESTS.labels(peer, outcome).inc()
        logger.log(logging.DEBUG if outcome == "ok" else logging.WARNING, "%s request %s after %.3f s", peer,
                   outcome, duration, extra={"peer": peer, "duration": round(duration, 6)})


class DatabaseCollector(Collector):
    """A collector whose metrics are read afresh at each scrape by ``read`` (say, from the
    database); a failing read is logged and leaves them out rather than failing the scrape."""

    def __init__(self, read: Callable[[], Iterable]) -> None:
        self.read = read

    def collect(self) -> Iterable:
        try:
            return list(self.read())
        except Exception:
            logger.exception("metrics: reading the service's state failed")
            return []

    def describe(self) -> Iterable:
        return []  # read at scrape time only: never while registering


def exposition(collectors: Iterable[Collector]) -> tuple[bytes, str]:
    """The text of ``GET /metrics``: the samples of every process on this machine (once
    ``use_directory`` was called; the composition roots do) plus ``collectors``; and its
    content type."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(ENV):
        MultiProcessCollector(registry)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST
