/* test_sql: the SQL contract of sql/ against a real PostgreSQL: the
 * migrations (through migrate_run / migrate_check), the table's checks, the
 * wake-up trigger and the record_failure / replay / requeue_dead functions. */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <libpq-fe.h>

#include "fixture.h"
#include "log.h"
#include "migrate.h"
#include "runner.h"

/* The advisory lock key of src/migrate.c, to hold the lock from a test. */
#define TEST_MIGRATE_LOCK_KEY "110386039336824"
#define MARKER_CHANNEL        "outbox_test_marker"

/* One server for the suite (started in the unchecked fixture, before Check
 * forks the tests); each test creates its own database in it. */
static struct fx_pg *pg;

static void suite_setup(void)
{
        pg = fx_pg_start();
}

static void suite_teardown(void)
{
        fx_pg_stop(pg);
        pg = NULL;
}

/* A fresh database with `schema` migrated in it (none when schema is NULL). */
static PGconn *fresh_db(const char *dbname, const char *schema)
{
        char *conninfo = fx_pg_create_db(pg, dbname);
        PGconn *conn = fx_db_connect(conninfo);
        char err[512] = "";
        int applied = -1;

        free(conninfo);
        if (schema != NULL) {
                ck_assert_msg(migrate_run(conn, schema, NULL, &applied, err, sizeof(err)) == 0,
                              "migrate_run: %s", err);
                ck_assert_int_eq(applied, migrate_file_count);
        }
        return conn;
}

/* A second connection to the same database. */
static PGconn *second_conn(PGconn *conn)
{
        char conninfo[256];

        snprintf(conninfo, sizeof(conninfo), "host=%s port=%s dbname=%s user=%s", PQhost(conn),
                 PQport(conn), PQdb(conn), PQuser(conn));
        return fx_db_connect(conninfo);
}

/* Runs sql expecting it to fail with SQLSTATE state; returns the primary
 * message (malloc'ed). */
static char *expect_error(PGconn *conn, const char *state, const char *sql)
{
        PGresult *res = PQexec(conn, sql);
        const char *got, *msg;
        char *copy;

        ck_assert_msg(PQresultStatus(res) == PGRES_FATAL_ERROR, "expected an error from: %s", sql);
        got = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        ck_assert_ptr_nonnull(got);
        ck_assert_ptr_nonnull(msg);
        ck_assert_msg(strcmp(got, state) == 0, "SQLSTATE %s, expected %s (%s) from: %s", got, state,
                      msg, sql);
        copy = strdup(msg);
        PQclear(res);
        return copy;
}

static void assert_error_mentions(PGconn *conn, const char *state, const char *needle,
                                  const char *sql)
{
        char *msg = expect_error(conn, state, sql);

        ck_assert_msg(strstr(msg, needle) != NULL, "error \"%s\" does not mention %s", msg, needle);
        free(msg);
}

/* A scalar text query's value (malloc'ed; NULL for SQL NULL). */
static char *sql_text(PGconn *conn, const char *sql)
{
        PGresult *res = PQexec(conn, sql);
        char *v = NULL;

        ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s: %s", sql,
                      PQresultErrorMessage(res));
        if (!PQgetisnull(res, 0, 0))
                v = strdup(PQgetvalue(res, 0, 0));
        PQclear(res);
        return v;
}

static void assert_sql_text(PGconn *conn, const char *sql, const char *expected)
{
        char *v = sql_text(conn, sql);

        ck_assert_msg(v != NULL && strcmp(v, expected) == 0, "%s gave %s, expected %s", sql,
                      v != NULL ? v : "NULL", expected);
        free(v);
}

static PGconn *listener(PGconn *conn, const char *schema)
{
        PGconn *l = second_conn(conn);

        /* The channel "<schema>.events" has a dot, so it must be quoted. */
        fx_sql(l, "LISTEN \"%s.events\"", schema);
        fx_sql(l, "LISTEN " MARKER_CHANNEL);
        return l;
}

/* Counts the notifications on "<schema>.events" that reached l so far. The
 * writer then sends a marker notification: notifications arrive in commit
 * order, so once the marker is in, everything committed before it is too,
 * and the count is final without waiting for a quiet period. */
static int count_notifications(PGconn *l, PGconn *writer, const char *schema)
{
        char channel[128];
        int64_t deadline = fx_now_ms() + 30000;
        int count = 0, marker = 0;

        snprintf(channel, sizeof(channel), "%s.events", schema);
        fx_sql(writer, "NOTIFY " MARKER_CHANNEL);
        while (!marker) {
                struct pollfd pfd = {.fd = PQsocket(l), .events = POLLIN};
                int64_t left = deadline - fx_now_ms();
                PGnotify *n;

                ck_assert_msg(left > 0, "the marker notification did not arrive");
                ck_assert_int_ge(poll(&pfd, 1, (int)left), 0);
                ck_assert_int_eq(PQconsumeInput(l), 1);
                while ((n = PQnotifies(l)) != NULL) {
                        if (strcmp(n->relname, MARKER_CHANNEL) == 0)
                                marker = 1;
                        else if (strcmp(n->relname, channel) == 0)
                                count++;
                        else
                                ck_abort_msg("notification on unexpected channel %s", n->relname);
                        PQfreemem(n);
                }
        }
        return count;
}

/* ---- migrations ---- */

START_TEST(test_migrate_twice_is_noop)
{
        PGconn *conn = fresh_db("migrate_twice", NULL);
        FILE *logf = tmpfile();
        struct log *lg = log_new(logf, LOG_LEVEL_INFO);
        char err[512] = "", line[1024];
        int applied = -1, found = 0;

        ck_assert_ptr_nonnull(logf);
        ck_assert_ptr_nonnull(lg);
        ck_assert_int_eq(migrate_run(conn, "outbox", lg, &applied, err, sizeof(err)), 0);
        ck_assert_int_eq(applied, migrate_file_count);
        ck_assert_int_eq(migrate_check(conn, "outbox", err, sizeof(err)), 0);
        fx_sql(conn, "INSERT INTO outbox.events (topic, key, payload) VALUES ('t', 'k', '{}')");

        ck_assert_int_eq(migrate_run(conn, "outbox", lg, &applied, err, sizeof(err)), 0);
        ck_assert_int_eq(applied, 0);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.events WHERE key = 'k'"), 1);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.schema_migrations"),
                         migrate_file_count);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT max(version) FROM outbox.schema_migrations"),
                         migrate_latest_version());
        ck_assert_int_eq(migrate_check(conn, "outbox", err, sizeof(err)), 0);

        /* The first run logged each file, the second nothing. */
        log_free(lg);
        rewind(logf);
        while (fgets(line, sizeof(line), logf) != NULL) {
                ck_assert_ptr_nonnull(strstr(line, "migration applied"));
                ck_assert_int_lt(found, migrate_file_count);
                ck_assert_ptr_nonnull(strstr(line, migrate_files[found].name));
                found++;
        }
        ck_assert_int_eq(found, migrate_file_count);
        fclose(logf);
        PQfinish(conn);
}
END_TEST

/* An outbox at version 1 (before outbox_id and rewinds) with rows in it:
 * migrate applies the later files alone, keeps the rows and draws an
 * identity. */
START_TEST(test_upgrade_from_version_1)
{
        PGconn *conn = fresh_db("migrate_upgrade", NULL);
        char err[512] = "";
        int applied = -1;

        ck_assert_int_eq(migrate_run(conn, "outbox", NULL, &applied, err, sizeof(err)), 0);
        fx_sql(conn, "ALTER TABLE outbox.relay_state DROP COLUMN outbox_id");
        fx_sql(conn, "DROP TRIGGER events_rewind ON outbox.events");
        fx_sql(conn, "DROP TRIGGER dead_letters_rewind ON outbox.dead_letters");
        fx_sql(conn, "DROP FUNCTION outbox.note_rewind()");
        fx_sql(conn, "DROP FUNCTION outbox.writers(text[])");
        fx_sql(conn, "DROP SEQUENCE outbox.rewinds");
        fx_sql(conn, "DROP TRIGGER events_generation ON outbox.events");
        fx_sql(conn, "DROP FUNCTION outbox.next_generation()");
        fx_sql(conn, "ALTER TABLE outbox.events DROP COLUMN generation");
        fx_sql(conn, "ALTER TABLE outbox.dead_letters DROP COLUMN generation");
        fx_sql(conn, "DROP FUNCTION outbox.install_debezium_outbox, outbox.debezium_column_type,"
                     " outbox.debezium_forward");
        fx_sql(conn, "DELETE FROM outbox.schema_migrations WHERE version >= 2");
        fx_sql(conn, "INSERT INTO outbox.events (topic, key, payload) VALUES ('t', 'k', '{}')");
        ck_assert_int_eq(migrate_check(conn, "outbox", err, sizeof(err)), -1);
        ck_assert_msg(strstr(err, "run outbox-relay migrate") != NULL, "%s", err);
        ck_assert_int_eq(migrate_run(conn, "outbox", NULL, &applied, err, sizeof(err)), 0);
        ck_assert_int_eq(applied, migrate_file_count - 1);
        ck_assert_int_eq(migrate_check(conn, "outbox", err, sizeof(err)), 0);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.events"), 1);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(outbox_id) FROM outbox.relay_state"), 1);
        PQfinish(conn);
}
END_TEST

START_TEST(test_check_missing_and_old_schema)
{
        PGconn *conn = fresh_db("check_versions", NULL);
        char err[512] = "", expected[512];
        int applied;

        ck_assert_int_eq(migrate_check(conn, "outbox", err, sizeof(err)), -1);
        ck_assert_str_eq(err, "database has no outbox schema \"outbox\": run outbox-relay migrate");

        /* A schema without our tables is version 0, and migrate fills it. */
        fx_sql(conn, "CREATE SCHEMA outbox");
        ck_assert_int_eq(migrate_check(conn, "outbox", err, sizeof(err)), -1);
        snprintf(expected, sizeof(expected),
                 "outbox schema \"outbox\" is at version 0 but this relay needs version %d: run "
                 "outbox-relay migrate",
                 migrate_latest_version());
        ck_assert_str_eq(err, expected);
        ck_assert_int_eq(migrate_run(conn, "outbox", NULL, &applied, err, sizeof(err)), 0);
        ck_assert_int_eq(applied, migrate_file_count);
        ck_assert_int_eq(migrate_check(conn, "outbox", err, sizeof(err)), 0);

        /* Recorded as older than this binary. */
        fx_sql(conn, "DELETE FROM outbox.schema_migrations");
        ck_assert_int_eq(migrate_check(conn, "outbox", err, sizeof(err)), -1);
        ck_assert_str_eq(err, expected);

        /* Newer than this binary: upgrade the relay; migrate refuses too. */
        fx_sql(conn, "INSERT INTO outbox.schema_migrations (version, name) VALUES (%d, 'future')",
               migrate_latest_version() + 1);
        ck_assert_int_eq(migrate_check(conn, "outbox", err, sizeof(err)), -1);
        ck_assert_msg(strstr(err, "upgrade outbox-relay") != NULL, "%s", err);
        ck_assert_int_eq(migrate_run(conn, "outbox", NULL, &applied, err, sizeof(err)), -1);
        ck_assert_msg(strstr(err, "upgrade outbox-relay") != NULL, "%s", err);
        PQfinish(conn);
}
END_TEST

START_TEST(test_migrate_error_has_server_message)
{
        PGconn *conn = fresh_db("migrate_error", NULL);
        char err[512] = "";
        int applied = -1;

        /* A table in the way: the file fails and nothing of it is left. */
        fx_sql(conn, "CREATE SCHEMA outbox; CREATE TABLE outbox.events (x int)");
        ck_assert_int_eq(migrate_run(conn, "outbox", NULL, &applied, err, sizeof(err)), -1);
        ck_assert_int_eq(applied, 0);
        ck_assert_msg(strstr(err, migrate_files[0].name) != NULL, "%s", err);
        ck_assert_msg(strstr(err, "relation \"events\" already exists") != NULL, "%s", err);
        ck_assert_int_eq(
            fx_sql_int(conn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'outbox'"), 1);
        ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);

        /* Inside the caller's transaction our COMMIT would commit its work. */
        fx_sql(conn, "DROP TABLE outbox.events");
        fx_sql(conn, "BEGIN");
        ck_assert_int_eq(migrate_run(conn, "outbox", NULL, &applied, err, sizeof(err)), -1);
        ck_assert_msg(strstr(err, "in a transaction") != NULL, "%s", err);
        fx_sql(conn, "ROLLBACK");
        ck_assert_msg(migrate_run(conn, "outbox", NULL, &applied, err, sizeof(err)) == 0, "%s",
                      err);
        ck_assert_int_eq(applied, migrate_file_count);
        PQfinish(conn);
}
END_TEST

struct migrate_thread {
        PGconn *conn;
        int rc, applied;
        char err[512];
};

static void *run_migrate(void *arg)
{
        struct migrate_thread *t = arg;

        t->rc = migrate_run(t->conn, "outbox", NULL, &t->applied, t->err, sizeof(t->err));
        return NULL;
}

START_TEST(test_concurrent_migrations_apply_once)
{
        PGconn *conn = fresh_db("migrate_concurrent", NULL);
        struct migrate_thread t[2];
        pthread_t th[2];

        /* Hold the lock so both runs are past their first version read and
         * queue on it; then let them go: one applies, the other finds the
         * file applied when it re-reads the version under the lock. */
        fx_sql(conn, "BEGIN; SELECT pg_advisory_xact_lock(" TEST_MIGRATE_LOCK_KEY ")");
        for (int i = 0; i < 2; i++) {
                memset(&t[i], 0, sizeof(t[i]));
                t[i].conn = second_conn(conn);
                ck_assert_int_eq(pthread_create(&th[i], NULL, run_migrate, &t[i]), 0);
        }
        ck_assert_int_eq(fx_wait_sql(conn, 2, 30000,
                                     "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                     " AND NOT granted"),
                         2);
        fx_sql(conn, "COMMIT");
        for (int i = 0; i < 2; i++) {
                ck_assert_int_eq(pthread_join(th[i], NULL), 0);
                ck_assert_msg(t[i].rc == 0, "migrate_run: %s", t[i].err);
                PQfinish(t[i].conn);
        }
        ck_assert_int_eq(t[0].applied + t[1].applied, migrate_file_count);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.schema_migrations"),
                         migrate_file_count);
        PQfinish(conn);
}
END_TEST

START_TEST(test_custom_schema)
{
        PGconn *conn = fresh_db("custom_schema", "shop_outbox");
        PGconn *l = listener(conn, "shop_outbox");
        char err[512] = "";
        int applied;

        ck_assert_int_eq(migrate_check(conn, "shop_outbox", err, sizeof(err)), 0);
        ck_assert_int_eq(migrate_check(conn, "outbox", err, sizeof(err)), -1);
        ck_assert_str_eq(err, "database has no outbox schema \"outbox\": run outbox-relay migrate");

        /* A second outbox in the same database is independent. */
        ck_assert_int_eq(migrate_run(conn, "outbox", NULL, &applied, err, sizeof(err)), 0);
        ck_assert_int_eq(applied, migrate_file_count);
        fx_sql(conn, "INSERT INTO shop_outbox.events (topic, payload) VALUES ('shop', '{}')");
        fx_sql(conn, "INSERT INTO outbox.events (topic, payload) VALUES ('main', '{}')");
        ck_assert_int_eq(count_notifications(l, conn, "shop_outbox"), 1);
        fx_sql(conn, "INSERT INTO outbox.events (topic, payload) VALUES ('main', '{}')");
        ck_assert_int_eq(count_notifications(l, conn, "shop_outbox"), 0);

        /* The functions work on their own schema's tables, not outbox's. */
        ck_assert_int_eq(fx_sql_int(conn, "SELECT id FROM shop_outbox.events"), 1);
        assert_sql_text(conn, "SELECT shop_outbox.record_failure(1, 0, 'boom', 0, 1)", "dead");
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM shop_outbox.dead_letters"), 1);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT attempts FROM outbox.events WHERE id = 1"), 0);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.dead_letters"), 0);
        PQfinish(l);
        PQfinish(conn);
}
END_TEST

/* ---- the events table's checks ---- */

START_TEST(test_rejects_both_payloads)
{
        PGconn *conn = fresh_db("both_payloads", "outbox");

        assert_error_mentions(conn, "23514", "events_one_payload",
                              "INSERT INTO outbox.events (topic, payload, payload_bytes)"
                              " VALUES ('t', '{}', '\\x00')");
        /* Either alone, or neither (a tombstone), is fine. */
        fx_sql(conn, "INSERT INTO outbox.events (topic, payload) VALUES ('t', '{}')");
        fx_sql(conn, "INSERT INTO outbox.events (topic, payload_bytes) VALUES ('t', '\\x00')");
        fx_sql(conn, "INSERT INTO outbox.events (topic) VALUES ('t')");
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.events"), 3);
        PQfinish(conn);
}
END_TEST

START_TEST(test_rejects_bad_headers)
{
        PGconn *conn = fresh_db("bad_headers", "outbox");

        assert_error_mentions(conn, "23514", "JSON object",
                              "INSERT INTO outbox.events (topic, headers) VALUES ('t', '[\"a\"]')");
        assert_error_mentions(conn, "23514", "JSON object",
                              "INSERT INTO outbox.events (topic, headers) VALUES ('t', 'null')");
        assert_error_mentions(conn, "23514", "\"trace_id\"",
                              "INSERT INTO outbox.events (topic, headers)"
                              " VALUES ('t', '{\"a\": \"x\", \"trace_id\": 42}')");
        assert_error_mentions(conn, "23514", "\"nested\"",
                              "INSERT INTO outbox.events (topic, headers)"
                              " VALUES ('t', '{\"nested\": {\"b\": \"c\"}}')");
        /* The jsonpath test of migration 007 is strict: in lax mode it would
         * look inside an array value and pass it. */
        assert_error_mentions(conn, "23514", "\"arr\"",
                              "INSERT INTO outbox.events (topic, headers)"
                              " VALUES ('t', '{\"a\": \"x\", \"arr\": [\"y\"]}')");
        assert_error_mentions(conn, "23514", "\"n\"",
                              "INSERT INTO outbox.events (topic, headers)"
                              " VALUES ('t', '{\"n\": null}')");
        assert_error_mentions(conn, "23514", "JSON object",
                              "INSERT INTO outbox.events (topic, headers) VALUES ('t', '\"s\"')");
        /* Updates are checked too. */
        fx_sql(conn, "INSERT INTO outbox.events (topic, headers)"
                     " VALUES ('t', '{\"a\": \"x\", \"b\": \"\"}')");
        assert_error_mentions(conn, "23514", "\"a\"",
                              "UPDATE outbox.events SET headers = '{\"a\": true}'");
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.events"), 1);
        PQfinish(conn);
}
END_TEST

/* PostgreSQL checks every CHECK on every UPDATE: a mark, or a writer's
 * INSERT, of rows with valid headers must not call the PL/pgSQL
 * check_headers() (migration 007), which cost ~10 us a row. Counted by the
 * server's function statistics of this transaction. */
START_TEST(test_valid_headers_skip_plpgsql)
{
        PGconn *conn = fresh_db("cheap_headers", "outbox");

        fx_sql(conn, "BEGIN");
        fx_sql(conn, "SET LOCAL track_functions = 'pl'");
        fx_sql(conn, "INSERT INTO outbox.events (topic, key, headers)"
                     " SELECT 't', 'k', '{\"trace_id\": \"abc\", \"source\": \"orders\"}'"
                     " FROM generate_series(1, 20)");
        fx_sql(conn, "SET LOCAL outbox_relay.role = 'relay'");
        fx_sql(conn, "UPDATE outbox.events SET status = 'sent', sent_at = now(),"
                     " kafka_partition = 0, kafka_offset = 1");
        ck_assert_int_eq(
            fx_sql_int(conn, "SELECT count(*) FROM outbox.events WHERE status = 'sent'"), 20);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT coalesce(pg_stat_get_xact_function_calls("
                                          "'outbox.check_headers(jsonb)'::regprocedure), 0)"),
                         0);
        fx_sql(conn, "COMMIT");
        PQfinish(conn);
}
END_TEST

START_TEST(test_rejects_illegal_topics)
{
        PGconn *conn = fresh_db("bad_topics", "outbox");
        const char *bad[] = {"a b", "", "..", ".", "caf\xc3\xa9", "a/b"};

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char sql[128];

                snprintf(sql, sizeof(sql), "INSERT INTO outbox.events (topic) VALUES ('%s')",
                         bad[i]);
                assert_error_mentions(conn, "23514", "events_topic_legal", sql);
        }
        assert_error_mentions(conn, "23514", "events_topic_legal",
                              "INSERT INTO outbox.events (topic) VALUES (repeat('a', 250))");
        fx_sql(conn, "INSERT INTO outbox.events (topic) VALUES (repeat('a', 249))");
        fx_sql(conn, "INSERT INTO outbox.events (topic) VALUES ('Orders.v1_x-y')");
        fx_sql(conn, "INSERT INTO outbox.events (topic) VALUES (NULL)");
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.events"), 3);
        PQfinish(conn);
}
END_TEST

/* ---- the wake-up trigger ---- */

START_TEST(test_one_notification_per_statement)
{
        PGconn *conn = fresh_db("notify_bulk", "outbox");
        PGconn *l = listener(conn, "outbox");

        fx_sql(conn, "INSERT INTO outbox.events (topic, key, payload)"
                     " SELECT 't', g::text, jsonb_build_object('n', g)"
                     " FROM generate_series(1, 10000) AS g");
        ck_assert_int_eq(count_notifications(l, conn, "outbox"), 1);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.events"), 10000);
        /* PostgreSQL folds identical notifications anyway, so also check the
         * triggers (two wake-ups, one rewind counter) are statement-level:
         * row-level ones would run 10,000 times. */
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM pg_trigger WHERE tgrelid ="
                                          " 'outbox.events'::regclass AND NOT tgisinternal"
                                          " AND tgtype & 1 = 0"),
                         3);
        /* The one row-level trigger (generations, migration 005; rewinds
         * of a session with the relay's setting too, 011) runs its
         * function only when its WHEN clause holds: never for the relay's
         * marks, nor for inserts. */
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM pg_trigger WHERE tgrelid ="
                                          " 'outbox.events'::regclass AND NOT tgisinternal"),
                         4);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM pg_trigger WHERE tgrelid ="
                                          " 'outbox.events'::regclass AND NOT tgisinternal"
                                          " AND tgtype & 1 = 1 AND tgqual IS NOT NULL"
                                          " AND tgname = 'events_generation'"),
                         1);

        /* Several statements in one transaction fold into one too. */
        fx_sql(conn, "BEGIN;"
                     " INSERT INTO outbox.events (topic) VALUES ('t');"
                     " INSERT INTO outbox.events (topic) VALUES ('t');"
                     " UPDATE outbox.events SET next_attempt_at = now() WHERE id = 1;"
                     " COMMIT");
        ck_assert_int_eq(count_notifications(l, conn, "outbox"), 1);
        PQfinish(l);
        PQfinish(conn);
}
END_TEST

START_TEST(test_rollback_sends_nothing)
{
        PGconn *conn = fresh_db("notify_rollback", "outbox");
        PGconn *l = listener(conn, "outbox");

        fx_sql(conn, "BEGIN; INSERT INTO outbox.events (topic) VALUES ('t'); ROLLBACK");
        ck_assert_int_eq(count_notifications(l, conn, "outbox"), 0);
        /* The same insert committed does notify: the listener works. */
        fx_sql(conn, "INSERT INTO outbox.events (topic) VALUES ('t')");
        ck_assert_int_eq(count_notifications(l, conn, "outbox"), 1);
        PQfinish(l);
        PQfinish(conn);
}
END_TEST

START_TEST(test_update_back_to_pending_wakes)
{
        PGconn *conn = fresh_db("notify_update", "outbox");
        PGconn *l = listener(conn, "outbox");

        fx_sql(conn, "INSERT INTO outbox.events (topic) VALUES ('t')");
        fx_sql(conn, "UPDATE outbox.events SET status = 'sent', sent_at = now()");
        (void)count_notifications(l, conn, "outbox");

        fx_sql(conn, "UPDATE outbox.events SET status = 'pending', sent_at = NULL");
        ck_assert_int_eq(count_notifications(l, conn, "outbox"), 1);
        /* Columns that cannot make a row due do not wake the relay. */
        fx_sql(conn, "UPDATE outbox.events SET last_error = 'x'");
        ck_assert_int_eq(count_notifications(l, conn, "outbox"), 0);
        PQfinish(l);
        PQfinish(conn);
}
END_TEST

START_TEST(test_relay_role_does_not_notify)
{
        PGconn *conn = fresh_db("notify_role", "outbox");
        PGconn *l = listener(conn, "outbox");

        /* The relay's own work: inserts (requeues), marking sent, failures. */
        fx_sql(conn, "SET outbox_relay.role = 'relay'");
        fx_sql(conn, "INSERT INTO outbox.events (topic) VALUES ('t'), ('t')");
        fx_sql(conn, "UPDATE outbox.events SET status = 'sent', sent_at = now() WHERE id = 1");
        assert_sql_text(conn, "SELECT outbox.record_failure(2, 0, 'e', 0, 5)", "retry");
        ck_assert_int_eq(
            fx_sql_int(conn, "SELECT count(*) FROM outbox.events WHERE status = 'sent'"), 1);
        ck_assert_int_eq(count_notifications(l, conn, "outbox"), 0);

        fx_sql(conn, "RESET outbox_relay.role");
        fx_sql(conn, "INSERT INTO outbox.events (topic) VALUES ('t')");
        ck_assert_int_eq(count_notifications(l, conn, "outbox"), 1);
        PQfinish(l);
        PQfinish(conn);
}
END_TEST

/* ---- record_failure ---- */

START_TEST(test_record_failure_retry_then_dead)
{
        PGconn *conn = fresh_db("record_failure", "outbox");
        const char *same_columns =
            "SELECT count(*) FROM outbox.dead_letters d JOIN orig o USING (id)"
            " WHERE (d.event_id, d.topic, d.key, d.event_type, d.payload, d.payload_bytes,"
            " d.headers, d.created_at) IS NOT DISTINCT FROM (o.event_id, o.topic, o.key,"
            " o.event_type, o.payload, o.payload_bytes, o.headers, o.created_at)";

        fx_sql(conn,
               "INSERT INTO outbox.events (topic, key, event_type, payload, headers)"
               " VALUES ('orders', 'o-1', 'OrderPlaced', '{\"total\": 5}', '{\"h\": \"v\"}')");
        fx_sql(conn, "INSERT INTO outbox.events (topic, key, payload_bytes)"
                     " VALUES (NULL, 'o-2', '\\xdeadbeef')");
        fx_sql(conn, "CREATE TEMP TABLE orig AS SELECT * FROM outbox.events");

        assert_sql_text(conn, "SELECT outbox.record_failure(1, 0, 'e1', 60000, 3)", "retry");
        ck_assert_int_eq(fx_sql_int(conn, "SELECT attempts FROM outbox.events WHERE id = 1"), 1);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.events WHERE id = 1"
                                          " AND status = 'pending' AND last_error = 'e1'"
                                          " AND next_attempt_at > now() + interval '30 seconds'"
                                          " AND first_attempt_at = last_attempt_at"),
                         1);
        fx_sql(conn, "CREATE TEMP TABLE first AS SELECT first_attempt_at FROM outbox.events"
                     " WHERE id = 1");

        /* A repeated call for an attempt already counted changes nothing. */
        assert_sql_text(conn, "SELECT outbox.record_failure(1, 0, 'e1 again', 60000, 3)", "stale");
        ck_assert_int_eq(fx_sql_int(conn, "SELECT attempts FROM outbox.events WHERE id = 1"), 1);
        assert_sql_text(conn, "SELECT last_error FROM outbox.events WHERE id = 1", "e1");
        assert_sql_text(conn, "SELECT outbox.record_failure(999, 0, 'e', 0, 3)", "stale");

        assert_sql_text(conn, "SELECT outbox.record_failure(1, 1, 'e2', 0, 3)", "retry");
        assert_sql_text(conn, "SELECT outbox.record_failure(1, 2, 'e3', 0, 3)", "dead");
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.events WHERE id = 1"), 0);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.dead_letters d, first f"
                                          " WHERE d.id = 1 AND d.reason = 'e3' AND d.attempts = 3"
                                          " AND d.first_attempt_at = f.first_attempt_at"
                                          " AND d.last_attempt_at > d.first_attempt_at"
                                          " AND d.last_attempt_at = d.dead_at"),
                         1);
        assert_sql_text(conn, "SELECT outbox.record_failure(1, 3, 'e4', 0, 3)", "stale");

        /* max_attempts 1 kills at once; a NULL error still gives a reason. */
        assert_sql_text(conn, "SELECT outbox.record_failure(2, 0, NULL, 0, 1)", "dead");
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.dead_letters WHERE id = 2"
                                          " AND reason <> '' AND attempts = 1"),
                         1);
        ck_assert_int_eq(fx_sql_int(conn, same_columns), 2);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.events"), 0);

        /* Sent rows are not the relay's to fail any more. */
        fx_sql(conn,
               "INSERT INTO outbox.events (topic, status, sent_at) VALUES ('t', 'sent', now())");
        assert_sql_text(conn, "SELECT outbox.record_failure(3, 0, 'e', 0, 1)", "stale");
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.events WHERE id = 3"), 1);
        PQfinish(conn);
}
END_TEST

/* The 7-argument form (010) names the copy by its generation; the
 * 6-argument form, for relays of version 8, calls it with the row's current
 * generation (011), so it counts as it always did, and shares its body. */
START_TEST(test_record_failure_both_forms)
{
        PGconn *conn = fresh_db("record_failure_forms", "outbox");
        const char *old_form = "'outbox.record_failure(bigint, integer, text, integer, integer,"
                               " text)'::regprocedure";
        const char *new_form = "'outbox.record_failure(bigint, integer, text, integer, integer,"
                               " text, bigint)'::regprocedure";
        char sql[512];

        fx_sql(conn, "INSERT INTO outbox.events (topic, key) VALUES ('t', 'k1'), ('t', 'k2')");
        /* An operator's edit of a pending row: generation 1. */
        fx_sql(conn, "UPDATE outbox.events SET payload = '{}' WHERE id = 1");
        ck_assert_int_eq(fx_sql_int(conn, "SELECT generation FROM outbox.events WHERE id = 1"), 1);
        /* The relay's session from here on: its failures bump nothing. */
        fx_sql(conn, "SET outbox_relay.role = 'relay'");

        /* The new form: a failure of generation 0 is stale, of 1 counted. */
        assert_sql_text(conn, "SELECT outbox.record_failure(1, 0, 'e', 0, 5, NULL, 0)", "stale");
        ck_assert_int_eq(fx_sql_int(conn, "SELECT attempts FROM outbox.events WHERE id = 1"), 0);
        assert_sql_text(conn, "SELECT outbox.record_failure(1, 0, 'e', 0, 5, NULL, 1)", "retry");

        /* The old form counts against whatever copy the row holds. */
        assert_sql_text(conn, "SELECT outbox.record_failure(1, 1, 'e old', 0, 5, NULL)", "retry");
        ck_assert_int_eq(fx_sql_int(conn, "SELECT attempts FROM outbox.events WHERE id = 1"
                                          " AND last_error = 'e old' AND generation = 1"),
                         2);
        assert_sql_text(conn, "SELECT outbox.record_failure(1, 1, 'again', 0, 5, NULL)", "stale");
        assert_sql_text(conn, "SELECT outbox.record_failure(999, 0, 'e', 0, 5, NULL)", "stale");
        /* ... and dead-letters, announcing it on the dead-letter topic. */
        assert_sql_text(conn, "SELECT outbox.record_failure(2, 0, 'boom', 0, 1, 'dlq')", "dead");
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.dead_letters"
                                          " WHERE id = 2 AND reason = 'boom'"),
                         1);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.events WHERE topic = 'dlq'"
                                          " AND key = 'k2' AND event_type = 'outbox.dead_letter'"),
                         1);
        assert_sql_text(conn, "SELECT outbox.record_failure(2, 1, 'e', 0, 1, NULL)", "stale");

        /* One body: the old form calls the new one, with the same rights
         * (the caller's) and search_path. */
        snprintf(sql, sizeof(sql),
                 "SELECT (prosrc LIKE '%%record_failure(%%' AND prosrc NOT LIKE '%%dead_letters%%')"
                 "::int FROM pg_proc WHERE oid = %s",
                 old_form);
        ck_assert_int_eq(fx_sql_int(conn, "%s", sql), 1);
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM pg_proc o, pg_proc n WHERE o.oid = %s AND n.oid = %s"
                 " AND NOT o.prosecdef AND NOT n.prosecdef AND o.proconfig = n.proconfig"
                 " AND NOT has_function_privilege('public', o.oid, 'EXECUTE')",
                 old_form, new_form);
        ck_assert_int_eq(fx_sql_int(conn, "%s", sql), 1);
        PQfinish(conn);
}
END_TEST

/* ---- replay ---- */

/* Six sent rows: ids 1-6, created on 2024-01-0<id>, topics a,a,a,b,b,b, keys k1,k2,k1,k2,k1,k2. */
static PGconn *sent_rows(const char *dbname)
{
        PGconn *conn = fresh_db(dbname, "outbox");

        fx_sql(conn, "INSERT INTO outbox.events (topic, key, payload, created_at)"
                     " SELECT CASE WHEN g <= 3 THEN 'a' ELSE 'b' END, 'k' || (2 - g %% 2),"
                     " jsonb_build_object('n', g), timestamptz '2024-01-01 00:00+00' + (g - 1)"
                     " * interval '1 day' FROM generate_series(1, 6) AS g");
        fx_sql(conn, "UPDATE outbox.events SET status = 'sent', sent_at = now(),"
                     " kafka_partition = 0, kafka_offset = id");
        return conn;
}

static long long pending(PGconn *conn)
{
        return fx_sql_int(conn, "SELECT count(*) FROM outbox.events WHERE status = 'pending'");
}

START_TEST(test_replay_by_id_range)
{
        PGconn *conn = sent_rows("replay_ids");

        ck_assert_int_eq(fx_sql_int(conn, "SELECT outbox.replay(p_from_id => 2, p_to_id => 4,"
                                          " p_dry_run => true)"),
                         3);
        ck_assert_int_eq(pending(conn), 0);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT outbox.replay(p_from_id => 2, p_to_id => 4)"), 3);
        ck_assert_int_eq(pending(conn), 3);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.events WHERE status ="
                                          " 'pending' AND id BETWEEN 2 AND 4 AND sent_at IS NULL"
                                          " AND kafka_partition IS NULL AND kafka_offset IS NULL"
                                          " AND attempts = 0 AND next_attempt_at <= now()"),
                         3);
        /* Only sent rows are replayed: the same call again finds none. */
        ck_assert_int_eq(fx_sql_int(conn, "SELECT outbox.replay(p_from_id => 2, p_to_id => 4)"), 0);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT outbox.replay(p_from_id => 5)"), 2);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT outbox.replay(p_to_id => 1)"), 1);
        ck_assert_int_eq(pending(conn), 6);
        PQfinish(conn);
}
END_TEST

START_TEST(test_replay_by_time_topic_key)
{
        PGconn *conn = sent_rows("replay_filters");

        /* since is inclusive, until exclusive. */
        ck_assert_int_eq(fx_sql_int(conn, "SELECT outbox.replay(p_since => '2024-01-02 00:00+00',"
                                          " p_until => '2024-01-04 00:00+00', p_dry_run => true)"),
                         2);
        ck_assert_int_eq(
            fx_sql_int(conn, "SELECT outbox.replay(p_topic => 'b', p_dry_run => true)"), 3);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT outbox.replay(p_key => 'k1', p_dry_run => true)"),
                         3);
        /* Filters combine with AND: topic b and key k1 is row 5 only. */
        ck_assert_int_eq(fx_sql_int(conn, "SELECT outbox.replay(p_topic => 'b', p_key => 'k1',"
                                          " p_dry_run => true)"),
                         1);
        ck_assert_int_eq(pending(conn), 0);

        ck_assert_int_eq(fx_sql_int(conn, "SELECT outbox.replay(p_since => '2024-01-02 00:00+00',"
                                          " p_until => '2024-01-04 00:00+00')"),
                         2);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.events WHERE status ="
                                          " 'pending' AND id IN (2, 3)"),
                         2);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT outbox.replay(p_topic => 'b', p_key => 'k1')"),
                         1);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT status = 'pending' FROM outbox.events"
                                          " WHERE id = 5"),
                         1);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT outbox.replay(p_key => 'k2')"), 2); /* 4, 6 */
        ck_assert_int_eq(pending(conn), 5);
        PQfinish(conn);
}
END_TEST

START_TEST(test_replay_needs_a_filter)
{
        PGconn *conn = sent_rows("replay_nofilter");

        assert_error_mentions(conn, "22023", "at least one filter", "SELECT outbox.replay()");
        assert_error_mentions(conn, "22023", "at least one filter",
                              "SELECT outbox.replay(NULL, NULL, NULL, NULL, NULL, NULL, true)");
        ck_assert_int_eq(pending(conn), 0);
        PQfinish(conn);
}
END_TEST

/* ---- requeue_dead ---- */

START_TEST(test_requeue_dead)
{
        PGconn *conn = fresh_db("requeue_dead", "outbox");
        PGconn *l = listener(conn, "outbox");

        fx_sql(conn, "INSERT INTO outbox.events (topic, key, payload) VALUES"
                     " ('a', 'k1', '{\"n\": 1}'), ('a', 'k2', '{\"n\": 2}'), ('b', 'k3', NULL)");
        fx_sql(conn, "CREATE TEMP TABLE orig AS SELECT id, event_id FROM outbox.events");
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM generate_series(1, 3) AS id"
                                          " WHERE outbox.record_failure(id, 0, 'gone', 0, 1)"
                                          " = 'dead'"),
                         3);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.dead_letters"), 3);
        (void)count_notifications(l, conn, "outbox");

        assert_error_mentions(conn, "22023", "requeue_dead needs", "SELECT outbox.requeue_dead()");

        ck_assert_int_eq(fx_sql_int(conn, "SELECT outbox.requeue_dead(p_id => 2)"), 1);
        ck_assert_int_eq(count_notifications(l, conn, "outbox"), 1);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT outbox.requeue_dead(p_topic => 'a')"), 1);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT outbox.requeue_dead(p_topic => 'a')"), 0);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.dead_letters"), 1);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT outbox.requeue_dead(p_all => true)"), 1);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.dead_letters"), 0);

        /* Back with their id and event_id, pending and with a clean slate. */
        ck_assert_int_eq(fx_sql_int(conn, "SELECT count(*) FROM outbox.events e JOIN orig o"
                                          " USING (id, event_id) WHERE e.status = 'pending'"
                                          " AND e.attempts = 0 AND e.last_error IS NULL"
                                          " AND e.first_attempt_at IS NULL"),
                         3);
        assert_sql_text(conn, "SELECT payload::text FROM outbox.events WHERE id = 2", "{\"n\": 2}");
        /* New rows still get fresh ids after the requeued ones. */
        ck_assert_int_eq(
            fx_sql_int(conn, "INSERT INTO outbox.events (topic) VALUES ('a') RETURNING id"), 4);
        PQfinish(l);
        PQfinish(conn);
}
END_TEST

/* ---- what the relay's fetch floor reads (migration 003) ---- */

static long long rewinds(PGconn *conn)
{
        return fx_sql_int(conn, "SELECT rewind_count FROM outbox.writers('{}')");
}

/* Every way an old row becomes pending again counts a rewind; inserting new
 * rows and the relay's own updates do not. */
START_TEST(test_rewinds_counted)
{
        PGconn *conn = fresh_db("rewinds", "outbox");
        long long n;

        fx_sql(conn, "INSERT INTO outbox.events (topic, key) SELECT 't', g::text"
                     " FROM generate_series(1, 3) g");
        ck_assert_int_eq(rewinds(conn), 0);
        fx_sql(conn, "BEGIN; SET LOCAL outbox_relay.role = 'relay';"
                     " UPDATE outbox.events SET status = 'sent' WHERE id <= 2; COMMIT");
        ck_assert_int_eq(rewinds(conn), 0);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT outbox.replay(p_from_id => 1)"), 2);
        ck_assert_int_eq((n = rewinds(conn)), 1);
        fx_sql(conn, "UPDATE outbox.events SET attempts = 0 WHERE id = 3");
        ck_assert_int_eq(rewinds(conn), n + 1);
        fx_sql(conn, "BEGIN; SET LOCAL outbox_relay.role = 'relay';"
                     " SELECT outbox.record_failure(1, 0, 'x', 0, 1); COMMIT");
        ck_assert_int_eq(rewinds(conn), n + 1);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT outbox.requeue_dead(p_id => 1)"), 1);
        ck_assert_int_eq(rewinds(conn), n + 2);
        PQfinish(conn);
}
END_TEST

/* The calls of outbox.<fn>() this transaction made so far. */
static long long xact_calls(PGconn *conn, const char *fn)
{
        char sql[160];

        snprintf(sql, sizeof(sql),
                 "SELECT coalesce(pg_stat_get_xact_function_calls('outbox.%s'::regprocedure), 0)",
                 fn);
        return fx_sql_int(conn, sql);
}

/* The relay's marks and failures must call no trigger function (migration
 * 009: ~10 us of its backend a mark): the statement triggers' WHEN keeps
 * notify_relay() and note_rewind() off them. Anyone else's update still
 * calls both, once a statement, and still counts a rewind. */
START_TEST(test_relay_updates_call_no_trigger_function)
{
        PGconn *conn = fresh_db("quiet_marks", "outbox");
        long long r0;

        fx_sql(conn, "INSERT INTO outbox.events (topic, key) SELECT 't', 'k' || g"
                     " FROM generate_series(1, 20) g");
        r0 = rewinds(conn);
        fx_sql(conn, "BEGIN");
        fx_sql(conn, "SET LOCAL track_functions = 'pl'");
        fx_sql(conn, "SET LOCAL outbox_relay.role = 'relay'");
        fx_sql(conn, "UPDATE outbox.events SET status = 'sent', sent_at = now(),"
                     " kafka_partition = 0, kafka_offset = 1 WHERE id <= 10");
        assert_sql_text(conn, "SELECT outbox.record_failure(11, 0, 'e', 0, 5)", "retry");
        assert_sql_text(conn, "SELECT outbox.record_failure(12, 0, 'e', 0, 1)", "dead");
        ck_assert_int_eq(xact_calls(conn, "notify_relay()"), 0);
        ck_assert_int_eq(xact_calls(conn, "note_rewind()"), 0);
        fx_sql(conn, "COMMIT");
        ck_assert_int_eq(rewinds(conn), r0);

        /* An operator's hand-made reset and replay() call both, once a
         * statement whatever the rows, and count their rewinds. */
        fx_sql(conn, "BEGIN");
        fx_sql(conn, "SET LOCAL track_functions = 'pl'");
        fx_sql(conn, "UPDATE outbox.events SET status = 'pending', sent_at = NULL WHERE id <= 3");
        ck_assert_int_eq(xact_calls(conn, "notify_relay()"), 1);
        ck_assert_int_eq(xact_calls(conn, "note_rewind()"), 1);
        ck_assert_int_eq(fx_sql_int(conn, "SELECT outbox.replay(p_from_id => 4)"), 7);
        ck_assert_int_eq(xact_calls(conn, "notify_relay()"), 2);
        ck_assert_int_eq(xact_calls(conn, "note_rewind()"), 2);
        fx_sql(conn, "COMMIT");
        ck_assert_int_eq(rewinds(conn), r0 + 2);
        PQfinish(conn);
}
END_TEST

/* The query asking writers() whether the writers holding the outbox now
 * (at this call) have all ended (malloc'ed). */
static char *earlier_done_query(PGconn *conn)
{
        char *seen = sql_text(conn, "SELECT writers FROM outbox.writers('{}')"), *sql;
        size_t n;

        ck_assert_ptr_nonnull(seen);
        n = strlen(seen) + 64;
        sql = malloc(n);
        ck_assert_ptr_nonnull(sql);
        snprintf(sql, n, "SELECT earlier_done::text FROM outbox.writers('%s')", seen);
        free(seen);
        return sql;
}

/* writers() names the transactions that may still add rows, and says when
 * the ones it named before are gone; last_id is the newest id drawn, even
 * by a transaction that has not committed. */
START_TEST(test_writers_in_progress)
{
        PGconn *conn = fresh_db("writers", "outbox");
        PGconn *w = second_conn(conn);
        char *sql;

        assert_sql_text(conn, "SELECT writers::text || last_id FROM outbox.writers('{}')", "{}0");
        assert_sql_text(conn, "SELECT id_cache::text FROM outbox.writers('{}')", "1");
        fx_sql(w, "BEGIN; INSERT INTO outbox.events (topic) VALUES ('t')");
        ck_assert_int_eq(fx_sql_int(conn, "SELECT last_id FROM outbox.writers('{}')"), 1);
        sql = earlier_done_query(conn);
        ck_assert_ptr_null(strstr(sql, "('{}')")); /* someone is named */
        assert_sql_text(conn, sql, "false");
        /* A reader of the table is no writer. */
        fx_sql(w, "SELECT count(*) FROM outbox.events");
        fx_sql(w, "COMMIT");
        assert_sql_text(conn, sql, "true");
        fx_sql(w, "BEGIN; SELECT count(*) FROM outbox.events");
        assert_sql_text(conn, "SELECT writers::text FROM outbox.writers('{}')", "{}");
        fx_sql(w, "COMMIT");
        free(sql);

        /* PREPARE TRANSACTION hands the lock to a stand-in without a pid
         * (named -1/xid by some releases, not 15): the writer seen before is
         * not done until it commits. (A transaction that notified cannot be
         * prepared: as a relay, the insert does not notify.) */
        fx_sql(w, "BEGIN; SET LOCAL outbox_relay.role = 'relay';"
                  " INSERT INTO outbox.events (topic) VALUES ('t')");
        sql = earlier_done_query(conn);
        fx_sql(w, "PREPARE TRANSACTION 'outbox_writer'");
        assert_sql_text(conn, sql, "false");
        fx_sql(w, "COMMIT PREPARED 'outbox_writer'");
        assert_sql_text(conn, sql, "true");
        free(sql);
        PQfinish(w);
        PQfinish(conn);
}
END_TEST

static const struct runner_servers servers = {suite_setup, suite_teardown};

Suite *test_suite(void)
{
        const TTest *const tests[] = {test_migrate_twice_is_noop,
                                      test_upgrade_from_version_1,
                                      test_check_missing_and_old_schema,
                                      test_migrate_error_has_server_message,
                                      test_concurrent_migrations_apply_once,
                                      test_custom_schema,
                                      test_rejects_both_payloads,
                                      test_rejects_bad_headers,
                                      test_valid_headers_skip_plpgsql,
                                      test_rejects_illegal_topics,
                                      test_one_notification_per_statement,
                                      test_rollback_sends_nothing,
                                      test_update_back_to_pending_wakes,
                                      test_relay_role_does_not_notify,
                                      test_record_failure_retry_then_dead,
                                      test_record_failure_both_forms,
                                      test_replay_by_id_range,
                                      test_replay_by_time_topic_key,
                                      test_replay_needs_a_filter,
                                      test_requeue_dead,
                                      test_rewinds_counted,
                                      test_relay_updates_call_no_trigger_function,
                                      test_writers_in_progress,
                                      NULL};

        return runner_suite("sql", "contract", &servers, 120, tests);
}
