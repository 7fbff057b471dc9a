/* relay: the event loop. Data flows one way: database (fetch) -> producer
 * -> delivery reports -> database (mark sent / record failure). Up to
 * pipeline_depth batches are in flight at once; one poll() waits on the
 * database sockets, the producer's wake-up pipe, the HTTP listener and a
 * signalfd. The loop owns the batches and acts on what its modules decide. */
#include "relay.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "backoff.h"
#include "config.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "message.h"
#include "metrics.h"
#include "producer.h"
#include "relay_batch.h"
#include "relay_floor.h"
#include "relay_int.h"
#include "relay_mark.h"
#include "relay_txn_state.h"
#include "route.h"

static void batch_reported(struct relay *r, struct batch *b);
static void batch_check_done(struct relay *r, struct batch *b);

/* 1 when every signal of mask is blocked. main blocks them first thing,
 * before any thread starts (librdkafka's inherit the mask): unblocked, they
 * would kill the process instead of reaching the signalfd. */
static int signals_blocked(const sigset_t *mask)
{
        sigset_t blocked;

        if (sigprocmask(SIG_BLOCK, NULL, &blocked) != 0)
                return 0;
        for (int sig = 1; sig < NSIG; sig++)
                if (sigismember(mask, sig) == 1 && sigismember(&blocked, sig) != 1)
                        return 0;
        return 1;
}

struct relay *relay_new(const struct config *cfg, struct log *lg, char *errbuf, size_t errsz)
{
        return relay_new_opts(cfg, lg, NULL, errbuf, errsz);
}

int relay_ready(struct relay *r, char *why, size_t whysz)
{
        return relay_is_ready(r, why, whysz);
}

/* What stops the loop: the fleet's eventfd (opts given: one per outbox,
 * the signals are the fleet's), or a signalfd of its own. */
static int stop_source(struct relay *r, const struct relay_opts *opts, char *errbuf, size_t errsz)
{
        sigset_t mask;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if (opts != NULL) {
                r->sig_fd = opts->stop_fd;
                r->sig_is_stop_fd = 1;
                r->on_turn = opts->on_turn;
                r->turn_arg = opts->arg;
                r->metrics = opts->metrics;
                r->metrics_borrowed = opts->metrics != NULL;
                return 0;
        }
        if (!signals_blocked(&mask)) {
                snprintf(errbuf, errsz, "SIGTERM and SIGINT must be blocked before relay_new");
                return -1;
        }
        if ((r->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
                snprintf(errbuf, errsz, "signalfd: %s", strerror(errno));
                return -1;
        }
        return 0;
}

struct relay *relay_new_opts(const struct config *cfg, struct log *lg,
                             const struct relay_opts *opts, char *errbuf, size_t errsz)
{
        struct relay *r = calloc(1, sizeof(*r));

        if (r == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                return NULL;
        }
        r->cfg = cfg;
        r->lg = lg;
        r->hooks.batch_reported = batch_reported;
        r->hooks.batch_check_done = batch_check_done;
        r->sig_fd = -1;
        r->trace = log_enabled(lg, LOG_LEVEL_DEBUG);
        if (stop_source(r, opts, errbuf, errsz) != 0)
                goto fail;
        r->route = route_new(cfg->routes, cfg->n_routes, cfg->default_topic, errbuf, errsz);
        if (r->route == NULL ||
            route_guard(r->route, cfg->allowed_topics, cfg->progress_topic, errbuf, errsz) != 0)
                goto fail;
        if (relay_envelope_init(r, errbuf, errsz) != 0)
                goto fail;
        r->held = json_object();
        r->floor = relay_floor_new(lg);
        r->marks = relay_marks_new(cfg->exactly_once ? 0 : cfg->mark_delay_ms, cfg->batch_size,
                                   cfg->pipeline_depth);
        r->duty = relay_duties_new(cfg);
        r->db = db_new(cfg, lg);
        if (r->metrics == NULL)
                r->metrics = metrics_new();
        if (r->held == NULL || r->floor == NULL || r->marks == NULL || r->duty == NULL ||
            r->db == NULL || r->metrics == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                goto fail;
        }
        r->producer = producer_new(cfg, lg, r->metrics, relay_on_delivery, r, errbuf, errsz);
        if (r->producer == NULL)
                goto fail;
        if (cfg->http_listen != NULL) {
                r->http = http_new(cfg->http_listen, r->metrics, relay_is_ready, r, errbuf, errsz);
                if (r->http == NULL)
                        goto fail;
        }
        backoff_init(&r->retry_backoff, cfg->retry_base_ms, cfg->retry_max_ms,
                     (uint64_t)now_ms() ^ (uint64_t)getpid());
        backoff_init(&r->reconnect_backoff, 100, cfg->reconnect_max_ms, (uint64_t)now_ms());
        if (cfg->exactly_once && relay_txn_init(r, errbuf, errsz) != 0)
                goto fail;
        return r;
fail:
        relay_free(r);
        return NULL;
}

/* One line per batch with its times and each row's (struct batch_trace):
 * [id, produced_us, reported_us], 0 for a time not noted. */
static void batch_trace_log(const struct batch *b)
{
        json_t *rows = json_array();

        for (int i = 0; i < b->n && rows != NULL; i++)
                json_array_append_new(rows, json_pack("[I,I,I]", (json_int_t)b->rows[i].m.id,
                                                      (json_int_t)b->rows[i].produced_us,
                                                      (json_int_t)b->rows[i].reported_us));
        log_debug(b->relay->lg, "batch trace", "{s:I,s:I,s:I,s:i,s:o}", "want_us",
                  (json_int_t)b->trace.want_us, "sent_us", (json_int_t)b->trace.sent_us,
                  "fetched_us", (json_int_t)b->trace.fetched_us, "held", b->trace.held, "rows",
                  rows != NULL ? rows : json_null());
}

static void batch_free(struct batch *b)
{
        if (b->relay != NULL && b->relay->trace)
                batch_trace_log(b);
        if (b->relay != NULL)
                b->relay->held_bytes -= b->bytes;
        for (int i = 0; i < b->n; i++)
                free(b->rows[i].error);
        free(b->rows);
        db_rows_free(b->res);
        free(b);
}

void relay_free(struct relay *r)
{
        if (r == NULL)
                return;
        relay_txn_free(r);
        /* Reports of purged messages still point into the batches. */
        producer_free(r->producer);
        r->producer = NULL;
        db_free(r->db);
        while (r->batches != NULL) {
                struct batch *b = r->batches;

                r->batches = b->next;
                batch_free(b);
        }
        http_free(r->http);
        if (!r->metrics_borrowed)
                metrics_free(r->metrics);
        route_free(r->route);
        message_envelope_free(r->envelope);
        json_decref(r->held);
        relay_floor_free(r->floor);
        relay_marks_free(r->marks);
        relay_duties_free(r->duty);
        if (r->sig_fd >= 0 && !r->sig_is_stop_fd)
                close(r->sig_fd);
        free(r);
}

/* ---- finishing a batch: mark sent rows, record failures ---- */

/* Queues what the batch still needs from the database. Called when its
 * last report arrives and again after a reconnect. */
static void batch_submit(struct relay *r, struct batch *b)
{
        if (!db_connected(r->db))
                return;
        b->in_submit = 1;
        relay_marks_due(r->marks, b, now_ms());
        relay_submit_failures(r, b);
        /* Failures of earlier batches may have waited for these reports. */
        relay_submit_waiting(r);
        b->in_submit = 0;
        batch_check_done(r, b);
}

static void batch_check_done(struct relay *r, struct batch *b)
{
        struct batch **pp;

        if (!batch_done(b))
                return;
        for (pp = &r->batches; *pp != b; pp = &(*pp)->next)
                ;
        *pp = b->next;
        r->n_batches--;
        relay_release_keys(r);
        /* Rows it left pending are fetchable again now (from below the
         * floor); and after failures the next row of a failing key may be
         * due as soon as the row before it was published. */
        if (b->left_pending)
                relay_floor_lower(r->floor);
        if (b->left_pending || r->duty->failing)
                r->want_fetch = 1;
        batch_free(b);
        if (r->n_batches == 0 && r->duty->failing && r->duty->leader && db_connected(r->db))
                relay_check_failing(r);
}

/* Every row of b has its outcome from the producer: finish it, or with
 * --exactly-once let the loop finish its transaction first. */
static void batch_reported(struct relay *r, struct batch *b)
{
        if (b->outstanding > 0 || b->state < BATCH_IN_FLIGHT)
                return;
        if (b->txn == BATCH_TXN_OPEN) {
                relay_txn_poke(
                    r->tx); /* not from here: this may run inside a librdkafka callback */
                return;
        }
        if (b->state == BATCH_IN_FLIGHT)
                batch_set_state(b, BATCH_REPORTED);
        batch_submit(r, b);
}

static void fetched(struct relay *r, struct db_rows *res, const char *error);

static void on_fetched(void *arg, struct db_rows *res, const char *error)
{
        struct relay *r = arg;

        r->fetch_queued = 0;
        fetched(r, res, error);
        relay_release_keys(r);
}

/* b takes the n rows of res and goes last in the pipeline: appended
 * before producing, as reports may arrive while it is produced. */
static void append_batch(struct relay *r, struct batch *b, struct db_rows *res, int n)
{
        struct batch **pp = &r->batches;

        b->relay = r;
        b->res = res;
        b->n = n;
        b->seq = ++r->batch_seq;
        /* What it really holds, against the budget, until it is freed. */
        b->bytes = db_rows_memory(res) + (int64_t)n * (int64_t)sizeof(*b->rows);
        r->held_bytes += b->bytes;
        r->n_batches++;
        while (*pp != NULL)
                pp = &(*pp)->next;
        *pp = b;
        for (int i = 0; i < n; i++) {
                b->rows[i].batch = b;
                db_rows_decode(res, i, &b->rows[i].m);
        }
}

static void fetched(struct relay *r, struct db_rows *res, const char *error)
{
        struct batch *b;
        int64_t est;
        int n, full;

        if (error != NULL) {
                /* Sent again no sooner than the backoff allows (at once
                 * after a reconnect): a fetch refused (a grant taken away)
                 * would otherwise be sent again, and logged, thousands of
                 * times a second. */
                relay_stmt_failed(r, RELAY_STMT_FETCH, error, now_ms());
                r->want_fetch = 1;
                return;
        }
        n = db_rows_count(res);
        if (n == 0) {
                relay_stmt_ok(r, RELAY_STMT_FETCH);
                relay_floor_fetched(r->floor, 0, 0, 0);
                db_rows_free(res);
                return;
        }
        relay_go_busy(r, n, now_ms());
        b = calloc(1, sizeof(*b));
        if (b != NULL)
                b->rows = calloc((size_t)n, sizeof(*b->rows));
        if (b == NULL || b->rows == NULL) {
                free(b);
                db_rows_free(res);
                /* Fetched again after the backoff, not at once. */
                relay_stmt_failed(r, RELAY_STMT_FETCH, "out of memory for a batch", now_ms());
                r->want_fetch = 1;
                return;
        }
        relay_stmt_ok(r, RELAY_STMT_FETCH);
        append_batch(r, b, res, n);
        if (r->trace)
                b->trace = (struct batch_trace){.want_us = r->trace_sent_want_us,
                                                .sent_us = r->trace_sent_us,
                                                .fetched_us = now_us(),
                                                .held = r->trace_sent_held};
        /* Stopped by its byte limit (the rows before its last one came to
         * less than the limit, the last one may have crossed it) or by its
         * row limit: more rows are likely waiting, and those above its last
         * one were not looked at. */
        est = db_rows_bytes(res);
        full = n >= r->fetch_limit || est >= r->fetch_bytes;
        r->row_bytes = est / n;
        relay_floor_fetched(r->floor, n, b->rows[n - 1].m.id, full);
        metrics_observe(r->metrics, METRICS_BATCH_ROWS, n);
        if (full)
                r->want_fetch = 1; /* more are likely waiting */
        log_debug(r->lg, "batch fetched", "{s:i,s:I,s:I,s:I}", "rows", n, "last_id",
                  (json_int_t)b->rows[n - 1].m.id, "above_id",
                  (json_int_t)relay_floor_fetching(r->floor), "bytes", (json_int_t)b->bytes);
        if (r->cfg->exactly_once)
                relay_txn_add(r, b);
        else
                relay_produce_batch(r, b);
}

/* Fetches ask for what fits in the memory budget: a pipeline's share of it
 * (--pipeline-depth batches fill it), and no more than what is left. They
 * wait while less than a quarter of a share is left, rather than fetch a
 * row at a time, unless nothing is held at all: at least one row, however
 * large, always goes out. The row limit follows the size of the rows just
 * fetched, so that the server does not measure many more rows than the
 * bytes let through. Returns 0 when a fetch must wait. */
static int fetch_size(struct relay *r, int *limit, int64_t *bytes)
{
        int64_t share = r->cfg->memory_budget / r->cfg->pipeline_depth;
        int64_t left = r->cfg->memory_budget - r->held_bytes;

        *bytes = left < share ? left : share;
        if (r->held_bytes > 0 && *bytes < share / 4)
                return 0;
        if (*bytes < 1)
                *bytes = 1;
        *limit = r->cfg->batch_size;
        if (r->row_bytes > 0 && *bytes / r->row_bytes + 1 < *limit)
                *limit = (int)(*bytes / r->row_bytes + 1);
        return 1;
}

/* --log-level debug: when a fetch was first wanted, and whether a full
 * pipeline held it back meanwhile. */
static void trace_want(struct relay *r)
{
        int publishing = 0;

        if (r->trace_want_us == 0)
                r->trace_want_us = now_us();
        if (relay_marks_pipeline_full(r->batches, r->n_batches, r->cfg->pipeline_depth,
                                      r->cfg->batch_size)) {
                for (const struct batch *b = r->batches; b != NULL; b = b->next)
                        publishing += !batch_marking(b);
                r->trace_held |= publishing >= r->cfg->pipeline_depth ? 1 : 2;
        }
        if (r->fetch_queued)
                r->trace_held |= 4;
}

static void trace_sent(struct relay *r)
{
        r->trace_sent_want_us = r->trace_want_us;
        r->trace_sent_held = r->trace_held;
        r->trace_sent_us = now_us();
        r->trace_want_us = 0;
        r->trace_held = 0;
}

static void maybe_fetch(struct relay *r)
{
        int64_t *skip, now, floor;
        const char **keys, *key;
        size_t n = 0, n_keys;
        json_t *v;

        if (r->trace && r->want_fetch)
                trace_want(r);
        if (!r->want_fetch || r->fetch_queued || r->stopping || !r->duty->leader ||
            !relay_txn_ready(r->tx) || producer_fatal(r->producer, NULL, 0) ||
            !db_connected(r->db) ||
            relay_marks_pipeline_full(r->batches, r->n_batches, r->cfg->pipeline_depth,
                                      r->cfg->batch_size) ||
            now_ms() < r->duty->stmt[RELAY_STMT_FETCH].retry_at ||
            !fetch_size(r, &r->fetch_limit, &r->fetch_bytes))
                return;
        /* Every row of the pipeline is left out, whatever its state: until
         * its batch is done it is either on its way or held back. So are
         * the rows of held keys: a row behind the one that holds its key
         * must not be fetched ahead of it (and fetched again and again).
         * The fetch starts above the floor, so only the rows above it need
         * naming: the batches waiting for a shared mark stay out of the
         * list the server hashes at each fetch. */
        for (const struct batch *b = r->batches; b != NULL; b = b->next)
                n += (size_t)b->n;
        n_keys = json_object_size(r->held);
        skip = malloc(sizeof(*skip) * (n > 0 ? n : 1));
        keys = malloc(sizeof(*keys) * (n_keys > 0 ? n_keys : 1));
        if (skip == NULL || keys == NULL) {
                free(skip);
                free(keys);
                return; /* want_fetch stays: tried again on the next turn */
        }
        now = now_ms();
        floor = relay_floor_for_fetch(r->floor, n_keys == 0 && !r->duty->failing, now);
        n = 0;
        for (const struct batch *b = r->batches; b != NULL; b = b->next)
                for (int i = 0; i < b->n; i++)
                        if (b->rows[i].m.id > floor)
                                skip[n++] = b->rows[i].m.id;
        n_keys = 0;
        json_object_foreach(r->held, key, v) keys[n_keys++] = key;
        r->want_fetch = 0;
        r->fetch_queued = 1;
        db_fetch(r->db, floor, n, skip, n_keys, keys, r->fetch_limit, r->fetch_bytes,
                 r->duty->failing, on_fetched, r);
        if (r->trace)
                trace_sent(r);
        relay_look_writers(r, now);
        free(skip);
        free(keys);
}

/* ---- the loop ---- */

/* The database is up: resume where the last connection left off. */
static void connected(struct relay *r, int64_t now)
{
        log_info(r->lg, "connected to the database", "{s:s}", "schema", r->cfg->schema);
        relay_session_started(r, now);
        r->record_retry_at = 0; /* the batches are submitted again below */
        if (r->connected_once++)
                metrics_add(r->metrics, METRICS_DB_RECONNECTS, 1);
        r->duty->next_stats_at = now;
        r->reconnect_attempt = 0;
        r->want_fetch = 1;
        r->duty->next_lock_at = now;
        for (struct batch *b = r->batches, *next; b != NULL; b = next) {
                next = b->next; /* b may be freed by submit */
                batch_reported(r, b);
        }
}

static void connect_failed(struct relay *r, int64_t now, enum db_event code, const char *err)
{
        if (code == DB_EV_SCHEMA) {
                r->fatal_schema = 1;
                snprintf(r->fatal_msg, sizeof(r->fatal_msg), "%s", err);
                return;
        }
        r->reconnect_attempt++;
        r->reconnect_at = now + backoff_delay_ms(&r->reconnect_backoff, r->reconnect_attempt);
        log_warn(r->lg, "database unavailable, will retry", "{s:s,s:i,s:I}", "error", err,
                 "attempt", r->reconnect_attempt, "retry_in_ms",
                 (json_int_t)(r->reconnect_at - now));
}

/* Starts an attempt; db_service carries it on from the loop. */
static void try_connect(struct relay *r, int64_t now)
{
        char err[512];

        r->duty->leader = 0; /* a new session holds no lock */
        if (db_connect(r->db, now, err, sizeof(err)) != 0)
                connect_failed(r, now, DB_EV_FAILED, err);
}

/* What the database sessions did this turn. */
static void db_turn(struct relay *r, const struct pollfd *fds, int64_t now)
{
        short revents[DB_LANES];
        enum db_event ev;
        int notified = 0;

        for (int lane = 0; lane < DB_LANES; lane++)
                revents[lane] = fds[lane].revents;
        ev = db_service(r->db, revents, now, &notified);
        if (notified)
                r->want_fetch = 1;
        if (ev == DB_EV_UP)
                connected(r, now);
        else if (ev == DB_EV_LOST)
                relay_lost_connection(r, now);
        else if (ev == DB_EV_FAILED || ev == DB_EV_SCHEMA)
                connect_failed(r, now, ev, db_last_error(r->db));
}

static int rebuild_producer(struct relay *r)
{
        char err[512];

        if (!producer_fatal(r->producer, err, sizeof(err)))
                snprintf(err, sizeof(err), "a new leader term needs a new transactional producer");
        log_warn(r->lg, "rebuilding the Kafka producer", "{s:s}", "reason", err);
        if (r->cfg->exactly_once && producer_fenced(r->producer)) {
                /* A newer producer of this transactional.id exists, so another
                 * relay took over: this one's lock must be gone or about to
                 * go. Drop the session (and the lock, if it was still held)
                 * rather than fence the new leader in turn. */
                log_error(r->lg, "fenced by another relay with the same transactional.id", "{s:s}",
                          "transactional_id", relay_txn_id(r->tx));
                if (db_connected(r->db))
                        db_disconnect(r->db, "fenced by another relay");
                relay_lost_connection(r, now_ms());
        }
        producer_free(r->producer); /* reports every outstanding message as purged */
        if (r->cfg->exactly_once)
                relay_txn_abandon(r);
        metrics_add(r->metrics, METRICS_PRODUCER_REBUILDS, 1);
        r->producer =
            producer_new(r->cfg, r->lg, r->metrics, relay_on_delivery, r, err, sizeof(err));
        if (r->producer == NULL) {
                snprintf(r->fatal_msg, sizeof(r->fatal_msg), "%s", err);
                return -1;
        }
        return 0;
}

static void stop_step(struct relay *r, int64_t now, const char *signal)
{
        if (!r->stopping) {
                r->stopping = 1;
                r->stop_deadline = now + r->cfg->shutdown_timeout_ms;
                log_info(r->lg, "shutting down: waiting for in-flight deliveries", "{s:s,s:i,s:i}",
                         "signal", signal, "in_flight", producer_outstanding(r->producer),
                         "timeout_ms", r->cfg->shutdown_timeout_ms);
        } else {
                log_warn(r->lg, "second signal: stopping now", NULL);
                r->stop_deadline = now;
        }
}

static void handle_signal(struct relay *r, int64_t now)
{
        struct signalfd_siginfo si;
        eventfd_t n;

        if (r->sig_is_stop_fd) {
                /* The count of stops asked since the last read. */
                if (eventfd_read(r->sig_fd, &n) == 0)
                        for (eventfd_t i = 0; i < n && i < 2; i++)
                                stop_step(r, now, "stop asked by the process");
                return;
        }
        while (read(r->sig_fd, &si, sizeof(si)) == sizeof(si))
                stop_step(r, now, strsignal((int)si.ssi_signo));
}

/* Milliseconds poll() may sleep before a timer is due. */
static int loop_timeout(const struct relay *r, int64_t now)
{
        int64_t next = now + 1000;

        if (db_state(r->db) == DB_DOWN && r->reconnect_at < next)
                next = r->reconnect_at;
        if (db_next_deadline(r->db) < next)
                next = db_next_deadline(r->db);
        if (r->next_poll_at < next)
                next = r->next_poll_at;
        if (!r->duty->leader && !r->duty->lock_queued && db_connected(r->db) &&
            r->duty->next_lock_at < next)
                next = r->duty->next_lock_at;
        if (r->retry_at != 0 && r->retry_at < next)
                next = r->retry_at;
        if (r->duty->busy && r->duty->next_busy_poll_at < next)
                next = r->duty->next_busy_poll_at;
        if (r->tx != NULL && relay_txn_next_at(r) < next)
                next = relay_txn_next_at(r);
        if (r->duty->busy && r->duty->last_rows_at + r->cfg->idle_after_ms < next)
                next = r->duty->last_rows_at + r->cfg->idle_after_ms;
        if (r->stopping && r->stop_deadline < next)
                next = r->stop_deadline;
        if (r->rebuild_at != 0 && r->rebuild_at < next)
                next = r->rebuild_at;
        if (r->duty->leader && db_connected(r->db) && relay_floor_next_at(r->floor) < next)
                next = relay_floor_next_at(r->floor);
        if (relay_mark_next_at(r) < next)
                next = relay_mark_next_at(r);
        if (relay_flip_next_at(r) < next)
                next = relay_flip_next_at(r);
        if (r->want_fetch && r->duty->stmt[RELAY_STMT_FETCH].retry_at > now &&
            r->duty->stmt[RELAY_STMT_FETCH].retry_at < next)
                next = r->duty->stmt[RELAY_STMT_FETCH].retry_at;
        if (r->record_retry_at != 0 && r->record_retry_at < next)
                next = r->record_retry_at;
        return next <= now ? 0 : (int)(next - now);
}

static void run_timers(struct relay *r, int64_t now)
{
        if (now >= r->next_poll_at) {
                r->want_fetch = 1; /* notifications are lost while disconnected */
                r->next_poll_at = now + r->cfg->poll_interval_ms;
        }
        if (r->duty->busy && now >= r->duty->next_busy_poll_at) {
                r->want_fetch = 1;
                r->duty->next_busy_poll_at = now + r->cfg->busy_poll_ms;
        }
        relay_maybe_go_waiting(r, now);
        if (r->retry_at != 0 && now >= r->retry_at) {
                r->want_fetch = 1;
                r->retry_at = 0;
        }
        if (r->stopping && !r->purged && now >= r->stop_deadline) {
                log_warn(r->lg, "shutdown timeout: abandoning unconfirmed deliveries", "{s:i}",
                         "in_flight", producer_outstanding(r->producer));
                producer_purge(r->producer);
                r->purged = 1;
        }
}

/* Whether the loop is over: stopped cleanly (1), or the database stayed
 * away past the shutdown deadline (1, said). */
static int loop_done(struct relay *r, int64_t now)
{
        if (r->stopping && r->n_batches == 0 && db_idle(r->db))
                return 1;
        if (r->stopping && r->purged && now >= r->stop_deadline + 5000) {
                log_warn(r->lg,
                         "database unavailable at shutdown: delivered rows left pending will be "
                         "published again",
                         "{s:i}", "batches", r->n_batches);
                return 1;
        }
        return 0;
}

/* The first rebuild of a failed producer is immediate; a fatal condition
 * that persists (e.g. an ACL refusing the producer id) is retried with the
 * reconnect backoff instead of in a tight loop. -1 when it cannot be. */
static int maybe_rebuild(struct relay *r, int64_t now)
{
        if (producer_fatal(r->producer, NULL, 0) && r->rebuild_at == 0)
                r->rebuild_at =
                    now + (r->rebuild_attempt++ == 0
                               ? 0
                               : backoff_delay_ms(&r->reconnect_backoff, r->rebuild_attempt));
        if (r->rebuild_at == 0 || now < r->rebuild_at)
                return 0;
        r->rebuild_at = 0;
        return rebuild_producer(r);
}

/* What the modules decided since the last look (their callbacks run
 * inside the database's turn): a fetch, for now. */
static void collect_news(struct relay *r)
{
        int fetch = (relay_txn_news(r->tx) & RELAY_TXN_FETCH) != 0;

        fetch |= relay_duties_want_fetch(r->duty);
        fetch |= relay_marks_want_fetch(r->marks);
        if (fetch)
                r->want_fetch = 1;
}

/* What follows one poll(): every source in a fixed order, then what the
 * modules decided. -1 (fatal_msg) when the relay cannot go on. */
static int loop_turn(struct relay *r, const struct pollfd *fds, int64_t now)
{
        if (fds[0].revents)
                handle_signal(r, now);
        producer_poll(r->producer);
        if (r->queue_full)
                relay_resume_producing(r); /* the reports made room */
        if (r->tx != NULL)
                relay_txn_tick(r, now);
        db_turn(r, fds + 3, now);
        if (maybe_rebuild(r, now) != 0)
                return -1;
        if (db_state(r->db) == DB_DOWN && now >= r->reconnect_at)
                try_connect(r, now);
        run_timers(r, now);
        relay_maybe_lock(r, now);
        if (r->tx != NULL)
                relay_txn_recover(r, now);
        relay_mark_tick(r, now);
        relay_retry_records(r, now);
        collect_news(r);
        maybe_fetch(r);
        relay_look_writers(r, now);
        relay_maybe_stats(r, now);
        relay_maybe_retention(r, now);
        if (r->http != NULL)
                http_serve(r->http);
        log_flush_repeats(r->lg, 0);
        return 0;
}

int relay_run(struct relay *r, char *errbuf, size_t errsz)
{
        int64_t now = now_ms();

        r->next_poll_at = now;
        try_connect(r, now);
        for (;;) { /* signals, producer, http, then the database sessions */
                struct pollfd fds[3 + DB_LANES] = {
                    {r->sig_fd, POLLIN, 0},
                    {producer_fd(r->producer), POLLIN, 0},
                    {r->http != NULL ? http_fd(r->http) : -1, POLLIN, 0}};
                int timeout;

                if (r->fatal_schema) {
                        snprintf(errbuf, errsz, "%s", r->fatal_msg);
                        return -1;
                }
                if (loop_done(r, now))
                        break;
                for (int lane = 0; lane < DB_LANES; lane++) {
                        fds[3 + lane].fd = db_socket(r->db, lane);
                        fds[3 + lane].events = db_events(r->db, lane);
                }
                collect_news(r); /* news from callbacks after the last turn's look */
                timeout = loop_timeout(r, now);
                if (r->http != NULL && http_timeout_ms(r->http) >= 0 &&
                    http_timeout_ms(r->http) < timeout)
                        timeout = http_timeout_ms(r->http);
                if (poll(fds, 3 + DB_LANES, timeout) < 0 && errno != EINTR) {
                        snprintf(errbuf, errsz, "poll: %s", strerror(errno));
                        return -1;
                }
                now = now_ms();
                if (loop_turn(r, fds, now) != 0) {
                        snprintf(errbuf, errsz, "%s", r->fatal_msg);
                        return -1;
                }
                if (r->on_turn != NULL)
                        r->on_turn(r->turn_arg, r, now);
        }
        log_flush_repeats(r->lg, 1);
        log_info(r->lg, "stopped", NULL);
        return 0;
}
