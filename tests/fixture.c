/* fixture: the integration tests' harness (Kafka half in fixture_kafka.c).
 * Runs commands, a throwaway PostgreSQL and the outbox-relay binary as child
 * processes that die with the test; SQL and deadline-polling helpers. */
#include "fixture.h"
#include "fixture_int.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef OUTBOX_RELAY_BIN
#error "OUTBOX_RELAY_BIN must be defined (see tests/CMakeLists.txt)"
#endif

#define FX_PG_BIN_DEFAULT "/usr/lib/postgresql/15/bin" /* OUTBOX_TEST_PG_BIN overrides */
#define FX_PG_TIMEOUT_MS  90000
#define FX_TAIL_BYTES     1500 /* of a log, in an abort message (Check caps messages) */
#define FX_OPENSSL        "/usr/bin/openssl" /* makes the TLS fixture's certificates */

/* ---- processes ---- */

/* fork + exec. Only async-signal-safe calls in the child (librdkafka threads
 * may exist here); exec failures come back through a close-on-exec pipe. */
pid_t fx_spawn(const char *const argv[], const struct fx_spawn_opts *o, char *errbuf, size_t errsz)
{
        pid_t parent = getpid(), pid;
        int ep[2], devnull, child_errno = 0;
        ssize_t r;

        devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0 || pipe2(ep, O_CLOEXEC)) {
                snprintf(errbuf, errsz, "spawn %s: %s", argv[0], strerror(errno));
                if (devnull >= 0)
                        close(devnull);
                return -1;
        }
        pid = fork();
        child_errno = errno;
        if (pid == 0) {
                int fds[3] = {o->in, o->out, o->err};

                if (o->new_session ? setsid() < 0 : setpgid(0, 0) < 0)
                        goto child_fail;
                if (o->as_user && (setgroups(0, NULL) || setgid(o->gid) || setuid(o->uid)))
                        goto child_fail;
                /* Set after the user switch, which would clear it. */
                if (o->pdeathsig && (prctl(PR_SET_PDEATHSIG, o->pdeathsig) || getppid() != parent))
                        goto child_fail;
                for (int i = 0; i < 3; i++) {
                        if (dup2(fds[i] < 0 ? devnull : fds[i], i) < 0)
                                goto child_fail;
                }
                /* Keep the test process's other fds (Check's, watchdog
                 * pipes) out of the child; ignore kernels without it. */
                close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
                execve(argv[0], (char *const *)argv, o->envp ? o->envp : environ);
        child_fail:
                child_errno = errno;
                if (write(ep[1], &child_errno, sizeof(child_errno)) < 0)
                        _exit(126);
                _exit(127);
        }
        close(ep[1]);
        close(devnull);
        if (pid < 0) {
                snprintf(errbuf, errsz, "fork: %s", strerror(child_errno));
                close(ep[0]);
                return -1;
        }
        do
                r = read(ep[0], &child_errno, sizeof(child_errno));
        while (r < 0 && errno == EINTR);
        close(ep[0]);
        if (r > 0) {
                waitpid(pid, NULL, 0);
                snprintf(errbuf, errsz, "exec %s: %s", argv[0], strerror(child_errno));
                return -1;
        }
        return pid;
}

int64_t fx_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* waitpid with a deadline, polling. Returns 1 and the status once the child
 * has exited, 0 on timeout, -1 when pid is not our child. */
int fx_wait_pid(pid_t pid, int timeout_ms, int *status)
{
        int64_t deadline = fx_now_ms() + timeout_ms;

        for (;;) {
                pid_t r = waitpid(pid, status, WNOHANG);

                if (r == pid)
                        return 1;
                if (r < 0 && errno != EINTR)
                        return -1;
                if (fx_now_ms() >= deadline)
                        return 0;
                poll(NULL, 0, 5);
        }
}

static void append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
        if (*len + n + 1 > *cap) {
                size_t ncap = (*cap ? *cap * 2 : 4096) + n;
                char *nb = realloc(*buf, ncap);

                ck_assert_msg(nb != NULL, "out of memory");
                *buf = nb;
                *cap = ncap;
        }
        memcpy(*buf + *len, data, n);
        *len += n;
        (*buf)[*len] = '\0';
}

/* Runs argv to completion with a deadline, stdout+stderr into *output. */
static int run_capture(const char *const argv[], const struct fx_spawn_opts *base, char **output,
                       int timeout_ms)
{
        struct fx_spawn_opts o = *base;
        int64_t deadline = fx_now_ms() + timeout_ms;
        char *buf = NULL, errbuf[256];
        size_t len = 0, cap = 0;
        int p[2], status = 0, exited = 0, eof = 0;
        pid_t pid;

        ck_assert_msg(pipe2(p, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
        o.out = o.err = p[1];
        o.pdeathsig = SIGKILL;
        pid = fx_spawn(argv, &o, errbuf, sizeof(errbuf));
        close(p[1]);
        if (pid < 0) {
                close(p[0]);
                ck_abort_msg("%s", errbuf);
        }
        append(&buf, &len, &cap, "", 0);
        while (!exited) {
                struct pollfd pfd = {.fd = p[0], .events = POLLIN};
                int64_t left = deadline - fx_now_ms();

                if (left <= 0) {
                        kill(-pid, SIGKILL); /* its whole process group */
                        waitpid(pid, NULL, 0);
                        close(p[0]);
                        free(buf);
                        if (output)
                                *output = strdup("(timed out)");
                        return -1;
                }
                if (eof) { /* only the exit is left to see */
                        poll(NULL, 0, 5);
                } else if (poll(&pfd, 1, FX_POLL_MS) > 0) {
                        char chunk[4096];
                        ssize_t r = read(p[0], chunk, sizeof(chunk));

                        if (r > 0)
                                append(&buf, &len, &cap, chunk, (size_t)r);
                        else if (r == 0)
                                eof = 1;
                }
                exited = waitpid(pid, &status, WNOHANG) == pid;
        }
        /* Drain what is buffered; a daemon it left behind may hold the pipe. */
        fcntl(p[0], F_SETFL, O_NONBLOCK);
        for (;;) {
                char chunk[4096];
                ssize_t r = read(p[0], chunk, sizeof(chunk));

                if (r <= 0)
                        break;
                append(&buf, &len, &cap, chunk, (size_t)r);
        }
        close(p[0]);
        if (output)
                *output = buf;
        else
                free(buf);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* This process's environment with env ("NAME=value", NULL-terminated)
 * added or overriding, for a child: NULL when env is NULL. The strings are
 * borrowed; free the array. Never setenv() for a child instead: the fault
 * cases' writer threads read the environment (libpq) while they run. */
static char **env_merge(const char *const env[])
{
        char **envp;
        size_t n = 0, k = 0, extra = 0;

        if (!env)
                return NULL;
        while (environ[n])
                n++;
        while (env[extra])
                extra++;
        envp = calloc(n + extra + 1, sizeof(*envp));
        ck_assert_msg(envp != NULL, "out of memory");
        for (size_t i = 0; i < n; i++) {
                int overridden = 0;

                for (size_t j = 0; j < extra && !overridden; j++) {
                        size_t nl = strcspn(env[j], "=");
                        overridden = !strncmp(environ[i], env[j], nl) && environ[i][nl] == '=';
                }
                if (!overridden)
                        envp[k++] = environ[i];
        }
        for (size_t j = 0; j < extra; j++)
                envp[k++] = (char *)env[j];
        return envp;
}

int fx_run(const char *const argv[], const char *const env[], char **output, int timeout_ms)
{
        struct fx_spawn_opts o = {.in = -1, .out = -1, .err = -1};
        char **envp = env_merge(env);
        int rc;

        o.envp = envp;
        rc = run_capture(argv, &o, output, timeout_ms);
        free(envp);
        return rc;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        (void)st;
        (void)type;
        (void)ftw;
        return remove(path) && errno != ENOENT ? -1 : 0;
}

static void rm_rf(const char *dir)
{
        if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) && errno != ENOENT)
                fprintf(stderr, "fixture: could not remove %s: %s\n", dir, strerror(errno));
}

/* The last FX_TAIL_BYTES of a file (malloc'ed, never NULL). */
static char *file_tail(const char *path, size_t max)
{
        FILE *f = fopen(path, "r");
        char *buf = calloc(1, max + 1);
        long size;
        size_t n = 0;

        ck_assert_msg(buf != NULL, "out of memory");
        if (!f)
                return buf;
        if (max && fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0) {
                fseek(f, size > (long)max ? size - (long)max : 0, SEEK_SET);
                n = fread(buf, 1, max, f);
        }
        buf[n] = '\0';
        fclose(f);
        return buf;
}

static char *file_read(const char *path)
{
        struct stat st;

        if (stat(path, &st))
                return strdup("");
        return file_tail(path, (size_t)st.st_size);
}

/* ---- PostgreSQL ---- */

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
        return run_capture(argv, &o, output, FX_PG_TIMEOUT_MS);
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

static int free_port(void)
{
        struct sockaddr_in sin = {.sin_family = AF_INET};
        socklen_t len = sizeof(sin);
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (s >= 0 && !bind(s, (struct sockaddr *)&sin, sizeof(sin)) &&
            !getsockname(s, (struct sockaddr *)&sin, &len))
                port = ntohs(sin.sin_port);
        if (s >= 0)
                close(s);
        ck_assert_msg(port > 0, "no free port: %s", strerror(errno));
        return port;
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
        *why = file_tail(pg->logfile, FX_TAIL_BYTES);
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

/* Runs openssl with the given arguments (NULL-terminated) as o says. */
static void run_openssl(const struct fx_spawn_opts *o, const char *const args[])
{
        const char *argv[32] = {FX_OPENSSL};
        char *out = NULL;
        int n = 1, rc;

        while (args[n - 1] != NULL && n < 31) {
                argv[n] = args[n - 1];
                n++;
        }
        argv[n] = NULL;
        rc = run_capture(argv, o, &out, 60000);
        ck_assert_msg(rc == 0, "openssl %s failed (%d): %.*s", args[0], rc, FX_TAIL_BYTES,
                      out ? out : "");
        free(out);
}

static void make_ca(const struct fx_spawn_opts *o, const char *dir, const char *name)
{
        char key[256], crt[256], subj[128];

        snprintf(key, sizeof(key), "%s/%s.key", dir, name);
        snprintf(crt, sizeof(crt), "%s/%s.crt", dir, name);
        snprintf(subj, sizeof(subj), "/CN=outbox test CA %s", name);
        run_openssl(o, (const char *const[]){"req", "-x509", "-newkey", "ec", "-pkeyopt",
                                             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                                             key, "-out", crt, "-days", "2", "-subj", subj, NULL});
}

void fx_make_ca(const char *dir, const char *name)
{
        struct fx_spawn_opts o = {.in = -1, .out = -1, .err = -1};

        make_ca(&o, dir, name);
}

/* A CA and a server certificate for 127.0.0.1 and localhost signed by it,
 * made as the server's user so that the key is the server's, mode 0600,
 * as PostgreSQL demands. */
static void pg_setup_tls(struct fx_pg *pg)
{
        struct fx_spawn_opts o = pg_opts(pg);
        char key[128], csr[128], crt[128], ext[128], ca[128], cakey[128], conf[512];
        FILE *f;

        make_ca(&o, pg->dir, "ca");
        snprintf(key, sizeof(key), "%s/server.key", pg->dir);
        snprintf(csr, sizeof(csr), "%s/server.csr", pg->dir);
        snprintf(crt, sizeof(crt), "%s/server.crt", pg->dir);
        snprintf(ext, sizeof(ext), "%s/server.ext", pg->dir);
        snprintf(ca, sizeof(ca), "%s/ca.crt", pg->dir);
        snprintf(cakey, sizeof(cakey), "%s/ca.key", pg->dir);
        run_openssl(&o, (const char *const[]){"req", "-new", "-newkey", "ec", "-pkeyopt",
                                              "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                                              key, "-out", csr, "-subj", "/CN=127.0.0.1", NULL});
        f = fopen(ext, "w");
        ck_assert_msg(f != NULL, "%s: %s", ext, strerror(errno));
        fputs("subjectAltName = IP:127.0.0.1, DNS:localhost\n", f);
        ck_assert_msg(fclose(f) == 0, "%s: %s", ext, strerror(errno));
        run_openssl(&o, (const char *const[]){"x509", "-req", "-in", csr, "-CA", ca, "-CAkey",
                                              cakey, "-CAcreateserial", "-out", crt, "-days", "2",
                                              "-extfile", ext, NULL});
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
                pg->port = free_port();
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
        rm_rf(pg->dir);
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

/* Whether the conninfo names user= more than once: a test that wants the
 * relay to run as another role appends its own. */
static int names_user_twice(const char *conninfo)
{
        const char *p = strstr(conninfo, "user=");

        return p != NULL && strstr(p + 5, "user=") != NULL;
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

/* ---- the relay ---- */

struct fx_relay {
        pid_t pid;
        int reaped;
        int code; /* once reaped: exit code or 128 + signal */
        char dir[64];
        char logfile[96];
        char *conninfo; /* as FX_RELAY_ROLE */
};

/* OUTBOX_TEST_RELAY_WRAPPER, e.g. "/usr/bin/valgrind --leak-check=full",
 * runs the relay under that command: its words (split on spaces, the first
 * an absolute path) go before the relay's argv. Returns the word count;
 * *copy (malloc'ed, NULL when unset) holds the words until freed. */
static size_t relay_wrapper(const char **argv, size_t max, char **copy)
{
        const char *env = getenv("OUTBOX_TEST_RELAY_WRAPPER");
        char *save = NULL;
        size_t n = 0;

        *copy = NULL;
        if (!env || !*env)
                return 0;
        *copy = strdup(env);
        ck_assert_msg(*copy != NULL, "out of memory");
        for (char *w = strtok_r(*copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
                ck_assert_msg(n < max, "OUTBOX_TEST_RELAY_WRAPPER has too many words");
                argv[n++] = w;
        }
        ck_assert_msg(n == 0 || argv[0][0] == '/',
                      "OUTBOX_TEST_RELAY_WRAPPER must start with an absolute path");
        return n;
}

struct fx_relay *fx_relay_start(const char *conninfo, const char *brokers,
                                const char *const extra_args[])
{
        return fx_relay_start_env(conninfo, brokers, extra_args, NULL);
}

struct fx_relay *fx_relay_start_env(const char *conninfo, const char *brokers,
                                    const char *const extra_args[], const char *const env[])
{
        struct fx_relay *r = calloc(1, sizeof(*r));
        struct fx_spawn_opts o = {.in = -1, .pdeathsig = SIGKILL};
        const char *argv[80];
        char errbuf[256], *wrapper, **envp;
        size_t n = relay_wrapper(argv, 16, &wrapper);
        int fd;

        ck_assert_msg(r != NULL, "out of memory");
        /* NULL: the test gives the URL another way (OUTBOX_DATABASE_URL_FILE). */
        r->conninfo = conninfo == NULL             ? NULL
                      : names_user_twice(conninfo) ? strdup(conninfo)
                                                   : fx_conninfo_as(conninfo, FX_RELAY_ROLE);
        ck_assert_msg(conninfo == NULL || r->conninfo != NULL, "out of memory");
        argv[n++] = OUTBOX_RELAY_BIN;
        argv[n++] = "run";
        if (r->conninfo != NULL) {
                argv[n++] = "--database-url";
                argv[n++] = r->conninfo;
        }
        argv[n++] = "--kafka-brokers";
        argv[n++] = brokers;
        for (size_t i = 0; extra_args && extra_args[i]; i++) {
                ck_assert_msg(n < 79, "too many relay arguments");
                argv[n++] = extra_args[i];
        }
        argv[n] = NULL;
        snprintf(r->dir, sizeof(r->dir), "/tmp/fxrelay-XXXXXX");
        ck_assert_msg(mkdtemp(r->dir) != NULL, "mkdtemp: %s", strerror(errno));
        snprintf(r->logfile, sizeof(r->logfile), "%s/relay.log", r->dir);
        fd = open(r->logfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ck_assert_msg(fd >= 0, "%s: %s", r->logfile, strerror(errno));
        o.out = o.err = fd;
        envp = env_merge(env);
        o.envp = envp;
        r->pid = fx_spawn(argv, &o, errbuf, sizeof(errbuf));
        free(envp);
        close(fd);
        free(wrapper);
        ck_assert_msg(r->pid > 0, "%s", errbuf);
        return r;
}

pid_t fx_relay_pid(const struct fx_relay *r)
{
        return r->pid;
}

void fx_relay_kill(struct fx_relay *r, int sig)
{
        if (!r->reaped)
                kill(r->pid, sig);
}

static void relay_set_code(struct fx_relay *r, int status)
{
        r->reaped = 1;
        r->code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int fx_relay_wait(struct fx_relay *r, int timeout_ms)
{
        int status;

        if (!r->reaped && fx_wait_pid(r->pid, timeout_ms, &status) == 1)
                relay_set_code(r, status);
        return r->reaped ? r->code : -1;
}

char *fx_relay_log(const struct fx_relay *r)
{
        return file_read(r->logfile);
}

const char *fx_sanitizer_report(const char *text)
{
        static const char *const marks[] = {"ERROR: AddressSanitizer",
                                            "runtime error:", "LeakSanitizer"};
        const char *first = NULL;

        for (size_t i = 0; text && i < sizeof(marks) / sizeof(marks[0]); i++) {
                const char *p = strstr(text, marks[i]);

                if (p && (!first || p < first))
                        first = p;
        }
        while (first && first > text && first[-1] != '\n')
                first--;
        return first;
}

void fx_relay_free(struct fx_relay *r)
{
        char report[FX_TAIL_BYTES + 1] = "", *log;
        const char *at;
        pid_t pid;
        int status;

        if (!r)
                return;
        if (!r->reaped) {
                kill(r->pid, SIGKILL);
                if (waitpid(r->pid, &status, 0) == r->pid)
                        relay_set_code(r, status);
        }
        /* UBSan goes on after a report and a killed relay never reaches the
         * leak check, so its exit code alone may hide one: read the log. */
        log = file_read(r->logfile);
        at = fx_sanitizer_report(log);
        if (at)
                snprintf(report, sizeof(report), "%s", at);
        pid = r->pid;
        free(log);
        rm_rf(r->dir);
        free(r->conninfo);
        free(r);
        ck_assert_msg(report[0] == '\0', "the relay (pid %d) logged a sanitizer report:\n%s",
                      (int)pid, report);
}

void fx_migrate(const char *conninfo, const char *schema)
{
        const char *argv[] = {OUTBOX_RELAY_BIN,
                              "migrate",
                              "--database-url",
                              conninfo,
                              "--grant-writer",
                              FX_WRITER_ROLE,
                              "--grant-relay",
                              FX_RELAY_ROLE,
                              schema ? "--schema" : NULL,
                              schema,
                              NULL};
        char *out = NULL;
        int rc = fx_run(argv, NULL, &out, 60000);

        ck_assert_msg(rc == 0, "outbox-relay migrate exited %d: %.*s", rc, FX_TAIL_BYTES, out);
        ck_assert_msg(fx_sanitizer_report(out) == NULL,
                      "outbox-relay migrate logged a sanitizer report:\n%.*s", FX_TAIL_BYTES,
                      fx_sanitizer_report(out));
        free(out);
}

/* ---- HTTP ---- */

/* A port that was free a moment ago. */
int fx_free_port(void)
{
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM, 0), port;

        ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
        port = ntohs(a.sin_port);
        close(fd);
        return port;
}

/* GETs http://127.0.0.1:port/path with curl; returns the HTTP status and
 * the body in *body, or -1 (and *body NULL) when nothing answered. */
int fx_http_get(int port, const char *path, char **body)
{
        char url[128], *out = NULL;
        const char *argv[] = {"/usr/bin/curl", "-s", "-w", "\n%{http_code}", url, NULL};
        char *nl;
        int status;

        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
        if (fx_run(argv, NULL, &out, 10000) != 0) {
                free(out);
                *body = NULL;
                return -1;
        }
        nl = strrchr(out, '\n');
        ck_assert_ptr_nonnull(nl);
        status = atoi(nl + 1);
        *nl = '\0';
        *body = out;
        return status;
}

/* The value of one sample line ("name{labels} value") in a scrape, or -1. */
double fx_metric(const char *scrape, const char *series)
{
        size_t n = strlen(series);

        for (const char *p = scrape; (p = strstr(p, series)) != NULL; p += n)
                if ((p == scrape || p[-1] == '\n') && p[n] == ' ')
                        return atof(p + n + 1);
        return -1;
}
