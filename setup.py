"""The working tree: the core and both services at once (``pip install -e .``), with the tools
the test suite needs (``[test]``). Releases are the three distributions of ``distributions/``
(see ``distributions/release.py``), which ship the same packages one each."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributions"))
from release import AGENT_REQUIRES, CORE_REQUIRES, EXTRAS, INGEST_REQUIRES, SCRIPTS, distribution, packages_of

TEST = ["pytest>=8", "pytest-timeout>=2", "hypothesis>=6", "ruff>=0.17", "import-linter>=2.1", "mypy>=1.15",
        "pacifica-archiveinterface>=0.4", "pacifica-uploader>=0.3", "tuspy>=1.0", "pacifica-downloader>=0.4",
        "pyuwsgi>=2.0.28", "openapi-spec-validator>=0.7", "schemathesis>=4.0", "playwright>=1.40",
        "resumable-upload>=0.3", "mkdocs>=1.6",
        # The S3 door's real clients: boto3 (with awscrt for CRC32C) and the AWS CLI.
        "boto3>=1.36", "awscli>=1.37"]

distribution("pacifica-workspace", "Pacifica Ingest and Cartd: the working tree of both services, their core and "
             "the instrument agent", packages_of("core", "ingest", "cartd", "agent"),
             sorted(set(CORE_REQUIRES + INGEST_REQUIRES + AGENT_REQUIRES)), SCRIPTS["ingest"] + SCRIPTS["cartd"] + SCRIPTS["agent"],
             {**EXTRAS, "test": TEST}, sources=os.path.dirname(os.path.abspath(__file__)))
