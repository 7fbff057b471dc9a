#!/bin/bash
# Quick start: builds outbox-relay, starts a throwaway PostgreSQL and the dev
# Kafka (librdkafka's mock cluster), runs the relay, writes a few events with
# plain SQL and shows them arriving in Kafka through kcat. Cleans up on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOUTBOX_TESTS=OFF >/dev/null
cmake --build build -j "$(nproc)" >/dev/null

pgbin=/usr/lib/postgresql/15/bin
work=$(mktemp -d /tmp/outbox-demo.XXXXXX)
chmod 755 "$work"; mkdir "$work/pg"
# As root, PostgreSQL's programs run as postgres, from / (a clone under
# /root is not theirs to enter: they would say so on every call).
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres "$work/pg"
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  [ -n "${relay_pid:-}" ] && kill "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null
  [ -n "${kafka_pid:-}" ] && kill "$kafka_pid" 2>/dev/null && wait "$kafka_pid" 2>/dev/null
  as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== starting PostgreSQL on 127.0.0.1:$port"
as_pg "$pgbin/initdb" -D "$work/pg/data" -U postgres -A trust >/dev/null
as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
  -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1" start >/dev/null
export OUTBOX_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"

echo "== starting the dev Kafka"
coproc KAFKA { exec build/outbox-dev-kafka --brokers 1; }
kafka_pid=$KAFKA_PID
read -r OUTBOX_KAFKA_BROKERS <&"${KAFKA[0]}"
export OUTBOX_KAFKA_BROKERS
echo "   bootstrap: $OUTBOX_KAFKA_BROKERS"

echo "== outbox-relay migrate"
build/outbox-relay migrate

echo "== outbox-relay run (logs in $work/relay.log)"
build/outbox-relay run --route 'user.*=user-events' --default-topic misc 2>"$work/relay.log" &
relay_pid=$!

echo "== a service writes events in its own transactions"
psql_() { psql -X -q -v ON_ERROR_STOP=1 "$OUTBOX_DATABASE_URL" "$@"; }
psql_ <<'SQL'
BEGIN;
-- (the business change would go here, in the same transaction)
INSERT INTO outbox.events (topic, key, payload, headers)
VALUES ('orders', 'order-42', '{"status":"created"}', '{"correlation_id":"c-1"}');
COMMIT;
BEGIN;
INSERT INTO outbox.events (topic, key, payload) VALUES ('orders', 'order-43', '{"status":"created"}');
ROLLBACK; -- never published
INSERT INTO outbox.events (event_type, key, payload)
VALUES ('user.created', 'user-7', '{"email":"a@example.com"}');
SQL

for _ in $(seq 100); do
  sent=$(psql_ -tA -c "SELECT count(*) FROM outbox.events WHERE status = 'sent'")
  [ "$sent" = 2 ] && break
  sleep 0.1
done
echo "== rows in the outbox"
psql_ -c "SELECT id, topic, key, event_type, status, kafka_partition, kafka_offset FROM outbox.events ORDER BY id"
echo "== what Kafka has (read back with kcat)"
for t in orders user-events; do
  kcat -b "$OUTBOX_KAFKA_BROKERS" -C -t "$t" -o beginning -e -q \
    -f "topic=%t partition=%p offset=%o key=%k value=%s headers=%h\n"
done
echo "== relay log"
cat "$work/relay.log"
