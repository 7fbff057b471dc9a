/* relay_fail: recording the rows that failed. Each failed row goes through
 * <schema>.record_failure(), which counts its attempt, schedules its retry
 * or moves it to the dead letters. That statement can fail too, and a row
 * whose failure is never recorded would hold its key for ever (and, sent
 * back to the table unrecorded, be fetched again at once, for ever): a
 * reason PostgreSQL refuses is recorded again in ASCII, and a
 * record_failure that keeps failing is repeated after a backoff while the
 * row waits in its batch.
 * A broker may append the requests that follow a refused one (Apache Kafka
 * when the refused request was a new producer id's first; the dev Kafka
 * always): a later row of the failed row's key can be in the topic
 * already, and retried the failed row would follow it. So a failure is
 * recorded only once every row produced before it has its report, and a
 * row overtaken so is dead-lettered at once. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "backoff.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "metrics.h"
#include "relay_batch.h"
#include "relay_int.h"

static void record_failure(struct relay *r, struct relay_row *row, enum row_fail queued);

/* A W3C traceparent is 55 characters; a longer value is cut, whole
 * characters, so a row cannot make the line long. */
#define TRACEPARENT_LOG_MAX 128

/* The row's traceparent header, made fit for the log (NULL: none), so that
 * a failed row's line can be found from the trace it belongs to. */
static char *row_traceparent(const struct relay_row *row)
{
        char *tp = message_row_header(&row->m, "traceparent"), *clean;

        if (tp == NULL)
                return NULL;
        clean = log_clean_text(tp, TRACEPARENT_LOG_MAX, 0);
        free(tp);
        return clean;
}

/* record_failure counted the row's attempt: retried later (its key held
 * back by the fetch meanwhile), or dead-lettered. Stale: the row was made
 * pending again (or marked, or deleted) since it was fetched, so the
 * failure was not counted; it is fetched again as it is now, like a
 * retried row. */
static void recorded(struct relay *r, struct relay_row *row, enum db_outcome outcome)
{
        int dead = outcome == DB_OUTCOME_DEAD;
        char *tp = row_traceparent(row);

        relay_stmt_ok(r, RELAY_STMT_RECORD);
        batch_row_fail_set(row, FAIL_RECORDED);
        if (outcome != DB_OUTCOME_STALE)
                metrics_topic_add(r->metrics, dead ? METRICS_DEAD_LETTERED : METRICS_RETRIED,
                                  row->topic, 1);
        if (!dead) {
                int64_t at = now_ms() + row->retry_ms;

                r->duty->failing = 1;
                r->duty->failing_gen++;
                if (r->retry_at == 0 || at < r->retry_at)
                        r->retry_at = at;
                if (outcome == DB_OUTCOME_STALE)
                        log_info(r->lg,
                                 "publish failed for a copy of the row that was made pending "
                                 "again, marked sent or deleted since: not counted",
                                 "{s:I,s:I,s:s,s:s*}", "id", (json_int_t)row->m.id, "generation",
                                 (json_int_t)row->m.generation, "reason", row->error, "traceparent",
                                 tp);
                else
                        log_warn(r->lg, "publish failed, will retry", "{s:I,s:i,s:s,s:s*}", "id",
                                 (json_int_t)row->m.id, "attempts", row->m.attempts + 1, "reason",
                                 row->error, "traceparent", tp);
        } else {
                log_error(r->lg, "row dead-lettered", "{s:I,s:i,s:s,s:s*}", "id",
                          (json_int_t)row->m.id, "attempts", row->m.attempts + 1, "reason",
                          row->error, "traceparent", tp);
        }
        free(tp);
}

static void on_failure_recorded(void *arg, enum db_outcome outcome, const char *error)
{
        struct relay_row *row = arg;
        struct batch *b = row->batch;
        struct relay *r = b->relay;

        if (error != NULL && db_connected(r->db) && row->fail == FAIL_RECORDING) {
                /* The connection is fine: the statement itself failed. The
                 * text is the likely cause (a server encoding without its
                 * characters, a CHECK on last_error): once more at once with
                 * the reason in ASCII, so that the row counts its attempt
                 * and moves on (retried, then dead-lettered) instead of
                 * holding its key for ever. */
                char *ascii = log_clean_text(row->error, RELAY_REASON_MAX, 1);

                metrics_statement_error(r->metrics, METRICS_STMT_RECORD_FAILURE);
                log_limited(r->lg, LOG_LEVEL_WARN,
                            "recording a failed row was refused; recording it again with the "
                            "reason in ASCII",
                            error, "{s:I}", "id", (json_int_t)row->m.id);
                if (ascii != NULL) {
                        free(row->error);
                        row->error = ascii;
                }
                record_failure(r, row, FAIL_RECORDING_ASCII);
        } else if (error != NULL) {
                /* Still refused (record_failure itself is broken: EXECUTE
                 * revoked, a trigger), or the connection is lost. The row
                 * stays in its batch, its key held, and is recorded again
                 * after a backoff (relay_retry_records) or once reconnected;
                 * other keys flow meanwhile. */
                batch_row_fail_set(row, row->fail == FAIL_RECORDING_ASCII ? FAIL_TO_RECORD_ASCII
                                                                          : FAIL_TO_RECORD);
                r->record_retry_at = relay_stmt_failed(r, RELAY_STMT_RECORD, error, now_ms());
                if (!db_connected(r->db))
                        r->record_retry_at = 0;
        } else {
                recorded(r, row, outcome);
        }
        r->hooks.batch_check_done(r, b);
}

/* Queues record_failure for a failed row. */
static void record_failure(struct relay *r, struct relay_row *row, enum row_fail queued)
{
        batch_row_fail_set(row, queued);
        /* A row dead at once counts its last attempt now. */
        db_record_failure(r->db, row->m.id, row->m.generation, row->m.attempts, row->error,
                          row->retry_ms, row->dead_now ? row->m.attempts + 1 : r->cfg->max_attempts,
                          on_failure_recorded, row);
}

/* Whether every row produced before row failed has its report: they are
 * in the batches up to row->wait_seq. */
static int reports_in(const struct relay *r, const struct relay_row *row)
{
        for (const struct batch *b = r->batches; b != NULL && b->seq <= row->wait_seq; b = b->next)
                if (b->outstanding > 0)
                        return 0;
        return 1;
}

/* Whether Kafka acknowledged a later row of row's key. */
static int overtaken(const struct relay *r, const struct relay_row *row)
{
        for (const struct batch *b = r->batches; b != NULL && b->seq <= row->wait_seq; b = b->next)
                if (batch_overtakes(b, row))
                        return 1;
        return 0;
}

/* row is overtaken: retried it would be published after a later row of its
 * key, so it is dead-lettered now (a requeue is the operator's call). */
static void dead_overtaken(struct relay *r, struct relay_row *row)
{
        static const char why[] = "; not retried: a later row of its key was published";
        size_t len = row->error != NULL ? strlen(row->error) : 0;
        char *e = malloc(len + sizeof(why)), *tp;

        if (e != NULL) {
                memcpy(e, row->error != NULL ? row->error : "", len);
                memcpy(e + len, why, sizeof(why));
                free(row->error);
                /* Within the reason's limit, in whole characters. */
                row->error = log_clean_text(e, RELAY_REASON_MAX, 0);
                free(e);
        }
        row->dead_now = 1;
        tp = row_traceparent(row);
        log_warn(r->lg,
                 "a later row of a failed row's key was published: dead-lettering the failed row",
                 "{s:I,s:s*}", "id", (json_int_t)row->m.id, "traceparent", tp);
        free(tp);
}

void relay_submit_failures(struct relay *r, struct batch *b)
{
        for (int i = 0; i < b->n && db_connected(r->db); i++) {
                struct relay_row *row = &b->rows[i];

                if (row->state == ROW_FAILED && row->fail == FAIL_WAITING && reports_in(r, row)) {
                        if (!row->dead_now && overtaken(r, row))
                                dead_overtaken(r, row);
                        batch_row_fail_set(row, FAIL_TO_RECORD);
                }
                if (row->state != ROW_FAILED ||
                    (row->fail != FAIL_TO_RECORD && row->fail != FAIL_TO_RECORD_ASCII))
                        continue;
                row->retry_ms = backoff_delay_ms(&r->retry_backoff, row->m.attempts + 1);
                record_failure(r, row,
                               row->fail == FAIL_TO_RECORD ? FAIL_RECORDING : FAIL_RECORDING_ASCII);
        }
}

void relay_retry_records(struct relay *r, int64_t now)
{
        if (r->record_retry_at == 0 || now < r->record_retry_at || !db_connected(r->db))
                return;
        r->record_retry_at = 0;
        for (struct batch *b = r->batches, *next; b != NULL; b = next) {
                next = b->next; /* b may be freed */
                if (!batch_submitted(b) || b->in_submit)
                        continue;
                b->in_submit = 1;
                relay_submit_failures(r, b);
                b->in_submit = 0;
                r->hooks.batch_check_done(r, b);
        }
}

void relay_submit_waiting(struct relay *r)
{
        for (struct batch *b = r->batches, *next; b != NULL; b = next) {
                next = b->next; /* b may be freed */
                if (b->unrecorded == 0 || !batch_submitted(b) || b->in_submit)
                        continue;
                b->in_submit = 1;
                relay_submit_failures(r, b);
                b->in_submit = 0;
                r->hooks.batch_check_done(r, b);
        }
}
