/* Bad input end to end: rows the schema's constraints would refuse (the
 * constraints dropped, as a user might), oversized payloads, odd bytes and
 * NULLs reach the real relay, which must give each a clear error (a dead
 * letter with its reason) and keep serving every other row; bad settings
 * and missing or old schemas must fail clearly before anything is
 * published. Each case adds a line to the fault report. */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fault_harness.h"
#include "fixture.h"
#include "runner.h"

FX_DEV_SERVERS(1, 4);

#define BROKERS fx_kafka_bootstraps(kafka)

/* One bad row: its columns (besides key) and values as SQL, and whether
 * the relay must dead-letter it with `reason` in the reason (1), publish it
 * (0), or may do either (2). */
struct bad_row {
        const char *cols, *vals;
        int dead;
        const char *reason;
};

/* Shared by every bad-row case: for each bad row i, a good row of its own
 * key before it, the bad row (key bad-i) and a good row of key bad-i after
 * it, which must wait for the bad one and then be published. Then checks
 * what became of each and reports. `setup` runs first (drops constraints). */
static void run_bad_rows(const char *name, const char *what, const char *topic, const char *setup,
                         const struct bad_row *rows, int n, const char *const extra_args[])
{
        char db[64], *ci, cmd[128], reasons[400] = "";
        const char *args[24] = {"--max-attempts", "1", "--poll-interval-ms", "200", NULL};
        struct fh_result res;
        struct fx_relay *r;
        PGconn *c;
        int k = 4, want_dead = 0, ok;
        long long ids[32];
        size_t rl = 0;

        ck_assert_int_le(n, 32);
        snprintf(db, sizeof(db), "bad_%s", name);
        for (char *p = db; *p; p++)
                if (*p == '-')
                        *p = '_';
        ci = fx_pg_create_db(pg, db);
        fx_migrate(ci, NULL);
        c = fx_db_connect(ci);
        if (setup)
                fx_sql(c, "%s", setup);
        snprintf(cmd, sizeof(cmd), "topic %s 4", topic);
        ck_assert_int_eq(fx_kafka_command(kafka, cmd), 0);
        for (int i = 0; extra_args && extra_args[i]; i++)
                args[k++] = extra_args[i];
        args[k] = NULL;
        fh_result_init(&res, name, what);
        for (int i = 0; i < n; i++) {
                fx_sql(c,
                       "INSERT INTO outbox.events (topic, key, payload) VALUES ('%s', 'good-%d', "
                       "'{}')",
                       topic, i);
                /* A row spec naming the key itself (NULL keys) gets no bad-i key. */
                if (!strncmp(rows[i].cols, "key", 3))
                        ids[i] =
                            fx_sql_int(c, "INSERT INTO outbox.events (%s) VALUES (%s) RETURNING id",
                                       rows[i].cols, rows[i].vals);
                else
                        ids[i] = fx_sql_int(c,
                                            "INSERT INTO outbox.events (key, %s) VALUES ('bad-%d', "
                                            "%s) RETURNING id",
                                            rows[i].cols, i, rows[i].vals);
                fx_sql(c,
                       "INSERT INTO outbox.events (topic, key, payload) VALUES ('%s', 'bad-%d', "
                       "'{\"after\": \"the bad row\"}')",
                       topic, i);
                want_dead += rows[i].dead == 1;
        }
        r = fx_relay_start(ci, BROKERS, args);
        fh_wait_drained(c, 15000);
        /* Still alive and serving: a new row goes through. */
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) VALUES ('%s', 'late', '{}')",
               topic);
        fx_wait_sql(c, 1, 15000,
                    "SELECT count(*) FROM outbox.events WHERE key = 'late'"
                    " AND status = 'sent'");
        fx_relay_kill(r, SIGTERM);
        ok = fx_relay_wait(r, 30000) == 0;
        for (int i = 0; i < n; i++) {
                char sql[256], *reason;
                PGresult *q;

                snprintf(sql, sizeof(sql),
                         "SELECT coalesce((SELECT reason FROM outbox.dead_letters WHERE id = %lld),"
                         " '(' || (SELECT status FROM outbox.events WHERE id = %lld) || ')')",
                         ids[i], ids[i]);
                q = PQexec(c, sql);
                ck_assert_int_eq(PQresultStatus(q), PGRES_TUPLES_OK);
                reason = PQgetisnull(q, 0, 0) ? "(missing)" : PQgetvalue(q, 0, 0);
                if (rl < sizeof(reasons) - 1)
                        rl += (size_t)snprintf(reasons + rl, sizeof(reasons) - rl, "%s%.70s",
                                               i ? " | " : "", reason);
                if (rows[i].dead == 1 && (reason[0] == '(' || !strstr(reason, rows[i].reason)))
                        ok = 0;
                if (rows[i].dead == 0 && strcmp(reason, "(sent)") != 0)
                        ok = 0;
                if (rows[i].dead == 2 && strcmp(reason, "(sent)") != 0 &&
                    (reason[0] == '(' || !strstr(reason, rows[i].reason)))
                        ok = 0;
                PQclear(q);
        }
        if (rl >= sizeof(reasons))
                rl = sizeof(reasons) - 1;
        fh_check(c, BROKERS, topic, &res);
        res.faults = n;
        snprintf(res.notes, sizeof(res.notes), "%s", reasons);
        ok = ok && res.lost == 0 && res.phantoms == 0 && res.order_violations == 0 &&
             res.dead_letters >= want_dead;
        fh_report(&res, ok);
        if (!ok) {
                char *log = fx_relay_log(r);
                size_t len = strlen(log);

                ck_abort_msg("%s: lost %lld, dead letters %lld (want %d), order %lld; per bad "
                             "row: %s\nrelay log tail: %s",
                             name, res.lost, res.dead_letters, want_dead, res.order_violations,
                             reasons, len > 1200 ? log + len - 1200 : log);
        }
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}

START_TEST(headers_not_an_object_of_strings)
{
        static const struct bad_row rows[] = {
            {"topic, headers", "'b-headers', '[1, 2]'", 1, "object of strings"},
            {"topic, headers", "'b-headers', '\"text\"'", 1, "headers"},
            {"topic, headers", "'b-headers', 'null'", 1, "headers"},
            {"topic, headers", "'b-headers', '{\"n\": 1}'", 1, "header \"n\""},
            {"topic, headers", "'b-headers', '{\"a\": {\"b\": \"c\"}}'", 1, "header \"a\""},
            {"topic, headers", "'b-headers', '{\"a\": null}'", 1, "header \"a\""},
            {"topic, headers", "'b-headers', '{\"ok\": \"x\", \"bad\": true}'", 1,
             "header \"bad\""},
        };

        run_bad_rows("headers",
                     "headers not an object of strings (CHECK constraint dropped): "
                     "array, string, JSON null, number, object, null value, boolean",
                     "b-headers",
                     "ALTER TABLE outbox.events DROP CONSTRAINT events_headers_object_of_strings",
                     rows, (int)(sizeof(rows) / sizeof(rows[0])), NULL);
}
END_TEST

START_TEST(payload_larger_than_accepted)
{
        static const struct bad_row rows[] = {
            {"topic, payload", "'b-size', jsonb_build_object('blob', repeat('x', 200000))", 1,
             "too large"},
            {"topic, payload_bytes", "'b-size', convert_to(repeat('y', 300000), 'UTF8')", 1,
             "too large"},
        };
        const char *args[] = {"-X", "message.max.bytes=100000", NULL};

        run_bad_rows("oversized",
                     "payload (jsonb 200 kB, bytea 300 kB) larger than "
                     "message.max.bytes=100000",
                     "b-size", NULL, rows, (int)(sizeof(rows) / sizeof(rows[0])), args);
}
END_TEST

START_TEST(topic_names_kafka_rejects)
{
        static const struct bad_row rows[] = {
            {"topic, payload", "'bad topic!', '{}'", 1, "topic"},
            {"topic, payload", "repeat('t', 300), '{}'", 1, "topic"},
            {"topic, payload", "'..', '{}'", 1, "topic"},
            {"topic, payload", "'t\u00f6pic', '{}'", 1, "topic"},
            {"topic, payload", "'', '{}'", 1, "topic"},
            {"topic, payload", "'b-rejected', '{}'", 1, "nvalid topic"},
        };
        const char *args[] = {"-X", "topic.metadata.propagation.max.ms=1000", NULL};

        /* A legal name the broker refuses, too. */
        ck_assert_int_eq(fx_kafka_command(kafka, "topic-error b-rejected TOPIC_EXCEPTION"), 0);
        run_bad_rows("topics",
                     "topic names Kafka rejects (CHECK dropped): space and '!', 300 "
                     "characters, '..', non-ASCII, empty; a legal name the broker "
                     "answers TOPIC_EXCEPTION for",
                     "b-topics", "ALTER TABLE outbox.events DROP CONSTRAINT events_topic_legal",
                     rows, (int)(sizeof(rows) / sizeof(rows[0])), args);
}
END_TEST

/* Topics a writer may name but the relay must not write: Kafka's internal
 * topics, the progress topic of --exactly-once relays, and anything outside
 * --allowed-topics. Dead-lettered at their first failure although
 * --max-attempts is 10: with retries they would not drain in time. */
START_TEST(topics_rows_may_not_reach)
{
        static const struct bad_row rows[] = {
            {"topic, payload", "'__consumer_offsets', '{}'", 1, "internal topics"},
            {"topic, payload", "'__transaction_state', '{}'", 1, "internal topics"},
            {"topic, payload", "'__anything', '{}'", 1, "internal topics"},
            {"topic, payload", "'b-progress', '{}'", 1, "progress topic"},
            {"topic, payload", "'b-elsewhere', '{}'", 1, "--allowed-topics"},
        };
        const char *args[] = {"--max-attempts",
                              "10",
                              "--progress-topic",
                              "b-progress",
                              "--allowed-topics",
                              "b-allowed, b-allowed-*,b-pro*",
                              NULL};

        run_bad_rows("refused-topics",
                     "topics rows may not reach: __consumer_offsets, __transaction_state, "
                     "__anything, the --progress-topic (even where --allowed-topics matches it), "
                     "one outside --allowed-topics (the good rows' topic is inside it)",
                     "b-allowed", NULL, rows, (int)(sizeof(rows) / sizeof(rows[0])), args);
}
END_TEST

/* NULL in every nullable column, with the schema intact. */
START_TEST(nulls_in_every_nullable_column)
{
        static const struct bad_row rows[] = {
            /* Nothing to route by: a clear error. */
            {"topic, event_type, payload, payload_bytes", "NULL, NULL, NULL, NULL", 1,
             "neither topic nor event_type"},
            /* A tombstone with every relay-managed column NULL too. */
            {"topic, event_type, payload, payload_bytes, first_attempt_at, last_attempt_at,"
             " last_error, sent_at, kafka_partition, kafka_offset",
             "'b-nulls', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL", 0, NULL},
            /* Routed by event_type. */
            {"topic, event_type, payload", "NULL, 'typed', NULL", 0, NULL},
            {"topic, event_type, payload", "NULL, 'untyped', NULL", 1, "no route"},
            /* No key: published without one. */
            {"key, topic, event_type, payload, payload_bytes", "NULL, 'b-nulls', NULL, NULL, NULL",
             0, NULL},
        };
        const char *args[] = {"--route", "typed=b-nulls", NULL};

        run_bad_rows("nulls",
                     "NULL in every nullable column: topic, key, event_type, payload, "
                     "payload_bytes and the relay-managed ones",
                     "b-nulls", NULL, rows, (int)(sizeof(rows) / sizeof(rows[0])), args);
}
END_TEST

/* NOT NULL dropped by a user: NULL headers, event_id, created_at, attempts. */
START_TEST(nulls_where_not_null_was_dropped)
{
        static const struct bad_row rows[] = {
            /* No headers: published without row headers, or a clear error. */
            {"topic, payload, headers", "'b-notnull', '{}', NULL", 2, "headers"},
            /* Consumers deduplicate on event_id: it must not go out empty. */
            {"topic, payload, event_id", "'b-notnull', '{}', NULL", 1, "event_id"},
            {"topic, payload, created_at", "'b-notnull', '{}', NULL", 2, "created_at"},
            {"topic, payload, attempts", "'b-notnull', '{}', NULL", 2, "attempts"},
        };

        run_bad_rows("not-null-dropped",
                     "NULL headers, event_id, created_at, attempts (NOT "
                     "NULL constraints dropped)",
                     "b-notnull",
                     "ALTER TABLE outbox.events ALTER COLUMN headers DROP NOT NULL,"
                     " ALTER COLUMN event_id DROP NOT NULL, ALTER COLUMN created_at DROP NOT "
                     "NULL, ALTER COLUMN attempts DROP NOT NULL",
                     rows, (int)(sizeof(rows) / sizeof(rows[0])), NULL);
}
END_TEST

/* A SQL_ASCII database lets text columns hold bytes that are not UTF-8:
 * keys with invalid UTF-8 and control bytes, and a bytea payload full of
 * NUL bytes, must reach Kafka byte for byte. */
START_TEST(invalid_utf8_keys_and_nul_bytes)
{
        static const struct {
                const char *key_sql;
                const char *key;
                size_t key_len;
        } keys[] = {
            {"E'\\xff\\xfe'", "\xff\xfe", 2},
            {"E'caf\\xe9'", "caf\xe9", 4},
            {"E'a\\x01\\x7fb'",
             "a\x01\x7f"
             "b",
             4},
        };
        static const char bin[] = {0, 0, 1, 0, (char)0xff, 0};
        char admin[128], *ci;
        const char *args[] = {"--poll-interval-ms", "200", "--max-attempts", "1", NULL};
        struct fh_result res;
        struct fx_relay *r;
        struct fx_msg *msgs;
        PGconn *a, *c;
        size_t n, matched = 0;
        int ok;

        snprintf(admin, sizeof(admin), "host=127.0.0.1 port=%d dbname=postgres user=postgres",
                 fx_pg_port(pg));
        a = fx_db_connect(admin);
        fx_sql(a, "CREATE DATABASE bad_bytes ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'"
                  " TEMPLATE template0");
        PQfinish(a);
        ck_assert_int_gt(
            asprintf(&ci, "host=127.0.0.1 port=%d dbname=bad_bytes user=postgres", fx_pg_port(pg)),
            0);
        fx_migrate(ci, NULL);
        c = fx_db_connect(ci);
        ck_assert_int_eq(fx_kafka_command(kafka, "topic b-bytes 4"), 0);
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
                fx_sql(c,
                       "INSERT INTO outbox.events (topic, key, event_type, payload_bytes)"
                       " VALUES ('b-bytes', %s, %s, '\\x00000100ff00'::bytea)",
                       keys[i].key_sql, keys[i].key_sql);
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload_bytes)"
                  " VALUES ('b-bytes', 'nul', '\\x0000000000'::bytea)");
        r = fx_relay_start(ci, BROKERS, args);
        fh_result_init(&res, "bytes",
                       "keys and event types with invalid UTF-8 and control bytes (SQL_ASCII "
                       "database), bytea payloads of NUL bytes");
        fh_wait_drained(c, 60000);
        fx_relay_kill(r, SIGTERM);
        ok = fx_relay_wait(r, 30000) == 0;
        fh_check(c, BROKERS, "b-bytes", &res);
        n = fx_consume(BROKERS, "b-bytes", 4, 3000, &msgs);
        for (size_t i = 0; i < n; i++) {
                for (size_t j = 0; j < sizeof(keys) / sizeof(keys[0]); j++)
                        if (msgs[i].key && msgs[i].key_len == keys[j].key_len &&
                            !memcmp(msgs[i].key, keys[j].key, keys[j].key_len) &&
                            msgs[i].value_len == sizeof(bin) &&
                            !memcmp(msgs[i].value, bin, sizeof(bin)))
                                matched++;
                if (msgs[i].key_len == 3 && !memcmp(msgs[i].key, "nul", 3) &&
                    msgs[i].value_len == 5 && !memcmp(msgs[i].value, "\0\0\0\0\0", 5))
                        matched++;
        }
        fx_msgs_free(msgs, n);
        res.faults = 4;
        snprintf(res.notes, sizeof(res.notes), "%zu of 4 messages byte-exact (key and value)",
                 matched);
        ok = ok && matched == 4 && res.lost == 0 && res.dead_letters == 0;
        fh_report(&res, ok);
        ck_assert_msg(ok, "%s; lost %lld, dead %lld", res.notes, res.lost, res.dead_letters);
        fx_relay_free(r);
        PQfinish(c);
        free(ci);
}
END_TEST

/* ---- schema missing or old: a clear message naming `outbox-relay migrate` ---- */

static void expect_migrate_hint(const char *db, const char *setup, const char *schema,
                                const char *expect, const char *name, const char *what)
{
        char *ci = fx_pg_create_db(pg, db), *out = NULL;
        const char *argv[] = {
            OUTBOX_RELAY_BIN, "run",      "--database-url", ci,  "--kafka-brokers",
            BROKERS,          "--schema", schema,           NULL};
        struct fh_result res;
        int rc, ok;

        if (setup) {
                PGconn *c;

                fx_migrate(ci, NULL);
                c = fx_db_connect(ci);
                fx_sql(c, "%s", setup);
                PQfinish(c);
        }
        rc = fx_run(argv, NULL, &out, 60000);
        ok = rc == 1 && strstr(out, expect) != NULL;
        fh_result_init(&res, name, what);
        res.committed = res.messages = -1;
        {
                const char *e = strstr(out, "\"error\":\"");
                size_t len = 0;

                e = e ? e + 9 : out;
                while (e[len] && !(e[len] == '"' && (len == 0 || e[len - 1] != '\\')))
                        len++;
                snprintf(res.notes, sizeof(res.notes), "exit %d: %.*s", rc,
                         (int)(len > 300 ? 300 : len), e);
        }
        fh_report(&res, ok);
        ck_assert_msg(ok, "exit %d, output: %s", rc, out);
        free(out);
        free(ci);
}

START_TEST(database_without_outbox_schema)
{
        expect_migrate_hint("bad_noschema", NULL, "outbox", "run outbox-relay migrate", "no-schema",
                            "database without the outbox schema");
}
END_TEST

START_TEST(schema_at_older_version)
{
        expect_migrate_hint("bad_oldschema", "DELETE FROM outbox.schema_migrations", "outbox",
                            "run outbox-relay migrate", "old-schema",
                            "outbox schema at an older version (0: schema_migrations emptied)");
}
END_TEST

START_TEST(schema_without_version_table)
{
        expect_migrate_hint("bad_noversion", "DROP TABLE outbox.schema_migrations", "outbox",
                            "run outbox-relay migrate", "no-version-table",
                            "outbox schema without its schema_migrations table");
}
END_TEST

START_TEST(schema_newer_than_relay)
{
        expect_migrate_hint("bad_newschema",
                            "INSERT INTO outbox.schema_migrations (version, name)"
                            " VALUES (99, 'future')",
                            "outbox", "upgrade outbox-relay", "new-schema",
                            "outbox schema newer than the relay (version 99)");
}
END_TEST

START_TEST(other_schema_name_not_migrated)
{
        expect_migrate_hint("bad_otherschema", "SELECT 1", "elsewhere", "run outbox-relay migrate",
                            "schema-not-migrated",
                            "--schema naming a schema that was never migrated");
}
END_TEST

/* ---- configuration: one line naming the setting, exit 2, nothing contacted ---- */

static int listener(int *port)
{
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(fd, 8), 0);
        ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
        *port = ntohs(sa.sin_port);
        return fd;
}

/* Cases test_cli.c does not cover already. URL "-" leaves the database URL
 * out, BROKERS "-" the brokers; "@" is replaced by the listening URL. */
static const struct {
        const char *env;  /* NAME=value or NULL */
        const char *url;  /* NULL: a good URL to the listener; "-": none */
        const char *flag; /* NULL: none */
        const char *value;
        const char *expect;
} bad_cfg[] = {
    /* malformed database URLs */
    {NULL, "postgres://relay:hunter2@127.0.0.1:99999/app", NULL, NULL, "--database-url"},
    {NULL, "postgresql://relay:hunter2@[::1/app", NULL, NULL, "--database-url"},
    {NULL, "host='127.0.0.1 password=hunter2", NULL, NULL, "--database-url"},
    {NULL, "password=hunter2 = port=5432", NULL, NULL, "--database-url"},
    {NULL, "postgres://relay:hunter2@127.0.0.1/app?nosuchparam=1", NULL, NULL, "--database-url"},
    {NULL, "host=127.0.0.1 port=0 password=hunter2", NULL, NULL, "--database-url"},
    {NULL, "host=127.0.0.1 port=54x2 password=hunter2", NULL, NULL, "--database-url"},
    {"OUTBOX_DATABASE_URL=postgres://u:hunter2@h:-1/db", "-", NULL, NULL, "--database-url"},
    /* unknown or malformed librdkafka properties */
    {NULL, NULL, "-X", "linger.ms=abc", "linger.ms"},
    {NULL, NULL, "-X", "compression.type=zip", "compression.type"},
    {NULL, NULL, "-X", "socket.timeout.ms=-5", "socket.timeout.ms"},
    {NULL, NULL, "-X", "=1", "-X"},
    {NULL, NULL, "-X", "linger.ms", "-X"},
    {NULL, NULL, "-X", "acks=0", "acks"},
    {NULL, NULL, "-X", "request.required.acks=1", "acks"},
    {NULL, NULL, "-X", "transactional.id=relay", "transactional.id"},
    {NULL, NULL, "-X", "bootstrap.servers=127.0.0.1:1", "bootstrap.servers"},
    {NULL, NULL, "-X", "delivery.report.only.error=true", "delivery.report.only.error"},
    {"OUTBOX_RDKAFKA_LINGER_MS=abc", NULL, NULL, NULL, "linger.ms"},
    {"OUTBOX_RDKAFKA_NO_SUCH_PROPERTY=1", NULL, NULL, NULL, "no.such.property"},
    /* negative or absurd numbers */
    {NULL, NULL, "--pipeline-depth", "65", "--pipeline-depth"},
    {NULL, NULL, "--pipeline-depth", "-1", "--pipeline-depth"},
    {NULL, NULL, "--poll-interval-ms", "5", "--poll-interval-ms"},
    {NULL, NULL, "--poll-interval-ms", "99999999999", "--poll-interval-ms"},
    {NULL, NULL, "--shutdown-timeout-ms", "-1", "--shutdown-timeout-ms"},
    {NULL, NULL, "--reconnect-max-ms", "99", "--reconnect-max-ms"},
    {NULL, NULL, "--max-attempts", "0", "--max-attempts"},
    {NULL, NULL, "--max-attempts", "1000001", "--max-attempts"},
    {NULL, NULL, "--batch-size", "100001", "--batch-size"},
    {NULL, NULL, "--batch-size", " 5", "--batch-size"},
    {NULL, NULL, "--batch-size", "5 ", "--batch-size"},
    {NULL, NULL, "--batch-size", "0x10", "--batch-size"},
    {NULL, NULL, "--batch-size", "1e3", "--batch-size"},
    {NULL, NULL, "--retry-base-ms", "0", "--retry-base-ms"},
    {NULL, NULL, "--retry-max-ms", "10", "--retry-max-ms"},
    {"OUTBOX_BATCH_SIZE=-1", NULL, NULL, NULL, "OUTBOX_BATCH_SIZE"},
    {"OUTBOX_POLL_INTERVAL_MS=soon", NULL, NULL, NULL, "OUTBOX_POLL_INTERVAL_MS"},
    /* missing or empty required settings, bad routes */
    {NULL, NULL, "--kafka-brokers", "", "--kafka-brokers"},
    {NULL, "-", NULL, NULL, "--database-url"},
    {"OUTBOX_KAFKA_BROKERS=", NULL, "--schema", "", "--schema"},
    {NULL, NULL, "--instance-id",
     "iiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiii"
     "iiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiii"
     "iiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiii",
     "--instance-id"},
    {NULL, NULL, "--route", "=topic", "route"},
    {NULL, NULL, "--route", "a.*b=topic", "route"},
    {NULL, NULL, "--route", "order.created=bad topic", "route"},
    {"OUTBOX_ROUTES=user.*=users,,oops", NULL, NULL, NULL, "OUTBOX_ROUTES"},
    /* topics rows may not reach, named in the configuration itself */
    {NULL, NULL, "--route", "x=__consumer_offsets", "__consumer_offsets"},
    {NULL, NULL, "--default-topic", "outbox-relay-progress", "progress topic"},
    {"OUTBOX_ALLOWED_TOPICS=orders", NULL, "--route", "a=billing", "--allowed-topics"},
    {NULL, NULL, "--allowed-topics", "orders,bad topic", "--allowed-topics"},
    {NULL, NULL, "--allowed-topics", " , ", "--allowed-topics"},
};

#define N_BAD_CFG (sizeof(bad_cfg) / sizeof(bad_cfg[0]))

/* Runs one bad configuration; returns 1 when it behaved, else 0 with why. */
static int try_bad_config(size_t i, char *why, size_t whysz)
{
        int db_port, kafka_port, db_fd = listener(&db_port), kafka_fd = listener(&kafka_port);
        char url[128], brokers[64], *out = NULL;
        const char *argv[12] = {OUTBOX_RELAY_BIN, "run"}, *env[2] = {bad_cfg[i].env, NULL};
        int n = 2, rc, ok;

        snprintf(url, sizeof(url), "postgres://relay:hunter2@127.0.0.1:%d/app", db_port);
        snprintf(brokers, sizeof(brokers), "127.0.0.1:%d", kafka_port);
        if (!bad_cfg[i].url || strcmp(bad_cfg[i].url, "-")) {
                argv[n++] = "--database-url";
                argv[n++] = bad_cfg[i].url ? bad_cfg[i].url : url;
        }
        if (!bad_cfg[i].flag || strcmp(bad_cfg[i].flag, "--kafka-brokers")) {
                argv[n++] = "--kafka-brokers";
                argv[n++] = brokers;
        }
        if (bad_cfg[i].flag) {
                argv[n++] = bad_cfg[i].flag;
                argv[n++] = bad_cfg[i].value;
        }
        argv[n] = NULL;
        rc = fx_run(argv, bad_cfg[i].env ? env : NULL, &out, 30000);
        ok = rc == 2 && strstr(out, bad_cfg[i].expect) &&
             strchr(out, '\n') == out + strlen(out) - 1 && !strstr(out, "hunter2") &&
             accept(db_fd, NULL, NULL) < 0 && errno == EAGAIN && accept(kafka_fd, NULL, NULL) < 0 &&
             errno == EAGAIN;
        if (!ok)
                snprintf(
                    why, whysz, "%s %s %s: exit %d, output: %.300s",
                    bad_cfg[i].env ? bad_cfg[i].env : "", bad_cfg[i].flag ? bad_cfg[i].flag : "",
                    bad_cfg[i].flag ? bad_cfg[i].value : (bad_cfg[i].url ? bad_cfg[i].url : ""), rc,
                    out);
        free(out);
        close(db_fd);
        close(kafka_fd);
        return ok;
}

START_TEST(bad_configuration_exits_2_before_contacting_anything)
{
        struct fh_result res;
        char why[512] = "", first[512] = "";
        int failed = 0;

        for (size_t i = 0; i < N_BAD_CFG; i++) {
                if (!try_bad_config(i, why, sizeof(why))) {
                        if (!failed++)
                                snprintf(first, sizeof(first), "%s", why);
                }
        }
        fh_result_init(&res, "bad-config",
                       "malformed database URLs, unknown/malformed/forbidden librdkafka "
                       "properties, negative or absurd numbers, missing or empty required "
                       "settings, bad routes (flags and environment)");
        res.committed = res.messages = -1;
        res.faults = (int)N_BAD_CFG;
        snprintf(res.notes, sizeof(res.notes),
                 "%zu of %zu configurations: exit 2, one line naming the setting, password not "
                 "shown, neither PostgreSQL nor Kafka contacted%s%.300s",
                 N_BAD_CFG - (size_t)failed, N_BAD_CFG, failed ? "; first failure: " : "", first);
        fh_report(&res, failed == 0);
        ck_assert_msg(failed == 0, "%d bad configurations misbehaved; first: %s", failed, first);
}
END_TEST

/* Settings read from files (mounted secrets): each must fail like any bad
 * setting, naming the variable or flag and the path, never the content
 * (every file here holds the password). */
static const struct {
        const char *var;  /* environment variable set to the file, or NULL */
        const char *file; /* NULL: a path that does not exist; "" : a directory */
        const char *content;
        const char *flag; /* extra flag (value: the file's path), OUTBOX_DATABASE_URL or NULL */
        const char *expect;
} bad_files[] = {
    {"OUTBOX_DATABASE_URL_FILE", NULL, NULL, NULL, "OUTBOX_DATABASE_URL_FILE"},
    {"OUTBOX_DATABASE_URL_FILE", "empty", "", NULL, "is empty"},
    {"OUTBOX_DATABASE_URL_FILE", "newline", "\n", NULL, "is empty"},
    {"OUTBOX_DATABASE_URL_FILE", "", NULL, NULL, "Is a directory"},
    {NULL, "bad-url", "host=127.0.0.1 password=hunter2 port=x\n", "--database-url-file",
     "--database-url-file"},
    {"OUTBOX_DATABASE_URL_FILE", "url", "host=127.0.0.1 password=hunter2\n", "OUTBOX_DATABASE_URL",
     "both set"},
    {"OUTBOX_RDKAFKA_SASL_PASSWORD_FILE", NULL, NULL, NULL, "OUTBOX_RDKAFKA_SASL_PASSWORD_FILE"},
    {"OUTBOX_RDKAFKA_SECURITY_PROTOCOL_FILE", "proto", "hunter2", NULL, "security.protocol"},
};

#define N_BAD_FILES (sizeof(bad_files) / sizeof(bad_files[0]))

static int try_bad_file(const char *dir, size_t i, char *why, size_t whysz)
{
        int db_port, kafka_port, db_fd = listener(&db_port), kafka_fd = listener(&kafka_port);
        char url[128], brokers[64], path[128], var[192], env_url[160], *out = NULL;
        const char *argv[12] = {OUTBOX_RELAY_BIN, "run"}, *env[3] = {NULL};
        int n = 2, rc, ok, url_by_file = 0;

        snprintf(url, sizeof(url), "postgres://relay:hunter2@127.0.0.1:%d/app", db_port);
        snprintf(brokers, sizeof(brokers), "127.0.0.1:%d", kafka_port);
        if (bad_files[i].file == NULL) {
                snprintf(path, sizeof(path), "%s/missing", dir);
        } else if (bad_files[i].file[0] == '\0') {
                snprintf(path, sizeof(path), "%s", dir);
        } else {
                FILE *f;

                snprintf(path, sizeof(path), "%s/%s", dir, bad_files[i].file);
                f = fopen(path, "w");
                ck_assert_ptr_nonnull(f);
                fputs(bad_files[i].content, f);
                ck_assert_int_eq(fclose(f), 0);
        }
        if (bad_files[i].var != NULL) {
                snprintf(var, sizeof(var), "%s=%s", bad_files[i].var, path);
                env[0] = var;
                url_by_file = strcmp(bad_files[i].var, "OUTBOX_DATABASE_URL_FILE") == 0;
        }
        if (bad_files[i].flag != NULL && strcmp(bad_files[i].flag, "OUTBOX_DATABASE_URL") == 0) {
                snprintf(env_url, sizeof(env_url), "OUTBOX_DATABASE_URL=%s", url);
                env[1] = env_url;
        } else if (bad_files[i].flag != NULL) {
                argv[n++] = bad_files[i].flag;
                argv[n++] = path;
                url_by_file = 1;
        }
        if (!url_by_file) {
                argv[n++] = "--database-url";
                argv[n++] = url;
        }
        argv[n++] = "--kafka-brokers";
        argv[n++] = brokers;
        argv[n] = NULL;
        rc = fx_run(argv, env, &out, 30000);
        ok = rc == 2 && strstr(out, bad_files[i].expect) &&
             strchr(out, '\n') == out + strlen(out) - 1 && !strstr(out, "hunter2") &&
             accept(db_fd, NULL, NULL) < 0 && errno == EAGAIN && accept(kafka_fd, NULL, NULL) < 0 &&
             errno == EAGAIN;
        if (!ok)
                snprintf(why, whysz, "%s %s: exit %d, output: %.300s",
                         bad_files[i].var ? bad_files[i].var : "",
                         bad_files[i].flag ? bad_files[i].flag : "", rc, out);
        free(out);
        close(db_fd);
        close(kafka_fd);
        return ok;
}

START_TEST(bad_secret_files_exit_2_naming_the_file)
{
        struct fh_result res;
        char dir[] = "/tmp/bad-files-XXXXXX", why[512] = "", first[512] = "", rm[64];
        int failed = 0;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        for (size_t i = 0; i < N_BAD_FILES; i++) {
                if (!try_bad_file(dir, i, why, sizeof(why)) && !failed++)
                        snprintf(first, sizeof(first), "%s", why);
        }
        snprintf(rm, sizeof(rm), "rm -rf '%s'", dir);
        ck_assert_int_eq(system(rm), 0);
        fh_result_init(&res, "bad-secret-file",
                       "settings read from files: OUTBOX_DATABASE_URL_FILE missing, empty, only a "
                       "newline, a directory, holding an unparsable URL; both it and "
                       "OUTBOX_DATABASE_URL; OUTBOX_RDKAFKA_<NAME>_FILE missing or holding a value "
                       "librdkafka refuses");
        res.committed = res.messages = -1;
        res.faults = (int)N_BAD_FILES;
        snprintf(res.notes, sizeof(res.notes),
                 "%zu of %zu: exit 2, one line naming the variable or flag and the path, file "
                 "content (a password) not shown, neither PostgreSQL nor Kafka contacted%s%.300s",
                 N_BAD_FILES - (size_t)failed, N_BAD_FILES, failed ? "; first failure: " : "",
                 first);
        fh_report(&res, failed == 0);
        ck_assert_msg(failed == 0, "%d bad files misbehaved; first: %s", failed, first);
}
END_TEST

Suite *test_suite(void)
{
        Suite *s = suite_create("bad_input");
        TCase *rows = tcase_create("rows"), *cfg = tcase_create("configuration");

        tcase_add_unchecked_fixture(rows, suite_setup, suite_teardown);
        tcase_set_timeout(rows, 180);
        tcase_add_test(rows, headers_not_an_object_of_strings);
        tcase_add_test(rows, payload_larger_than_accepted);
        tcase_add_test(rows, topic_names_kafka_rejects);
        tcase_add_test(rows, topics_rows_may_not_reach);
        tcase_add_test(rows, nulls_in_every_nullable_column);
        tcase_add_test(rows, nulls_where_not_null_was_dropped);
        tcase_add_test(rows, invalid_utf8_keys_and_nul_bytes);
        tcase_add_test(rows, database_without_outbox_schema);
        tcase_add_test(rows, schema_at_older_version);
        tcase_add_test(rows, schema_without_version_table);
        tcase_add_test(rows, schema_newer_than_relay);
        tcase_add_test(rows, other_schema_name_not_migrated);
        tcase_set_timeout(cfg, 120);
        tcase_add_test(cfg, bad_configuration_exits_2_before_contacting_anything);
        tcase_add_test(cfg, bad_secret_files_exit_2_naming_the_file);
        suite_add_tcase(s, rows);
        suite_add_tcase(s, cfg);
        return s;
}
