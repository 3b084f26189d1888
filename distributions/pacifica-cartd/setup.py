"""The pacifica-cartd distribution: the cart service of seed 004 (see ``distributions/release.py``)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from release import EXTRAS, SCRIPTS, SERVICE_REQUIRES, distribution, packages_of

distribution("pacifica-cartd", "Pacifica Cartd: carts of archived files, staged and bundled for download",
             packages_of("cartd"), SERVICE_REQUIRES, SCRIPTS["cartd"], EXTRAS)
