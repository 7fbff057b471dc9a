#!/bin/bash
# Builds outbox-relay and runs the whole test suite twice: an optimised build,
# then under AddressSanitizer and UBSan; then the Kafka SASL_SSL cases once
# more against librdkafka 2.8.0, where SCRAM logs in to Kafka 4.x (Debian 12's
# 2.0.2 cannot: docs/security.md). Installs its own dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)
for variant in release asan; do
  dir=build-test-$variant
  flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DOUTBOX_TEST_HOOKS=ON)
  [ $variant = asan ] && flags=(-DCMAKE_BUILD_TYPE=Debug -DOUTBOX_SANITIZE=ON -DOUTBOX_TEST_HOOKS=ON)
  cmake -S . -B "$dir" "${flags[@]}" >/dev/null
  cmake --build "$dir" -j "$jobs"
  echo "== tests ($variant) =="
  (cd "$dir" && ctest --output-on-failure --timeout 900)
done
echo "== tests (librdkafka 2.8.0: SASL_SSL and SCRAM against Apache Kafka) =="
prefix=$(bash scripts/build-librdkafka.sh --jobs "$jobs")
dir=build-test-rdkafka28
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOUTBOX_TEST_HOOKS=ON \
  -DOUTBOX_RDKAFKA_PREFIX="$prefix" >/dev/null
cmake --build "$dir" -j "$jobs" --target outbox-relay test_apache_security
(cd "$dir" && ctest --output-on-failure --timeout 900 -R '^apache_kafka_(fetch|security)$')
