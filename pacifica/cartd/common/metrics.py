"""Cartd's metrics (``GET /metrics``); see ``core.metrics`` for how processes share them.

Bytes staged (pulled from the archive) and served (sent to downloaders) are counted where it
happens; carts by status and free space are read at each scrape (``jobs.gauges``).
"""

from __future__ import annotations

from prometheus_client import Counter

# Every metric has labels: a labelled metric makes its values when first used, after the
# composition root switched the library to its multiprocess mode (see core.metrics).
STAGED_BYTES = Counter("pacifica_cartd_staged_bytes", "Bytes pulled from the archive into carts, hashes checked, "
                       "by where the archive had them (disk, or tape: recalled first).", ["media"])
STAGED_FILES = Counter("pacifica_cartd_staged_files", "Files pulled from the archive into carts, hashes checked, "
                       "by where the archive had them.", ["media"])
SERVED_BYTES = Counter("pacifica_cartd_served_bytes", "Bytes of cart downloads sent to clients, by how the tar "
                       "was served (bundled: written when the cart was made; streamed: made while sent).", ["tar"])
