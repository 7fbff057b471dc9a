/* relay_txn: --exactly-once. Batches are published in Kafka transactions,
 * each carrying a progress record of its rows; rows are marked sent only
 * after the commit, and a new leader first marks the rows of the last
 * committed record sent, so a batch Kafka has is never published again.
 * Nothing here waits long for Kafka: init, commit and abort run in short
 * resumable steps from the loop (a commit's first up to COMMIT_MS), and the
 * progress record is read back by the reader's own thread
 * (progress_reader), so signals, probes and the database are served while
 * Kafka is slow or away. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "backoff.h"
#include "config.h"
#include "db.h"
#include "kafka_conf.h"
#include "log.h"
#include "metrics.h"
#include "producer.h"
#include "progress.h"
#include "progress_reader.h"
#include "relay_batch.h"
#include "relay_int.h"
#include "relay_txn_state.h"

/* A transactional call waits at most this long per step: the loop's
 * longest stall. Kafka's answer is usually there within it (a local
 * round trip); when not, the next step follows after a pause that grows
 * to STEP_MAX_GAP_MS. */
#define STEP_MS         5
#define STEP_MAX_GAP_MS 50
/* A commit's first call may wait this long: the progress record's produce
 * and the EndTxn round trip, usually, so that it ends in one call rather
 * than in steps (a resumed call waits TXN_RESUME_MS in producer.c). */
#define COMMIT_MS     50
#define SLOW_MS       1000 /* a commit or abort still going on after this is logged */
#define INIT_RETRY_MS 10   /* pause between init_transactions steps */
/* Reading the last progress record: the read runs beside the loop, so a
 * slow Kafka gets time to answer rather than a new read (with the same
 * consumer) every few seconds. */
#define READ_TIMEOUT_MS 30000
#define READ_POLL_MS    10 /* how often the loop looks for the read's result */
/* Batches that waited join the next transaction up to this many rows
 * (config.h: --batch-size is at most that much with --exactly-once). */
#define TXN_MAX_ROWS CONFIG_TXN_MAX_ROWS
/* Batches fetched while a transaction's messages are on their way join it
 * up to this many times (may_join). */
#define TXN_MAX_JOINS 4

#ifdef OUTBOX_TEST_HOOKS
/* Test hook for the fault suite: SIGKILL right after the Nth commit, before
 * its rows can be marked, the window exactly-once is for. Compiled only with
 * -DOUTBOX_TEST_HOOKS=ON, so that no environment variable can make a
 * production relay kill itself. */
static void test_hook_init(struct relay *r)
{
        const char *kill_after = getenv("OUTBOX_RELAY_TEST_KILL_AFTER_COMMITS");

        r->tx->kill_after_commits = kill_after != NULL ? strtol(kill_after, NULL, 10) : 0;
}

static void test_hook_committed(struct relay *r)
{
        if (r->tx->kill_after_commits > 0 && ++r->tx->commits == r->tx->kill_after_commits) {
                log_warn(r->lg, "test hook: killed after a commit, before the mark", NULL);
                raise(SIGKILL);
        }
}
#else
static void test_hook_init(struct relay *r)
{
        (void)r;
}

static void test_hook_committed(struct relay *r)
{
        (void)r;
}
#endif

int relay_txn_init(struct relay *r, char *errbuf, size_t errsz)
{
        if ((r->tx = relay_txn_state_new()) == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                return -1;
        }
        kafka_conf_transactional_id(r->cfg, r->tx->tid, sizeof(r->tx->tid));
        test_hook_init(r);
        r->tx->reader = progress_reader_new(r->cfg, r->lg, errbuf, errsz);
        return r->tx->reader != NULL ? 0 : -1;
}

void relay_txn_free(struct relay *r)
{
        if (r->tx == NULL)
                return;
        progress_reader_free(r->tx->reader);
        relay_txn_state_free(r->tx);
        r->tx = NULL;
}

static void give_back(struct relay *r);

static void txn_begin(struct relay *r)
{
        char err[512];

        if (producer_txn_begin(r->producer, err, sizeof(err)) != 0) {
                log_error(r->lg, "cannot begin a Kafka transaction", "{s:s}", "error", err);
                return;
        }
        relay_txn_set_phase(r->tx, TXN_PHASE_OPEN);
        r->tx->joins = 0;
}

/* Whether b may join the open transaction rather than wait for the next:
 * the transaction is not ending yet (some of its messages are still on
 * their way, none failed), no batch waits before b (fetch order), and it
 * stays within TXN_MAX_ROWS and TXN_MAX_JOINS (so that a steady stream
 * cannot keep it open). b's rows then commit with it, not a whole commit
 * cycle later. */
static int may_join(const struct relay *r, const struct batch *b)
{
        int rows = 0, on_way = 0;

        if (r->tx->phase != TXN_PHASE_OPEN || r->tx->failed || r->stopping ||
            r->tx->n_deferred > 0 || r->tx->joins >= TXN_MAX_JOINS)
                return 0;
        for (const struct batch *o = r->batches; o != NULL; o = o->next) {
                if (o->txn != BATCH_TXN_OPEN)
                        continue;
                rows += o->n;
                if (o->state == BATCH_PRODUCING || o->outstanding > 0)
                        on_way = 1;
        }
        return on_way && rows + b->n <= TXN_MAX_ROWS;
}

/* Produces b in the open transaction while it may join it, or in a new
 * one; while a transaction is ending b waits, and every batch fetched
 * meanwhile goes into the next. */
void relay_txn_add(struct relay *r, struct batch *b)
{
        if (r->tx->eos == EOS_READY && !producer_fatal(r->producer, NULL, 0) && may_join(r, b)) {
                r->tx->joins++;
                b->txn = BATCH_TXN_OPEN;
                relay_produce_batch(r, b);
                return;
        }
        batch_set_state(b, BATCH_DEFERRED);
        r->tx->n_deferred++;
        /* Not ready: a fetch sent before the producer was rebuilt came back
         * while the new one recovers (a transaction begun now would fail
         * beside init_transactions). It waits, and is given back at ready. */
        if (r->tx->phase != TXN_PHASE_NONE || r->tx->eos != EOS_READY ||
            producer_fatal(r->producer, NULL, 0))
                return;
        txn_begin(r);
        if (r->tx->phase != TXN_PHASE_OPEN)
                return; /* the producer is broken: the rebuild takes the batch back */
        r->tx->n_deferred--;
        b->txn = BATCH_TXN_OPEN;
        relay_produce_batch(r, b);
}

/* The transaction's rows went nowhere (aborted) or nowhere certain (its
 * producer died): they stay pending, and their keys wait until they are
 * fetched again. */
static void txn_rows_unsent(struct relay *r, struct batch *b)
{
        for (int i = 0; i < b->n; i++) {
                struct relay_row *row = &b->rows[i];

                if (row->state == ROW_SENT || row->state == ROW_INFLIGHT) {
                        row->state = ROW_UNSENT;
                        relay_hold_key(r, row);
                }
        }
}

/* Collects the rows for the progress record: those of the open transaction
 * in rows (*own counts them), and those of committed transactions whose
 * mark is not confirmed yet in unmarked (a crash now must not lose them, as
 * only the last record is read). Each is named by id, event_id and
 * generation. */
static int txn_progress(struct relay *r, struct progress_rows *rows, struct progress_rows *unmarked,
                        size_t *own, int *clean)
{
        for (struct batch *b = r->batches; b != NULL; b = b->next) {
                int in_txn = b->txn == BATCH_TXN_OPEN;

                if (!in_txn && !(b->txn == BATCH_TXN_COMMITTED && b->state != BATCH_MARKED))
                        continue;
                for (int i = 0; i < b->n; i++) {
                        const struct relay_row *row = &b->rows[i];

                        if (in_txn && row->produced && row->state != ROW_SENT)
                                *clean = 0; /* the transaction is in error: abort */
                        if (row->state != ROW_SENT)
                                continue;
                        if (progress_rows_add(in_txn ? rows : unmarked, row->m.id,
                                              row->m.event_id != NULL ? row->m.event_id : "",
                                              row->m.generation, row->partition, row->offset) != 0)
                                return -1;
                        if (in_txn)
                                (*own)++;
                }
        }
        return 0;
}

/* Starts the next transaction with the batches that waited for it (in
 * fetch order, up to TXN_MAX_ROWS rows). */
static void txn_next(struct relay *r)
{
        int rows = 0;

        if (producer_fatal(r->producer, NULL, 0))
                return; /* the rebuild takes them back */
        if (r->stopping) {
                give_back(r);
                return;
        }
        for (struct batch *b = r->batches; b != NULL; b = b->next) {
                if (b->state != BATCH_DEFERRED)
                        continue;
                if (rows > 0 && rows + b->n > TXN_MAX_ROWS)
                        break; /* the rest wait for the transaction after */
                if (r->tx->phase == TXN_PHASE_NONE)
                        txn_begin(r);
                if (r->tx->phase != TXN_PHASE_OPEN)
                        return;
                r->tx->n_deferred--;
                b->txn = BATCH_TXN_OPEN;
                rows += b->n;
                relay_produce_batch(r, b);
        }
        relay_release_keys(r);
}

/* The transaction ended: committed, or aborted (or its outcome is left to
 * the next producer). Its batches go on to be marked, or stay pending. */
static void txn_ended(struct relay *r, int committed, const char *err)
{
        relay_txn_set_phase(r->tx, TXN_PHASE_NONE);
        r->tx->due = 0;
        r->tx->failed = 0; /* after the abort: it reports the purged messages */
        if (committed) {
                metrics_add(r->metrics, METRICS_TXN_COMMITTED, 1);
                log_debug(r->lg, "transaction committed", "{s:i,s:i}", "rows", r->tx->rows, "steps",
                          r->tx->steps);
                test_hook_committed(r);
        } else if (!r->tx->empty) {
                metrics_add(r->metrics, METRICS_TXN_ABORTED, 1);
                log_warn(r->lg, "transaction aborted; its rows will be published again",
                         "{s:i,s:s}", "rows", r->tx->rows, "error", err != NULL ? err : "");
        }
        for (struct batch *b = r->batches, *next; b != NULL; b = next) {
                next = b->next; /* b may be freed once reported */
                if (b->txn != BATCH_TXN_OPEN)
                        continue;
                b->txn = committed ? BATCH_TXN_COMMITTED : BATCH_TXN_ABORTED;
                if (!committed)
                        txn_rows_unsent(r, b);
                r->hooks.batch_reported(r, b);
        }
        txn_next(r);
}

/* The transaction's progress record, queued in it. Returns 1, or 0 with
 * r->tx->error saying why the transaction must abort. */
static int send_record(struct relay *r, const struct progress_rows *rows,
                       const struct progress_rows *unmarked)
{
        char *record =
            progress_encode(r->tx->tid, r->cfg->schema, db_outbox_id(r->db), rows, unmarked);
        rd_kafka_resp_err_t kerr;

        if (record == NULL) {
                snprintf(r->tx->error, sizeof(r->tx->error),
                         "out of memory for the progress record");
                return 0;
        }
        kerr = producer_send_progress(r->producer, r->cfg->progress_topic, r->tx->tid, record);
        if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
                snprintf(r->tx->error, sizeof(r->tx->error),
                         "progress record of %zu rows (%zu bytes) refused: %s%s", rows->n,
                         strlen(record), rd_kafka_err2str(kerr),
                         kerr == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? " (lower --batch-size)"
                                                                      : "");
        free(record);
        return kerr == RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* Once every batch of the open transaction is reported, writes its
 * progress record and starts the commit; or starts the abort at once when
 * one of its messages failed (abort purges the rest: messages queued behind
 * a failed one would only be reported when they time out). Runs in the
 * loop, never in a producer callback. */
static void txn_end_begin(struct relay *r, int64_t now)
{
        struct progress_rows rows = {0}, unmarked = {0};
        int clean = !r->tx->failed, open_rows = 0, unmarked_rows = 0;
        size_t own = 0;

        for (struct batch *b = r->batches; b != NULL; b = b->next) {
                if (b->txn == BATCH_TXN_OPEN &&
                    (b->state == BATCH_PRODUCING || (b->outstanding > 0 && !r->tx->failed)))
                        return;
                if (b->txn == BATCH_TXN_OPEN)
                        open_rows += b->n;
                else if (b->txn == BATCH_TXN_COMMITTED && b->state != BATCH_MARKED)
                        unmarked_rows += b->n;
        }
        /* The rows of the transactions before whose marks are not confirmed
         * yet go into this record too, as unmarked (a relay that dies before
         * their marks reads this record back), so that the commit does not
         * wait for the database. Only a record that would grow past
         * TXN_MAX_ROWS waits for those marks instead (on_marked calls
         * again): a record must stay well under Kafka's message limit. */
        if (!r->tx->failed && unmarked_rows > 0 && open_rows + unmarked_rows > TXN_MAX_ROWS)
                return;
        snprintf(r->tx->error, sizeof(r->tx->error), "%s",
                 r->tx->failed ? "a message of the transaction failed" : "");
        if (txn_progress(r, &rows, &unmarked, &own, &clean) != 0) {
                snprintf(r->tx->error, sizeof(r->tx->error),
                         "out of memory for the progress record");
                clean = 0;
        }
        r->tx->rows = (int)own;
        if (clean && own > 0)
                clean = send_record(r, &rows, &unmarked);
        r->tx->empty = clean && own == 0; /* every row was held back or refused locally */
        relay_txn_set_phase(r->tx, clean && own > 0 ? TXN_PHASE_COMMITTING : TXN_PHASE_ABORTING);
        r->tx->steps = 0;
        r->tx->step_at = now;
        r->tx->deadline = now + r->cfg->transaction_timeout_ms;
        progress_rows_free(&rows);
        progress_rows_free(&unmarked);
}

/* One step of the commit or the abort. */
static void txn_step(struct relay *r, int64_t now)
{
        int committing = r->tx->phase == TXN_PHASE_COMMITTING;
        enum producer_txn_result rc;
        char err[512] = "";
        int64_t gap;

        r->tx->steps++;
        rc = committing ? producer_txn_commit(r->producer, COMMIT_MS, err, sizeof(err))
                        : producer_txn_abort(r->producer, STEP_MS, err, sizeof(err));
        now = now_ms();
        if (rc == PRODUCER_TXN_RETRY && now < r->tx->deadline) {
                if (r->tx->steps >= 7)
                        gap = STEP_MAX_GAP_MS;
                else
                        gap = (int64_t)1 << (r->tx->steps - 1);
                r->tx->step_at = now + gap;
                if (r->tx->step_at > r->tx->deadline)
                        r->tx->step_at = r->tx->deadline;
                /* About every 5 s once it has taken a second. */
                if (now - (r->tx->deadline - r->cfg->transaction_timeout_ms) >= SLOW_MS &&
                    r->tx->steps % 100 == 0)
                        log_warn(r->lg, "waiting for Kafka to end a transaction", "{s:s,s:i,s:s}",
                                 "phase", committing ? "commit" : "abort", "rows", r->tx->rows,
                                 "error", err);
                return;
        }
        if (rc == PRODUCER_TXN_RETRY) {
                /* Kafka's own transaction timeout has passed too: whatever
                 * the coordinator did, a new producer settles it (its
                 * init_transactions aborts an open transaction; a commit
                 * that went through is in the progress record). */
                snprintf(r->tx->error, sizeof(r->tx->error),
                         "%s did not end within --transaction-timeout-ms (%d ms): %.300s",
                         committing ? "the commit" : "the abort", r->cfg->transaction_timeout_ms,
                         err);
                producer_txn_give_up(r->producer, r->tx->error);
                txn_ended(r, 0, r->tx->error);
                return;
        }
        if (rc == PRODUCER_TXN_MUST_ABORT) {
                snprintf(r->tx->error, sizeof(r->tx->error), "%s", err);
                relay_txn_set_phase(r->tx, TXN_PHASE_ABORTING);
                r->tx->steps = 0;
                r->tx->step_at = now;
                r->tx->deadline = now + r->cfg->transaction_timeout_ms;
                return;
        }
        if (rc == 0 && committing)
                txn_ended(r, 1, NULL);
        else /* aborted, or left to the next producer (-1: fatal) */
                txn_ended(r, 0, rc == 0 ? r->tx->error : err);
}

/* Shutdown's deadline passed while Kafka had not answered the commit or
 * abort: the relay stops without waiting more. The rows stay pending; the
 * next relay's init_transactions aborts the transaction if Kafka never
 * committed it, and its recovery marks them sent if it did. */
static void txn_left_at_shutdown(struct relay *r)
{
        log_warn(r->lg,
                 "stopping with the transaction unfinished: its outcome is left to the next "
                 "start; its rows stay pending",
                 "{s:i,s:s}", "rows", r->tx->rows, "phase",
                 r->tx->phase == TXN_PHASE_COMMITTING ? "commit" : "abort");
        relay_txn_set_phase(r->tx, TXN_PHASE_NONE);
        r->tx->due = 0;
        r->tx->failed = 0;
        give_back(r);
}

void relay_txn_tick(struct relay *r, int64_t now)
{
        int ending;

        if (r->tx->phase == TXN_PHASE_OPEN && r->tx->due) {
                r->tx->due = 0;
                txn_end_begin(r, now);
        } else if (r->tx->phase != TXN_PHASE_OPEN) {
                r->tx->due = 0; /* reports of an abort's purged messages: nothing to do */
        }
        ending = r->tx->phase == TXN_PHASE_COMMITTING || r->tx->phase == TXN_PHASE_ABORTING;
        if (ending && r->stopping && now >= r->stop_deadline) {
                txn_left_at_shutdown(r);
                return;
        }
        /* Twice at most: a refused commit turns into an abort at once. */
        for (int i = 0;
             i < 2 &&
             (r->tx->phase == TXN_PHASE_COMMITTING || r->tx->phase == TXN_PHASE_ABORTING) &&
             now >= r->tx->step_at;
             i++)
                txn_step(r, now);
}

int64_t relay_txn_next_at(const struct relay *r)
{
        int64_t next = INT64_MAX;

        if (r->tx->phase == TXN_PHASE_COMMITTING || r->tx->phase == TXN_PHASE_ABORTING) {
                next = r->tx->step_at;
                if (r->stopping && r->stop_deadline < next)
                        next = r->stop_deadline;
        }
        if (r->duty->leader && r->tx->eos != EOS_READY && r->tx->eos != EOS_MARKING &&
            r->tx->retry_at < next)
                next = r->tx->retry_at;
        return next;
}

/* The producer is gone with its transaction: the next producer's
 * init_transactions aborts it, unless its commit had already reached Kafka,
 * which the recovery finds in the progress record. Either way no row of it
 * is marked now. Batches that waited are given back too, and a read of the
 * progress record under way is dropped (it may predate the last commit). */
void relay_txn_abandon(struct relay *r)
{
        if (r->tx->phase != TXN_PHASE_NONE)
                relay_txn_set_phase(r->tx, TXN_PHASE_NONE);
        r->tx->due = 0;
        r->tx->failed = 0;
        relay_txn_set_eos(r->tx, EOS_INIT);
        r->tx->attempt = 0;
        r->tx->read_ticket = 0;
        give_back(r);
}

/* Batches not (or no longer) in a live transaction stay pending. */
static void give_back(struct relay *r)
{
        for (struct batch *b = r->batches, *next; b != NULL; b = next) {
                next = b->next;
                if (b->txn != BATCH_TXN_OPEN && b->state != BATCH_DEFERRED)
                        continue;
                if (b->state == BATCH_DEFERRED) {
                        r->tx->n_deferred--;
                        batch_set_state(b, BATCH_IN_FLIGHT); /* nothing of it was produced */
                }
                if (b->txn == BATCH_TXN_OPEN)
                        b->txn = BATCH_TXN_ABORTED;
                txn_rows_unsent(r, b);
                r->tx->fetch = 1;
                r->hooks.batch_reported(r, b);
        }
        relay_release_keys(r);
}

static void retry_later(struct relay *r, int64_t now);

/* Recovery is over: publishing may start. Batches fetched before it (their
 * fetch was under way when the producer was rebuilt) are given back, not
 * produced: recovery may just have marked some of their rows sent, and a
 * new fetch leaves those out. */
static void became_ready(struct relay *r, long recovered_rows)
{
        log_info(r->lg, "exactly-once: ready", "{s:s,s:i}", "transactional_id", r->tx->tid,
                 "recovered_rows", (int)recovered_rows);
        relay_txn_set_eos(r->tx, EOS_READY);
        r->tx->eos_error[0] = '\0';
        r->tx->fetch = 1;
        if (r->tx->n_deferred > 0 && r->tx->phase == TXN_PHASE_NONE)
                give_back(r);
}

static void on_recovered(void *arg, long n, const char *error)
{
        struct relay *r = arg;

        if (error != NULL) {
                log_limited(r->lg, LOG_LEVEL_WARN,
                            "marking the rows of the last transaction failed", error, NULL);
                /* Read and mark again, after a backoff: at once, a failing
                 * statement would be sent again in a tight loop. */
                retry_later(r, now_ms());
                if (r->tx->eos == EOS_MARKING)
                        relay_txn_set_eos(r->tx,
                                          EOS_READ); /* read and mark again once leader again */
        } else if (r->tx->eos != EOS_MARKING) {
                /* The producer was rebuilt (or the term ended) meanwhile:
                 * its recovery starts again, and finds these rows marked. */
                metrics_add(r->metrics, METRICS_RECOVERED_ROWS, (uint64_t)n);
        } else {
                metrics_add(r->metrics, METRICS_RECOVERED_ROWS, (uint64_t)n);
                became_ready(r, n);
        }
}

static void retry_later(struct relay *r, int64_t now)
{
        r->tx->attempt++;
        r->tx->retry_at = now + backoff_delay_ms(&r->reconnect_backoff, r->tx->attempt);
}

/* Marks the rows of the last record sent where they still are the copies
 * it lists (same event_id and generation). */
static void mark_recovered(struct relay *r, const struct progress_rows *rows, int64_t now)
{
        const char **evs = malloc(sizeof(*evs) * (rows->n ? rows->n : 1));

        if (evs == NULL) {
                log_error(r->lg, "out of memory for marking the last transaction's rows", NULL);
                retry_later(r, now);
                return;
        }
        for (size_t i = 0; i < rows->n; i++)
                evs[i] = rows->event_ids[i];
        struct db_marks marks = {rows->n,       rows->ids,        evs,          rows->generations,
                                 rows->replays, rows->partitions, rows->offsets};

        r->tx->attempt = 0;
        relay_txn_set_eos(r->tx, EOS_MARKING);
        db_mark(r->db, &marks, on_recovered, r);
        free(evs);
}

/* init_transactions, one step; 1 once done. */
static int init_step(struct relay *r, int64_t now)
{
        char err[512];
        enum producer_txn_result rc = producer_txn_init(r->producer, STEP_MS, err, sizeof(err));

        if (rc == PRODUCER_TXN_RETRY) {
                snprintf(r->tx->eos_error, sizeof(r->tx->eos_error),
                         "waiting for Kafka to initialise transactions: %.400s", err);
                if (r->tx->attempt++ % 1000 == 0) /* about every 15 s */
                        log_warn(r->lg, "waiting for Kafka to initialise transactions", "{s:s,s:s}",
                                 "transactional_id", r->tx->tid, "error", err);
                r->tx->retry_at = now_ms() + INIT_RETRY_MS;
                return 0;
        }
        if (rc != 0) {
                log_error(r->lg, "cannot initialise Kafka transactions", "{s:s,s:s}",
                          "transactional_id", r->tx->tid, "error", err);
                return 0; /* fatal: the producer is rebuilt */
        }
        (void)now;
        r->tx->attempt = 0;
        r->tx->eos_error[0] = '\0';
        relay_txn_set_eos(r->tx, EOS_READ);
        return 1;
}

/* Starts reading the last progress record, beside the loop. */
static void start_read(struct relay *r, int64_t now)
{
        r->tx->read_ticket = progress_reader_start(r->tx->reader, r->tx->tid, READ_TIMEOUT_MS);
        if (r->tx->eos_error[0] == '\0')
                snprintf(r->tx->eos_error, sizeof(r->tx->eos_error),
                         "reading the last progress record");
        log_debug(r->lg, "reading the last progress record", "{s:s}", "transactional_id",
                  r->tx->tid);
        r->tx->retry_at = now + READ_POLL_MS;
}

/* A new leader (or a rebuilt producer) fences older producers, then marks
 * the rows of the last committed progress record sent before it fetches:
 * Kafka has them, and read_committed consumers have seen them. */
void relay_txn_recover(struct relay *r, int64_t now)
{
        struct progress_rows rows = {0};
        char err[512] = "", outbox_id[PROGRESS_OUTBOX_ID_SIZE] = "";
        int rc, found = 0;

        if (r->tx->eos == EOS_READY || r->tx->eos == EOS_MARKING || !r->duty->leader ||
            r->stopping || !db_connected(r->db) || producer_fatal(r->producer, NULL, 0) ||
            now < r->tx->retry_at)
                return;
        if (r->tx->eos == EOS_STALE) {
                if (r->rebuild_at == 0)
                        r->rebuild_at = now; /* the loop rebuilds; abandon sets EOS_INIT */
                return;
        }
        if (r->tx->eos == EOS_INIT && !init_step(r, now))
                return;
        if (r->tx->read_ticket == 0) {
                start_read(r, now);
                return;
        }
        rc = progress_reader_poll(r->tx->reader, r->tx->read_ticket, &rows, &found, outbox_id, err,
                                  sizeof(err));
        if (rc == PROGRESS_READING) {
                r->tx->retry_at = now + READ_POLL_MS;
                return;
        }
        r->tx->read_ticket = 0;
        if (rc != 0) {
                log_error(r->lg, "cannot read the last progress record, will retry", "{s:s}",
                          "error", err);
                snprintf(r->tx->eos_error, sizeof(r->tx->eos_error),
                         "cannot read the last progress record: %.400s", err);
                retry_later(r, now_ms());
        } else if (found && strcmp(outbox_id, db_outbox_id(r->db)) != 0) {
                /* Its rows are another outbox's: marking ours with their ids
                 * would lose events. Publish nothing until the operator
                 * gives each outbox its own transactional id. */
                log_error(r->lg,
                          "the last progress record of this transactional id belongs to another "
                          "outbox: two outboxes share it; give each its own --transactional-id. "
                          "Not publishing, will check again",
                          "{s:s,s:s,s:s}", "transactional_id", r->tx->tid, "record_outbox_id",
                          outbox_id, "outbox_id", db_outbox_id(r->db));
                snprintf(r->tx->eos_error, sizeof(r->tx->eos_error),
                         "the last progress record of this transactional id belongs to another "
                         "outbox");
                retry_later(r, now_ms());
        } else if (!found || rows.n == 0) {
                r->tx->attempt = 0;
                became_ready(r, 0);
        } else {
                mark_recovered(r, &rows, now);
        }
        progress_rows_free(&rows);
}
