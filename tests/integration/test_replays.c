/* Replays, restores and old leaders (issue #16, cases 1-3): whatever makes a
 * row pending again (replay(), requeue_dead(), an UPDATE by hand, a restore
 * that brings rows back or hands their ids to new rows) and whatever happens
 * after (a stop, an old leader that reconnects and marks its batch), the
 * row is published again, never marked sent from what the relay remembers
 * of an earlier copy. Run in both modes (OUTBOX_FAULT_EOS=1: exactly-once,
 * where Kafka is read as a read_committed consumer sees it); each case adds
 * a line to the fault report. Rows are checked by event_id: after a restore
 * ids are not identities. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_cluster.h"
#include "fault_harness.h"
#include "fixture.h"
#include "runner.h"

/* PostgreSQL and the dev Kafka (fault_cluster.c): each case has a migrated
 * database and a topic of 4 partitions (fc_fresh); in an exactly-once run
 * the database's name is the transactional id too, and the topic has a
 * progress topic of its own. */
static void suite_setup(void)
{
        fc_setup(1);
}

#define BROKERS fc_brokers()
#define FAST    "--poll-interval-ms", "200", "--reconnect-max-ms", "1000", "--leader-poll-ms", "100"

static void insert(PGconn *c, const char *topic, int n)
{
        fx_sql(c,
               "INSERT INTO outbox.events (topic, key, payload)"
               " SELECT '%s', 'k' || (g %% 7), jsonb_build_object('n', g)"
               " FROM generate_series(1, %d) g",
               topic, n);
}

static void wait_all_sent(PGconn *c, int timeout_ms)
{
        ck_assert_int_eq(fx_wait_sql(c, 0, timeout_ms,
                                     "SELECT count(*) FROM outbox.events WHERE status = 'pending'"),
                         0);
}

/* How many messages of topic (as read_committed sees it, in an
 * exactly-once run) carry each event id of the rows `where` selects:
 * out[i] for the i-th row by id. Waits for at least expect messages. */
static int *copies(PGconn *c, const char *topic, const char *where, size_t expect, int *n_rows,
                   struct fh_result *res)
{
        struct fx_msg *msgs;
        size_t n_all = fx_consume(BROKERS, topic, expect, 5000, &msgs), n = n_all;
        char sql[256];
        PGresult *rows;
        int *count;

        if (fh_eos())
                n = fh_eos_visible(BROKERS, topic, msgs, n, res);
        res->messages = (long long)n;
        snprintf(sql, sizeof(sql), "SELECT event_id::text FROM outbox.events WHERE %s ORDER BY id",
                 where);
        rows = PQexec(c, sql);
        ck_assert_int_eq(PQresultStatus(rows), PGRES_TUPLES_OK);
        *n_rows = PQntuples(rows);
        count = calloc((size_t)*n_rows + 1, sizeof(*count));
        ck_assert_ptr_nonnull(count);
        for (size_t m = 0; m < n; m++) {
                const struct fx_header *h = fx_msg_header(&msgs[m], "event_id");

                for (int i = 0; h != NULL && h->value != NULL && i < *n_rows; i++)
                        if (strlen(PQgetvalue(rows, i, 0)) == h->value_len &&
                            memcmp(PQgetvalue(rows, i, 0), h->value, h->value_len) == 0)
                                count[i]++;
        }
        PQclear(rows);
        fx_msgs_free(msgs, n_all);
        return count;
}

/* The relay's sessions, cut by the server (application_name ends with
 * the instance id). */
static void cut_sessions(PGconn *c, const char *instance)
{
        fx_sql(c,
               "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
               " WHERE application_name LIKE 'outbox-relay%%/%s'",
               instance);
        ck_assert_int_eq(fx_wait_sql(c, 0, 10000,
                                     "SELECT count(*) FROM pg_stat_activity"
                                     " WHERE application_name LIKE 'outbox-relay%%/%s'",
                                     instance),
                         0);
}

/* Starts relay `instance` while conn L holds every row of `where` locked:
 * it publishes them, and its mark waits for the lock. Returns once Kafka
 * has `published` messages and the mark is waiting. */
static struct fx_relay *publish_mark_held(const char *ci, PGconn *c, PGconn *lock,
                                          const char *instance, const char *topic,
                                          const char *where, size_t published)
{
        const char *args[] = {FAST, "--instance-id", instance, "--mark-delay-ms", "0", NULL};
        struct fx_relay *r;
        struct fx_msg *msgs;
        size_t n;

        fx_sql(lock, "BEGIN");
        fx_sql(lock, "SELECT 1 FROM outbox.events WHERE %s FOR UPDATE", where);
        r = fx_relay_start(ci, BROKERS, args);
        ck_assert_int_eq(fx_wait_sql(c, 1, 60000,
                                     "SELECT (count(*) > 0)::int FROM pg_stat_activity"
                                     " WHERE application_name = 'outbox-relay-writer/%s'"
                                     " AND wait_event_type = 'Lock'",
                                     instance),
                         1);
        n = fx_consume(BROKERS, topic, published, 10000, &msgs);
        fx_msgs_free(msgs, n);
        ck_assert_uint_ge(n, published);
        return r;
}

/* Adds to res what count[0..n_rows) says: the rows from `from` on were
 * wanted `high` times each, the others `low` times; a row seen fewer
 * times counts as lost, every copy beyond the first as a duplicate. */
static void tally(const int *count, int n_rows, int from, int low, int high, struct fh_result *res)
{
        for (int i = 0; i < n_rows; i++) {
                int want = i >= from ? high : low;

                res->lost += count[i] < want ? want - count[i] : 0;
                res->duplicates += count[i] > 1 ? count[i] - 1 : 0;
        }
}

/* Stops relay r, reports res with the case's verdict ok and asserts it,
 * and frees what the case holds (lock may be NULL). */
static void finish(struct fx_relay *r, PGconn *c, PGconn *lock, char *ci, int *count,
                   struct fh_result *res, int ok)
{
        fh_relay_stop(r, 30000);
        fh_relay_free(r, res->name);
        free(count);
        fh_report(res, ok);
        ck_assert_msg(ok, "%s: %s", res->name, res->notes);
        PQfinish(lock);
        PQfinish(c);
        free(ci);
}

/* Which returns to pending count a generation: every UPDATE that leaves
 * a row pending, by anyone but the relay (whose marks and recorded
 * failures never do), and a requeued dead letter. */
START_TEST(generation_counts_every_return_to_pending)
{
        char *ci = fc_fresh("gen_rules", "gen-rules", 4);
        PGconn *c = fx_db_connect(ci), *relay = fx_db_connect_as(ci, FX_RELAY_ROLE);

        insert(c, "gen-rules", 3);
        ck_assert_int_eq(fx_sql_int(c, "SELECT sum(generation) FROM outbox.events"), 0);
        /* The relay: marks, failures, even a reset of its own. */
        fx_sql(relay, "SET outbox_relay.role = 'relay'");
        fx_sql(relay, "UPDATE outbox.events SET status = 'sent' WHERE id = 1");
        ck_assert_int_eq(fx_sql_int(relay, "SELECT (outbox.record_failure(2, 0, 'x', 1, 10)"
                                           " = 'retry')::int"),
                         1);
        ck_assert_int_eq(fx_sql_int(c, "SELECT sum(generation) FROM outbox.events"), 0);
        /* replay() and an UPDATE by hand of a sent row. */
        ck_assert_int_eq(fx_sql_int(c, "SELECT outbox.replay(p_from_id => 1, p_to_id => 1)"), 1);
        ck_assert_int_eq(fx_sql_int(c, "SELECT generation FROM outbox.events WHERE id = 1"), 1);
        fx_sql(c, "UPDATE outbox.events SET status = 'sent' WHERE id = 1"); /* by hand: not */
        ck_assert_int_eq(fx_sql_int(c, "SELECT generation FROM outbox.events WHERE id = 1"), 1);
        fx_sql(c, "UPDATE outbox.events SET status = 'pending' WHERE id = 1");
        ck_assert_int_eq(fx_sql_int(c, "SELECT generation FROM outbox.events WHERE id = 1"), 2);
        /* A pending row touched by hand (it may be in flight as it was);
         * the column set by hand never goes back. */
        fx_sql(c, "UPDATE outbox.events SET payload = '{\"fixed\": true}' WHERE id = 3");
        ck_assert_int_eq(fx_sql_int(c, "SELECT generation FROM outbox.events WHERE id = 3"), 1);
        fx_sql(c, "UPDATE outbox.events SET generation = 0 WHERE id = 3");
        ck_assert_int_eq(fx_sql_int(c, "SELECT generation FROM outbox.events WHERE id = 3"), 2);
        /* The relay role without the relay's setting is an operator. */
        fx_sql(relay, "RESET outbox_relay.role");
        fx_sql(relay, "UPDATE outbox.events SET status = 'pending' WHERE id = 3");
        ck_assert_int_eq(fx_sql_int(c, "SELECT generation FROM outbox.events WHERE id = 3"), 3);
        /* Dead-lettered with its generation, requeued with one more. */
        fx_sql(relay, "SET outbox_relay.role = 'relay'");
        ck_assert_int_eq(
            fx_sql_int(relay, "SELECT (outbox.record_failure(3, 0, 'x', 1, 1) = 'dead')::int"), 1);
        ck_assert_int_eq(fx_sql_int(c, "SELECT generation FROM outbox.dead_letters WHERE id = 3"),
                         3);
        ck_assert_int_eq(fx_sql_int(c, "SELECT outbox.requeue_dead(p_id => 3)"), 1);
        ck_assert_int_eq(fx_sql_int(c, "SELECT generation FROM outbox.events WHERE id = 3"), 4);
        PQfinish(relay);
        PQfinish(c);
        free(ci);
}
END_TEST

/* Case 1: rows published and marked, the relay stopped, rows reset to
 * pending by hand (the README's own example), the relay started again:
 * every reset row is published again. With --exactly-once the last
 * progress record lists them: it must not take them for its copies. */
START_TEST(hand_replay_after_stop)
{
        const char *topic = "r-handreplay";
        char *ci = fc_fresh("rhandreplay", topic, 4);
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {FAST, NULL};
        struct fh_result res;
        struct fx_relay *r;
        long long t0, recovered;
        int n_rows, *count, ok = 1;

        fh_result_init(&res, "hand-replay-after-stop",
                       "300 rows published and marked, relay stopped (SIGTERM), 150 of them set "
                       "back to pending by hand (UPDATE ... SET status = 'pending'), relay "
                       "restarted");
        r = fx_relay_start(ci, BROKERS, args);
        insert(c, topic, 300);
        wait_all_sent(c, 60000);
        fh_relay_stop(r, 30000);
        fh_relay_free(r, res.name);
        fx_sql(c, "UPDATE outbox.events SET status = 'pending' WHERE id > 150");
        res.faults = 1;
        t0 = fx_now_ms();
        r = fx_relay_start(ci, BROKERS, args);
        wait_all_sent(c, 60000);
        fh_result_recovery(&res, fx_now_ms() - t0);
        recovered = fh_relay_log_number(r, "recovered_rows");
        count = copies(c, topic, "true", 450, &n_rows, &res);
        res.committed = n_rows;
        tally(count, n_rows, 150, 1, 2, &res); /* ids above 150 were replayed */
        snprintf(res.notes + strlen(res.notes), sizeof(res.notes) - strlen(res.notes),
                 "%s150 replays asked for, each counted as a duplicate; lost counts replays never "
                 "published; rows recovered from the progress record: %lld",
                 res.notes[0] ? "; " : "", recovered < 0 ? 0 : recovered);
        ok = res.lost == 0 && res.duplicates == 150 && recovered <= 0;
        finish(r, c, NULL, ci, count, &res, ok);
}
END_TEST

/* Case 2: 50 rows published; a restore that lost the tail (rows above 20
 * deleted, the identity restarted at 21) and 30 new rows, which get the
 * published ids 21-50; the relay started again: every new row is published
 * (each once with --exactly-once), none marked from an old record. */
START_TEST(restore_that_lost_the_tail)
{
        const char *topic = "r-restore";
        char *ci = fc_fresh("rrestore", topic, 4);
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {FAST, NULL};
        struct fh_result res;
        struct fx_relay *r;
        long long t0;
        int n_rows, *count, ok;

        fh_result_init(&res, "restore-lost-tail",
                       "50 rows published, relay stopped; a restore that lost the tail (rows 21-50 "
                       "deleted, identity restarted at 21) and 30 new rows that get ids 21-50; "
                       "relay restarted");
        r = fx_relay_start(ci, BROKERS, args);
        insert(c, topic, 50);
        wait_all_sent(c, 60000);
        fh_relay_stop(r, 30000);
        fh_relay_free(r, res.name);
        fx_sql(c, "DELETE FROM outbox.events WHERE id > 20");
        fx_sql(c, "ALTER TABLE outbox.events ALTER COLUMN id RESTART WITH 21");
        insert(c, topic, 30);
        ck_assert_int_eq(fx_sql_int(c, "SELECT max(id) FROM outbox.events"), 50);
        res.faults = 1;
        t0 = fx_now_ms();
        r = fx_relay_start(ci, BROKERS, args);
        wait_all_sent(c, 60000);
        fh_result_recovery(&res, fx_now_ms() - t0);
        count = copies(c, topic, "id > 20", 80, &n_rows, &res);
        res.committed = 50;
        tally(count, n_rows, 0, 1, 1, &res);
        snprintf(res.notes, sizeof(res.notes),
                 "%lld of the 30 new rows published; messages read counts the old copies too; "
                 "rows recovered from the progress record: %lld",
                 (long long)n_rows - res.lost,
                 fh_relay_log_number(r, "recovered_rows") < 0
                     ? 0
                     : fh_relay_log_number(r, "recovered_rows"));
        ok = n_rows == 30 && res.lost == 0 && (!fh_eos() || res.duplicates == 0);
        finish(r, c, NULL, ci, count, &res, ok);
}
END_TEST

/* Case 2 under a running relay: it holds acknowledged rows not yet marked
 * (its mark waits for a row lock) when its sessions are cut and the
 * database comes back restored without those rows, new rows taking their
 * ids. It reconnects and sends its mark (and with --exactly-once, reads its
 * last progress record): neither may mark the new rows. */
START_TEST(restore_under_a_relay_holding_marks)
{
        const char *topic = "r-restorelive";
        char *ci = fc_fresh("rrestorelive", topic, 4);
        PGconn *c = fx_db_connect(ci), *lock = fx_db_connect(ci);
        struct fh_result res;
        struct fx_relay *r;
        long long t0;
        int n_rows, *count, ok;

        fh_result_init(&res, "restore-under-relay",
                       "relay holding 10 acknowledged rows unmarked (its mark waits for a row "
                       "lock), its sessions cut; the rows deleted, identity restarted and 10 new "
                       "rows take their ids; the relay reconnects and sends its mark");
        insert(c, topic, 20);
        fx_sql(c, "UPDATE outbox.events SET status = 'sent' WHERE id <= 10");
        r = publish_mark_held(ci, c, lock, "relay-a", topic, "id > 10", 10);
        fx_relay_kill(r, SIGSTOP);
        cut_sessions(c, "relay-a");
        fx_sql(lock, "ROLLBACK");
        fx_sql(c, "DELETE FROM outbox.events WHERE id > 10");
        fx_sql(c, "ALTER TABLE outbox.events ALTER COLUMN id RESTART WITH 11");
        insert(c, topic, 10);
        res.faults = 1;
        t0 = fx_now_ms();
        fx_relay_kill(r, SIGCONT);
        wait_all_sent(c, 60000);
        fh_result_recovery(&res, fx_now_ms() - t0);
        count = copies(c, topic, "id > 10", 20, &n_rows, &res);
        res.committed = 20;
        tally(count, n_rows, 0, 1, 1, &res);
        snprintf(res.notes, sizeof(res.notes),
                 "%lld of the 10 new rows published; messages read counts the old copies too",
                 (long long)n_rows - res.lost);
        ok = n_rows == 10 && res.lost == 0 && (!fh_eos() || res.duplicates == 0);
        finish(r, c, lock, ci, count, &res, ok);
}
END_TEST

/* Case 3: leader A publishes 10 rows, its mark held by a row lock; A is
 * frozen and its sessions cut; B takes over and marks them sent (it
 * republishes them, or with --exactly-once recovers them from A's record)
 * and stops; an operator replays them by hand; A wakes, reconnects and
 * sends its old mark. The replay must be published. */
START_TEST(old_leader_mark_after_replay)
{
        const char *topic = "r-oldleader";
        char *ci = fc_fresh("roldleader", topic, 4);
        PGconn *c = fx_db_connect(ci), *lock = fx_db_connect(ci);
        const char *b_args[] = {FAST, "--instance-id", "relay-b", NULL};
        struct fh_result res;
        struct fx_relay *a, *b;
        long long t0;
        int n_rows, *count, ok, want = fh_eos() ? 2 : 3;

        fh_result_init(&res, "old-leader-mark",
                       "leader A publishes 10 rows, its mark held by a row lock; A frozen "
                       "(SIGSTOP), its sessions cut; B takes over, marks them, stops; the rows "
                       "replayed by hand; A resumes, reconnects and sends its old mark");
        insert(c, topic, 10);
        a = publish_mark_held(ci, c, lock, "relay-a", topic, "true", 10);
        fx_relay_kill(a, SIGSTOP);
        cut_sessions(c, "relay-a");
        fx_sql(lock, "ROLLBACK");
        b = fx_relay_start(ci, BROKERS, b_args);
        wait_all_sent(c, 60000);
        fh_relay_stop(b, 30000);
        fh_relay_free(b, res.name);
        fx_sql(c, "UPDATE outbox.events SET status = 'pending' WHERE status = 'sent'");
        res.faults = 1;
        t0 = fx_now_ms();
        fx_relay_kill(a, SIGCONT);
        wait_all_sent(c, 60000);
        fh_result_recovery(&res, fx_now_ms() - t0);
        /* A's copy, B's (at-least-once only: with --exactly-once B found
         * A's committed record) and the replay. */
        count = copies(c, topic, "true", (size_t)(10 * want), &n_rows, &res);
        res.committed = n_rows;
        tally(count, n_rows, 0, want, want, &res);
        snprintf(res.notes, sizeof(res.notes),
                 "%d copies of each row expected (%s the replay); lost counts replays never "
                 "published",
                 want, fh_eos() ? "A's committed transaction and" : "A's, B's and");
        ok = n_rows == 10 && res.lost == 0;
        finish(a, c, lock, ci, count, &res, ok);
}
END_TEST

/* A failure reported for a copy fetched before the row was made pending
 * again must not count against the new copy. An operator fixes a message
 * too large for Kafka by hand while the relay has it in flight: the
 * relay's record_failure for the old payload waits for the operator's row
 * lock and runs after the fix. Counted, it would dead-letter the fixed row
 * (--max-attempts 1) before it was ever tried. */
START_TEST(failure_of_an_earlier_copy_is_not_counted)
{
        const char *topic = "r-failcopy";
        char *ci = fc_fresh("rfailcopy", topic, 4);
        PGconn *c = fx_db_connect(ci), *fix = fx_db_connect(ci);
        const char *args[] = {FAST,
                              "--instance-id",
                              "relay-f",
                              "--max-attempts",
                              "1",
                              "-X",
                              "message.max.bytes=100000",
                              NULL};
        struct fh_result res;
        struct fx_relay *r;
        struct fx_msg *msgs;
        size_t n;
        int n_rows, *count, first_big = -1, ok;
        long long dead, attempts;

        fh_result_init(&res, "failure-of-earlier-copy",
                       "a 200 kB row (over message.max.bytes) fixed by hand (UPDATE of its "
                       "payload) while the relay has it in flight; the relay's record_failure "
                       "for the old copy waits for the fix's row lock and runs after it; "
                       "--max-attempts 1");
        fx_sql(c,
               "INSERT INTO outbox.events (topic, key, payload) VALUES"
               " ('%s', 'big', jsonb_build_object('blob', repeat('x', 200000)))",
               topic);
        fx_sql(c,
               "INSERT INTO outbox.events (topic, key, payload)"
               " SELECT '%s', CASE WHEN g <= 3 THEN 'big' ELSE 'k' || g END,"
               " jsonb_build_object('n', g) FROM generate_series(1, 10) g",
               topic);
        fx_sql(fix, "BEGIN");
        fx_sql(fix, "UPDATE outbox.events SET payload = '{\"fixed\": true}' WHERE id = 1");
        r = fx_relay_start(ci, BROKERS, args);
        /* The relay read the old copy and its failure waits for the lock. */
        ck_assert_int_eq(fx_wait_sql(c, 1, 60000,
                                     "SELECT (count(*) > 0)::int FROM pg_stat_activity"
                                     " WHERE application_name = 'outbox-relay-writer/relay-f'"
                                     " AND wait_event_type = 'Lock'"),
                         1);
        fx_sql(fix, "COMMIT");
        res.faults = 1;
        wait_all_sent(c, 60000);
        dead = fx_sql_int(c, "SELECT count(*) FROM outbox.dead_letters");
        attempts = fx_sql_int(c, "SELECT coalesce(max(attempts), -1) FROM outbox.events"
                                 " WHERE id = 1 AND status = 'sent'");
        count = copies(c, topic, "true", 11, &n_rows, &res);
        res.committed = 11;
        tally(count, n_rows, 0, 1, 1, &res);
        res.lost += 11 - n_rows;
        /* The fixed row went out before the later rows of its key. */
        n = fx_consume(BROKERS, topic, 11, 5000, &msgs);
        for (size_t i = 0; i < n && first_big < 0; i++)
                if (msgs[i].key_len == 3 && memcmp(msgs[i].key, "big", 3) == 0)
                        first_big = msgs[i].value_len < 100 &&
                                    memmem(msgs[i].value, msgs[i].value_len, "fixed", 5) != NULL;
        fx_msgs_free(msgs, n);
        if (first_big != 1)
                res.order_violations++;
        res.dead_letters = dead;
        snprintf(res.notes, sizeof(res.notes),
                 "dead letters: %lld (want 0); attempts counted on the fixed row: %lld (want 0); "
                 "the fixed copy first of its key: %s; the stale failure logged as not counted: %d",
                 dead, attempts, first_big == 1 ? "yes" : "no",
                 fh_relay_log_count(r, "since: not counted"));
        ok = dead == 0 && attempts == 0 && res.lost == 0 && first_big == 1 &&
             fh_relay_log_count(r, "since: not counted") >= 1;
        finish(r, c, fix, ci, count, &res, ok);
}
END_TEST

Suite *test_suite(void)
{
        Suite *s = suite_create("replays");
        TCase *tc = tcase_create("replays");

        if (fh_eos()) {
                /* The relays started by the cases inherit these. */
                setenv("OUTBOX_EXACTLY_ONCE", "true", 1);
                setenv("OUTBOX_PROGRESS_TOPIC", "outbox-relay-progress", 1);
        }
        tcase_add_unchecked_fixture(tc, suite_setup, fc_teardown);
        tcase_set_timeout(tc, 300);
        if (!fh_eos())
                tcase_add_test(tc, generation_counts_every_return_to_pending);
        if (!fh_eos())
                tcase_add_test(tc, failure_of_an_earlier_copy_is_not_counted);
        tcase_add_test(tc, hand_replay_after_stop);
        tcase_add_test(tc, restore_that_lost_the_tail);
        tcase_add_test(tc, restore_under_a_relay_holding_marks);
        tcase_add_test(tc, old_leader_mark_after_replay);
        suite_add_tcase(s, tc);
        return s;
}
