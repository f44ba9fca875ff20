#!/bin/sh
# Writes the proxy-authentication secret from the environment into CouchDB's configuration before it starts.
set -eu
: "${COUCHDB_PROXY_SECRET:?set COUCHDB_PROXY_SECRET}"
printf '[chttpd_auth]\nsecret = %s\n' "$COUCHDB_PROXY_SECRET" > /opt/couchdb/etc/local.d/20-proxy-secret.ini
exec /docker-entrypoint.sh "$@"
