/* fixture_apache_admin: the Apache Kafka fixture's topics and reads:
 * creating and altering topics with librdkafka's admin API, finding a
 * partition's leader, waiting for replicas, and reading a topic back as a
 * read_committed consumer with Kafka's own console consumer (see
 * fixture_apache_kafka.c for the brokers). */
#include "fixture.h"
#include "fixture_apache_int.h"

#include <check.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

/* ---- topics ---- */

/* The metadata of one topic (all-topics request: asking by name could
 * create it where the brokers allow that), or NULL. */
static const rd_kafka_metadata_topic_t *find_topic(const struct rd_kafka_metadata *md,
                                                   const char *topic)
{
        for (int i = 0; i < md->topic_cnt; i++)
                if (strcmp(md->topics[i].topic, topic) == 0)
                        return &md->topics[i];
        return NULL;
}

/* Whether every partition of topic has a leader and, when full_isr, every
 * replica in sync, as `rk`'s broker sees it. */
static int topic_ready(rd_kafka_t *rk, const char *topic, int partitions, int full_isr)
{
        const struct rd_kafka_metadata *md = NULL;
        const rd_kafka_metadata_topic_t *t;
        int ok;

        if (rd_kafka_metadata(rk, 1, NULL, &md, AK_MD_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
                return 0;
        t = find_topic(md, topic);
        ok = t != NULL && !t->err && (partitions < 0 || t->partition_cnt == partitions);
        for (int p = 0; ok && p < t->partition_cnt; p++) {
                ok = t->partitions[p].leader >= 0;
                if (full_isr)
                        ok = ok && t->partitions[p].isr_cnt == t->partitions[p].replica_cnt;
        }
        rd_kafka_metadata_destroy(md);
        return ok;
}

/* Waits until every live broker sees the topic ready. */
static void wait_topic(struct fx_apache *k, const char *topic, int partitions, int full_isr,
                       int timeout_ms)
{
        int64_t deadline = fx_now_ms() + timeout_ms;

        for (int i = 0; i < k->n; i++) {
                char b[64];
                rd_kafka_t *rk;

                if (!ak_node_alive(&k->nodes[i], ak_node_pid(&k->nodes[i])))
                        continue;
                snprintf(b, sizeof(b), "127.0.0.1:%d", k->nodes[i].port);
                rk = ak_client(b);
                while (!topic_ready(rk, topic, partitions, full_isr)) {
                        if (fx_now_ms() >= deadline) {
                                rd_kafka_destroy(rk);
                                ck_abort_msg("topic %s not %s on broker %d in time", topic,
                                             full_isr ? "fully in sync" : "led", k->nodes[i].id);
                        }
                        poll(NULL, 0, 50);
                }
                rd_kafka_destroy(rk);
        }
}

/* Waits for an admin result event on q; aborts on a request error. */
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q, const char *what)
{
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);

        ck_assert_msg(ev != NULL, "%s: no answer in 60 s", what);
        if (rd_kafka_event_error(ev)) {
                char msg[512];

                snprintf(msg, sizeof(msg), "%s", rd_kafka_event_error_string(ev));
                rd_kafka_event_destroy(ev);
                ck_abort_msg("%s: %s", what, msg);
        }
        return ev;
}

/* "name=value" into a topic's configs. */
static void split_config(const char *kv, char *name, size_t nsz, const char **value)
{
        const char *eq = strchr(kv, '=');

        ck_assert_msg(eq != NULL, "topic config \"%s\" is not name=value", kv);
        snprintf(name, nsz, "%.*s", (int)(eq - kv), kv);
        *value = eq + 1;
}

void fx_apache_create_topic(struct fx_apache *k, const char *topic, int partitions,
                            const char *const configs[])
{
        rd_kafka_t *rk = ak_client(k->bootstraps);
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        char errstr[256], what[300];
        rd_kafka_NewTopic_t *nt =
            rd_kafka_NewTopic_new(topic, partitions, k->n, errstr, sizeof(errstr));
        const rd_kafka_topic_result_t **res;
        rd_kafka_event_t *ev;
        size_t n;

        ck_assert_msg(nt != NULL, "topic %s: %s", topic, errstr);
        for (size_t i = 0; configs && configs[i]; i++) {
                char name[128];
                const char *value;

                split_config(configs[i], name, sizeof(name), &value);
                ck_assert_int_eq(rd_kafka_NewTopic_set_config(nt, name, value), 0);
        }
        rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
        rd_kafka_NewTopic_destroy(nt);
        snprintf(what, sizeof(what), "create topic %s", topic);
        ev = admin_wait(q, what);
        res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        ck_assert_msg(n == 1, "%s: %zu results", what, n);
        if (rd_kafka_topic_result_error(res[0])) {
                snprintf(errstr, sizeof(errstr), "%s", rd_kafka_topic_result_error_string(res[0]));
                rd_kafka_event_destroy(ev);
                ck_abort_msg("%s: %s", what, errstr);
        }
        rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(rk);
        wait_topic(k, topic, partitions, 0, 60000);
}

void fx_apache_alter_topic(struct fx_apache *k, const char *topic, const char *const configs[])
{
        rd_kafka_t *rk = ak_client(k->bootstraps);
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
        const rd_kafka_ConfigResource_t **res;
        rd_kafka_event_t *ev;
        char what[300], errstr[512];
        size_t n;

        for (size_t i = 0; configs && configs[i]; i++) {
                char name[128];
                const char *value;

                split_config(configs[i], name, sizeof(name), &value);
                ck_assert_int_eq(rd_kafka_ConfigResource_set_config(cr, name, value), 0);
        }
        /* AlterConfigs replaces the topic's whole dynamic configuration
         * with these entries. */
        rd_kafka_AlterConfigs(rk, &cr, 1, NULL, q);
        rd_kafka_ConfigResource_destroy(cr);
        snprintf(what, sizeof(what), "alter topic %s", topic);
        ev = admin_wait(q, what);
        res = rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &n);
        ck_assert_msg(n == 1, "%s: %zu results", what, n);
        if (rd_kafka_ConfigResource_error(res[0])) {
                snprintf(errstr, sizeof(errstr), "%s",
                         rd_kafka_ConfigResource_error_string(res[0]));
                rd_kafka_event_destroy(ev);
                ck_abort_msg("%s: %s", what, errstr);
        }
        rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(rk);
}

int fx_apache_leader(struct fx_apache *k, const char *topic, int partition)
{
        rd_kafka_t *rk = ak_client(k->bootstraps);
        const struct rd_kafka_metadata *md = NULL;
        const rd_kafka_metadata_topic_t *t;
        int leader = -1;

        if (rd_kafka_metadata(rk, 1, NULL, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                t = find_topic(md, topic);
                for (int p = 0; t && p < t->partition_cnt; p++)
                        if (t->partitions[p].id == partition)
                                leader = t->partitions[p].leader;
                rd_kafka_metadata_destroy(md);
        }
        rd_kafka_destroy(rk);
        return leader;
}

void fx_apache_wait_in_sync(struct fx_apache *k, const char *topic, int timeout_ms)
{
        wait_topic(k, topic, -1, 1, timeout_ms);
}

/* ---- reading back with Kafka's own consumer ---- */

static int by_pos(const void *a, const void *b)
{
        const struct fx_pos *x = a, *y = b;

        if (x->partition != y->partition)
                return x->partition < y->partition ? -1 : 1;
        return x->offset < y->offset ? -1 : x->offset > y->offset;
}

size_t fx_apache_read_committed(struct fx_apache *k, const char *topic, struct fx_pos **out)
{
        char group[96], *text = NULL, *line, *save = NULL;
        const char *args[] = {"--bootstrap-server", k->bootstraps, "--topic", topic, "--group",
                              group, "--from-beginning", "--isolation-level", "read_committed",
                              /* Ends the read once nothing came for 5 s. */
                              "--timeout-ms", "5000", "--command-property",
                              "enable.auto.commit=false", "--formatter-property",
                              "print.partition=true", "--formatter-property", "print.offset=true",
                              "--formatter-property", "print.value=false", NULL};
        struct fx_pos *pos = NULL;
        size_t n = 0, cap = 0;
        long long total = -1;
        int rc;

        snprintf(group, sizeof(group), "fx-read-committed-%d-%lld", (int)getpid(),
                 (long long)fx_now_ms());
        rc = ak_run_tool(k, "org.apache.kafka.tools.consumer.ConsoleConsumer", args, &text,
                         AK_TOOL_TIMEOUT_MS);
        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                int partition;
                long long offset;

                if (sscanf(line, "Partition:%d Offset:%lld", &partition, &offset) == 2) {
                        if (n == cap) {
                                cap = cap ? cap * 2 : 4096;
                                pos = realloc(pos, cap * sizeof(*pos));
                                ck_assert_msg(pos != NULL, "out of memory");
                        }
                        pos[n++] = (struct fx_pos){partition, offset};
                } else if (sscanf(line, "Processed a total of %lld messages", &total) == 1) {
                        continue;
                }
        }
        /* Its count must match what it printed: a read cut short would pass
         * messages off as not visible. */
        ck_assert_msg(rc == 0 && total == (long long)n,
                      "console consumer (read_committed) of %s: exit %d, %lld messages counted, "
                      "%zu printed",
                      topic, rc, total, n);
        free(text);
        if (n)
                qsort(pos, n, sizeof(*pos), by_pos);
        *out = pos;
        return n;
}
