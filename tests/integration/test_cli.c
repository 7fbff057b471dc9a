/* Integration tests of the outbox-relay command line: exit codes, one-line
 * configuration errors that contact nothing, migrate and replay. */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fault_harness.h"
#include "fixture.h"
#include "migrate.h"
#include "runner.h"

static struct fx_pg *pg;

static void suite_setup(void)
{
        pg = fx_pg_start();
}

static void suite_teardown(void)
{
        fx_pg_stop(pg);
}

/* Runs outbox-relay with up to 12 arguments; returns the exit code. */
static int relay_cmd(char **out, const char *const env[], const char *const args[])
{
        const char *argv[16] = {OUTBOX_RELAY_BIN};
        int i;

        for (i = 0; args[i] != NULL && i < 14; i++)
                argv[i + 1] = args[i];
        argv[i + 1] = NULL;
        return fx_run(argv, env, out, 30000);
}

START_TEST(version_and_help)
{
        char *out = NULL;

        ck_assert_int_eq(relay_cmd(&out, NULL, (const char *[]){"--version", NULL}), 0);
        ck_assert_msg(strncmp(out, "outbox-relay ", 13) == 0, "%s", out);
        free(out);
        ck_assert_int_eq(relay_cmd(&out, NULL, (const char *[]){"--help", NULL}), 0);
        ck_assert_ptr_nonnull(strstr(out, "OUTBOX_DATABASE_URL"));
        ck_assert_ptr_nonnull(strstr(out, "OUTBOX_KAFKA_BROKERS"));
        ck_assert_ptr_nonnull(strstr(out, "--batch-size"));
        ck_assert_ptr_nonnull(strstr(out, "replay"));
        ck_assert_ptr_nonnull(strstr(out, "`outbox-relay COMMAND --help`"));
        free(out);
        ck_assert_int_eq(relay_cmd(&out, NULL, (const char *[]){"frobnicate", NULL}), 2);
        ck_assert_ptr_nonnull(strstr(out, "frobnicate"));
        free(out);
}
END_TEST

static const struct {
        const char *cmd, *own, *other; /* an option of its own, one of another command's */
} command_help[] = {
    {"run", "--batch-size", "--grant-writer"}, {"migrate", "--grant-writer", "--batch-size"},
    {"replay", "--from-id", "--limit"},        {"status", "--json", "--from-id"},
    {"dlq", "--limit", "--kafka-brokers"},
};

/* Every command answers --help and -h with its own usage and options, on
 * stdout with exit 0, even beside a bad setting in the environment and on
 * the command line, with no database URL; "-h" as a value or after "--" is
 * no help request. */
START_TEST(each_command_has_its_help)
{
        const char *cmd = command_help[_i].cmd;
        const char *env[] = {"OUTBOX_BATCH_SIZE=abc", NULL};
        const char *flags[] = {"--help", "-h"};
        char *out = NULL, want[64];

        snprintf(want, sizeof(want), "usage: outbox-relay %s ", cmd);
        for (size_t f = 0; f < 2; f++) {
                ck_assert_int_eq(
                    relay_cmd(&out, env, (const char *[]){cmd, "--limit", "0", flags[f], NULL}), 0);
                ck_assert_msg(strncmp(out, want, strlen(want)) == 0, "%s %s: %s", cmd, flags[f],
                              out);
                ck_assert_msg(strstr(out, command_help[_i].own) != NULL, "%s", out);
                ck_assert_msg(strstr(out, "--database-url") != NULL, "%s", out);
                ck_assert_msg(strstr(out, command_help[_i].other) == NULL, "%s", out);
                free(out);
        }
        ck_assert_int_eq(relay_cmd(&out, NULL, (const char *[]){cmd, "--key", "-h", NULL}), 2);
        ck_assert_msg(strstr(out, "missing required setting --database-url") != NULL, "%s", out);
        free(out);
        ck_assert_int_eq(relay_cmd(&out, NULL, (const char *[]){cmd, "--", "--help", NULL}), 2);
        ck_assert_msg(strstr(out, "usage:") == NULL, "%s", out);
        free(out);
}
END_TEST

/* A listening socket that must see no connection attempt. */
static int listener(int *port)
{
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        ck_assert_int_eq(listen(fd, 8), 0);
        ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
        *port = ntohs(a.sin_port);
        return fd;
}

static const struct {
        const char *flag, *value, *expect;
} bad_settings[] = {
    {"--batch-size", "abc", "--batch-size"},
    {"--batch-size", "-5", "--batch-size"},
    {"--batch-size", "99999999999999999999", "--batch-size"},
    {"--pipeline-depth", "0", "--pipeline-depth"},
    {"--max-attempts", "12x", "--max-attempts"},
    {"--log-level", "chatty", "--log-level"},
    {"--schema", "Robert'); DROP", "--schema"},
    {"--route", "no-equals-sign", "--route"},
    {"--default-topic", "bad topic!", "--default-topic"},
    {"-X", "no.such.property=1", "no.such.property"},
    {"-X", "enable.idempotence=false", "enable.idempotence"},
    {"--retry-base-ms", "5000000", "--retry"},
    {"--no-such-flag", "1", "--no-such-flag"},
    {"--batch", "5", "--batch"}, /* a prefix of --batch-size: not taken */
    {"--http-listen", "::1:9400", "--http-listen"},
    {"--http-listen", "[::1]", "--http-listen"},
    {"--envelope", "cloudevent", "--envelope"},
    {"--cloudevents-source", "/orders db", "--cloudevents-source"},
    {"--dead-letter-topic", "outbox-relay-progress", "--dead-letter-topic"},
};

/* Each bad setting: one line naming it, exit 2, and neither the database
 * nor Kafka was contacted. */
START_TEST(bad_setting_exits_2_before_contacting_anything)
{
        int db_port, kafka_port;
        int db_fd = listener(&db_port), kafka_fd = listener(&kafka_port);
        char url[128], brokers[64], *out = NULL;
        const char *args[] = {"run",
                              "--database-url",
                              url,
                              "--kafka-brokers",
                              brokers,
                              bad_settings[_i].flag,
                              bad_settings[_i].value,
                              NULL};

        snprintf(url, sizeof(url), "postgres://relay:hunter2@127.0.0.1:%d/app", db_port);
        snprintf(brokers, sizeof(brokers), "127.0.0.1:%d", kafka_port);
        ck_assert_int_eq(relay_cmd(&out, NULL, args), 2);
        ck_assert_msg(strstr(out, bad_settings[_i].expect) != NULL, "output: %s", out);
        ck_assert_msg(strchr(out, '\n') == out + strlen(out) - 1, "not one line: %s", out);
        ck_assert_ptr_null(strstr(out, "hunter2"));
        ck_assert_int_lt(accept(db_fd, NULL, NULL), 0);
        ck_assert_int_eq(errno, EAGAIN);
        ck_assert_int_lt(accept(kafka_fd, NULL, NULL), 0);
        ck_assert_int_eq(errno, EAGAIN);
        free(out);
        close(db_fd);
        close(kafka_fd);
}
END_TEST

START_TEST(missing_and_malformed_required_settings)
{
        char *out = NULL;
        const char *env[] = {"OUTBOX_KAFKA_BROKERS=127.0.0.1:1", NULL};

        ck_assert_int_eq(relay_cmd(&out, NULL, (const char *[]){"run", NULL}), 2);
        ck_assert_ptr_nonnull(strstr(out, "--database-url"));
        free(out);
        ck_assert_int_eq(relay_cmd(&out, env,
                                   (const char *[]){"run", "--database-url",
                                                    "postgres://u:s3cr3t@host:notaport/db", NULL}),
                         2);
        ck_assert_ptr_nonnull(strstr(out, "--database-url"));
        ck_assert_ptr_null(strstr(out, "s3cr3t"));
        free(out);
        /* The environment alone configures it too. */
        ck_assert_int_eq(relay_cmd(&out,
                                   (const char *[]){"OUTBOX_DATABASE_URL=host=127.0.0.1",
                                                    "OUTBOX_BATCH_SIZE=0", NULL},
                                   (const char *[]){"migrate", NULL}),
                         2);
        ck_assert_ptr_nonnull(strstr(out, "OUTBOX_BATCH_SIZE"));
        free(out);
}
END_TEST

START_TEST(run_without_schema_says_migrate)
{
        char *ci = fx_pg_create_db(pg, "noschema");
        char *out = NULL;

        ck_assert_int_eq(relay_cmd(&out, NULL,
                                   (const char *[]){"run", "--database-url", ci, "--kafka-brokers",
                                                    "127.0.0.1:1", NULL}),
                         1);
        ck_assert_msg(strstr(out, "outbox-relay migrate") != NULL, "output: %s", out);
        free(out);
        free(ci);
}
END_TEST

START_TEST(migrate_twice_then_replay)
{
        char *ci = fx_pg_create_db(pg, "cli_replay");
        char *out = NULL, want[128];
        PGconn *c;

        ck_assert_int_eq(
            relay_cmd(&out, NULL, (const char *[]){"migrate", "--database-url", ci, NULL}), 0);
        snprintf(want, sizeof(want), "applied %d migration(s); schema outbox is at version %d",
                 migrate_file_count, migrate_latest_version());
        ck_assert_msg(strstr(out, want) != NULL, "migrate printed: %s", out);
        free(out);
        ck_assert_int_eq(
            relay_cmd(&out, NULL, (const char *[]){"migrate", "--database-url", ci, NULL}), 0);
        ck_assert_ptr_nonnull(strstr(out, "up to date"));
        free(out);

        c = fx_db_connect(ci);
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) "
                  "SELECT 't', 'k' || (g %% 3), '{}' FROM generate_series(1, 9) g");
        fx_sql(c, "UPDATE outbox.events SET status = 'sent', sent_at = now()");
        ck_assert_int_eq(relay_cmd(&out, NULL,
                                   (const char *[]){"replay", "--database-url", ci, "--key", "k1",
                                                    "--dry-run", NULL}),
                         0);
        ck_assert_msg(strstr(out, "would replay 3 row") != NULL, "output: %s", out);
        free(out);
        ck_assert_int_eq(
            fx_sql_int(c, "SELECT count(*) FROM outbox.events WHERE status = 'pending'"), 0);
        ck_assert_int_eq(relay_cmd(&out, NULL,
                                   (const char *[]){"replay", "--database-url", ci, "--from-id",
                                                    "2", "--to-id", "5", NULL}),
                         0);
        ck_assert_msg(strstr(out, "replayed 4 row") != NULL, "output: %s", out);
        free(out);
        ck_assert_int_eq(
            fx_sql_int(c, "SELECT count(*) FROM outbox.events WHERE status = 'pending'"), 4);
        ck_assert_int_eq(
            relay_cmd(&out, NULL, (const char *[]){"replay", "--database-url", ci, NULL}), 1);
        ck_assert_msg(strstr(out, "at least one filter") != NULL, "output: %s", out);
        free(out);
        PQfinish(c);
        free(ci);
}
END_TEST

/* The README's configuration table is generated from the same table as
 * --help; this fails when someone changes one without regenerating. */
START_TEST(readme_configuration_table_is_current)
{
        const char *begin = "<!-- config-table:begin -->\n", *end = "<!-- config-table:end -->";
        char *out = NULL, *readme = NULL, *a, *b;
        size_t len = 0;
        FILE *f = fopen(OUTBOX_SOURCE_DIR "/README.md", "r");

        ck_assert_ptr_nonnull(f);
        ck_assert_int_ge(getdelim(&readme, &len, '\0', f), 1);
        fclose(f);
        ck_assert_int_eq(relay_cmd(&out, NULL, (const char *[]){"--config-markdown", NULL}), 0);
        a = strstr(readme, begin);
        b = strstr(readme, end);
        ck_assert(a != NULL && b != NULL && b > a);
        a += strlen(begin);
        *b = '\0';
        ck_assert_msg(strcmp(a, out) == 0,
                      "README.md configuration table is stale: regenerate it from "
                      "outbox-relay --config-markdown");
        free(out);
        free(readme);
}
END_TEST

START_TEST(status_and_dead_letters)
{
        char *ci = fx_pg_create_db(pg, "cli_status");
        char *out = NULL, conninfo[512];
        PGconn *c, *fake;

        fx_migrate(ci, NULL);
        c = fx_db_connect(ci);
        fx_sql(c,
               "INSERT INTO outbox.events (topic, key, payload, created_at) "
               "SELECT 't', 'k', '{}', now() - interval '90 seconds' FROM generate_series(1, 3)");
        fx_sql(
            c,
            "INSERT INTO outbox.dead_letters (id, event_id, topic, key, headers, created_at,"
            " attempts, reason) VALUES"
            " (100, gen_random_uuid(), 'orders', 'o1', '{}', now(), 10, 'Broker: Message size too "
            "large'),"
            " (101, gen_random_uuid(), 'users', 'u1', '{}', now(), 10, 'no route for event_type "
            "\"x\"'),"
            " (102, gen_random_uuid(), 'orders', 'o2', '{}', now(), 10, 'Local: Unknown topic')");

        /* A session that looks like a leading relay: named like one and
         * holding this schema's leader lock. */
        snprintf(conninfo, sizeof(conninfo), "%s application_name=outbox-relay/pod-a", ci);
        fake = fx_db_connect(conninfo);
        fx_sql(fake, "SELECT pg_advisory_lock(%d, hashtext('outbox'))", 0x6f627278);
        ck_assert_int_eq(
            relay_cmd(&out, NULL, (const char *[]){"status", "--database-url", ci, NULL}), 0);
        ck_assert_msg(strstr(out, "pending:            3") != NULL, "%s", out);
        ck_assert_msg(strstr(out, "dead letters:       3") != NULL, "%s", out);
        ck_assert_msg(strstr(out, "pod-a (leader") != NULL, "%s", out);
        free(out);
        ck_assert_int_eq(
            relay_cmd(&out, NULL, (const char *[]){"status", "--database-url", ci, "--json", NULL}),
            0);
        ck_assert_msg(strstr(out, "\"role\": \"leader\"") != NULL, "%s", out);
        ck_assert_msg(strstr(out, "\"pending\": 3") != NULL, "%s", out);
        ck_assert_msg(strstr(out, "\"oldest_pending_age_seconds\": 9") != NULL, "%s", out);
        free(out);
        PQfinish(fake);

        ck_assert_int_eq(relay_cmd(&out, NULL,
                                   (const char *[]){"dlq", "list", "--database-url", ci, "--topic",
                                                    "orders", "--json", NULL}),
                         0);
        ck_assert_msg(strstr(out, "\"id\": 100") != NULL && strstr(out, "\"id\": 102") != NULL &&
                          strstr(out, "\"id\": 101") == NULL,
                      "%s", out);
        ck_assert_ptr_nonnull(strstr(out, "Message size too large"));
        free(out);
        ck_assert_int_eq(
            relay_cmd(&out, NULL, (const char *[]){"dlq", "requeue", "--database-url", ci, NULL}),
            2);
        ck_assert_ptr_nonnull(strstr(out, "--all"));
        free(out);
        ck_assert_int_eq(relay_cmd(&out, NULL,
                                   (const char *[]){"dlq", "requeue", "--database-url", ci, "--id",
                                                    "101", NULL}),
                         0);
        ck_assert_msg(strstr(out, "requeued 1 dead letter") != NULL, "%s", out);
        free(out);
        ck_assert_int_eq(fx_sql_int(c, "SELECT count(*) FROM outbox.events WHERE id = 101 AND"
                                       " status = 'pending'"),
                         1);
        ck_assert_int_eq(
            relay_cmd(&out, NULL,
                      (const char *[]){"dlq", "requeue", "--database-url", ci, "--all", NULL}),
            0);
        ck_assert_msg(strstr(out, "requeued 2 dead letter") != NULL, "%s", out);
        free(out);
        ck_assert_int_eq(fx_sql_int(c, "SELECT count(*) FROM outbox.dead_letters"), 0);
        PQfinish(c);
        free(ci);
}
END_TEST

/* Count of byte c in s. */
static int count_byte(const char *s, char c)
{
        int n = 0;

        for (; *s != '\0'; s++)
                n += *s == c;
        return n;
}

/* Row text is written by any writer: dlq list and status show it with
 * control characters escaped, and status names the leader by the lock it
 * holds, not by a name any session can take. */
START_TEST(operator_output_is_escaped)
{
        char *ci = fx_pg_create_db(pg, "cli_escape");
        char *out = NULL, conninfo[512];
        PGconn *c, *named, *holder;
        long long holder_pid;

        fx_migrate(ci, NULL);
        c = fx_db_connect(ci);
        fx_sql(c, "INSERT INTO outbox.dead_letters (id, event_id, topic, key, event_type, headers,"
                  " created_at, attempts, reason) VALUES (7, gen_random_uuid(), 'orders',"
                  " E'k\\033[31m', E'type\\033]0;owned\\007', '{}', now(), 10,"
                  " E'boom\\033[2J\\r\\nfake row\\302\\233' || chr(8238))");

        ck_assert_int_eq(
            relay_cmd(&out, NULL, (const char *[]){"dlq", "list", "--database-url", ci, NULL}), 0);
        ck_assert_msg(strchr(out, '\033') == NULL && strchr(out, '\r') == NULL, "%s", out);
        ck_assert_msg(strstr(out, "\\x1b[2J\\r\\nfake row\\u009b\\u202e") != NULL, "%s", out);
        ck_assert_msg(strstr(out, "k\\x1b[31m") != NULL, "%s", out);
        ck_assert_int_eq(count_byte(out, '\n'), 2); /* the header and one row */
        free(out);
        ck_assert_int_eq(
            relay_cmd(&out, NULL,
                      (const char *[]){"dlq", "list", "--database-url", ci, "--json", NULL}),
            0);
        ck_assert_msg(strchr(out, '\033') == NULL && strstr(out, "\\u009B\\u202E") != NULL, "%s",
                      out);
        ck_assert_msg(strstr(out, "type\\u001B]0;owned\\u0007") != NULL, "%s", out);
        free(out);

        /* A session named like a relay holds no lock; the lock is held by a
         * session of a role whose name has an escape sequence in it. */
        snprintf(conninfo, sizeof(conninfo), "%s application_name=outbox-relay/pod-fake", ci);
        named = fx_db_connect(conninfo);
        fx_sql(c, "CREATE ROLE \"evil\033[2J\" LOGIN");
        snprintf(conninfo, sizeof(conninfo), "%s user='evil\033[2J' application_name=sneaky", ci);
        holder = fx_db_connect(conninfo);
        fx_sql(holder, "SELECT pg_advisory_lock(%d, hashtext('outbox'))", 0x6f627278);
        holder_pid = fx_sql_int(holder, "SELECT pg_backend_pid()");
        ck_assert_int_eq(
            relay_cmd(&out, NULL, (const char *[]){"status", "--database-url", ci, NULL}), 0);
        ck_assert_msg(strchr(out, '\033') == NULL, "%s", out);
        {
                char want[128];

                snprintf(want, sizeof(want),
                         "leader lock:        held by pid %lld (role evil\\x1b[2J,", holder_pid);
                ck_assert_msg(strstr(out, want) != NULL, "%s", out);
        }
        ck_assert_msg(strstr(out, "application_name \"sneaky\"") != NULL, "%s", out);
        ck_assert_msg(strstr(out, "pod-fake (standby") != NULL, "%s", out);
        free(out);
        ck_assert_int_eq(
            relay_cmd(&out, NULL, (const char *[]){"status", "--database-url", ci, "--json", NULL}),
            0);
        ck_assert_msg(strchr(out, '\033') == NULL && strstr(out, "\"leader_lock\": {") != NULL,
                      "%s", out);
        free(out);
        PQfinish(holder);
        ck_assert_int_eq(
            relay_cmd(&out, NULL, (const char *[]){"status", "--database-url", ci, NULL}), 0);
        ck_assert_msg(strstr(out, "leader lock:        not held") != NULL, "%s", out);
        free(out);
        PQfinish(named);
        PQfinish(c);
        free(ci);
        /* Reached only when every assertion above held. */
        {
                struct fh_result res;

                fh_result_init(&res, "control-chars",
                               "ESC sequences, CR/LF, C1 CSI and U+202E in a dead letter's key, "
                               "event_type and reason; a role name with ESC holding the leader "
                               "lock; a session named like a relay holding none");
                res.committed = res.messages = -1;
                res.dead_letters = 1;
                res.faults = 4;
                snprintf(res.notes, sizeof(res.notes),
                         "dlq list and status show \\x1b, \\r, \\n, \\u009b, \\u202e "
                         "(--json: \\u001B ...), no raw control byte; status names the lock "
                         "holder, the named session is a standby");
                fh_report(&res, 1);
        }
}
END_TEST

/* migrate waits for a lock on an outbox's tables (a long transaction that
 * read events) no longer than --lock-timeout-ms: it waited without end,
 * every writer queued behind its DDL, and with --outboxes-file the later
 * outboxes waited too. The error names the outbox, the file, the bound
 * and the holder; the next outbox is migrated all the same. */
START_TEST(migrate_does_not_wait_on_a_locked_outbox)
{
        char *ci = fx_pg_create_db(pg, "cli_locked");
        char dir[64], json[1024], want[128], *path;
        PGconn *c, *holder;
        char *out = NULL;
        int pid;

        ck_assert_int_eq(
            relay_cmd(&out, NULL, (const char *[]){"migrate", "--database-url", ci, NULL}), 0);
        free(out);
        c = fx_db_connect(ci);
        /* Back to version 8: 009 begins by replacing a trigger of events. */
        fx_sql(c, "DELETE FROM outbox.schema_migrations WHERE version >= 9");
        holder = fx_db_connect(ci);
        fx_sql(holder, "BEGIN; SELECT count(*) FROM outbox.events");
        pid = (int)fx_sql_int(holder, "SELECT pg_backend_pid()");
        snprintf(json, sizeof(json),
                 "[{\"name\": \"locked\", \"database-url\": \"%s\"},"
                 " {\"name\": \"free\", \"database-url\": \"%s\", \"schema\": \"other\"}]",
                 ci, ci);
        fx_tmpdir_new(dir, sizeof(dir), "cli-locked");
        path = fx_write_secret(dir, "outboxes.json", json);

        ck_assert_int_eq(relay_cmd(&out, NULL,
                                   (const char *[]){"migrate", "--outboxes-file", path,
                                                    "--lock-timeout-ms", "300", NULL}),
                         1);
        ck_assert_msg(strstr(out, "outbox \"locked\": migration 009_quiet_marks.sql waited longer "
                                  "than lock_timeout (300ms)") != NULL,
                      "output: %s", out);
        snprintf(want, sizeof(want), "pid %d (role ", pid);
        ck_assert_msg(strstr(out, want) != NULL, "names no holder: %s", out);
        ck_assert_msg(strstr(out, "AccessShareLock on events") != NULL, "output: %s", out);
        free(out);
        /* Nothing of 009 applied; the other outbox migrated meanwhile. */
        ck_assert_int_eq(fx_sql_int(c, "SELECT max(version) FROM outbox.schema_migrations"), 8);
        ck_assert_int_eq(fx_sql_int(c, "SELECT max(version) FROM other.schema_migrations"),
                         migrate_latest_version());
        PQfinish(holder);
        PQfinish(c);
        fx_tmpdir_remove(dir);
        free(path);
        free(ci);
}
END_TEST

/* Two outboxes of one process on one database and schema, reached by
 * two roads (TCP to 127.0.0.1, the server's Unix socket), which the file's
 * check cannot tell apart without connecting: the second stays a standby
 * of the first's leader lock for good, which is said as an error naming
 * the cause, not logged as another relay leading. */
START_TEST(outboxes_on_one_database_by_two_roads_are_named)
{
        char *ci = fx_pg_create_db(pg, "cli_twin"), *sock, *log = NULL;
        char dir[64], json[2048], *path;
        const char *args[] = {"--outboxes-file", NULL, "--leader-poll-ms", "100", NULL};
        struct fx_relay *r;
        PGconn *c;
        int named = 0;
        int64_t deadline;
        char *out = NULL;

        ck_assert_int_eq(
            relay_cmd(&out, NULL, (const char *[]){"migrate", "--database-url", ci, NULL}), 0);
        free(out);
        c = fx_db_connect(ci);
        {
                PGresult *res = PQexec(c, "SELECT split_part(current_setting("
                                          "'unix_socket_directories'), ',', 1)");

                ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
                sock = strdup(PQgetvalue(res, 0, 0));
                PQclear(res);
                ck_assert_ptr_nonnull(sock);
        }
        snprintf(json, sizeof(json),
                 "[{\"name\": \"tcp\", \"database-url\": \"%s\"},"
                 " {\"name\": \"socket\", \"database-url\": \"%s host=%s\"}]",
                 ci, ci, sock);
        fx_tmpdir_new(dir, sizeof(dir), "cli-twin");
        args[1] = path = fx_write_secret(dir, "outboxes.json", json);
        r = fx_relay_start(NULL, "127.0.0.1:1", args);
        for (deadline = fx_now_ms() + 20000; !named && fx_now_ms() < deadline;) {
                free(log);
                log = fx_relay_log(r);
                named = strstr(log, "held by a session of this same instance") != NULL;
                if (!named)
                        usleep(100 * 1000);
        }
        ck_assert_msg(named, "log: %s", log);
        ck_assert_msg(strstr(log, "\"level\":\"error\",\"msg\":\"the leader lock is held by a "
                                  "session of this same instance") != NULL,
                      "log: %s", log);
        free(log);
        fx_relay_free(r);
        PQfinish(c);
        fx_tmpdir_remove(dir);
        free(path);
        free(sock);
        free(ci);
}
END_TEST

Suite *test_suite(void)
{
        Suite *s = suite_create("cli");
        TCase *offline = tcase_create("offline"), *db = tcase_create("database");

        tcase_add_test(offline, version_and_help);
        tcase_add_loop_test(offline, each_command_has_its_help, 0,
                            (int)(sizeof(command_help) / sizeof(command_help[0])));
        tcase_add_loop_test(offline, bad_setting_exits_2_before_contacting_anything, 0,
                            (int)(sizeof(bad_settings) / sizeof(bad_settings[0])));
        tcase_add_test(offline, missing_and_malformed_required_settings);
        tcase_add_test(offline, readme_configuration_table_is_current);
        tcase_add_unchecked_fixture(db, suite_setup, suite_teardown);
        tcase_set_timeout(db, 120);
        tcase_add_test(db, run_without_schema_says_migrate);
        tcase_add_test(db, migrate_twice_then_replay);
        tcase_add_test(db, status_and_dead_letters);
        tcase_add_test(db, operator_output_is_escaped);
        tcase_add_test(db, migrate_does_not_wait_on_a_locked_outbox);
        tcase_add_test(db, outboxes_on_one_database_by_two_roads_are_named);
        suite_add_tcase(s, offline);
        suite_add_tcase(s, db);
        return s;
}
