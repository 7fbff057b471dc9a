/* Per-key order when Kafka acknowledges a later row of a key whose earlier
 * row it refused: a broker that keeps no state for a new producer id takes
 * the requests that follow a refused first one (Apache Kafka does, and so
 * does the dev Kafka), so the later row is in the topic for good. The
 * earlier row must then never be published after it. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "runner.h"

FX_DEV_SERVERS(1, 1);

#define BROKERS fx_kafka_bootstraps(kafka)

/* The row id a message carries (payload {"n": id}); -1 if none. */
static long msg_n(const struct fx_msg *m)
{
        char buf[64];
        const char *p;
        size_t len = m->value_len < sizeof(buf) - 1 ? m->value_len : sizeof(buf) - 1;

        if (m->value == NULL)
                return -1;
        memcpy(buf, m->value, len);
        buf[len] = '\0';
        p = strstr(buf, "\"n\":");
        return p != NULL ? strtol(p + 4, NULL, 10) : -1;
}

/* The relay's settings in both cases: five produce requests in flight,
 * one message each, so that rows 2.. of k travel behind a refused row 1. */
#define IN_FLIGHT_ARGS                                                                             \
        "--poll-interval-ms", "100", "-X", "max.in.flight.requests.per.connection=5", "-X",        \
            "batch.size=1"

/* A fresh outbox `db` with a topic of one partition holding rows 1..20 of
 * key k (payload {"n": id}), and the dev Kafka set to refuse the first
 * produce request once (INVALID_RECORD, answered after 300 ms). Returns the
 * conninfo (malloc'ed) and connects *c. */
static char *twenty_rows_first_refused(const char *db, const char *topic, PGconn **c)
{
        char *ci = fx_fresh_outbox(pg, kafka, db, topic, 1);

        *c = fx_db_connect(ci);
        fx_sql(*c,
               "INSERT INTO outbox.events (topic, key, payload)"
               " SELECT '%s', 'k', jsonb_build_object('n', g) FROM generate_series(1, 20) g",
               topic);
        ck_assert_int_eq(fx_kafka_command(kafka, "broker-errors 1 0 INVALID_RECORD@300"), 0);
        return ci;
}

/* Waits until every row's fate is recorded: sent, or dead-lettered. */
static void wait_fates(PGconn *c, long long rows)
{
        ck_assert_int_eq(fx_wait_sql(c, rows, 60000,
                                     "SELECT (SELECT count(*) FROM outbox.events WHERE status ="
                                     " 'sent') + (SELECT count(*) FROM outbox.dead_letters)"),
                         rows);
}

/* Row 1 of key k is refused once (a permanent error, INVALID_RECORD, its
 * answer held back 300 ms by the dev Kafka) while rows 2..5 of k travel
 * behind it in requests of their own (-X batch.size=1, five requests in
 * flight): Kafka appends them. Row 1's next attempt would succeed; it
 * must not, after rows of its key already in the topic: in the topic no
 * message of row 1 may follow one of a later row of k. */
START_TEST(refused_row_never_published_after_a_later_row_of_its_key)
{
        PGconn *c;
        char *ci = twenty_rows_first_refused("keyorder", "ko", &c);
        const char *args[] = {
            IN_FLIGHT_ARGS, "--retry-base-ms", "50", "--retry-max-ms", "100", NULL};
        struct fx_relay *r;
        struct fx_msg *msgs = NULL;
        size_t n;
        long later_seen = 0, after = 0, published_1 = 0;

        r = fx_relay_start(ci, BROKERS, args);
        wait_fates(c, 20);
        n = fx_consume(BROKERS, "ko", 100, 3000, &msgs);
        for (size_t i = 0; i < n; i++) {
                long id = msg_n(&msgs[i]);

                if (id > 1)
                        later_seen++;
                if (id == 1) {
                        published_1++;
                        after += later_seen > 0;
                }
        }
        if (after > 0) {
                char *log = fx_relay_log(r);

                fprintf(stderr, "%s\n", log);
                free(log);
        }
        /* The refusal happened and later rows got in behind it: else the
         * test did not make the case it is about. */
        ck_assert_int_eq(fx_sql_int(c, "SELECT (SELECT count(*) FROM outbox.events WHERE id = 1"
                                       " AND attempts > 0) + (SELECT count(*) FROM"
                                       " outbox.dead_letters WHERE id = 1)"),
                         1);
        ck_assert_msg(after == 0,
                      "row 1 published %ld time(s) after a later row of its key (%ld of %ld "
                      "messages of row 1)",
                      after, after, published_1);
        /* Nothing lost: every later row is in the topic. */
        ck_assert_int_ge(later_seen, 19);
        fx_msgs_free(msgs, n);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

/* The relay killed while a failure is unrecorded: row 1 of key k refused,
 * rows 2..20 of k acknowledged behind it, and row 1's record_failure held
 * by a row lock another session keeps. The marks of rows 2..20 must wait
 * for that record: marked first, a crash would leave row 1 pending, to be
 * published again after them with nothing to follow it. A later row of
 * another key (21) is marked meanwhile, which shows marks are being made.
 * After the kill and a restart, the last copy of row 1 in the topic comes
 * before the last copy of every later row of k. */
START_TEST(killed_before_a_failure_is_recorded_the_later_rows_stay_pending)
{
        PGconn *c;
        char *ci = twenty_rows_first_refused("keyorderkill", "kk", &c);
        PGconn *locker = fx_db_connect(ci);
        const char *args[] = {IN_FLIGHT_ARGS, "--lock-timeout-ms",
                              "600000",       "--statement-timeout-ms",
                              "600000",       NULL};
        struct fx_relay *r;
        struct fx_msg *msgs = NULL;
        size_t n;
        long last_1 = -1, first_later_after = -1;
        long last_copy[21] = {0};

        fx_sql(locker, "BEGIN");
        fx_sql(locker, "SELECT id FROM outbox.events WHERE id = 1 FOR UPDATE");
        r = fx_relay_start(ci, BROKERS, args);
        /* record_failure waits on the lock ... */
        ck_assert_int_eq(fx_wait_sql(c, 1, 60000,
                                     "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type"
                                     " = 'Lock' AND query LIKE '%%record_failure%%'"),
                         1);
        /* ... while a row of another key, committed now, is published and
         * marked through the other writer session. */
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload)"
                  " VALUES ('kk', 'other', '{\"n\": 21}')");
        if (fx_wait_sql(c, 1, 60000,
                        "SELECT count(*) FROM outbox.events WHERE id = 21 AND status = 'sent'") !=
            1) {
                char *log = fx_relay_log(r);

                fprintf(stderr, "%s\n", log);
                free(log);
                ck_abort_msg("row 21, of another key, was not marked while row 1's failure waited");
        }
        /* The later rows of k are in the topic (acknowledged), yet pending. */
        n = fx_consume(BROKERS, "kk", 20, 30000, &msgs);
        for (size_t i = 0; i < n; i++) {
                long id = msg_n(&msgs[i]);

                if (id > 1 && id <= 20)
                        last_copy[id] = 1;
        }
        fx_msgs_free(msgs, n);
        ck_assert_int_ge(last_copy[2] + last_copy[3] + last_copy[4] + last_copy[5], 1);
        ck_assert_int_eq(fx_sql_int(c, "SELECT count(*) FROM outbox.events WHERE key = 'k'"
                                       " AND status = 'sent'"),
                         0);
        fx_relay_kill(r, SIGKILL);
        fx_relay_wait(r, 30000);
        fx_relay_free(r);
        fx_sql(locker, "ROLLBACK");

        r = fx_relay_start(ci, BROKERS, args);
        wait_fates(c, 21);
        n = fx_consume(BROKERS, "kk", 100, 5000, &msgs);
        memset(last_copy, 0, sizeof(last_copy));
        for (size_t i = 0; i < n; i++) {
                long id = msg_n(&msgs[i]);

                if (id == 1)
                        last_1 = (long)i;
                if (id >= 1 && id <= 20)
                        last_copy[id] = (long)i + 1;
        }
        for (int id = 2; id <= 20; id++) {
                ck_assert_msg(last_copy[id] > 0, "row %d of key k never reached the topic", id);
                if (last_1 >= 0 && last_copy[id] - 1 < last_1 && first_later_after < 0)
                        first_later_after = id;
        }
        ck_assert_msg(first_later_after < 0,
                      "row 1's last copy follows the last copy of row %ld of its key",
                      first_later_after);
        fx_msgs_free(msgs, n);
        fx_relay_free(r);
        PQfinish(locker);
        PQfinish(c);
        free(ci);
}
END_TEST

static const struct runner_servers servers = {suite_setup, suite_teardown};

Suite *test_suite(void)
{
        Suite *s = suite_create("key_order");
        const TTest *const tests[] = {
            refused_row_never_published_after_a_later_row_of_its_key,
            killed_before_a_failure_is_recorded_the_later_rows_stay_pending, NULL};

        runner_add_each(s, tests, &servers, 120);
        return s;
}
