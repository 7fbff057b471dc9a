#!/bin/bash
# Installs what building, running and testing outbox-relay needs on Debian 12
# (as root). Safe to run again: apt skips what is already there.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(build-essential cmake pkg-config git
      librdkafka-dev libpq-dev libjansson-dev libmicrohttpd-dev check
      postgresql-15 kcat python3-kafka curl
      # tests/integration/test_tls.c: the test CA and server certificate
      openssl
      # tests/packaging: the Helm chart renderer and `docker-compose config`
      golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev
      docker-compose python3-yaml
      # fault tests: libFuzzer (clang's runtime) and valgrind
      clang libclang-rt-14-dev valgrind
      # the tests against Apache Kafka: its broker runs on Java 17, and
      # Maven fetches it from Maven Central (scripts/kafka-fetch.sh)
      openjdk-17-jre-headless maven
      # scripts/build-librdkafka.sh: librdkafka 2.8.0 for SCRAM against
      # Kafka 4.x (scripts/test.sh's last stage, docs/security.md)
      libssl-dev libsasl2-dev zlib1g-dev libzstd-dev liblz4-dev
      # bench/run.sh: its PNG charts (bench/charts.sh)
      gnuplot-nox)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  # The server package's own cluster is not used (the scripts run throwaway
  # ones), so keep the package from creating and starting one.
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/outbox-relay.conf
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
