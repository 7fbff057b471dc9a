# Container image of outbox-relay: built on Debian slim with the -dev
# packages, shipped with only the shared libraries the binary links, run as a
# non-root user. tests/packaging/check_dockerfile.py checks both package lists.
#
#   docker build -t outbox-relay .
#   docker run --rm outbox-relay --help

# Both stages must be the same Debian release: the runtime packages provide
# exactly the sonames the build stage linked against.
ARG DEBIAN_RELEASE=bookworm

FROM debian:${DEBIAN_RELEASE}-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      librdkafka-dev libpq-dev libjansson-dev libmicrohttpd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the build reads, so edits to docs, tests or the chart do not
# invalidate the compile layer.
COPY CMakeLists.txt ./
COPY cmake cmake
COPY include include
COPY src src
COPY sql sql
COPY tools tools
# Only the relay: no tests, no benchmark tools (their directories are not copied).
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DOUTBOX_TESTS=OFF -DOUTBOX_BENCH=OFF \
 && cmake --build build -j"$(nproc)" --target outbox-relay \
 && strip build/outbox-relay

FROM debian:${DEBIAN_RELEASE}-slim
LABEL org.opencontainers.image.title="outbox-relay" \
      org.opencontainers.image.description="PostgreSQL transactional-outbox relay to Kafka"
# Runtime libraries only (their own dependencies, e.g. libssl3 and libsasl2
# for librdkafka, come with them); ca-certificates for TLS to Kafka (librdkafka
# uses the system bundle) and, when named, to PostgreSQL.
#
# PostgreSQL TLS: bookworm's libpq is 15, which has no sslrootcert=system
# (16+). With sslmode=verify-ca/verify-full and no sslrootcert it looks for
# ~/.postgresql/root.crt, and HOME here is /nonexistent, so name the CA:
# sslrootcert=/path in the URL or PGSSLROOTCERT=/path, a mounted file
# (the chart: database.tls), or the system bundle
# /etc/ssl/certs/ca-certificates.crt for a server with a public CA.
# PGSSLROOTCERT is deliberately not set here: once a root certificate file
# exists libpq verifies the chain even with sslmode=require (then failing
# against a private CA) and, with the default sslmode=prefer, would fall back
# to an unencrypted connection when the verification fails.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      librdkafka1 libpq5 libjansson4 libmicrohttpd12 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 outbox \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin outbox
COPY --from=build /src/build/outbox-relay /usr/local/bin/outbox-relay
# Fail the image build, not the first start, if a shared library is missing.
RUN ! ldd /usr/local/bin/outbox-relay | grep 'not found' \
 && /usr/local/bin/outbox-relay --version
# Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
# The HTTP listener (/metrics, /healthz, /readyz) when OUTBOX_HTTP_LISTEN is set.
EXPOSE 9400
# The relay handles SIGTERM itself (graceful drain), also as PID 1.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/outbox-relay"]
CMD ["run"]
