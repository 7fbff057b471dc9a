/* fixture_pg: the integration tests' throwaway PostgreSQL (initdb into a
 * temp dir, a watchdog that stops it if the test dies, TLS on request), its
 * databases and roles, and the SQL and deadline-polling helpers. */
#include "fixture.h"
#include "fixture_int.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define FX_PG_BIN_DEFAULT "/usr/lib/postgresql/15/bin" /* OUTBOX_TEST_PG_BIN overrides */
#define FX_PG_TIMEOUT_MS  90000

struct fx_pg {
        char dir[64]; /* mkdtemp'd; also the unix socket directory */
        char datadir[96];
        char logfile[96];
        char bindir[256];
        int port;
        int as_user; /* we are root: server tools run as postgres */
        uid_t uid;
        gid_t gid;
        int guard_fd; /* write end of the watchdog's stdin */
        pid_t guard_pid;
        int tls;          /* ssl = on, certificates from pg_setup_tls */
        char ca_file[96]; /* dir/ca.crt */
};

static struct fx_spawn_opts pg_opts(const struct fx_pg *pg)
{
        struct fx_spawn_opts o = {.in = -1, .out = -1, .err = -1};

        o.as_user = pg->as_user;
        o.uid = pg->uid;
        o.gid = pg->gid;
        return o;
}

/* Runs bindir/tool with the NULL-terminated arguments as the server's user. */
static int pg_tool(const struct fx_pg *pg, char **output, const char *tool, ...)
{
        const char *argv[24];
        char path[320];
        struct fx_spawn_opts o = pg_opts(pg);
        va_list ap;
        int n = 1;

        snprintf(path, sizeof(path), "%s/%s", pg->bindir, tool);
        argv[0] = path;
        va_start(ap, tool);
        while (n < 23 && (argv[n] = va_arg(ap, const char *)))
                n++;
        va_end(ap);
        argv[n] = NULL;
        return fx_run_capture(argv, &o, output, FX_PG_TIMEOUT_MS);
}

/* A watchdog that outlives an aborted test: when every copy of guard_fd is
 * closed (the test process exited, however), it stops the server and removes
 * the directory. Own session, so a terminal ^C does not kill it first. */
static void pg_start_guard(struct fx_pg *pg)
{
        static const char script[] =
            "cat >/dev/null\n"
            "if [ -f \"$2/postmaster.pid\" ]; then\n"
            "  \"$1/pg_ctl\" -D \"$2\" -m immediate -w -t 30 stop >/dev/null 2>&1\n"
            "fi\n"
            "rm -rf \"$3\"\n";
        const char *argv[] = {"/bin/sh",  "-c",        script,  "fx-pg-guard",
                              pg->bindir, pg->datadir, pg->dir, NULL};
        struct fx_spawn_opts o = pg_opts(pg);
        char errbuf[256];
        int p[2];

        ck_assert_msg(pipe2(p, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
        o.in = p[0];
        o.new_session = 1;
        pg->guard_pid = fx_spawn(argv, &o, errbuf, sizeof(errbuf));
        close(p[0]);
        pg->guard_fd = p[1];
        ck_assert_msg(pg->guard_pid > 0, "%s", errbuf);
}

static void pg_append_conf(const struct fx_pg *pg, const char *text)
{
        char path[128];
        FILE *f;

        snprintf(path, sizeof(path), "%s/postgresql.conf", pg->datadir);
        f = fopen(path, "a");
        ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
        fputs(text, f);
        ck_assert_msg(fclose(f) == 0, "%s: %s", path, strerror(errno));
}

/* Polls until the server accepts connections or the deadline passes. */
static int pg_wait_ready(const struct fx_pg *pg, int timeout_ms)
{
        int64_t deadline = fx_now_ms() + timeout_ms;
        char conninfo[128];

        snprintf(conninfo, sizeof(conninfo),
                 "host=127.0.0.1 port=%d dbname=postgres user=postgres connect_timeout=5",
                 pg->port);
        while (PQping(conninfo) != PQPING_OK) {
                if (fx_now_ms() >= deadline)
                        return -1;
                poll(NULL, 0, FX_POLL_MS);
        }
        return 0;
}

/* pg_ctl start (or restart) and wait until it accepts connections. Returns 0,
 * or -1 with the log tail in *why (malloc'ed). */
static int pg_ctl_start(struct fx_pg *pg, const char *action, char **why)
{
        char *out = NULL;
        /* -m only matters to restart: immediate, like a crash. */
        int rc = pg_tool(pg, &out, "pg_ctl", "-D", pg->datadir, "-l", pg->logfile, "-w", "-t", "60",
                         "-m", "immediate", action, NULL);

        if (rc == 0 && pg_wait_ready(pg, 30000) == 0) {
                free(out);
                return 0;
        }
        free(out);
        *why = fx_file_tail(pg->logfile, FX_TAIL_BYTES);
        return -1;
}

/* The roles the relay and the writers of the tests use: cluster-wide, so
 * once per server; fx_migrate grants them on each outbox. */
static void pg_create_roles(const struct fx_pg *pg)
{
        char conninfo[128];
        PGconn *conn;

        snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d dbname=postgres user=postgres",
                 pg->port);
        conn = fx_db_connect(conninfo);
        fx_sql(conn, "CREATE ROLE " FX_WRITER_ROLE " LOGIN; CREATE ROLE " FX_RELAY_ROLE " LOGIN");
        PQfinish(conn);
}

/* A CA and a server certificate for 127.0.0.1 and localhost signed by it,
 * made as the server's user so that the key is the server's, mode 0600,
 * as PostgreSQL demands. */
static void pg_setup_tls(struct fx_pg *pg)
{
        struct fx_spawn_opts o = pg_opts(pg);
        char key[128], crt[128], conf[512];

        fx_tls_make_ca(&o, pg->dir, "ca");
        fx_tls_server_cert(&o, pg->dir, "server");
        snprintf(key, sizeof(key), "%s/server.key", pg->dir);
        snprintf(crt, sizeof(crt), "%s/server.crt", pg->dir);
        ck_assert_msg(chmod(key, 0600) == 0, "chmod %s: %s", key, strerror(errno));
        snprintf(conf, sizeof(conf),
                 "ssl = on\n"
                 "ssl_cert_file = '%s'\n"
                 "ssl_key_file = '%s'\n",
                 crt, key);
        pg_append_conf(pg, conf);
        pg->tls = 1;
}

static struct fx_pg *pg_start(int tls)
{
        struct fx_pg *pg = calloc(1, sizeof(*pg));
        const char *bindir = getenv("OUTBOX_TEST_PG_BIN");
        char *out = NULL, *why = NULL, conf[512];
        int rc;

        ck_assert_msg(pg != NULL, "out of memory");
        snprintf(pg->bindir, sizeof(pg->bindir), "%s", bindir ? bindir : FX_PG_BIN_DEFAULT);
        pg->guard_fd = -1;
        if (geteuid() == 0) {
                struct passwd *pw = getpwnam("postgres");

                ck_assert_msg(pw != NULL, "running as root but there is no postgres user");
                pg->as_user = 1;
                pg->uid = pw->pw_uid;
                pg->gid = pw->pw_gid;
        }
        snprintf(pg->dir, sizeof(pg->dir), "/tmp/fxpg-XXXXXX");
        ck_assert_msg(mkdtemp(pg->dir) != NULL, "mkdtemp: %s", strerror(errno));
        if (pg->as_user)
                ck_assert_msg(chown(pg->dir, pg->uid, pg->gid) == 0, "chown %s: %s", pg->dir,
                              strerror(errno));
        snprintf(pg->datadir, sizeof(pg->datadir), "%s/data", pg->dir);
        snprintf(pg->logfile, sizeof(pg->logfile), "%s/postgres.log", pg->dir);
        /* From here on an abort leaves the cleanup to the watchdog. */
        pg_start_guard(pg);

        rc = pg_tool(pg, &out, "initdb", "-D", pg->datadir, "-U", "postgres", "-A", "trust", "-E",
                     "UTF8", "--locale=C", "--no-sync", "--no-instructions", NULL);
        ck_assert_msg(rc == 0, "initdb failed (%d): %.*s", rc, FX_TAIL_BYTES, out);
        free(out);
        snprintf(conf, sizeof(conf),
                 "\n# outbox test fixture\n"
                 "listen_addresses = '127.0.0.1'\n"
                 "unix_socket_directories = '%s'\n"
                 "fsync = off\n"
                 "full_page_writes = off\n"
                 "max_connections = 100\n"
                 "max_prepared_transactions = 5\n", /* test_sql: writers() and PREPARE */
                 pg->dir);
        pg_append_conf(pg, conf);
        if (tls)
                pg_setup_tls(pg);

        /* The port is free when picked but may be taken before the server
         * binds it; retry with another one in that case only. */
        for (int attempt = 0;; attempt++) {
                pg->port = fx_free_port();
                snprintf(conf, sizeof(conf), "port = %d\n", pg->port);
                pg_append_conf(pg, conf);
                if (pg_ctl_start(pg, "start", &why) == 0)
                        break;
                if (attempt == 2 || !strstr(why, "Address already in use"))
                        ck_abort_msg("PostgreSQL did not start; log tail:\n%s", why);
                free(why);
                why = NULL;
        }
        pg_create_roles(pg);
        return pg;
}

struct fx_pg *fx_pg_start(void)
{
        return pg_start(0);
}

struct fx_pg *fx_pg_start_tls(void)
{
        return pg_start(1);
}

const char *fx_pg_ca_file(struct fx_pg *pg)
{
        ck_assert_msg(pg->tls, "fx_pg_ca_file: the server was not started by fx_pg_start_tls");
        snprintf(pg->ca_file, sizeof(pg->ca_file), "%s/ca.crt", pg->dir);
        return pg->ca_file;
}

int fx_pg_port(const struct fx_pg *pg)
{
        return pg->port;
}

const char *fx_pg_log_path(const struct fx_pg *pg)
{
        return pg->logfile;
}

void fx_pg_restart(struct fx_pg *pg)
{
        char *why = NULL;

        if (pg_ctl_start(pg, "restart", &why))
                ck_abort_msg("PostgreSQL did not restart; log tail:\n%s", why);
}

void fx_pg_stop_server(struct fx_pg *pg)
{
        char *out = NULL;
        int rc = pg_tool(pg, &out, "pg_ctl", "-D", pg->datadir, "-w", "-t", "60", "-m", "fast",
                         "stop", NULL);

        ck_assert_msg(rc == 0, "pg_ctl stop failed (%d): %.*s", rc, FX_TAIL_BYTES, out);
        free(out);
}

void fx_pg_start_server(struct fx_pg *pg)
{
        char *why = NULL;

        if (pg_ctl_start(pg, "start", &why))
                ck_abort_msg("PostgreSQL did not start; log tail:\n%s", why);
}

void fx_pg_stop(struct fx_pg *pg)
{
        char pidfile[128];
        int status;

        if (!pg)
                return;
        snprintf(pidfile, sizeof(pidfile), "%s/postmaster.pid", pg->datadir);
        if (access(pidfile, F_OK) == 0) {
                char *out = NULL;

                if (pg_tool(pg, &out, "pg_ctl", "-D", pg->datadir, "-w", "-t", "60", "-m", "fast",
                            "stop", NULL))
                        fprintf(stderr, "fixture: pg_ctl stop: %s\n", out);
                free(out);
        }
        fx_rm_rf(pg->dir);
        /* Closing our end lets the watchdog run (now a no-op) and exit. */
        if (pg->guard_fd >= 0)
                close(pg->guard_fd);
        if (pg->guard_pid > 0 && fx_wait_pid(pg->guard_pid, 10000, &status) == 0) {
                /* Another process still holds the pipe (a forked test). */
                kill(-pg->guard_pid, SIGKILL);
                waitpid(pg->guard_pid, NULL, 0);
        }
        free(pg);
}

char *fx_pg_create_db(struct fx_pg *pg, const char *name)
{
        char admin[128], *conninfo = NULL, *ident;
        PGconn *conn;

        snprintf(admin, sizeof(admin), "host=127.0.0.1 port=%d dbname=postgres user=postgres",
                 pg->port);
        ck_assert_msg(strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789_") == strlen(name),
                      "database name \"%s\" needs quoting in a conninfo; use [A-Za-z0-9_]", name);
        conn = fx_db_connect(admin);
        ident = PQescapeIdentifier(conn, name, strlen(name));
        ck_assert_msg(ident != NULL, "%s", PQerrorMessage(conn));
        fx_sql(conn, "CREATE DATABASE %s", ident);
        PQfreemem(ident);
        PQfinish(conn);
        ck_assert_msg(asprintf(&conninfo, "host=127.0.0.1 port=%d dbname=%s user=postgres",
                               pg->port, name) > 0,
                      "out of memory");
        return conninfo;
}

PGconn *fx_db_connect(const char *conninfo)
{
        PGconn *conn = PQconnectdb(conninfo);

        ck_assert_msg(conn != NULL, "out of memory");
        if (PQstatus(conn) != CONNECTION_OK) {
                char msg[512];

                snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
                PQfinish(conn);
                ck_abort_msg("connect failed: %s", msg);
        }
        return conn;
}

char *fx_conninfo_as(const char *conninfo, const char *role)
{
        char *out = NULL;

        if (!strncmp(conninfo, "postgres://", 11) || !strncmp(conninfo, "postgresql://", 13))
                out = strdup(conninfo);
        else
                ck_assert_msg(asprintf(&out, "%s user=%s", conninfo, role) > 0, "out of memory");
        ck_assert_msg(out != NULL, "out of memory");
        return out;
}

PGconn *fx_db_connect_as(const char *conninfo, const char *role)
{
        char *ci = fx_conninfo_as(conninfo, role);
        PGconn *conn = fx_db_connect(ci);

        free(ci);
        return conn;
}

/* Runs sql; aborts unless it succeeded. The caller clears the result. */
static PGresult *exec_sql(PGconn *conn, const char *sql)
{
        PGresult *res = PQexec(conn, sql);
        ExecStatusType st = PQresultStatus(res);

        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                char msg[512];

                snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
                PQclear(res);
                ck_abort_msg("SQL failed: %s\n  in: %.600s", msg, sql);
        }
        return res;
}

static long long scalar_sql(PGconn *conn, const char *sql)
{
        PGresult *res = exec_sql(conn, sql);
        const char *v;
        char *end;
        long long n;

        if (PQntuples(res) != 1 || PQnfields(res) != 1) {
                int rows = PQntuples(res), cols = PQnfields(res);

                PQclear(res);
                ck_abort_msg("expected one value, got %d rows x %d columns from: %.600s", rows,
                             cols, sql);
        }
        if (PQgetisnull(res, 0, 0)) {
                PQclear(res);
                return -1;
        }
        v = PQgetvalue(res, 0, 0);
        if (!strcmp(v, "t") || !strcmp(v, "f")) { /* booleans read as 1/0 */
                n = v[0] == 't';
                PQclear(res);
                return n;
        }
        errno = 0;
        n = strtoll(v, &end, 10);
        if (errno || end == v || *end) {
                char copy[64];

                snprintf(copy, sizeof(copy), "%s", v);
                PQclear(res);
                ck_abort_msg("not an integer: \"%s\" from: %.600s", copy, sql);
        }
        PQclear(res);
        return n;
}

static char *vformat(const char *fmt, va_list ap)
{
        char *s = NULL;

        ck_assert_msg(vasprintf(&s, fmt, ap) >= 0, "out of memory");
        return s;
}

void fx_sql(PGconn *conn, const char *fmt, ...)
{
        va_list ap;
        char *sql;

        va_start(ap, fmt);
        sql = vformat(fmt, ap);
        va_end(ap);
        PQclear(exec_sql(conn, sql));
        free(sql);
}

long long fx_sql_int(PGconn *conn, const char *fmt, ...)
{
        va_list ap;
        char *sql;
        long long v;

        va_start(ap, fmt);
        sql = vformat(fmt, ap);
        va_end(ap);
        v = scalar_sql(conn, sql);
        free(sql);
        return v;
}

long long fx_wait_sql(PGconn *conn, long long expected, int timeout_ms, const char *fmt, ...)
{
        int64_t deadline = fx_now_ms() + timeout_ms;
        va_list ap;
        char *sql;
        long long v;

        va_start(ap, fmt);
        sql = vformat(fmt, ap);
        va_end(ap);
        while ((v = scalar_sql(conn, sql)) != expected && fx_now_ms() < deadline)
                poll(NULL, 0, FX_POLL_MS);
        free(sql);
        return v;
}
