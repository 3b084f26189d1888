"""What the three distributions built from this repository share.

``pacifica-core`` (``pacifica.core``: settings, HTTP, auth, the web and Celery plumbing),
``pacifica-ingest`` (``pacifica.ingest``) and ``pacifica-cartd`` (``pacifica.cartd``, seed 004's
``pip install pacifica-cartd``) each ship only their own package, so each installs alone and any
of them in one environment together without one overwriting another's files. The services pin
the core of their own release; release all three together, and install them from one place
(``pip install --no-index --find-links WHEELS pacifica-ingest``) so that no other index is asked
for ``pacifica-core``.

Each ``distributions/<name>/setup.py`` builds its wheel from the sources in ``pacifica/``
(``pip wheel distributions/pacifica-cartd``); ``zip_safe=False`` keeps ``python setup.py
install`` with the setuptools of a new virtualenv from making a zipped egg, which namespace
packages cannot be imported from. The repository's own ``setup.py`` installs all three at once,
for working on them.
"""

from __future__ import annotations

import os
import re

from setuptools import find_namespace_packages, setup

# The one place the version is written: pacifica/core/version.py (read, not imported: building
# a distribution imports nothing of the package).
with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pacifica", "core", "version.py"),
          encoding="utf-8") as _handle:
    VERSION = re.search(r'__version__ = "([^"]+)"', _handle.read()).group(1)
SOURCES = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CORE_REQUIRES = [
    "celery[redis]>=5.3",
    "cherrypy>=18",
    "kombu>=5.3",
    "peewee>=3.17",
    "requests>=2.31",
    "psycopg2-binary>=2.9",
    "pymysql>=1.1",
    # GET /metrics: the Prometheus text format and its multiprocess mode, not written by hand.
    "prometheus-client>=0.20",
    # OIDC bearer tokens: JWT signatures, JWKS and claim checks by a well-kept JOSE library,
    # never by hand (the crypto extra brings RS256/ES256 through cryptography).
    "pyjwt[crypto]>=2.15",
    # Large JSON bodies checked and read item by item by a streaming C parser (yajl, bundled in
    # the wheel) instead of being built whole: json cannot stream.
    "ijson>=3.3",
]
SERVICE_REQUIRES = [f"pacifica-core=={VERSION}"]
# The S3 door: CRC32C and CRC64NVME from the AWS SDKs' own native checksums (botocore uses the
# same library), and the access keys' secrets sealed with Fernet (never our own crypto).
INGEST_REQUIRES = ["awscrt>=0.20", "cryptography>=42"]
EXTRAS = {"uwsgi": ["pyuwsgi>=2.0.28"]}
SCRIPTS = {
    "ingest": ["pacifica-ingest=pacifica.ingest.__main__:main", "pacifica-ingest-cmd=pacifica.ingest.__main__:cmd"],
    "cartd": ["pacifica-cartd=pacifica.cartd.__main__:main", "pacifica-cartd-cmd=pacifica.cartd.__main__:cmd"],
    "agent": ["pacifica-ingest-agent=pacifica.agent.__main__:main"],
}
# The agent runs on instrument PCs: a tus client and file-system events, nothing of the services.
AGENT_REQUIRES = ["requests>=2.31", "tuspy>=1.0", "watchdog>=4"]


def packages_of(*names: str) -> list[str]:
    """The packages ``pacifica.<name>`` and everything below them, found in the sources."""
    return [package for name in names
            for package in find_namespace_packages(SOURCES, include=[f"pacifica.{name}", f"pacifica.{name}.*"])]


def distribution(name: str, description: str, packages: list[str], requires: list[str],
                 scripts: list[str] = (), extras: dict[str, list[str]] | None = None,
                 sources: str = SOURCES) -> None:
    """Build the distribution ``name`` of ``packages`` (from ``sources``)."""
    readme = os.path.join(SOURCES, "README.md")
    with open(readme, encoding="utf-8") as handle:
        long_description = handle.read()
    setup(
        name=name,
        version=VERSION,
        description=description,
        long_description=long_description,
        long_description_content_type="text/markdown",
        python_requires=">=3.11",
        # As the published Pacifica packages: LGPL 3 (LICENSE), over the GPL 3 it amends (COPYING).
        license="LGPL-3.0-or-later",
        classifiers=["License :: OSI Approved :: GNU Lesser General Public License v3 or later (LGPLv3+)"],
        packages=packages,
        package_dir={"pacifica": os.path.relpath(os.path.join(sources, "pacifica"))},
        install_requires=requires,
        extras_require=extras or {},
        entry_points={"console_scripts": list(scripts)},
        zip_safe=False,
    )
