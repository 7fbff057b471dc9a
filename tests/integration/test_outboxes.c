/* Several outboxes in one relay process (--outboxes-file): two schemas of
 * one database and a database of a second PostgreSQL, each outbox to its
 * own topic. Nothing lost and per-key order kept in each; one database
 * stopped while the others keep flowing; kill -9 mid-stream; the outbox
 * label on the metrics and in the log; one transactional id per outbox. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "fault_harness.h"
#include "fixture.h"
#include "runner.h"

static struct fx_pg *pg, *pg2;
static struct fx_kafka *kafka;

static void servers_start(void)
{
        pg = fx_pg_start();
        pg2 = fx_pg_start();
        kafka = fx_kafka_start(1, 2);
}

static void servers_stop(void)
{
        fx_kafka_stop(kafka);
        fx_pg_stop(pg2);
        fx_pg_stop(pg);
}

#define BROKERS fx_kafka_bootstraps(kafka)
#define N_OB    3
#define KEYS    7

/* One outbox of the test: where its rows are and where they go. */
struct ob {
        const char *name, *schema;
        char topic[64];
        char *ci; /* superuser conninfo of its database */
        PGconn *c;
        int next; /* the payload number of its next row */
};

struct world {
        char dir[128];
        char *file; /* the --outboxes-file */
        struct ob ob[N_OB];
};

/* Outboxes a and b: schemas outbox and second of one database of pg;
 * outbox c: a database of pg2. Topics are the test's own (tag). */
static void world_new(struct world *w, const char *tag, const char *extra)
{
        static const char *const names[N_OB] = {"a", "b", "c"};
        static const char *const schemas[N_OB] = {"outbox", "second", "outbox"};
        char db[64], json[4096], cmd[128];
        size_t used = 0;

        memset(w, 0, sizeof(*w));
        fx_tmpdir_new(w->dir, sizeof(w->dir), "fxoutboxes");
        snprintf(db, sizeof(db), "ob_%s", tag);
        w->ob[0].ci = fx_pg_create_db(pg, db);
        w->ob[1].ci = strdup(w->ob[0].ci);
        w->ob[2].ci = fx_pg_create_db(pg2, db);
        used += (size_t)snprintf(json, sizeof(json), "[");
        for (int i = 0; i < N_OB; i++) {
                struct ob *o = &w->ob[i];
                char *relay_ci = fx_conninfo_as(o->ci, FX_RELAY_ROLE), secret[32], *path;

                o->name = names[i];
                o->schema = schemas[i];
                o->next = 1;
                snprintf(o->topic, sizeof(o->topic), "%s-%s", tag, o->name);
                fx_migrate(o->ci, o->schema);
                o->c = fx_db_connect(o->ci);
                snprintf(cmd, sizeof(cmd), "topic %s 2", o->topic);
                ck_assert_int_eq(fx_kafka_command(kafka, cmd), 0);
                snprintf(secret, sizeof(secret), "url-%s", o->name);
                path = fx_write_secret(w->dir, secret, relay_ci);
                used += (size_t)snprintf(json + used, sizeof(json) - used,
                                         "%s{\"name\": \"%s\", \"database-url-file\": \"%s\","
                                         " \"schema\": \"%s\", \"default-topic\": \"%s\"%s}",
                                         i > 0 ? ", " : "", o->name, path, o->schema, o->topic,
                                         extra != NULL ? extra : "");
                ck_assert_uint_lt(used, sizeof(json));
                free(path);
                free(relay_ci);
        }
        snprintf(json + used, sizeof(json) - used, "]");
        w->file = fx_write_secret(w->dir, "outboxes.json", json);
}

static void world_free(struct world *w)
{
        for (int i = 0; i < N_OB; i++) {
                PQfinish(w->ob[i].c);
                free(w->ob[i].ci);
        }
        free(w->file);
        fx_tmpdir_remove(w->dir);
}

static struct fx_relay *start_env(const struct world *w, int http_port, const char *const more[],
                                  const char *const env[])
{
        char port[32];
        const char *args[16] = {"--outboxes-file", w->file, "--poll-interval-ms", "100"};
        int n = 4;

        if (http_port > 0) {
                snprintf(port, sizeof(port), "127.0.0.1:%d", http_port);
                args[n++] = "--http-listen";
                args[n++] = port; /* copied by the spawn */
        }
        for (int i = 0; more != NULL && more[i] != NULL; i++)
                args[n++] = more[i];
        args[n] = NULL;
        return fx_relay_start_env(NULL, BROKERS, args, env);
}

static struct fx_relay *start(const struct world *w, int http_port, const char *const more[])
{
        return start_env(w, http_port, more, NULL);
}

/* n rows into o, keys k0..k6, payload {"n": N} numbered on from the last. */
static void insert(struct ob *o, int n)
{
        fx_sql(o->c,
               "INSERT INTO %s.events (topic, key, payload) SELECT NULL, 'k' || (g %% %d),"
               " jsonb_build_object('n', g) FROM generate_series(%d, %d) g",
               o->schema, KEYS, o->next, o->next + n - 1);
        o->next += n;
}

static long long wait_sent(struct ob *o, long long n, int timeout_ms)
{
        return fx_wait_sql(o->c, n, timeout_ms,
                           "SELECT count(*) FROM %s.events WHERE status = 'sent'", o->schema);
}

static int cmp_ll(const void *a, const void *b)
{
        long long x = *(const long long *)a, y = *(const long long *)b;

        return (x > y) - (x < y);
}

/* Reads o's topic back and compares it with o's table: every row in it
 * (lost: none), no message of a row not in it, and per key the first
 * appearance of each row in id order (duplicates allowed: at least once). */
static void check_read(struct ob *o, int twice)
{
        long long rows = fx_sql_int(o->c, "SELECT count(*) FROM %s.events", o->schema);
        long long *seen, last_first[KEYS] = {0}, lost = 0, phantoms = 0, disorder = 0;
        struct fx_msg *msgs = NULL;
        /* twice: after a kill -9 some rows are published twice, so read
         * until nothing new comes rather than up to the count of rows. */
        size_t n = fx_consume(BROKERS, o->topic, (size_t)rows * (twice ? 3 : 1), 2000, &msgs),
               n_seen = 0;
        PGresult *res;
        char sql[128];

        seen = calloc(n + 1, sizeof(*seen));
        ck_assert_ptr_nonnull(seen);
        /* Partitions come one after the other; a key stays on one. */
        for (size_t i = 0; i < n; i++) {
                const struct fx_header *h = fx_msg_header(&msgs[i], "outbox_id");
                long long id;
                int key;

                ck_assert_msg(h != NULL && h->value != NULL, "%s: a message without outbox_id",
                              o->name);
                id = atoll(h->value);
                ck_assert_msg(msgs[i].key != NULL && msgs[i].key_len == 2, "%s: bad key", o->name);
                key = msgs[i].key[1] - '0';
                ck_assert(key >= 0 && key < KEYS);
                if (bsearch(&id, seen, n_seen, sizeof(*seen), cmp_ll) == NULL) {
                        if (id < last_first[key])
                                disorder++;
                        last_first[key] = id;
                        seen[n_seen++] = id;
                        qsort(seen, n_seen, sizeof(*seen), cmp_ll);
                }
        }
        snprintf(sql, sizeof(sql), "SELECT id FROM %s.events ORDER BY id", o->schema);
        res = PQexec(o->c, sql);
        ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
        for (int i = 0; i < PQntuples(res); i++) {
                long long id = atoll(PQgetvalue(res, i, 0));

                lost += bsearch(&id, seen, n_seen, sizeof(*seen), cmp_ll) == NULL;
        }
        phantoms = (long long)n_seen - (PQntuples(res) - lost);
        PQclear(res);
        ck_assert_msg(lost == 0 && phantoms == 0 && disorder == 0,
                      "outbox %s: %lld rows, %zu messages: %lld lost, %lld phantoms, %lld out of "
                      "key order",
                      o->name, rows, n, lost, phantoms, disorder);
        fx_msgs_free(msgs, n);
        free(seen);
}

#define check(o) check_read((o), 0)

static int log_has(const struct fx_relay *r, const char *what)
{
        char *log = fx_relay_log(r);
        int has = log != NULL && strstr(log, what) != NULL;

        free(log);
        return has;
}

/* Rows of every outbox reach their own topics; metrics carry the outbox
 * label on every series; the log names the outbox in each relay line. */
START_TEST(three_outboxes_two_databases_two_schemas_flow)
{
        struct world w;
        int port = fx_free_port();
        struct fx_relay *r;
        char *body = NULL, series[128];

        world_new(&w, "flow", NULL);
        for (int i = 0; i < N_OB; i++)
                insert(&w.ob[i], 300);
        r = start(&w, port, NULL);
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

#ifdef OUTBOX_TEST_HOOKS /* the case needs the relay's stall switch */
/* Outbox b's loop stalled (the relay's test hook OUTBOX_RELAY_TEST_STALL_OUTBOX,
 * which also dates its last turn a minute back: the 60 s themselves are not
 * waited for): /healthz answers 503 naming b alone, while a and c publish
 * everything; SIGTERM still stops the process cleanly. */
START_TEST(stalled_loop_fails_healthz_naming_its_outbox)
{
        const char *env[] = {"OUTBOX_RELAY_TEST_STALL_OUTBOX=b", NULL};
        struct world w;
        int port = fx_free_port(), said = 0;
        struct fx_relay *r;
        char *body = NULL;

        world_new(&w, "stall", NULL);
        r = start_env(&w, port, NULL, env);
        for (int64_t until = fx_now_ms() + 20000; fx_now_ms() < until && !said;
             usleep(100 * 1000)) {
                free(body);
                body = NULL;
                said = fx_http_get(port, "/healthz", &body) == 503 && body != NULL &&
                       strstr(body, "outbox b: its loop has not turned for") != NULL;
        }
        ck_assert_msg(said, "healthz: %s", body != NULL ? body : "(none)");
        ck_assert_msg(strstr(body, "outbox a") == NULL && strstr(body, "outbox c") == NULL,
                      "healthz: %s", body);
        free(body);
        ck_assert_msg(log_has(r, "\"msg\":\"test hook: loop stalled until the process stops\","
                                 "\"outbox\":\"b\""),
                      "%s", fh_relay_log_tail(r));
        /* The others keep publishing while b is stuck. */
        insert(&w.ob[0], 200);
        insert(&w.ob[2], 200);
        ck_assert_int_eq(wait_sent(&w.ob[0], 200, 30000), 200);
        ck_assert_int_eq(wait_sent(&w.ob[2], 200, 30000), 200);
        check(&w.ob[0]);
        check(&w.ob[2]);
        ck_assert_int_eq(fx_http_get(port, "/healthz", &body), 503);
        free(body);
        fh_relay_stop(r, 30000);
        fx_relay_free(r);
        world_free(&w);
}
END_TEST
#endif

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
#ifdef OUTBOX_TEST_HOOKS
                                      stalled_loop_fails_healthz_naming_its_outbox,
#endif
                                      NULL};

        runner_add_each(s, tests, &servers, 120);
        return s;
}
