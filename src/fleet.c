/* fleet: runs the outboxes of --outboxes-file in one process. Each outbox
 * is a relay in its own thread, so that a database that is down or slow
 * stalls only its own loop; nothing is shared between them but the log
 * stream (one fwrite per line) and what this thread reads under each
 * outbox's own lock, never held across a database or Kafka call: its
 * metrics and the status its loop publishes after each turn. */
#include "fleet.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "relay.h"

/* How often a loop's turn refreshes what /readyz says of it. */
#define STATUS_EVERY_MS 200
/* /healthz fails when a loop has not turned for this long: each turns at
 * least once a second, so this is a thread stuck, not a slow database. */
#define STUCK_AFTER_MS 60000

struct member {
        struct fleet *fleet;
        const char *name;
        const struct config *cfg;
        struct log *lg;
        struct metrics *metrics;
        int stop_fd; /* eventfd: one write per stop step (relay_opts) */
        pthread_t thread;
        int started;
        _Atomic int64_t last_turn_ms;
        int64_t next_status_ms; /* the member's thread only */
        pthread_mutex_t lock;   /* guards what follows */
        int ready;
        int failed; /* its last run ended on an error */
        char why[800];
};

struct fleet {
        const struct config *cfg;
        struct log *lg;
        struct member *members;
        size_t n;
        const struct metrics **ms; /* for metrics_render_many */
        const char **names;
        int sig_fd;  /* SIGTERM, SIGINT */
        int done_fd; /* eventfd: a member's thread ended */
        struct http *http;
        atomic_int stopping;
};

static int64_t mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_status(struct member *m, int ready, int failed, const char *why)
{
        pthread_mutex_lock(&m->lock);
        m->ready = ready;
        m->failed = failed;
        snprintf(m->why, sizeof(m->why), "%s", why);
        pthread_mutex_unlock(&m->lock);
}

#ifdef OUTBOX_TEST_HOOKS
/* Test hook for /healthz: OUTBOX_RELAY_TEST_STALL_OUTBOX=<name> stalls that
 * outbox's loop in its first turn until the process stops, its last turn
 * dated STUCK_AFTER_MS ago, so that a test sees the stuck loop without
 * waiting a minute. Compiled only with -DOUTBOX_TEST_HOOKS=ON. */
static void test_hook_turn(struct member *m)
{
        const char *name = getenv("OUTBOX_RELAY_TEST_STALL_OUTBOX");
        struct pollfd p = {m->stop_fd, POLLIN, 0};

        if (name == NULL || strcmp(name, m->name) != 0)
                return;
        log_warn(m->lg, "test hook: loop stalled until the process stops", NULL);
        atomic_store(&m->last_turn_ms, mono_ms() - STUCK_AFTER_MS - 1000);
        /* Not read: the relay's loop sees the stop afterwards. */
        while (!atomic_load(&m->fleet->stopping) && poll(&p, 1, 1000) == 0)
                ;
}
#else
static void test_hook_turn(struct member *m)
{
        (void)m;
}
#endif

/* In the member's thread, after each turn of its relay's loop. */
static void on_turn(void *arg, struct relay *r, int64_t now)
{
        struct member *m = arg;
        char why[512] = "";
        int ready;

        (void)now;
        atomic_store(&m->last_turn_ms, mono_ms());
        test_hook_turn(m);
        if (mono_ms() < m->next_status_ms)
                return;
        m->next_status_ms = mono_ms() + STATUS_EVERY_MS;
        ready = relay_ready(r, why, sizeof(why));
        set_status(m, ready, 0, why);
}

/* Waits delay ms or until the process stops; says it is alive meanwhile. */
static void backoff_wait(struct member *m, int delay)
{
        int64_t until = mono_ms() + delay;

        while (!atomic_load(&m->fleet->stopping) && mono_ms() < until) {
                int64_t left = until - mono_ms();
                struct pollfd p = {m->stop_fd, POLLIN, 0};

                atomic_store(&m->last_turn_ms, mono_ms());
                /* Not read: a stop asked now is for the next relay too. */
                if (poll(&p, 1, left > 1000 ? 1000 : (int)(left > 0 ? left : 0)) > 0)
                        break;
        }
}

/* What a relay's gauges say of its own state (its sessions, its lock, its
 * producer), cleared when it ends: they would go on showing a leader and
 * a connected producer through the backoff, and the restarted relay sets
 * Kafka's only with its first statistics. The backlog gauges describe the
 * database and keep their last value, so that lag alerts still fire. */
static void clear_relay_gauges(struct metrics *ms)
{
        static const enum metrics_gauge own[] = {METRICS_DB_CONNECTED, METRICS_KAFKA_CONNECTED,
                                                 METRICS_LEADER,       METRICS_KAFKA_QUEUE,
                                                 METRICS_IN_FLIGHT,    METRICS_LEADER_LOCK_FOREIGN};

        for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
                metrics_set(ms, own[i], 0);
}

/* A relay that stops on an error (a missing schema, a producer that cannot
 * be built) is started again after a backoff rather than stopping the
 * process: a restart of the process would stall every other outbox. */
static void *member_main(void *arg)
{
        struct member *m = arg;
        struct backoff bo;
        int attempt = 0;

        backoff_init(&bo, 1000, m->cfg->reconnect_max_ms, (uint64_t)mono_ms() ^ (uintptr_t)m);
        while (!atomic_load(&m->fleet->stopping)) {
                struct relay_opts o = {m->stop_fd, m->metrics, on_turn, m};
                char err[512], why[700];
                struct relay *r;
                int rc = -1, delay;

                m->next_status_ms = 0;
                r = relay_new_opts(m->cfg, m->lg, &o, err, sizeof(err));
                if (r != NULL) {
                        log_info(m->lg, "outbox starting", "{s:s,s:s}", "instance",
                                 m->cfg->instance_id, "schema", m->cfg->schema);
                        rc = relay_run(r, err, sizeof(err));
                        relay_free(r);
                        clear_relay_gauges(m->metrics);
                }
                if (rc == 0) {
                        set_status(m, 0, 0, "stopped");
                        break;
                }
                delay = backoff_delay_ms(&bo, ++attempt);
                log_error(m->lg, "outbox stopped on an error: starting it again", "{s:s,s:i}",
                          "error", err, "retry_in_ms", delay);
                snprintf(why, sizeof(why), "stopped on an error, starting again: %s", err);
                set_status(m, 0, 1, why);
                backoff_wait(m, delay);
        }
        eventfd_write(m->fleet->done_fd, 1);
        return NULL;
}

/* /readyz: ready when every outbox is; else the ones that are not. */
static int fleet_ready(void *arg, char *why, size_t whysz)
{
        struct fleet *f = arg;
        size_t used = 0;
        int ready = 1;

        why[0] = '\0';
        for (size_t i = 0; i < f->n; i++) {
                struct member *m = &f->members[i];

                pthread_mutex_lock(&m->lock);
                if (!m->ready) {
                        ready = 0;
                        if (used < whysz)
                                used +=
                                    (size_t)snprintf(why + used, whysz - used, "%soutbox %s: %s",
                                                     used > 0 ? "; " : "", m->name, m->why);
                }
                pthread_mutex_unlock(&m->lock);
        }
        return ready;
}

/* /healthz: every outbox's thread still turns. */
static int fleet_live(void *arg, char *why, size_t whysz)
{
        struct fleet *f = arg;
        int64_t now = mono_ms();

        for (size_t i = 0; i < f->n; i++) {
                int64_t last = atomic_load(&f->members[i].last_turn_ms);

                if (now - last > STUCK_AFTER_MS) {
                        snprintf(why, whysz, "outbox %s: its loop has not turned for %lld s",
                                 f->members[i].name, (long long)((now - last) / 1000));
                        return 0;
                }
        }
        return 1;
}

static char *fleet_metrics(void *arg, size_t *len)
{
        struct fleet *f = arg;

        return metrics_render_many(f->ms, f->names, f->n, len);
}

/* Member i of f, for outbox o: its log, metrics and stop eventfd. Once its
 * lock is made f->n counts it, and fleet_free releases what it took. */
static int member_init(struct fleet *f, size_t i, const struct config_outbox *o, char *errbuf,
                       size_t errsz)
{
        struct member *m = &f->members[i];

        m->stop_fd = -1;
        m->fleet = f;
        m->name = f->names[i] = o->name;
        m->cfg = o->cfg;
        snprintf(m->why, sizeof(m->why), "starting");
        atomic_store(&m->last_turn_ms, mono_ms());
        if (pthread_mutex_init(&m->lock, NULL) != 0) {
                snprintf(errbuf, errsz, "pthread_mutex_init failed");
                return -1;
        }
        f->n = i + 1; /* what fleet_free releases */
        m->lg = log_new(stderr, m->cfg->log_level);
        m->metrics = metrics_new();
        if (m->lg == NULL || m->metrics == NULL || log_set_outbox(m->lg, m->name) != 0) {
                snprintf(errbuf, errsz, "out of memory");
                return -1;
        }
        metrics_share(m->metrics);
        f->ms[i] = m->metrics;
        if ((m->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
                snprintf(errbuf, errsz, "eventfd: %s", strerror(errno));
                return -1;
        }
        return 0;
}

struct fleet *fleet_new(const struct config *cfg, const struct config_outbox *outboxes, size_t n,
                        struct log *lg, char *errbuf, size_t errsz)
{
        struct fleet *f = calloc(1, sizeof(*f));
        sigset_t mask;

        if (f == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                return NULL;
        }
        f->cfg = cfg;
        f->lg = lg;
        f->sig_fd = f->done_fd = -1;
        f->members = calloc(n, sizeof(*f->members));
        f->ms = calloc(n, sizeof(*f->ms));
        f->names = calloc(n, sizeof(*f->names));
        if (f->members == NULL || f->ms == NULL || f->names == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                goto fail;
        }
        for (size_t i = 0; i < n; i++) {
                if (member_init(f, i, &outboxes[i], errbuf, errsz) != 0)
                        goto fail;
        }
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if ((f->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
            (f->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
                snprintf(errbuf, errsz, "signalfd or eventfd: %s", strerror(errno));
                goto fail;
        }
        if (cfg->http_listen != NULL) {
                struct http_handlers hd = {fleet_metrics, fleet_ready, fleet_live};

                f->http = http_new_with(cfg->http_listen, &hd, f, errbuf, errsz);
                if (f->http == NULL)
                        goto fail;
        }
        return f;
fail:
        fleet_free(f);
        return NULL;
}

void fleet_free(struct fleet *f)
{
        if (f == NULL)
                return;
        http_free(f->http);
        for (size_t i = 0; i < f->n; i++) {
                struct member *m = &f->members[i];

                if (m->stop_fd >= 0)
                        close(m->stop_fd);
                metrics_free(m->metrics);
                log_free(m->lg);
                pthread_mutex_destroy(&m->lock);
        }
        if (f->sig_fd >= 0)
                close(f->sig_fd);
        if (f->done_fd >= 0)
                close(f->done_fd);
        free(f->members);
        free(f->ms);
        free(f->names);
        free(f);
}

/* Each signal is one stop step for every outbox: the first drains, the
 * second stops at once (as a relay of its own would take them). */
static void handle_signals(struct fleet *f)
{
        struct signalfd_siginfo si;

        while (read(f->sig_fd, &si, sizeof(si)) == sizeof(si)) {
                log_info(f->lg, "stopping every outbox", "{s:s,s:i}", "signal",
                         strsignal((int)si.ssi_signo), "outboxes", (int)f->n);
                atomic_store(&f->stopping, 1);
                for (size_t i = 0; i < f->n; i++)
                        eventfd_write(f->members[i].stop_fd, 1);
        }
}

int fleet_run(struct fleet *f, char *errbuf, size_t errsz)
{
        size_t started = 0, ended = 0;
        int rc = 0;

        for (; started < f->n; started++) {
                int err = pthread_create(&f->members[started].thread, NULL, member_main,
                                         &f->members[started]);

                if (err != 0) {
                        snprintf(errbuf, errsz, "cannot start a thread for outbox %s: %s",
                                 f->members[started].name, strerror(err));
                        rc = -1;
                        /* The started ones stop as on SIGTERM. */
                        atomic_store(&f->stopping, 1);
                        for (size_t i = 0; i < started; i++)
                                eventfd_write(f->members[i].stop_fd, 1);
                        break;
                }
                f->members[started].started = 1;
        }
        while (ended < started) {
                struct pollfd fds[3] = {{f->sig_fd, POLLIN, 0},
                                        {f->done_fd, POLLIN, 0},
                                        {f->http != NULL ? http_fd(f->http) : -1, POLLIN, 0}};
                int timeout = f->http != NULL ? http_timeout_ms(f->http) : -1;
                eventfd_t n;

                if (timeout < 0 || timeout > 1000)
                        timeout = 1000;
                if (poll(fds, 3, timeout) < 0 && errno != EINTR) {
                        snprintf(errbuf, errsz, "poll: %s", strerror(errno));
                        rc = -1;
                        atomic_store(&f->stopping, 1);
                        for (size_t i = 0; i < f->n; i++)
                                eventfd_write(f->members[i].stop_fd, 2);
                        break;
                }
                if (fds[0].revents)
                        handle_signals(f);
                if (fds[1].revents && eventfd_read(f->done_fd, &n) == 0)
                        ended += (size_t)n;
                if (f->http != NULL)
                        http_serve(f->http);
        }
        for (size_t i = 0; i < started; i++) {
                pthread_join(f->members[i].thread, NULL);
                if (f->members[i].failed && rc == 0) {
                        snprintf(errbuf, errsz, "outbox %s: %s", f->members[i].name,
                                 f->members[i].why);
                        rc = -1;
                }
        }
        return rc;
}
