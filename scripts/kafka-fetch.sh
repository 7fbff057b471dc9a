#!/bin/bash
# Fetches Apache Kafka (the broker, its storage tool and the console consumer,
# the version tests/kafka/pom.xml names) with its runtime dependencies from
# Maven Central into a cache directory, once: later runs find it there and
# return at once. Prints the directory. Needs Maven and Java 17
# (scripts/install-deps.sh).
#   scripts/kafka-fetch.sh [--dest DIR]
# DIR defaults to $OUTBOX_KAFKA_CACHE/kafka-<version>, where OUTBOX_KAFKA_CACHE
# defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/outbox-relay.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pom=$root/tests/kafka/pom.xml
version=$(sed -n 's:.*<kafka.version>\([^<]*\)</kafka.version>.*:\1:p' "$pom")
[ -n "$version" ] || { echo "$0: no <kafka.version> in $pom" >&2; exit 1; }
dest=""
while [ $# -gt 0 ]; do
  case $1 in
    --dest) dest=${2:?--dest needs a directory}; shift ;;
    *) echo "usage: $0 [--dest DIR]" >&2; exit 2 ;;
  esac
  shift
done
cache=${OUTBOX_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/outbox-relay}
: "${dest:=$cache/kafka-$version}"
# The pom's digest marks a complete fetch: a changed pom fetches again.
stamp=$(sha256sum "$pom" | cut -c1-16)
if [ "$(cat "$dest/.fetched" 2>/dev/null)" = "$stamp" ]; then
  echo "$dest"
  exit 0
fi
for tool in mvn java; do
  command -v $tool >/dev/null || { echo "$0: $tool not found (run scripts/install-deps.sh)" >&2; exit 1; }
done
mkdir -p "$(dirname "$dest")"
tmp=$(mktemp -d "$dest.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
if ! mvn -B -q -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
     -DoutputDirectory="$tmp" >&2; then
  echo "$0: Maven could not fetch org.apache.kafka:kafka_2.13:$version and its dependencies (see above)" >&2
  exit 1
fi
jar=$tmp/kafka_2.13-$version.jar
[ -f "$jar" ] || { echo "$0: $jar is missing after the fetch" >&2; exit 1; }
# A broker that runs, not only jars: the broker's own version check.
if ! got=$(java -cp "$tmp/*" kafka.Kafka --version 2>/dev/null | head -n 1) || [ "${got%% *}" != "$version" ]; then
  echo "$0: the fetched broker does not run: java -cp '$tmp/*' kafka.Kafka --version printed \"${got:-nothing}\"" >&2
  exit 1
fi
echo "$stamp" > "$tmp/.fetched"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "$0: Apache Kafka $version fetched into $dest in $(( $(date +%s) - start )) s" >&2
echo "$dest"
