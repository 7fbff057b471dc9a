# outbox-bench charts: draws the run's latency distributions and CPU per event by rate as PNG
# files beside the Markdown table (gnuplot, Debian's gnuplot-nox), from the raw data of this run
# in $work. Sourced by bench/report.sh; charts() prints the Markdown that links them.

# "OUT-NAME.png" beside $out: latest.md -> latest-latency.png.
chart_path() { echo "${out%.md}-$1.png"; }

# A CDF of one sorted sample file, as at most 1,000 "ms fraction" points.
cdf_points() { # samples-file
  awk '{ v[NR] = $1 } END { if (NR == 0) exit; step = NR > 1000 ? NR / 1000 : 1
    for (i = step; i <= NR + 0.5; i += step) { k = int(i + 0.5); if (k > NR) k = NR; if (k < 1) k = 1
      printf "%s %.5f\n", v[k], k / NR } }' "$1"
}

# One latency CDF chart: prefix of the sample files (lat, eoslat), rates, title, file name.
latency_chart() { # kind rates title name
  local kind=$1 rates=$2 p r f plot="" dt png lc
  png=$(chart_path "$4")
  for p in "${tcols[@]}"; do
    lc=0 # one colour per rate, the same on both brokers
    for r in $rates; do
      lc=$((lc + 1))
      f=$work/${p}$kind$r.samples
      [ -s "$f" ] || continue
      cdf_points "$f" >"$work/$p$kind$r.cdf"
      dt=$([ -z "$p" ] && echo 1 || echo 2)
      plot+="${plot:+, }'$work/$p$kind$r.cdf' using (\$1 < 0.01 ? 0.01 : \$1):2 with lines dt $dt lc $lc lw 2 title '$(b_name "$p"), $(n0 "$r")/s'"
    done
  done
  [ -n "$plot" ] || return 1
  gnuplot <<EOF 2>>"$work/gnuplot.log" || return 1
set terminal pngcairo size 900,540 font ",10"
set output '$png'
set title "$3"
set logscale x
set xlabel 'COMMIT → readable by the consumer, ms (log scale)'
set ylabel 'share of events at or below'
set yrange [0:1]
set grid
set key bottom right
plot $plot
EOF
  echo "$png"
}

# CPU per event (the relay and its PostgreSQL backends) by offered rate, per broker, with the
# issue's targets as points.
cpu_chart() {
  local p r ev plot="" png f lc=0
  png=$(chart_path cpu)
  for p in "${tcols[@]}"; do
    lc=$((lc + 1)) # one colour per broker
    f=$work/${p}cpu.dat
    : >"$f"
    for r in $BENCH_LAT_RATES; do
      ev=$(get "${p}lat$r.load.committed")
      [ "${ev:-0}" -gt 0 ] 2>/dev/null || continue
      awk -v r="$r" -v a="$(get "${p}lat$r.mon.relay_cpu_s")" -v b="$(get "${p}lat$r.mon.backend_cpu_s")" \
        -v n="$ev" 'BEGIN { printf "%s %.2f %.2f\n", r, 1e6 * (a + b) / n, 1e6 * a / n }' >>"$f"
    done
    [ -s "$f" ] || continue
    plot+="${plot:+, }'$f' using 1:2 with linespoints lc $lc lw 2 pt 7 title '$(b_name "$p"): relay + its backends'"
    plot+=", '$f' using 1:3 with linespoints lc $lc dt 2 pt 6 title '$(b_name "$p"): relay process alone'"
  done
  [ -n "$plot" ] || return 1
  printf '100 500\n1000 100\n' >"$work/cpu-targets.dat"
  gnuplot <<EOF 2>>"$work/gnuplot.log" || return 1
set terminal pngcairo size 900,540 font ",10"
set output '$png'
set title 'Relay CPU per event by offered rate (latency steps, 3)'
set logscale xy
set xrange [50:20000]
set offsets 0, 0, graph 0.1, graph 0.1
set xlabel 'offered rate, events/s (log scale)'
set ylabel 'CPU µs per event (log scale)'
set grid
set key top right
plot $plot, '$work/cpu-targets.dat' using 1:2 with points pt 9 ps 2 lc rgb 'red' title 'target (issue #18)'
EOF
  echo "$png"
}

charts() {
  local made=() png
  if ! command -v gnuplot >/dev/null; then
    printf '\nCharts: not drawn, gnuplot is not installed (scripts/install-deps.sh installs gnuplot-nox).\n'
    return 0
  fi
  png=$(latency_chart lat "$BENCH_LAT_RATES" "Latency distribution, at-least-once (3): solid the dev Kafka, dashed Apache Kafka" latency) &&
    made+=("[latency, at-least-once]($(basename "$png"))")
  png=$(latency_chart eoslat "$BENCH_EOS_LAT_RATES" "Latency distribution, exactly-once (7): dev Kafka to its progress record, Apache Kafka read_committed" latency-eos) &&
    made+=("[latency, exactly-once]($(basename "$png"))")
  png=$(cpu_chart) && made+=("[CPU per event by rate]($(basename "$png"))")
  [ ${#made[@]} -gt 0 ] || { printf '\nCharts: none drawn (%s).\n' "$(tail -1 "$work/gnuplot.log" 2>/dev/null)"; return 0; }
  echo
  echo "## Charts"
  echo
  echo "Drawn by bench/charts.sh (gnuplot) from this run's samples (\`outbox-bench load --samples FILE\`: every latency after the warm-up) and CPU figures: $(printf '%s · ' "${made[@]}" | sed 's/ · $//')."
  echo
  for png in "${made[@]}"; do
    echo "!${png}"
    echo
  done
}
