/* fixture: the integration tests' harness: runs commands and the
 * outbox-relay binary as child processes that die with the test; its
 * PostgreSQL is in fixture_pg.c, certificates in fixture_tls.c, the dev
 * Kafka in fixture_kafka.c. */
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
#include <signal.h>
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
int fx_run_capture(const char *const argv[], const struct fx_spawn_opts *base, char **output,
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
        rc = fx_run_capture(argv, &o, output, timeout_ms);
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

void fx_rm_rf(const char *dir)
{
        if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) && errno != ENOENT)
                fprintf(stderr, "fixture: could not remove %s: %s\n", dir, strerror(errno));
}

/* The last FX_TAIL_BYTES of a file (malloc'ed, never NULL). */
char *fx_file_tail(const char *path, size_t max)
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

char *fx_file_read(const char *path)
{
        struct stat st;

        if (stat(path, &st))
                return strdup("");
        return fx_file_tail(path, (size_t)st.st_size);
}

/* ---- the relay ---- */
/* Whether the conninfo names user= more than once: a test that wants the
 * relay to run as another role appends its own. */
static int names_user_twice(const char *conninfo)
{
        const char *p = strstr(conninfo, "user=");

        return p != NULL && strstr(p + 5, "user=") != NULL;
}

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
        return fx_file_read(r->logfile);
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
        log = fx_file_read(r->logfile);
        at = fx_sanitizer_report(log);
        if (at)
                snprintf(report, sizeof(report), "%s", at);
        pid = r->pid;
        free(log);
        fx_rm_rf(r->dir);
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
