/* test_security: least privilege against a real PostgreSQL and the real
 * relay. A hostile writer holding only what `migrate --grant-writer` gives
 * (and the relay's DML-only role, which is no superuser either) tries to
 * make the security definer functions run its own code with their owner's
 * rights; each attempt must leave its attributes and grants as they were.
 * Then what each role can and cannot do: the writer only INSERTs, the relay
 * publishes, retries, dead-letters, replays and deletes old rows without
 * any DDL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <libpq-fe.h>

#include "fault_harness.h"
#include "fixture.h"
#include "runner.h"

FX_DEV_SERVERS(1, 1);

/* Everything a successful attack would change about a role: its
 * attributes, its memberships and its rights on the outbox. */
static char *role_state(PGconn *admin, const char *role)
{
        char sql[2048], *copy;
        PGresult *res;

        snprintf(sql, sizeof(sql),
                 "SELECT concat_ws(' ', r.rolsuper, r.rolcreaterole, r.rolcreatedb,"
                 " r.rolreplication, r.rolbypassrls, r.rolinherit,"
                 " (SELECT string_agg(m.roleid::regrole::text, ',' ORDER BY 1)"
                 "  FROM pg_auth_members m WHERE m.member = r.oid),"
                 " (SELECT string_agg(c.relname || '=' || p.privilege_type, ',' ORDER BY 1)"
                 "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,"
                 "  LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) p"
                 "  WHERE n.nspname = 'outbox' AND p.grantee = r.oid),"
                 " has_schema_privilege(r.oid, 'outbox', 'CREATE'),"
                 " has_database_privilege(r.oid, current_database(), 'CREATE'))"
                 " FROM pg_roles r WHERE r.rolname = '%s'",
                 role);
        res = PQexec(admin, sql);
        ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s",
                      PQerrorMessage(admin));
        copy = strdup(PQgetvalue(res, 0, 0));
        PQclear(res);
        ck_assert_ptr_nonnull(copy);
        return copy;
}

/* Runs sql, which may fail (that is the point of most of it). */
static void try_sql(PGconn *conn, const char *sql)
{
        PQclear(PQexec(conn, sql));
}

/* Whether sql fails with insufficient_privilege. */
static int denied(PGconn *conn, const char *sql)
{
        PGresult *res = PQexec(conn, sql);
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        int is = state != NULL && strcmp(state, "42501") == 0;

        PQclear(res);
        return is;
}

/* The payload each attack runs: only an owner's rights make it succeed. */
#define ATTACK_FN                                                                                  \
        "CREATE FUNCTION pg_temp.f() RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN"                  \
        " EXECUTE format('ALTER ROLE %I SUPERUSER CREATEROLE CREATEDB BYPASSRLS', session_user);"  \
        " EXECUTE format('GRANT pg_read_all_data, pg_write_server_files TO %I', session_user);"    \
        " EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA outbox TO %I', session_user);"         \
        " RETURN 1; END $$"

/* Each attack runs on a fresh session of the role (its own temp schema):
 * temporary relations shadow what the definer functions read by bare name,
 * pg_temp functions what they call by bare name, and then a statement
 * reaches the function. One statement at a time: a later failure must not
 * roll back an earlier success unseen. */
#define MAX_STEPS 8
static const struct attack {
        const char *name;
        const char *steps[MAX_STEPS];
} attacks[] = {
    {"writers() reading a temp view rewinds (the issue's exploit)",
     {"CREATE TEMP VIEW rewinds AS SELECT true AS is_called, pg_temp.f() AS last_value",
      "SELECT * FROM outbox.writers('{}')"}},
    {"writers() reading a temp view pg_sequence",
     {"CREATE TEMP VIEW pg_sequence AS SELECT c.oid AS seqrelid, pg_temp.f() AS seqcache"
      " FROM pg_catalog.pg_class c",
      "SELECT * FROM outbox.writers('{}')"}},
    {"writers() reading a temp view pg_locks",
     {"CREATE TEMP VIEW pg_locks AS SELECT 'relation'::text AS locktype,"
      " 'outbox.events'::regclass::oid AS relation, d.oid AS database,"
      " 'RowExclusiveLock'::text AS mode, 'x'::text AS virtualtransaction, 1 AS pid"
      " FROM pg_catalog.pg_database d WHERE pg_temp.f() = 1",
      "SELECT * FROM outbox.writers('{}')"}},
    {"writers() reading a temp table events and a temp view pg_database",
     {"CREATE TEMP TABLE events (id bigint GENERATED ALWAYS AS IDENTITY)",
      "CREATE TEMP VIEW pg_database AS SELECT oid, datname FROM pg_catalog.pg_database"
      " WHERE pg_temp.f() = 1",
      "SELECT * FROM outbox.writers('{}')"}},
    {"notify_relay() reading a temp view relay_state on INSERT",
     {"CREATE TEMP VIEW relay_state AS SELECT pg_temp.f() = 1 AS waiting",
      "INSERT INTO outbox.events (topic, key, payload) VALUES ('sec-attack', 'k', '{}')",
      "INSERT INTO outbox.events (topic, key, payload)"
      " SELECT 'sec-attack', 'k', '{}' FROM generate_series(1, 3)"}},
    {"note_rewind() on UPDATE and DELETE with a temp view rewinds",
     {"CREATE TEMP VIEW rewinds AS SELECT pg_temp.f() AS last_value",
      "UPDATE outbox.events SET next_attempt_at = now() WHERE false",
      "DELETE FROM outbox.dead_letters WHERE false"}},
    {"temp functions named like the builtins the bodies call",
     {"CREATE FUNCTION pg_temp.nextval(regclass) RETURNS bigint LANGUAGE sql AS"
      " 'SELECT pg_temp.f()'",
      "CREATE FUNCTION pg_temp.pg_notify(text, text) RETURNS void LANGUAGE plpgsql AS"
      " 'BEGIN PERFORM pg_temp.f(); END'",
      "CREATE FUNCTION pg_temp.current_setting(text, boolean) RETURNS text LANGUAGE sql AS"
      " 'SELECT pg_temp.f()::text'",
      "CREATE FUNCTION pg_temp.pg_sequence_last_value(regclass) RETURNS bigint LANGUAGE sql AS"
      " 'SELECT pg_temp.f()'",
      "INSERT INTO outbox.events (topic, key, payload) VALUES ('sec-attack', 'k', '{}')",
      "UPDATE outbox.events SET next_attempt_at = now() WHERE false",
      "SELECT * FROM outbox.writers('{}')"}},
    {"record_failure(), replay() and requeue_dead() with temp views events and dead_letters",
     {"CREATE TEMP VIEW events AS SELECT * FROM outbox.events WHERE pg_temp.f() = 1",
      "CREATE TEMP VIEW dead_letters AS SELECT * FROM outbox.dead_letters WHERE pg_temp.f() = 1",
      "SELECT outbox.record_failure(1, 0, 'x', 1, 10)", "SELECT outbox.replay(p_from_id => 1)",
      "SELECT outbox.requeue_dead(p_all => true)"}},
};

static void attack_as(const char *ci, PGconn *admin, const char *role)
{
        for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
                char *before = role_state(admin, role), *after;
                PGconn *c = fx_db_connect_as(ci, role);

                try_sql(c, ATTACK_FN);
                for (int k = 0; k < MAX_STEPS && attacks[i].steps[k] != NULL; k++)
                        try_sql(c, attacks[i].steps[k]);
                PQfinish(c);
                after = role_state(admin, role);
                ck_assert_msg(strcmp(before, after) == 0, "%s as %s changed the role: %s -> %s",
                              attacks[i].name, role, before, after);
                free(before);
                free(after);
        }
}

/* The definer functions are safe whoever calls them: the INSERT-only writer
 * (which may not even call writers()) and the relay's role, which may call
 * it and can UPDATE and DELETE, so reaches every trigger. */
START_TEST(definer_functions_run_no_callers_code)
{
        char *ci = fx_pg_create_db(pg, "sec_definer");
        PGconn *admin = fx_db_connect(ci);
        struct fh_result res;

        fx_migrate(ci, NULL);
        fx_sql(admin, "INSERT INTO outbox.events (topic, key, payload) VALUES ('sec', 'k', '{}')");
        /* Without the fix the attacks could only fail by lack of rights. */
        ck_assert_int_eq(fx_sql_int(admin,
                                    "SELECT count(*) FROM pg_roles WHERE rolsuper"
                                    " AND rolname IN ('%s', '%s')",
                                    FX_WRITER_ROLE, FX_RELAY_ROLE),
                         0);
        fh_result_init(&res, "definer-exploits",
                       "a writer (INSERT only) and the relay's role shadow what the SECURITY "
                       "DEFINER functions read (temporary views, tables and functions named like "
                       "them) with code that makes the session's role a superuser");
        attack_as(ci, admin, FX_WRITER_ROLE);
        attack_as(ci, admin, FX_RELAY_ROLE);
        /* A role that can create nothing outside pg_temp cannot put an
         * operator or function where the bodies would find it. */
        ck_assert_int_eq(fx_sql_int(admin,
                                    "SELECT count(*) FROM pg_namespace n, pg_roles r"
                                    " WHERE r.rolname IN ('%s', '%s') AND n.nspname NOT LIKE"
                                    " 'pg_temp%%' AND n.nspname NOT LIKE 'pg_toast_temp%%'"
                                    " AND has_schema_privilege(r.oid, n.oid, 'CREATE')",
                                    FX_WRITER_ROLE, FX_RELAY_ROLE),
                         0);
        res.committed = res.messages = -1;
        res.faults = (int)(2 * sizeof(attacks) / sizeof(attacks[0]));
        snprintf(res.notes, sizeof(res.notes),
                 "%d attempts by each role: its attributes, memberships and grants unchanged; "
                 "neither may create outside pg_temp",
                 res.faults / 2);
        fh_report(&res, 1);
        PQfinish(admin);
        free(ci);
}
END_TEST

/* A temporary sequence called rewinds must not take the count of a rewind
 * (the relay would miss the rows an UPDATE made pending again). */
START_TEST(rewind_counts_in_the_outbox_sequence)
{
        char *ci = fx_pg_create_db(pg, "sec_rewind");
        PGconn *admin = fx_db_connect(ci), *relay;

        fx_migrate(ci, NULL);
        relay = fx_db_connect_as(ci, FX_RELAY_ROLE);
        fx_sql(relay, "CREATE TEMP SEQUENCE rewinds");
        fx_sql(relay, "UPDATE outbox.events SET next_attempt_at = now() WHERE false");
        ck_assert_int_eq(fx_sql_int(admin, "SELECT last_value FROM outbox.rewinds"), 1);
        ck_assert_int_eq(fx_sql_int(relay, "SELECT is_called FROM pg_temp.rewinds"), 0);
        PQfinish(relay);
        PQfinish(admin);
        free(ci);
}
END_TEST

/* The writer's grant is INSERT on events and USAGE on the schema: every
 * form of insert works (the CHECK's function, the identity, the notify
 * trigger whether or not the relay waits), nothing else does. */
START_TEST(writer_can_only_insert)
{
        char *ci = fx_pg_create_db(pg, "sec_writer");
        PGconn *admin = fx_db_connect(ci), *w;
        static const char *const refused[] = {
            "SELECT * FROM outbox.events",
            "UPDATE outbox.events SET status = 'sent'",
            "DELETE FROM outbox.events",
            "SELECT * FROM outbox.relay_state",
            "UPDATE outbox.relay_state SET waiting = false",
            "SELECT * FROM outbox.dead_letters",
            "INSERT INTO outbox.dead_letters (id, headers, created_at, attempts, reason)"
            " VALUES (1, '{}', now(), 1, 'x')",
            "SELECT * FROM outbox.schema_migrations",
            "SELECT nextval('outbox.rewinds')",
            "SELECT outbox.replay(p_from_id => 1)",
            "SELECT outbox.requeue_dead(p_all => true)",
            "SELECT outbox.record_failure(1, 0, 'x', 1, 10)",
            "SELECT * FROM outbox.writers('{}')",
            "CREATE TABLE outbox.mine (i int)",
            "ALTER TABLE outbox.events ADD COLUMN mine int",
            "CREATE SCHEMA mine",
            "INSERT INTO outbox.events (topic, payload) VALUES ('t', '{}') RETURNING id",
        };

        fx_migrate(ci, NULL);
        w = fx_db_connect_as(ci, FX_WRITER_ROLE);
        fx_sql(admin, "UPDATE outbox.relay_state SET waiting = true");
        fx_sql(w, "INSERT INTO outbox.events (topic, key, payload, headers)"
                  " VALUES ('sec', 'k', '{}', '{\"a\": \"b\"}')");
        fx_sql(w, "INSERT INTO outbox.events (topic, key, payload)"
                  " SELECT 'sec', 'k' || g, '{}' FROM generate_series(1, 5) g");
        fx_sql(admin, "UPDATE outbox.relay_state SET waiting = false");
        fx_sql(w, "BEGIN; INSERT INTO outbox.events (event_type, payload_bytes) VALUES ('x', 'ab');"
                  " INSERT INTO outbox.events (topic, key) VALUES ('sec', 'tomb'), ('sec', 't2');"
                  " COMMIT");
        ck_assert_int_eq(fx_sql_int(admin, "SELECT max(id) FROM outbox.events"), 9);
        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
                ck_assert_msg(denied(w, refused[i]), "the writer role could: %s", refused[i]);
        PQfinish(w);
        PQfinish(admin);
        free(ci);
}
END_TEST

/* Runs the relay binary's operator command as the relay role. */
static int relay_cmd_as_relay(const char *ci, const char *const args[], char **out)
{
        const char *argv[16];
        char *as = fx_conninfo_as(ci, FX_RELAY_ROLE);
        size_t n = 0;
        int rc;

        argv[n++] = OUTBOX_RELAY_BIN;
        for (size_t i = 0; args[i] != NULL && n < 13; i++)
                argv[n++] = args[i];
        argv[n++] = "--database-url";
        argv[n++] = as;
        argv[n] = NULL;
        rc = fx_run(argv, NULL, out, 60000);
        free(as);
        return rc;
}

/* The relay as the role --grant-relay made: publishes a writer's rows,
 * retries and dead-letters the one it cannot route, deletes old sent rows;
 * status, replay and dlq work as that role too. It cannot change the
 * schema. */
START_TEST(relay_role_runs_without_ddl)
{
        char *ci = fx_pg_create_db(pg, "sec_relay");
        PGconn *admin = fx_db_connect(ci), *w, *rel;
        const char *args[] = {
            "--max-attempts", "2", "--retry-base-ms", "50", "--retention", "1h", NULL};
        struct fx_relay *r;
        struct fx_msg *msgs = NULL;
        char *out = NULL, *log;
        size_t n;

        fx_migrate(ci, NULL);
        w = fx_db_connect_as(ci, FX_WRITER_ROLE);
        /* An old sent row for retention to delete (made by the operator). */
        fx_sql(admin,
               "INSERT INTO outbox.events (topic, key, payload) VALUES ('sec-old', 'o', '{}')");
        fx_sql(admin, "UPDATE outbox.events SET status = 'sent', sent_at = now() - interval '2h'");
        r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        fx_sql(w, "INSERT INTO outbox.events (topic, key, payload) VALUES ('sec-ok', 'k', '{}')");
        fx_sql(w, "INSERT INTO outbox.events (event_type, key, payload) VALUES ('unrouted', 'u',"
                  " '{}')");
        ck_assert_int_eq(fx_wait_sql(admin, 1, 30000,
                                     "SELECT count(*) FROM outbox.events WHERE topic = 'sec-ok'"
                                     " AND status = 'sent'"),
                         1);
        ck_assert_int_eq(fx_wait_sql(admin, 1, 30000, "SELECT count(*) FROM outbox.dead_letters"),
                         1);
        ck_assert_int_eq(fx_wait_sql(admin, 0, 60000,
                                     "SELECT count(*) FROM outbox.events WHERE topic = 'sec-old'"),
                         0);
        n = fx_consume(fx_kafka_bootstraps(kafka), "sec-ok", 1, 10000, &msgs);
        ck_assert_uint_eq(n, 1);
        fx_msgs_free(msgs, n);

        /* The operator commands, as the same role. */
        ck_assert_msg(relay_cmd_as_relay(ci, (const char *[]){"replay", "--topic", "sec-ok", NULL},
                                         &out) == 0,
                      "replay: %s", out);
        free(out);
        ck_assert_int_eq(fx_wait_sql(admin, 1, 30000,
                                     "SELECT count(*) FROM outbox.events WHERE topic = 'sec-ok'"
                                     " AND status = 'sent' AND replays = 1"),
                         1);
        ck_assert_msg(relay_cmd_as_relay(ci, (const char *[]){"dlq", "list", NULL}, &out) == 0,
                      "dlq list: %s", out);
        ck_assert_ptr_nonnull(strstr(out, "unrouted"));
        free(out);
        ck_assert_msg(
            relay_cmd_as_relay(ci, (const char *[]){"dlq", "requeue", "--all", NULL}, &out) == 0,
            "dlq requeue: %s", out);
        ck_assert_ptr_nonnull(strstr(out, "requeued 1 dead letter(s)"));
        free(out);
        ck_assert_int_eq(fx_wait_sql(admin, 1, 30000, "SELECT count(*) FROM outbox.dead_letters"),
                         1);
        ck_assert_msg(relay_cmd_as_relay(ci, (const char *[]){"status", NULL}, &out) == 0,
                      "status: %s", out);
        free(out);

        rel = fx_db_connect_as(ci, FX_RELAY_ROLE);
        ck_assert(denied(rel, "CREATE TABLE outbox.mine (i int)"));
        ck_assert(denied(rel, "ALTER TABLE outbox.events ADD COLUMN mine int"));
        ck_assert(denied(rel, "DROP TABLE outbox.dead_letters"));
        ck_assert(denied(rel, "CREATE SCHEMA mine"));
        ck_assert(denied(rel, "TRUNCATE outbox.events"));
        ck_assert(denied(rel, "SELECT setval('outbox.rewinds', 1)"));
        ck_assert_int_eq(
            fx_sql_int(admin, "SELECT rolsuper FROM pg_roles WHERE rolname = '%s'", FX_RELAY_ROLE),
            0);
        log = fx_relay_log(r);
        ck_assert_msg(strstr(log, "permission denied") == NULL, "relay log: %s", log);
        free(log);
        PQfinish(rel);
        fx_relay_free(r);
        PQfinish(w);
        PQfinish(admin);
        free(ci);
}
END_TEST

/* migrate refuses a role that does not exist, in one line naming it, and
 * takes any role name as a name (quoted), never as SQL. */
START_TEST(migrate_grant_names_a_missing_role)
{
        char *ci = fx_pg_create_db(pg, "sec_grant");
        PGconn *admin = fx_db_connect(ci);
        const char *argv[] = {OUTBOX_RELAY_BIN,
                              "migrate",
                              "--database-url",
                              ci,
                              "--grant-relay",
                              "x\"; DROP TABLE outbox.events; --",
                              NULL};
        char *out = NULL;

        fx_migrate(ci, NULL);
        ck_assert_int_eq(fx_run(argv, NULL, &out, 60000), 1);
        ck_assert_msg(strstr(out, "outbox-relay migrate: role \"x\"; DROP TABLE outbox.events; --\""
                                  " does not exist") != NULL,
                      "%s", out);
        free(out);
        ck_assert_int_eq(fx_sql_int(admin, "SELECT count(*) FROM outbox.events"), 0);
        PQfinish(admin);
        free(ci);
}
END_TEST

/* An installation of schema version 3 whose relay runs as a role of its
 * own (no owner, no superuser) with the grants 003 needed: upgrading to 004
 * must not take EXECUTE on the relay's functions away from it, and must not
 * give it to a role that could only insert. */
START_TEST(upgrade_keeps_an_existing_relay_role_running)
{
        char *ci = fx_pg_create_db(pg, "sec_upgrade"), *out = NULL;
        PGconn *admin = fx_db_connect(ci);
        const char *argv[] = {OUTBOX_RELAY_BIN, "migrate", "--database-url", ci, NULL};
        static const char *const fns[] = {"writers(text[])",
                                          "record_failure(bigint, integer, text, integer, integer)",
                                          "replay(bigint, bigint, timestamptz, timestamptz, text, "
                                          "text, boolean)",
                                          "requeue_dead(bigint, text, boolean)"};

        for (int v = 1; v <= 3; v++) {
                static const char *const files[] = {"001_init", "002_outbox_id", "003_rewinds"};
                char file[512];
                const char *psql[] = {"/usr/lib/postgresql/15/bin/psql",
                                      "-X",
                                      "-q",
                                      "-v",
                                      "ON_ERROR_STOP=1",
                                      "-v",
                                      "schema=outbox",
                                      "-d",
                                      ci,
                                      "-f",
                                      file,
                                      NULL};

                snprintf(file, sizeof(file), "%s/sql/%s.sql", OUTBOX_SOURCE_DIR, files[v - 1]);
                ck_assert_msg(fx_run(psql, NULL, &out, 60000) == 0, "psql -f %s: %s", file, out);
                free(out);
                out = NULL;
        }
        fx_sql(admin, "SET client_min_messages = warning;"
                      "DROP ROLE IF EXISTS legacy_relay; DROP ROLE IF EXISTS legacy_writer;"
                      "CREATE ROLE legacy_relay LOGIN; CREATE ROLE legacy_writer LOGIN;"
                      "GRANT USAGE ON SCHEMA outbox TO legacy_relay, legacy_writer;"
                      "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA outbox"
                      "  TO legacy_relay;"
                      "GRANT INSERT ON outbox.events TO legacy_writer;"
                      "GRANT SELECT ON outbox.relay_state TO legacy_writer");
        ck_assert_int_eq(fx_run(argv, NULL, &out, 60000), 0);
        free(out);
        ck_assert_int_ge(fx_sql_int(admin, "SELECT max(version) FROM outbox.schema_migrations"), 4);
        for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
                ck_assert_msg(fx_sql_int(admin,
                                         "SELECT has_function_privilege('legacy_relay', "
                                         "'outbox.%s', 'EXECUTE')::int",
                                         fns[i]) == 1,
                              "legacy_relay lost EXECUTE on %s", fns[i]);
                ck_assert_msg(fx_sql_int(admin,
                                         "SELECT has_function_privilege('legacy_writer', "
                                         "'outbox.%s', 'EXECUTE')::int",
                                         fns[i]) == 0,
                              "legacy_writer may execute %s", fns[i]);
        }
        fx_sql(admin, "DROP OWNED BY legacy_relay, legacy_writer;"
                      "DROP ROLE legacy_relay; DROP ROLE legacy_writer");
        PQfinish(admin);
        free(ci);
}
END_TEST

/* The rewind count the relay reads (writers()). */
static long long rewinds(PGconn *admin)
{
        return fx_sql_int(admin, "SELECT rewind_count FROM outbox.writers('{}')");
}

/* `SET outbox_relay.role = 'relay'` is open to every session; the triggers
 * take it to mean "the relay's own update". An operator's session with it
 * on (the relay's role, which replay and dlq run as) makes rows pending
 * again: a sent row reset by hand, a pending row's payload fixed, dead
 * letters requeued. Each must still count a rewind (else the relay's
 * floor stays above the row: it waits for the minute's sweep behind later
 * rows of its key) and bump the generation (else an acknowledgement or a
 * progress record of the copy published before marks the new one sent:
 * the replay, or the fix, is never published). What the relay itself
 * does with the setting on (marks, record_failure) still counts nothing. */
START_TEST(the_relay_setting_cannot_hide_a_replay)
{
        char *ci = fx_pg_create_db(pg, "sec_setting_op");
        PGconn *admin = fx_db_connect(ci), *op;
        long long rw;

        fx_migrate(ci, NULL);
        fx_sql(admin, "INSERT INTO outbox.events (topic, key, payload)"
                      " SELECT 'sec', 'k' || g, '{}' FROM generate_series(1, 5) g");
        fx_sql(admin, "UPDATE outbox.events SET status = 'sent', sent_at = now() WHERE id <= 2");
        op = fx_db_connect_as(ci, FX_RELAY_ROLE);
        fx_sql(op, "SET outbox_relay.role = 'relay'");

        /* The relay's own updates: a failure counted, a mark. */
        rw = rewinds(admin);
        fx_sql_int(op, "SELECT count(*) FROM outbox.record_failure(3, 0, 'x', 0, 10, NULL, 0)");
        fx_sql(op, "UPDATE outbox.events SET status = 'sent', sent_at = now() WHERE id = 4");
        ck_assert_int_eq(rewinds(admin), rw);
        ck_assert_int_eq(fx_sql_int(admin, "SELECT sum(generation) FROM outbox.events"), 0);

        /* A sent row reset by hand. */
        fx_sql(op, "UPDATE outbox.events SET status = 'pending', sent_at = NULL WHERE id = 1");
        ck_assert_int_eq(fx_sql_int(admin, "SELECT generation FROM outbox.events WHERE id = 1"), 1);
        ck_assert_msg(rewinds(admin) > rw, "a reset to pending counted no rewind");

        /* A pending row's content changed (it may be in flight as it was). */
        rw = rewinds(admin);
        fx_sql(op, "UPDATE outbox.events SET payload = '{\"fixed\": true}' WHERE id = 3");
        ck_assert_int_eq(fx_sql_int(admin, "SELECT generation FROM outbox.events WHERE id = 3"), 1);
        ck_assert_msg(rewinds(admin) > rw, "a changed pending row counted no rewind");

        /* Dead letters requeued (their old ids: below the floor). */
        ck_assert_int_eq(fx_sql_int(op, "SELECT (outbox.record_failure(5, 0, 'x', 0, 1, NULL, 0)"
                                        " = 'dead')::int"),
                         1);
        rw = rewinds(admin);
        ck_assert_int_eq(fx_sql_int(op, "SELECT outbox.requeue_dead(p_all => true)"), 1);
        ck_assert_msg(rewinds(admin) > rw, "a requeue counted no rewind");
        ck_assert_int_eq(fx_sql_int(admin, "SELECT generation FROM outbox.events WHERE id = 5"), 1);

        /* replay() in such a session. */
        rw = rewinds(admin);
        ck_assert_int_eq(fx_sql_int(op, "SELECT outbox.replay(p_from_id => 2, p_to_id => 2)"), 1);
        ck_assert_int_eq(fx_sql_int(admin, "SELECT generation FROM outbox.events WHERE id = 2"), 1);
        ck_assert_msg(rewinds(admin) > rw, "replay() counted no rewind");
        PQfinish(op);
        PQfinish(admin);
        free(ci);
}
END_TEST

/* The writer role with the setting on: its INSERT sends no notification
 * (001's notify_relay() skips the relay's own statements), which costs
 * only latency: the relay finds the rows by its own polling. Nothing else
 * of a writer's reads the setting. */
START_TEST(a_writer_with_the_relay_setting_loses_nothing)
{
        char *ci = fx_pg_create_db(pg, "sec_setting_writer");
        PGconn *admin = fx_db_connect(ci), *w;
        struct fx_relay *r;
        struct fx_msg *msgs = NULL;
        size_t n;

        fx_migrate(ci, NULL);
        r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), NULL);
        w = fx_db_connect_as(ci, FX_WRITER_ROLE);
        fx_sql(w, "SET outbox_relay.role = 'relay'");
        fx_sql(w, "INSERT INTO outbox.events (topic, key, payload)"
                  " SELECT 'sec-quiet', 'k' || (g %% 3), '{}' FROM generate_series(1, 20) g");
        ck_assert_int_eq(fx_wait_sql(admin, 20, 30000,
                                     "SELECT count(*) FROM outbox.events WHERE status = 'sent'"),
                         20);
        n = fx_consume(fx_kafka_bootstraps(kafka), "sec-quiet", 20, 30000, &msgs);
        ck_assert_uint_eq(n, 20);
        fx_msgs_free(msgs, n);
        fx_relay_free(r);
        PQfinish(w);
        PQfinish(admin);
        free(ci);
}
END_TEST

static const struct runner_servers servers = {suite_setup, suite_teardown};

Suite *test_suite(void)
{
        const TTest *const tests[] = {definer_functions_run_no_callers_code,
                                      rewind_counts_in_the_outbox_sequence,
                                      writer_can_only_insert,
                                      relay_role_runs_without_ddl,
                                      migrate_grant_names_a_missing_role,
                                      upgrade_keeps_an_existing_relay_role_running,
                                      the_relay_setting_cannot_hide_a_replay,
                                      a_writer_with_the_relay_setting_loses_nothing,
                                      NULL};

        return runner_suite("security", "roles", &servers, 180, tests);
}
