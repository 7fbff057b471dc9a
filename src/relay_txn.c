/* relay_txn: --exactly-once. Batches are published in Kafka transactions,
 * each carrying a progress record of its rows; rows are marked sent only
 * after the commit, and a new leader first marks the rows of the last
 * committed record sent, so a batch Kafka has is never published again. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay_int.h"
#include "progress.h"

#define INIT_STEP_MS    200  /* init_transactions blocks at most this long per call */
#define READ_TIMEOUT_MS 5000 /* reading the last progress record */

#ifdef OUTBOX_TEST_HOOKS
/* Test hook for the fault suite: SIGKILL right after the Nth commit, before
 * its rows can be marked, the window exactly-once is for. Compiled only with
 * -DOUTBOX_TEST_HOOKS=ON, so that no environment variable can make a
 * production relay kill itself. */
static void test_hook_init(struct relay *r)
{
        const char *kill_after = getenv("OUTBOX_RELAY_TEST_KILL_AFTER_COMMITS");

        r->kill_after_commits = kill_after != NULL ? strtol(kill_after, NULL, 10) : 0;
}

static void test_hook_committed(struct relay *r)
{
        if (r->kill_after_commits > 0 && ++r->commits == r->kill_after_commits) {
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

void relay_txn_init(struct relay *r)
{
        config_transactional_id(r->cfg, r->tid, sizeof(r->tid));
        r->eos = EOS_INIT;
        test_hook_init(r);
}

static void give_back(struct relay *r);

static void txn_begin(struct relay *r)
{
        char err[512];

        if (producer_txn_begin(r->producer, err, sizeof(err)) != 0) {
                log_error(r->lg, "cannot begin a Kafka transaction", "{s:s}", "error", err);
                return;
        }
        r->txn_open = 1;
}

/* Produces b in the open transaction, or in a new one; while a transaction
 * is open b waits, and every batch fetched meanwhile goes into the next. */
void relay_txn_add(struct relay *r, struct batch *b)
{
        b->deferred = 1;
        r->n_deferred++;
        if (r->txn_open || producer_fatal(r->producer, NULL, 0))
                return;
        txn_begin(r);
        if (!r->txn_open)
                return; /* the producer is broken: the rebuild takes the batch back */
        b->deferred = 0;
        r->n_deferred--;
        b->in_txn = 1;
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

/* Collects the rows for the progress record: those of the open transaction,
 * and those of committed transactions whose mark is not confirmed yet (a
 * crash now must not lose them, as only the last record is read). */
static int txn_progress(struct relay *r, struct progress_rows *rows, struct progress_rows *unmarked,
                        int *clean)
{
        for (struct batch *b = r->batches; b != NULL; b = b->next) {
                struct progress_rows *to = b->in_txn ? rows : unmarked;

                if (!b->in_txn && !(b->outcome == TXN_COMMITTED && !b->marked))
                        continue;
                for (int i = 0; i < b->n; i++) {
                        const struct relay_row *row = &b->rows[i];

                        if (b->in_txn && row->produced && row->state != ROW_SENT)
                                *clean = 0; /* the transaction is in error: abort */
                        if (row->state == ROW_SENT &&
                            progress_rows_add(to, row->m.id, row->m.replays, row->partition,
                                              row->offset) != 0)
                                return -1;
                }
        }
        return 0;
}

/* Commits the open transaction once all its batches are reported, or
 * aborts it as soon as one of its messages failed (abort purges the rest),
 * then hands its batches on to be marked, and starts the next one with the
 * batches that waited. Runs in the loop, never in a producer callback. */
void relay_txn_finish(struct relay *r)
{
        struct progress_rows rows = {0}, unmarked = {0};
        char err[512] = "";
        int clean = 1, empty, rc, n_rows;
        char *record = NULL;

        r->txn_due = 0;
        if (!r->txn_open)
                return;
        for (struct batch *b = r->batches; b != NULL; b = b->next)
                if (b->in_txn && (b->producing || (b->outstanding > 0 && !r->txn_failed)))
                        return;
        if (r->txn_failed)
                clean = 0;
        if (txn_progress(r, &rows, &unmarked, &clean) != 0) {
                snprintf(err, sizeof(err), "out of memory for the progress record");
                clean = 0;
        }
        n_rows = (int)rows.n;
        if (clean && rows.n > 0) {
                record =
                    progress_encode(r->tid, r->cfg->schema, db_outbox_id(r->db), &rows, &unmarked);
                if (record == NULL) {
                        snprintf(err, sizeof(err), "out of memory for the progress record");
                        clean = 0;
                } else {
                        rd_kafka_resp_err_t kerr = producer_send_progress(
                            r->producer, r->cfg->progress_topic, r->tid, record);

                        if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
                                snprintf(err, sizeof(err), "progress record refused: %s",
                                         rd_kafka_err2str(kerr));
                                clean = 0;
                        }
                }
        }
        empty = clean && rows.n == 0; /* every row was held back or refused locally */
        if (clean && rows.n > 0)
                rc = producer_txn_commit(r->producer, err, sizeof(err));
        else
                rc = producer_txn_abort(r->producer, err, sizeof(err)) == 0 ? PRODUCER_TXN_ABORTED
                                                                            : -1;
        free(record);
        progress_rows_free(&rows);
        progress_rows_free(&unmarked);
        r->txn_open = 0;
        r->txn_failed = 0; /* after the abort: it reports the purged messages */
        if (rc == 0) {
                metrics_add(r->metrics, METRICS_TXN_COMMITTED, 1);
                log_debug(r->lg, "transaction committed", "{s:i}", "rows", n_rows);
                test_hook_committed(r);
        } else if (!empty) {
                metrics_add(r->metrics, METRICS_TXN_ABORTED, 1);
                log_warn(r->lg, "transaction aborted; its rows will be published again",
                         "{s:i,s:s}", "rows", n_rows, "error", err);
        }
        for (struct batch *b = r->batches, *next; b != NULL; b = next) {
                next = b->next; /* b may be freed once reported */
                if (!b->in_txn)
                        continue;
                b->in_txn = 0;
                b->outcome = rc == 0 ? TXN_COMMITTED : TXN_ABORTED;
                if (rc != 0)
                        txn_rows_unsent(r, b);
                relay_batch_reported(r, b);
        }
        /* The batches that waited go together into the next transaction. */
        if (producer_fatal(r->producer, NULL, 0))
                return; /* the rebuild takes them back */
        if (r->stopping) {
                give_back(r);
                return;
        }
        for (struct batch *b = r->batches; b != NULL; b = b->next) {
                if (!b->deferred)
                        continue;
                if (!r->txn_open)
                        txn_begin(r);
                if (!r->txn_open)
                        return;
                b->deferred = 0;
                r->n_deferred--;
                b->in_txn = 1;
                relay_produce_batch(r, b);
        }
        relay_release_keys(r);
}

/* The producer is gone with its transaction: the next producer's
 * init_transactions aborts it, unless its commit had already reached Kafka,
 * which the recovery finds in the progress record. Either way no row of it
 * is marked now. Batches that waited are given back too. */
void relay_txn_abandon(struct relay *r)
{
        r->txn_open = 0;
        r->txn_due = 0;
        r->txn_failed = 0;
        r->eos = EOS_INIT;
        r->eos_attempt = 0;
        give_back(r);
}

/* Batches not (or no longer) in a live transaction stay pending. */
static void give_back(struct relay *r)
{
        for (struct batch *b = r->batches, *next; b != NULL; b = next) {
                next = b->next;
                if (!b->in_txn && !b->deferred)
                        continue;
                r->n_deferred -= b->deferred;
                if (b->in_txn)
                        b->outcome = TXN_ABORTED;
                b->in_txn = 0;
                b->deferred = 0;
                txn_rows_unsent(r, b);
                r->want_fetch = 1;
                relay_batch_reported(r, b);
        }
        relay_release_keys(r);
}

static void retry_later(struct relay *r, int64_t now);

static void on_recovered(void *arg, PGresult *res, const char *error)
{
        struct relay *r = arg;

        if (error != NULL) {
                log_limited(r->lg, CONFIG_LOG_WARN,
                            "marking the rows of the last transaction failed", error, NULL);
                /* Read and mark again, after a backoff: at once, a failing
                 * statement would be sent again in a tight loop. */
                retry_later(r, now_ms());
                if (r->eos == EOS_MARKING)
                        r->eos = EOS_READ; /* read and mark again once leader again */
        } else {
                long n = atol(PQcmdTuples(res));

                metrics_add(r->metrics, METRICS_RECOVERED_ROWS, (uint64_t)n);
                log_info(r->lg, "exactly-once: ready", "{s:s,s:i}", "transactional_id", r->tid,
                         "recovered_rows", (int)n);
                r->eos = EOS_READY;
                r->eos_error[0] = '\0';
                r->want_fetch = 1;
        }
        PQclear(res);
}

static void retry_later(struct relay *r, int64_t now)
{
        r->eos_attempt++;
        r->eos_retry_at = now + backoff_delay_ms(&r->reconnect_backoff, r->eos_attempt);
}

/* A new leader (or a rebuilt producer) fences older producers, then marks
 * the rows of the last committed progress record sent before it fetches:
 * Kafka has them, and read_committed consumers have seen them. */
void relay_txn_recover(struct relay *r, int64_t now)
{
        struct progress_rows rows = {0};
        char err[512], outbox_id[PROGRESS_OUTBOX_ID_SIZE] = "";
        int rc, found = 0;

        if (r->eos == EOS_READY || r->eos == EOS_MARKING || !r->leader || r->stopping ||
            !db_connected(r->db) || producer_fatal(r->producer, NULL, 0) || now < r->eos_retry_at)
                return;
        if (r->eos == EOS_STALE) {
                if (r->rebuild_at == 0)
                        r->rebuild_at = now; /* the loop rebuilds; abandon sets EOS_INIT */
                return;
        }
        if (r->eos == EOS_INIT) {
                /* In short steps (the call resumes where it was), so that the
                 * loop keeps serving signals and probes while Kafka is away. */
                rc = producer_txn_init(r->producer, INIT_STEP_MS, err, sizeof(err));
                if (rc == PRODUCER_TXN_RETRY) {
                        snprintf(r->eos_error, sizeof(r->eos_error),
                                 "waiting for Kafka to initialise transactions: %.400s", err);
                        if (r->eos_attempt++ == 0 || r->eos_attempt % 100 == 0)
                                log_warn(r->lg, "waiting for Kafka to initialise transactions",
                                         "{s:s,s:s}", "transactional_id", r->tid, "error", err);
                        r->eos_retry_at = now_ms() + 10;
                        return;
                }
                if (rc != 0) {
                        log_error(r->lg, "cannot initialise Kafka transactions", "{s:s,s:s}",
                                  "transactional_id", r->tid, "error", err);
                        return; /* fatal: the producer is rebuilt */
                }
                r->eos_attempt = 0;
                r->eos = EOS_READ;
        }
        rc = progress_read_last(r->cfg, r->lg, r->tid, READ_TIMEOUT_MS, &rows, &found, outbox_id,
                                err, sizeof(err));
        if (rc != 0) {
                log_error(r->lg, "cannot read the last progress record, will retry", "{s:s}",
                          "error", err);
                snprintf(r->eos_error, sizeof(r->eos_error),
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
                          "{s:s,s:s,s:s}", "transactional_id", r->tid, "record_outbox_id",
                          outbox_id, "outbox_id", db_outbox_id(r->db));
                snprintf(r->eos_error, sizeof(r->eos_error),
                         "the last progress record of this transactional id belongs to another "
                         "outbox");
                retry_later(r, now_ms());
        } else if (!found || rows.n == 0) {
                log_info(r->lg, "exactly-once: ready", "{s:s,s:i}", "transactional_id", r->tid,
                         "recovered_rows", 0);
                r->eos_attempt = 0;
                r->eos = EOS_READY;
                r->eos_error[0] = '\0';
                r->want_fetch = 1;
        } else {
                r->eos_attempt = 0;
                r->eos = EOS_MARKING;
                db_mark_committed(r->db, rows.n, rows.ids, rows.replays, rows.partitions,
                                  rows.offsets, on_recovered, r);
        }
        progress_rows_free(&rows);
}
