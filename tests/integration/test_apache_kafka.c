/* The relay end to end against Apache Kafka itself (fixture_apache_kafka.c:
 * one combined broker/controller, auto.create.topics.enable=false): what
 * test_relay.c shows against the dev Kafka, where a real broker differs -
 * its own message size limit, topics that must exist, read_committed.
 * Every message is read back by an independent consumer and compared with
 * its row; each case adds a line to the fault report (Broker column
 * "Apache Kafka <version>"). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_harness.h"
#include "fixture.h"
#include "scenarios.h"
#include "runner.h"

static struct fx_pg *pg;
static struct fx_apache *ak;

static void suite_setup(void)
{
        pg = fx_pg_start();
        ak = fx_apache_start(1);
        fh_use_apache(ak);
}

static void suite_teardown(void)
{
        fh_use_apache(NULL);
        fx_apache_stop(ak);
        fx_pg_stop(pg);
}

#define BROKERS fx_apache_bootstraps(ak)

/* The poll safety net set to an hour: rows arriving prove the
 * LISTEN/NOTIFY wake-up works. */
#define NO_POLL "--poll-interval-ms", "3600000"

static char *fresh_db(const char *name)
{
        char *conninfo = fx_pg_create_db(pg, name);

        fx_migrate(conninfo, NULL);
        return conninfo;
}

/* Stops the relay, reads the topics back and compares them with the
 * database (fh_check), reports the case and asserts: nothing lost, nothing
 * rolled back or unknown published, per-key order and keys intact,
 * exactly `dups` repeats (0 unless the case replays on purpose; -1: any,
 * as at-least-once allows after a producer restart) and `dead` dead
 * letters. Then closes c and frees ci. */
static void check_and_report(struct fx_relay *r, PGconn *c, char *ci, const char *const topics[],
                             struct fh_result *res, long long dups, long long dead)
{
        int ok;

        fh_relay_stop(r, 30000);
        fh_relay_free(r, res->name);
        fh_check_topics(c, BROKERS, topics, res);
        ok = res->committed > 0 && res->lost == 0 && res->phantoms == 0 &&
             res->order_violations == 0 && res->key_mismatch == 0 &&
             (dups < 0 || res->duplicates == dups) && res->dead_letters == dead;
        fh_report(res, ok);
        ck_assert_msg(res->lost == 0, "%lld of %lld events lost", res->lost, res->committed);
        ck_assert_msg(res->phantoms == 0, "%lld messages of no committed row (%s)", res->phantoms,
                      res->notes);
        ck_assert_msg(res->order_violations == 0, "per-key order broken (%s)", res->notes);
        ck_assert_int_eq(res->key_mismatch, 0);
        if (dups >= 0)
                ck_assert_int_eq(res->duplicates, dups);
        ck_assert_int_eq(res->dead_letters, dead);
        PQfinish(c);
        free(ci);
}

/* 10,000 events over 100 keys in 10 transactions, with 1,000 rolled back
 * between them: every message matches its row byte for byte (key, value,
 * headers, timestamp, and the partition and offset the row records). */
START_TEST(ten_thousand_events_exact_and_in_order)
{
        const char *const topics[] = {"tenk", NULL};
        char *ci = fresh_db("tenk");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {NO_POLL, "--batch-size", "500", NULL};
        struct fx_relay *r;
        struct fh_result res;
        struct fx_msg *msgs;
        size_t n;

        fh_result_init(&res, "ak-10k-exact",
                       "10,000 events (100 keys, 4 partitions, 10 transactions; 1,000 more rolled "
                       "back): each message compared with its row byte for byte");
        fx_apache_create_topic(ak, "tenk", 4, NULL);
        r = fx_relay_start(ci, BROKERS, args);
        sc_tenk_write(c);
        ck_assert_int_eq(fh_wait_sent(c, SC_TENK_ROWS, 120000), SC_TENK_ROWS);
        /* One more than written: none may follow. */
        n = fx_consume(BROKERS, "tenk", SC_TENK_ROWS + 1, 10000, &msgs);
        sc_tenk_check(c, msgs, n);
        fx_msgs_free(msgs, n);
        res.rolled_back = 1000;
        res.drain_ms = 0;
        check_and_report(r, c, ci, topics, &res, 0, 0);
}
END_TEST

/* A tombstone (null value) with its timestamp, a binary payload with NUL
 * and high bytes, an empty value without a key. */
START_TEST(tombstone_binary_payload_and_timestamp)
{
        const char *const topics[] = {"shapes", NULL};
        char *ci = fresh_db("shapes");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {NO_POLL, NULL};
        struct fx_relay *r;
        struct fh_result res;
        struct fx_msg *msgs;
        size_t n;

        fh_result_init(&res, "ak-shapes",
                       "a tombstone with a set timestamp, a binary payload (NUL and high bytes), "
                       "an empty value without a key");
        fx_apache_create_topic(ak, "shapes", 1, NULL);
        r = fx_relay_start(ci, BROKERS, args);
        sc_shapes_write(c);
        ck_assert_int_eq(fh_wait_sent(c, SC_SHAPES_ROWS, 30000), SC_SHAPES_ROWS);
        n = fx_consume(BROKERS, "shapes", SC_SHAPES_ROWS + 1, 5000, &msgs);
        sc_shapes_check(msgs, n);
        fx_msgs_free(msgs, n);
        check_and_report(r, c, ci, topics, &res, 0, 0);
}
END_TEST

START_TEST(routing_by_event_type)
{
        char *ci = fresh_db("routing");
        PGconn *c = fx_db_connect(ci);
        struct fx_relay *r;
        struct fh_result res;

        fh_result_init(&res, "ak-routing",
                       "rows without a topic routed by event_type (exact rule, prefix rule, "
                       "default topic) next to a row naming its topic");
        for (size_t i = 0; sc_routing_topics[i]; i++)
                fx_apache_create_topic(ak, sc_routing_topics[i], 2, NULL);
        r = fx_relay_start(ci, BROKERS, sc_routing_args);
        sc_routing_write(c);
        ck_assert_int_eq(fh_wait_sent(c, SC_ROUTING_ROWS, 30000), SC_ROUTING_ROWS);
        sc_routing_check(BROKERS, 1);
        check_and_report(r, c, ci, sc_routing_topics, &res, 0, 0);
}
END_TEST

/* Rows made pending again, by hand and by outbox.replay(), are published
 * again: three repeats, on purpose. */
START_TEST(replay_through_sql_publishes_again)
{
        const char *const topics[] = {"replay", NULL};
        char *ci = fresh_db("replay");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {NO_POLL, NULL};
        struct fx_relay *r;
        struct fh_result res;
        struct fx_msg *msgs;
        size_t n;

        fh_result_init(&res, "ak-replay",
                       "5 rows sent, 2 set pending again by hand and 1 replayed with "
                       "outbox.replay(): 3 repeats expected");
        fx_apache_create_topic(ak, "replay", 2, NULL);
        r = fx_relay_start(ci, BROKERS, args);
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) "
                  "SELECT 'replay', 'k' || g, '{}' FROM generate_series(1, 5) g");
        ck_assert_int_eq(fh_wait_sent(c, 5, 30000), 5);
        fx_sql(c, "UPDATE outbox.events SET status = 'pending' WHERE id IN (2, 3)");
        ck_assert_int_eq(fh_wait_sent(c, 5, 30000), 5);
        ck_assert_int_eq(fx_sql_int(c, "SELECT outbox.replay(p_key => 'k5')"), 1);
        n = fx_consume(BROKERS, "replay", 9, 10000, &msgs);
        ck_assert_uint_eq(n, 8);
        fx_msgs_free(msgs, n);
        ck_assert_int_eq(fh_wait_sent(c, 5, 30000), 5);
        check_and_report(r, c, ci, topics, &res, 3, 0);
}
END_TEST

/* A row above the broker's limit (the topic's max.message.bytes, 100,000:
 * the producer's own message.max.bytes stays at librdkafka's 1,000,000, so
 * the broker is the one refusing) fails each attempt and is dead-lettered
 * with the reason; 999 rows of other keys flow meanwhile, in the same
 * partition, and the later row of its key waits until it is dead-lettered.
 * The broker checks a whole record batch against the limit, and librdkafka
 * (unlike Kafka's Java producer) does not split a refused batch: every row
 * batched with the big one would be refused too and pay an attempt (seen
 * without the setting: 4 of 99 rows of other keys dead-lettered with it).
 * So the relay runs as README "Message size limits" says: -X batch.size
 * no larger than the topic's limit, which makes librdkafka send any larger
 * row in a batch of its own. The case checks that no other row paid. */
START_TEST(row_above_message_max_bytes_dead_lettered)
{
        static const char *const limit[] = {"max.message.bytes=100000", NULL};
        const char *const topics[] = {"big", NULL};
        char *ci = fresh_db("big");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {"--max-attempts",
                              "3",
                              "--retry-base-ms",
                              "50",
                              "--retry-max-ms",
                              "200",
                              "--poll-interval-ms",
                              "100",
                              "-X",
                              "batch.size=100000",
                              NULL};
        struct fx_relay *r;
        struct fh_result res;
        PGresult *q;

        fh_result_init(&res, "ak-oversize",
                       "a 200 kB row for a topic with max.message.bytes=100000 (the broker "
                       "refuses it; the producer would take 1 MB; -X batch.size=100000), 999 "
                       "rows of other keys and one of its key behind it, one partition; "
                       "--max-attempts 3");
        fx_apache_create_topic(ak, "big", 1, limit);
        r = fx_relay_start(ci, BROKERS, args);
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) VALUES"
                  " ('big', 'bad', jsonb_build_object('blob', repeat('x', 200000)))");
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) "
                  "SELECT 'big', CASE WHEN g = 50 THEN 'bad' ELSE 'good-' || g %% 10 END,"
                  " jsonb_build_object('n', g, 'pad', repeat('p', 300))"
                  " FROM generate_series(1, 1000) g");
        fx_wait_sql(c, 1, 60000, "SELECT count(*) FROM outbox.dead_letters");
        fh_wait_sent(c, 1000, 60000);
        if (fx_sql_int(c, "SELECT count(*) FROM outbox.dead_letters") != 1 || fh_sent(c) != 1000) {
                char *log = fx_relay_log(r);
                PGresult *d = PQexec(c, "SELECT id, key, attempts, reason FROM outbox.dead_letters"
                                        " UNION ALL SELECT id, key, attempts, last_error"
                                        " FROM outbox.events WHERE attempts > 0");

                for (int i = 0; i < PQntuples(d); i++)
                        fprintf(stderr, "row %s key %s attempts %s: %s\n", PQgetvalue(d, i, 0),
                                PQgetvalue(d, i, 1), PQgetvalue(d, i, 2), PQgetvalue(d, i, 3));
                fprintf(stderr, "%s\n", log);
                ck_abort_msg("%lld dead letters, %lld rows sent (of 1 and 1000)",
                             fx_sql_int(c, "SELECT count(*) FROM outbox.dead_letters"), fh_sent(c));
        }
        q = PQexec(c, "SELECT d.id, d.reason, d.attempts, e.sent_at >= d.last_attempt_at,"
                      " (SELECT count(*) FROM outbox.events o WHERE o.key <> 'bad'"
                      "   AND o.sent_at < d.last_attempt_at)"
                      " FROM outbox.dead_letters d, outbox.events e WHERE e.id = 51");
        ck_assert_int_eq(PQntuples(q), 1);
        ck_assert_int_eq(atoi(PQgetvalue(q, 0, 0)), 1);
        ck_assert_msg(strstr(PQgetvalue(q, 0, 1), "too large") != NULL, "reason: %s",
                      PQgetvalue(q, 0, 1));
        /* Its three attempts; or fewer when the broker appended the requests
         * behind a refused one (a new producer id's first: Apache Kafka keeps
         * no sequence state for it), so that later rows of its key were
         * published: then it is not retried, which would put it after them
         * (tests/integration/test_key_order.c). */
        if (strstr(PQgetvalue(q, 0, 1), "a later row of its key was published") != NULL)
                ck_assert_int_le(atoi(PQgetvalue(q, 0, 2)), 3);
        else
                ck_assert_int_eq(atoi(PQgetvalue(q, 0, 2)), 3);
        /* Row 51 held back until row 1's death was recorded: its mark, a
         * later transaction, began after the one that dead-lettered row 1
         * (now() of each is its transaction's start, on one server). */
        if (strcmp(PQgetvalue(q, 0, 3), "t") != 0) {
                char *log = fx_relay_log(r);

                fprintf(stderr, "%s\n", log);
                free(log);
        }
        ck_assert_str_eq(PQgetvalue(q, 0, 3), "t");
        /* Other keys did not wait for its three attempts (dead at its first,
         * the rows that overtook it are marked only after its record). */
        if (strstr(PQgetvalue(q, 0, 1), "a later row of its key was published") == NULL)
                ck_assert_int_gt(atoi(PQgetvalue(q, 0, 4)), 0);
        snprintf(res.notes, sizeof(res.notes),
                 "reason: %.200s; %s rows of other keys sent before; %d producer restarts",
                 PQgetvalue(q, 0, 1), PQgetvalue(q, 0, 4),
                 fh_relay_log_count(r, "rebuilding the Kafka producer"));
        PQclear(q);
        /* No other row paid an attempt for sharing its batch. */
        ck_assert_int_eq(fx_sql_int(c, "SELECT count(*) FROM outbox.events WHERE attempts > 0"), 0);
        /* A refused batch is a gap in the idempotent producer's sequence:
         * with enable.gapless.guarantee it restarts, and the rows it had
         * sent but not yet reported go out again (at-least-once). */
        check_and_report(r, c, ci, topics, &res, -1, 1);
}
END_TEST

/* A topic that does not exist, with auto-creation off on the brokers and
 * in the producer: the row fails as an unknown topic, is retried with
 * backoff and dead-lettered after --max-attempts; other rows flow; the
 * topic is not created. */
START_TEST(unknown_topic_dead_lettered_with_auto_creation_off)
{
        const char *const topics[] = {"present", NULL};
        char *ci = fresh_db("unknown");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {NO_POLL,
                              "--max-attempts",
                              "3",
                              "--retry-base-ms",
                              "200",
                              "-X",
                              "topic.metadata.propagation.max.ms=1000",
                              NULL};
        struct fx_relay *r;
        struct fh_result res;
        PGresult *q;

        fh_result_init(
            &res, "ak-unknown-topic",
            "a row for a topic that does not exist (auto.create.topics.enable=false); "
            "--max-attempts 3, --retry-base-ms 200; rows of an existing topic beside it");
        fx_apache_create_topic(ak, "present", 2, NULL);
        r = fx_relay_start(ci, BROKERS, args);
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) VALUES"
                  " ('no-such-topic', 'a', '{}')");
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload)"
                  " SELECT 'present', 'b' || g %% 3, '{}' FROM generate_series(1, 20) g");
        ck_assert_int_eq(fx_wait_sql(c, 1, 60000, "SELECT count(*) FROM outbox.dead_letters"), 1);
        ck_assert_int_eq(fh_sent(c), 20);
        q = PQexec(c, "SELECT topic, reason, attempts,"
                      " (extract(epoch FROM last_attempt_at - first_attempt_at) * 1000)::int,"
                      " (SELECT max(sent_at) < d.last_attempt_at FROM outbox.events)"
                      " FROM outbox.dead_letters d");
        ck_assert_str_eq(PQgetvalue(q, 0, 0), "no-such-topic");
        ck_assert_msg(strstr(PQgetvalue(q, 0, 1), "nknown topic") != NULL, "reason: %s",
                      PQgetvalue(q, 0, 1));
        ck_assert_int_eq(atoi(PQgetvalue(q, 0, 2)), 3);
        /* Two retries, each after at least half its delay (jitter takes a
         * point in the upper half): 100 + 200 ms. */
        ck_assert_int_ge(atoi(PQgetvalue(q, 0, 3)), 300);
        ck_assert_str_eq(PQgetvalue(q, 0, 4), "t");
        snprintf(res.notes, sizeof(res.notes), "reason: %.200s; %s ms from first to last attempt",
                 PQgetvalue(q, 0, 1), PQgetvalue(q, 0, 3));
        PQclear(q);
        ck_assert_int_eq(fx_apache_leader(ak, "no-such-topic", 0), -1);
        check_and_report(r, c, ci, topics, &res, 0, 1);
}
END_TEST

/* ---- --exactly-once's progress topic ---- */

static long long wait_sent(PGconn *c, long long n)
{
        return fh_wait_sent(c, n, 90000);
}

static void insert_rows(PGconn *c, const char *topic, int n)
{
        fx_sql(c,
               "INSERT INTO outbox.events (topic, key, payload)"
               " SELECT '%s', 'k' || (g %% 7), jsonb_build_object('n', g)"
               " FROM generate_series(1, %d) g",
               topic, n);
}

/* One --exactly-once case: its database (also its transactional id), a
 * connection, its topic (2 partitions) and the relay's arguments naming
 * the progress topic, plus an HTTP listener when asked; the check reads as
 * a read_committed consumer. More arguments go in with eos_arg. */
struct eos_case {
        char *ci;
        PGconn *c;
        int port;
        char listen[64];
        const char *args[20];
        size_t n;
};

static void eos_arg(struct eos_case *e, const char *arg)
{
        ck_assert_uint_lt(e->n, sizeof(e->args) / sizeof(e->args[0]) - 1);
        e->args[e->n++] = arg;
}

static void eos_case_init(struct eos_case *e, const char *db, const char *topic,
                          const char *progress, int http)
{
        const char *const common[] = {NO_POLL, "--exactly-once",   "--transactional-id",
                                      db,      "--progress-topic", progress};

        memset(e, 0, sizeof(*e));
        setenv("OUTBOX_FAULT_EOS", "1", 1);
        e->ci = fresh_db(db);
        e->c = fx_db_connect(e->ci);
        for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++)
                eos_arg(e, common[i]);
        if (http) {
                e->port = fx_free_port();
                snprintf(e->listen, sizeof(e->listen), "127.0.0.1:%d", e->port);
                eos_arg(e, "--http-listen");
                eos_arg(e, e->listen);
        }
        fx_apache_create_topic(ak, topic, 2, NULL);
}

static struct fx_relay *eos_start(struct eos_case *e)
{
        e->args[e->n] = NULL;
        return fx_relay_start(e->ci, BROKERS, e->args);
}

/* /readyz answers 503 naming `why` while the relay publishes nothing. */
static void eos_not_ready(struct eos_case *e, const char *why)
{
        char *body = NULL;

        ck_assert_int_eq(fh_sent(e->c), 0);
        ck_assert_int_eq(fx_http_get(e->port, "/readyz", &body), 503);
        ck_assert_msg(strstr(body, why) != NULL, "readyz: %s", body);
        free(body);
}

/* Without its progress topic the relay creates it, as Kafka Connect creates
 * its internal topics: one partition and cleanup.policy=compact, read back
 * here from the brokers' own metadata and DescribeConfigs; then every row
 * reaches a read_committed consumer once. */
START_TEST(eos_creates_its_progress_topic)
{
        const char *const topics[] = {"eos-auto", NULL};
        struct eos_case e;
        struct fx_relay *r;
        struct fh_result res;
        char *policy;

        eos_case_init(&e, "eos_auto", "eos-auto", "eos-auto-progress", 0);
        fh_result_init(&res, "ak-eos-progress-topic-created",
                       "--exactly-once without its progress topic: the relay creates it "
                       "(one partition, cleanup.policy=compact); 500 rows over 7 keys");
        ck_assert_int_eq(fx_apache_partitions(ak, "eos-auto-progress"), -1);
        r = eos_start(&e);
        insert_rows(e.c, "eos-auto", 500);
        ck_assert_int_eq(wait_sent(e.c, 500), 500);
        ck_assert_int_eq(fh_relay_log_count(r, "created the progress topic"), 1);
        ck_assert_int_eq(fx_apache_partitions(ak, "eos-auto-progress"), 1);
        policy = fx_apache_topic_config(ak, "eos-auto-progress", "cleanup.policy");
        ck_assert_ptr_nonnull(policy);
        ck_assert_str_eq(policy, "compact");
        free(policy);
        ck_assert_int_eq(fh_relay_log_count(r, "the progress topic has more than one partition"),
                         0);
        ck_assert_int_eq(fh_relay_log_count(r, "cleanup.policy is not compact"), 0);
        snprintf(res.notes, sizeof(res.notes), "progress topic created: 1 partition, compact");
        check_and_report(r, e.c, e.ci, topics, &res, 0, 0);
}
END_TEST

/* --progress-topic-no-create: while the topic is missing the relay says so
 * naming the topic and the setting, publishes nothing, is not ready, and
 * does not create it; once an operator creates it, everything flows. */
START_TEST(eos_progress_topic_not_created_when_told)
{
        const char *const topics[] = {"eos-manual", NULL};
        static const char *const compact[] = {"cleanup.policy=compact", NULL};
        const char *missing = "progress topic \\\"eos-manual-progress\\\" does not exist and "
                              "--progress-topic-no-create is set";
        struct eos_case e;
        struct fx_relay *r;
        struct fh_result res;
        char *body = NULL;

        eos_case_init(&e, "eos_manual", "eos-manual", "eos-manual-progress", 1);
        eos_arg(&e, "--progress-topic-no-create");
        fh_result_init(&res, "ak-eos-progress-topic-no-create",
                       "--exactly-once --progress-topic-no-create without the progress topic: "
                       "nothing published, not ready; then the topic is created by hand");
        r = eos_start(&e);
        insert_rows(e.c, "eos-manual", 100);
        fh_wait_relay_log(r, missing, 1, 60000);
        ck_assert_int_ge(fh_relay_log_count(r, missing), 1);
        eos_not_ready(&e, "--progress-topic-no-create");
        ck_assert_int_eq(fx_apache_partitions(ak, "eos-manual-progress"), -1);
        ck_assert_int_eq(fh_relay_log_count(r, "created the progress topic"), 0);
        fx_apache_create_topic(ak, "eos-manual-progress", 1, compact);
        ck_assert_int_eq(wait_sent(e.c, 100), 100);
        ck_assert_int_eq(fx_http_get(e.port, "/readyz", &body), 200);
        free(body);
        check_and_report(r, e.c, e.ci, topics, &res, 0, 0);
}
END_TEST

/* A creation Kafka refuses (a replication factor of 3 on one broker): one
 * line with Kafka's error and how to create the topic, nothing published,
 * not ready, no topic; a relay given a factor the cluster has creates it
 * with that factor and publishes everything. */
START_TEST(eos_progress_topic_creation_refused_by_kafka)
{
        const char *const topics[] = {"eos-rf", NULL};
        const char *refused = "cannot create progress topic \\\"eos-rf-progress\\\": "
                              "INVALID_REPLICATION_FACTOR";
        struct eos_case e;
        struct fx_relay *r;
        struct fh_result res;

        eos_case_init(&e, "eos_rf", "eos-rf", "eos-rf-progress", 1);
        eos_arg(&e, "--progress-topic-replication-factor");
        eos_arg(&e, "3");
        fh_result_init(&res, "ak-eos-progress-topic-refused",
                       "--exactly-once --progress-topic-replication-factor 3 on one broker: "
                       "creation refused, nothing published; then factor 1");
        r = eos_start(&e);
        insert_rows(e.c, "eos-rf", 100);
        fh_wait_relay_log(r, refused, 1, 60000);
        ck_assert_int_ge(fh_relay_log_count(r, refused), 1);
        eos_not_ready(&e, "INVALID_REPLICATION_FACTOR");
        ck_assert_int_eq(fx_apache_partitions(ak, "eos-rf-progress"), -1);
        fh_relay_stop(r, 30000);
        fh_relay_free(r, res.name);
        e.args[e.n - 1] = "1"; /* the factor */
        r = eos_start(&e);
        ck_assert_int_eq(wait_sent(e.c, 100), 100);
        ck_assert_int_eq(fh_relay_log_count(r, "created the progress topic"), 1);
        ck_assert_int_eq(fh_relay_log_count(r, "\"replication_factor\":1,"), 1);
        ck_assert_int_eq(fx_apache_partitions(ak, "eos-rf-progress"), 1);
        check_and_report(r, e.c, e.ci, topics, &res, 0, 0);
}
END_TEST

/* Two relays (two outboxes sharing the progress topic) started together
 * both find it missing: one creates it, the other's creation finds it
 * there (TOPIC_ALREADY_EXISTS) or sees it made; both publish everything.
 * Whether both asked at once depends on timing; what is asserted holds
 * either way. */
START_TEST(eos_two_relays_create_one_progress_topic)
{
        const char *const topics_a[] = {"eos-race-a", NULL}, *const topics_b[] = {"eos-race-b",
                                                                                  NULL};
        struct eos_case a, b;
        struct fx_relay *ra, *rb;
        struct fh_result res_a, res_b;
        char *policy;

        eos_case_init(&a, "eos_race_a", "eos-race-a", "eos-race-progress", 0);
        eos_case_init(&b, "eos_race_b", "eos-race-b", "eos-race-progress", 0);
        fh_result_init(&res_a, "ak-eos-progress-topic-race-a",
                       "two relays started together without their shared progress topic (a)");
        fh_result_init(&res_b, "ak-eos-progress-topic-race-b",
                       "two relays started together without their shared progress topic (b)");
        insert_rows(a.c, "eos-race-a", 200);
        insert_rows(b.c, "eos-race-b", 200);
        ra = eos_start(&a);
        rb = eos_start(&b);
        ck_assert_int_eq(wait_sent(a.c, 200), 200);
        ck_assert_int_eq(wait_sent(b.c, 200), 200);
        ck_assert_int_eq(fh_relay_log_count(ra, "created the progress topic") +
                             fh_relay_log_count(rb, "created the progress topic"),
                         1);
        ck_assert_int_eq(fx_apache_partitions(ak, "eos-race-progress"), 1);
        policy = fx_apache_topic_config(ak, "eos-race-progress", "cleanup.policy");
        ck_assert_ptr_nonnull(policy);
        ck_assert_str_eq(policy, "compact");
        free(policy);
        snprintf(res_a.notes, sizeof(res_a.notes), "%s",
                 fh_relay_log_count(ra, "created meanwhile") +
                         fh_relay_log_count(rb, "created meanwhile")
                     ? "both asked to create it: one got TOPIC_ALREADY_EXISTS"
                     : "one saw the topic the other made");
        check_and_report(ra, a.c, a.ci, topics_a, &res_a, 0, 0);
        check_and_report(rb, b.c, b.ci, topics_b, &res_b, 0, 0);
}
END_TEST

/* Two outboxes in one process (--outboxes-file), each with --exactly-once
 * and a transactional id of its own (outbox-relay.<name>, by default):
 * killed with SIGKILL mid-stream and started again, every row of each
 * reaches a read_committed consumer exactly once. */
START_TEST(eos_two_outboxes_in_one_process_kill_9)
{
        const char *const topics_a[] = {"eos-multi-a", NULL}, *const topics_b[] = {"eos-multi-b",
                                                                                   NULL};
        const char *args[] = {
            "--outboxes-file",    NULL, NO_POLL, "--exactly-once", "--progress-topic",
            "eos-multi-progress", NULL};
        char dir[128], json[1024], *ci[2], *url[2], *file;
        PGconn *c[2];
        struct fx_relay *r;
        struct fh_result res_a, res_b;

        setenv("OUTBOX_FAULT_EOS", "1", 1);
        fx_tmpdir_new(dir, sizeof(dir), "fxeosmulti");
        for (int i = 0; i < 2; i++) {
                char *relay_ci;

                ci[i] = fresh_db(i == 0 ? "eos_multi_a" : "eos_multi_b");
                c[i] = fx_db_connect(ci[i]);
                relay_ci = fx_conninfo_as(ci[i], FX_RELAY_ROLE);
                url[i] = fx_write_secret(dir, i == 0 ? "url-a" : "url-b", relay_ci);
                free(relay_ci);
        }
        fx_apache_create_topic(ak, "eos-multi-a", 2, NULL);
        fx_apache_create_topic(ak, "eos-multi-b", 2, NULL);
        snprintf(json, sizeof(json),
                 "[{\"name\": \"a\", \"database-url-file\": \"%s\"},"
                 " {\"name\": \"b\", \"database-url-file\": \"%s\"}]",
                 url[0], url[1]);
        file = fx_write_secret(dir, "outboxes.json", json);
        args[1] = file;
        fh_result_init(&res_a, "ak-eos-two-outboxes-kill-9-a",
                       "two outboxes in one process, --exactly-once, one transactional id each; "
                       "kill -9 mid-stream and a restart (outbox a, 500 rows)");
        fh_result_init(&res_b, "ak-eos-two-outboxes-kill-9-b",
                       "two outboxes in one process, --exactly-once, one transactional id each; "
                       "kill -9 mid-stream and a restart (outbox b, 500 rows)");
        insert_rows(c[0], "eos-multi-a", 300);
        insert_rows(c[1], "eos-multi-b", 300);
        r = fx_relay_start(NULL, BROKERS, args);
        for (int i = 0; i < 2; i++)
                ck_assert_int_eq(fx_wait_sql(c[i], 1, 90000,
                                             "SELECT (count(*) > 0)::int FROM outbox.events"
                                             " WHERE status = 'sent'"),
                                 1);
        fx_relay_kill(r, SIGKILL);
        ck_assert_int_eq(fx_relay_wait(r, 10000), 128 + SIGKILL);
        fh_relay_free(r, res_a.name);
        insert_rows(c[0], "eos-multi-a", 200);
        insert_rows(c[1], "eos-multi-b", 200);
        r = fx_relay_start(NULL, BROKERS, args);
        ck_assert_int_eq(wait_sent(c[0], 500), 500);
        ck_assert_int_eq(wait_sent(c[1], 500), 500);
        ck_assert_int_gt(fh_relay_log_count(r, "\"outbox\":\"b\""), 0);
        /* Stops the relay; then b is read as a was. */
        check_and_report(r, c[0], ci[0], topics_a, &res_a, 0, 0);
        fh_check_topics(c[1], BROKERS, topics_b, &res_b);
        fh_report(&res_b, res_b.lost == 0 && res_b.duplicates == 0 && res_b.phantoms == 0 &&
                              res_b.order_violations == 0);
        ck_assert_msg(res_b.lost == 0 && res_b.duplicates == 0 && res_b.phantoms == 0 &&
                          res_b.order_violations == 0,
                      "outbox b: %lld lost, %lld duplicates, %lld phantoms, %lld out of order (%s)",
                      res_b.lost, res_b.duplicates, res_b.phantoms, res_b.order_violations,
                      res_b.notes);
        PQfinish(c[1]);
        free(ci[1]);
        free(url[0]);
        free(url[1]);
        free(file);
        fx_tmpdir_remove(dir);
}
END_TEST

/* A progress topic made otherwise (three partitions, cleanup.policy=delete)
 * is warned about, each in one line, and used: records are written to and
 * read from partition 0 by number, and deletion only matters after
 * retention.ms (docs/exactly-once.md). */
START_TEST(eos_progress_topic_of_another_shape_is_warned)
{
        const char *const topics[] = {"eos-shape", NULL};
        static const char *const del[] = {"cleanup.policy=delete", NULL};
        struct eos_case e;
        struct fx_relay *r;
        struct fh_result res;

        eos_case_init(&e, "eos_shape", "eos-shape", "eos-shape-progress", 0);
        fh_result_init(&res, "ak-eos-progress-topic-shape",
                       "--exactly-once with a progress topic of 3 partitions and "
                       "cleanup.policy=delete: warned, used");
        fx_apache_create_topic(ak, "eos-shape-progress", 3, del);
        r = eos_start(&e);
        insert_rows(e.c, "eos-shape", 200);
        ck_assert_int_eq(wait_sent(e.c, 200), 200);
        ck_assert_int_ge(fh_relay_log_count(r, "the progress topic has more than one partition"),
                         1);
        ck_assert_int_ge(fh_relay_log_count(r, "cleanup.policy is not compact"), 1);
        ck_assert_int_eq(fh_relay_log_count(r, "created the progress topic"), 0);
        check_and_report(r, e.c, e.ci, topics, &res, 0, 0);
}
END_TEST

/* Each test a test case of its own (CK_RUN_CASE=<test>), the servers
 * started once for them all. The tag "sanitize" marks the cases the ASan
 * build runs (CI time): the paths only a real broker takes (its size limit
 * refusing a batch, creating the progress topic, its refusal and race, a
 * topic of another shape) and the 10,000-event run; the others' C code is
 * the same as test_relay.c's and test_eos.c's on the dev Kafka, which the
 * ASan build runs in full. */
static const struct runner_servers servers = {suite_setup, suite_teardown};

Suite *test_suite(void)
{
        Suite *s = suite_create("apache_kafka");
        const struct {
                const TTest *test;
                const char *tags;
        } cases[] = {
            {ten_thousand_events_exact_and_in_order, "sanitize"},
            {tombstone_binary_payload_and_timestamp, NULL},
            {routing_by_event_type, NULL},
            {replay_through_sql_publishes_again, NULL},
            {row_above_message_max_bytes_dead_lettered, "sanitize"},
            {unknown_topic_dead_lettered_with_auto_creation_off, NULL},
            {eos_creates_its_progress_topic, "sanitize"},
            {eos_progress_topic_not_created_when_told, NULL},
            {eos_progress_topic_of_another_shape_is_warned, "sanitize"},
            {eos_progress_topic_creation_refused_by_kafka, "sanitize"},
            {eos_two_relays_create_one_progress_topic, "sanitize"},
            {eos_two_outboxes_in_one_process_kill_9, NULL},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                runner_add(s, cases[i].test, cases[i].tags, &servers, 240);
        return s;
}
