#!/bin/bash
# The long run: 1,000,000 events (OUTBOX_LONGRUN_EVENTS) through the relay,
# half as one backlog and half streamed by writer threads, with the relay's
# RSS sampled; too long for CI, run by hand. Writes BUILD_DIR/longrun.md,
# which scripts/fault-report.sh puts into docs/FAULTS.md.
#   tests/longrun.sh [BUILD_DIR]   (default build-test-release)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-test-release}
events=${OUTBOX_LONGRUN_EVENTS:-1000000}
if [ ! -f "$build/CMakeCache.txt" ]; then
        cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" -j "$(nproc)" --target test_longrun
report=$build/longrun.tsv
rm -f "$report"
start=$(date +%s)
status=0
(cd "$build/tests" && OUTBOX_LONGRUN_EVENTS=$events OUTBOX_FAULT_REPORT=$report ./test_longrun) ||
        status=$?
took=$(( $(date +%s) - start ))
[ -s "$report" ] || { echo "$0: the long run wrote no report" >&2; exit 1; }
{
        echo "Run on $(date -u +%Y-%m-%d) by \`tests/longrun.sh\` ($events events, ${took}s in all,"
        echo "release build, $(nproc) cores):"
        echo
        bash "$root/scripts/fault-report.sh" --table "$report" /dev/null
} > "$build/longrun.md"
cat "$build/longrun.md"
exit $status
