#!/bin/bash
# outbox-relay benchmark, the one command: builds an optimised relay (build-bench/), starts a
# throwaway PostgreSQL and the dev Kafka, measures drain, ceilings, latency, writer cost, memory,
# table growth and the exactly-once mode in one run, then the drain, latency and exactly-once
# steps again against Apache Kafka (bench/apache.sh) when its jars are there, and prints a
# Markdown table with a column per broker (also written to bench/results/latest.md).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
usage() {
  cat <<'EOF'
usage: bench/run.sh [--smoke] [--kafka mock|apache|both] [--compare] [--bin-dir DIR] [--out FILE] [--keep]
  --smoke        small sizes, about a minute (two with Apache Kafka; CI): checks that every step runs
  --kafka WHICH  the brokers measured (also BENCH_KAFKA): mock = the dev Kafka (librdkafka's mock
                 cluster); apache = Apache Kafka from the jars scripts/kafka-fetch.sh fetches;
                 both (the default when those jars are there, else mock)
  --compare      only the steps run on both brokers (drain, latency, the broker alone,
                 exactly-once), side by side; default --out bench/results/brokers.md
                 (also that of --kafka apache)
  --bin-dir DIR  measure the binaries of an existing build dir instead of building build-bench/
  --out FILE     where to write the table (default bench/results/latest.md, smoke: bench/out/smoke.md)
  --keep         keep the temporary directory (PostgreSQL log, relay logs, raw results)
Sizes and settings (environment; full-run defaults, smoke in brackets):
  BENCH_DRAIN_ROWS=1000000 [50000]   BENCH_SMALL_ROWS=100000 [10000]   BENCH_SENT_ROWS=10000000 [10000]
  BENCH_LAT_RATES="100 1000 10000" [1000]   BENCH_LAT_SECONDS=60 [5]   BENCH_LAT_WRITERS=8
  BENCH_EOS_LAT_RATES="100 1000" [1000]   latency rates with the relay in --exactly-once mode
  BENCH_KLAT_SECONDS=20 [3]   the dev Kafka's own latency (3c), at each of BENCH_LAT_RATES
  BENCH_STEADY_RATE=1000   BENCH_STEADY_SECONDS=600 [10]
  BENCH_IDLE_SECONDS=60 [5]   the idle step: the latency step's relay, no events, on each broker
  BENCH_PGBENCH_CLIENTS="1 8 32" [8]   BENCH_PGBENCH_SECONDS=15 [3]   BENCH_PGBENCH_ROUNDS=3 [1]
  BENCH_PARTITIONS=64   BENCH_KAFKA_BROKERS=3   BENCH_KEYS=1000
  BENCH_RELAY_ARGS=""      extra `outbox-relay run` options, e.g. "--batch-size 2000 --pipeline-depth 8"
  BENCH_LAT_TRACE=0        1: the latency steps' relay logs at debug level and each step's latency is
                           split by step (outbox-bench split: wake-up, fetch held, fetch, produce,
                           delivery report, read); the debug log costs the relay some CPU
  BENCH_RELAY_BIN=""       another relay binary to measure (e.g. a build of an earlier commit), with
                           this tree's bench tools (before/after comparisons)
  BENCH_PG_SETTINGS=""     extra server options, e.g. "-c synchronous_commit=off"
  BENCH_BUILD_DIR=build-bench   BENCH_BUILD_TYPE=Release (CMake build type of that dir)
  BENCH_PGSS=1             pg_stat_statements (with track_planning) in the throwaway PostgreSQL:
                           the relay's statements per step; 0 leaves it out (its own overhead)
  BENCH_PG_REFERENCE_ARGS=""   extra `outbox-bench pg-ceiling` options of the reference loop (2r)
Apache Kafka (bench/apache.sh):
  BENCH_APACHE_NODES=1     1, or 3 (replication factor 3, min.insync.replicas=2)
  BENCH_KAFKA_LIBS=DIR     the jars (default: scripts/kafka-fetch.sh's cache directory)
  BENCH_KAFKA_JVM_OPTS="-server -Xms1g -Xmx1g -XX:+UseG1GC ..."   (Kafka's start-script defaults)
  BENCH_KAFKA_PROPS=""     extra broker properties, space-separated name=value
EOF
}

smoke=0 bin_dir="" out="" keep=0 compare=0 kafka_target=${BENCH_KAFKA:-}
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) smoke=1 ;;
    --kafka) kafka_target=${2:?--kafka needs mock, apache or both}; shift ;;
    --compare) compare=1 ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift ;;
    --out) out=${2:?--out needs a file}; shift ;;
    --keep) keep=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

if [ $smoke = 1 ]; then
  : "${BENCH_DRAIN_ROWS:=50000}" "${BENCH_SMALL_ROWS:=10000}" "${BENCH_SENT_ROWS:=10000}"
  : "${BENCH_LAT_RATES:=1000}" "${BENCH_LAT_SECONDS:=5}" "${BENCH_STEADY_SECONDS:=10}"
  : "${BENCH_EOS_LAT_RATES:=1000}" "${BENCH_KLAT_SECONDS:=3}" "${BENCH_IDLE_SECONDS:=5}"
  : "${BENCH_PGBENCH_CLIENTS:=8}" "${BENCH_PGBENCH_SECONDS:=3}" "${BENCH_PGBENCH_ROUNDS:=1}"
  : "${out:=$repo/bench/out/smoke.md}"
fi
: "${BENCH_DRAIN_ROWS:=1000000}" "${BENCH_SMALL_ROWS:=100000}" "${BENCH_SENT_ROWS:=10000000}"
: "${BENCH_LAT_RATES:=100 1000 10000}" "${BENCH_LAT_SECONDS:=60}" "${BENCH_LAT_WRITERS:=8}"
: "${BENCH_EOS_LAT_RATES:=100 1000}" "${BENCH_KLAT_SECONDS:=20}"
: "${BENCH_STEADY_RATE:=1000}" "${BENCH_STEADY_SECONDS:=600}" "${BENCH_IDLE_SECONDS:=60}"
: "${BENCH_PGBENCH_CLIENTS:=1 8 32}" "${BENCH_PGBENCH_SECONDS:=15}" "${BENCH_PGBENCH_ROUNDS:=3}"
: "${BENCH_PARTITIONS:=64}" "${BENCH_KAFKA_BROKERS:=3}" "${BENCH_KEYS:=1000}"
: "${BENCH_RELAY_ARGS:=}" "${BENCH_PG_SETTINGS:=}" "${BENCH_BUILD_DIR:=build-bench}"
: "${BENCH_BUILD_TYPE:=Release}" "${BENCH_PGSS:=1}" "${BENCH_PG_REFERENCE_ARGS:=}"
: "${BENCH_LAT_TRACE:=0}"
read -r -a relay_args <<<"$BENCH_RELAY_ARGS"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

. "$repo/bench/apache.sh"
if [ -z "$kafka_target" ]; then
  if ak_available; then
    kafka_target=both
  else
    kafka_target=mock
    log "Apache Kafka ${ak_version:-?} is not in $ak_libs (scripts/kafka-fetch.sh fetches it): the dev Kafka only"
  fi
fi
case $kafka_target in
  mock) use_mock=1 use_apache=0 ;;
  apache) use_mock=0 use_apache=1 ;;
  both) use_mock=1 use_apache=1 ;;
  *) echo "bench/run.sh: --kafka takes mock, apache or both, not '$kafka_target'" >&2; exit 2 ;;
esac
[ $use_apache = 0 ] || ak_available ||
  die "Apache Kafka ${ak_version:-?} is not in $ak_libs: fetch it with scripts/kafka-fetch.sh (or set BENCH_KAFKA_LIBS), and install Java 17 (scripts/install-deps.sh)"
# The mock-only steps (ceilings, writer cost, memory, table growth) run in a full mock run.
mock_full=$(( use_mock == 1 && compare == 0 ))
# latest.md is the full run's: a run without the dev Kafka's full part writes brokers.md.
[ $mock_full = 1 ] || : "${out:=$repo/bench/results/brokers.md}"
: "${out:=$repo/bench/results/latest.md}"

# ---- build ----
if [ -n "$bin_dir" ]; then
  B=$(cd "$bin_dir" && pwd)
  b_label=$bin_dir
  BENCH_BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$B/CMakeCache.txt" 2>/dev/null || true)
else
  B=$repo/$BENCH_BUILD_DIR
  b_label=$BENCH_BUILD_DIR
  log "building ($BENCH_BUILD_TYPE) in $B"
  cmake -S "$repo" -B "$B" -DCMAKE_BUILD_TYPE="$BENCH_BUILD_TYPE" -DOUTBOX_TESTS=OFF -DOUTBOX_BENCH=ON >/dev/null
  cmake --build "$B" -j "$(nproc)" --target outbox-relay outbox-dev-kafka outbox-bench >/dev/null
fi
RELAY=${BENCH_RELAY_BIN:-$B/outbox-relay} DEVK=$B/outbox-dev-kafka OB=$B/bench/outbox-bench
for f in "$RELAY" "$DEVK" "$OB"; do [ -x "$f" ] || die "$f is missing"; done
# What is measured: the source as built (the tree may change while the benchmark runs).
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git -C "$repo" status --porcelain -- src include sql 2>/dev/null)" ] ||
  commit+=" + uncommitted changes in src/include/sql"
[ -z "${BENCH_RELAY_BIN:-}" ] || commit="bench tools of $commit, the relay $BENCH_RELAY_BIN"

# ---- throwaway PostgreSQL ----
# How busy the machine is before we start anything: other work disturbs every figure.
cpu_busy() { awk '/^cpu / { printf "%.0f %.0f\n", $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9; exit }' /proc/stat; }
read -r b0 t0 <<<"$(cpu_busy)"; sleep 2; read -r b1 t1 <<<"$(cpu_busy)"
busy_before=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) 'BEGIN { printf "%.0f", (t > 0 ? 100 * b / t : 0) }')
[ "$busy_before" -le 10 ] || log "WARNING: the machine is already ${busy_before}% busy; figures will be disturbed"
pgbin=${OUTBOX_TEST_PG_BIN:-$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)}
work=$(mktemp -d /tmp/outbox-bench.XXXXXX)
chmod 755 "$work"
relay_pid="" kafka_pid="" longtx_pid="" pg_started=0 bg_pids=()
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  set +e
  for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null; done
  [ -n "$relay_pid" ] && kill -TERM "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null
  [ -n "$longtx_pid" ] && kill "$longtx_pid" 2>/dev/null && wait "$longtx_pid" 2>/dev/null
  [ -n "$kafka_pid" ] && [ ${#ak_pids[@]} = 0 ] && kill -TERM "$kafka_pid" 2>/dev/null && wait "$kafka_pid" 2>/dev/null
  ak_stop
  [ $pg_started = 1 ] && as_pg "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1
  if [ $keep = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir "$work/pg"
[ "$(id -u)" = 0 ] && chown postgres "$work/pg"
as_pg "$pgbin/initdb" -D "$work/pg" -U postgres -A trust -E UTF8 --no-sync >/dev/null
# Durable defaults (fsync, synchronous_commit on); memory sized for the machine; no
# checkpoint inside a measurement (each step starts with an explicit CHECKPOINT).
shared_mb=$(awk '/^MemTotal/ { m = int($2 / 4096); print (m < 2048 ? m : 2048); exit }' /proc/meminfo)
pg_settings="-c shared_buffers=${shared_mb}MB -c max_wal_size=32GB -c checkpoint_timeout=1h -c max_connections=200"
# pg_stat_statements (contrib, in Debian's postgresql-15): calls, rows, planning and WAL bytes of
# the relay's statements, told apart from everyone else's by the relay's own login role.
[ "$BENCH_PGSS" = 0 ] || [ -f "$(pg_config --pkglibdir 2>/dev/null || echo /usr/lib/postgresql/15/lib)/pg_stat_statements.so" ] ||
  { log "pg_stat_statements is not installed: the statement figures are left out"; BENCH_PGSS=0; }
[ "$BENCH_PGSS" = 0 ] ||
  pg_settings+=" -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on"
for attempt in 1 2 3 4 5; do # a random port may be taken
  port=$(( 20000 + RANDOM % 30000 ))
  # shellcheck disable=SC2086
  as_pg "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w -t 60 \
    -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1 $pg_settings $BENCH_PG_SETTINGS" start >/dev/null && break
  [ $attempt = 5 ] && die "PostgreSQL did not start: $(tail -3 "$work/pg/server.log")"
done
log "PostgreSQL on 127.0.0.1:$port ($work)"
pg_started=1
pg_pid=$(head -1 "$work/pg/postmaster.pid")
DB="host=127.0.0.1 port=$port dbname=postgres user=postgres"
export OUTBOX_DATABASE_URL=$DB
sql() { "$pgbin/psql" -qAtX -v ON_ERROR_STOP=1 "$DB" "$@"; }

"$RELAY" migrate >"$work/migrate.log" 2>&1 || die "outbox-relay migrate: $(tail -3 "$work/migrate.log")"
sql -f "$repo/bench/sql/setup.sql" >/dev/null
# The reference of issue #18: the schema of 7416745 (migrations 001-003), frozen, as schema ref.
sql -1 -v schema=ref -f "$repo/bench/sql/reference_schema.sql" >/dev/null
# The relay and the reference loop log in as bench_relay: a superuser like postgres (the same
# rights, so the same behaviour), only so that pg_stat_statements can tell their statements
# from the writers' and the monitor's.
sql -c "CREATE ROLE bench_relay SUPERUSER LOGIN"
DB_RELAY="host=127.0.0.1 port=$port dbname=postgres user=bench_relay"
[ "$BENCH_PGSS" = 0 ] || sql -c "CREATE EXTENSION pg_stat_statements" >/dev/null

# The topics of every step, as NAME:PARTITIONS[:compact]. --exactly-once steps: each has its own
# data topic, transactional id and progress topic (one partition, compacted as the relay would
# make it), so that neither a relay's recovery read nor the consumer's fetches walk an earlier
# step's records (in the dev Kafka's partition log, or an open transaction's on a broker).
topic_specs=""
for t in drain-small drain-clean kafka-ceiling drain-longtx writer steady drain-sent drain-eos; do
  topic_specs+=" $t:$BENCH_PARTITIONS"
done
for r in $BENCH_LAT_RATES; do topic_specs+=" lat-$r:$BENCH_PARTITIONS klat-$r:$BENCH_PARTITIONS"; done
for r in $BENCH_EOS_LAT_RATES; do
  topic_specs+=" eos-lat-$r:$BENCH_PARTITIONS eos-progress-lat-$r:1:compact"
done
topic_specs+=" eos-progress-drain:1:compact"

# ---- helpers ----
declare -A R   # results: R[step.name] = value
declare -a CMD # the command behind each step
get() { echo "${R[$1]:-}"; }
# Reads "name value" lines into R under the prefix.
ingest() { local p=$1 f=$2 k v; while read -r k v; do R[$p.$k]=$v; done <"$f"; }
step_cmd() { CMD+=("$1"); }
# The machine's load averages (1, 5, 15 min) as a step starts: other work disturbs every figure.
note_load() { R[$1.loadavg]=$(cut -d' ' -f1-3 /proc/loadavg); }

relay_start() { # name [extra relay options]
  local name=$1
  shift
  OUTBOX_DATABASE_URL=$DB_RELAY "$RELAY" run "${relay_args[@]}" "$@" 2>"$work/relay-$name.log" &
  relay_pid=$!
}

# Where the relay's database work goes in a step: pg_stat_statements of bench_relay's
# statements (reset as the step begins) and the WAL the whole server wrote.
pgss_begin() { # name
  R[$1.wal_lsn0]=$(sql -c "SELECT pg_current_wal_lsn()")
  [ "$BENCH_PGSS" = 0 ] || sql -c "SELECT pg_stat_statements_reset()" >/dev/null
}
pgss_end() { # name events
  local n=$1 ev=$2
  [ "${ev:-0}" -gt 0 ] 2>/dev/null || ev=0
  R[$n.events]=$ev
  R[$n.wal_bytes]=$(sql -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$(get "$n.wal_lsn0")')")
  [ "$BENCH_PGSS" = 0 ] && return 0
  # One line per statement: calls, rows, mean exec ms, plans, mean plan ms, WAL bytes, query.
  sql -F $'\t' -c "SELECT calls, rows, round(mean_exec_time::numeric, 4), plans,
                           round(mean_plan_time::numeric, 4), wal_bytes,
                           left(regexp_replace(query, '\s+', ' ', 'g'), 110)
                    FROM pg_stat_statements
                    WHERE userid = 'bench_relay'::regrole AND query NOT LIKE '%pg_stat_statements%'
                    ORDER BY total_exec_time + total_plan_time DESC" >"$work/$n.pgss"
  read -r R[$n.pgss.calls] R[$n.pgss.rows] R[$n.pgss.exec_ms] R[$n.pgss.plans] R[$n.pgss.plan_ms] \
    R[$n.pgss.wal_bytes] <<<"$(awk -F'\t' '{ c += $1; r += $2; e += $1 * $3; p += $4; pt += $4 * $5; w += $6 }
      END { printf "%d %d %.3f %d %.3f %d\n", c, r, e, p, pt, w }' "$work/$n.pgss")"
}
# A latency step whose relay died: the step is reported as failed (with the relay's last log
# line) and the run goes on, so that one crash does not lose every other figure; run.sh exits 1
# after writing the table.
failed_steps=()
step_failed() { # name
  local rc=0
  wait "$relay_pid" 2>/dev/null || rc=$?
  relay_pid=""
  R[$1.failed]="the relay exited with $rc: $(tail -1 "$work/relay-$2.log" | cut -c1-240)"
  failed_steps+=("$1")
  log "FAILED: $1: $(get "$1.failed")"
}
relay_alive() { kill -0 "$relay_pid" 2>/dev/null; }
relay_stop() {
  local rc=0
  kill -TERM "$relay_pid"
  wait "$relay_pid" || rc=$?
  relay_pid=""
  [ $rc = 0 ] || die "the relay exited with $rc: $(tail -3 "$work/relay-$1.log")"
}

# The drain data set: rows ~500-byte JSON payloads, BENCH_KEYS keys, in one topic; optionally
# preceded by already-sent rows. The same rows every time (generate_series).
load_rows() { # topic rows sent_rows
  sql -c "TRUNCATE outbox.events"
  if [ "$3" -gt 0 ]; then
    sql -c "INSERT INTO outbox.events (topic, key, event_type, payload, status, sent_at,
              kafka_partition, kafka_offset)
            SELECT '$1', 'customer-' || (g % $BENCH_KEYS), 'order.updated', bench.payload(g),
                   'sent', now(), g % $BENCH_PARTITIONS, g / $BENCH_PARTITIONS
            FROM generate_series(1, $3) g"
  fi
  insert_pending "$1" "$2"
}
insert_pending() { # topic rows
  sql -c "INSERT INTO outbox.events (topic, key, event_type, payload)
          SELECT '$1', 'customer-' || (g % $BENCH_KEYS), 'order.updated', bench.payload(g)
          FROM generate_series(1, $2) g"
  sql -c "VACUUM (ANALYZE) outbox.events" -c "CHECKPOINT"
}
# The same pending rows again after a drain, keeping the rows with id <= $3 (the sent ones of
# step 6, which take long to load): the drained rows are deleted and vacuumed away first.
reload_pending() { # topic rows keep_max_id
  sql -c "DELETE FROM outbox.events WHERE id > $3" -c "VACUUM outbox.events"
  insert_pending "$1" "$2"
}

drain() { # name topic rows [extra relay options]
  note_load "$1"
  pgss_begin "$1"
  relay_start "$1" "${@:4}"
  "$OB" monitor --drain --relay-pid "$relay_pid" --pg-pid "$pg_pid" --kafka-pid "$kafka_pid" \
    --conninfo "$DB" >"$work/$1.mon" || die "drain $1"
  relay_stop "$1"
  pgss_end "$1" "$3"
  ingest "$1" "$work/$1.mon"
  "$OB" hwm --topic "$2" >"$work/$1.hwm" || die "hwm $2"
  ingest "$1" "$work/$1.hwm"
  [ "$(get "$1.hwm.sum")" -ge "$3" ] || die "drain $1: only $(get "$1.hwm.sum") of $3 messages in $2"
  R[$1.events_per_s]=$(awk -v n="$3" -v t="$(get "$1.mon.elapsed_s")" 'BEGIN{printf "%.0f", n/t}')
  log "drain $1: $3 rows in $(get "$1.mon.elapsed_s") s = $(get "$1.events_per_s") events/s"
}

relay_cmd="${BENCH_RELAY_BIN:-\$B/outbox-relay} run${BENCH_RELAY_ARGS:+ $BENCH_RELAY_ARGS}"

# 2r: the reference claim-and-mark loop on the rows just loaded (issue #18: the bench's pg-ceiling
# as it was on 7416745's schema, run in the same benchmark run); the drains of 1 and 6 are
# reported as a ratio to it.
# ======== REFERENCE: the one place where the reference loop's command is set. ========
# pg-ceiling on schema ref (bench/sql/reference_schema.sql: 7416745's schema, frozen), on a
# copy of the rows just loaded into outbox; BENCH_PG_REFERENCE_ARGS replaces these options.
read -r -a ref_args <<<"${BENCH_PG_REFERENCE_ARGS:---schema ref --copy-from outbox}"
ref_note="7416745's schema, frozen (bench/sql/reference_schema.sql)"
[ -z "$BENCH_PG_REFERENCE_ARGS" ] || ref_note="with \`$BENCH_PG_REFERENCE_ARGS\`"
ref_ceiling() { # name: the reference loop over the pending rows, as ref.NAME
  local n=ref.$1
  note_load "$n"
  pgss_begin "$n"
  "$OB" pg-ceiling --conninfo "$DB_RELAY" --batch-size "$batch" "${ref_args[@]}" >"$work/$n.out" ||
    die "pg-ceiling ($n)"
  ingest "$n" "$work/$n.out"
  pgss_end "$n" "$(get "$n.pgceil.rows")"
  log "reference loop, $1: $(get "$n.pgceil.events_per_s") events/s"
}
# A long-running transaction in another session, held open while a drain runs (6).
longtx_begin() {
  PGAPPNAME=bench-longtx "$pgbin/psql" -qAtX "$DB" \
    -c "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT txid_current(); SELECT pg_sleep(86400)" \
    >/dev/null 2>&1 &
  longtx_pid=$!
  for _ in $(seq 100); do
    [ "$(sql -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bench-longtx'
                 AND backend_xid IS NOT NULL")" = 1 ] && return 0
    sleep 0.1
  done
  die "the long transaction did not begin"
}
longtx_end() {
  sql -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'bench-longtx'" >/dev/null
  wait "$longtx_pid" 2>/dev/null || true
  longtx_pid=""
}
eos_args() { # step: the relay's --exactly-once options for a step (its own id and progress topic)
  printf '%s\n' --exactly-once --transactional-id "bench-eos-$1" --progress-topic "eos-progress-$1"
}
batch=$(printf '%s\n' "${relay_args[@]}" | awk 'p{print; exit} /^--batch-size$/{p=1} /^--batch-size=/{sub(/.*=/,""); print; exit}')
batch=${batch:-${OUTBOX_BATCH_SIZE:-1000}}
ref_cmd="outbox-bench pg-ceiling --batch-size $batch ${ref_args[*]}"

# ---- the steps run on every broker; P is the prefix of their results ("" for the dev Kafka,
# "ak." for Apache Kafka) ----
# On Apache Kafka, the JVM's garbage-collector pauses during a step (from node 1's gc.log).
gc_begin() { [ -z "$1" ] || gc_mark=$(ak_gc_mark); }
gc_end() { # prefix name
  [ -z "$1" ] || R[$2.gc]=$(ak_gc_since "$gc_mark")
}

# 5 (part) / warm-up: a small drain, for peak RSS against backlog size (and the JVM's JIT).
small_step() {
  log "small drain ($BENCH_SMALL_ROWS rows, $1)"
  load_rows drain-small "$BENCH_SMALL_ROWS" 0
  drain "${P}small" drain-small "$BENCH_SMALL_ROWS"
}

# 1: the drain.
drain_step() {
  log "drain ($BENCH_DRAIN_ROWS rows, $1)"
  load_rows drain-clean "$BENCH_DRAIN_ROWS" 0
  payload_bytes=$(sql -c "SELECT round(avg(octet_length(payload::text))) FROM outbox.events")
  drain "${P}clean" drain-clean "$BENCH_DRAIN_ROWS"
}

# 3: latency at each offered load.
lat_step() {
  local r n trace=()
  sql -c "TRUNCATE outbox.events" -c "VACUUM ANALYZE outbox.events" -c "CHECKPOINT"
  [ "$BENCH_LAT_TRACE" = 0 ] || trace=(--log-level debug)
  relay_start "${P}latency" "${trace[@]}"
  for r in $BENCH_LAT_RATES; do
    n=${P}lat$r
    log "latency at $r events/s ($BENCH_LAT_SECONDS s, $BENCH_LAT_WRITERS writers, $1)"
    note_load "$n"
    gc_begin "$P"
    "$OB" monitor --relay-pid "$relay_pid" --seconds "$BENCH_LAT_SECONDS" --pg-pid "$pg_pid" \
      --kafka-pid "$kafka_pid" --interval-ms 200 --conninfo "$DB" >"$work/$n.mon" &
    mon_pid=$!
    bg_pids+=("$mon_pid")
    pgss_begin "$n"
    "$OB" load --topic "lat-$r" --rate "$r" --seconds "$BENCH_LAT_SECONDS" \
      --writers "$BENCH_LAT_WRITERS" --keys "$BENCH_KEYS" --samples "$work/$n.samples" \
      --dump "$work/$n.dump" >"$work/$n.out" || die "load at $r/s"
    if ! wait "$mon_pid"; then
      relay_alive && die "monitor at $r/s"
      step_failed "$n" "${P}latency"
    fi
    bg_pids=()
    gc_end "$P" "$n"
    ingest "$n" "$work/$n.out"
    ingest "$n" "$work/$n.mon"
    pgss_end "$n" "$(get "$n.load.committed")"
    log "latency at $r events/s: p50 $(get "$n.lat.p50_ms") ms, p99 $(get "$n.lat.p99_ms") ms"
    if [ "$BENCH_LAT_TRACE" != 0 ]; then
      # The relay's log so far holds this step's batches and the earlier steps' (other ids).
      "$OB" split --dump "$work/$n.dump" --trace "$work/relay-${P}latency.log" >"$work/$n.split" ||
        die "split at $r/s"
      ingest "$n" "$work/$n.split"
      log "latency at $r events/s, p99 by step: wake-up $(get "$n.split.commit_to_wanted.p99_ms"), held $(get "$n.split.wanted_to_sent.p99_ms"), fetch $(get "$n.split.sent_to_fetched.p99_ms"), produce $(get "$n.split.fetched_to_produced.p99_ms"), report $(get "$n.split.produced_to_report.p99_ms"), read $(get "$n.split.report_to_read.p99_ms") ms"
    fi
    [ -n "$relay_pid" ] || relay_start "${P}latency" "${trace[@]}"
  done
  # Idle: the same relay, no events at all (the load above has ended and every row it wrote
  # was read): what the relay and its backends cost while nothing happens.
  n=${P}idle
  log "idle: no events for $BENCH_IDLE_SECONDS s ($1)"
  note_load "$n"
  pgss_begin "$n"
  "$OB" monitor --relay-pid "$relay_pid" --seconds "$BENCH_IDLE_SECONDS" --pg-pid "$pg_pid" \
    --kafka-pid "$kafka_pid" --interval-ms 200 --conninfo "$DB" >"$work/$n.mon" ||
    die "idle monitor"
  ingest "$n" "$work/$n.mon"
  pgss_end "$n" 0
  [ "$(sql -c "SELECT count(*) FROM outbox.events WHERE created_at > now() - interval '$BENCH_IDLE_SECONDS seconds'")" = 0 ] ||
    log "WARNING: rows were written during the idle step"
  log "idle: relay $(get "$n.mon.relay_cpu_s") CPU-s + its backends $(get "$n.mon.backend_cpu_s") CPU-s in $(get "$n.mon.elapsed_s") s"
  relay_stop "${P}latency"
}

# 3c: what the broker and the consumer add, with nothing else running.
klat_step() {
  local r n
  for r in $BENCH_LAT_RATES; do
    n=${P}klat$r
    log "the broker alone at $r events/s ($BENCH_KLAT_SECONDS s, $1)"
    note_load "$n"
    gc_begin "$P"
    "$OB" kafka-latency --topic "klat-$r" --rate "$r" --seconds "$BENCH_KLAT_SECONDS" \
      --keys "$BENCH_KEYS" --value-bytes "$payload_bytes" >"$work/$n.out" || die "kafka-latency at $r/s"
    gc_end "$P" "$n"
    ingest "$n" "$work/$n.out"
  done
}

# 7: exactly-once (--exactly-once): the drain, and latency.
eos_step() {
  local r n eos_opts load_opts
  log "exactly-once drain ($BENCH_DRAIN_ROWS rows, $1)"
  load_rows drain-eos "$BENCH_DRAIN_ROWS" 0
  mapfile -t eos_opts < <(eos_args drain)
  drain "${P}eos" drain-eos "$BENCH_DRAIN_ROWS" "${eos_opts[@]}"
  # One progress record per transaction (committed or aborted); a broker also writes a
  # transaction marker after each in the same partition, the dev Kafka none.
  "$OB" hwm --topic eos-progress-drain >"$work/${P}eos.phwm" || die "hwm eos-progress-drain"
  R[${P}eos.transactions]=$(awk -v m="$([ -n "$P" ] && echo 2 || echo 1)" '$1 == "hwm.sum" { print $2 / m }' "$work/${P}eos.phwm")
  sql -c "TRUNCATE outbox.events" -c "VACUUM ANALYZE outbox.events" -c "CHECKPOINT"
  for r in $BENCH_EOS_LAT_RATES; do
    n=${P}eoslat$r
    log "exactly-once latency at $r events/s ($BENCH_LAT_SECONDS s, $BENCH_LAT_WRITERS writers, $1)"
    mapfile -t eos_opts < <(eos_args "lat-$r")
    # The dev Kafka has no read_committed: a row arrives when the progress record listing it
    # does. Apache Kafka has: a read_committed consumer of the data topic says when.
    if [ -n "$P" ]; then
      load_opts=(--isolation read_committed)
    else
      load_opts=(--progress-topic "eos-progress-lat-$r")
    fi
    note_load "$n"
    relay_start "$n" "${eos_opts[@]}"
    gc_begin "$P"
    "$OB" monitor --relay-pid "$relay_pid" --seconds "$BENCH_LAT_SECONDS" --pg-pid "$pg_pid" \
      --kafka-pid "$kafka_pid" --interval-ms 200 --conninfo "$DB" >"$work/$n.mon" &
    mon_pid=$!
    bg_pids+=("$mon_pid")
    "$OB" load --topic "eos-lat-$r" "${load_opts[@]}" --rate "$r" \
      --seconds "$BENCH_LAT_SECONDS" --writers "$BENCH_LAT_WRITERS" --keys "$BENCH_KEYS" \
      --samples "$work/$n.samples" >"$work/$n.out" || die "exactly-once load at $r/s"
    if ! wait "$mon_pid"; then
      relay_alive && die "monitor at $r/s (exactly-once)"
      step_failed "$n" "$n"
    fi
    bg_pids=()
    gc_end "$P" "$n"
    [ -z "$relay_pid" ] || relay_stop "$n"
    ingest "$n" "$work/$n.out"
    ingest "$n" "$work/$n.mon"
    if [ -n "$P" ]; then
      "$OB" hwm --topic "eos-progress-lat-$r" >"$work/$n.phwm" || die "hwm eos-progress-lat-$r"
      R[$n.progress.records]=$(awk '$1 == "hwm.sum" { print $2 / 2 }' "$work/$n.phwm")
    fi
    log "exactly-once latency at $r events/s: p50 $(get "$n.lat.p50_ms") ms, p99 $(get "$n.lat.p99_ms") ms ($(get "$n.progress.records") transactions, $(get "$n.load.duplicates") rows read twice, $(get "$n.load.missing") never)"
  done
}

# ================= the dev Kafka =================
if [ $use_mock = 1 ]; then
P=""
mock_args=""
for t in $topic_specs; do mock_args+=" --topic ${t%:compact}"; done
# shellcheck disable=SC2086
"$DEVK" --brokers "$BENCH_KAFKA_BROKERS" $mock_args </dev/null >"$work/kafka.out" 2>"$work/kafka.log" &
kafka_pid=$!
for _ in $(seq 100); do [ -s "$work/kafka.out" ] && break; sleep 0.1; done
K=$(head -1 "$work/kafka.out")
[ -n "$K" ] || die "the dev Kafka printed no bootstrap list: $(tail -3 "$work/kafka.log")"
export OUTBOX_KAFKA_BROKERS=$K
log "dev Kafka at $K ($BENCH_KAFKA_BROKERS brokers, $BENCH_PARTITIONS partitions per topic)"
mock_load=$(cut -d' ' -f1-3 /proc/loadavg)

small_step "dev Kafka"
drain_step "dev Kafka"

if [ $mock_full = 1 ]; then
# ---- 2: ceilings on the same data ----
log "PostgreSQL ceiling"
load_rows drain-clean "$BENCH_DRAIN_ROWS" 0
ref_ceiling clean
ingest pg "$work/ref.clean.out"
log "librdkafka ceiling"
"$OB" kafka-ceiling --topic kafka-ceiling --count "$BENCH_DRAIN_ROWS" --keys "$BENCH_KEYS" \
  --value-bytes "$payload_bytes" >"$work/kceil.out" || die "kafka-ceiling"
ingest k "$work/kceil.out"

# ---- 6b: a long-running transaction held open while the relay drains ----
log "drain under a long-running transaction"
load_rows drain-longtx "$BENCH_DRAIN_ROWS" 0
longtx_begin
drain longtx drain-longtx "$BENCH_DRAIN_ROWS"
longtx_end
log "the reference loop under a long-running transaction (its own, on the same rows loaded again)"
load_rows drain-longtx "$BENCH_DRAIN_ROWS" 0
longtx_begin
ref_ceiling longtx
longtx_end

# ---- 4: writer cost (pgbench) ----
# One pgbench run of a few seconds on this kind of machine varies by ±15% (WAL flushes), so the
# variants take turns, BENCH_PGBENCH_ROUNDS times, and each figure is the median of its rounds.
pgb_variants="plain outbox nonotify relay"
for c in $BENCH_PGBENCH_CLIENTS; do
  for round in $(seq "$BENCH_PGBENCH_ROUNDS"); do
    for v in $pgb_variants; do
      log "pgbench $v, $c clients, round $round"
      sql -c "TRUNCATE outbox.events, bench.plain_events" -c "VACUUM ANALYZE bench.accounts, outbox.events, bench.plain_events" -c "CHECKPOINT"
      script=$repo/bench/pgbench/writer_outbox.sql
      [ $v = plain ] && script=$repo/bench/pgbench/writer_plain.sql
      opts=""
      [ $v = nonotify ] && opts="-c outbox_relay.role=relay"
      # "outbox": every commit NOTIFYs, as when the relay waits for work (a relay that is busy
      # may turn the notifications off through outbox.relay_state, where the schema has it).
      [ $v = outbox ] && sql -c "DO \$\$ BEGIN IF to_regclass('outbox.relay_state') IS NOT NULL THEN
                                   UPDATE outbox.relay_state SET waiting = true; END IF; END \$\$"
      [ $v = relay ] && relay_start pgbench
      j=$(( c < 2 ? c : 2 ))
      "$OB" waits --conninfo "$DB" --seconds "$(awk -v s="$BENCH_PGBENCH_SECONDS" 'BEGIN{print s*0.8}')" \
        >"$work/waits-$v-$c.out" &
      waits_pid=$!
      bg_pids+=("$waits_pid")
      PGOPTIONS=$opts "$pgbin/pgbench" -n -M prepared -c "$c" -j "$j" -T "$BENCH_PGBENCH_SECONDS" \
        -f "$script" -h 127.0.0.1 -p "$port" -U postgres postgres >"$work/pgbench-$v-$c.out" 2>&1 \
        || die "pgbench $v $c: $(tail -3 "$work/pgbench-$v-$c.out")"
      wait "$waits_pid" || die "waits sampler"
      bg_pids=()
      [ $v = relay ] && relay_stop pgbench
      tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$work/pgbench-$v-$c.out")
      [ -n "$tps" ] || die "pgbench $v $c printed no tps"
      R[pgbrounds.$v.$c]+="${R[pgbrounds.$v.$c]:+ }$tps"
      if [ "$round" = 1 ]; then
        R[pgbwait.$v.$c]=$(awk '$1 ~ /^wait\./ {sub(/^wait\./, "", $1); printf "%s%s %.0f%%", sep, $1, $2*100; sep=", "; if (++n == 3) exit}' "$work/waits-$v-$c.out")
      fi
    done
  done
  for v in $pgb_variants; do
    R[pgb.$v.$c]=$(tr ' ' '\n' <<<"$(get "pgbrounds.$v.$c")" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }')
  done
done

fi # mock_full

lat_step "dev Kafka"
klat_step "dev Kafka"
eos_step "dev Kafka"

if [ $mock_full = 1 ]; then
# ---- 5: memory under a steady load ----
log "steady load: $BENCH_STEADY_RATE events/s for $BENCH_STEADY_SECONDS s"
sql -c "TRUNCATE outbox.events" -c "VACUUM ANALYZE outbox.events" -c "CHECKPOINT"
note_load steady
pgss_begin steady
relay_start steady
"$OB" monitor --relay-pid "$relay_pid" --seconds "$BENCH_STEADY_SECONDS" --pg-pid "$pg_pid" \
  --kafka-pid "$kafka_pid" --interval-ms 200 --conninfo "$DB" >"$work/steady.mon" &
mon_pid=$!
bg_pids+=("$mon_pid")
# Writers only: a consumer would make the dev Kafka's CPU grow with its retained log (see 3).
"$OB" load --topic steady --rate "$BENCH_STEADY_RATE" --seconds "$BENCH_STEADY_SECONDS" \
  --writers "$BENCH_LAT_WRITERS" --keys "$BENCH_KEYS" --no-consumer >"$work/steady.out" || die "steady load"
wait "$mon_pid" || die "steady monitor"
bg_pids=()
relay_stop steady
ingest steady "$work/steady.out"
ingest steady "$work/steady.mon"
pgss_end steady "$(get steady.load.committed)"

# ---- 6a: drain with many already-sent rows in the table ----
log "drain with $BENCH_SENT_ROWS sent rows in the table (loading them takes a while)"
load_rows drain-sent "$BENCH_DRAIN_ROWS" "$BENCH_SENT_ROWS"
table_size=$(sql -c "SELECT pg_size_pretty(pg_total_relation_size('outbox.events'))")
sent_max=$(sql -c "SELECT min(id) - 1 FROM outbox.events WHERE status = 'pending'")
drain sent drain-sent "$BENCH_DRAIN_ROWS"
log "the reference loop with $BENCH_SENT_ROWS sent rows in the table"
reload_pending drain-sent "$BENCH_DRAIN_ROWS" "$sent_max"
ref_ceiling sent

fi # mock_full
kill -TERM "$kafka_pid" 2>/dev/null
wait "$kafka_pid" 2>/dev/null || true
kafka_pid=""
fi # use_mock

# ================= Apache Kafka =================
if [ $use_apache = 1 ]; then
P=ak.
log "starting Apache Kafka $ak_version ($BENCH_APACHE_NODES node$([ "$BENCH_APACHE_NODES" = 1 ] || echo s), jars in $ak_libs)"
ak_start
# Only the topics of the steps run here: a broker pays for every partition it hosts.
ak_specs=""
for t in $topic_specs; do
  case ${t%%:*} in drain-small|drain-clean|drain-eos|lat-*|klat-*|eos-*) ak_specs+=" $t" ;; esac
done
# shellcheck disable=SC2086
ak_topics $ak_specs
export OUTBOX_KAFKA_BROKERS=$AK
log "Apache Kafka at $AK ($BENCH_PARTITIONS partitions per topic)"
ak_load=$(cut -d' ' -f1-3 /proc/loadavg)
small_step "Apache Kafka"
drain_step "Apache Kafka"
lat_step "Apache Kafka"
klat_step "Apache Kafka"
eos_step "Apache Kafka"
ak_stop
kafka_pid=""
fi # use_apache

. "$repo/bench/report.sh"
[ ${#failed_steps[@]} = 0 ] || die "steps that failed (see the table): ${failed_steps[*]}"
