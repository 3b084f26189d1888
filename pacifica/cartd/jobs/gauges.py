"""What ``GET /metrics`` reads at each scrape: carts by status and the volume's free bytes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import peewee
from prometheus_client.core import GaugeMetricFamily

from ..db.models import Cart


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
