/* Integration tests of the relay end to end: a real PostgreSQL, the
 * outbox-dev-kafka process over TCP and the real outbox-relay binary, with
 * what reached Kafka read back by an independent consumer. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault_harness.h"
#include "fixture.h"
#include "scenarios.h"
#include "runner.h"

FX_DEV_SERVERS(3, 4);

/* A fresh migrated database per test, named after it. */
static char *fresh_db(const char *name)
{
        char *conninfo = fx_pg_create_db(pg, name);

        fx_migrate(conninfo, NULL);
        return conninfo;
}

/* The poll safety net is set to an hour in most tests, so that rows
 * arriving prove the LISTEN/NOTIFY wake-up works. */
#define NO_POLL "--poll-interval-ms", "3600000"

/* Checks that every event 1..max_id arrived and that per-key order holds
 * under at-least-once: dropping repeats (keeping each id's first
 * appearance), each key's ids ascend in log order. Returns the duplicates. */
static size_t check_order(const struct fx_msg *msgs, size_t n, long long max_id)
{
        char *seen = calloc((size_t)max_id + 1, 1);
        struct fh_first *firsts = calloc(n ? n : 1, sizeof(*firsts));
        char note[512] = "";
        size_t dups = 0, nf = 0;

        for (size_t i = 0; i < n; i++) {
                long long id = sc_outbox_id(&msgs[i]);

                ck_assert(id >= 1 && id <= max_id);
                if (seen[id]) {
                        dups++;
                        continue;
                }
                seen[id] = 1;
                firsts[nf++] = (struct fh_first){&msgs[i], i, id};
        }
        for (long long id = 1; id <= max_id; id++)
                ck_assert_msg(seen[id], "event %lld lost", id);
        ck_assert_msg(fh_key_order(firsts, nf, note, sizeof(note)) == 0, "per-key %s", note);
        free(firsts);
        free(seen);
        return dups;
}

START_TEST(rolled_back_transaction_is_never_published)
{
        char *ci = fresh_db("rollback");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {NO_POLL, NULL};
        struct fx_relay *r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        struct fx_msg *msgs;
        size_t n;

        fx_sql(c, "BEGIN");
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) "
                  "VALUES ('rb', 'k', '{\"n\": \"rolled back\"}')");
        fx_sql(c, "ROLLBACK");
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) "
                  "VALUES ('rb', 'k', '{\"n\": \"committed\"}')");
        ck_assert_int_eq(fh_wait_sent(c, 1, 30000), 1);
        n = fx_consume(fx_kafka_bootstraps(kafka), "rb", 2, 3000, &msgs);
        ck_assert_uint_eq(n, 1);
        ck_assert_uint_eq(msgs[0].value_len, strlen("{\"n\": \"committed\"}"));
        ck_assert(memcmp(msgs[0].value, "{\"n\": \"committed\"}", msgs[0].value_len) == 0);
        fx_msgs_free(msgs, n);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

/* 10,000 events over 100 keys in 10 transactions, 1,000 more rolled back:
 * all delivered once, per key in order, byte-exact (scenarios.c). */
START_TEST(ten_thousand_events_exact_and_in_order)
{
        char *ci = fresh_db("tenk");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {NO_POLL, "--batch-size", "500", NULL};
        struct fx_relay *r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        struct fx_msg *msgs;
        size_t n;

        sc_tenk_write(c);
        ck_assert_int_eq(fh_wait_sent(c, SC_TENK_ROWS, 120000), SC_TENK_ROWS);
        n = fx_consume(fx_kafka_bootstraps(kafka), "tenk", SC_TENK_ROWS, 10000, &msgs);
        sc_tenk_check(c, msgs, n);
        fx_msgs_free(msgs, n);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

START_TEST(tombstone_binary_payload_and_timestamp)
{
        char *ci = fresh_db("shapes");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {NO_POLL, NULL};
        struct fx_relay *r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        struct fx_msg *msgs;
        size_t n;

        sc_shapes_write(c);
        ck_assert_int_eq(fh_wait_sent(c, SC_SHAPES_ROWS, 30000), SC_SHAPES_ROWS);
        n = fx_consume(fx_kafka_bootstraps(kafka), "shapes", SC_SHAPES_ROWS, 5000, &msgs);
        sc_shapes_check(msgs, n);
        fx_msgs_free(msgs, n);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

START_TEST(routing_by_event_type)
{
        char *ci = fresh_db("routing");
        PGconn *c = fx_db_connect(ci);
        struct fx_relay *r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), sc_routing_args);

        sc_routing_write(c);
        ck_assert_int_eq(fh_wait_sent(c, SC_ROUTING_ROWS, 30000), SC_ROUTING_ROWS);
        sc_routing_check(fx_kafka_bootstraps(kafka), 0);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

START_TEST(unroutable_row_is_dead_lettered_with_reason)
{
        char *ci = fresh_db("noroute");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {NO_POLL, "--route", "user.*=nr-users", "--max-attempts", "1", NULL};
        struct fx_relay *r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        PGresult *res;

        fx_sql(c, "INSERT INTO outbox.events (event_type, key, payload) VALUES"
                  " ('invoice.paid', 'i1', '{}'), ('user.created', 'u1', '{}')");
        ck_assert_int_eq(fx_wait_sql(c, 1, 30000, "SELECT count(*) FROM outbox.dead_letters"), 1);
        ck_assert_int_eq(fh_wait_sent(c, 1, 30000), 1);
        res = PQexec(c, "SELECT id, reason, attempts FROM outbox.dead_letters");
        ck_assert_int_eq(atoi(PQgetvalue(res, 0, 0)), 1);
        ck_assert_msg(strstr(PQgetvalue(res, 0, 1), "invoice.paid") != NULL, "reason: %s",
                      PQgetvalue(res, 0, 1));
        ck_assert_int_eq(atoi(PQgetvalue(res, 0, 2)), 1);
        PQclear(res);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

/* A topic the cluster says does not exist: the row fails with that reason
 * and is dead-lettered, and rows for other topics are not stuck behind it. */
START_TEST(missing_topic_is_dead_lettered)
{
        char *ci = fresh_db("missing");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {NO_POLL,
                              "--max-attempts",
                              "2",
                              "--retry-base-ms",
                              "10",
                              "-X",
                              "topic.metadata.propagation.max.ms=1000",
                              NULL};
        struct fx_relay *r;
        PGresult *res;

        ck_assert_int_eq(fx_kafka_command(kafka, "topic-error no-such-topic UNKNOWN_TOPIC_OR_PART"),
                         0);
        r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) VALUES"
                  " ('no-such-topic', 'a', '{}'), ('present-topic', 'b', '{}')");
        ck_assert_int_eq(fh_wait_sent(c, 1, 60000), 1);
        ck_assert_int_eq(fx_wait_sql(c, 1, 60000, "SELECT count(*) FROM outbox.dead_letters"), 1);
        res = PQexec(c, "SELECT topic, reason, attempts FROM outbox.dead_letters");
        ck_assert_str_eq(PQgetvalue(res, 0, 0), "no-such-topic");
        ck_assert_msg(strstr(PQgetvalue(res, 0, 1), "nknown topic") != NULL, "reason: %s",
                      PQgetvalue(res, 0, 1));
        ck_assert_int_eq(atoi(PQgetvalue(res, 0, 2)), 2);
        PQclear(res);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

/* --dead-letter-topic naming a topic the cluster says is missing: the dead
 * row is in dead_letters all the same (its record is written in the same
 * transaction); the record, failing in turn, is dead-lettered with a reason
 * naming the error and is not announced again (no loop); the other rows
 * flow. Nothing is lost: every row is sent or in dead_letters. (A topic an
 * ACL refuses: the dev Kafka's metadata error leaves the record queued, as
 * Apache Kafka's does not; test_apache_security covers refused topics.) */
START_TEST(dead_letter_topic_missing)
{
        char *ci = fresh_db("dlt_missing");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {"--dead-letter-topic",
                              "dlt-missing",
                              "--max-attempts",
                              "2",
                              "--retry-base-ms",
                              "10",
                              "--poll-interval-ms",
                              "100",
                              "-X",
                              "topic.metadata.propagation.max.ms=1000",
                              NULL};
        struct fx_relay *r;
        PGresult *res;
        char *log;

        ck_assert_int_eq(fx_kafka_command(kafka, "topic-error dlt-missing UNKNOWN_TOPIC_OR_PART"),
                         0);
        r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        fx_sql(c, "INSERT INTO outbox.events (topic, key, event_type, payload) VALUES"
                  " (NULL, 'dead', 'no.route', '{}')");
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload)"
                  " SELECT 'dlt-ok', 'k' || g %% 3, '{}' FROM generate_series(1, 20) g");
        ck_assert_int_eq(fx_wait_sql(c, 2, 60000, "SELECT count(*) FROM outbox.dead_letters"), 2);
        ck_assert_int_eq(fh_wait_sent(c, 20, 30000), 20);
        res = PQexec(c, "SELECT topic, event_type, reason, attempts FROM outbox.dead_letters"
                        " ORDER BY id");
        ck_assert_int_eq(PQntuples(res), 2);
        ck_assert(PQgetisnull(res, 0, 0));                      /* the row, unroutable */
        ck_assert_str_eq(PQgetvalue(res, 1, 0), "dlt-missing"); /* its record */
        ck_assert_str_eq(PQgetvalue(res, 1, 1), "outbox.dead_letter");
        ck_assert_msg(strstr(PQgetvalue(res, 1, 2), "nknown topic") != NULL, "reason: %s",
                      PQgetvalue(res, 1, 2));
        ck_assert_int_eq(atoi(PQgetvalue(res, 1, 3)), 2);
        PQclear(res);
        /* Every row sent or dead; the record not announced again. */
        ck_assert_int_eq(fx_sql_int(c, "SELECT count(*) FROM outbox.events"
                                       " WHERE status <> 'sent' OR topic = 'dlt-missing'"),
                         0);
        log = fx_relay_log(r);
        ck_assert_msg(strstr(log, "row dead-lettered") != NULL &&
                          strstr(log, "nknown topic") != NULL,
                      "the log does not name the missing topic");
        free(log);
        ck_assert_int_eq(fx_kafka_command(kafka, "topic-error dlt-missing 0"), 0);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

/* A message larger than Kafka accepts fails every attempt, ends in
 * dead_letters with its reason; other keys flow meanwhile, and the later
 * row of its key waits until it is dead-lettered. */
START_TEST(poison_message_dead_lettered_while_others_flow)
{
        char *ci = fresh_db("poison");
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
                              "message.max.bytes=100000",
                              NULL};
        struct fx_relay *r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        struct fx_msg *msgs;
        PGresult *res;
        size_t n;

        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) VALUES"
                  " ('poison', 'bad', jsonb_build_object('blob', repeat('x', 200000)))");
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) "
                  "SELECT 'poison', CASE WHEN g = 50 THEN 'bad' ELSE 'good-' || g %% 10 END,"
                  " '{}' FROM generate_series(1, 100) g");
        ck_assert_int_eq(fx_wait_sql(c, 1, 60000, "SELECT count(*) FROM outbox.dead_letters"), 1);
        ck_assert_int_eq(fh_wait_sent(c, 100, 60000), 100);
        res = PQexec(c, "SELECT d.id, d.reason, d.attempts, d.first_attempt_at < d.last_attempt_at,"
                        " e.sent_at >= d.last_attempt_at"
                        " FROM outbox.dead_letters d, outbox.events e WHERE e.id = 51");
        ck_assert_int_eq(PQntuples(res), 1);
        ck_assert_int_eq(atoi(PQgetvalue(res, 0, 0)), 1);
        ck_assert_msg(strstr(PQgetvalue(res, 0, 1), "too large") != NULL, "reason: %s",
                      PQgetvalue(res, 0, 1));
        ck_assert_int_eq(atoi(PQgetvalue(res, 0, 2)), 3);
        ck_assert_str_eq(PQgetvalue(res, 0, 3), "t");
        ck_assert_str_eq(PQgetvalue(res, 0, 4), "t"); /* held back until dead-lettered */
        PQclear(res);
        n = fx_consume(fx_kafka_bootstraps(kafka), "poison", 100, 5000, &msgs);
        ck_assert_uint_eq(n, 100);
        fx_msgs_free(msgs, n);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

START_TEST(replay_through_sql_publishes_again)
{
        char *ci = fresh_db("replay");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {NO_POLL, NULL};
        struct fx_relay *r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        struct fx_msg *msgs;
        size_t n;

        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) "
                  "SELECT 'replay', 'k' || g, '{}' FROM generate_series(1, 5) g");
        ck_assert_int_eq(fh_wait_sent(c, 5, 30000), 5);
        fx_sql(c, "UPDATE outbox.events SET status = 'pending' WHERE id IN (2, 3)");
        ck_assert_int_eq(fh_wait_sent(c, 5, 30000), 5);
        ck_assert_int_eq(fx_sql_int(c, "SELECT outbox.replay(p_key => 'k5')"), 1);
        n = fx_consume(fx_kafka_bootstraps(kafka), "replay", 8, 30000, &msgs);
        ck_assert_uint_eq(n, 8);
        fx_msgs_free(msgs, n);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

/* The largest value of a numeric field in the relay's log lines, -1 if none. */
static long long max_log_number(const struct fx_relay *r, const char *field)
{
        char *log = fx_relay_log(r), pat[64];
        long long max = -1;

        snprintf(pat, sizeof(pat), "\"%s\":", field);
        for (const char *p = log; (p = strstr(p, pat)) != NULL; p += strlen(pat))
                if (atoll(p + strlen(pat)) > max)
                        max = atoll(p + strlen(pat));
        free(log);
        return max;
}

/* Fetches start above a floor that passes only ids whose writers have
 * ended: a row of a transaction still open when thousands of later rows are
 * published is published once it commits. Rows made pending again below
 * the floor (replay, a requeued dead letter, an UPDATE by hand) are found
 * too. */
START_TEST(rows_below_the_floor_are_published)
{
        char *ci = fresh_db("floor");
        PGconn *c = fx_db_connect(ci), *late = fx_db_connect(ci);
        const char *args[] = {NO_POLL, "--log-level", "debug", NULL};
        struct fx_relay *r;
        struct fx_msg *msgs;
        size_t n;
        int64_t deadline;

        fx_sql(late, "BEGIN; INSERT INTO outbox.events (topic, key, payload)"
                     " VALUES ('floor', 'late', '{}')");
        r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        for (int i = 0; i < 4; i++)
                fx_sql(c, "INSERT INTO outbox.events (topic, key, payload)"
                          " SELECT 'floor', 'k' || g %% 10, '{}' FROM generate_series(1, 500) g");
        ck_assert_int_eq(fh_wait_sent(c, 2000, 30000), 2000);
        ck_assert_int_eq(max_log_number(r, "above_id"), 0);
        fx_sql(late, "COMMIT");
        ck_assert_int_eq(
            fx_wait_sql(c, 1, 30000,
                        "SELECT count(*) FROM outbox.events WHERE id = 1 AND status = 'sent'"),
            1);

        /* Once nothing is in progress the floor moves up. */
        deadline = fx_now_ms() + 30000;
        while (max_log_number(r, "above_id") < 2001) {
                ck_assert_msg(fx_now_ms() < deadline, "fetches never started above id 2001");
                fx_sql(
                    c,
                    "INSERT INTO outbox.events (topic, key, payload) VALUES ('floor', 'm', '{}')");
                ck_assert_int_eq(fx_wait_sql(c, 0, 30000,
                                             "SELECT count(*) FROM outbox.events"
                                             " WHERE status = 'pending'"),
                                 0);
        }
        fx_sql(c, "SELECT outbox.replay(p_from_id => 5, p_to_id => 5)");
        fx_sql(c, "UPDATE outbox.events SET status = 'pending', sent_at = NULL WHERE id = 9");
        fx_sql(c,
               "WITH m AS (DELETE FROM outbox.events WHERE id = 7 RETURNING *)"
               " INSERT INTO outbox.dead_letters (id, event_id, topic, key, payload, headers,"
               " created_at, attempts, reason)"
               " SELECT id, event_id, topic, key, payload, headers, created_at, 1, 'test' FROM m");
        ck_assert_int_eq(fx_sql_int(c, "SELECT outbox.requeue_dead(p_id => 7)"), 1);
        ck_assert_int_eq(fx_wait_sql(c, 3, 30000,
                                     "SELECT count(*) FROM outbox.events WHERE id IN (5, 7, 9)"
                                     " AND status = 'sent' AND sent_at IS NOT NULL"),
                         3);
        /* Every row once, and the three again. */
        long long total = fx_sql_int(c, "SELECT count(*) FROM outbox.events");
        n = fx_consume(fx_kafka_bootstraps(kafka), "floor", (size_t)total + 3, 30000, &msgs);
        ck_assert_uint_eq(n, (size_t)total + 3);
        ck_assert_uint_eq(check_order(msgs, n, total), 3);
        fx_msgs_free(msgs, n);

        /* Ids drawn again from 1, far below the floor. */
        fx_sql(c, "TRUNCATE outbox.events RESTART IDENTITY");
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload)"
                  " SELECT 'floor', 'again', '{}' FROM generate_series(1, 5)");
        ck_assert_int_eq(fh_wait_sent(c, 5, 30000), 5);
        fx_relay_free(r);
        PQfinish(late);
        PQfinish(c);
        free(ci);
}
END_TEST

START_TEST(kill_9_and_restart_lose_nothing)
{
        char *ci = fresh_db("kill9");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {"--batch-size", "200", NULL};
        struct fx_relay *r;
        struct fx_msg *msgs;
        size_t n, dups;
        const int total = 20000;

        fx_sql(c,
               "INSERT INTO outbox.events (topic, key, payload) "
               "SELECT 'kill9', 'k' || (g %% 50), jsonb_build_object('n', g) "
               "FROM generate_series(1, %d) g",
               total);
        for (int round = 0; round < 3; round++) {
                long long before = fx_sql_int(c, "SELECT count(*) FROM outbox.events"
                                                 " WHERE status = 'sent'");

                r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
                /* Kill it once it has made progress, mid-stream. */
                fx_wait_sql(c, 1, 60000,
                            "SELECT (count(*) > %lld + 1000)::int FROM outbox.events"
                            " WHERE status = 'sent'",
                            before);
                fx_relay_kill(r, SIGKILL);
                ck_assert_int_eq(fx_relay_wait(r, 10000), 128 + SIGKILL);
                fx_relay_free(r);
        }
        r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        ck_assert_int_eq(fh_wait_sent(c, total, 120000), total);
        n = fx_consume(fx_kafka_bootstraps(kafka), "kill9", (size_t)total * 2, 5000, &msgs);
        ck_assert_uint_ge(n, (size_t)total);
        dups = check_order(msgs, n, total);
        ck_assert_uint_eq(n, total + dups);
        fprintf(stderr, "kill -9 x3: %d events, %zu duplicates\n", total, dups);
        fx_msgs_free(msgs, n);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

/* SIGTERM mid-stream: exit 0, and every row Kafka has is marked sent. */
START_TEST(sigterm_exits_zero_with_delivered_rows_marked)
{
        char *ci = fresh_db("sigterm");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {"--batch-size", "200", NULL};
        struct fx_relay *r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        struct fx_msg *msgs;
        size_t n;
        long long sent;

        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) "
                  "SELECT 'sigterm', 'k' || (g %% 50), jsonb_build_object('n', g) "
                  "FROM generate_series(1, 50000) g");
        fx_wait_sql(c, 1, 60000,
                    "SELECT (count(*) > 2000)::int FROM outbox.events WHERE status = 'sent'");
        fx_relay_kill(r, SIGTERM);
        ck_assert_int_eq(fx_relay_wait(r, 30000), 0);
        sent = fx_sql_int(c, "SELECT count(*) FROM outbox.events WHERE status = 'sent'");
        ck_assert_int_lt(sent, 50000); /* it did stop mid-stream */
        n = fx_consume(fx_kafka_bootstraps(kafka), "sigterm", 50000, 5000, &msgs);
        ck_assert_uint_eq(n, (size_t)sent);
        for (size_t i = 0; i < n; i++)
                ck_assert_int_eq(fx_sql_int(c,
                                            "SELECT count(*) FROM outbox.events WHERE id = %lld"
                                            " AND status = 'sent' AND kafka_offset = %lld",
                                            sc_outbox_id(&msgs[i]), (long long)msgs[i].offset),
                                 1);
        fx_msgs_free(msgs, n);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

/* Rows published one batch at a time wait for their mark together: with
 * --mark-delay-ms 60000, five one-row batches are all in Kafka while their
 * rows are still pending; SIGTERM marks them at once, in one statement
 * (one sent_at), instead of after the delay. */
START_TEST(batches_are_marked_together_and_at_shutdown)
{
        char *ci = fresh_db("marks");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {NO_POLL, "--mark-delay-ms", "60000", NULL};
        struct fx_relay *r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        struct fx_msg *msgs;
        size_t n;

        for (int i = 1; i <= 5; i++) {
                fx_sql(c,
                       "INSERT INTO outbox.events (topic, key, payload) "
                       "VALUES ('marks', 'k', jsonb_build_object('n', %d))",
                       i);
                n = fx_consume(fx_kafka_bootstraps(kafka), "marks", (size_t)i, 30000, &msgs);
                ck_assert_uint_eq(n, (size_t)i);
                fx_msgs_free(msgs, n);
        }
        ck_assert_int_eq(
            fx_sql_int(c, "SELECT count(*) FROM outbox.events WHERE status = 'pending'"), 5);
        fx_relay_kill(r, SIGTERM);
        ck_assert_int_eq(fx_relay_wait(r, 30000), 0);
        ck_assert_int_eq(fx_sql_int(c, "SELECT count(*) FROM outbox.events WHERE status = 'sent'"),
                         5);
        ck_assert_int_eq(fx_sql_int(c, "SELECT count(DISTINCT sent_at) FROM outbox.events"), 1);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

/* Published batches waiting for their shared mark do not count against
 * the pipeline: at 1,000 events/s the relay fetches a few rows every
 * --busy-poll-ms, and a hold of twice the pipeline cut a mark every 8
 * batches (~90 UPDATEs a second) long before --mark-delay-ms was up. With
 * a pipeline of 1, twelve batches published one after the other all wait
 * for one mark, at shutdown. */
START_TEST(published_batches_wait_for_one_mark_beyond_the_pipeline)
{
        char *ci = fresh_db("markhold");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {NO_POLL, "--pipeline-depth", "1", "--mark-delay-ms", "60000", NULL};
        struct fx_relay *r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        struct fx_msg *msgs;
        size_t n;

        for (int i = 1; i <= 12; i++) {
                fx_sql(c,
                       "INSERT INTO outbox.events (topic, key, payload) "
                       "VALUES ('markhold', 'k', jsonb_build_object('n', %d))",
                       i);
                n = fx_consume(fx_kafka_bootstraps(kafka), "markhold", (size_t)i, 30000, &msgs);
                ck_assert_uint_eq(n, (size_t)i);
                ck_assert_uint_eq(check_order(msgs, n, i), 0); /* each once, in order */
                fx_msgs_free(msgs, n);
        }
        ck_assert_int_eq(
            fx_sql_int(c, "SELECT count(*) FROM outbox.events WHERE status = 'pending'"), 12);
        fx_relay_kill(r, SIGTERM);
        ck_assert_int_eq(fx_relay_wait(r, 30000), 0);
        ck_assert_int_eq(fx_sql_int(c, "SELECT count(*) FROM outbox.events WHERE status = 'sent'"),
                         12);
        ck_assert_int_eq(fx_sql_int(c, "SELECT count(DISTINCT sent_at) FROM outbox.events"), 1);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

/* The relay's database session killed mid-stream, twice: it reconnects,
 * LISTENs again and finishes the stream without loss. */
START_TEST(database_connection_loss_is_survived)
{
        char *ci = fresh_db("dbloss");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {NO_POLL, "--batch-size", "200", "--reconnect-max-ms", "500", NULL};
        struct fx_relay *r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        struct fx_msg *msgs;
        size_t n, dups;
        const int total = 20000;

        fx_sql(c,
               "INSERT INTO outbox.events (topic, key, payload) "
               "SELECT 'dbloss', 'k' || (g %% 20), jsonb_build_object('n', g) "
               "FROM generate_series(1, %d) g",
               total);
        for (int round = 1; round <= 2; round++) {
                fx_wait_sql(c, 1, 60000,
                            "SELECT (count(*) > %d)::int FROM outbox.events WHERE status = 'sent'",
                            round * 5000);
                ck_assert_int_eq(fx_sql_int(c, "SELECT count(pg_terminate_backend(pid))"
                                               " FROM pg_stat_activity"
                                               " WHERE application_name LIKE 'outbox-relay/%%'"),
                                 1);
        }
        ck_assert_int_eq(fh_wait_sent(c, total, 120000), total);
        /* LISTEN is back: a new row is picked up without the poll. */
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) VALUES ('dbloss', 'k0', '{}')");
        ck_assert_int_eq(fh_wait_sent(c, total + 1, 30000), total + 1);
        n = fx_consume(fx_kafka_bootstraps(kafka), "dbloss", (size_t)total * 2, 5000, &msgs);
        dups = check_order(msgs, n, total + 1);
        ck_assert_uint_eq(n, total + 1 + dups);
        fx_msgs_free(msgs, n);
        fx_relay_kill(r, SIGTERM);
        ck_assert_int_eq(fx_relay_wait(r, 30000), 0);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

/* Polls the relay's log until it contains text; returns whether it did. */
static int wait_log(struct fx_relay *r, const char *text, int timeout_ms)
{
        int64_t deadline = fx_now_ms() + timeout_ms;

        for (;;) {
                char *log = fx_relay_log(r);
                int found = log != NULL && strstr(log, text) != NULL;

                free(log);
                if (found || fx_now_ms() >= deadline)
                        return found;
                usleep(20000);
        }
}

/* A generic plan made from the statistics of an empty outbox would scan the
 * whole table on every fetch: while the table has outgrown its statistics
 * the relay plans every statement, and reuses generic plans once the table
 * has been analyzed. */
START_TEST(plans_follow_the_statistics)
{
        char *ci = fresh_db("plans");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {NO_POLL, NULL};
        struct fx_relay *r;
        struct fx_msg *msgs;
        char *log;
        size_t n;

        /* Analyzed empty, then 4 MB of sent rows: the statistics say 0 pages
         * (and autovacuum must not analyze it before the test does). */
        fx_sql(c, "ALTER TABLE outbox.events SET (autovacuum_enabled = false)");
        fx_sql(c, "ANALYZE outbox.events");
        fx_sql(c,
               "INSERT INTO outbox.events (topic, key, payload, status, sent_at)"
               " SELECT 'plans', 'k', jsonb_build_object('pad', repeat('x', 1000)), 'sent', now()"
               " FROM generate_series(1, 4000)");
        r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        ck_assert_msg(wait_log(r, "planning each mark", 30000),
                      "no 'planning each mark' in the log");
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload)"
                  " SELECT 'plans', 'k', jsonb_build_object('n', g) FROM generate_series(1, 20) g");
        n = fx_consume(fx_kafka_bootstraps(kafka), "plans", 20, 30000, &msgs);
        ck_assert_uint_eq(n, 20);
        fx_msgs_free(msgs, n);
        log = fx_relay_log(r);
        ck_assert_msg(strstr(log, "reusing generic plans") == NULL,
                      "generic plans before the table was analyzed");
        free(log);
        /* Analyzed: the next look at the statistics (every 10 s) lets go. */
        fx_sql(c, "ANALYZE outbox.events");
        ck_assert_msg(wait_log(r, "reusing generic plans", 30000),
                      "no 'reusing generic plans' after ANALYZE");
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

/* Lines of the server's log that backend pid wrote starting with what
 * (the fixture's server keeps the default log_line_prefix, "%m [%p] "). */
static int count_server_log(int pid, const char *what)
{
        FILE *f = fopen(fx_pg_log_path(pg), "r");
        char line[4096], prefix[64];
        int n = 0;

        ck_assert_ptr_nonnull(f);
        snprintf(prefix, sizeof(prefix), "[%d] %s", pid, what);
        while (fgets(line, sizeof(line), f) != NULL)
                if (strstr(line, prefix) != NULL)
                        n++;
        fclose(f);
        return n;
}

/* The fetch is planned once a session, not at each execution (~0.2 ms of
 * its backend, more than running it, at one fetch an event at low rates),
 * even while the statistics are stale: then a custom plan would be a
 * bitmap scan of every pending row sorted by id, and a generic plan made
 * from them a scan of the whole table. PostgreSQL logs every plan it makes
 * for the relay's sessions (debug_print_plan); 40 rows published one at a
 * time take at least 40 fetches on the reader's session. */
START_TEST(fetch_planned_once)
{
        char *ci = fresh_db("plan_once");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {NO_POLL, NULL};
        struct fx_relay *r;
        PGresult *res;
        int plans;

        fx_sql(c, "ALTER TABLE outbox.events SET (autovacuum_enabled = false)");
        fx_sql(c, "ANALYZE outbox.events");
        fx_sql(c,
               "INSERT INTO outbox.events (topic, key, payload, status, sent_at)"
               " SELECT 'plan1', 'k', jsonb_build_object('pad', repeat('x', 1000)), 'sent', now()"
               " FROM generate_series(1, 4000)");
        fx_sql(c, "DO $$ BEGIN EXECUTE format('ALTER ROLE %%I IN DATABASE %%I SET debug_print_plan"
                  " = on', '" FX_RELAY_ROLE "', current_database()); END $$");
        r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        for (int i = 1; i <= 40; i++) {
                fx_sql(c,
                       "INSERT INTO outbox.events (topic, key, payload)"
                       " VALUES ('plan1', 'k', jsonb_build_object('n', %d))",
                       i);
                ck_assert_int_eq(fh_wait_sent(c, 4000 + i, 30000), 4000 + i);
        }
        /* The reader: outbox-relay/<instance>, the writers -writer/. */
        res = PQexec(c, "SELECT pid FROM pg_stat_activity WHERE usename = '" FX_RELAY_ROLE "'"
                        " AND datname = current_database()"
                        " AND application_name LIKE 'outbox-relay/%'");
        ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
        ck_assert_int_eq(PQntuples(res), 1);
        plans = count_server_log(atoi(PQgetvalue(res, 0, 0)), "LOG:  plan:");
        PQclear(res);
        ck_assert_msg(plans > 0, "no plan in the server's log: debug_print_plan did not apply");
        printf("fetch_planned_once: the reader made %d plans for 40 rows published one at a time\n",
               plans);
        /* Each of the reader's statements once (and the queries inside
         * writers()): far fewer than the 40 fetches. */
        ck_assert_msg(plans < 20, "the reader made %d plans for 40 rows published one at a time",
                      plans);
        fx_sql(c,
               "DO $$ BEGIN EXECUTE format('ALTER ROLE %%I IN DATABASE %%I RESET debug_print_plan',"
               " '" FX_RELAY_ROLE "', current_database()); END $$");
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

/* Two replicas on one outbox: one leads, the other waits; SIGKILL the
 * leader mid-stream and the standby takes over with nothing lost and
 * per-key order kept. */
START_TEST(standby_takes_over_when_the_leader_dies)
{
        char *ci = fresh_db("failover");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {"--batch-size", "200", "--leader-poll-ms", "200", NULL};
        struct fx_relay *a, *b;
        struct fx_msg *msgs;
        size_t n, dups;
        int64_t killed;
        const int total = 30000;

        a = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        ck_assert(wait_log(a, "leader: publishing", 30000));
        b = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        ck_assert(wait_log(b, "standby: another relay holds the leader lock", 30000));
        fx_sql(c,
               "INSERT INTO outbox.events (topic, key, payload) "
               "SELECT 'failover', 'k' || (g %% 50), jsonb_build_object('n', g) "
               "FROM generate_series(1, %d) g",
               total);
        fx_wait_sql(c, 1, 60000,
                    "SELECT (count(*) > 5000)::int FROM outbox.events WHERE status = 'sent'");
        ck_assert_msg(fx_sql_int(c, "SELECT count(*) FROM outbox.events WHERE status = 'sent'") <
                          total,
                      "the stream ended before the leader was killed");
        fx_relay_kill(a, SIGKILL);
        killed = fx_now_ms();
        ck_assert(wait_log(b, "leader: publishing", 30000));
        fprintf(stderr, "failover: standby took over %lld ms after SIGKILL of the leader\n",
                (long long)(fx_now_ms() - killed));
        ck_assert_int_eq(fh_wait_sent(c, total, 120000), total);
        n = fx_consume(fx_kafka_bootstraps(kafka), "failover", (size_t)total * 2, 5000, &msgs);
        dups = check_order(msgs, n, total);
        ck_assert_uint_eq(n, total + dups);
        fprintf(stderr, "failover: %d events, %zu duplicates\n", total, dups);
        fx_msgs_free(msgs, n);
        fx_relay_free(a);
        fx_relay_free(b);
        PQfinish(c);
        free(ci);
}
END_TEST

/* Scrapes /metrics while a standby waits and then publishes; the figures
 * move as they should, and the probes answer. */
START_TEST(metrics_and_probes)
{
        char *ci = fresh_db("metrics");
        char *locker_ci = NULL;
        PGconn *c = fx_db_connect(ci), *locker;
        int port = fx_free_port();
        char listen[64], *body;
        const char *args[] = {"--http-listen", listen, "--leader-poll-ms", "100", NULL};
        struct fx_relay *r;
        int64_t deadline;

        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        /* Hold the leader lock ourselves, named as another relay would be
         * (a holder that is not a relay makes the relay unready: see
         * a_session_that_is_not_a_relay_holding_the_lock_is_named). */
        ck_assert(asprintf(&locker_ci, "%s application_name=outbox-relay/other", ci) > 0);
        locker = fx_db_connect(locker_ci);
        free(locker_ci);
        /* The relay must stay a standby. */
        fx_sql(locker, "SELECT pg_advisory_lock(%d, hashtext('outbox'))", 0x6f627278);
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload, created_at) "
                  "SELECT 'metrics-t', 'k' || (g %% 7), '{}', now() - interval '1 minute' "
                  "FROM generate_series(1, 300) g");
        r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        deadline = fx_now_ms() + 30000;
        for (;;) { /* until it has connected and counted the backlog */
                int status = fx_http_get(port, "/metrics", &body);

                if (status == 200 && fx_metric(body, "outbox_relay_pending_rows") == 300)
                        break;
                free(body);
                ck_assert_msg(fx_now_ms() < deadline, "pending rows never reached 300");
                usleep(50000);
        }
        ck_assert(fx_metric(body, "outbox_relay_oldest_pending_age_seconds") >= 60);
        ck_assert(fx_metric(body, "outbox_relay_leader") == 0);
        ck_assert(fx_metric(body, "outbox_relay_database_connected") == 1);
        ck_assert(fx_metric(body, "outbox_relay_messages_published_total{topic=\"metrics-t\"}") <
                  0);
        free(body);
        ck_assert_int_eq(fx_http_get(port, "/readyz", &body), 200); /* a standby is ready */
        free(body);
        ck_assert_int_eq(fx_http_get(port, "/healthz", &body), 200);
        free(body);
        ck_assert_int_eq(fx_http_get(port, "/nope", &body), 404);
        free(body);

        fx_sql(locker, "SELECT pg_advisory_unlock(%d, hashtext('outbox'))", 0x6f627278);
        ck_assert_int_eq(fh_wait_sent(c, 300, 30000), 300);
        ck_assert_int_eq(fx_http_get(port, "/metrics", &body), 200);
        ck_assert(fx_metric(body, "outbox_relay_leader") == 1);
        ck_assert(fx_metric(body, "outbox_relay_messages_published_total{topic=\"metrics-t\"}") ==
                  300);
        ck_assert(fx_metric(body, "outbox_relay_publish_ack_seconds_count") >= 300);
        ck_assert(fx_metric(body, "outbox_relay_batch_rows_count") >= 1);
        ck_assert(fx_metric(body, "outbox_relay_batch_rows_sum") == 300);
        free(body);
        fx_relay_kill(r, SIGTERM);
        ck_assert_int_eq(fx_relay_wait(r, 30000), 0);
        fx_relay_free(r);
        PQfinish(locker);
        PQfinish(c);
        free(ci);
}
END_TEST

/* Advisory locks need no grant: a session of the INSERT-only writer role
 * takes the leader lock, and every relay stays a standby. The relay names
 * it (pid, role, application_name) in its log, /readyz and a gauge while
 * publishing nothing; once it lets go, the relay leads and publishes every
 * row, per key in order. */
START_TEST(a_session_that_is_not_a_relay_holding_the_lock_is_named)
{
        char *ci = fresh_db("squatter"), *writer_ci, *body = NULL, *out = NULL, want[256];
        PGconn *c = fx_db_connect(ci), *squatter;
        int port = fx_free_port();
        char listen[64];
        const char *args[] = {"--http-listen", listen, "--leader-poll-ms", "100", NULL};
        const char *status[] = {OUTBOX_RELAY_BIN, "status", "--database-url", ci, NULL};
        struct fx_relay *r;
        struct fx_msg *msgs;
        long long pid;
        int64_t deadline;
        size_t n;
        int code;

        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        writer_ci = fx_conninfo_as(ci, FX_WRITER_ROLE);
        ck_assert(asprintf(&body, "%s application_name=squatter", writer_ci) > 0);
        squatter = fx_db_connect(body);
        free(body);
        ck_assert_int_eq(fx_sql_int(squatter,
                                    "SELECT pg_try_advisory_lock(%d, hashtext('outbox'))::int",
                                    0x6f627278),
                         1);
        pid = fx_sql_int(squatter, "SELECT pg_backend_pid()");
        fx_sql(squatter, "INSERT INTO outbox.events (topic, key, payload)"
                         " SELECT 'squatter', 'k' || (g %% 5), jsonb_build_object('n', g)"
                         " FROM generate_series(1, 100) g");
        r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        snprintf(want, sizeof(want),
                 "\"pid\":%lld,\"role\":\"" FX_WRITER_ROLE "\",\"application_name\":\"squatter\"",
                 pid);
        ck_assert_msg(wait_log(r, want, 30000), "the holder was never named: %s", want);
        ck_assert(wait_log(r, "the leader lock is held by a session that is not a relay", 0));
        /* /readyz names it too: no relay publishes, so none is ready. */
        snprintf(want, sizeof(want),
                 "(pid %lld, role \"" FX_WRITER_ROLE
                 "\", application_name \"squatter\", for at least",
                 pid);
        deadline = fx_now_ms() + 30000;
        while ((code = fx_http_get(port, "/readyz", &body)) != 503 || strstr(body, want) == NULL) {
                ck_assert_msg(fx_now_ms() < deadline, "/readyz: %d %s", code, body ? body : "");
                free(body);
                usleep(50000);
        }
        free(body);
        ck_assert_int_eq(fx_http_get(port, "/metrics", &body), 200);
        ck_assert(fx_metric(body, "outbox_relay_leader_lock_foreign") == 1);
        ck_assert(fx_metric(body, "outbox_relay_leader") == 0);
        free(body);
        ck_assert_int_eq(fx_run(status, NULL, &out, 30000), 0);
        ck_assert_msg(strstr(out, "warning:            the leader lock's holder is not a relay") !=
                          NULL,
                      "%s", out);
        free(out);
        ck_assert_int_eq(fx_sql_int(c, "SELECT count(*) FROM outbox.events WHERE status = 'sent'"),
                         0);

        fx_sql(squatter, "SELECT pg_advisory_unlock(%d, hashtext('outbox'))", 0x6f627278);
        ck_assert(wait_log(r, "leader: publishing", 30000));
        ck_assert_int_eq(fh_wait_sent(c, 100, 30000), 100);
        n = fx_consume(fx_kafka_bootstraps(kafka), "squatter", 200, 5000, &msgs);
        ck_assert_uint_eq(n, 100 + check_order(msgs, n, 100));
        fx_msgs_free(msgs, n);
        ck_assert_int_eq(fx_http_get(port, "/readyz", &body), 200);
        free(body);
        ck_assert_int_eq(fx_http_get(port, "/metrics", &body), 200);
        ck_assert(fx_metric(body, "outbox_relay_leader_lock_foreign") == 0);
        free(body);
        fx_relay_free(r);
        PQfinish(squatter);
        PQfinish(c);
        free(writer_ci);
        free(ci);
}
END_TEST

/* Retention deletes sent rows older than its age, and nothing else. */
START_TEST(retention_deletes_old_sent_rows_only)
{
        char *ci = fresh_db("retention");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {NO_POLL, "--retention", "1h", NULL};
        struct fx_relay *r;

        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) "
                  "SELECT 'retention', 'k', '{}' FROM generate_series(1, 2500)");
        /* 2,400 rows were sent two hours ago; 100 are pending. */
        fx_sql(c, "UPDATE outbox.events SET status = 'sent', sent_at = now() - interval '2 hours'"
                  " WHERE id <= 2400");
        r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        ck_assert_int_eq(fx_wait_sql(c, 100, 60000, "SELECT count(*) FROM outbox.events"), 100);
        ck_assert_int_eq(fh_wait_sent(c, 100, 30000), 100);
        ck_assert_int_eq(fx_sql_int(c, "SELECT min(id) FROM outbox.events"), 2401);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

/* Counts notifications on conn until the payload "marker" arrives. */
static int notifications_before_marker(PGconn *conn, int timeout_ms)
{
        int64_t deadline = fx_now_ms() + timeout_ms;
        int count = 0;

        while (fx_now_ms() < deadline) {
                PGnotify *n;

                ck_assert(PQconsumeInput(conn));
                while ((n = PQnotifies(conn)) != NULL) {
                        int marker = strcmp(n->extra, "marker") == 0;

                        PQfreemem(n);
                        if (marker)
                                return count;
                        count++;
                }
                usleep(5000);
        }
        ck_abort_msg("the marker notification never arrived");
        return -1;
}

/* Writers notify only while the relay waits: while it is busy (polling on
 * its own) their commits skip NOTIFY and its global commit lock. It polls
 * only once rows come at --busy-poll-min-rate (here 5 a second): below
 * that, most polls would find nothing, and writers keep notifying. */
START_TEST(writers_notify_only_while_the_relay_waits)
{
        char *ci = fresh_db("notify");
        PGconn *c = fx_db_connect(ci), *listener = fx_db_connect(ci);
        const char *args[] = {NO_POLL, "--idle-after-ms", "1500", "--busy-poll-min-rate", "5",
                              NULL};
        struct fx_relay *r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);

        fx_sql(listener, "LISTEN \"outbox.events\"");
        /* Idle: waiting for notifications, so a commit notifies. */
        ck_assert_int_eq(fx_wait_sql(c, 1, 30000, "SELECT waiting::int FROM outbox.relay_state"),
                         1);
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) VALUES ('notify', 'a', '{}')");
        fx_sql(c, "NOTIFY \"outbox.events\", 'marker'");
        ck_assert_int_eq(notifications_before_marker(listener, 10000), 1);
        ck_assert_int_eq(fh_wait_sent(c, 1, 30000), 1);
        /* One row is under the rate: the relay still waits, writers notify. */
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) VALUES ('notify', 'b', '{}')");
        fx_sql(c, "NOTIFY \"outbox.events\", 'marker'");
        ck_assert_int_eq(notifications_before_marker(listener, 10000), 1);
        ck_assert_int_eq(fx_sql_int(c, "SELECT waiting::int FROM outbox.relay_state"), 1);
        /* Five rows at once: the relay polls on its own and tells writers
         * so, for at least a second (the rate is counted over a second, and
         * --idle-after-ms is 1.5 s), time enough for the next commit. */
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload)"
                  " SELECT 'notify', 'k' || g, '{}' FROM generate_series(1, 5) g");
        fx_sql(c, "NOTIFY \"outbox.events\", 'marker'");
        ck_assert_int_eq(notifications_before_marker(listener, 10000), 1);
        ck_assert_int_eq(fx_wait_sql(c, 0, 30000, "SELECT waiting::int FROM outbox.relay_state"),
                         0);
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) VALUES ('notify', 'c', '{}')");
        fx_sql(c, "NOTIFY \"outbox.events\", 'marker'");
        ck_assert_int_eq(notifications_before_marker(listener, 10000), 0);
        ck_assert_int_eq(fh_wait_sent(c, 8, 30000), 8);
        /* Quiet again: back to waiting, and a new row is woken for. */
        ck_assert_int_eq(fx_wait_sql(c, 1, 30000, "SELECT waiting::int FROM outbox.relay_state"),
                         1);
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) VALUES ('notify', 'd', '{}')");
        ck_assert_int_eq(fh_wait_sent(c, 9, 30000), 9);
        fx_relay_free(r);
        PQfinish(listener);
        PQfinish(c);
        free(ci);
}
END_TEST

/* Rows that slow down below half of --busy-poll-min-rate send the relay
 * back to notifications even though some still come (--idle-after-ms alone
 * would keep it polling): polls would mostly find nothing. */
START_TEST(relay_waits_again_when_rows_slow_down)
{
        char *ci = fresh_db("slowdown");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {NO_POLL, "--idle-after-ms", "3600000", "--busy-poll-min-rate", "1000",
                              NULL};
        struct fx_relay *r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);

        ck_assert_int_eq(fx_wait_sql(c, 1, 30000, "SELECT waiting::int FROM outbox.relay_state"),
                         1);
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload)"
                  " SELECT 'slowdown', 'k' || g %% 10, '{}' FROM generate_series(1, 1000) g");
        ck_assert_int_eq(fx_wait_sql(c, 0, 30000, "SELECT waiting::int FROM outbox.relay_state"),
                         0);
        ck_assert_int_eq(fh_wait_sent(c, 1000, 30000), 1000);
        ck_assert_int_eq(fx_wait_sql(c, 1, 30000, "SELECT waiting::int FROM outbox.relay_state"),
                         1);
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) VALUES ('slowdown', 'z', '{}')");
        ck_assert_int_eq(fh_wait_sent(c, 1001, 30000), 1001);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

/* One try at opening the writer while the relay polls: a burst at the
 * rate sends it polling, the writer inserts, and the try counts only if the
 * relay still polled after that insert (it goes back to notifications
 * after --idle-after-ms, which a loaded machine can let pass before the
 * test looks): otherwise the writer's row would notify, the path under
 * test would not be taken, and the writer commits (its row notifies, and
 * is checked like the others) for another try. */
static int open_writer_while_polling(PGconn *c, PGconn *late, const char *burst)
{
        fx_sql(c, "%s", burst);
        if (fx_wait_sql(c, 0, 10000, "SELECT waiting::int FROM outbox.relay_state") != 0)
                return 0;
        fx_sql(late, "BEGIN");
        fx_sql(late,
               "INSERT INTO outbox.events (topic, key, payload) VALUES ('burst', 'late', '{}')");
        /* waiting goes from true to false only on a fetch of new rows, and
         * none are committed meanwhile: false now means false at the insert. */
        if (fx_sql_int(c, "SELECT waiting::int FROM outbox.relay_state") == 0)
                return 1;
        fx_sql(late, "COMMIT");
        return 0;
}

/* Bursts right at --busy-poll-min-rate (50 rows at once) around a writer
 * that opens its transaction while the relay polls on its own (so its
 * commit sends no notification) and commits only after the relay has gone
 * back to waiting for notifications, with the poll safety net an hour
 * away: its row is published all the same, nothing is lost, each key keeps
 * its order, and the relay waits for notifications again. */
START_TEST(busy_poll_burst_at_the_rate_with_a_writer_open_below)
{
        char *ci = fresh_db("burst"), *writer_ci = fx_conninfo_as(ci, FX_WRITER_ROLE);
        PGconn *c = fx_db_connect(ci), *late = fx_db_connect(writer_ci);
        const char *args[] = {NO_POLL, "--idle-after-ms", "1500", "--busy-poll-min-rate", "50",
                              NULL};
        const char *burst = "INSERT INTO outbox.events (topic, key, payload)"
                            " SELECT 'burst', 'k' || g % 5, '{}' FROM generate_series(1, 50) g";
        struct fx_relay *r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        struct fx_msg *msgs;
        int tries = 0, rows;
        size_t n;

        ck_assert_int_eq(fx_wait_sql(c, 1, 30000, "SELECT waiting::int FROM outbox.relay_state"),
                         1);
        while (!open_writer_while_polling(c, late, burst))
                ck_assert_msg(++tries < 5, "the relay never polled when the writer inserted");
        rows = 51 * tries + 50; /* and the open writer's row */
        fx_sql(c, "%s", burst); /* above the open writer's row */
        rows += 50;
        ck_assert_int_eq(fh_wait_sent(c, rows, 30000), rows);
        /* Quiet: back to notifications while the writer is still open. */
        ck_assert_int_eq(fx_wait_sql(c, 1, 30000, "SELECT waiting::int FROM outbox.relay_state"),
                         1);
        fx_sql(late, "COMMIT");
        ck_assert_int_eq(fh_wait_sent(c, rows + 1, 30000), rows + 1);
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) VALUES ('burst', 'late', '{}')");
        rows += 2;
        ck_assert_int_eq(fh_wait_sent(c, rows, 30000), rows);
        n = fx_consume(fx_kafka_bootstraps(kafka), "burst", (size_t)rows * 2, 5000, &msgs);
        ck_assert_uint_eq(n, (size_t)rows + check_order(msgs, n, (size_t)rows));
        fx_msgs_free(msgs, n);
        ck_assert_int_eq(fx_wait_sql(c, 1, 30000, "SELECT waiting::int FROM outbox.relay_state"),
                         1);
        fx_relay_free(r);
        PQfinish(late);
        PQfinish(c);
        free(writer_ci);
        free(ci);
}
END_TEST

/* kcat, an independent Kafka client, sees what the relay published. */
START_TEST(kcat_reads_the_published_events)
{
        char *ci = fresh_db("kcat");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {NO_POLL, NULL};
        struct fx_relay *r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        const char *kcat[] = {"/usr/bin/kcat",
                              "-b",
                              fx_kafka_bootstraps(kafka),
                              "-C",
                              "-t",
                              "kcat-check",
                              "-o",
                              "beginning",
                              "-e",
                              "-q",
                              "-f",
                              "%k|%s|%h\\n",
                              NULL};
        char *out = NULL;

        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload, headers) "
                  "VALUES ('kcat-check', 'order-42', '{\"status\":\"created\"}',"
                  " '{\"correlation_id\":\"c-1\"}')");
        ck_assert_int_eq(fh_wait_sent(c, 1, 30000), 1);
        ck_assert_int_eq(fx_run(kcat, NULL, &out, 30000), 0);
        ck_assert_msg(strstr(out, "order-42|{\"status\": \"created\"}|") != NULL, "kcat: %s", out);
        ck_assert_msg(strstr(out, "correlation_id=c-1") != NULL, "kcat: %s", out);
        ck_assert_msg(strstr(out, "outbox_id=1") != NULL, "kcat: %s", out);
        free(out);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

/* A newcomer's first screen: a relay that starts, publishes and is
 * stopped logs no warning or error (librdkafka used to warn at every start
 * that enable.gapless.guarantee, which the relay sets, is experimental). */
START_TEST(a_clean_run_logs_no_warning)
{
        char *ci = fresh_db("clean_start");
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {NO_POLL, NULL};
        struct fx_relay *r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        char *log, *line;

        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) "
                  "VALUES ('clean-start', 'k', '{}')");
        ck_assert_int_eq(fh_wait_sent(c, 1, 30000), 1);
        fx_relay_kill(r, SIGTERM);
        ck_assert_int_eq(fx_relay_wait(r, 30000), 0);
        log = fx_relay_log(r);
        for (line = strtok(log, "\n"); line != NULL; line = strtok(NULL, "\n"))
                ck_assert_msg(strstr(line, "\"level\":\"warn\"") == NULL &&
                                  strstr(line, "\"level\":\"error\"") == NULL,
                              "a clean run logged: %s", line);
        free(log);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

static const struct runner_servers servers = {suite_setup, suite_teardown};

Suite *test_suite(void)
{
        const TTest *const tests[] = {rolled_back_transaction_is_never_published,
                                      ten_thousand_events_exact_and_in_order,
                                      tombstone_binary_payload_and_timestamp,
                                      routing_by_event_type,
                                      unroutable_row_is_dead_lettered_with_reason,
                                      poison_message_dead_lettered_while_others_flow,
                                      missing_topic_is_dead_lettered,
                                      replay_through_sql_publishes_again,
                                      rows_below_the_floor_are_published,
                                      kill_9_and_restart_lose_nothing,
                                      sigterm_exits_zero_with_delivered_rows_marked,
                                      batches_are_marked_together_and_at_shutdown,
                                      database_connection_loss_is_survived,
                                      standby_takes_over_when_the_leader_dies,
                                      metrics_and_probes,
                                      a_session_that_is_not_a_relay_holding_the_lock_is_named,
                                      retention_deletes_old_sent_rows_only,
                                      writers_notify_only_while_the_relay_waits,
                                      relay_waits_again_when_rows_slow_down,
                                      dead_letter_topic_missing,
                                      kcat_reads_the_published_events,
                                      a_clean_run_logs_no_warning,
                                      plans_follow_the_statistics,
                                      fetch_planned_once,
                                      NULL};

        Suite *s = runner_suite("relay", "end_to_end", &servers, 240, tests);

        /* A case of its own: CK_RUN_CASE=<its name> runs it alone. */
        runner_add(s, published_batches_wait_for_one_mark_beyond_the_pipeline, NULL, &servers, 240);
        runner_add(s, busy_poll_burst_at_the_rate_with_a_writer_open_below, NULL, &servers, 240);
        return s;
}
