# outbox-relay benchmark: formats the results of bench/run.sh (which sources this file with
# its results in R) as Markdown: machine, settings, the figures with the command behind each,
# a CPU breakdown per step and how each figure was measured. Written to stdout and to $out.

. "$repo/bench/charts.sh"

n0() { awk -v x="$1" 'BEGIN { x = sprintf("%.0f", x); s = ""; neg = x < 0; if (neg) x = -x;
  while (length(x) > 3) { s = "," substr(x, length(x) - 2) s; x = substr(x, 1, length(x) - 3) }
  printf "%s%s%s", neg ? "-" : "", x, s }'; }
# The figures of R[$1] (space-separated), each as n0, joined by " · ".
rounds() { local x out=""; for x in $(get "$1"); do out+="${out:+ · }$(n0 "$x")"; done; echo "$out"; }
f1() { awk -v x="$1" 'BEGIN { printf "%.1f", x }'; }
f2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
mb() { awk -v x="$1" 'BEGIN { printf "%.1f MB", x / 1024 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b; else printf "n/a" }'; }
us_per() { awk -v c="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.1f µs", 1e6 * c / n; else printf "n/a" }'; }

# "12,34,56" kB samples -> "12.1 → 34.0 → ... MB"
series_mb() { echo "$1" | awk -F, '{ for (i = 1; i <= NF; i++) printf "%s%.1f", (i > 1 ? " → " : ""), $i / 1024; printf " MB" }'; }

cpu_row() { # prefix events label
  local p=$1 other load
  load=$(get "$p.load.cpu_s")
  other=$(awk -v m="$(get "$p.mon.machine_busy_cpu_s")" -v r="$(get "$p.mon.relay_cpu_s")" \
    -v g="$(get "$p.mon.pg_cpu_s")" -v k="$(get "$p.mon.kafka_cpu_s")" -v l="${load:-0}" \
    'BEGIN { o = m - r - g - k - l; printf "%.1f", (o < 0 ? 0 : o) }')
  printf '| %s | %s | %s (%s) | %s | %s | %s | %s | %s%s | %s of %s CPUs | %s |\n' "$3" \
    "$(f1 "$(get "$p.mon.elapsed_s")")" \
    "$(f1 "$(get "$p.mon.relay_cpu_s")")" "$(f1 "$(get "$p.mon.relay_main_cpu_s")")" \
    "$(f1 "$(get "$p.mon.backend_cpu_s")")" "$(f1 "$(get "$p.mon.pg_cpu_s")")" \
    "$(f1 "$(get "$p.mon.kafka_cpu_s")")" "$([ -n "$load" ] && f1 "$load" || echo —)" "$other" \
    "$(t=$(get "$p.mon.other_top"); [ -n "$t" ] && echo " (${t//,/, })")" \
    "$(pct "$(get "$p.mon.machine_busy")" 1)" \
    "$(get "$p.mon.cpus")" "$(cpu_per_event "$p" "$2")"
}
# The relay's CPU as the issue counts it: its process plus its PostgreSQL backends.
relay_total() { awk -v r="$(get "$1.mon.relay_cpu_s")" -v b="$(get "$1.mon.backend_cpu_s")" 'BEGIN { printf "%.2f", r + b }'; }
cpu_per_event() { # prefix events: "X µs (relay Y µs)"; no events: the share of one core
  if [ "${2:-0}" = 0 ]; then
    printf '**%s of one core** (no events)' "$(core_share "$1")"
    return
  fi
  printf '**%s** (relay %s)' "$(us_per "$(relay_total "$1")" "$2")" "$(us_per "$(get "$1.mon.relay_cpu_s")" "$2")"
}
core_share() { awk -v c="$(relay_total "$1")" -v t="$(get "$1.mon.elapsed_s")" 'BEGIN { if (t > 0) printf "%.2f%%", 100 * c / t; else printf "n/a" }'; }

# The targets of issue #18, each against this run and per broker (for reading, never asserted):
# "met" / "**not met**", the figure, and where it comes from (its row and command above).
verdict() { # value target ge|le
  awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN { if (v == "") { printf "not measured"; exit }
    ok = (op == "ge") ? v + 0 >= t : v + 0 <= t; printf "%s", ok ? "met" : "**not met**" }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b <= 0) print ""; else printf "%.3f", a / b }'; }
us_val() { awk -v c="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.1f", 1e6 * c / n }'; }
targets() {
  local hwm_max p b r c v ref rp
  hwm_max=$(printf '%s\n' "$(get small.mon.relay_hwm_kb)" "$(get clean.mon.relay_hwm_kb)" \
    "$(get sent.mon.relay_hwm_kb)" "$(get longtx.mon.relay_hwm_kb)" "$(get steady.mon.relay_hwm_kb)" |
    sort -n | tail -1)
  echo
  echo "## Targets of issue #18 against this run"
  echo
  echo "Reported, never asserted. CPU is the relay process plus its PostgreSQL backends (utime+stime from /proc, \`outbox-bench monitor\`); each line names the step whose command is given above."
  echo
  for p in "${tcols[@]}"; do
    b=$(b_name "$p")
    # CPU per event at 1,000 and 100 events/s, and idle.
    if [ -z "$p" ] && [ -n "$(get steady.mon.elapsed_s)" ]; then
      v=$(us_val "$(relay_total steady)" "$(get steady.load.committed)")
      echo "- $b, relay + backends CPU per event at a steady $(n0 "$BENCH_STEADY_RATE") events/s for $BENCH_STEADY_SECONDS s (5) ≤ 100 µs: ${v:-?} µs (relay $(f1 "$(get steady.mon.relay_cpu_s)") + backends $(f1 "$(get steady.mon.backend_cpu_s)") CPU-s for $(n0 "$(get steady.load.committed)") events; load $(get steady.loadavg)) — $(verdict "$v" 100 le)"
    fi
    for r in 1000 100; do
      [ -n "$(get "${p}lat$r.mon.elapsed_s")" ] || continue
      v=$(us_val "$(relay_total "${p}lat$r")" "$(get "${p}lat$r.load.committed")")
      echo "- $b, relay + backends CPU per event at $(n0 "$r") events/s (3, $BENCH_LAT_SECONDS s) ≤ $([ $r = 1000 ] && echo 100 || echo 500) µs: ${v:-?} µs (relay $(f1 "$(get "${p}lat$r.mon.relay_cpu_s")") + backends $(f1 "$(get "${p}lat$r.mon.backend_cpu_s")") CPU-s for $(n0 "$(get "${p}lat$r.load.committed")") events; load $(get "${p}lat$r.loadavg")) — $(verdict "$v" "$([ $r = 1000 ] && echo 100 || echo 500)" le)"
    done
    if [ -n "$(get "${p}idle.mon.elapsed_s")" ]; then
      v=$(awk -v c="$(relay_total "${p}idle")" -v t="$(get "${p}idle.mon.elapsed_s")" 'BEGIN { if (t > 0) printf "%.3f", 100 * c / t }')
      echo "- $b, idle (no events for $(f1 "$(get "${p}idle.mon.elapsed_s")") s, the latency step's relay) < 1% of one core: ${v}% (relay $(f2 "$(get "${p}idle.mon.relay_cpu_s")") + backends $(f2 "$(get "${p}idle.mon.backend_cpu_s")") CPU-s; \`outbox-bench monitor --seconds $BENCH_IDLE_SECONDS\`; load $(get "${p}idle.loadavg")) — $(awk -v v="$v" 'BEGIN { printf "%s", (v != "" && v + 0 < 1) ? "met" : "**not met**" }')"
    fi
    # Latency at 1,000 events/s, and exactly-once.
    if [ -n "$(get "${p}lat1000.lat.p50_ms")" ]; then
      echo "- $b, latency at 1,000 events/s (3), COMMIT → readable: p50 ≤ 2 ms: $(f2 "$(get "${p}lat1000.lat.p50_ms")") ms — $(verdict "$(get "${p}lat1000.lat.p50_ms")" 2 le); p99 ≤ 5 ms: $(f2 "$(get "${p}lat1000.lat.p99_ms")") ms — $(verdict "$(get "${p}lat1000.lat.p99_ms")" 5 le) (the broker and the consumer alone, 3c: p50 $(f2 "$(get "${p}klat1000.klat.read.p50_ms")"), p99 $(f2 "$(get "${p}klat1000.klat.read.p99_ms")") ms)"
    fi
    if [ -n "$(get "${p}eoslat1000.lat.p99_ms")" ]; then
      echo "- $b, exactly-once at 1,000 events/s (7), COMMIT → readable$([ -n "$p" ] && echo " by a read_committed consumer" || echo " (its progress record read: a lower bound, the dev Kafka has no read_committed)"): p99 ≤ 25 ms: $(f2 "$(get "${p}eoslat1000.lat.p99_ms")") ms — $(verdict "$(get "${p}eoslat1000.lat.p99_ms")" 25 le)"
    fi
  done
  # Writers (the dev Kafka's full run only).
  for c in $BENCH_PGBENCH_CLIENTS; do
    [ "$c" != 1 ] && [ -n "$(get "pgb.plain.$c")" ] || continue
    echo "- writers with the relay running ≥ 90% of plain at $c clients (4): $(pct "$(get "pgb.relay.$c")" "$(get "pgb.plain.$c")") — $(verdict "$(ratio "$(get "pgb.relay.$c")" "$(get "pgb.plain.$c")")" 0.9 ge) (every commit notifying: $(pct "$(get "pgb.outbox.$c")" "$(get "pgb.plain.$c")"); without NOTIFY: $(pct "$(get "pgb.nonotify.$c")" "$(get "pgb.plain.$c")"))"
  done
  # The drain against the reference claim-and-mark loop, run in this run on the same rows.
  for rp in clean:1 sent:6 longtx:6; do
    r=${rp%:*}
    [ -n "$(get "$r.events_per_s")" ] && [ -n "$(get "ref.$r.pgceil.events_per_s")" ] || continue
    ref=$(get "ref.$r.pgceil.events_per_s")
    echo "- drain ≥ 1.3× the reference claim-and-mark loop, $(ref_label "$r") (${rp#*:} and 2r): $(n0 "$(get "$r.events_per_s")") ÷ $(n0 "$ref") events/s = **$(f2 "$(ratio "$(get "$r.events_per_s")" "$ref")")×** — $(verdict "$(ratio "$(get "$r.events_per_s")" "$ref")" 1.3 ge)${ref_note:+ ($ref_note)}"
  done
  if [ -n "$(get pg.pgceil.events_per_s)" ]; then
    echo "- drain ≥ 80% of the lower ceiling (kept from the previous issue): $(pct "$clean_eps" "$lower") — $(verdict "$(ratio "$clean_eps" "$lower")" 0.8 ge)"
  fi
  [ -z "$hwm_max" ] || echo "- relay peak RSS ≤ 32 MB, flat: at most $(mb "$hwm_max") over all drains and the steady load — $(verdict "$hwm_max" 32768 le)"
}
# ---- where the relay's database work goes (pg_stat_statements, WAL) ----
per() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b <= 0) printf "—"; else if (a / b >= 100) printf "%.0f", a / b; else if (a / b >= 1) printf "%.2f", a / b; else printf "%.4f", a / b }'; }
pgss_row() { # step label
  local n=$1 ev calls unit="" stime
  [ -n "$(get "$n.wal_bytes")" ] || return 0
  ev=$(get "$n.events") calls=$(get "$n.pgss.calls")
  stime=$(awk -v x="$(get "$n.pgss.exec_ms")" -v p="$(get "$n.pgss.plan_ms")" 'BEGIN { print 1000 * (x + p) }')
  if [ "${ev:-0}" = 0 ]; then # no events (idle): per second instead
    ev=$(get "$n.mon.elapsed_s") unit=" per s"
    printf '| %s | none, %s s |' "$2" "$(f1 "$ev")"
  else
    printf '| %s | %s |' "$2" "$(n0 "$ev")"
  fi
  printf ' %s%s | %s | %s%s | %s µs%s | %s B%s | %s B%s |\n' \
    "$(per "$calls" "$ev")" "$unit" "$(per "$(get "$n.pgss.rows")" "$calls")" \
    "$(per "$(get "$n.pgss.plans")" "$ev")" "$unit" "$(per "$stime" "$ev")" "$unit" \
    "$(per "$(get "$n.pgss.wal_bytes")" "$ev")" "$unit" "$(per "$(get "$n.wal_bytes")" "$ev")" "$unit"
}
pgss_detail() { # step label
  local n=$1 ev unit="per event"
  [ -s "$work/$n.pgss" ] || return 0
  ev=$(get "$n.events")
  [ "${ev:-0}" != 0 ] || { ev=$(get "$n.mon.elapsed_s"); unit="per s"; }
  echo
  echo "$2 ($(n0 "$(get "$n.events")") events; the statements of the relay's role, most time first):"
  echo
  echo "| calls $unit | rows per call | mean exec ms | plans | mean plan ms | WAL bytes $unit | statement |"
  echo "|---|---|---|---|---|---|---|"
  awk -F'\t' -v ev="$ev" 'NR <= 12 { q = $7; gsub(/\|/, "\\|", q)
    printf "| %.4g | %.4g | %.4f | %d | %.4f | %.4g | `%s` |\n", $1 / ev, ($1 > 0 ? $2 / $1 : 0), $3, $4, $5, $6 / ev, q }' "$work/$n.pgss"
}
pgss_report() {
  local p r b
  [ -n "$(get clean.wal_bytes)$(get ak.clean.wal_bytes)" ] || return 0
  cat <<EOF

## Where the relay's database work goes

Per event (per second when idle), from pg_stat_statements$([ "$BENCH_PGSS" = 0 ] && echo ' (**off in this run**, BENCH_PGSS=0: WAL only)') (PostgreSQL's contrib,
\`shared_preload_libraries=pg_stat_statements\`, \`pg_stat_statements.track_planning=on\`), reset as each step
begins (\`SELECT pg_stat_statements_reset()\`) and read as it ends: the statements of the role the relay
(and the reference loop) logs in as, \`bench_relay\`, a superuser like the writers' \`postgres\`,
so the writers' and the monitor's statements are not counted. A statement is one round trip
unless the relay pipelines; BEGIN and COMMIT count as statements. "All WAL" is the whole server's
(\`pg_wal_lsn_diff(pg_current_wal_lsn(), <at the start>)\`), including the writers' inserts in the rate steps.

| step | events | relay statements per event | rows per statement | plans per event | statement time per event (exec + plan) | relay statements' WAL per event | all WAL per event |
|---|---|---|---|---|---|---|---|
EOF
  for p in "${tcols[@]}"; do
    b=$(b_name "$p")
    pgss_row "${p}clean" "$b: drain (1)"
    if [ -z "$p" ]; then
      pgss_row ref.clean "reference loop, same rows (2a)"
      pgss_row sent "$b: drain after $(n0 "$BENCH_SENT_ROWS") sent (6)"
      pgss_row ref.sent "reference loop after $(n0 "$BENCH_SENT_ROWS") sent (2r)"
      pgss_row longtx "$b: drain, long transaction (6)"
      pgss_row ref.longtx "reference loop, long transaction (2r)"
    fi
    for r in $BENCH_LAT_RATES; do pgss_row "${p}lat$r" "$b: $(n0 "$r") events/s (3)"; done
    [ -n "$p" ] || pgss_row steady "$b: steady $(n0 "$BENCH_STEADY_RATE") events/s (5)"
    pgss_row "${p}idle" "$b: idle (3)"
    pgss_row "${p}eos" "$b: exactly-once drain (7)"
  done
  [ "$BENCH_PGSS" = 0 ] && return 0
  for p in "${tcols[@]}"; do
    b=$(b_name "$p")
    pgss_detail "${p}clean" "$b, drain (1)"
    [ -n "$p" ] || pgss_detail ref.clean "The reference loop on the same rows (2a, \`$ref_cmd\`)"
    pgss_detail "${p}lat1000" "$b, 1,000 events/s (3)"
    [ -n "$p" ] || pgss_detail steady "$b, steady $(n0 "$BENCH_STEADY_RATE") events/s (5)"
    pgss_detail "${p}idle" "$b, idle (3)"
  done
  return 0
}

ref_label() { case $1 in clean) echo "$(n0 "$BENCH_DRAIN_ROWS") pending rows" ;; sent) echo "after $(n0 "$BENCH_SENT_ROWS") sent rows" ;; longtx) echo "under a long transaction" ;; esac; }

# The relay command of an --exactly-once step (run.sh's eos_args).
eos_cmd() { echo "$relay_cmd $(eos_args "$1" | paste -sd ' ')"; }

# What the data messages of the exactly-once latency runs say about them, per rate.
eos_checks() {
  local r sep=""
  for r in $BENCH_EOS_LAT_RATES; do
    printf '%sat %s events/s, data messages of %s of the %s committed rows read (%s of them twice), the data message of %s samples after their progress record; %s rows listed again by a later record (on the dev Kafka an aborted transaction'"'"'s record is readable too); %s samples in no record' \
      "$sep" "$(n0 "$r")" "$(n0 "$(get "eoslat$r.data.received")")" \
      "$(n0 "$(get "eoslat$r.load.committed")")" "$(n0 "$(get "eoslat$r.data.duplicates")")" \
      "$(n0 "$(get "eoslat$r.data.after_record")")" "$(n0 "$(get "eoslat$r.load.duplicates")")" \
      "$(n0 "$(get "eoslat$r.load.missing")")"
    sep="; "
  done
}

# The brokers of this run, for the header.
brokers_line() {
  local m="" a=""
  [ $use_mock = 1 ] && m="the dev Kafka (librdkafka's mock cluster, $BENCH_KAFKA_BROKERS brokers in one process)"
  [ $use_apache = 1 ] && a="Apache Kafka $ak_version ($BENCH_APACHE_NODES KRaft node$([ "$BENCH_APACHE_NODES" = 1 ] || echo s), a JVM each: \`$BENCH_KAFKA_JVM_OPTS\`)"
  if [ -n "$m" ] && [ -n "$a" ]; then echo "$m, then $a"; else echo "$m$a"; fi
}

report() {
  local cpu_model mem_gb pg_version rdk_version relay_version mode lower lower_name opts=""
  cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mem_gb=$(awk '/^MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
  pg_version=$(sql -c "SHOW server_version")
  rdk_version=$("$OB" version | awk '/^librdkafka/ { print $2 }')
  relay_version=$("$RELAY" --version 2>&1 | head -1)
  mode="full"; [ $smoke = 1 ] && mode="smoke (--smoke: small sizes, figures not meaningful)"
  [ $compare = 1 ] && mode+=", --compare (only the steps run on every broker)"
  [ $smoke = 1 ] && opts+=" --smoke"
  [ $compare = 1 ] && opts+=" --compare"
  opts+=" --kafka $kafka_target"
  lower=$(get pg.pgceil.events_per_s) lower_name="PostgreSQL"
  if awk -v k="$(get k.kceil.events_per_s)" -v p="$lower" 'BEGIN { exit !(k < p) }'; then
    lower=$(get k.kceil.events_per_s) lower_name="librdkafka"
  fi
  local drows=$BENCH_DRAIN_ROWS clean_eps
  clean_eps=$(get clean.events_per_s)

  cat <<EOF
# outbox-relay benchmark

- Run: $(date -u '+%Y-%m-%d %H:%M UTC'), $mode, commit $commit, \`bench/run.sh$opts\`.
- Machine: $(nproc) CPUs ($cpu_model), ${mem_gb} GB RAM, Linux $(uname -r). **Everything shares these
  $(nproc) CPUs**: PostgreSQL, the broker ($(brokers_line)),
  the relay, the writers and the consumer.
- Other work: the machine was ${busy_before}% busy in the 2 s before the run started$([ "$busy_before" -le 10 ] || echo ' — **other processes were running: the figures are disturbed**'); load averages (1, 5, 15 min) as each broker's part began: $([ $use_mock = 1 ] && echo "dev Kafka ${mock_load:-?}")$([ $use_mock = 1 ] && [ $use_apache = 1 ] && echo '; ')$([ $use_apache = 1 ] && echo "Apache Kafka ${ak_load:-?}") (per step in the tables).
- Software: PostgreSQL $pg_version, librdkafka $rdk_version, $relay_version (CMake ${BENCH_BUILD_TYPE:-unknown} build)$([ $use_apache = 1 ] && echo ", Apache Kafka $ak_version on $(java -version 2>&1 | head -1)").
- PostgreSQL: durable defaults (fsync, synchronous_commit on), shared_buffers=${shared_mb}MB, max_wal_size=32GB,
  autovacuum on, a CHECKPOINT before each step${BENCH_PG_SETTINGS:+, plus \`$BENCH_PG_SETTINGS\`}. Over TCP on 127.0.0.1.
- Data: JSON payloads of $payload_bytes bytes on average (\`bench.payload()\` in bench/sql/setup.sql),
  $(n0 "$BENCH_KEYS") keys, $BENCH_PARTITIONS partitions per topic. Relay options: \`${BENCH_RELAY_ARGS:-(defaults)}\` (batch size $batch).
- In commands: \`\$B\` = $b_label, \`\$DB\` = the throwaway database (also OUTBOX_DATABASE_URL),
  \`\$K\` = the broker of the step (also OUTBOX_KAFKA_BROKERS); every \`outbox-bench\` is \`\$B/bench/outbox-bench\`.
EOF
  if [ ${#failed_steps[@]} -gt 0 ]; then
    echo "- **Failed steps**: $(for f in "${failed_steps[@]}"; do printf '%s (%s); ' "$f" "$(get "$f.failed")"; done | sed 's/; $//')."
  fi
  [ $mock_full = 1 ] && mock_report
  [ $use_apache = 1 ] || [ $compare = 1 ] && brokers_report
  local tcols=()
  [ $use_mock = 1 ] && tcols+=("")
  [ $use_apache = 1 ] && tcols+=("ak.")
  pgss_report
  targets
  charts
  return 0
}

# The full table of the dev Kafka run (every step).
mock_report() {
  local r c
  cat <<EOF

| # | figure | value | command |
|---|---|---|---|
| 1 | Drain, $(n0 "$drows") pending rows, published and marked | **$(n0 "$clean_eps") events/s** ($(f1 "$(get clean.mon.elapsed_s)") s); relay CPU $(f1 "$(get clean.mon.relay_cpu_s)") s ($(us_per "$(get clean.mon.relay_cpu_s)" "$drows")/event) | \`$relay_cmd\`, timed from its start until no row is pending by \`outbox-bench monitor --drain\`; count checked with \`outbox-bench hwm --topic drain-clean\` |
| 2a | Ceiling and reference (2r): bare PostgreSQL claim-and-mark, same rows | $(n0 "$(get pg.pgceil.events_per_s)") events/s (PostgreSQL backend CPU $(f1 "$(get pg.pgceil.backend_cpu_s)") s, client $(f1 "$(get pg.pgceil.client_cpu_s)") s); the drain (1) = **$(f2 "$(ratio "$clean_eps" "$(get pg.pgceil.events_per_s)")")× this loop** | \`$ref_cmd\` ($ref_note) |
| 2r | Reference loop on the rows of 6: after $(n0 "$BENCH_SENT_ROWS") sent rows · under a long transaction (its own, same rows loaded again) | $(n0 "$(get ref.sent.pgceil.events_per_s)") · $(n0 "$(get ref.longtx.pgceil.events_per_s)") events/s; the drains of 6 = **$(f2 "$(ratio "$(get sent.events_per_s)" "$(get ref.sent.pgceil.events_per_s)")")× · $(f2 "$(ratio "$(get longtx.events_per_s)" "$(get ref.longtx.pgceil.events_per_s)")")×** these | \`$ref_cmd\` on the same rows pending again (after 6's drain; the sent rows kept) |
| 2b | Ceiling: bare librdkafka production, same sizes | $(n0 "$(get k.kceil.events_per_s)") events/s (CPU $(f1 "$(get k.kceil.cpu_s)") s) | \`outbox-bench kafka-ceiling --topic kafka-ceiling --count $drows --keys $BENCH_KEYS --value-bytes $payload_bytes\` |
| 2c | Drain ÷ lower ceiling ($lower_name) | **$(pct "$clean_eps" "$lower")** | 1 ÷ $([ "$lower_name" = PostgreSQL ] && echo 2a || echo 2b) |
EOF
  for r in $BENCH_LAT_RATES; do
    printf '| 3 | Latency, COMMIT → readable by a consumer, at %s events/s | **p50 %s ms, p99 %s ms, p99.9 %s ms** (max %s; %s samples; achieved %s events/s; writer COMMIT p50 %s ms, p99 %s ms) | `outbox-bench load --topic lat-%s --rate %s --seconds %s --writers %s` with `%s` running |\n' \
      "$(n0 "$r")" "$(f2 "$(get "lat$r.lat.p50_ms")")" "$(f2 "$(get "lat$r.lat.p99_ms")")" \
      "$(f2 "$(get "lat$r.lat.p999_ms")")" "$(f2 "$(get "lat$r.lat.max_ms")")" \
      "$(n0 "$(get "lat$r.load.samples")")" "$(n0 "$(get "lat$r.load.achieved_rate")")" \
      "$(f2 "$(get "lat$r.commit.p50_ms")")" "$(f2 "$(get "lat$r.commit.p99_ms")")" \
      "$r" "$r" "$BENCH_LAT_SECONDS" "$BENCH_LAT_WRITERS" "$relay_cmd"
  done
  for r in $BENCH_LAT_RATES; do
    printf '| 3c | The dev Kafka and the consumer alone (no PostgreSQL, no relay): produce → read, at %s events/s | p50 %s ms, p99 %s ms, p99.9 %s ms (produce → acknowledged p50 %s ms, p99 %s ms; acknowledged → read p50 %s ms, p99 %s ms; %s samples) | `outbox-bench kafka-latency --topic klat-%s --rate %s --seconds %s --keys %s --value-bytes %s` |\n' \
      "$(n0 "$r")" "$(f2 "$(get "klat$r.klat.read.p50_ms")")" "$(f2 "$(get "klat$r.klat.read.p99_ms")")" \
      "$(f2 "$(get "klat$r.klat.read.p999_ms")")" "$(f2 "$(get "klat$r.klat.ack.p50_ms")")" \
      "$(f2 "$(get "klat$r.klat.ack.p99_ms")")" "$(f2 "$(get "klat$r.klat.ack_read.p50_ms")")" \
      "$(f2 "$(get "klat$r.klat.ack_read.p99_ms")")" "$(n0 "$(get "klat$r.klat.read.samples")")" \
      "$r" "$r" "$BENCH_KLAT_SECONDS" "$BENCH_KEYS" "$payload_bytes"
  done
  for c in $BENCH_PGBENCH_CLIENTS; do
    printf '| 4 | Writer transactions/s, %s client%s (median of %s rounds): plain table · outbox, every commit NOTIFYs · outbox, trigger without NOTIFY · outbox with the relay running | %s · %s (%s) · %s (%s) · **%s (%s of plain)** | `pgbench -n -M prepared -c %s -j %s -T %s -f bench/pgbench/writer_{plain,outbox}.sql`; without NOTIFY: `PGOPTIONS="-c outbox_relay.role=relay"` |\n' \
      "$c" "$([ "$c" = 1 ] || echo s)" "$BENCH_PGBENCH_ROUNDS" "$(n0 "$(get "pgb.plain.$c")")" \
      "$(n0 "$(get "pgb.outbox.$c")")" "$(pct "$(get "pgb.outbox.$c")" "$(get "pgb.plain.$c")")" \
      "$(n0 "$(get "pgb.nonotify.$c")")" "$(pct "$(get "pgb.nonotify.$c")" "$(get "pgb.plain.$c")")" \
      "$(n0 "$(get "pgb.relay.$c")")" "$(pct "$(get "pgb.relay.$c")" "$(get "pgb.plain.$c")")" \
      "$c" "$(( c < 2 ? c : 2 ))" "$BENCH_PGBENCH_SECONDS"
  done
  c=$(echo "$BENCH_PGBENCH_CLIENTS" | awk '{ print $NF }')
  printf '| 4 | What %s writers wait on (top 3, share of active backends) | plain: %s · every commit NOTIFYs: %s · without NOTIFY: %s · with the relay running: %s | `outbox-bench waits` (samples pg_stat_activity every 10 ms) |\n' \
    "$c" "$(get "pgbwait.plain.$c")" "$(get "pgbwait.outbox.$c")" "$(get "pgbwait.nonotify.$c")" \
    "$(get "pgbwait.relay.$c")"
  cat <<EOF
| 5 | Relay peak RSS (VmHWM) during drains, by backlog | $(n0 "$BENCH_SMALL_ROWS") rows: $(mb "$(get small.mon.relay_hwm_kb)") · $(n0 "$drows") rows: **$(mb "$(get clean.mon.relay_hwm_kb)")** · $(n0 "$drows") rows after $(n0 "$BENCH_SENT_ROWS") sent: $(mb "$(get sent.mon.relay_hwm_kb)") · under a long transaction: $(mb "$(get longtx.mon.relay_hwm_kb)") | \`outbox-bench monitor\` (/proc/PID/status) |
| 5 | Relay RSS under a steady $(n0 "$BENCH_STEADY_RATE") events/s for $BENCH_STEADY_SECONDS s | peak **$(mb "$(get steady.mon.relay_hwm_kb)")**; RSS over the run: $(series_mb "$(get steady.mon.rss_series_kb)") (achieved $(n0 "$(get steady.load.achieved_rate)") events/s) | \`outbox-bench load --topic steady --rate $BENCH_STEADY_RATE --seconds $BENCH_STEADY_SECONDS --no-consumer\` + \`outbox-bench monitor --seconds $BENCH_STEADY_SECONDS\` |
| 6 | Drain with $(n0 "$BENCH_SENT_ROWS") sent rows in the table ($table_size) | $(n0 "$(get sent.events_per_s)") events/s = **$(pct "$(get sent.events_per_s)" "$clean_eps") of clean** | as 1, after \`INSERT ... 'sent' ... FROM generate_series(1, $BENCH_SENT_ROWS)\` |
| 6 | Drain with a long transaction open in another session | $(n0 "$(get longtx.events_per_s)") events/s = **$(pct "$(get longtx.events_per_s)" "$clean_eps") of clean** | as 1, while \`BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT txid_current(); SELECT pg_sleep(86400)\` runs |
| 7 | Exactly-once: drain, $(n0 "$drows") pending rows, published in Kafka transactions and marked | **$(n0 "$(get eos.events_per_s)") events/s** ($(f1 "$(get eos.mon.elapsed_s)") s) = **$(pct "$(get eos.events_per_s)" "$clean_eps") of the at-least-once drain** (1), $(pct "$(get eos.events_per_s)" "$(get pg.pgceil.events_per_s)") of the PostgreSQL ceiling (2a); relay CPU $(f1 "$(get eos.mon.relay_cpu_s)") s ($(us_per "$(get eos.mon.relay_cpu_s)" "$drows")/event); $(n0 "$(get eos.transactions)") transactions ($(n0 "$(awk -v n="$drows" -v t="$(get eos.transactions)" 'BEGIN { print (t > 0 ? n / t : 0) }')") rows each) | \`$(eos_cmd drain)\`, timed as 1; count checked with \`outbox-bench hwm --topic drain-eos\`, transactions with \`outbox-bench hwm --topic eos-progress-drain\` |
EOF
  for r in $BENCH_EOS_LAT_RATES; do
    printf '| 7 | Exactly-once: latency, COMMIT → its transaction'"'"'s progress record readable, at %s events/s | **p50 %s ms, p99 %s ms, p99.9 %s ms** (max %s; %s samples; achieved %s events/s; %s transactions, %s rows each; data messages alone, readable before the commit on the dev Kafka: p50 %s ms, p99 %s ms; writer COMMIT p50 %s ms, p99 %s ms)%s | `outbox-bench load --topic eos-lat-%s --progress-topic eos-progress-lat-%s --rate %s --seconds %s --writers %s` with `%s` running |\n' \
      "$(n0 "$r")" "$(f2 "$(get "eoslat$r.lat.p50_ms")")" "$(f2 "$(get "eoslat$r.lat.p99_ms")")" \
      "$(f2 "$(get "eoslat$r.lat.p999_ms")")" "$(f2 "$(get "eoslat$r.lat.max_ms")")" \
      "$(n0 "$(get "eoslat$r.load.samples")")" "$(n0 "$(get "eoslat$r.load.achieved_rate")")" \
      "$(n0 "$(get "eoslat$r.progress.records")")" \
      "$(f1 "$(awk -v n="$(get "eoslat$r.load.committed")" -v t="$(get "eoslat$r.progress.records")" 'BEGIN { print (t > 0 ? n / t : 0) }')")" \
      "$(f2 "$(get "eoslat$r.data.p50_ms")")" "$(f2 "$(get "eoslat$r.data.p99_ms")")" \
      "$(f2 "$(get "eoslat$r.commit.p50_ms")")" "$(f2 "$(get "eoslat$r.commit.p99_ms")")" \
      "$([ -n "$(get "lat$r.lat.p50_ms")" ] && echo "; at-least-once (3): p50 $(f2 "$(get "lat$r.lat.p50_ms")") ms, p99 $(f2 "$(get "lat$r.lat.p99_ms")") ms")" \
      "$r" "$r" "$r" "$BENCH_LAT_SECONDS" "$BENCH_LAT_WRITERS" "$(eos_cmd "lat-$r")"
  done
  cat <<EOF

Where the CPU went: CPU seconds over each step. "All PostgreSQL" includes the relay's backend and
the writers' backends; "load generator" is \`outbox-bench load\` (writers and consumer); "other" is
the rest of the machine's busy time (monitoring, kernel work not charged to these processes, and
any other process; the biggest of those by name, CPU seconds, in brackets); "machine busy" is the
share of all $(nproc) CPUs in use.

| step | wall s | relay (its main thread) | relay's PostgreSQL backends | all PostgreSQL | dev Kafka | load generator | other | machine busy | relay + its backends, CPU per event |
|---|---|---|---|---|---|---|---|---|---|
EOF
  cpu_row small "$BENCH_SMALL_ROWS" "drain $(n0 "$BENCH_SMALL_ROWS")"
  cpu_row clean "$drows" "drain $(n0 "$drows") (1)"
  cpu_row sent "$drows" "drain after $(n0 "$BENCH_SENT_ROWS") sent (6)"
  cpu_row longtx "$drows" "drain, long transaction (6)"
  cpu_row eos "$drows" "exactly-once drain $(n0 "$drows") (7)"
  for r in $BENCH_LAT_RATES; do
    cpu_row "lat$r" "$(get "lat$r.load.committed")" "$(n0 "$r") events/s (3)"
  done
  for r in $BENCH_EOS_LAT_RATES; do
    cpu_row "eoslat$r" "$(get "eoslat$r.load.committed")" "exactly-once $(n0 "$r") events/s (7)"
  done
  cpu_row steady "$(get steady.load.committed)" "steady $(n0 "$BENCH_STEADY_RATE") events/s (5)"
  cpu_row idle 0 "idle, no events (3)"
  cat <<EOF

How each figure is measured:

- **Drain** (1, 6): the rows are inserted pending (\`generate_series\`, the same rows each time), then
  VACUUM ANALYZE and CHECKPOINT; the relay starts, and the time runs from its process start (from
  /proc) until a poll every 20 ms finds no pending row. CPU is utime+stime of all the relay's threads
  (/proc/PID/stat); RSS from /proc/PID/status. The topic's high-water offsets (summed over
  partitions; the dev Kafka keeps only the tail of each) must add up to the row count.
- **Ceilings** (2): \`pg-ceiling\` runs \`BEGIN; SELECT <the relay's columns> ... WHERE status = 'pending'
  ORDER BY id LIMIT $batch FOR UPDATE SKIP LOCKED; UPDATE ... SET status = 'sent', sent_at = now(), ...
  WHERE id = ANY(\$1); COMMIT\` in a loop on one connection (prepared, binary results, with the relay's
  session setting so its marks do not NOTIFY), with Kafka idle. \`kafka-ceiling\` produces the same
  number of messages with the relay's producer settings (idempotent, acks=all, linger.ms=0, five
  requests in flight, Nagle off, no compression), the same key format, value size and headers, with PostgreSQL idle. Neither has
  the other's work competing for the CPUs, which the relay has.
- **Latency** (3): writer threads (one connection each) run \`BEGIN; UPDATE bench.accounts ...;
  INSERT INTO outbox.events ... RETURNING id; COMMIT\` on an open-loop schedule spread over the
  writers, and note the time COMMIT returned, by outbox id. A consumer in the same process
  (assigned to every partition at its end offset, fetch.wait.max.ms=1) notes when each message
  arrives, by its \`outbox_id\` header. Latency = arrival − COMMIT return on one monotonic clock; the
  first 2 s are warm-up. The dev Kafka answers an empty fetch only after fetch.wait.max.ms, so up to
  ~1 ms of each figure is the consumer's polling. A row the relay published before its writer
  saw COMMIT return counts as 0. "Achieved" below the offered rate means the writers could not
  commit faster (COMMIT times show why).
- **The dev Kafka alone** (3c): the part of 3 that is neither PostgreSQL nor the relay, measured
  with both idle. One thread produces messages like the relay's (same settings, key, value size
  and headers) on the same open-loop schedule, another serves the delivery reports the moment
  they arrive, and a consumer configured as in 3 notes each arrival. On a real broker a fetch
  waiting for data is answered when the data comes; the dev Kafka answers it empty after
  fetch.wait.max.ms and the consumer asks again, which is most of "acknowledged → read" here.
- **Writer cost** (4): the same transaction through pgbench; the plain table is outbox.events'
  definition (\`LIKE ... INCLUDING ALL\`: columns, defaults, identity, CHECKs, indexes) without the
  trigger. "Every commit NOTIFYs": no relay runs and outbox.relay_state says the relay waits, so
  the trigger calls pg_notify in every transaction, whose commit then takes a database-wide lock
  held through the WAL flush (waits show as Lock:object). "Without NOTIFY": the trigger runs with
  the relay's session setting and skips pg_notify. "With the relay running": the real case, the
  relay draining the rows on the same CPUs and deciding when writers notify. The four variants
  take turns, $BENCH_PGBENCH_ROUNDS rounds of $BENCH_PGBENCH_SECONDS s each (one run varies by about ±15% here); each
  figure is the median of its rounds (each round, transactions/s: $(for c in $BENCH_PGBENCH_CLIENTS; do printf '%s clients: plain %s, with the relay %s; ' "$c" "$(rounds "pgbrounds.plain.$c")" "$(rounds "pgbrounds.relay.$c")"; done | sed 's/; $//')).
- **Memory** (5): VmHWM of the relay process over each drain and over the steady load, and VmRSS
  sampled every second during the steady load (12 points shown). The steady load has no
  consumer: librdkafka's mock cluster finds a fetch offset by walking its partition log from the
  start ("FIXME: Maintain an index" in rdkafka_mock.c), so a consumer's cost grows with the
  retained log (up to 5 MiB a partition) and would starve the relay of CPU over 10 minutes. The
  60-second latency runs stay well short of that, but part of their dev Kafka CPU is this walk.
- **Exactly-once** (7): the relay runs with \`--exactly-once\`, each step with its own transactional
  id and progress topic (one partition). The drain is timed as 1 on the same rows, so it includes
  every transaction's commit and the marking after the last one; the transactions are counted by
  the progress topic's high-water offset (one record each, committed or aborted; the dev Kafka
  writes no transaction markers). Latency: the dev Kafka (librdkafka $rdk_version's mock cluster)
  does not implement read_committed, so messages of open or aborted transactions are readable at
  once and a consumer of the data topic would understate the latency. The consumer also reads
  partition 0 of the progress topic from its end, and a row arrives when the progress record
  listing it arrives; the relay produces that record last in its transaction, after the delivery
  report of every data message in it, then commits. On a real broker a read_committed consumer
  sees the rows only once the commit is done, which adds at least the EndTxn round trip to the
  transaction coordinator and its markers on every partition of the transaction: not in these
  figures. Writers, schedule and warm-up are as in 3. The consumer reads the data messages too,
  as a real one would; their latency is what a consumer ignoring transactions would see on the
  dev Kafka, and they check the run: $(eos_checks).
EOF
}

# ---- the brokers side by side (the steps run on each: 1, 3, 3c, 7) ----
b_name() { [ -z "$1" ] && echo "dev Kafka" || echo "Apache Kafka"; }
gc_note() { # step: "; JVM GC: ..." when the step ran on Apache Kafka
  local g
  g=$(get "$1.gc")
  [ -n "$g" ] || return 0
  set -- $g
  printf '; JVM GC: %s pause%s, %s ms in all, longest %s ms' "$1" "$([ "$1" = 1 ] || echo s)" "$2" "$3"
}
cell_drain() {
  [ -n "$(get "$1.events_per_s")" ] || { echo —; return; }
  printf '**%s events/s** (%s s); relay CPU %s/event; load %s' "$(n0 "$(get "$1.events_per_s")")" \
    "$(f1 "$(get "$1.mon.elapsed_s")")" "$(us_per "$(get "$1.mon.relay_cpu_s")" "$BENCH_DRAIN_ROWS")" \
    "$(get "$1.loadavg")"
}
failed_note() { [ -z "$(get "$1.failed")" ] || printf '**failed**: %s; ' "$(get "$1.failed")"; }
cell_lat() {
  [ -n "$(get "$1.lat.p50_ms")" ] || { echo —; return; }
  failed_note "$1"
  printf '**p50 %s, p99 %s, p99.9 %s ms** (max %s; %s samples; achieved %s events/s; %s lost, %s twice; load %s%s)' \
    "$(f2 "$(get "$1.lat.p50_ms")")" "$(f2 "$(get "$1.lat.p99_ms")")" "$(f2 "$(get "$1.lat.p999_ms")")" \
    "$(f2 "$(get "$1.lat.max_ms")")" "$(n0 "$(get "$1.load.samples")")" \
    "$(n0 "$(get "$1.load.achieved_rate")")" "$(n0 "$(get "$1.load.missing")")" \
    "$(n0 "$(get "$1.load.duplicates")")" "$(get "$1.loadavg")" "$(gc_note "$1")"
  split_note "$1"
}
# BENCH_LAT_TRACE=1: each step's p99 (outbox-bench split), where the latency went.
split_note() {
  [ -n "$(get "$1.split.total.p99_ms")" ] || return 0
  printf '; p99 by step (ms): wake-up %s, fetch held %s, fetch %s, produce %s, delivery report %s, read %s' \
    "$(f2 "$(get "$1.split.commit_to_wanted.p99_ms")")" "$(f2 "$(get "$1.split.wanted_to_sent.p99_ms")")" \
    "$(f2 "$(get "$1.split.sent_to_fetched.p99_ms")")" "$(f2 "$(get "$1.split.fetched_to_produced.p99_ms")")" \
    "$(f2 "$(get "$1.split.produced_to_report.p99_ms")")" "$(f2 "$(get "$1.split.report_to_read.p99_ms")")"
}
cell_klat() {
  [ -n "$(get "$1.klat.read.p50_ms")" ] || { echo —; return; }
  printf 'p50 %s, p99 %s, p99.9 %s ms (produce → acknowledged p50 %s, p99 %s; acknowledged → read p50 %s, p99 %s; load %s%s)' \
    "$(f2 "$(get "$1.klat.read.p50_ms")")" "$(f2 "$(get "$1.klat.read.p99_ms")")" \
    "$(f2 "$(get "$1.klat.read.p999_ms")")" "$(f2 "$(get "$1.klat.ack.p50_ms")")" \
    "$(f2 "$(get "$1.klat.ack.p99_ms")")" "$(f2 "$(get "$1.klat.ack_read.p50_ms")")" \
    "$(f2 "$(get "$1.klat.ack_read.p99_ms")")" "$(get "$1.loadavg")" "$(gc_note "$1")"
}
cell_eos() {
  [ -n "$(get "$1.events_per_s")" ] || { echo —; return; }
  local p=${1%eos}
  printf '**%s events/s** (%s s) = %s of the at-least-once drain; %s transactions; relay CPU %s/event; load %s' \
    "$(n0 "$(get "$1.events_per_s")")" "$(f1 "$(get "$1.mon.elapsed_s")")" \
    "$(pct "$(get "$1.events_per_s")" "$(get "${p}clean.events_per_s")")" \
    "$(n0 "$(get "$1.transactions")")" "$(us_per "$(get "$1.mon.relay_cpu_s")" "$BENCH_DRAIN_ROWS")" \
    "$(get "$1.loadavg")"
}
cell_eoslat() {
  [ -n "$(get "$1.lat.p50_ms")" ] || { echo —; return; }
  failed_note "$1"
  printf '**p50 %s, p99 %s, p99.9 %s ms** (max %s; %s samples; achieved %s events/s; %s transactions, %s rows each; %s never read, %s read twice; load %s%s)' \
    "$(f2 "$(get "$1.lat.p50_ms")")" "$(f2 "$(get "$1.lat.p99_ms")")" "$(f2 "$(get "$1.lat.p999_ms")")" \
    "$(f2 "$(get "$1.lat.max_ms")")" "$(n0 "$(get "$1.load.samples")")" \
    "$(n0 "$(get "$1.load.achieved_rate")")" "$(n0 "$(get "$1.progress.records")")" \
    "$(f1 "$(awk -v n="$(get "$1.load.committed")" -v t="$(get "$1.progress.records")" 'BEGIN { print (t > 0 ? n / t : 0) }')")" \
    "$(n0 "$(get "$1.load.missing")")" "$(n0 "$(get "$1.load.duplicates")")" "$(get "$1.loadavg")" \
    "$(gc_note "$1")"
}
b_row() { # number label cell-function step
  local line="| $1 | $2 |" p
  for p in "${cols[@]}"; do line+=" $($3 "$p$4") |"; done
  echo "$line"
}

brokers_report() {
  local cols=() heads="" seps="" r p
  if [ $use_mock = 1 ]; then
    cols+=("")
    heads+=" dev Kafka (librdkafka $rdk_version mock, $BENCH_KAFKA_BROKERS brokers) |"
    seps+="---|"
  fi
  if [ $use_apache = 1 ]; then
    cols+=("ak.")
    heads+=" Apache Kafka $ak_version ($BENCH_APACHE_NODES node$([ "$BENCH_APACHE_NODES" = 1 ] || echo s)) |"
    seps+="---|"
  fi
  cat <<EOF

## The brokers side by side

The same steps, data and commands against each broker, one after the other (the dev Kafka's
part first, then Apache Kafka's, each broker stopped before the next starts). "load" is the
machine's load average (1, 5, 15 min) as the step began: **this machine is shared, and a load
above ~1 means other work competed with the step for the $(nproc) CPUs**.

| # | figure |$heads
|---|---|$seps
EOF
  b_row 1 "Drain, $(n0 "$BENCH_DRAIN_ROWS") pending rows, published and marked" cell_drain clean
  for r in $BENCH_LAT_RATES; do
    b_row 3 "Latency, COMMIT → readable by a consumer, at $(n0 "$r") events/s" cell_lat "lat$r"
  done
  for r in $BENCH_LAT_RATES; do
    b_row 3c "The broker and the consumer alone (no PostgreSQL, no relay): produce → read, at $(n0 "$r") events/s" cell_klat "klat$r"
  done
  b_row 7 "Exactly-once: drain, $(n0 "$BENCH_DRAIN_ROWS") pending rows, in Kafka transactions" cell_eos eos
  for r in $BENCH_EOS_LAT_RATES; do
    b_row 7 "Exactly-once: latency, COMMIT → readable, at $(n0 "$r") events/s (dev Kafka: its transaction's progress record read; Apache Kafka: the row read by a read_committed consumer)" cell_eoslat "eoslat$r"
  done
  cat <<EOF

Commands (the same for each broker; \`\$K\` is the broker of the step):

- 1: \`$relay_cmd\`, timed from its start until no row is pending by \`outbox-bench monitor --drain\`; count checked with \`outbox-bench hwm --topic drain-clean\`. A drain of $(n0 "$BENCH_SMALL_ROWS") rows runs first on each broker (warm-up: PostgreSQL's caches, the JVM's JIT).
- 3: \`outbox-bench load --topic lat-RATE --rate RATE --seconds $BENCH_LAT_SECONDS --writers $BENCH_LAT_WRITERS --keys $BENCH_KEYS\` with \`$relay_cmd\` running; its consumer reads with isolation.level=read_committed and fetch.wait.max.ms=1 on both brokers.
- 3c: \`outbox-bench kafka-latency --topic klat-RATE --rate RATE --seconds $BENCH_KLAT_SECONDS --keys $BENCH_KEYS --value-bytes $payload_bytes\`.
- 7: \`$(eos_cmd drain)\` timed as 1 (transactions: the progress topic's high-water offset, halved on Apache Kafka, which writes a commit marker after each record); latency with \`$(eos_cmd lat-RATE)\` running and, on the dev Kafka, \`outbox-bench load --topic eos-lat-RATE --progress-topic eos-progress-lat-RATE ...\` (it has no read_committed: a row arrives with the progress record listing it, before the commit), on Apache Kafka \`outbox-bench load --topic eos-lat-RATE --isolation read_committed ...\` (a row arrives when it is readable, i.e. after the commit and its markers).
EOF
  if [ $use_apache = 1 ]; then
    cat <<EOF
- Apache Kafka: \`bench/apache.sh\` formats each node with Kafka's storage tool and starts \`java $BENCH_KAFKA_JVM_OPTS -cp '<jars>/*' kafka.Kafka server.properties\` (KRaft, combined broker and controller, on 127.0.0.1, replication factor $BENCH_APACHE_NODES, broker defaults otherwise: no fsync per message, as Kafka's default); the topics are made with \`outbox-bench topics --replication $BENCH_APACHE_NODES NAME:$BENCH_PARTITIONS ... eos-progress-...:1:compact\`. GC pauses from the broker's \`-Xlog:gc\`.
EOF
  fi
  cat <<EOF

Where the CPU went, per broker: CPU seconds over each step, as in the full run's CPU table
("broker" is the dev Kafka process or Apache Kafka's JVM$([ "$BENCH_APACHE_NODES" = 1 ] || echo ', node 1 only'); "other" is the rest of the
machine's busy time, the biggest other processes by name in brackets):

| step | wall s | relay (its main thread) | relay's PostgreSQL backends | all PostgreSQL | broker | load generator | other | machine busy | relay + its backends, CPU per event |
|---|---|---|---|---|---|---|---|---|---|
EOF
  for p in "${cols[@]}"; do
    cpu_row "${p}clean" "$BENCH_DRAIN_ROWS" "$(b_name "$p"): drain $(n0 "$BENCH_DRAIN_ROWS") (1)"
    for r in $BENCH_LAT_RATES; do
      cpu_row "${p}lat$r" "$(get "${p}lat$r.load.committed")" "$(b_name "$p"): $(n0 "$r") events/s (3)"
    done
    cpu_row "${p}eos" "$BENCH_DRAIN_ROWS" "$(b_name "$p"): exactly-once drain (7)"
    for r in $BENCH_EOS_LAT_RATES; do
      cpu_row "${p}eoslat$r" "$(get "${p}eoslat$r.load.committed")" "$(b_name "$p"): exactly-once $(n0 "$r") events/s (7)"
    done
    cpu_row "${p}idle" 0 "$(b_name "$p"): idle, no events (3)"
  done
  cat <<EOF

Reading the two columns (bench/README.md has more):

- **Same measurement, different broker.** The writers, the relay (its defaults: idempotent,
  acks=all, linger.ms=0, five requests in flight; one with --exactly-once), the consumer (fetch.wait.max.ms=1,
  fetch.min.bytes=1) and the clock are the same. The dev Kafka answers a waiting fetch only when
  fetch.wait.max.ms runs out, Apache Kafka as soon as data arrives; Apache Kafka writes each
  partition's log to the page cache and serves it through its request threads, in a JVM.
- **Exactly-once is not measured the same way, because the dev Kafka cannot be.** Its figure is
  a lower bound (the progress record is read before the relay commits); Apache Kafka's is the
  real one: the EndTxn round trip, the coordinator writing the commit markers to every
  partition of the transaction, and the read_committed consumer's fetch after the last stable
  offset moved.
- **$BENCH_APACHE_NODES Apache Kafka node$([ "$BENCH_APACHE_NODES" = 1 ] || echo s) against $BENCH_KAFKA_BROKERS mock brokers.** The mock's brokers live in one
  process and replicate nothing; with one Apache Kafka node acks=all is the leader's own write,
  so neither column includes replication. One node also means one connection, so the relay's
  five requests in flight (one with --exactly-once) are shared by all $BENCH_PARTITIONS partitions (the mock spreads them over
  $BENCH_KAFKA_BROKERS connections). BENCH_APACHE_NODES=3 measures three JVMs on the same CPUs.
EOF
}

mkdir -p "$(dirname "$out")"
report | tee "$out.tmp"
mv "$out.tmp" "$out"
log "table written to $out"
