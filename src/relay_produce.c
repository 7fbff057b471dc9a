/* relay_produce: hands the rows of fetched batches to the producer, in id
 * order across batches. A full producer queue (QUEUE_FULL) pauses that in
 * the loop, which serves the delivery reports that make room and then
 * resumes here: producer_send never waits, so signals, probes and the
 * database keep being served while Kafka is slow or away. */
#include <stdio.h>

#include "relay_int.h"

/* The producer's queue is full (queue.buffering.max.messages or .kbytes):
 * the rest of the batch waits in the loop, which serves the delivery
 * reports that make room, instead of waiting inside librdkafka. Said at
 * most once a second, with how often it happened meanwhile. */
static void queue_full(struct relay *r, int was_full)
{
        int64_t now = now_ms();

        r->queue_full = 1;
        if (was_full)
                return; /* still the same wait */
        r->queue_full_count++;
        if (now - r->queue_full_logged_at < 1000)
                return;
        log_warn(r->lg, "kafka producer queue full: waiting for deliveries", "{s:i,s:I}",
                 "in_queue", producer_outstanding(r->producer), "times",
                 (json_int_t)r->queue_full_count);
        r->queue_full_logged_at = now;
        r->queue_full_count = 0;
}

/* Whether b's rows not produced yet will never be: its transaction is over
 * or doomed (--exactly-once), or shutdown gave up on deliveries. They stay
 * pending, like any row not delivered. */
static int produce_abandoned(const struct relay *r, const struct batch *b)
{
        return r->purged || (r->cfg->exactly_once && (b->txn != BATCH_TXN_OPEN || r->txn_failed));
}

/* Produces the rest of b; 1 if the queue filled before its end. */
static int produce_rest(struct relay *r, struct batch *b, int was_full)
{
        for (; b->next_row < b->n; b->next_row++) {
                struct relay_row *row = &b->rows[b->next_row];

                if (produce_abandoned(r, b)) {
                        row->state = ROW_UNSENT;
                        relay_hold_key(r, row);
                } else if (relay_produce_row(r, b, row) != 0) {
                        queue_full(r, was_full);
                        return 1;
                }
        }
        batch_set_state(b, BATCH_IN_FLIGHT);
        relay_batch_reported(r, b); /* may free b */
        return 0;
}

void relay_resume_producing(struct relay *r)
{
        int was_full = r->queue_full;

        r->queue_full = 0;
        /* In fetch order, and none before the one ahead is done: rows go to
         * the producer in id order. */
        for (struct batch *b = r->batches, *next; b != NULL; b = next) {
                next = b->next; /* b may be freed once produced */
                if (b->state == BATCH_PRODUCING && produce_rest(r, b, was_full) != 0)
                        return;
                was_full = 0; /* progress: a new wait if it fills again */
        }
}

void relay_produce_batch(struct relay *r, struct batch *b)
{
        batch_set_state(b, BATCH_PRODUCING);
        b->next_row = 0;
        if (!r->queue_full)
                relay_resume_producing(r);
}
