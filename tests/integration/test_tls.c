/* Secrets from files and PostgreSQL TLS, end to end: the real relay against
 * a throwaway PostgreSQL with ssl = on and a CA made with openssl at test
 * time. With sslmode=verify-full and the right CA it connects over TLS and
 * publishes, its database URL (password included) read from a file and so
 * absent from its argv and environment; with a CA that did not sign the
 * server's certificate, or none at all, it says so in one log line without
 * the password, keeps running and retries with backoff. The refusals add
 * lines to the fault report (docs/FAULTS.md). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault_harness.h"
#include "fixture.h"
#include "runner.h"

#define PASSWORD "hunter2-tls"

static struct fx_pg *pg;
static struct fx_kafka *kafka;
static char tmpdir[64];

static void suite_setup(void)
{
        pg = fx_pg_start_tls();
        kafka = fx_kafka_start(1, 1);
        fx_tmpdir_new(tmpdir, sizeof(tmpdir), "test-tls");
}

static void suite_teardown(void)
{
        fx_kafka_stop(kafka);
        fx_pg_stop(pg);
        fx_tmpdir_remove(tmpdir);
}

/* The NUL-separated /proc/<pid>/<what> as one string with NULs made spaces. */
static char *proc_text(pid_t pid, const char *what)
{
        char path[64], *buf = malloc(1 << 16);
        ssize_t n;
        int fd;

        ck_assert_ptr_nonnull(buf);
        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
        n = read(fd, buf, (1 << 16) - 1);
        close(fd);
        ck_assert_int_ge(n, 0);
        for (ssize_t i = 0; i < n; i++)
                if (buf[i] == '\0')
                        buf[i] = ' ';
        buf[n] = '\0';
        return buf;
}

/* Polls the relay's log until it holds `needle` or the deadline passes. */
static char *wait_log(struct fx_relay *r, const char *needle, int timeout_ms)
{
        int64_t deadline = fx_now_ms() + timeout_ms;
        char *log;

        for (;;) {
                log = fx_relay_log(r);
                if (strstr(log, needle) != NULL || fx_now_ms() >= deadline)
                        return log;
                free(log);
                poll(NULL, 0, 20);
        }
}

/* sslmode=verify-full with the CA that signed the server's certificate, the
 * URL (with a password) only in OUTBOX_DATABASE_URL_FILE: every relay
 * session is encrypted, a row is published, and the password is nowhere in
 * the relay's argv, environment or log. */
START_TEST(verify_full_from_url_file_publishes)
{
        char *ci = fx_pg_create_db(pg, "tls_ok"), *url, *path, *env_var, *text;
        const char *env[2];
        struct fx_relay *r;
        struct fx_msg *msgs = NULL;
        PGconn *c;

        fx_migrate(ci, NULL);
        c = fx_db_connect(ci);
        ck_assert_int_gt(asprintf(&url, "%s sslmode=verify-full sslrootcert=%s password=%s\n", ci,
                                  fx_pg_ca_file(pg), PASSWORD),
                         0);
        path = fx_write_secret(tmpdir, "url-ok", url);
        ck_assert_int_gt(asprintf(&env_var, "OUTBOX_DATABASE_URL_FILE=%s", path), 0);
        env[0] = env_var;
        env[1] = NULL;
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload) VALUES ('tls-ok', 'k', "
                  "'{\"over\": \"tls\"}')");
        r = fx_relay_start_env(NULL, fx_kafka_bootstraps(kafka), NULL, env);
        ck_assert_int_eq(fh_wait_sent(c, 1, 30000), 1);
        ck_assert_uint_eq(fx_consume(fx_kafka_bootstraps(kafka), "tls-ok", 1, 10000, &msgs), 1);
        fx_msgs_free(msgs, 1);
        /* The relay's three sessions, each over TLS. */
        ck_assert_int_eq(fx_wait_sql(c, 3, 10000,
                                     "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a"
                                     " USING (pid) WHERE a.datname = 'tls_ok' AND s.ssl"
                                     " AND a.application_name LIKE 'outbox-relay%%'"),
                         3);
        ck_assert_int_eq(fx_sql_int(c, "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a"
                                       " USING (pid) WHERE a.datname = 'tls_ok' AND NOT s.ssl"
                                       " AND a.application_name LIKE 'outbox-relay%%'"),
                         0);
        text = proc_text(fx_relay_pid(r), "cmdline");
        ck_assert_msg(strstr(text, PASSWORD) == NULL, "password in argv: %s", text);
        free(text);
        text = proc_text(fx_relay_pid(r), "environ");
        ck_assert_msg(strstr(text, PASSWORD) == NULL, "password in the environment");
        ck_assert_ptr_nonnull(strstr(text, "OUTBOX_DATABASE_URL_FILE="));
        free(text);
        fx_relay_kill(r, SIGTERM);
        ck_assert_int_eq(fx_relay_wait(r, 30000), 0);
        text = fx_relay_log(r);
        ck_assert_msg(strstr(text, PASSWORD) == NULL, "password in the log: %s", text);
        free(text);
        fx_relay_free(r);
        PQfinish(c);
        free(env_var);
        free(path);
        free(url);
        free(ci);
}
END_TEST

/* The "database unavailable, will retry" lines of a log: each attempt's
 * number must follow the one before, and its delay lie within the
 * reconnect backoff's bounds for that attempt (100 ms doubling up to
 * cap_ms, jitter down to half): a relay retrying in a tight loop, or giving
 * up, fails here without any clock being read. Returns the attempts seen. */
static int check_retries(const char *log, int cap_ms, char *why, size_t whysz)
{
        int attempts = 0;

        for (const char *line = log; *line != '\0';) {
                size_t len = strcspn(line, "\n");
                char *copy = strndup(line, len);
                const char *a, *d;

                ck_assert_ptr_nonnull(copy);
                a = strstr(copy, "\"attempt\":");
                d = strstr(copy, "\"retry_in_ms\":");
                if (strstr(copy, "database unavailable") != NULL && a != NULL && d != NULL) {
                        int n = atoi(a + 10), delay = atoi(d + 14), ceiling = 100;

                        for (int i = 1; i < n && ceiling < cap_ms; i++)
                                ceiling *= 2;
                        if (ceiling > cap_ms)
                                ceiling = cap_ms;
                        if (n != attempts + 1 || delay < ceiling / 2 || delay > ceiling) {
                                snprintf(why, whysz,
                                         "attempt %d (after %d) waits %d ms, expected %d to %d", n,
                                         attempts, delay, ceiling / 2, ceiling);
                                free(copy);
                                return -1;
                        }
                        attempts = n;
                }
                free(copy);
                line += len + (line[len] == '\n');
        }
        return attempts;
}

/* Runs the relay with url (which holds the password) until it has failed
 * to connect `want` times; checks it says `expect` without the password,
 * keeps running with backoff, answers /healthz and is not ready. Reports
 * the case. */
static void refused_connection(const char *name, const char *what, const char *url,
                               const char *const env[], const char *expect)
{
        char listen[32], why[256] = "", first[400] = "", *log, *body = NULL, *health = NULL;
        const char *args[] = {"--reconnect-max-ms", "400", "--http-listen", listen, NULL};
        struct fh_result res;
        struct fx_relay *r;
        int port = fx_free_port(), attempts, ready, healthy, alive;
        const char *line;
        char *at;

        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        r = fx_relay_start_env(url, fx_kafka_bootstraps(kafka), args, env);
        log = wait_log(r, "\"attempt\":4", 30000);
        alive = fx_relay_wait(r, 0) == -1;
        attempts = check_retries(log, 400, why, sizeof(why));
        healthy = fx_http_get(port, "/healthz", &health) == 200;
        free(health);
        ready = fx_http_get(port, "/readyz", &body);
        line = strstr(log, expect) != NULL ? strstr(log, "\"error\":\"") : NULL;
        if (line != NULL) /* the error of the first attempt, for the report */
                snprintf(first, sizeof(first), "%.*s", (int)strcspn(line + 9, "\n"), line + 9);
        if (strstr(first, "\",\"attempt\"") != NULL)
                *strstr(first, "\",\"attempt\"") = '\0';
        /* What libpq said after "connection to server at ... failed: ",
         * unescaped, is what the report shows. */
        if ((at = strstr(first, "failed: ")) != NULL)
                memmove(first, at + 8, strlen(at + 8) + 1);
        for (char *rd = first, *w = first;; rd++) {
                if (*rd != '\\')
                        *w++ = *rd == '"' ? '\'' : *rd;
                if (*rd == '\0')
                        break;
        }
        fh_result_init(&res, name, what);
        res.committed = res.messages = -1;
        res.faults = attempts > 0 ? attempts : 0;
        snprintf(res.notes, sizeof(res.notes),
                 "%s; %d connection attempts, each delay within the backoff's bounds; /healthz %s,"
                 " /readyz %d; password %s; error: %.300s",
                 alive ? "kept running" : "EXITED", attempts, healthy ? "200" : "unanswered", ready,
                 strstr(log, PASSWORD) ? "SHOWN" : "not shown",
                 line != NULL ? first : "(expected text missing)");
        fh_report(&res, alive && attempts >= 4 && healthy && ready == 503 && line != NULL &&
                            strstr(log, PASSWORD) == NULL);
        ck_assert_msg(alive, "the relay exited: %s", log);
        ck_assert_msg(line != NULL, "log lacks \"%s\": %s", expect, log);
        ck_assert_msg(strstr(first, "\\n") == NULL, "error not on one line: %s", first);
        ck_assert_msg(strstr(log, PASSWORD) == NULL, "password in the log: %s", log);
        ck_assert_msg(attempts >= 4, "%s; log: %s", why[0] ? why : "fewer than 4 attempts", log);
        ck_assert_msg(healthy, "/healthz unanswered");
        ck_assert_int_eq(ready, 503);
        ck_assert_msg(body != NULL && strstr(body, "not connected to the database") != NULL,
                      "/readyz: %s", body ? body : "(none)");
        free(body);
        free(log);
        fx_relay_free(r);
}

/* A CA that did not sign the server's certificate. */
START_TEST(wrong_ca_fails_clearly_and_retries)
{
        char *ci = fx_pg_create_db(pg, "tls_wrong_ca"), *url, ca[128];

        fx_migrate(ci, NULL);
        fx_make_ca(tmpdir, "wrong");
        snprintf(ca, sizeof(ca), "%s/wrong.crt", tmpdir);
        ck_assert_int_gt(
            asprintf(&url, "%s sslmode=verify-full sslrootcert=%s password=%s", ci, ca, PASSWORD),
            0);
        refused_connection("pg-wrong-ca",
                           "PostgreSQL TLS, sslmode=verify-full with sslrootcert naming a CA "
                           "that did not sign the server's certificate (a password in the URL)",
                           url, NULL, "certificate verify failed");
        free(url);
        free(ci);
}
END_TEST

/* verify-full without sslrootcert where there is no home directory (the
 * image's HOME is /nonexistent): libpq looks for ~/.postgresql/root.crt,
 * and the relay's line says how to name the CA instead. */
START_TEST(verify_full_without_root_cert_says_sslrootcert)
{
        char *ci = fx_pg_create_db(pg, "tls_no_root"), *url;
        const char *env[] = {"HOME=/nonexistent", NULL};

        fx_migrate(ci, NULL);
        ck_assert_int_gt(asprintf(&url, "%s sslmode=verify-full password=%s", ci, PASSWORD), 0);
        refused_connection("pg-no-root-cert",
                           "PostgreSQL TLS, sslmode=verify-full without sslrootcert and HOME "
                           "/nonexistent (as in the image): no ~/.postgresql/root.crt",
                           url, env, "sslrootcert=");
        free(url);
        free(ci);
}
END_TEST

static const struct runner_servers servers = {suite_setup, suite_teardown};

Suite *test_suite(void)
{
        const TTest *const tests[] = {verify_full_from_url_file_publishes,
                                      wrong_ca_fails_clearly_and_retries,
                                      verify_full_without_root_cert_says_sslrootcert, NULL};

        return runner_suite("tls", "tls", &servers, 120, tests);
}
