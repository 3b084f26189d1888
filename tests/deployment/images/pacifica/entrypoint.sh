#!/bin/bash
# Start one Pacifica peer as its published image does. PEER_ADDRESS (default 0.0.0.0, as
# published) lets the tests bind loopback only; extra arguments go to uWSGI.
set -euo pipefail
address=${PEER_ADDRESS:-0.0.0.0}

database_url() {  # PEEWEE_DATABASE_URL, else one made of PEEWEE_PROTO/USER/PASS/ADDR/PORT/DATABASE
  if [[ -n "${PEEWEE_DATABASE_URL:-}" ]]; then
    echo "$PEEWEE_DATABASE_URL"
    return
  fi
  local auth="" host=$PEEWEE_ADDR
  if [[ -n "${PEEWEE_USER:-}" && -n "${PEEWEE_PASS:-}" ]]; then auth="$PEEWEE_USER:$PEEWEE_PASS@"; fi
  if [[ -n "${PEEWEE_PORT:-}" ]]; then host="$host:$PEEWEE_PORT"; fi
  echo "$PEEWEE_PROTO://$auth$host/$PEEWEE_DATABASE"
}

home_config() {  # the service's ~/.pacifica-<peer>/ with its CherryPy configuration
  mkdir -p ~/.pacifica-"$PEER"
  cp /usr/src/app/cpconfig.ini ~/.pacifica-"$PEER"/cpconfig.ini
}

case "$PEER" in
  uniqueid | metadata)
    home_config
    printf '[database]\npeewee_url = %s\n' "$(database_url)" > ~/.pacifica-"$PEER"/config.ini
    pacifica-"$PEER"-cmd dbsync
    port=8121
    if [[ "$PEER" == uniqueid ]]; then port=8051; set -- -p 1 "$@"; fi
    exec uwsgi --http-socket "$address:$port" --master --die-on-term --module "pacifica.$PEER.wsgi" "$@"
    ;;
  policy)
    home_config
    touch ~/.pacifica-policy/config.ini
    exec uwsgi --http-socket "$address:8181" --master --die-on-term --module pacifica.policy.wsgi "$@"
    ;;
  archiveinterface)
    exec uwsgi --http-socket "$PACIFICA_AAPI_ADDRESS:$PACIFICA_AAPI_PORT" --master --die-on-term \
      --module "pacifica.archiveinterface.wsgi:application" "$@"
    ;;
esac
echo "unknown PEER: $PEER" >&2
exit 2
