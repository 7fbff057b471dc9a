/* relay_mark: which rows are marked sent, and when. The pure part of the
 * marks: it owns when the next mark is due and picks its rows; the loop
 * sends it (relay_mark_tick) and moves the batches on with its outcome. */
#ifndef OUTBOX_RELAY_MARK_H
#define OUTBOX_RELAY_MARK_H

#include <stddef.h>
#include <stdint.h>

#include "compiler.h"
#include "db.h"
#include "relay_batch.h"

struct relay_marks;

/* One mark: the rows it names (db_marks' arrays) and their batches. */
struct relay_mark_set {
        struct db_marks rows;
        int n_batches;
        struct batch **batches;
};

/* delay_ms: how long a due mark waits for the batches that finish after
 * it (--mark-delay-ms; 0 with --exactly-once, whose batches are all due at
 * a commit); batch_size and pipeline_depth: when waiting gains nothing. */
struct relay_marks *relay_marks_new(int delay_ms, int batch_size,
                                    int pipeline_depth) OUTBOX_MUST_CHECK;
void relay_marks_free(struct relay_marks *m);
/* Whether a mark found rows gone back to the table (made pending again,
 * marked by another relay): the floor was lowered and the loop fetches.
 * Cleared as it is read. */
int relay_marks_want_fetch(struct relay_marks *m);

/* b's reports are in (REPORTED): its sent rows are due to be marked, or
 * with none it is MARKED at once. Anything else is left as it is. */
void relay_marks_due(struct relay_marks *m, struct batch *b, int64_t now);
/* Batches held in all, those published and waiting for a shared mark
 * included, before fetching waits and the due ones are marked at once:
 * twice the pipeline, and at least RELAY_MARKS_HOLD. At 1,000 events/s
 * the relay fetches every --busy-poll-ms, a few rows a batch, and a hold
 * of twice a pipeline of 4 cut every mark at 8 batches (~90 marks a
 * second) long before --mark-delay-ms; --memory-budget-bytes still bounds
 * what they hold. */
#define RELAY_MARKS_HOLD 64
int relay_marks_hold(int pipeline_depth);
/* When the due rows are to be marked (INT64_MAX: none due); at once when
 * waiting would gain nothing (a batch's worth of rows), hold up fetching
 * (relay_marks_hold batches whose mark is not on its way yet) or delay
 * shutdown (stopping). */
int64_t relay_marks_next_at(const struct relay_marks *m, int n_batches, int stopping);
/* Whether some due batch may be marked now: not one behind a batch still
 * awaiting reports, nor one holding a later row of a failed row's key
 * while that failure is unrecorded. */
int relay_marks_ready(const struct batch *batches);
/* Collects the sent rows of every due batch that may be marked now
 * (relay_marks_ready), in fetch order and in id order within a batch,
 * into set and moves those batches to MARKING.
 * Returns 0, or -1 out of memory (nothing moved, tried again after a
 * short pause). */
int relay_marks_collect(struct relay_marks *m, struct batch *batches, struct relay_mark_set *set,
                        int64_t now) OUTBOX_MUST_CHECK;
void relay_mark_set_free(struct relay_mark_set *set);
/* Out of memory for a mark: the due rows wait until then. */
void relay_marks_postpone(struct relay_marks *m, int64_t until);
/* Whether a fetch must wait: pipeline_depth batches are being published,
 * or relay_marks_hold batches wait for their mark to be sent (which it
 * then is, at once), or twice that many batches, or twice pipeline_depth
 * full batches' rows, are held in all. Batches whose mark is on its way
 * count only towards the last two: a fetch does not wait for a mark's
 * round trip while small batches come (a trickle of events), and a drain
 * holds no more rows than before. */
int relay_marks_pipeline_full(const struct batch *batches, int n_batches, int pipeline_depth,
                              int batch_size);
/* The batches whose mark is not on its way yet (before BATCH_MARKING). */
int relay_marks_unsent(const struct batch *batches);

#endif
