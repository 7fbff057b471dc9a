/* fixture_apache_admin: the Apache Kafka fixture's topics and reads:
 * creating and altering topics with librdkafka's admin API, finding a
 * partition's leader, waiting for replicas, and reading a topic back as a
 * read_committed consumer with Kafka's own console consumer (see
 * fixture_apache_kafka.c for the brokers). */
#include "fixture.h"
#include "fixture_apache_int.h"
#include "fixture_int.h"

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
        fx_apache_create_topic_rf(k, topic, partitions, k->n, configs);
}

void fx_apache_create_topic_rf(struct fx_apache *k, const char *topic, int partitions, int replicas,
                               const char *const configs[])
{
        rd_kafka_t *rk = ak_client(k->bootstraps);
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        char errstr[256], what[300];
        rd_kafka_NewTopic_t *nt =
            rd_kafka_NewTopic_new(topic, partitions, replicas, errstr, sizeof(errstr));
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

int fx_apache_partitions(struct fx_apache *k, const char *topic)
{
        rd_kafka_t *rk = ak_client(k->bootstraps);
        const struct rd_kafka_metadata *md = NULL;
        const rd_kafka_metadata_topic_t *t;
        int n = -1;

        ck_assert_int_eq(rd_kafka_metadata(rk, 1, NULL, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
        t = find_topic(md, topic);
        if (t != NULL && !t->err)
                n = t->partition_cnt;
        rd_kafka_metadata_destroy(md);
        rd_kafka_destroy(rk);
        return n;
}

char *fx_apache_topic_config(struct fx_apache *k, const char *topic, const char *name)
{
        rd_kafka_t *rk = ak_client(k->bootstraps);
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
        const rd_kafka_ConfigResource_t **res;
        const rd_kafka_ConfigEntry_t **entries;
        rd_kafka_event_t *ev;
        char what[300], *value = NULL;
        size_t n, ne = 0;

        rd_kafka_DescribeConfigs(rk, &cr, 1, NULL, q);
        rd_kafka_ConfigResource_destroy(cr);
        snprintf(what, sizeof(what), "describe topic %s", topic);
        ev = admin_wait(q, what);
        res = rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev),
                                                        &n);
        ck_assert_msg(n == 1, "%s: %zu results", what, n);
        if (!rd_kafka_ConfigResource_error(res[0])) {
                entries = rd_kafka_ConfigResource_configs(res[0], &ne);
                for (size_t i = 0; i < ne && value == NULL; i++)
                        if (strcmp(rd_kafka_ConfigEntry_name(entries[i]), name) == 0)
                                value = strdup(rd_kafka_ConfigEntry_value(entries[i])
                                                   ? rd_kafka_ConfigEntry_value(entries[i])
                                                   : "");
        }
        rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(rk);
        return value;
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

/* ---- security: certificates, ACLs, reading over a listener ---- */

/* Concatenates files into dest. */
static void cat_files(const char *dest, const char *a, const char *b)
{
        FILE *out = fopen(dest, "w");
        const char *in[] = {a, b};
        char buf[4096];
        size_t n;

        ck_assert_msg(out != NULL, "%s: cannot write", dest);
        for (int i = 0; i < 2; i++) {
                FILE *f = fopen(in[i], "r");

                ck_assert_msg(f != NULL, "%s: cannot read", in[i]);
                while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
                        ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
                fclose(f);
        }
        ck_assert_int_eq(fclose(out), 0);
}

void fx_apache_make_tls(const char *dir)
{
        struct fx_spawn_opts o = {.in = -1, .out = -1, .err = -1};
        char key[256], crt[256], pem[256];

        fx_tls_make_ca(&o, dir, "ca");
        fx_tls_server_cert(&o, dir, "broker");
        snprintf(key, sizeof(key), "%s/broker.key", dir);
        snprintf(crt, sizeof(crt), "%s/broker.crt", dir);
        snprintf(pem, sizeof(pem), "%s/broker.pem", dir);
        cat_files(pem, key, crt);
}

static const struct {
        const char *name;
        rd_kafka_AclOperation_t op;
} acl_ops[] = {
    {"ALL", RD_KAFKA_ACL_OPERATION_ALL},
    {"READ", RD_KAFKA_ACL_OPERATION_READ},
    {"WRITE", RD_KAFKA_ACL_OPERATION_WRITE},
    {"DESCRIBE", RD_KAFKA_ACL_OPERATION_DESCRIBE},
};

void fx_apache_add_acl(struct fx_apache *k, const char *principal, const char *topic, int prefixed,
                       const char *operation, int allow)
{
        rd_kafka_t *rk = ak_client(k->bootstraps);
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_AclOperation_t op = RD_KAFKA_ACL_OPERATION_UNKNOWN;
        const rd_kafka_acl_result_t **res;
        rd_kafka_AclBinding_t *acl;
        rd_kafka_event_t *ev;
        char errstr[256], what[300];
        size_t n;

        for (size_t i = 0; i < sizeof(acl_ops) / sizeof(acl_ops[0]); i++)
                if (strcmp(acl_ops[i].name, operation) == 0)
                        op = acl_ops[i].op;
        ck_assert_msg(op != RD_KAFKA_ACL_OPERATION_UNKNOWN, "ACL operation %s?", operation);
        acl = rd_kafka_AclBinding_new(
            RD_KAFKA_RESOURCE_TOPIC, topic,
            prefixed ? RD_KAFKA_RESOURCE_PATTERN_PREFIXED : RD_KAFKA_RESOURCE_PATTERN_LITERAL,
            principal, "*", op,
            allow ? RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW : RD_KAFKA_ACL_PERMISSION_TYPE_DENY, errstr,
            sizeof(errstr));
        ck_assert_msg(acl != NULL, "ACL on %s: %s", topic, errstr);
        rd_kafka_CreateAcls(rk, &acl, 1, NULL, q);
        rd_kafka_AclBinding_destroy(acl);
        snprintf(what, sizeof(what), "%s %s %s on topic %s%s", allow ? "allow" : "deny", principal,
                 operation, topic, prefixed ? "*" : "");
        ev = admin_wait(q, what);
        res = rd_kafka_CreateAcls_result_acls(rd_kafka_event_CreateAcls_result(ev), &n);
        ck_assert_msg(n == 1, "%s: %zu results", what, n);
        if (rd_kafka_acl_result_error(res[0]) != NULL) {
                snprintf(errstr, sizeof(errstr), "%s",
                         rd_kafka_error_string(rd_kafka_acl_result_error(res[0])));
                rd_kafka_event_destroy(ev);
                ck_abort_msg("%s: %s", what, errstr);
        }
        rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(rk);
}

static char *xstrndup(const char *s, size_t n)
{
        char *c = strndup(s, n);

        ck_assert_msg(c != NULL, "out of memory");
        return c;
}

size_t fx_apache_read_over(struct fx_apache *k, const char *bootstraps, const char *client_config,
                           const char *topic, struct fx_msg **out)
{
        char group[96], *text = NULL, *line, *save = NULL;
        const char *args[] = {"--bootstrap-server",
                              bootstraps,
                              "--topic",
                              topic,
                              "--group",
                              group,
                              "--from-beginning",
                              "--command-config",
                              client_config,
                              "--timeout-ms",
                              "5000",
                              "--command-property",
                              "enable.auto.commit=false",
                              "--formatter-property",
                              "print.partition=true",
                              "--formatter-property",
                              "print.offset=true",
                              "--formatter-property",
                              "print.key=true",
                              NULL};
        struct fx_msg *msgs = NULL;
        size_t n = 0, cap = 0;
        long long total = -1;
        int rc;

        snprintf(group, sizeof(group), "fx-read-over-%d-%lld", (int)getpid(),
                 (long long)fx_now_ms());
        rc = ak_run_tool(k, "org.apache.kafka.tools.consumer.ConsoleConsumer", args, &text,
                         AK_TOOL_TIMEOUT_MS);
        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                int partition, used = 0;
                long long offset;
                const char *key, *tab;

                if (sscanf(line, "Partition:%d\tOffset:%lld\t%n", &partition, &offset, &used) ==
                        2 &&
                    used > 0) {
                        key = line + used;
                        tab = strchr(key, '\t');
                        ck_assert_msg(tab != NULL, "console consumer line: %s", line);
                        if (n == cap) {
                                cap = cap ? cap * 2 : 256;
                                msgs = realloc(msgs, cap * sizeof(*msgs));
                                ck_assert_msg(msgs != NULL, "out of memory");
                        }
                        memset(&msgs[n], 0, sizeof(msgs[n]));
                        msgs[n].topic = xstrndup(topic, strlen(topic));
                        msgs[n].partition = partition;
                        msgs[n].offset = offset;
                        msgs[n].key = xstrndup(key, (size_t)(tab - key));
                        msgs[n].key_len = (size_t)(tab - key);
                        msgs[n].value = xstrndup(tab + 1, strlen(tab + 1));
                        msgs[n].value_len = strlen(tab + 1);
                        n++;
                } else {
                        sscanf(line, "Processed a total of %lld messages", &total);
                }
        }
        ck_assert_msg(rc == 0 && total == (long long)n,
                      "console consumer of %s over %s: exit %d, %lld messages counted, %zu "
                      "printed: %.*s",
                      topic, bootstraps, rc, total, n, AK_TAIL_BYTES, text ? text : "");
        free(text);
        *out = msgs;
        return n;
}
