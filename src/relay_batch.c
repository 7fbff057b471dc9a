/* relay_batch: a batch's life as one state, moved only by batch_set_state,
 * and a failed row's record_failure as one state. Like PgBouncer's
 * change_state(): the legal moves are listed once, and anything else is a
 * bug caught where it happens rather than a batch stuck for ever. */
#include "relay_batch.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[BATCH_STATES] = {
    [BATCH_FETCHED] = "fetched",     [BATCH_DEFERRED] = "deferred", [BATCH_PRODUCING] = "producing",
    [BATCH_IN_FLIGHT] = "in_flight", [BATCH_REPORTED] = "reported", [BATCH_MARK_DUE] = "mark_due",
    [BATCH_MARKING] = "marking",     [BATCH_MARKED] = "marked",
};

const char *batch_state_name(enum batch_state s)
{
        return s < BATCH_STATES ? state_names[s] : "?";
}

#define TO(s) (1u << (s))

/* The legal moves: for each state, the states it may go to. */
static const unsigned batch_moves[BATCH_STATES] = {
    /* --exactly-once waits for a transaction */
    [BATCH_FETCHED] = TO(BATCH_DEFERRED) | TO(BATCH_PRODUCING),
    /* taken by a transaction, or given back unproduced */
    [BATCH_DEFERRED] = TO(BATCH_PRODUCING) | TO(BATCH_IN_FLIGHT),
    [BATCH_PRODUCING] = TO(BATCH_IN_FLIGHT),
    [BATCH_IN_FLIGHT] = TO(BATCH_REPORTED),
    /* nothing sent: nothing to mark */
    [BATCH_REPORTED] = TO(BATCH_MARK_DUE) | TO(BATCH_MARKED),
    [BATCH_MARK_DUE] = TO(BATCH_MARKING),
    /* a failed mark is due again */
    [BATCH_MARKING] = TO(BATCH_MARKED) | TO(BATCH_REPORTED),
};

/* A failed row's record_failure: it waits for the reports of the rows
 * produced before it; refused, it is recorded again in ASCII at once, or
 * later as it is. */
static const unsigned fail_moves[] = {
    [FAIL_NONE] = TO(FAIL_WAITING),
    /* the reports of the rows produced before it are in */
    [FAIL_WAITING] = TO(FAIL_TO_RECORD),
    [FAIL_TO_RECORD] = TO(FAIL_RECORDING),
    [FAIL_RECORDING] = TO(FAIL_RECORDED) | TO(FAIL_RECORDING_ASCII) | TO(FAIL_TO_RECORD),
    [FAIL_TO_RECORD_ASCII] = TO(FAIL_RECORDING_ASCII),
    [FAIL_RECORDING_ASCII] = TO(FAIL_RECORDED) | TO(FAIL_TO_RECORD_ASCII),
};

int batch_transition_ok(enum batch_state from, enum batch_state to)
{
        return from < BATCH_STATES && (batch_moves[from] & TO(to)) != 0;
}

void batch_set_state(struct batch *b, enum batch_state to)
{
        if (!batch_transition_ok(b->state, to)) {
                /* Always on, NDEBUG or not: a batch moved the wrong way
                 * would be marked too soon or never freed. */
                fprintf(stderr, "relay_batch: illegal transition %s -> %s\n",
                        batch_state_name(b->state), batch_state_name(to));
                abort();
        }
        b->state = to;
}

static int fail_transition_ok(enum row_fail from, enum row_fail to)
{
        return (size_t)from < sizeof(fail_moves) / sizeof(fail_moves[0]) &&
               (fail_moves[from] & TO(to)) != 0;
}

void batch_row_fail_set(struct relay_row *row, enum row_fail to)
{
        if (!fail_transition_ok(row->fail, to)) {
                fprintf(stderr, "relay_batch: illegal failure transition %d -> %d (row %lld)\n",
                        (int)row->fail, (int)to, (long long)row->m.id);
                abort();
        }
        /* Counted per batch, so that the scans for a row overtaken run
         * only while some failure is unrecorded. */
        if (row->batch != NULL && row->fail == FAIL_NONE)
                row->batch->unrecorded++;
        if (row->batch != NULL && to == FAIL_RECORDED)
                row->batch->unrecorded--;
        row->fail = to;
}

int batch_row_unrecorded(const struct relay_row *row)
{
        return row->state == ROW_FAILED && row->fail != FAIL_NONE && row->fail != FAIL_RECORDED;
}

static int same_key(const struct relay_row *a, const struct relay_row *b)
{
        return a->m.key != NULL && b->m.key != NULL && a->m.key_len == b->m.key_len &&
               memcmp(a->m.key, b->m.key, a->m.key_len) == 0;
}

int batch_overtakes(const struct batch *b, const struct relay_row *failed)
{
        if (failed->m.key == NULL)
                return 0; /* no key, no order to keep */
        for (int i = 0; i < b->n; i++) {
                const struct relay_row *x = &b->rows[i];

                if (x->state == ROW_SENT && x->m.id > failed->m.id && same_key(x, failed))
                        return 1;
        }
        return 0;
}

int batch_unsent_overtaken(struct batch *from, const struct relay_row *unsent)
{
        int late = 0;

        if (unsent->m.key == NULL)
                return 0; /* no key, no order to keep */
        for (struct batch *b = from; b != NULL; b = b->next) {
                for (int i = 0; i < b->n; i++) {
                        struct relay_row *x = &b->rows[i];

                        if (x->m.id <= unsent->m.id || !same_key(x, unsent))
                                continue;
                        if (x->state == ROW_INFLIGHT) {
                                x->behind = 1;
                        } else if (x->state == ROW_SENT &&
                                   (b->state == BATCH_MARKING || b->state == BATCH_MARKED)) {
                                late++; /* named by a mark already: too late */
                        } else if (x->state == ROW_SENT) {
                                x->state = ROW_UNSENT;
                                b->left_pending = 1;
                        }
                }
        }
        return late;
}

int batch_sent_rows(const struct batch *b)
{
        int sent = 0;

        for (int i = 0; i < b->n; i++)
                sent += b->rows[i].state == ROW_SENT;
        return sent;
}

int batch_submitted(const struct batch *b)
{
        return b->state >= BATCH_REPORTED;
}

int batch_marking(const struct batch *b)
{
        return b->state >= BATCH_MARK_DUE;
}

int batch_done(const struct batch *b)
{
        if (b->state != BATCH_MARKED || b->in_submit || b->txn == BATCH_TXN_OPEN)
                return 0;
        assert(b->outstanding == 0);
        for (int i = 0; i < b->n; i++)
                if (b->rows[i].state == ROW_FAILED && b->rows[i].fail != FAIL_RECORDED)
                        return 0;
        return 1;
}
