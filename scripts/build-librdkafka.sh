#!/bin/bash
# Builds librdkafka 2.8.0 (Debian 13's source tarball) against Debian 12's own
# -dev packages and installs it into a cache prefix, once: later runs find it
# there and return at once. Prints the prefix, for
#   cmake -DOUTBOX_RDKAFKA_PREFIX="$(scripts/build-librdkafka.sh)" ...
# Why: Debian 12's librdkafka 2.0.2 cannot log in with SCRAM to Kafka 4.x
# (librdkafka #4895, fixed in 2.6.1). Nothing is fetched but the tarball, whose
# sha256 is checked; needs (as root: apt-get install --no-install-recommends)
#   build-essential pkg-config curl libssl-dev libsasl2-dev zlib1g-dev libzstd-dev liblz4-dev
#   scripts/build-librdkafka.sh [--tarball FILE] [--prefix DIR] [--jobs N]
# FILE: an already downloaded copy (still checked). DIR defaults to
# $OUTBOX_RDKAFKA_CACHE/librdkafka-<version>, where OUTBOX_RDKAFKA_CACHE
# defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/outbox-relay.
set -euo pipefail
version=2.8.0
sha256=5bd1c46f63265f31c6bfcedcde78703f77d28238eadf23821c2b43fc30be3e25
url=http://deb.debian.org/debian/pool/main/libr/librdkafka/librdkafka_${version}.orig.tar.gz
# Every feature named, so that a missing -dev package fails the configure
# instead of silently building a library without it. libcurl (OIDC token
# fetching, which the relay does not use) is left out: one dependency fewer.
configure_opts=(--enable-ssl --enable-gssapi --enable-zlib --enable-zstd
                --enable-lz4-ext --enable-regex-ext --disable-curl)
tarball=""
prefix=""
jobs=$(nproc 2>/dev/null || echo 2)
while [ $# -gt 0 ]; do
  case $1 in
    --tarball) tarball=${2:?--tarball needs a file}; shift ;;
    --prefix) prefix=${2:?--prefix needs a directory}; shift ;;
    --jobs) jobs=${2:?--jobs needs a number}; shift ;;
    *) echo "usage: $0 [--tarball FILE] [--prefix DIR] [--jobs N]" >&2; exit 2 ;;
  esac
  shift
done
cache=${OUTBOX_RDKAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/outbox-relay}
: "${prefix:=$cache/librdkafka-$version}"
case $prefix in /*) ;; *) prefix=$PWD/$prefix ;; esac
# The tarball's digest and the options mark a complete build: changing either
# builds again.
stamp="$sha256 ${configure_opts[*]}"
if [ "$(cat "$prefix/.built" 2>/dev/null)" = "$stamp" ] && [ -f "$prefix/lib/pkgconfig/rdkafka.pc" ]; then
  echo "$prefix"
  exit 0
fi
for tool in cc make pkg-config sha256sum tar; do
  command -v $tool >/dev/null || { echo "$0: $tool not found (run scripts/install-deps.sh)" >&2; exit 1; }
done
# Name the missing -dev packages at once rather than leave it to configure.
missing=()
for pc in libssl libsasl2 zlib libzstd liblz4; do
  pkg-config --exists "$pc" || missing+=("$pc")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "$0: pkg-config finds no ${missing[*]}: install libssl-dev libsasl2-dev zlib1g-dev libzstd-dev liblz4-dev" >&2
  exit 1
fi
# The prefix is emptied before installing: never one that holds anything
# but an earlier build of this script (say --prefix /usr/local).
if [ -e "$prefix" ] && [ ! -f "$prefix/.built" ] && [ -n "$(ls -A "$prefix" 2>/dev/null)" ]; then
  echo "$0: $prefix is not empty and was not made by this script: choose another --prefix" >&2
  exit 1
fi
mkdir -p "$cache"
if [ -z "$tarball" ]; then
  tarball=$cache/librdkafka_${version}.orig.tar.gz
  if ! echo "$sha256  $tarball" | sha256sum -c --status 2>/dev/null; then
    command -v curl >/dev/null || { echo "$0: curl not found (run scripts/install-deps.sh)" >&2; exit 1; }
    curl -fsSL --retry 3 -o "$tarball.part" "$url" || { echo "$0: could not download $url" >&2; rm -f "$tarball.part"; exit 1; }
    mv "$tarball.part" "$tarball"
  fi
fi
if ! echo "$sha256  $tarball" | sha256sum -c --status; then
  echo "$0: $tarball does not have the sha256 $sha256 of librdkafka_${version}.orig.tar.gz" >&2
  exit 1
fi
start=$(date +%s)
work=$(mktemp -d "$cache/librdkafka-build.XXXXXX")
# The prefix is written in place (librdkafka's rdkafka.pc names it), so a
# failed install must not leave a half prefix that looks usable.
trap 'rm -rf "$work"' EXIT
tar xzf "$tarball" -C "$work"
src=$work/librdkafka-$version
[ -x "$src/configure" ] || { echo "$0: $tarball has no librdkafka-$version/configure" >&2; exit 1; }
log=$work/build.log
rm -rf "$prefix"
# Only the C library (src/): the relay does not use librdkafka++.
if ! ( cd "$src" && ./configure --prefix="$prefix" "${configure_opts[@]}" \
       && make -j"$jobs" -C src \
       && make -C src install ) >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  rm -rf "$prefix"
  echo "$0: building librdkafka $version failed (the last lines of the build are above)" >&2
  exit 1
fi
# A library that links and reports the version, not only files.
cat > "$work/v.c" <<'EOF'
#include <librdkafka/rdkafka.h>
#include <stdio.h>
int main(void) { puts(rd_kafka_version_str()); return 0; }
EOF
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
# shellcheck disable=SC2046
cc -o "$work/v" "$work/v.c" $(pkg-config --cflags --libs rdkafka) -Wl,-rpath,"$prefix/lib"
got=$("$work/v")
if [ "$got" != "$version" ]; then
  rm -rf "$prefix"
  echo "$0: the built library reports version \"$got\", not $version" >&2
  exit 1
fi
echo "$stamp" > "$prefix/.built"
echo "$0: librdkafka $version built into $prefix in $(( $(date +%s) - start )) s" >&2
echo "$prefix"
