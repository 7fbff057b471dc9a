#!/bin/bash
# Builds outbox-relay and runs the whole test suite twice: an optimised build,
# then under AddressSanitizer and UBSan. Installs its own dependencies.
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
