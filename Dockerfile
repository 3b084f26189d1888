# One image for both roles of the ingest service: the web server (default command) and the
# Celery worker (docker-compose overrides the command). Both need the same volume_path.
# `docker run -p 8066:8066 -v ingest:/srv/ingest IMAGE` alone runs the embedded setup, with
# everything (volume, database, archive, queue) under /srv/ingest.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    INGEST_CONFIG=/etc/pacifica-ingest/config.cfg \
    INGEST_CPCONFIG=/etc/pacifica-ingest/server.conf \
    INGEST_DATA_DIR=/srv/ingest

WORKDIR /usr/src/pacifica-ingest
COPY setup.py requirements.txt README.md ./
COPY pacifica ./pacifica
RUN pip install --no-cache-dir . uwsgi \
 && mkdir -p /etc/pacifica-ingest /srv/ingest
COPY config.cfg server.conf /etc/pacifica-ingest/

EXPOSE 8066
VOLUME ["/srv/ingest"]
CMD ["pacifica-ingest", "-a", "0.0.0.0", "-p", "8066"]
