/* Several outboxes in one relay process (--outboxes-file): two schemas of
 * one database and a database of a second PostgreSQL, each outbox to its
 * own topic. Nothing lost and per-key order kept in each; one database
 * stopped while the others keep flowing; kill -9 mid-stream; the outbox
 * label on the metrics and in the log; one transactional id per outbox;
 * migrate and status over every outbox; the file's errors. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "outboxes_world.h"
#include "runner.h"

/* Rows of every outbox reach their own topics; metrics carry the outbox
 * label on every series; the log names the outbox in each relay line. */
START_TEST(three_outboxes_two_databases_two_schemas_flow)
{
        const char *debug[] = {"--log-level", "debug", NULL};
        struct world w;
        int port = fx_free_port();
        struct fx_relay *r;
        char *body = NULL, series[128];

        world_new(&w, "flow", NULL);
        for (int i = 0; i < N_OB; i++)
                insert(&w.ob[i], 300);
        r = start(&w, port, debug);
        for (int i = 0; i < N_OB; i++) {
                insert(&w.ob[i], 200 + 50 * i);
                ck_assert_int_eq(wait_sent(&w.ob[i], 500 + 50 * i, 30000), 500 + 50 * i);
        }
        for (int i = 0; i < N_OB; i++)
                check(&w.ob[i]);
        ck_assert_int_eq(fx_http_get(port, "/metrics", &body), 200);
        for (int i = 0; i < N_OB; i++) {
                snprintf(series, sizeof(series),
                         "outbox_relay_messages_published_total{outbox=\"%s\",topic=\"%s\"}",
                         w.ob[i].name, w.ob[i].topic);
                ck_assert_msg(fx_metric(body, series) == 500 + 50 * i, "%s is %g", series,
                              fx_metric(body, series));
                snprintf(series, sizeof(series), "outbox_relay_leader{outbox=\"%s\"}",
                         w.ob[i].name);
                ck_assert_msg(fx_metric(body, series) == 1, "%s", series);
        }
        /* Every sample line is labelled, and each family is declared once. */
        for (const char *line = body; *line != '\0'; line = strchr(line, '\n') + 1) {
                ck_assert_msg(line[0] == '#' || strstr(line, "{outbox=\"") != NULL,
                              "a series without the outbox label: %.80s", line);
                if (strchr(line, '\n') == NULL)
                        break;
        }
        {
                const char *first = strstr(body, "# TYPE outbox_relay_leader ");

                ck_assert_ptr_nonnull(first);
                ck_assert_ptr_null(strstr(first + 1, "# TYPE outbox_relay_leader "));
        }
        free(body);
        ck_assert_int_eq(fx_http_get(port, "/readyz", &body), 200);
        free(body);
        ck_assert_int_eq(fx_http_get(port, "/healthz", &body), 200);
        free(body);
        for (int i = 0; i < N_OB; i++) {
                snprintf(series, sizeof(series),
                         "\"msg\":\"connected to the database\",\"outbox\":\"%s\"", w.ob[i].name);
                ck_assert_msg(log_has(r, series), "no line %s", series);
        }
        fh_relay_stop(r, 30000);
        /* Three relay threads and their librdkafka threads wrote to one
         * stream at debug level: every line whole, none torn or mixed. */
        {
                char *log = fx_relay_log(r), *line, *save = NULL;
                int lines = 0;

                ck_assert_ptr_nonnull(log);
                for (line = strtok_r(log, "\n", &save); line != NULL;
                     line = strtok_r(NULL, "\n", &save), lines++) {
                        json_t *v = json_loads(line, 0, NULL);

                        ck_assert_msg(json_is_object(v), "a torn log line: %.200s", line);
                        json_decref(v);
                }
                ck_assert_int_gt(lines, 20);
                free(log);
        }
        fx_relay_free(r);
        world_free(&w);
}
END_TEST

/* pg2 (outbox c) stopped: the rows of a and b inserted during the stop
 * arrive during the stop, /readyz names c; then c resumes, nothing lost. */
START_TEST(one_database_stopped_the_others_keep_flowing)
{
        struct world w;
        int port = fx_free_port();
        struct fx_relay *r;
        char *body = NULL;
        int64_t stopped_at;

        world_new(&w, "stop", NULL);
        r = start(&w, port, NULL);
        for (int i = 0; i < N_OB; i++) {
                insert(&w.ob[i], 100);
                ck_assert_int_eq(wait_sent(&w.ob[i], 100, 30000), 100);
        }
        insert(&w.ob[2], 50); /* pending or in flight when its database goes */
        fx_pg_stop_server(pg2);
        stopped_at = fx_now_ms();
        for (int round = 1; round <= 3; round++) {
                for (int i = 0; i < 2; i++) {
                        insert(&w.ob[i], 100);
                        ck_assert_int_eq(wait_sent(&w.ob[i], 100 + 100 * round, 20000),
                                         100 + 100 * round);
                }
        }
        /* Said by /readyz: c alone is not ready. */
        for (int64_t until = fx_now_ms() + 20000; fx_now_ms() < until; usleep(100 * 1000)) {
                free(body);
                body = NULL;
                if (fx_http_get(port, "/readyz", &body) == 503 && body != NULL &&
                    strstr(body, "outbox c:") != NULL)
                        break;
        }
        ck_assert_msg(body != NULL && strstr(body, "outbox c:") != NULL &&
                          strstr(body, "outbox a:") == NULL && strstr(body, "outbox b:") == NULL,
                      "readyz: %s", body != NULL ? body : "(none)");
        free(body);
        body = NULL;
        /* The fault lasts 10 s (what the issue asks), not a synchronisation. */
        while (fx_now_ms() < stopped_at + 10000)
                usleep(100 * 1000);
        fx_pg_start_server(pg2);
        PQfinish(w.ob[2].c);
        w.ob[2].c = fx_db_connect(w.ob[2].ci);
        insert(&w.ob[2], 100);
        ck_assert_int_eq(wait_sent(&w.ob[2], 250, 60000), 250);
        /* c's rows in flight at the stop may be published twice. */
        for (int i = 0; i < N_OB; i++)
                check_read(&w.ob[i], i == 2);
        fh_relay_stop(r, 30000);
        fx_relay_free(r);
        world_free(&w);
}
END_TEST

/* kill -9 of the process while every outbox streams, then a new process:
 * every row of every outbox published, per-key order kept. */
START_TEST(kill_9_mid_stream_nothing_lost)
{
        struct world w;
        struct fx_relay *r;
        long long before;

        world_new(&w, "kill", NULL);
        r = start(&w, 0, NULL);
        for (int round = 0; round < 20; round++)
                for (int i = 0; i < N_OB; i++)
                        insert(&w.ob[i], 25);
        /* Mid-stream: some rows of each outbox sent, more coming. */
        for (int i = 0; i < N_OB; i++)
                ck_assert_int_ge(fx_wait_sql(w.ob[i].c, 1, 20000,
                                             "SELECT (count(*) > 0)::int FROM %s.events"
                                             " WHERE status = 'sent'",
                                             w.ob[i].schema),
                                 1);
        for (int i = 0; i < N_OB; i++)
                insert(&w.ob[i], 200);
        fx_relay_kill(r, SIGKILL);
        ck_assert_int_eq(fx_relay_wait(r, 10000), 128 + SIGKILL);
        fx_relay_free(r);
        before = fx_sql_int(w.ob[0].c, "SELECT count(*) FROM outbox.events WHERE status = 'sent'");
        for (int i = 0; i < N_OB; i++)
                insert(&w.ob[i], 100);
        r = start(&w, 0, NULL);
        for (int i = 0; i < N_OB; i++)
                ck_assert_int_eq(wait_sent(&w.ob[i], 800, 60000), 800);
        for (int i = 0; i < N_OB; i++)
                check_read(&w.ob[i], 1);
        ck_assert_int_lt(before, 800); /* the kill came before the end */
        fh_relay_stop(r, 30000);
        fx_relay_free(r);
        world_free(&w);
}
END_TEST

/* --exactly-once in every outbox: each producer has a transactional id of
 * its own (outbox-relay.<name>), which keys its progress records. */
START_TEST(exactly_once_one_transactional_id_per_outbox)
{
        struct world w;
        struct fx_relay *r;
        struct fx_msg *msgs = NULL;
        size_t n;
        int found[N_OB] = {0};

        world_new(&w, "eos", ", \"exactly-once\": true");
        /* The mock cluster cannot create it (no controller to ask). */
        ck_assert_int_eq(fx_kafka_command(kafka, "topic outbox-relay-progress 1"), 0);
        r = start(&w, 0, NULL);
        for (int i = 0; i < N_OB; i++) {
                insert(&w.ob[i], 100);
                ck_assert_msg(wait_sent(&w.ob[i], 100, 30000) == 100, "outbox %s: %s", w.ob[i].name,
                              fh_relay_log_tail(r));
        }
        for (int i = 0; i < N_OB; i++)
                check(&w.ob[i]);
        n = fx_consume(BROKERS, "outbox-relay-progress", 1000, 3000, &msgs);
        for (size_t i = 0; i < n; i++)
                for (int k = 0; k < N_OB; k++) {
                        char want[64];

                        snprintf(want, sizeof(want), "outbox-relay.%s", w.ob[k].name);
                        if (msgs[i].key != NULL && msgs[i].key_len == strlen(want) &&
                            memcmp(msgs[i].key, want, msgs[i].key_len) == 0)
                                found[k]++;
                }
        for (int k = 0; k < N_OB; k++)
                ck_assert_msg(found[k] > 0, "no progress record of outbox-relay.%s in %zu",
                              w.ob[k].name, n);
        fx_msgs_free(msgs, n);
        fh_relay_stop(r, 30000);
        fx_relay_free(r);
        world_free(&w);
}
END_TEST

/* migrate and status go through every outbox of the file (status also
 * when one database is down); a bad file is refused with exit code 2. */
START_TEST(status_and_migrate_cover_every_outbox)
{
        char dir[128], json[1024], *ci_a, *ci_c, *url_a, *url_c, *file, *bad, *out = NULL;
        const char *migrate[] = {OUTBOX_RELAY_BIN, "migrate", "--outboxes-file", NULL, NULL};
        const char *status[] = {OUTBOX_RELAY_BIN, "status", "--outboxes-file", NULL, NULL, NULL};
        const char *run[] = {OUTBOX_RELAY_BIN,
                             "run",
                             "--kafka-brokers",
                             "127.0.0.1:1",
                             "--outboxes-file",
                             NULL,
                             NULL};
        PGconn *a, *c;
        json_t *doc;

        fx_tmpdir_new(dir, sizeof(dir), "fxoutboxes");
        ci_a = fx_pg_create_db(pg, "ob_admin");
        ci_c = fx_pg_create_db(pg2, "ob_admin");
        url_a = fx_write_secret(dir, "url-a", ci_a);
        url_c = fx_write_secret(dir, "url-c", ci_c);
        snprintf(json, sizeof(json),
                 "[{\"name\": \"a\", \"database-url-file\": \"%s\"},"
                 " {\"name\": \"b\", \"database-url-file\": \"%s\", \"schema\": \"second\"},"
                 " {\"name\": \"c\", \"database-url-file\": \"%s\"}]",
                 url_a, url_a, url_c);
        file = fx_write_secret(dir, "outboxes.json", json);
        migrate[3] = status[3] = file;
        ck_assert_msg(fx_run(migrate, NULL, &out, 60000) == 0, "migrate: %s", out);
        free(out);
        a = fx_db_connect(ci_a);
        c = fx_db_connect(ci_c);
        fx_sql(a, "INSERT INTO second.events (topic, key, payload)"
                  " SELECT 't', 'k', '{}' FROM generate_series(1, 3)");
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) VALUES ('t', 'k', '{}')");
        ck_assert_msg(fx_run(status, NULL, &out, 60000) == 0, "status: %s", out);
        ck_assert_msg(strstr(out, "outbox:             a\nschema:             outbox\n") != NULL &&
                          strstr(out, "outbox:             b\nschema:             second\n"
                                      "pending:            3\n") != NULL &&
                          strstr(out, "outbox:             c\nschema:             outbox\n"
                                      "pending:            1\n") != NULL,
                      "status: %s", out);
        free(out);
        status[4] = "--json";
        ck_assert_int_eq(fx_run(status, NULL, &out, 60000), 0);
        doc = json_loads(out, 0, NULL);
        ck_assert_msg(json_is_array(doc) && json_array_size(doc) == 3, "status --json: %s", out);
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(doc, 1), "outbox")), "b");
        ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(doc, 1), "pending")), 3);
        json_decref(doc);
        free(out);
        /* One database down: the others are still shown, the exit says it. */
        status[4] = NULL;
        fx_pg_stop_server(pg2);
        ck_assert_int_eq(fx_run(status, NULL, &out, 60000), 1);
        ck_assert_msg(strstr(out, "outbox:             a") != NULL &&
                          strstr(out, "outbox:             b") != NULL,
                      "status: %s", out);
        free(out);
        fx_pg_start_server(pg2);
        /* replay and dlq work on one outbox: refused, not run on the first. */
        {
                const char *replay[] = {
                    OUTBOX_RELAY_BIN, "replay", "--outboxes-file", file, "--from-id", "1", NULL};

                ck_assert_int_eq(fx_run(replay, NULL, &out, 60000), 2);
                ck_assert_msg(strstr(out, "replay works on one outbox") != NULL, "replay: %s", out);
                free(out);
        }
        /* A key no outbox may set: exit 2, one line naming it. */
        bad =
            fx_write_secret(dir, "bad.json", "[{\"name\": \"a\", \"http-listen\": \"0.0.0.0:1\"}]");
        run[5] = bad;
        ck_assert_int_eq(fx_run(run, NULL, &out, 60000), 2);
        ck_assert_msg(strstr(out, "bad.json: outbox \"a\": key \"http-listen\"") != NULL &&
                          strchr(out, '\n') == out + strlen(out) - 1,
                      "run: %s", out);
        free(out);
        PQfinish(a);
        PQfinish(c);
        free(bad);
        free(file);
        free(url_a);
        free(url_c);
        free(ci_a);
        free(ci_c);
        fx_tmpdir_remove(dir);
}
END_TEST

/* An outbox whose schema is not migrated stops its relay on an error: the
 * process goes on (the other outbox publishes), /readyz names it, and once
 * the schema is migrated the outbox starts again by itself. */
START_TEST(unmigrated_outbox_starts_again_once_migrated)
{
        char dir[128], json[1024], *ci, *relay_ci, *url, *file, *body = NULL;
        const char *more[] = {"--reconnect-max-ms", "1000", NULL};
        struct world w = {.file = NULL};
        struct ob a = {.name = "a", .schema = "outbox", .next = 1};
        struct ob late = {.name = "late", .schema = "late", .next = 1};
        int port = fx_free_port();
        struct fx_relay *r;
        int said = 0;

        fx_tmpdir_new(dir, sizeof(dir), "fxoutboxes");
        ci = fx_pg_create_db(pg, "ob_late");
        fx_migrate(ci, NULL);
        relay_ci = fx_conninfo_as(ci, FX_RELAY_ROLE);
        url = fx_write_secret(dir, "url", relay_ci);
        snprintf(a.topic, sizeof(a.topic), "late-a");
        snprintf(late.topic, sizeof(late.topic), "late-late");
        ck_assert_int_eq(fx_kafka_command(kafka, "topic late-a 2"), 0);
        ck_assert_int_eq(fx_kafka_command(kafka, "topic late-late 2"), 0);
        snprintf(json, sizeof(json),
                 "[{\"name\": \"a\", \"database-url-file\": \"%s\", \"default-topic\": "
                 "\"late-a\"}, {\"name\": \"late\", \"database-url-file\": \"%s\", \"schema\": "
                 "\"late\", \"default-topic\": \"late-late\"}]",
                 url, url);
        file = fx_write_secret(dir, "outboxes.json", json);
        w.file = file;
        a.c = late.c = fx_db_connect(ci);
        r = start(&w, port, more);
        insert(&a, 50);
        ck_assert_int_eq(wait_sent(&a, 50, 30000), 50);
        for (int64_t until = fx_now_ms() + 20000; fx_now_ms() < until && !said;
             usleep(100 * 1000)) {
                free(body);
                body = NULL;
                said = fx_http_get(port, "/readyz", &body) == 503 && body != NULL &&
                       strstr(body, "outbox late: stopped on an error, starting again") != NULL &&
                       strstr(body, "outbox a:") == NULL;
        }
        ck_assert_msg(said, "readyz: %s", body != NULL ? body : "(none)");
        free(body);
        body = NULL;
        ck_assert_msg(log_has(r, "\"msg\":\"outbox stopped on an error: starting it again\","
                                 "\"outbox\":\"late\""),
                      "%s", fh_relay_log_tail(r));
        /* Still running: a keeps publishing while late waits. */
        insert(&a, 50);
        ck_assert_int_eq(wait_sent(&a, 100, 30000), 100);
        fx_migrate(ci, "late");
        insert(&late, 50);
        ck_assert_int_eq(wait_sent(&late, 50, 30000), 50);
        check(&a);
        check(&late);
        fh_relay_stop(r, 30000);
        fx_relay_free(r);
        PQfinish(a.c);
        free(file);
        free(url);
        free(relay_ci);
        free(ci);
        fx_tmpdir_remove(dir);
}
END_TEST

/* A key or value of the file with a newline or an escape sequence in it:
 * exit 2 and one line that shows them escaped, no raw control byte. */
START_TEST(control_bytes_in_the_file_stay_on_one_line)
{
        static const char *const files[] = {
            "[{\"name\": \"a\", \"bad\\nkey\\u001b[31m\": 1}]",
            "[{\"name\": \"a\", \"schema\": \"x\\ny\\u001b]0;t\\u0007\"}]",
        };
        static const char *const shown[] = {"key \"bad\\nkey\\x1b[31m\"", "x\\ny\\x1b]0;t\\x07"};
        const char *run[] = {OUTBOX_RELAY_BIN,
                             "run",
                             "--kafka-brokers",
                             "127.0.0.1:1",
                             "--database-url",
                             "postgresql://u@127.0.0.1:1/db",
                             "--outboxes-file",
                             NULL,
                             NULL};
        char dir[128], *file, *out = NULL;

        fx_tmpdir_new(dir, sizeof(dir), "fxoutboxes");
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
                file = fx_write_secret(dir, "ctl.json", files[i]);
                run[7] = file;
                ck_assert_int_eq(fx_run(run, NULL, &out, 30000), 2);
                ck_assert_msg(strchr(out, '\n') == out + strlen(out) - 1 &&
                                  strchr(out, '\x1b') == NULL && strchr(out, '\a') == NULL &&
                                  strstr(out, shown[i]) != NULL,
                              "run: %s", out);
                free(out);
                free(file);
        }
        fx_tmpdir_remove(dir);
}
END_TEST

static const struct runner_servers servers = {servers_start, servers_stop};

Suite *test_suite(void)
{
        Suite *s = suite_create("outboxes");
        const TTest *const tests[] = {three_outboxes_two_databases_two_schemas_flow,
                                      one_database_stopped_the_others_keep_flowing,
                                      kill_9_mid_stream_nothing_lost,
                                      exactly_once_one_transactional_id_per_outbox,
                                      status_and_migrate_cover_every_outbox,
                                      unmigrated_outbox_starts_again_once_migrated,
                                      control_bytes_in_the_file_stay_on_one_line,
                                      NULL};

        runner_add_each(s, tests, &servers, 120);
        return s;
}
