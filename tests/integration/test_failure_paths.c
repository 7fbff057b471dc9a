/* Failure paths end to end: statements that fail again and again with the
 * connection fine (a poison row whose error text PostgreSQL refuses, grants
 * taken away from the relay's role), and a failover that lost the tail of
 * the sequence. The relay must back off and log each error about once a
 * second (counted here in its log and in PostgreSQL's, never timed), say
 * why on /readyz, resume by itself once the cause is gone, and lose
 * nothing. Each case adds a line to the fault report. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault_harness.h"
#include "fixture.h"
#include "runner.h"

FX_DEV_SERVERS(1, 4);

#define BROKERS fx_kafka_bootstraps(kafka)

/* Short timers: rescan every 200 ms, retry failed rows soon, give up on a
 * row after 3 attempts, back off at most 1 s. */
#define FAST                                                                                       \
        "--poll-interval-ms", "200", "--retry-base-ms", "100", "--retry-max-ms", "200",            \
            "--max-attempts", "3", "--reconnect-max-ms", "1000"

/* How many lines the relay's log has: what an operator's log store gets. */
static int log_lines(const struct fx_relay *r)
{
        char *log = fx_relay_log(r);
        int n = 0;

        for (const char *p = log; *p; p++)
                n += *p == '\n';
        free(log);
        return n;
}

/* How many times what occurs in PostgreSQL's log (the whole server's). */
static long long pg_log_count(const char *what)
{
        FILE *f = fopen(fx_pg_log_path(pg), "r");
        char line[4096];
        long long n = 0;

        ck_assert_msg(f != NULL, "cannot open %s", fx_pg_log_path(pg));
        while (fgets(line, sizeof(line), f))
                n += strstr(line, what) != NULL;
        fclose(f);
        return n;
}

/* Polls PostgreSQL's log until what occurs at least n more times than it
 * did at `before`; returns the count then (relative to before). */
static long long wait_pg_log(const char *what, long long before, long long n, int timeout_ms)
{
        int64_t deadline = fx_now_ms() + timeout_ms;
        long long got;

        while ((got = pg_log_count(what) - before) < n && fx_now_ms() < deadline)
                usleep(20000);
        return got;
}

/* /readyz: its status, and whether its body contains want. */
static int readyz(int port, const char *want, int *has)
{
        char *body = NULL;
        int status = fx_http_get(port, "/readyz", &body);

        *has = body != NULL && want != NULL && strstr(body, want) != NULL;
        free(body);
        return status;
}

/* Polls /readyz until it answers status; returns the last status. */
static int wait_readyz(int port, int status, int timeout_ms)
{
        int64_t deadline = fx_now_ms() + timeout_ms;
        int got, has;

        while ((got = readyz(port, NULL, &has)) != status && fx_now_ms() < deadline)
                usleep(50000);
        return got;
}

/* ---- item 5: a poison row ---- */

/* Unroutable rows whose error text, cut at the relay's 512-byte buffer,
 * ends inside a character (or would, one byte further): PostgreSQL
 * refused it in record_failure, the row was fetched again at once, for
 * ever, and the next row of its key never went out. Now the text is valid
 * UTF-8 cut between characters: each poison row uses its 3 attempts and is
 * dead-lettered, the row behind it is published, and the log stays short. */
START_TEST(poison_row_is_dead_lettered_not_spun)
{
        static const char *const types[] = {
            "repeat('\u00e9', 300)",        /* the issue's: 300 'é' */
            "'x' || repeat('\u00e9', 300)", /* cut inside an 'é' */
            "'x' || repeat('\u20ac', 200)", /* inside a 3-byte one */
            "'x' || repeat('\U0001F600', 150)",
        };
        const int n_types = (int)(sizeof(types) / sizeof(types[0]));
        char *ci = fx_fresh_outbox(pg, kafka, "fp_poison", "f-poison", 4);
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {FAST, NULL};
        long long bad_before = pg_log_count("invalid byte sequence"), bad;
        struct fh_result res;
        struct fx_relay *r;
        int lines, ok;

        fh_result_init(&res, "poison-utf8",
                       "unroutable rows (no route, no --default-topic) whose event_type is 300 "
                       "'\u00e9', or 300 '\u00e9' / 200 '\u20ac' / 150 emoji after one ASCII "
                       "byte: the error text cut at 512 bytes ends inside a character; a row of "
                       "the same key after each");
        for (int i = 0; i < n_types; i++) {
                fx_sql(c,
                       "INSERT INTO outbox.events (topic, key, payload) VALUES ('f-poison', "
                       "'p%d', '{\"n\": 1}')",
                       i);
                fx_sql(c,
                       "INSERT INTO outbox.events (topic, key, event_type, payload) VALUES (NULL, "
                       "'p%d', %s, '{\"n\": 2}')",
                       i, types[i]);
                fx_sql(c,
                       "INSERT INTO outbox.events (topic, key, payload) VALUES ('f-poison', "
                       "'p%d', '{\"n\": 3}')",
                       i);
        }
        r = fx_relay_start(ci, BROKERS, args);
        /* Each poison row dead-lettered, the row behind it published. */
        ok =
            fx_wait_sql(c, n_types, 30000, "SELECT count(*) FROM outbox.dead_letters") == n_types &&
            fh_wait_drained(c, 30000) >= 0;
        lines = log_lines(r);
        bad = pg_log_count("invalid byte sequence") - bad_before;
        fh_relay_stop(r, 30000);
        /* The reason is what the relay said, whole characters, in full
         * where it fit. */
        ck_assert_int_eq(fx_sql_int(c, "SELECT count(*) FROM outbox.dead_letters"
                                       " WHERE reason LIKE 'no route for event_type \"%%'"
                                       " AND octet_length(reason) <= 512 AND attempts = 3"),
                         ok ? n_types : fx_sql_int(c, "SELECT count(*) FROM outbox.dead_letters"));
        fh_check(c, BROKERS, "f-poison", &res);
        res.faults = n_types;
        snprintf(res.notes, sizeof(res.notes),
                 "%d relay log lines in all; %lld 'invalid byte sequence' errors in PostgreSQL's "
                 "log; %lld of %d poison rows dead-lettered after their 3 attempts; %s",
                 lines, bad, res.dead_letters, n_types,
                 ok ? "every row behind one published" : "rows left pending");
        /* 3 attempts of 4 rows and startup: about 20 lines. The spin wrote
         * thousands a second. */
        ok = ok && bad == 0 && lines < 60 && res.lost == 0 && res.order_violations == 0 &&
             res.dead_letters == n_types;
        fh_report(&res, ok);
        ck_assert_msg(ok, "%s; lost %lld, order %lld, dead %lld", res.notes, res.lost,
                      res.order_violations, res.dead_letters);
        fh_relay_free(r, "poison-utf8");
        PQfinish(c);
        free(ci);
}
END_TEST

/* ---- record_failure itself failing ---- */

/* record_failure fails for a reason of the statement, not of the text:
 * EXECUTE taken away from the relay's role. The relay retries it with a
 * backoff, logging about once a second, says why on /readyz, and once the
 * grant is back the row counts its attempts and is dead-lettered, and the
 * next row of its key goes out. Other keys flow meanwhile. */
START_TEST(record_failure_failing_backs_off)
{
        char *ci = fx_fresh_outbox(pg, kafka, "fp_record", "f-record", 4), listen[64], *body = NULL;
        PGconn *c = fx_db_connect(ci);
        int port = fx_free_port(), lines, has, status;
        const char *args[] = {FAST, "--http-listen", listen, NULL};
        const char *denied = "permission denied for function record_failure";
        long long before = pg_log_count(denied), errors;
        struct fh_result res;
        struct fx_relay *r;
        int64_t t_fixed;

        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        fh_result_init(&res, "record-failure-denied",
                       "EXECUTE on record_failure revoked from the relay's role while a row fails "
                       "(unroutable), granted again once the relay has failed to record it 10 "
                       "times");
        /* The form the relay calls since migration 10. */
        fx_sql(c, "REVOKE EXECUTE ON FUNCTION outbox.record_failure(bigint, integer, text, "
                  "integer, integer, text, bigint) FROM " FX_RELAY_ROLE);
        fx_sql(c, "INSERT INTO outbox.events (topic, key, event_type, payload) VALUES"
                  " (NULL, 'k', 'nowhere', '{}'), ('f-record', 'k', NULL, '{}')");
        r = fx_relay_start(ci, BROKERS, args);
        errors = wait_pg_log(denied, before, 10, 60000);
        ck_assert_msg(errors >= 10, "record_failure was called %lld times", errors);
        lines = log_lines(r);
        errors = pg_log_count(denied) - before;
        status = readyz(port, "record", &has);
        ck_assert_int_eq(fx_http_get(port, "/healthz", &body), 200); /* the loop is not stuck */
        free(body);
        /* Other keys are not held up. */
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) VALUES ('f-record', 'other', "
                  "'{}')");
        ck_assert_int_eq(fx_wait_sql(c, 1, 30000,
                                     "SELECT count(*) FROM outbox.events WHERE key = 'other'"
                                     " AND status = 'sent'"),
                         1);
        fx_sql(c, "GRANT EXECUTE ON FUNCTION outbox.record_failure(bigint, integer, text, "
                  "integer, integer, text, bigint) TO " FX_RELAY_ROLE);
        t_fixed = fx_now_ms();
        ck_assert_int_eq(fx_wait_sql(c, 1, 30000, "SELECT count(*) FROM outbox.dead_letters"), 1);
        fh_result_recovery(&res, fh_wait_drained(c, 30000) < 0 ? -1 : fx_now_ms() - t_fixed);
        ck_assert_int_eq(wait_readyz(port, 200, 30000), 200);
        fh_relay_stop(r, 30000);
        fh_check(c, BROKERS, "f-record", &res);
        res.faults = 1;
        snprintf(res.notes, sizeof(res.notes),
                 "%lld failed calls logged in %d relay log lines in all; /readyz %d%s while it "
                 "failed; dead-lettered after the grant, the row behind it published",
                 errors, lines, status, has ? " naming record_failure" : "");
        fh_report(&res, lines < 40 && errors < 100 && status == 503 && has && res.lost == 0 &&
                            res.order_violations == 0 && res.dead_letters == 1);
        ck_assert_msg(lines < 40 && errors < 100, "%s", res.notes);
        ck_assert_msg(status == 503 && has, "%s", res.notes);
        ck_assert_int_eq(res.lost, 0);
        ck_assert_int_eq(res.order_violations, 0);
        ck_assert_int_eq(res.dead_letters, 1);
        fh_relay_free(r, "record-failure-denied");
        PQfinish(c);
        free(ci);
}
END_TEST

/* The error text itself is refused, for a reason UTF-8 cleaning cannot
 * help with (a CHECK on last_error that allows ASCII only, standing in for
 * a database encoding that lacks the row's characters): the relay records
 * the failure again with the reason in ASCII, so the row counts its
 * attempts, is dead-lettered, and the row behind it goes out. */
START_TEST(record_failure_refusing_the_text_gets_ascii)
{
        char *ci = fx_fresh_outbox(pg, kafka, "fp_ascii", "f-ascii", 4);
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {FAST, NULL};
        const char *refused = "violates check constraint \"last_error_ascii\"";
        long long before = pg_log_count(refused), errors;
        struct fh_result res;
        struct fx_relay *r;
        int lines, ok;

        fh_result_init(&res, "reason-refused",
                       "a CHECK on last_error that allows ASCII only, and an unroutable row whose "
                       "event_type is 'caf\u00e9': PostgreSQL refuses the reason as given");
        fx_sql(c, "ALTER TABLE outbox.events ADD CONSTRAINT last_error_ascii"
                  " CHECK (last_error IS NULL OR last_error ~ '^[ -~]*$')");
        fx_sql(c, "INSERT INTO outbox.events (topic, key, event_type, payload) VALUES"
                  " (NULL, 'k', 'caf\u00e9', '{}'), ('f-ascii', 'k', NULL, '{}')");
        r = fx_relay_start(ci, BROKERS, args);
        ok = fx_wait_sql(c, 1, 30000, "SELECT count(*) FROM outbox.dead_letters") == 1 &&
             fh_wait_drained(c, 30000) >= 0;
        lines = log_lines(r);
        errors = pg_log_count(refused) - before;
        fh_relay_stop(r, 30000);
        fh_check(c, BROKERS, "f-ascii", &res);
        res.faults = 1;
        ok = ok && fx_sql_int(c, "SELECT count(*) FROM outbox.dead_letters WHERE attempts = 3"
                                 " AND reason = 'no route for event_type \"caf?\" and no "
                                 "--default-topic'") == 1;
        snprintf(res.notes, sizeof(res.notes),
                 "%lld refusals in PostgreSQL's log (one per attempt), %d relay log lines; %s",
                 errors, lines,
                 ok ? "recorded in ASCII ('caf?'), dead-lettered after 3 attempts, the row "
                      "behind it published"
                    : "not dead-lettered with the ASCII reason");
        ok = ok && errors <= 3 && lines < 40 && res.lost == 0 && res.order_violations == 0 &&
             res.dead_letters == 1;
        fh_report(&res, ok);
        ck_assert_msg(ok, "%s; lost %lld, dead %lld", res.notes, res.lost, res.dead_letters);
        fh_relay_free(r, "reason-refused");
        PQfinish(c);
        free(ci);
}
END_TEST

/* ---- item 6: a failing fetch; a failing mark ---- */

/* A grant taken from the relay's role while it runs, for `what` (SELECT:
 * every fetch fails; UPDATE: every mark fails), until PostgreSQL has
 * refused it `times` times; then given back. */
static void statement_denied(const char *name, const char *privilege, const char *ready_word,
                             const char *what)
{
        char db[64], topic[64], *ci, listen[64], *body = NULL;
        PGconn *c;
        int port = fx_free_port(), lines, has, status;
        const char *args[] = {FAST, "--http-listen", listen, NULL};
        const char *denied = "permission denied for table events";
        long long before, errors, reconnects;
        struct fh_result res;
        struct fx_relay *r;
        int64_t t_fixed;

        snprintf(db, sizeof(db), "fp_%s", privilege);
        snprintf(topic, sizeof(topic), "f-%s", privilege);
        ci = fx_fresh_outbox(pg, kafka, db, topic, 4);
        c = fx_db_connect(ci);
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        fh_result_init(&res, name, what);
        r = fx_relay_start(ci, BROKERS, args);
        /* Running and publishing first. */
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) VALUES ('%s', 'k0', '{}')",
               topic);
        ck_assert_int_eq(
            fx_wait_sql(c, 0, 30000, "SELECT count(*) FROM outbox.events WHERE status = 'pending'"),
            0);
        before = pg_log_count(denied);
        fx_sql(c, "REVOKE %s ON outbox.events FROM " FX_RELAY_ROLE, privilege);
        fx_sql(c,
               "INSERT INTO outbox.events (topic, key, payload)"
               " SELECT '%s', 'k' || (g %% 5), jsonb_build_object('n', g)"
               " FROM generate_series(1, 50) g",
               topic);
        errors = wait_pg_log(denied, before, 10, 60000);
        ck_assert_msg(errors >= 10, "refused %lld times", errors);
        lines = log_lines(r);
        errors = pg_log_count(denied) - before;
        status = readyz(port, ready_word, &has);
        ck_assert_int_eq(fx_http_get(port, "/healthz", &body), 200); /* the loop is not stuck */
        free(body);
        ck_assert_int_eq(fx_http_get(port, "/metrics", &body), 200);
        reconnects = (long long)fx_metric(body, "outbox_relay_database_reconnects_total");
        free(body);
        fx_sql(c, "GRANT %s ON outbox.events TO " FX_RELAY_ROLE, privilege);
        t_fixed = fx_now_ms();
        fh_result_recovery(&res, fh_wait_drained(c, 30000) < 0 ? -1 : fx_now_ms() - t_fixed);
        ck_assert_int_eq(wait_readyz(port, 200, 30000), 200);
        fh_relay_stop(r, 30000);
        fh_check(c, BROKERS, topic, &res);
        res.faults = 1;
        snprintf(res.notes, sizeof(res.notes),
                 "%lld refusals in PostgreSQL's log, %d relay log lines in all, %lld reconnects, "
                 "while it lasted; /readyz %d%s; resumed without a restart",
                 errors, lines, reconnects, status, has ? " saying why" : "");
        fh_report(&res, lines < 40 && errors < 60 && reconnects == 0 && status == 503 && has &&
                            res.lost == 0 && res.order_violations == 0 && res.dead_letters == 0 &&
                            res.recover_ms[0] >= 0);
        ck_assert_msg(lines < 40 && errors < 60 && reconnects == 0, "%s", res.notes);
        ck_assert_msg(status == 503 && has, "%s", res.notes);
        ck_assert_msg(res.recover_ms[0] >= 0, "not drained after the grant: %s", res.notes);
        ck_assert_int_eq(res.lost, 0);
        ck_assert_int_eq(res.order_violations, 0);
        ck_assert_int_eq(res.dead_letters, 0);
        fh_relay_free(r, name);
        PQfinish(c);
        free(ci);
}

START_TEST(failing_fetch_backs_off)
{
        statement_denied("fetch-denied", "SELECT", "fetch",
                         "SELECT on events revoked from the relay's role while it runs (every "
                         "fetch fails), granted again after 10 refusals");
}
END_TEST

START_TEST(failing_mark_backs_off)
{
        statement_denied("mark-denied", "UPDATE", "mark",
                         "UPDATE on events revoked from the relay's role while it runs (rows "
                         "published, every mark fails), granted again after 10 refusals");
}
END_TEST

/* writers() refused (EXECUTE taken from the relay's role) while writers
 * keep committing: the floor cannot move, so fetches start from the
 * lowest pending id (slower, nothing skipped); the look that follows
 * every fetch, 20 ms apart at most, backs off instead of being refused
 * 50 times a second. */
START_TEST(failing_writers_look_backs_off)
{
        char *ci = fx_fresh_outbox(pg, kafka, "fp_writers", "f-writers", 4);
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {FAST, NULL};
        const char *denied = "permission denied for function writers";
        struct fh_writers_opts wo = {.conninfo = ci,
                                     .topic = "f-writers",
                                     .writers = 2,
                                     .keys = 5,
                                     .events = 2000,
                                     .rate = 500,
                                     .rollback_pct = 10,
                                     .max_tx_rows = 3};
        struct fh_writer_stats st;
        struct fh_result res;
        struct fh_writers *w;
        struct fx_relay *r;
        long long before = pg_log_count(denied), errors, drain;
        int lines, ok;

        fh_result_init(&res, "writers-denied",
                       "EXECUTE on writers() revoked from the relay's role while 2 writers commit "
                       "2,000 rows at 500/s (every look at the writers, which moves the floor, "
                       "fails)");
        fx_sql(c, "REVOKE EXECUTE ON FUNCTION outbox.writers(text[]) FROM " FX_RELAY_ROLE);
        r = fx_relay_start(ci, BROKERS, args);
        w = fh_writers_start(&wo);
        fh_writers_finish(w, 60000, &st);
        drain = fh_wait_drained(c, 30000);
        lines = log_lines(r);
        errors = pg_log_count(denied) - before;
        fh_relay_stop(r, 30000);
        fx_sql(c, "GRANT EXECUTE ON FUNCTION outbox.writers(text[]) TO " FX_RELAY_ROLE);
        fh_check(c, BROKERS, "f-writers", &res);
        res.rolled_back = st.rolled_back;
        res.drain_ms = drain;
        res.faults = 1;
        snprintf(res.notes, sizeof(res.notes),
                 "%lld refusals in PostgreSQL's log and %d relay log lines over the %lld rows",
                 errors, lines, res.committed);
        /* Some 4 s of writes: about 10 looks with the backoff; hundreds
         * without it. */
        ok = drain >= 0 && errors < 40 && lines < 30;
        fh_report(&res, ok && res.lost == 0 && res.phantoms == 0 && res.order_violations == 0 &&
                            res.dead_letters == 0);
        ck_assert_msg(ok, "%s; drained: %lld", res.notes, drain);
        ck_assert_int_eq(res.lost, 0);
        ck_assert_int_eq(res.phantoms, 0);
        ck_assert_int_eq(res.order_violations, 0);
        ck_assert_int_eq(res.dead_letters, 0);
        fh_relay_free(r, "writers-denied");
        PQfinish(c);
        free(ci);
}
END_TEST

/* ---- item 4: a failover that lost the tail ---- */

/* Inserts a row with an explicit id (the sequence does not move) in
 * another topic and waits until it is sent: the relay has fetched since,
 * and looked at the writers after that fetch. */
static void marker(PGconn *c, long long id)
{
        fx_sql(c,
               "INSERT INTO outbox.events (id, topic, key, payload) OVERRIDING SYSTEM VALUE"
               " VALUES (%lld, 'f-marker', 'm', '{}')",
               id);
        ck_assert_int_eq(fx_wait_sql(c, 1, 30000,
                                     "SELECT count(*) FROM outbox.events WHERE id = %lld"
                                     " AND status = 'sent'",
                                     id),
                         1);
}

/* The relay remembers, from the old server, the writers it saw last and
 * the newest id when it saw them. After a failover that lost the tail of
 * the sequence, the new server hands those ids out again; once the old
 * writers were "gone" (they never existed there), that memory let the
 * floor pass ids the new server's writers were still inserting: their
 * rows waited for the sweep a minute later, behind later rows of their
 * keys. Simulated on one server: a writer's transaction open while the
 * relay looks, the tail deleted and the sequence set back, a crash
 * restart (the writer is gone), and on the "new server" a writer drawing
 * the lost ids before the relay is back (its role may not log in
 * meanwhile); it commits once the relay leads, then a burst of later rows
 * of the same keys. Every row must be published long before the sweep,
 * in key order. */
START_TEST(failover_that_lost_the_tail)
{
        char *ci = fx_fresh_outbox(pg, kafka, "fp_failover", "f-failover", 4);
        PGconn *c = fx_db_connect(ci), *w = fx_db_connect(ci), *x;
        const char *args[] = {FAST, NULL};
        struct fh_result res;
        struct fx_relay *r;
        int64_t t_restart;
        long long sent;

        fh_result_init(
            &res, "failover-lost-tail",
            "failover that lost the tail: a writer open while the relay looks, the tail "
            "deleted, the sequence set back, crash restart; there a writer draws the lost "
            "ids (8 rows), commits once the relay leads, then 20 later rows of the same "
            "keys");
        r = fx_relay_start(ci, BROKERS, args);
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload)"
                  " SELECT 'f-failover', 'k' || (g %% 5), jsonb_build_object('n', g)"
                  " FROM generate_series(1, 10) g");
        ck_assert_int_eq(
            fx_wait_sql(c, 0, 30000, "SELECT count(*) FROM outbox.events WHERE status = 'pending'"),
            0);
        /* A writer in progress (ids 11-15), then rows of the tail (16-18)
         * published while the relay's looks see the writer. */
        fx_sql(w, "BEGIN");
        fx_sql(w, "INSERT INTO outbox.events (topic, key, payload)"
                  " SELECT 'f-failover', 'w', '{}' FROM generate_series(1, 5)");
        for (int i = 0; i < 3; i++) {
                fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) VALUES ('f-marker', "
                          "'m', '{}')");
                ck_assert_int_eq(fx_wait_sql(c, 0, 30000,
                                             "SELECT count(*) FROM outbox.events"
                                             " WHERE status = 'pending' AND topic = 'f-marker'"),
                                 0);
        }
        /* The new server never had the tail, and its sequence is behind. */
        fx_sql(c, "ALTER ROLE " FX_RELAY_ROLE " NOLOGIN");
        fx_sql(c, "DELETE FROM outbox.events WHERE topic = 'f-marker'");
        fx_sql(c, "SELECT setval(pg_get_serial_sequence('outbox.events', 'id'), 10)");
        fx_pg_restart(pg);
        t_restart = fx_now_ms();
        PQfinish(w);
        PQfinish(c);
        c = fx_db_connect(ci);
        x = fx_db_connect(ci);
        /* A virtual transaction id other than the old writer's (each
         * statement takes the next local id; both count from 1 after a
         * restart): on another server it would be another id anyway. */
        for (int i = 0; i < 50; i++)
                fx_sql(x, "SELECT 1");
        fx_sql(x, "BEGIN");
        fx_sql(x, "INSERT INTO outbox.events (topic, key, payload)"
                  " SELECT 'f-failover', 'k' || (g %% 5), '{\"writer\": \"late\"}'"
                  " FROM generate_series(1, 8) g");
        fx_sql(c, "ALTER ROLE " FX_RELAY_ROLE " LOGIN");
        /* Leader on the new server, fetching and looking (at the writer
         * in progress), with nothing else drawn from the sequence. */
        fh_wait_relay_log(r, "leader: publishing", 2, 30000);
        for (long long id = 1000; id < 1003; id++)
                marker(c, id);
        fx_sql(x, "COMMIT");
        PQfinish(x);
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload)"
                  " SELECT 'f-failover', 'k' || (g %% 5), '{\"after\": \"failover\"}'"
                  " FROM generate_series(1, 20) g");
        /* The sweep comes a minute after the relay's first fetch. */
        sent = fx_wait_sql(c, 28, 15000,
                           "SELECT count(*) FROM outbox.events WHERE id > 10 AND id < 1000"
                           " AND status = 'sent'");
        fh_result_recovery(&res, sent == 28 ? fx_now_ms() - t_restart : -1);
        fh_relay_stop(r, 30000);
        fx_sql(c, "DELETE FROM outbox.events WHERE topic = 'f-marker'");
        fh_check(c, BROKERS, "f-failover", &res);
        res.faults = 1;
        snprintf(res.notes, sizeof(res.notes),
                 "%lld of the 28 rows written after the failover (ids 11-38, 11-18 drawn again) "
                 "published within 15 s (the sweep comes after 60 s)",
                 sent);
        fh_report(&res, sent == 28 && res.lost == 0 && res.order_violations == 0 &&
                            res.dead_letters == 0);
        ck_assert_msg(sent == 28, "%s", res.notes);
        ck_assert_int_eq(res.lost, 0);
        ck_assert_int_eq(res.order_violations, 0);
        fh_relay_free(r, "failover-lost-tail");
        PQfinish(c);
        free(ci);
}
END_TEST

/* Each test a test case of its own (CK_RUN_CASE=<test>), the servers
 * started once for them all. */
static const struct runner_servers servers = {suite_setup, suite_teardown};

Suite *test_suite(void)
{
        Suite *s = suite_create("failure_paths");
        const TTest *const tests[] = {poison_row_is_dead_lettered_not_spun,
                                      record_failure_failing_backs_off,
                                      record_failure_refusing_the_text_gets_ascii,
                                      failing_fetch_backs_off,
                                      failing_mark_backs_off,
                                      failing_writers_look_backs_off,
                                      failover_that_lost_the_tail,
                                      NULL};

        runner_add_each(s, tests, &servers, 240);
        return s;
}
