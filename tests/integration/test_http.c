/* Integration tests of the relay's HTTP endpoints against a hostile
 * neighbour: slow clients holding connections open (partial requests, a
 * byte at a time) must not starve /healthz, whose silence makes the
 * kubelet restart the pod; and the listener takes IPv6 and dual-stack
 * addresses. The real relay binary, a real PostgreSQL and the dev Kafka. */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "fault_harness.h"
#include "fixture.h"
#include "runner.h"

FX_DEV_SERVERS(1, 1);

/* GET http://host:port/path with curl (host may be "[::1]"); the HTTP
 * status, or -1 when nothing answered within 10 s. */
static int get(const char *host, int port, const char *path)
{
        char url[128], *out = NULL;
        const char *argv[] = {"/usr/bin/curl", "-s",         "-g", "-o", "/dev/null", "-w",
                              "%{http_code}",  "--max-time", "10", url,  NULL};
        int status = -1;

        snprintf(url, sizeof(url), "http://%s:%d%s", host, port, path);
        if (fx_run(argv, NULL, &out, 20000) == 0 && out != NULL)
                status = atoi(out);
        free(out);
        return status;
}

/* Starts a relay serving HTTP on listen and waits until /healthz answers
 * on host. */
static struct fx_relay *start_relay(const char *name, const char *listen, const char *host,
                                    int port)
{
        char *ci = fx_pg_create_db(pg, name);
        const char *args[] = {"--http-listen", listen, NULL};
        struct fx_relay *r;
        int64_t deadline = fx_now_ms() + 30000;

        fx_migrate(ci, NULL);
        r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        free(ci);
        while (get(host, port, "/healthz") != 200) {
                ck_assert_msg(fx_now_ms() < deadline, "/healthz never answered on %s", listen);
                ck_assert_msg(fx_relay_wait(r, 50) == -1, "the relay exited");
        }
        return r;
}

static void stop_relay(struct fx_relay *r)
{
        fx_relay_kill(r, SIGTERM);
        ck_assert_int_eq(fx_relay_wait(r, 30000), 0);
        fx_relay_free(r);
}

/* ---- slow clients ---- */

#define MAX_SLOW 128

/* Connections held open by a slowloris: each sent an unfinished request and
 * then gets one more header byte every 500 ms from a thread, which resets
 * the server's idle timeout. */
struct slow {
        int fd[MAX_SLOW];
        int closed[MAX_SLOW]; /* the server closed it (read by the main thread only) */
        int n;
        atomic_int stop;
        pthread_t thread;
        int running;
};

static void *drip(void *arg)
{
        struct slow *s = arg;

        while (!atomic_load(&s->stop)) {
                for (int i = 0; i < s->n; i++) /* errors: the server closed it */
                        (void)send(s->fd[i], "a", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
                usleep(500000); /* the attacker's pace, not a synchronisation */
        }
        return NULL;
}

/* Opens n connections from the loopback address from (127.0.0.0/8 is all
 * loopback on Linux, so each address is another client) to 127.0.0.1:port,
 * each with a partial request. */
static void slow_open(struct slow *s, const char *from, int port, int n)
{
        static const char partial[] = "GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: ";

        ck_assert_int_le(s->n + n, MAX_SLOW);
        for (int i = 0; i < n; i++) {
                struct sockaddr_in src = {.sin_family = AF_INET};
                struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
                int fd = socket(AF_INET, SOCK_STREAM, 0);

                ck_assert_int_ge(fd, 0);
                ck_assert_int_eq(inet_pton(AF_INET, from, &src.sin_addr), 1);
                ck_assert_int_eq(inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr), 1);
                ck_assert_msg(bind(fd, (struct sockaddr *)&src, sizeof(src)) == 0, "bind %s: %s",
                              from, strerror(errno));
                ck_assert_msg(connect(fd, (struct sockaddr *)&dst, sizeof(dst)) == 0,
                              "connect from %s: %s", from, strerror(errno));
                ck_assert_int_eq(send(fd, partial, sizeof(partial) - 1, MSG_NOSIGNAL),
                                 (ssize_t)(sizeof(partial) - 1));
                s->fd[s->n] = fd;
                s->closed[s->n] = 0;
                s->n++;
        }
}

static void slow_start(struct slow *s)
{
        atomic_store(&s->stop, 0);
        ck_assert_int_eq(pthread_create(&s->thread, NULL, drip, s), 0);
        s->running = 1;
}

static void slow_close(struct slow *s)
{
        if (s->running) {
                atomic_store(&s->stop, 1);
                pthread_join(s->thread, NULL);
                s->running = 0;
        }
        for (int i = 0; i < s->n; i++)
                close(s->fd[i]);
        s->n = 0;
}

/* Marks the connections the server has closed (EOF or reset) and returns
 * how many are closed. */
static int slow_count_closed(struct slow *s)
{
        int closed = 0;

        for (int i = 0; i < s->n; i++) {
                struct pollfd p = {.fd = s->fd[i], .events = POLLIN};
                char buf[256];

                if (!s->closed[i] && poll(&p, 1, 0) == 1) {
                        ssize_t got = recv(s->fd[i], buf, sizeof(buf), MSG_DONTWAIT);

                        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
                                s->closed[i] = 1;
                }
                closed += s->closed[i];
        }
        return closed;
}

/* Whether this machine has an IPv6 loopback to test with. */
static int have_ipv6_loopback(void)
{
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
        int fd = socket(AF_INET6, SOCK_STREAM, 0), ok;

        if (fd < 0)
                return 0;
        ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        return ok;
}

/* 40 slow connections from one neighbour (127.0.0.2), then 8 more from each
 * of five others: /healthz from 127.0.0.1 answers all along. The first
 * shows a per-client limit (the neighbour keeps at most 8; the rest are
 * closed at once), the second a total well above the 32 connections that
 * used to be all the listener took. The relay listens on [::], so this
 * also covers IPv4 clients of a dual-stack listener. */
START_TEST(slow_neighbours_do_not_starve_healthz)
{
        int port = fx_free_port();
        char listen[64];
        struct slow s = {.n = 0};
        struct fh_result res;
        struct fx_relay *r;
        int64_t deadline;
        int refused;

        snprintf(listen, sizeof(listen), "[::]:%d", port);
        r = start_relay("http_slow", listen, "127.0.0.1", port);

        slow_open(&s, "127.0.0.2", port, 40);
        slow_start(&s);
        ck_assert_int_eq(get("127.0.0.1", port, "/healthz"), 200);
        /* The neighbour was refused all but its share: poll until the
         * server's closes have arrived. */
        deadline = fx_now_ms() + 10000;
        while (slow_count_closed(&s) < 40 - 8 && fx_now_ms() < deadline)
                usleep(20000);
        refused = slow_count_closed(&s);
        ck_assert_int_ge(refused, 40 - 8);
        slow_close(&s);

        for (int a = 3; a <= 7; a++) {
                char from[32];

                snprintf(from, sizeof(from), "127.0.0.%d", a);
                slow_open(&s, from, port, 8);
        }
        slow_start(&s);
        ck_assert_int_eq(get("127.0.0.1", port, "/healthz"), 200);
        ck_assert_int_eq(get("127.0.0.1", port, "/readyz") > 0, 1);
        if (have_ipv6_loopback())
                ck_assert_int_eq(get("[::1]", port, "/healthz"), 200);
        slow_close(&s);
        stop_relay(r);
        /* Reached only when every assertion above held. */
        fh_result_init(&res, "http-slow-clients",
                       "40 slow HTTP connections (partial request, a byte every 500 ms) from one "
                       "client address, then 8 from each of five more, while /healthz is probed");
        res.committed = res.messages = -1;
        res.faults = 80;
        snprintf(res.notes, sizeof(res.notes),
                 "/healthz answered 200 throughout; %d of the first 40 closed at once (8 per "
                 "client address), 40 held from five addresses (256 in all)",
                 refused);
        fh_report(&res, 1);
}
END_TEST

/* [::1]:PORT serves on IPv6 only: ::1 answers, 127.0.0.1 does not. */
START_TEST(ipv6_loopback_listen)
{
        int port = fx_free_port();
        char listen[64];
        struct fx_relay *r;

        if (!have_ipv6_loopback()) {
                fprintf(stderr, "ipv6_loopback_listen: skipped, this machine has no ::1\n");
                return;
        }
        snprintf(listen, sizeof(listen), "[::1]:%d", port);
        r = start_relay("http_ipv6", listen, "[::1]", port);
        ck_assert_int_eq(get("[::1]", port, "/metrics"), 200);
        ck_assert_int_eq(get("127.0.0.1", port, "/healthz"), -1);
        stop_relay(r);
}
END_TEST

static const struct runner_servers servers = {suite_setup, suite_teardown};

Suite *test_suite(void)
{
        const TTest *const tests[] = {slow_neighbours_do_not_starve_healthz, ipv6_loopback_listen,
                                      NULL};

        return runner_suite("http", "http", &servers, 120, tests);
}
