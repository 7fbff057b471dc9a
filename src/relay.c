/* relay: the event loop. Data flows one way: database (fetch) -> producer
 * -> delivery reports -> database (mark sent / record failure). Up to
 * pipeline_depth batches are in flight at once; one poll() waits on the
 * database socket, the producer's wake-up pipe and a signalfd. */
#include "relay.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "relay_int.h"
#include "backoff.h"
#include "db.h"
#include "http.h"
#include "message.h"
#include "metrics.h"
#include "producer.h"
#include "route.h"

static void on_delivery(void *arg, void *msg_opaque, rd_kafka_resp_err_t err, int32_t partition,
                        int64_t offset);

/* Longest wait before a failed statement is sent again (and never longer
 * than --reconnect-max-ms). */
#define STMT_RETRY_MAX_MS 5000

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
        struct relay *r = calloc(1, sizeof(*r));
        sigset_t mask;

        if (r == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                return NULL;
        }
        r->cfg = cfg;
        r->lg = lg;
        r->sig_fd = -1;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if (!signals_blocked(&mask)) {
                snprintf(errbuf, errsz, "SIGTERM and SIGINT must be blocked before relay_new");
                goto fail;
        }
        if ((r->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
                snprintf(errbuf, errsz, "signalfd: %s", strerror(errno));
                goto fail;
        }
        r->route = route_new(cfg->routes, cfg->n_routes, cfg->default_topic, errbuf, errsz);
        if (r->route == NULL ||
            route_guard(r->route, cfg->allowed_topics, cfg->progress_topic, errbuf, errsz) != 0)
                goto fail;
        r->fl.rewinds = -1;
        r->held = json_object();
        r->db = db_new(cfg, lg);
        r->metrics = metrics_new();
        if (r->held == NULL || r->db == NULL || r->metrics == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                goto fail;
        }
        r->producer = producer_new(cfg, lg, r->metrics, on_delivery, r, errbuf, errsz);
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
        /* A statement failing with the connection fine is retried sooner
         * than a lost server: its cause (a grant, a lock) is often fixed
         * by hand, and the relay should notice within seconds. */
        backoff_init(&r->stmt_backoff, 100,
                     cfg->reconnect_max_ms < STMT_RETRY_MAX_MS ? cfg->reconnect_max_ms
                                                               : STMT_RETRY_MAX_MS,
                     (uint64_t)now_ms() ^ 0x5bd1e995u);
        if (cfg->exactly_once && relay_txn_init(r, errbuf, errsz) != 0)
                goto fail;
        return r;
fail:
        relay_free(r);
        return NULL;
}

static void batch_free(struct batch *b)
{
        if (b->relay != NULL)
                b->relay->held_bytes -= b->bytes;
        for (int i = 0; i < b->n; i++)
                free(b->rows[i].error);
        free(b->rows);
        PQclear(b->res);
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
        metrics_free(r->metrics);
        route_free(r->route);
        json_decref(r->held);
        relay_floor_free(r);
        if (r->sig_fd >= 0)
                close(r->sig_fd);
        free(r);
}

/* ---- holding keys ---- */

/* The row stays pending (unsent, or failed and waiting for its retry):
 * later rows of its key must not be produced until its batch is done, by
 * when the database knows the failure (the fetch then holds the key back)
 * or the row is fetchable again, ahead of the rest of its key. */
void relay_hold_key(struct relay *r, const struct relay_row *row)
{
        row->batch->left_pending = 1;
        /* The newest batch: every row produced so far is in it or before. */
        if (row->m.key != NULL)
                json_object_set_new_nocheck(r->held, row->m.key,
                                            json_integer((json_int_t)r->batch_seq));
}

static int key_held(const struct relay *r, const struct relay_row *row)
{
        return row->m.key != NULL && json_object_get(r->held, row->m.key) != NULL;
}

/* ---- finishing a batch: mark sent rows, record failures ---- */

/* Queues what the batch still needs from the database. Called when its
 * last report arrives and again after a reconnect. */
static void batch_submit(struct relay *r, struct batch *b)
{
        if (!db_connected(r->db))
                return;
        b->in_submit = 1;
        b->submitted = 1;
        relay_mark_due(r, b);
        relay_submit_failures(r, b);
        b->in_submit = 0;
        relay_batch_check_done(r, b);
}

static int batch_done(const struct batch *b)
{
        if (b->producing || b->outstanding > 0 || b->in_submit || !b->marked || b->deferred ||
            b->in_txn)
                return 0;
        for (int i = 0; i < b->n; i++)
                if (b->rows[i].state == ROW_FAILED && !b->rows[i].fail_recorded)
                        return 0;
        return 1;
}

/* A held key is left out of every fetch, and freed once every batch that
 * holds a row of it is done: by then the failure is in the database (where
 * the fetch holds the key back) or the rows are pending and not in flight
 * (and the next fetch returns them first, in order). Not while a fetch runs
 * or batches wait for a transaction: they may come from a fetch sent before
 * the key was held, without its rows then in flight but with later ones. */
void relay_release_keys(struct relay *r)
{
        unsigned long oldest = r->batches != NULL ? r->batches->seq : ULONG_MAX;
        const char *key;
        json_t *v;
        void *tmp;

        if (r->fetch_queued || r->n_deferred > 0)
                return;
        json_object_foreach_safe(r->held, tmp, key, v)
        {
                if ((unsigned long)json_integer_value(v) < oldest)
                        json_object_del(r->held, key);
        }
}

void relay_batch_check_done(struct relay *r, struct batch *b)
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
                relay_floor_reset(r);
        if (b->left_pending || r->failing)
                r->want_fetch = 1;
        batch_free(b);
        if (r->n_batches == 0 && r->failing && r->leader && db_connected(r->db))
                relay_check_failing(r);
}

/* Every row of b has its outcome from the producer: finish it, or with
 * --exactly-once let the loop finish its transaction first. */
void relay_batch_reported(struct relay *r, struct batch *b)
{
        if (b->outstanding > 0 || b->producing || b->deferred)
                return;
        if (b->in_txn)
                r->txn_due = 1; /* not from here: this may run inside a librdkafka callback */
        else
                batch_submit(r, b);
}

/* ---- delivery reports ---- */

static void fail_row(struct relay *r, struct relay_row *row, const char *reason)
{
        row->state = ROW_FAILED;
        /* It goes back to PostgreSQL (last_error, the dead letter's reason),
         * which refuses text that is not UTF-8: a reason cut at a byte
         * limit inside a character, or holding a row's own bytes from a
         * database that does not check them, is made whole. NULL (out of
         * memory) records no text. */
        row->error = log_clean_text(reason, RELAY_REASON_MAX, 0);
        metrics_topic_add(r->metrics, METRICS_FAILED, row->topic, 1);
        relay_hold_key(r, row);
}

static void on_delivery(void *arg, void *msg_opaque, rd_kafka_resp_err_t err, int32_t partition,
                        int64_t offset)
{
        struct relay *r = arg;
        struct relay_row *row = msg_opaque;

        if (row->batch->in_txn && err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                /* The transaction can only be aborted now. Abort at once:
                 * the messages queued behind this one would otherwise be
                 * reported only when they time out. */
                r->txn_failed = 1;
                r->txn_due = 1;
        }
        if (row->batch->outcome == TXN_ABORTED) {
                /* Its transaction was aborted: whatever the report says,
                 * the row was not published. It stays as it was made
                 * (unsent) at the abort. */
        } else if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                row->state = ROW_SENT;
                row->partition = partition;
                row->offset = offset;
                r->rebuild_attempt = 0;
                metrics_topic_add(r->metrics, METRICS_PUBLISHED, row->topic, 1);
                metrics_observe(r->metrics, METRICS_ACK_SECONDS,
                                (double)(now_us() - row->produced_us) / 1e6);
        } else if (producer_err_is_permanent(err)) {
                char reason[300];

                /* The topic named: an authorization failure (an ACL) or an
                 * unknown topic is about it, not the row's content. */
                snprintf(reason, sizeof(reason), "%s (topic %s)", rd_kafka_err2str(err),
                         row->topic);
                fail_row(r, row, reason);
        } else {
                /* Kafka or the producer failed, not the row: it stays pending
                 * without using an attempt, and its key waits behind it. */
                row->state = ROW_UNSENT;
                relay_hold_key(r, row);
                log_debug(r->lg, "delivery not confirmed, row stays pending", "{s:I,s:s}", "id",
                          (json_int_t)row->m.id, "error", rd_kafka_err2str(err));
        }
        row->batch->outstanding--;
        relay_batch_reported(r, row->batch);
}

/* ---- fetching and producing ---- */

int relay_produce_row(struct relay *r, struct batch *b, struct relay_row *row)
{
        char err[512];
        const char *topic;
        rd_kafka_headers_t *hdrs;
        rd_kafka_resp_err_t kerr;
        if (key_held(r, row)) {
                /* An earlier row of its key is not published. This one stays
                 * pending too, and the key stays held until its batch is done
                 * (else a fetch that left it out as in flight could hand a
                 * later row of the key over first). */
                row->state = ROW_UNSENT;
                relay_hold_key(r, row);
                return 0;
        }
        topic = route_topic(r->route, row->m.topic, row->m.event_type, err, sizeof(err));
        row->topic = topic != NULL ? topic : "(unrouted)";
        if (topic == NULL) {
                fail_row(r, row, err);
                return 0;
        }
        /* Routes and --default-topic were checked at startup (route_guard);
         * a row's own topic (route_topic returns it as is) only by the
         * table's CHECK, which a user may have dropped: checked here. */
        if (topic == row->m.topic && !route_topic_name_ok(topic)) {
                snprintf(err, sizeof(err),
                         "topic \"%.64s\" is not a legal Kafka topic name ([A-Za-z0-9._-], 1 to "
                         "%d characters, not \".\" or \"..\")",
                         topic, ROUTE_TOPIC_MAX);
                row->topic = "(illegal)";
                fail_row(r, row, err);
                return 0;
        }
        /* A writer chose a topic the relay must not write (Kafka's own, the
         * progress topic, or outside --allowed-topics): no retry can help. */
        if (topic == row->m.topic && route_refused(r->route, topic, err, sizeof(err)) != 0) {
                row->topic = "(refused)";
                fail_row(r, row, err);
                row->dead_now = 1;
                return 0;
        }
        if (row->m.event_id == NULL) {
                fail_row(r, row, "column event_id is NULL (was its NOT NULL constraint dropped?)");
                return 0;
        }
        if (message_headers(&row->m, &hdrs, err, sizeof(err)) != 0) {
                fail_row(r, row, err);
                return 0;
        }
        row->state = ROW_INFLIGHT;
        row->produced_us = now_us();
        b->outstanding++;
        kerr = producer_send(r->producer, topic, &row->m, hdrs, row);
        if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
                row->produced = 1;
                return 0;
        }
        b->outstanding--;
        /* Full with nothing in it: the message alone exceeds
         * queue.buffering.max.kbytes and no report will ever make room. */
        if (kerr == RD_KAFKA_RESP_ERR__QUEUE_FULL && producer_outstanding(r->producer) == 0) {
                snprintf(err, sizeof(err),
                         "message larger than the producer's queue (queue.buffering.max.kbytes)");
                fail_row(r, row, err);
                return 0;
        }
        if (kerr == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                return 1;
        if (producer_err_is_permanent(kerr)) {
                snprintf(err, sizeof(err), "%s (topic %s)", rd_kafka_err2str(kerr), topic);
                fail_row(r, row, err);
        } else {
                row->state = ROW_UNSENT;
                relay_hold_key(r, row);
        }
        return 0;
}

static void fetched(struct relay *r, PGresult *res, const char *error);

static void on_fetched(void *arg, PGresult *res, const char *error)
{
        struct relay *r = arg;

        r->fetch_queued = 0;
        fetched(r, res, error);
        relay_release_keys(r);
}

static void fetched(struct relay *r, PGresult *res, const char *error)
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
        n = PQntuples(res);
        if (n == 0) {
                relay_stmt_ok(r, RELAY_STMT_FETCH);
                relay_floor_fetched(r, 0, 0, 0);
                PQclear(res);
                return;
        }
        relay_go_busy(r, now_ms());
        b = calloc(1, sizeof(*b));
        if (b != NULL)
                b->rows = calloc((size_t)n, sizeof(*b->rows));
        if (b == NULL || b->rows == NULL) {
                free(b);
                PQclear(res);
                /* Fetched again after the backoff, not at once. */
                relay_stmt_failed(r, RELAY_STMT_FETCH, "out of memory for a batch", now_ms());
                r->want_fetch = 1;
                return;
        }
        relay_stmt_ok(r, RELAY_STMT_FETCH);
        b->relay = r;
        b->res = res;
        b->n = n;
        b->seq = ++r->batch_seq;
        /* What it really holds, against the budget, until it is freed. */
        b->bytes = (int64_t)PQresultMemorySize(res) + (int64_t)n * (int64_t)sizeof(*b->rows);
        r->held_bytes += b->bytes;
        /* Stopped by its byte limit (the rows before its last one came to
         * less than the limit, the last one may have crossed it) or by its
         * row limit: more rows are likely waiting, and those above its last
         * one were not looked at. */
        est = db_fetched_bytes(res);
        full = n >= r->fetch_limit || est >= r->fetch_bytes;
        r->row_bytes = est / n;
        /* Appended before producing: reports may arrive while we produce. */
        r->n_batches++;
        struct batch **pp = &r->batches;
        while (*pp != NULL)
                pp = &(*pp)->next;
        *pp = b;
        for (int i = 0; i < n; i++) {
                b->rows[i].batch = b;
                db_decode_row(res, i, &b->rows[i].m);
        }
        relay_floor_fetched(r, n, b->rows[n - 1].m.id, full);
        metrics_observe(r->metrics, METRICS_BATCH_ROWS, n);
        if (full)
                r->want_fetch = 1; /* more are likely waiting */
        log_debug(r->lg, "batch fetched", "{s:i,s:I,s:I,s:I}", "rows", n, "last_id",
                  (json_int_t)b->rows[n - 1].m.id, "above_id", (json_int_t)r->fl.fetch_floor,
                  "bytes", (json_int_t)b->bytes);
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

static void maybe_fetch(struct relay *r)
{
        int64_t *skip, now;
        const char **keys, *key;
        size_t n = 0, n_keys;
        json_t *v;

        if (!r->want_fetch || r->fetch_queued || r->stopping || !r->leader ||
            (r->cfg->exactly_once && r->eos != EOS_READY) || producer_fatal(r->producer, NULL, 0) ||
            !db_connected(r->db) || relay_pipeline_full(r) ||
            now_ms() < r->stmt[RELAY_STMT_FETCH].retry_at ||
            !fetch_size(r, &r->fetch_limit, &r->fetch_bytes))
                return;
        /* Every row of the pipeline is left out, whatever its state: until
         * its batch is done it is either on its way or held back. So are
         * the rows of held keys: a row behind the one that holds its key
         * must not be fetched ahead of it (and fetched again and again). */
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
        n = 0;
        for (const struct batch *b = r->batches; b != NULL; b = b->next)
                for (int i = 0; i < b->n; i++)
                        skip[n++] = b->rows[i].m.id;
        n_keys = 0;
        json_object_foreach(r->held, key, v) keys[n_keys++] = key;
        r->want_fetch = 0;
        r->fetch_queued = 1;
        now = now_ms();
        db_fetch(r->db, relay_floor_for_fetch(r, n_keys == 0 && !r->failing, now), n, skip, n_keys,
                 keys, r->fetch_limit, r->fetch_bytes, r->failing, on_fetched, r);
        relay_floor_look(r, now);
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
        r->next_stats_at = now;
        r->reconnect_attempt = 0;
        r->want_fetch = 1;
        r->next_lock_at = now;
        for (struct batch *b = r->batches, *next; b != NULL; b = next) {
                next = b->next; /* b may be freed by submit */
                relay_batch_reported(r, b);
        }
}

static void connect_failed(struct relay *r, int64_t now, int code, const char *err)
{
        if (code == DB_ERR_SCHEMA) {
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

        r->leader = 0; /* a new session holds no lock */
        if (db_connect(r->db, now, err, sizeof(err)) != 0)
                connect_failed(r, now, DB_EV_FAILED, err);
}

/* What the database sessions did this turn. */
static void db_turn(struct relay *r, const struct pollfd *fds, int64_t now)
{
        short revents[DB_LANES];
        int notified = 0, ev;

        for (int lane = 0; lane < DB_LANES; lane++)
                revents[lane] = fds[lane].revents;
        ev = db_service(r->db, revents, now, &notified);
        if (notified)
                r->want_fetch = 1;
        if (ev == DB_EV_UP)
                connected(r, now);
        else if (ev == DB_EV_LOST)
                relay_lost_connection(r, now);
        else if (ev == DB_EV_FAILED || ev == DB_ERR_SCHEMA)
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
                          "transactional_id", r->tid);
                if (db_connected(r->db))
                        db_disconnect(r->db, "fenced by another relay");
                relay_lost_connection(r, now_ms());
        }
        producer_free(r->producer); /* reports every outstanding message as purged */
        if (r->cfg->exactly_once)
                relay_txn_abandon(r);
        metrics_add(r->metrics, METRICS_PRODUCER_REBUILDS, 1);
        r->producer = producer_new(r->cfg, r->lg, r->metrics, on_delivery, r, err, sizeof(err));
        if (r->producer == NULL) {
                snprintf(r->fatal_msg, sizeof(r->fatal_msg), "%s", err);
                return -1;
        }
        return 0;
}

static void handle_signal(struct relay *r, int64_t now)
{
        struct signalfd_siginfo si;

        while (read(r->sig_fd, &si, sizeof(si)) == sizeof(si)) {
                if (!r->stopping) {
                        r->stopping = 1;
                        r->stop_deadline = now + r->cfg->shutdown_timeout_ms;
                        log_info(r->lg, "shutting down: waiting for in-flight deliveries",
                                 "{s:s,s:i,s:i}", "signal", strsignal((int)si.ssi_signo),
                                 "in_flight", producer_outstanding(r->producer), "timeout_ms",
                                 r->cfg->shutdown_timeout_ms);
                } else {
                        log_warn(r->lg, "second signal: stopping now", NULL);
                        r->stop_deadline = now;
                }
        }
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
        if (!r->leader && !r->lock_queued && db_connected(r->db) && r->next_lock_at < next)
                next = r->next_lock_at;
        if (r->retry_at != 0 && r->retry_at < next)
                next = r->retry_at;
        if (r->busy && r->next_busy_poll_at < next)
                next = r->next_busy_poll_at;
        if (r->cfg->exactly_once && relay_txn_next_at(r) < next)
                next = relay_txn_next_at(r);
        if (r->busy && r->last_rows_at + r->cfg->idle_after_ms < next)
                next = r->last_rows_at + r->cfg->idle_after_ms;
        if (r->stopping && r->stop_deadline < next)
                next = r->stop_deadline;
        if (r->rebuild_at != 0 && r->rebuild_at < next)
                next = r->rebuild_at;
        if (db_connected(r->db) && relay_floor_next_at(r) < next)
                next = relay_floor_next_at(r);
        if (relay_mark_next_at(r) < next)
                next = relay_mark_next_at(r);
        if (r->want_fetch && r->stmt[RELAY_STMT_FETCH].retry_at > now &&
            r->stmt[RELAY_STMT_FETCH].retry_at < next)
                next = r->stmt[RELAY_STMT_FETCH].retry_at;
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
        if (r->busy && now >= r->next_busy_poll_at) {
                r->want_fetch = 1;
                r->next_busy_poll_at = now + r->cfg->busy_poll_ms;
        }
        if (r->busy && r->leader && now >= r->last_rows_at + r->cfg->idle_after_ms)
                relay_go_waiting(r);
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
                if (r->stopping && r->n_batches == 0 && db_idle(r->db))
                        break;
                if (r->stopping && r->purged && now >= r->stop_deadline + 5000) {
                        log_warn(r->lg,
                                 "database unavailable at shutdown: delivered rows left "
                                 "pending will be published again",
                                 "{s:i}", "batches", r->n_batches);
                        break;
                }
                for (int lane = 0; lane < DB_LANES; lane++) {
                        fds[3 + lane].fd = db_socket(r->db, lane);
                        fds[3 + lane].events = db_events(r->db, lane);
                }
                timeout = loop_timeout(r, now);
                if (r->http != NULL && http_timeout_ms(r->http) >= 0 &&
                    http_timeout_ms(r->http) < timeout)
                        timeout = http_timeout_ms(r->http);
                if (poll(fds, 3 + DB_LANES, timeout) < 0 && errno != EINTR) {
                        snprintf(errbuf, errsz, "poll: %s", strerror(errno));
                        return -1;
                }
                now = now_ms();
                if (fds[0].revents)
                        handle_signal(r, now);
                producer_poll(r->producer);
                if (r->queue_full)
                        relay_resume_producing(r); /* the reports made room */
                if (r->cfg->exactly_once)
                        relay_txn_tick(r, now);
                db_turn(r, fds + 3, now);
                /* The first rebuild is immediate; a fatal condition that
                 * persists (e.g. an ACL refusing the producer id) is retried
                 * with the reconnect backoff instead of in a tight loop. */
                if (producer_fatal(r->producer, NULL, 0) && r->rebuild_at == 0)
                        r->rebuild_at = now + (r->rebuild_attempt++ == 0
                                                   ? 0
                                                   : backoff_delay_ms(&r->reconnect_backoff,
                                                                      r->rebuild_attempt));
                if (r->rebuild_at != 0 && now >= r->rebuild_at) {
                        r->rebuild_at = 0;
                        if (rebuild_producer(r) != 0) {
                                snprintf(errbuf, errsz, "%s", r->fatal_msg);
                                return -1;
                        }
                }
                if (db_state(r->db) == DB_DOWN && now >= r->reconnect_at)
                        try_connect(r, now);
                run_timers(r, now);
                relay_maybe_lock(r, now);
                if (r->cfg->exactly_once)
                        relay_txn_recover(r, now);
                relay_mark_tick(r, now);
                relay_retry_records(r, now);
                maybe_fetch(r);
                relay_floor_tick(r, now);
                relay_maybe_stats(r, now);
                relay_maybe_retention(r, now);
                if (r->http != NULL)
                        http_serve(r->http);
                log_flush_repeats(r->lg, 0);
        }
        log_flush_repeats(r->lg, 1);
        log_info(r->lg, "stopped", NULL);
        return 0;
}
