"""The pacifica-ingest distribution: the ingest service (see ``distributions/release.py``)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from release import EXTRAS, INGEST_REQUIRES, SCRIPTS, SERVICE_REQUIRES, distribution, packages_of

distribution("pacifica-ingest", "Pacifica Ingest: receive, validate and archive data bundles",
             packages_of("ingest"), SERVICE_REQUIRES + INGEST_REQUIRES, SCRIPTS["ingest"], EXTRAS)
