#!/bin/sh
# Joins couchdb-2 and couchdb-3 to couchdb-1 with CouchDB's _cluster_setup API, once.
set -eu
: "${COUCHDB_PASSWORD:?set COUCHDB_PASSWORD}"
api() { curl -fsS -u "admin:${COUCHDB_PASSWORD}" -H 'content-type: application/json' -X POST http://couchdb-1:5984/_cluster_setup -d "$1"; echo; }
if curl -fsS -u "admin:${COUCHDB_PASSWORD}" http://couchdb-1:5984/_membership | grep -q 'couchdb@couchdb-3'; then
  echo "cluster already set up"; exit 0
fi
for node in couchdb-2 couchdb-3; do
  api "{\"action\":\"enable_cluster\",\"bind_address\":\"0.0.0.0\",\"username\":\"admin\",\"password\":\"${COUCHDB_PASSWORD}\",\"port\":5984,\"node_count\":3,\"remote_node\":\"${node}\",\"remote_current_user\":\"admin\",\"remote_current_password\":\"${COUCHDB_PASSWORD}\"}"
  api "{\"action\":\"add_node\",\"host\":\"${node}\",\"port\":5984,\"username\":\"admin\",\"password\":\"${COUCHDB_PASSWORD}\"}"
done
api '{"action":"finish_cluster"}'
