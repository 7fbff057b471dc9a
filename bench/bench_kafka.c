/* outbox-bench kafka-ceiling and hwm: the bare librdkafka ceiling of a drain
 * (idempotent, acks=all, the relay's producer defaults, the outbox's key,
 * value and header sizes), and the count check of a topic (sum of its
 * high-water offsets: the dev Kafka keeps only the tail of each partition). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <librdkafka/rdkafka.h>

#include "bench.h"

#define KC_MAX_PROPS 32

struct kc_counts {
        long delivered, failed;
        char first_error[256];
};

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        struct kc_counts *c = opaque;

        (void)rk;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                c->delivered++;
        } else {
                if (c->failed++ == 0)
                        snprintf(c->first_error, sizeof(c->first_error), "%s",
                                 rd_kafka_err2str(m->err));
        }
}

/* A client handle with bootstrap.servers and the given properties; with a
 * delivery report callback, a producer with the relay's settings first (-X
 * may override them, except idempotence and acks). */
static rd_kafka_t *make_client(rd_kafka_type_t type, const char *brokers, char **props, int nprops,
                               bench_dr_fn *dr, void *opaque, char *errbuf, size_t errsz)
{
        static const char *const relay_like[][2] = {
            {"message.timeout.ms", "0"},
            {"enable.gapless.guarantee", "true"},
            {"linger.ms", "0"},
            {"max.in.flight.requests.per.connection", "5"},
            {"socket.nagle.disable", "true"},
            {"queue.buffering.max.messages", "1000000"},
            {"compression.type", "none"},
        };
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_t *rk;

        if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errbuf, errsz) ||
            rd_kafka_conf_set(conf, "client.id", "outbox-bench", errbuf, errsz) ||
            /* Not the warning that enable.gapless.guarantee is experimental. */
            rd_kafka_conf_set(conf, "log_level", "3", errbuf, errsz))
                goto fail;
        if (dr != NULL) {
                for (size_t i = 0; i < sizeof(relay_like) / sizeof(relay_like[0]); i++)
                        if (rd_kafka_conf_set(conf, relay_like[i][0], relay_like[i][1], errbuf,
                                              errsz))
                                goto fail;
                for (int i = 0; i < nprops; i++) {
                        char name[256], *eq = strchr(props[i], '=');

                        if (eq == NULL || (size_t)(eq - props[i]) >= sizeof(name)) {
                                snprintf(errbuf, errsz, "-X wants NAME=VALUE");
                                goto fail;
                        }
                        memcpy(name, props[i], (size_t)(eq - props[i]));
                        name[eq - props[i]] = '\0';
                        if (rd_kafka_conf_set(conf, name, eq + 1, errbuf, errsz))
                                goto fail;
                }
                if (rd_kafka_conf_set(conf, "enable.idempotence", "true", errbuf, errsz) ||
                    rd_kafka_conf_set(conf, "acks", "all", errbuf, errsz))
                        goto fail;
                rd_kafka_conf_set_opaque(conf, opaque);
                rd_kafka_conf_set_dr_msg_cb(conf, dr);
        }
        rk = rd_kafka_new(type, conf, errbuf, errsz);
        if (rk == NULL)
                goto fail;
        return rk;
fail:
        rd_kafka_conf_destroy(conf);
        return NULL;
}

rd_kafka_t *bench_kafka_producer(const char *brokers, char **props, int nprops, bench_dr_fn *dr,
                                 void *opaque, char *errbuf, size_t errsz)
{
        return make_client(RD_KAFKA_PRODUCER, brokers, props, nprops, dr, opaque, errbuf, errsz);
}

/* How an outbox-like value starts: its 10-digit order id follows. */
static const char value_head[] = "{\"order_id\": ";

char *bench_value_new(long value_bytes)
{
        static const char mid[] = ", \"note\": \"";
        char *value = malloc((size_t)value_bytes + 1);

        if (value == NULL)
                return NULL;
        /* {"order_id": NNNNNNNNNN, "note": "xxx..."} of exactly value_bytes. */
        memset(value, 'x', (size_t)value_bytes);
        memcpy(value, value_head, sizeof(value_head) - 1);
        memcpy(value + sizeof(value_head) - 1 + 10, mid, sizeof(mid) - 1);
        memcpy(value + value_bytes - 2, "\"}", 2);
        value[value_bytes] = '\0';
        return value;
}

rd_kafka_resp_err_t bench_produce(rd_kafka_t *rk, const char *topic, char *value, long value_bytes,
                                  long i, long keys, void *msg_opaque)
{
        char key[32], eid[48], oid[24], digits[24];

        snprintf(digits, sizeof(digits), "%010ld", i % 10000000000L);
        memcpy(value + sizeof(value_head) - 1, digits, 10);
        snprintf(key, sizeof(key), "customer-%ld", i % keys);
        snprintf(eid, sizeof(eid), "00000000-0000-4000-8000-%012ld", i);
        snprintf(oid, sizeof(oid), "%ld", i);
        return rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(value, (size_t)value_bytes),
            RD_KAFKA_V_HEADER("event_id", eid, (ssize_t)strlen(eid)),
            RD_KAFKA_V_HEADER("event_type", "order.updated", 13),
            RD_KAFKA_V_HEADER("outbox_id", oid, (ssize_t)strlen(oid)),
            RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
}

static int produce_all(rd_kafka_t *rk, const char *topic, long count, long keys, long value_bytes,
                       struct kc_counts *c, char *errbuf, size_t errsz)
{
        char *value = bench_value_new(value_bytes);
        int64_t deadline;
        int rc = -1;

        if (value == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                return -1;
        }
        for (long i = 1; i <= count; i++) {
                rd_kafka_resp_err_t err;

                for (;;) {
                        err = bench_produce(rk, topic, value, value_bytes, i, keys, NULL);
                        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                                break;
                        rd_kafka_poll(rk, 1);
                }
                if (err) {
                        snprintf(errbuf, errsz, "produce: %s", rd_kafka_err2str(err));
                        goto out;
                }
                if (i % 1000 == 0)
                        rd_kafka_poll(rk, 0);
        }
        deadline = bench_now_ns(CLOCK_MONOTONIC) + 600 * (int64_t)1000000000;
        while (c->delivered + c->failed < count && bench_now_ns(CLOCK_MONOTONIC) < deadline)
                rd_kafka_poll(rk, 100);
        if (c->delivered + c->failed < count) {
                snprintf(errbuf, errsz, "only %ld of %ld delivery reports within 600 s",
                         c->delivered + c->failed, count);
                goto out;
        }
        if (c->failed > 0) {
                snprintf(errbuf, errsz, "%ld deliveries failed, first: %s", c->failed,
                         c->first_error);
                goto out;
        }
        rc = 0;
out:
        free(value);
        return rc;
}

int bench_cmd_kafka_ceiling(int argc, char **argv)
{
        static const struct option opts[] = {{"brokers", required_argument, NULL, 'b'},
                                             {"topic", required_argument, NULL, 't'},
                                             {"count", required_argument, NULL, 'n'},
                                             {"keys", required_argument, NULL, 'k'},
                                             {"value-bytes", required_argument, NULL, 'v'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
        const char *brokers = getenv("OUTBOX_KAFKA_BROKERS"), *topic = NULL;
        char *props[KC_MAX_PROPS], errbuf[512];
        long count = 0, keys = 1000, value_bytes = 500;
        struct kc_counts counts = {0};
        rd_kafka_t *rk = NULL;
        struct rusage ru;
        int64_t t0, t1;
        int opt, nprops = 0, rc = 1;

        while ((opt = getopt_long(argc, argv, "X:h", opts, NULL)) != -1) {
                switch (opt) {
                case 'b':
                        brokers = optarg;
                        break;
                case 't':
                        topic = optarg;
                        break;
                case 'n':
                case 'k':
                case 'v':
                        if (bench_parse_long(optarg, opt == 'v' ? 64 : 1, 1000000000L,
                                             opt == 'n'   ? &count
                                             : opt == 'k' ? &keys
                                                          : &value_bytes) != 0) {
                                fprintf(stderr, "kafka-ceiling: bad number '%s'\n", optarg);
                                return 2;
                        }
                        break;
                case 'X':
                        if (nprops == KC_MAX_PROPS) {
                                fprintf(stderr, "kafka-ceiling: too many -X\n");
                                return 2;
                        }
                        props[nprops++] = optarg;
                        break;
                case 'h':
                        printf("usage: outbox-bench kafka-ceiling --brokers B --topic T --count N"
                               " [--keys K] [--value-bytes V] [-X name=value]...\n");
                        return 0;
                default:
                        return 2;
                }
        }
        if (brokers == NULL || topic == NULL || count == 0) {
                fprintf(stderr, "kafka-ceiling: --brokers, --topic and --count are required\n");
                return 2;
        }
        rk = bench_kafka_producer(brokers, props, nprops, dr_cb, &counts, errbuf, sizeof(errbuf));
        if (rk == NULL)
                goto out;
        t0 = bench_now_ns(CLOCK_MONOTONIC);
        if (produce_all(rk, topic, count, keys, value_bytes, &counts, errbuf, sizeof(errbuf)) != 0)
                goto out;
        t1 = bench_now_ns(CLOCK_MONOTONIC);
        getrusage(RUSAGE_SELF, &ru);
        printf("kceil.messages %ld\nkceil.seconds %.3f\nkceil.events_per_s %.0f\n"
               "kceil.cpu_s %.2f\n",
               counts.delivered, (double)(t1 - t0) / 1e9,
               (double)counts.delivered / ((double)(t1 - t0) / 1e9),
               (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                   (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
        rc = 0;
out:
        if (rc != 0)
                fprintf(stderr, "kafka-ceiling: %s\n", errbuf);
        if (rk != NULL)
                rd_kafka_destroy(rk);
        return rc;
}

int bench_cmd_hwm(int argc, char **argv)
{
        static const struct option opts[] = {{"brokers", required_argument, NULL, 'b'},
                                             {"topic", required_argument, NULL, 't'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
        const char *brokers = getenv("OUTBOX_KAFKA_BROKERS"), *topic = NULL;
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = NULL;
        rd_kafka_t *rk = NULL;
        rd_kafka_resp_err_t err;
        char errbuf[512];
        long long sum = 0;
        int opt, rc = 1;

        while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (opt) {
                case 'b':
                        brokers = optarg;
                        break;
                case 't':
                        topic = optarg;
                        break;
                case 'h':
                        printf("usage: outbox-bench hwm --brokers B --topic T\n");
                        return 0;
                default:
                        return 2;
                }
        }
        if (brokers == NULL || topic == NULL) {
                fprintf(stderr, "hwm: --brokers and --topic are required\n");
                return 2;
        }
        rk = make_client(RD_KAFKA_PRODUCER, brokers, NULL, 0, NULL, NULL, errbuf, sizeof(errbuf));
        if (rk == NULL)
                goto out;
        rkt = rd_kafka_topic_new(rk, topic, NULL);
        err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        if (err || md->topic_cnt != 1 || md->topics[0].err) {
                snprintf(errbuf, sizeof(errbuf), "metadata of %s: %s", topic,
                         rd_kafka_err2str(err ? err : md->topics[0].err));
                goto out;
        }
        for (int p = 0; p < md->topics[0].partition_cnt; p++) {
                int64_t lo, hi;

                err = rd_kafka_query_watermark_offsets(rk, topic, md->topics[0].partitions[p].id,
                                                       &lo, &hi, 10000);
                if (err) {
                        snprintf(errbuf, sizeof(errbuf), "watermarks of %s [%d]: %s", topic,
                                 md->topics[0].partitions[p].id, rd_kafka_err2str(err));
                        goto out;
                }
                sum += hi;
        }
        printf("hwm.partitions %d\nhwm.sum %lld\n", md->topics[0].partition_cnt, sum);
        rc = 0;
out:
        if (rc != 0)
                fprintf(stderr, "hwm: %s\n", errbuf);
        if (md != NULL)
                rd_kafka_metadata_destroy(md);
        if (rkt != NULL)
                rd_kafka_topic_destroy(rkt);
        if (rk != NULL)
                rd_kafka_destroy(rk);
        return rc;
}
