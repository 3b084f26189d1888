# The ingest service (and cartd) in one image, for both roles: the web server (default command)
# and the Celery workers (docker-compose.yml overrides the command).
#
# Alone, it runs the embedded setup with everything (volume, database, archive, queue) in one
# volume, which keeps the jobs across restarts:
#   docker build -t pacifica-ingest .
#   docker run -p 8066:8066 -v pacifica-ingest:/srv/ingest pacifica-ingest
#
# uWSGI comes as the pyuwsgi wheel, so nothing is compiled and the image has no compiler.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    INGEST_CONFIG=/etc/pacifica-ingest/config.cfg \
    INGEST_CPCONFIG=/etc/pacifica-ingest/server.conf \
    INGEST_DATA_DIR=/srv/ingest \
    CARTD_DATA_DIR=/srv/cartd

RUN groupadd --system --gid 1000 pacifica \
 && useradd --system --uid 1000 --gid pacifica --home-dir /srv/ingest --no-create-home pacifica \
 && mkdir -p /srv/ingest /srv/cartd /etc/pacifica-ingest \
 && chown pacifica:pacifica /srv/ingest /srv/cartd

WORKDIR /usr/src/pacifica-ingest
# The pinned dependencies first: this layer is rebuilt only when the lock changes.
COPY requirements-lock.txt ./
RUN pip install --no-deps -r requirements-lock.txt
COPY README.md ./
COPY distributions ./distributions
COPY pacifica ./pacifica
# The three release distributions (see distributions/release.py), as an operator installs them.
RUN pip install --no-deps ./distributions/pacifica-core ./distributions/pacifica-ingest ./distributions/pacifica-cartd \
 && rm -rf distributions/*/build distributions/*/*.egg-info
COPY config.cfg server.conf /etc/pacifica-ingest/
COPY docker/metadata /usr/share/pacifica-ingest/metadata

USER pacifica
WORKDIR /srv/ingest
VOLUME ["/srv/ingest"]
EXPOSE 8066
HEALTHCHECK --interval=10s --timeout=15s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8066/ready', timeout=10)"]
CMD ["pacifica-ingest", "-a", "0.0.0.0", "-p", "8066"]
