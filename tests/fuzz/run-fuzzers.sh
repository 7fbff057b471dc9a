#!/bin/bash
# Builds the libFuzzer targets of the parsers that take outside input
# (configuration, routing rules, header JSON) with clang and ASan+UBSan,
# replays each one's regression corpus (tests/fuzz/corpus/<name>/), then
# fuzzes each for a bounded time. Exits 77 (ctest: skipped) without clang's
# libFuzzer (Debian: clang, libclang-rt-14-dev).
#   tests/fuzz/run-fuzzers.sh [--build-dir DIR] [--seconds N] [--replay-only] [NAME...]
# A crash leaves DIR/crash-<name>-*; copy it into tests/fuzz/corpus/<name>/
# once fixed, so every later run replays it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$root/build-fuzz
secs=20
replay_only=0
names=()
while [ $# -gt 0 ]; do
        case $1 in
        --build-dir) dir=$2; shift 2 ;;
        --seconds) secs=$2; shift 2 ;;
        --replay-only) replay_only=1; shift ;;
        -*) echo "usage: $0 [--build-dir DIR] [--seconds N] [--replay-only] [NAME...]" >&2; exit 2 ;;
        *) names+=("$1"); shift ;;
        esac
done
[ ${#names[@]} -gt 0 ] || names=(config route headers)

cc=$(command -v clang || true)
if [ -z "$cc" ] || [ ! -f "$("$cc" -print-file-name=libclang_rt.fuzzer-x86_64.a)" ]; then
        echo "clang with libFuzzer not found (apt-get install clang libclang-rt-14-dev): skipped"
        exit 77
fi
mkdir -p "$dir"
cflags=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        -std=c11 -D_GNU_SOURCE -DOUTBOX_VERSION=\"fuzz\" -I"$root/include"
        $(pkg-config --cflags libpq rdkafka jansson))
libs=($(pkg-config --libs libpq rdkafka jansson))

sources() {
        case $1 in
        config) echo "$root/src/config.c $root/src/config_args.c $root/src/config_table.c" \
                "$root/src/config_value.c $root/src/config_file.c $root/src/route.c" \
                "$root/src/kafka_conf.c $root/src/log.c $root/src/config_envelope.c" ;;
        route) echo "$root/src/route.c" ;;
        headers) echo "$root/src/message.c" ;;
        *) echo "unknown fuzz target $1" >&2; exit 2 ;;
        esac
}

status=0
for name in "${names[@]}"; do
        bin=$dir/fuzz_$name
        corpus=$root/tests/fuzz/corpus/$name
        # shellcheck disable=SC2046
        "$cc" "${cflags[@]}" -o "$bin" "$root/tests/fuzz/fuzz_$name.c" $(sources "$name") "${libs[@]}"
        echo "== fuzz_$name: replaying $(ls "$corpus" | wc -l) corpus inputs"
        if ! "$bin" -runs=0 "$corpus" >"$dir/replay-$name.log" 2>&1; then
                tail -40 "$dir/replay-$name.log"
                echo "fuzz_$name: a corpus input fails (see above)"
                status=1
                continue
        fi
        [ $replay_only = 1 ] && continue
        work=$dir/corpus-$name
        rm -rf "$work"
        mkdir -p "$work"
        echo "== fuzz_$name: fuzzing for ${secs}s"
        # New inputs go to $work only; the source corpus is read, not written.
        if ! "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
                -artifact_prefix="$dir/crash-$name-" "$work" "$corpus" >"$dir/fuzz-$name.log" 2>&1; then
                tail -60 "$dir/fuzz-$name.log"
                echo "fuzz_$name found a crash: $(ls "$dir"/crash-"$name"-* 2>/dev/null | head -3)"
                echo "keep it as a regression input: cp <file> $corpus/"
                status=1
                continue
        fi
        grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$dir/fuzz-$name.log" | tr '\n' ' '
        echo
done
exit $status
