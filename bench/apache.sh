# outbox-relay benchmark: Apache Kafka as a target (sourced by bench/run.sh). Starts KRaft
# combined broker/controller nodes from the jars scripts/kafka-fetch.sh keeps (the version
# tests/kafka/pom.xml names), as tests/fixture_apache_kafka.c does: properties, Kafka's own
# storage tool, JVMs on 127.0.0.1; stops them and removes their directory at the end.

ak_version=$(sed -n 's:.*<kafka.version>\([^<]*\)</kafka.version>.*:\1:p' "$repo/tests/kafka/pom.xml")
ak_libs=${BENCH_KAFKA_LIBS:-${OUTBOX_TEST_KAFKA_LIBS:-${OUTBOX_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/outbox-relay}/kafka-$ak_version}}
# Kafka's own start-script defaults (kafka-server-start.sh, kafka-run-class.sh): a 1 GB heap
# and G1 with 20 ms pause goals, which is how users run it; the tests' fixture uses smaller
# heaps and the serial collector to save memory, which would put collector pauses in the tail.
: "${BENCH_KAFKA_JVM_OPTS:=-server -Xms1g -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent}"
: "${BENCH_APACHE_NODES:=1}" "${BENCH_KAFKA_PROPS:=}"
ak_pids=() ak_dir="" AK=""

ak_available() { [ -n "$ak_version" ] && [ -r "$ak_libs/kafka_2.13-$ak_version.jar" ] && command -v java >/dev/null; }

# A port nothing listens on, below the kernel's range for outgoing connections (a port one of
# those holds cannot be bound either); checked by connecting, and not one handed out already.
# Sets ak_port (no subshell, so that the ports handed out are remembered).
ak_free_port() {
  local p lo
  lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  while :; do
    p=$(( 10000 + RANDOM % (lo - 10000) ))
    [[ " ${ak_ports_taken:-} " == *" $p "* ]] && continue
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    ak_ports_taken+=" $p"
    ak_port=$p
    return
  done
}

# A cluster id as Kafka's storage tool makes them: 16 random bytes, base64url, no padding; not
# starting with '-', which the tool would take for an option.
ak_cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [ "${id:0:1}" != - ] && { echo "$id"; return; }
  done
}


ak_start() {
  local n=$BENCH_APACHE_NODES rf min_isr cid i voters="" ports=() cports=() d props
  [ "$n" = 1 ] || [ "$n" = 3 ] || die "BENCH_APACHE_NODES must be 1 or 3, not $n"
  rf=$n; min_isr=$(( n > 1 ? 2 : 1 ))
  ak_dir=$work/apache-kafka
  mkdir -p "$ak_dir"
  cid=$(ak_cluster_id)
  for i in $(seq "$n"); do
    ak_free_port; ports[i]=$ak_port
    ak_free_port; cports[i]=$ak_port
    voters+="${voters:+,}$i@127.0.0.1:${cports[i]}"
    AK+="${AK:+,}127.0.0.1:${ports[i]}"
  done
  for i in $(seq "$n"); do
    d=$ak_dir/node$i props=$ak_dir/node$i/server.properties
    mkdir -p "$d"
    {
      echo "# written by bench/apache.sh"
      echo "process.roles=broker,controller"
      echo "node.id=$i"
      echo "controller.listener.names=CONTROLLER"
      echo "inter.broker.listener.name=PLAINTEXT"
      echo "controller.quorum.voters=$voters"
      echo "listeners=PLAINTEXT://127.0.0.1:${ports[i]},CONTROLLER://127.0.0.1:${cports[i]}"
      echo "advertised.listeners=PLAINTEXT://127.0.0.1:${ports[i]}"
      echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
      echo "log.dirs=$d/data"
      # The benchmark creates its topics (outbox-bench topics), as the relay cannot.
      echo "auto.create.topics.enable=false"
      echo "default.replication.factor=$rf"
      echo "min.insync.replicas=$min_isr"
      echo "offsets.topic.replication.factor=$rf"
      echo "offsets.topic.num.partitions=4"
      echo "transaction.state.log.replication.factor=$rf"
      echo "transaction.state.log.min.isr=$min_isr"
      echo "transaction.state.log.num.partitions=4"
      echo "group.initial.rebalance.delay.ms=0"
      tr ' ' '\n' <<<"$BENCH_KAFKA_PROPS" | sed '/^$/d'
    } >"$props"
    java -Djava.awt.headless=true -Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
      -Dlog4j2.configurationFile="$repo/tests/kafka/log4j2-tools.properties" -cp "$ak_libs/*" \
      kafka.tools.StorageTool format -t "$cid" -c "$props" >"$d/format.log" 2>&1 ||
      die "Apache Kafka's storage tool could not format node $i: $(tail -3 "$d/format.log")"
  done
  for i in $(seq "$n"); do
    d=$ak_dir/node$i
    # The JVM itself is the background job (no subshell between), so that $! is the broker's pid
    # for the CPU figures.
    # shellcheck disable=SC2086
    java -Djava.awt.headless=true $BENCH_KAFKA_JVM_OPTS -Dkafka.logs.dir="$d" \
      -Dlog4j2.configurationFile="$repo/tests/kafka/log4j2.properties" \
      "-Xlog:gc:file=$d/gc.log:uptime" -cp "$ak_libs/*" kafka.Kafka "$d/server.properties" \
      </dev/null >"$d/stdout.log" 2>&1 &
    ak_pids[i]=$!
  done
  kafka_pid=${ak_pids[1]}
}

# Creates topics (NAME:PARTITIONS[:compact]) on the running nodes; the first call also waits
# for them to start.
ak_topics() {
  "$OB" topics --brokers "$AK" --replication "$BENCH_APACHE_NODES" --wait-s 180 "$@" \
    >"$work/ak-topics.out" 2>"$work/ak-topics.log" ||
    die "Apache Kafka: $(tail -2 "$work/ak-topics.log"); node 1 log: $(tail -5 "$ak_dir/node1/server.log" 2>/dev/null)"
}

ak_stop() {
  local p
  for p in "${ak_pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
  ak_pids=()
}

# GC pauses of node 1 since line $1 of its gc.log: "count total_ms max_ms".
ak_gc_since() {
  tail -n +"$(( $1 + 1 ))" "$ak_dir/node1/gc.log" 2>/dev/null |
    awk '/Pause/ && match($0, /[0-9.]+ms$/) { v = substr($0, RSTART, RLENGTH - 2) + 0; n++; t += v; if (v > m) m = v }
         END { printf "%d %.1f %.1f\n", n, t, m }'
}
ak_gc_mark() { wc -l <"$ak_dir/node1/gc.log" 2>/dev/null || echo 0; }
