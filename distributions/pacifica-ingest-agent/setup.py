"""The pacifica-ingest-agent distribution: the instrument agent alone, for acquisition PCs (see
``distributions/release.py``). It needs no part of the services."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from release import AGENT_REQUIRES, SCRIPTS, distribution, packages_of

distribution("pacifica-ingest-agent", "Pacifica Ingest agent: send what an instrument writes, whole and once",
             packages_of("agent"), AGENT_REQUIRES, SCRIPTS["agent"])
