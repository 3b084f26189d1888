"""Cartd's metrics (``GET /metrics``); see ``core.metrics`` for how processes share them.

Bytes staged (pulled from the archive) and served (sent to downloaders) are counted where it
happens; carts by status are read from the database at each scrape (``state_metrics``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import peewee
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily

from .models import Cart

# Every metric has labels: a labelled metric makes its values when first used, after the
# composition root switched the library to its multiprocess mode (see core.metrics).
STAGED_BYTES = Counter("pacifica_cartd_staged_bytes", "Bytes pulled from the archive into carts, hashes checked, "
                       "by where the archive had them (disk, or tape: recalled first).", ["media"])
STAGED_FILES = Counter("pacifica_cartd_staged_files", "Files pulled from the archive into carts, hashes checked, "
                       "by where the archive had them.", ["media"])
SERVED_BYTES = Counter("pacifica_cartd_served_bytes", "Bytes of cart downloads sent to clients, by how the tar "
                       "was served (bundled: written when the cart was made; streamed: made while sent).", ["tar"])


def state_metrics(volume_path: str) -> Iterator:
    """Carts by status (deleted ones left out) and the volume's free bytes, read at a scrape."""
    carts = GaugeMetricFamily("pacifica_cartd_carts", "Carts that were not deleted, by status.", labels=["status"])
    query = (Cart.select(Cart.status, peewee.fn.COUNT(Cart.id)).where(Cart.deleted_date.is_null(True))
             .group_by(Cart.status).tuples())
    for status, count in query:
        carts.add_metric([status], count)
    yield carts
    yield GaugeMetricFamily("pacifica_cartd_volume_free_bytes", "Free bytes on the cart volume's filesystem.",
                            value=shutil.disk_usage(volume_path).free)
