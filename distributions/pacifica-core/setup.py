"""The pacifica-core distribution: what both services stand on (see ``distributions/release.py``)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from release import CORE_REQUIRES, distribution, packages_of

distribution("pacifica-core", "Pacifica services: the shared core (settings, HTTP, auth, web and Celery plumbing)",
             packages_of("core"), CORE_REQUIRES)
