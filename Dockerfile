# Multi-stage build of outbox-relay on Debian slim: build with the -dev
# packages, ship only the runtime libraries, run as a non-root user.
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config \
      librdkafka-dev libpq-dev libjansson-dev libmicrohttpd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake cmake
COPY include include
COPY src src
COPY sql sql
COPY tools tools
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DOUTBOX_TESTS=OFF \
 && cmake --build build -j"$(nproc)" --target outbox-relay

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends librdkafka1 libpq5 libjansson4 libmicrohttpd12 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin outbox
COPY --from=build /src/build/outbox-relay /usr/local/bin/outbox-relay
USER 10001
ENTRYPOINT ["/usr/local/bin/outbox-relay"]
CMD ["run"]
