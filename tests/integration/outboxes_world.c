/* The world of the several-outboxes tests: the servers, the three
 * outboxes and their file, starting the relay on them, writing rows and
 * reading them back with the harness's checks (outboxes_world.h). */
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

#include "outboxes_world.h"

struct fx_pg *pg, *pg2;
struct fx_kafka *kafka;

void servers_start(void)
{
        pg = fx_pg_start();
        pg2 = fx_pg_start();
        kafka = fx_kafka_start(1, 2);
}

void servers_stop(void)
{
        fx_kafka_stop(kafka);
        fx_pg_stop(pg2);
        fx_pg_stop(pg);
}

/* Outboxes a and b: schemas outbox and second of one database of pg;
 * outbox c: a database of pg2. Topics are the test's own (tag). */
void world_new_c(struct world *w, const char *tag, const char *extra, const char *extra_c)
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
                                         i == 2 && extra_c != NULL ? extra_c
                                         : extra != NULL           ? extra
                                                                   : "");
                ck_assert_uint_lt(used, sizeof(json));
                free(path);
                free(relay_ci);
        }
        snprintf(json + used, sizeof(json) - used, "]");
        w->file = fx_write_secret(w->dir, "outboxes.json", json);
}

void world_new(struct world *w, const char *tag, const char *extra)
{
        world_new_c(w, tag, extra, NULL);
}

void world_free(struct world *w)
{
        for (int i = 0; i < N_OB; i++) {
                PQfinish(w->ob[i].c);
                free(w->ob[i].ci);
        }
        free(w->file);
        fx_tmpdir_remove(w->dir);
}

struct fx_relay *start_env(const struct world *w, int http_port, const char *const more[],
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

struct fx_relay *start(const struct world *w, int http_port, const char *const more[])
{
        return start_env(w, http_port, more, NULL);
}

/* n rows into o, keys k0..k6, payload {"n": N} numbered on from the last. */
void insert(struct ob *o, int n)
{
        fx_sql(o->c,
               "INSERT INTO %s.events (topic, key, payload) SELECT NULL, 'k' || (g %% %d),"
               " jsonb_build_object('n', g) FROM generate_series(%d, %d) g",
               o->schema, KEYS, o->next, o->next + n - 1);
        o->next += n;
}

long long wait_sent(struct ob *o, long long n, int timeout_ms)
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
void check_read(struct ob *o, int twice)
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

int log_has(const struct fx_relay *r, const char *what)
{
        char *log = fx_relay_log(r);
        int has = log != NULL && strstr(log, what) != NULL;

        free(log);
        return has;
}

/* The value of series in /metrics, or -2 when it cannot be read. */
double scrape(int port, const char *series)
{
        char *body = NULL;
        double v = fx_http_get(port, "/metrics", &body) == 200 ? fx_metric(body, series) : -2;

        free(body);
        return v;
}

/* Polls until series is v in /metrics, up to timeout_ms; its last value. */
double wait_metric(int port, const char *series, double v, int timeout_ms)
{
        double got = scrape(port, series);

        for (int64_t until = fx_now_ms() + timeout_ms; got != v && fx_now_ms() < until;
             usleep(100 * 1000))
                got = scrape(port, series);
        return got;
}
