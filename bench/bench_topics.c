/* outbox-bench topics: creates the benchmark's topics on a real broker
 * (Apache Kafka: the relay sets allow.auto.create.topics=false, and the dev
 * Kafka makes its own at start) through the Admin API, and waits until
 * every partition has a leader. Also the readiness check of a fresh broker. */
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "bench.h"

#define TOPICS_MAX 128

struct topic_spec {
        char name[200];
        int partitions;
        int compact;
};

/* "name:partitions[:compact]"; 0 or -1. */
static int parse_spec(const char *s, struct topic_spec *t)
{
        const char *c1 = strchr(s, ':');
        char num[24];
        const char *c2;
        long n;

        if (c1 == NULL || c1 == s || (size_t)(c1 - s) >= sizeof(t->name))
                return -1;
        c2 = strchr(c1 + 1, ':');
        if ((size_t)((c2 ? c2 : c1 + strlen(c1)) - c1 - 1) >= sizeof(num))
                return -1;
        memcpy(t->name, s, (size_t)(c1 - s));
        t->name[c1 - s] = '\0';
        snprintf(num, sizeof(num), "%.*s", (int)((c2 ? c2 : c1 + strlen(c1)) - c1 - 1), c1 + 1);
        if (bench_parse_long(num, 1, 10000, &n) != 0)
                return -1;
        t->partitions = (int)n;
        t->compact = c2 != NULL && strcmp(c2 + 1, "compact") == 0;
        return c2 != NULL && !t->compact ? -1 : 0;
}

/* Whether topic t exists with all its partitions led and answering: the
 * metadata names a leader before the leader serves the partition (a
 * watermark query gets NOT_LEADER meanwhile). */
static int topic_ready(rd_kafka_t *rk, const struct topic_spec *t)
{
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, t->name, NULL);
        const struct rd_kafka_metadata *md = NULL;
        int ok = 0;

        if (rd_kafka_metadata(rk, 0, rkt, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
            md->topics[0].partition_cnt == t->partitions) {
                ok = 1;
                for (int p = 0; ok && p < md->topics[0].partition_cnt; p++) {
                        int64_t lo, hi;

                        ok = md->topics[0].partitions[p].leader >= 0 &&
                             rd_kafka_query_watermark_offsets(
                                 rk, t->name, md->topics[0].partitions[p].id, &lo, &hi, 2000) ==
                                 RD_KAFKA_RESP_ERR_NO_ERROR;
                }
        }
        if (md != NULL)
                rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        return ok;
}

static int create(rd_kafka_t *rk, const struct topic_spec *ts, int n, int replication, char *errbuf,
                  size_t errsz)
{
        rd_kafka_NewTopic_t *nt[TOPICS_MAX] = {0};
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_event_t *ev = NULL;
        const rd_kafka_topic_result_t **res;
        size_t cnt = 0;
        int rc = -1;

        for (int i = 0; i < n; i++) {
                nt[i] =
                    rd_kafka_NewTopic_new(ts[i].name, ts[i].partitions, replication, errbuf, errsz);
                if (nt[i] == NULL)
                        goto out;
                if (ts[i].compact &&
                    rd_kafka_NewTopic_set_config(nt[i], "cleanup.policy", "compact") != 0) {
                        snprintf(errbuf, errsz, "%s: cannot set cleanup.policy", ts[i].name);
                        goto out;
                }
        }
        rd_kafka_CreateTopics(rk, nt, (size_t)n, NULL, q);
        ev = rd_kafka_queue_poll(q, 60000);
        if (ev == NULL || rd_kafka_event_error(ev)) {
                snprintf(errbuf, errsz, "CreateTopics: %s",
                         ev ? rd_kafka_event_error_string(ev) : "no answer in 60 s");
                goto out;
        }
        res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
        for (size_t i = 0; i < cnt; i++) {
                rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);

                if (e != RD_KAFKA_RESP_ERR_NO_ERROR &&
                    e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                        snprintf(errbuf, errsz, "creating %s: %s",
                                 rd_kafka_topic_result_name(res[i]),
                                 rd_kafka_topic_result_error_string(res[i]));
                        goto out;
                }
        }
        rc = 0;
out:
        if (ev != NULL)
                rd_kafka_event_destroy(ev);
        for (int i = 0; i < n; i++)
                if (nt[i] != NULL)
                        rd_kafka_NewTopic_destroy(nt[i]);
        rd_kafka_queue_destroy(q);
        return rc;
}

int bench_cmd_topics(int argc, char **argv)
{
        static const struct option opts[] = {{"brokers", required_argument, NULL, 'b'},
                                             {"replication", required_argument, NULL, 'r'},
                                             {"wait-s", required_argument, NULL, 'w'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
        const char *brokers = getenv("OUTBOX_KAFKA_BROKERS");
        struct topic_spec *ts = calloc(TOPICS_MAX, sizeof(*ts));
        rd_kafka_conf_t *conf = NULL;
        rd_kafka_t *rk = NULL;
        long replication = 1, wait_s = 120;
        int opt, n = 0, rc = 2;
        int64_t deadline;
        char errbuf[512] = "";

        if (ts == NULL)
                return 1;
        while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (opt) {
                case 'b':
                        brokers = optarg;
                        break;
                case 'r':
                        if (bench_parse_long(optarg, 1, 16, &replication) != 0)
                                goto usage;
                        break;
                case 'w':
                        if (bench_parse_long(optarg, 1, 3600, &wait_s) != 0)
                                goto usage;
                        break;
                case 'h':
                        printf("usage: outbox-bench topics --brokers B [--replication N]"
                               " [--wait-s S] NAME:PARTITIONS[:compact]...\n"
                               "Waits up to S s (120) for the brokers to answer, creates the"
                               " topics (existing ones are kept)\nand waits until every"
                               " partition has a leader.\n");
                        rc = 0;
                        goto out;
                default:
                        goto usage;
                }
        }
        for (; optind < argc; optind++) {
                if (n == TOPICS_MAX || parse_spec(argv[optind], &ts[n]) != 0) {
                        fprintf(stderr, "topics: bad topic '%s' (NAME:PARTITIONS[:compact])\n",
                                argv[optind]);
                        goto out;
                }
                n++;
        }
        if (brokers == NULL || n == 0)
                goto usage;
        rc = 1;
        conf = rd_kafka_conf_new();
        if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errbuf, sizeof(errbuf)) ||
            rd_kafka_conf_set(conf, "client.id", "outbox-bench", errbuf, sizeof(errbuf)) ||
            rd_kafka_conf_set(conf, "allow.auto.create.topics", "false", errbuf, sizeof(errbuf)) ||
            /* A broker that is still starting refuses connections: not an error here. */
            rd_kafka_conf_set(conf, "log_level", "0", errbuf, sizeof(errbuf)))
                goto out;
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, sizeof(errbuf));
        if (rk == NULL)
                goto out;
        conf = NULL;
        deadline = bench_now_ns(CLOCK_MONOTONIC) + wait_s * 1000000000LL;
        for (;;) { /* the brokers answer metadata */
                const struct rd_kafka_metadata *md = NULL;
                int up = rd_kafka_metadata(rk, 0, NULL, &md, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                         md->broker_cnt >= replication;

                if (md != NULL)
                        rd_kafka_metadata_destroy(md);
                if (up)
                        break;
                if (bench_now_ns(CLOCK_MONOTONIC) > deadline) {
                        snprintf(errbuf, sizeof(errbuf), "%s did not answer in %ld s", brokers,
                                 wait_s);
                        goto out;
                }
                poll(NULL, 0, 200);
        }
        if (create(rk, ts, n, (int)replication, errbuf, sizeof(errbuf)) != 0)
                goto out;
        for (int i = 0; i < n; i++) {
                while (!topic_ready(rk, &ts[i])) {
                        if (bench_now_ns(CLOCK_MONOTONIC) > deadline) {
                                snprintf(errbuf, sizeof(errbuf),
                                         "%s: not every partition had a leader in %ld s",
                                         ts[i].name, wait_s);
                                goto out;
                        }
                        poll(NULL, 0, 100);
                }
        }
        printf("topics.created %d\n", n);
        rc = 0;
        goto out;
usage:
        fprintf(stderr, "topics: needs --brokers (or OUTBOX_KAFKA_BROKERS) and"
                        " NAME:PARTITIONS[:compact] arguments\n");
        rc = 2;
out:
        if (rc == 1)
                fprintf(stderr, "topics: %s\n", errbuf);
        if (conf != NULL)
                rd_kafka_conf_destroy(conf);
        if (rk != NULL)
                rd_kafka_destroy(rk);
        free(ts);
        return rc;
}
