/* kafka_conf: every librdkafka configuration the relay builds: the
 * producer's defaults and required properties, the progress reader's, and
 * the checks of the user's -X properties (config_validate runs them). */
#include "kafka_conf.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"

/* ---- The producer ---- */

/* Settings the relay chooses unless the user set them with -X. */
static const char *const producer_defaults[][2] = {
    {"client.id", "outbox-relay"},
    /* Never give up on a message by time: while Kafka is down rows wait
     * in order instead of failing, and a timed-out message can never let
     * a later message of its key overtake it. */
    {"message.timeout.ms", "0"},
    /* Any error that could leave a gap in a partition stops the
     * producer; the relay rebuilds it and republishes in id order. */
    {"enable.gapless.guarantee", "true"},
    /* No linger: a row goes out at once. Five requests in flight per
     * broker, the most the idempotent producer keeps in order: librdkafka
     * sends one Produce request per partition, so with one in flight a
     * fetch of rows for n partitions of one broker waited n round trips,
     * one after the other, and on a loaded machine a slow answer held every
     * partition (and, through --pipeline-depth, the next fetch): at 1,000
     * events/s on one Apache Kafka node the median went from tens of ms to
     * a few (bench/README.md, "Producer pipelining"). Order within a
     * partition rests on the broker checking the idempotent sequence
     * numbers, as Apache Kafka does (its fault cases pass so, leader
     * failover included); librdkafka's mock cluster does not, and its
     * produce-error cases pin one request in flight. Per-key order across
     * a refused request never rested on that check: the producer may send
     * the next request between the refusal and its fatal error, and a
     * broker may take it (Apache Kafka when the refused request was a new
     * producer id's first): relay_fail.c then dead-letters the refused row
     * rather than publish it after a later row of its key. */
    {"linger.ms", "0"},
    {"max.in.flight.requests.per.connection", "5"},
    /* Requests are written whole, so Nagle's algorithm only holds one
     * back while an earlier one is unacknowledged, which with requests in
     * flight can be a delayed ACK's 40 ms. */
    {"socket.nagle.disable", "true"},
    {"queue.buffering.max.messages", "1000000"},
    {"compression.type", "none"},
    {"statistics.interval.ms", "5000"}, /* queue depth and broker RTT for the metrics */
    /* After an outage, try the brokers again within a second: with the
     * default (10 s) a recovered cluster may sit unused for 10 s. */
    {"reconnect.backoff.max.ms", "1000"},
    /* A row's topic comes from any writer: a typo or a hostile name must
     * not create a topic on brokers that allow it (librdkafka's producer
     * asks them to by default). The row fails as an unknown topic. */
    {"allow.auto.create.topics", "false"},
    /* A key goes to the partition Kafka's Java producer picks (murmur2),
     * so taking over from Debezium or a Java service keeps each key on its
     * partition; rows without a key go to random partitions, as Java's
     * spread them. -X partitioner=consistent_random (librdkafka's CRC32)
     * keeps an older relay's placement (docs/delivery.md#partitions). */
    {"partitioner", "murmur2_random"},
};

/* Settings the relay requires, set after -X (kafka_conf_validate refuses
 * other values of the first two; log.queue is the producer's business). */
static const char *const producer_required[][2] = {
    {"enable.idempotence", "true"},
    {"acks", "all"},
    {"log.queue", "true"},
};

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errbuf,
                    size_t errsz)
{
        char err[512];

        if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
                snprintf(errbuf, errsz, "kafka property %s: %s", name, err);
                return -1;
        }
        return 0;
}

/* --exactly-once: a transactional producer. A message may not outlive its
 * transaction (librdkafka's default for message.timeout.ms then), and an
 * error that could leave a gap aborts the transaction (everything in it is
 * sent again) instead of needing enable.gapless.guarantee. It keeps one
 * request in flight: a request still on its way when a transaction is
 * aborted or its producer replaced can land after the abort, and five
 * make that likelier; its latency is the transaction's cadence anyway. */
static int transactional_conf(const struct config *cfg, rd_kafka_conf_t *conf, char *errbuf,
                              size_t errsz)
{
        char tid[300], ms[16];

        snprintf(ms, sizeof(ms), "%d", cfg->transaction_timeout_ms);
        if (conf_set(conf, "transactional.id", kafka_conf_transactional_id(cfg, tid, sizeof(tid)),
                     errbuf, errsz) != 0 ||
            conf_set(conf, "transaction.timeout.ms", ms, errbuf, errsz) != 0)
                return -1;
        return 0;
}

const char *kafka_conf_transactional_id(const struct config *cfg, char *buf, size_t bufsz)
{
        if (cfg->transactional_id != NULL)
                snprintf(buf, bufsz, "%s", cfg->transactional_id);
        else
                snprintf(buf, bufsz, "outbox-relay.%s", cfg->schema);
        return buf;
}

rd_kafka_conf_t *kafka_conf_producer(const struct config *cfg, char *errbuf, size_t errsz)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        size_t i;

        for (i = 0; i < sizeof(producer_defaults) / sizeof(producer_defaults[0]); i++) {
                const char *name = producer_defaults[i][0], *value = producer_defaults[i][1];

                if (cfg->exactly_once && (strcmp(name, "message.timeout.ms") == 0 ||
                                          strcmp(name, "enable.gapless.guarantee") == 0))
                        continue; /* see transactional_conf */
                if (cfg->exactly_once && strcmp(name, "max.in.flight.requests.per.connection") == 0)
                        value = "1"; /* see transactional_conf */
                if (conf_set(conf, name, value, errbuf, errsz) != 0)
                        goto fail;
        }
        if (cfg->kafka_brokers != NULL &&
            conf_set(conf, "bootstrap.servers", cfg->kafka_brokers, errbuf, errsz) != 0)
                goto fail;
        for (i = 0; i < cfg->n_kafka_props; i++) {
                char ignored[512];

                /* librdkafka's message quotes the value, which may be a
                 * credential; config_validate has explained bad ones already. */
                if (rd_kafka_conf_set(conf, cfg->kafka_props[i].name, cfg->kafka_props[i].value,
                                      ignored, sizeof(ignored)) != RD_KAFKA_CONF_OK) {
                        snprintf(errbuf, errsz, "kafka property %s was rejected",
                                 cfg->kafka_props[i].name);
                        goto fail;
                }
        }
        for (i = 0; i < sizeof(producer_required) / sizeof(producer_required[0]); i++)
                if (conf_set(conf, producer_required[i][0], producer_required[i][1], errbuf,
                             errsz) != 0)
                        goto fail;
        if (cfg->exactly_once && transactional_conf(cfg, conf, errbuf, errsz) != 0)
                goto fail;
        return conf;
fail:
        rd_kafka_conf_destroy(conf);
        return NULL;
}

/* ---- The progress reader (a read_committed consumer) ---- */

/* What the progress reader needs, set after the -X properties. */
static const char *const reader_required[][2] = {
    {"enable.auto.commit", "false"},
    {"enable.auto.offset.store", "false"},
    {"isolation.level", "read_committed"},
    {"enable.partition.eof", "true"},
    {"allow.auto.create.topics", "false"}, /* where the broker obeys it (see locate) */
    {"auto.offset.reset", "earliest"},     /* compaction may have moved the start past ours */
    {"log.queue", "false"},                /* log_cb on librdkafka's threads: log is safe there */
    {"fetch.wait.max.ms", "100"},          /* at the end, how long a Fetch waits for the EOF */
};

rd_kafka_conf_t *kafka_conf_reader(const struct config *cfg, struct log *lg, char *errbuf,
                                   size_t errsz)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[512];
        size_t i;

        if (cfg->kafka_brokers != NULL &&
            rd_kafka_conf_set(conf, "bootstrap.servers", cfg->kafka_brokers, err, sizeof(err))) {
                snprintf(errbuf, errsz, "progress reader: kafka property bootstrap.servers: %s",
                         err);
                goto fail;
        }
        for (i = 0; i < cfg->n_kafka_props; i++) {
                /* librdkafka's message may quote the value (a credential
                 * perhaps), so only the name is logged. */
                if (rd_kafka_conf_set(conf, cfg->kafka_props[i].name, cfg->kafka_props[i].value,
                                      err, sizeof(err)) != RD_KAFKA_CONF_OK)
                        log_debug(lg, "progress reader ignores a kafka property", "{s:s}",
                                  "property", cfg->kafka_props[i].name);
        }
        for (i = 0; i < sizeof(reader_required) / sizeof(reader_required[0]); i++) {
                if (rd_kafka_conf_set(conf, reader_required[i][0], reader_required[i][1], err,
                                      sizeof(err)) != RD_KAFKA_CONF_OK) {
                        snprintf(errbuf, errsz, "progress reader: kafka property %s: %s",
                                 reader_required[i][0], err);
                        goto fail;
                }
        }
        return conf;
fail:
        rd_kafka_conf_destroy(conf);
        return NULL;
}

/* ---- Validation of -X ---- */

int kafka_conf_is_secret(const char *name)
{
        return strstr(name, "password") != NULL || strstr(name, "secret") != NULL ||
               strstr(name, "jaas") != NULL || strstr(name, "key.pem") != NULL ||
               strstr(name, "oauthbearer.config") != NULL;
}

static int conf_is(rd_kafka_conf_t *conf, const char *name, const char *want)
{
        char buf[64];
        size_t sz = sizeof(buf);

        return rd_kafka_conf_get(conf, name, buf, &sz) == RD_KAFKA_CONF_OK &&
               strcmp(buf, want) == 0;
}

/* Properties the relay sets itself or that would break its guarantees. */
static const char *owned_reason(const char *name)
{
        if (strcmp(name, "bootstrap.servers") == 0 || strcmp(name, "metadata.broker.list") == 0)
                return "use --kafka-brokers (OUTBOX_KAFKA_BROKERS) instead";
        if (strcmp(name, "transactional.id") == 0)
                return "use --transactional-id with --exactly-once instead";
        if (strcmp(name, "delivery.report.only.error") == 0)
                return "the relay needs a delivery report for every message to mark rows sent";
        return NULL;
}

int kafka_conf_validate(const struct config *cfg, char *errbuf, size_t errsz)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        int rc = -1;
        char kerr[512];

        for (size_t i = 0; i < cfg->n_kafka_props; i++) {
                const char *name = cfg->kafka_props[i].name, *why = owned_reason(name);
                rd_kafka_conf_res_t res;
                size_t len;

                if (why != NULL) {
                        snprintf(errbuf, errsz, "librdkafka property %s cannot be set: %s", name,
                                 why);
                        goto out;
                }
                res = rd_kafka_conf_set(conf, name, cfg->kafka_props[i].value, kerr, sizeof(kerr));
                len = strlen(kerr);
                while (len > 0 && isspace((unsigned char)kerr[len - 1]))
                        kerr[--len] = '\0';
                if (res == RD_KAFKA_CONF_UNKNOWN) {
                        snprintf(errbuf, errsz, "unknown librdkafka property \"%s\"", name);
                        goto out;
                }
                if (res != RD_KAFKA_CONF_OK) {
                        /* librdkafka quotes the value, which may be a credential:
                         * any value read from a file counts as one. */
                        if (kafka_conf_is_secret(name) || cfg->kafka_props[i].from_file)
                                snprintf(errbuf, errsz,
                                         "invalid value for librdkafka property %s (value not "
                                         "shown)",
                                         name);
                        else
                                snprintf(errbuf, errsz, "librdkafka property %s: %s", name, kerr);
                        goto out;
                }
                if (strcmp(name, "enable.idempotence") == 0 &&
                    !conf_is(conf, "enable.idempotence", "true")) {
                        snprintf(errbuf, errsz,
                                 "librdkafka property enable.idempotence must stay true: retries "
                                 "must not duplicate or reorder messages");
                        goto out;
                }
                if ((strcmp(name, "acks") == 0 || strcmp(name, "request.required.acks") == 0) &&
                    !conf_is(conf, "request.required.acks", "-1")) {
                        snprintf(errbuf, errsz,
                                 "librdkafka property %s must be all (or -1): a row is marked "
                                 "sent only when every in-sync replica has it",
                                 name);
                        goto out;
                }
        }
        rc = 0;
out:
        rd_kafka_conf_destroy(conf);
        return rc;
}
