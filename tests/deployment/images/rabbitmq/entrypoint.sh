#!/bin/bash
# The default user of the official image (which also lets guest in from other hosts).
set -euo pipefail
mkdir -p /etc/rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
{
  echo "loopback_users.guest = false"
  [[ -n "${RABBITMQ_DEFAULT_USER:-}" ]] && echo "default_user = $RABBITMQ_DEFAULT_USER"
  [[ -n "${RABBITMQ_DEFAULT_PASS:-}" ]] && echo "default_pass = $RABBITMQ_DEFAULT_PASS"
  echo "log.console = true"
} > /etc/rabbitmq/rabbitmq.conf
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq /etc/rabbitmq
if [[ "$1" == rabbitmq-server ]]; then
  # The server itself, not Debian's wrapper script, so that it gets docker stop's SIGTERM.
  shift
  exec gosu rabbitmq /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
fi
exec "$@"
