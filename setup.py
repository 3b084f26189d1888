"""Packaging for pacifica-ingest."""

from setuptools import find_namespace_packages, setup

setup(
    name="pacifica-ingest",
    version="1.0.0",
    description="Pacifica Ingest: receive, validate and archive data bundles",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_namespace_packages(include=["pacifica.*"]),
    install_requires=[
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
        # Large JSON bodies (/validate, /move) checked and read item by item by a streaming C
        # parser (yajl, bundled in the wheel) instead of being built whole: json cannot stream.
        "ijson>=3.3",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-timeout>=2", "hypothesis>=6", "ruff>=0.17", "import-linter>=2.1", "mypy>=1.15",
                 "pacifica-archiveinterface>=0.4", "pacifica-uploader>=0.3", "tuspy>=1.0",
                 "pacifica-downloader>=0.4", "pyuwsgi>=2.0.28",
                 "openapi-spec-validator>=0.7", "schemathesis>=4.0", "playwright>=1.40",
                 "resumable-upload>=0.3"],
        "uwsgi": ["pyuwsgi>=2.0.28"],
    },
    entry_points={
        "console_scripts": [
            "pacifica-ingest=pacifica.ingest.__main__:main",
            "pacifica-ingest-cmd=pacifica.ingest.__main__:cmd",
            "pacifica-cartd=pacifica.cartd.__main__:main",
            "pacifica-cartd-cmd=pacifica.cartd.__main__:cmd",
        ],
    },
)
