#!/bin/bash
# Builds outbox-relay and runs the whole test suite twice: an optimised build,
# then under AddressSanitizer and UBSan; then the Kafka SASL_SSL cases once
# more against librdkafka 2.8.0, where SCRAM logs in to Kafka 4.x (Debian 12's
# 2.0.2 cannot: docs/security.md). Installs its own dependencies.
# Tests run OUTBOX_CTEST_JOBS (default 2) at a time: most of their time is
# spent waiting on a broker, a database or an injected outage, not on the
# CPU; tests/CMakeLists.txt keeps apart what must not overlap, and
# docs/development.md says what runs where.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)
ctest_jobs=${OUTBOX_CTEST_JOBS:-2}
# librdkafka 2.8.0 for the last stage (built once into a cache: later runs
# find it there at once) builds in the background, niced, while the first
# two stages run: one to three minutes saved on a fresh machine.
rdk_out=$(mktemp)
nice bash scripts/build-librdkafka.sh --jobs 1 >"$rdk_out" &
rdk_pid=$!
trap 'kill "$rdk_pid" 2>/dev/null || true; rm -f "$rdk_out"' EXIT
for variant in release asan; do
  dir=build-test-$variant
  flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DOUTBOX_TEST_HOOKS=ON)
  [ $variant = asan ] && flags=(-DCMAKE_BUILD_TYPE=Debug -DOUTBOX_SANITIZE=ON -DOUTBOX_TEST_HOOKS=ON)
  cmake -S . -B "$dir" "${flags[@]}" >/dev/null
  cmake --build "$dir" -j "$jobs"
  echo "== tests ($variant) =="
  (cd "$dir" && ctest --output-on-failure --timeout 900 -j "$ctest_jobs")
done
echo "== tests (librdkafka 2.8.0: SASL_SSL and SCRAM against Apache Kafka) =="
wait "$rdk_pid" || { echo "scripts/build-librdkafka.sh failed (its messages are above)" >&2; exit 1; }
prefix=$(cat "$rdk_out")
dir=build-test-rdkafka28
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOUTBOX_TEST_HOOKS=ON \
  -DOUTBOX_RDKAFKA_PREFIX="$prefix" >/dev/null
cmake --build "$dir" -j "$jobs" --target outbox-relay test_apache_security
(cd "$dir" && ctest --output-on-failure --timeout 900 -R '^apache_kafka_(fetch|security)$')
