/* relay_batch: a fetched batch and its rows, and the one place their life
 * changes state. Pure: no database, no producer, no loop; the relay's
 * modules move a batch along and the loop acts on where it is. */
#ifndef OUTBOX_RELAY_BATCH_H
#define OUTBOX_RELAY_BATCH_H

#include <stdint.h>

#include "message.h"

struct db_rows;
struct relay;

enum row_state {
        ROW_INFLIGHT, /* handed to the producer, report awaited */
        ROW_SENT,     /* acknowledged by Kafka: to be marked sent */
        ROW_FAILED,   /* rejected for a reason of its own: counts an attempt */
        ROW_UNSENT,   /* not delivered through no fault of its own (producer
                       * rebuilt, shutdown, held behind its key): stays pending */
};

/* A failed row's record_failure. It waits for the reports of every row
 * produced before it failed (a later row of its key may be among them,
 * acknowledged behind its refusal: then it is dead-lettered, not retried).
 * A reason PostgreSQL refuses is recorded again once in ASCII (the _ASCII
 * states), then retried as it is. */
enum row_fail {
        FAIL_NONE,            /* not failed */
        FAIL_WAITING,         /* failed: reports of the rows produced before awaited */
        FAIL_TO_RECORD,       /* failed: record_failure not queued yet */
        FAIL_RECORDING,       /* record_failure queued */
        FAIL_TO_RECORD_ASCII, /* its reason was made ASCII: record again */
        FAIL_RECORDING_ASCII, /* queued with the ASCII reason */
        FAIL_RECORDED,        /* in the database: attempt counted */
};

/* A batch's life, in this order (DEFERRED only with --exactly-once). */
enum batch_state {
        BATCH_FETCHED,   /* just fetched */
        BATCH_DEFERRED,  /* fetched while a transaction was open: waits for the next */
        BATCH_PRODUCING, /* rows from next_row on still go to the producer */
        BATCH_IN_FLIGHT, /* every row handed over: reports (or its transaction's end) awaited */
        BATCH_REPORTED,  /* every outcome known: the database is told once connected */
        BATCH_MARK_DUE,  /* its sent rows wait to be marked with the batches after it */
        BATCH_MARKING,   /* the mark is queued */
        BATCH_MARKED,    /* marked (or nothing to mark): done once its failures are recorded */
        BATCH_STATES
};

/* --exactly-once: the transaction a batch was produced in. */
enum batch_txn {
        BATCH_TXN_NONE,      /* not produced in a transaction (yet) */
        BATCH_TXN_OPEN,      /* produced in the open transaction, outcome not known yet */
        BATCH_TXN_COMMITTED, /* its sent rows may be marked */
        BATCH_TXN_ABORTED,   /* aborted, or its outcome is unknown: a report arriving
                              * now must not make a row sent */
};

struct batch;

struct relay_row {
        struct message_row m; /* points into its batch's result, kept until the batch is freed */
        struct batch *batch;
        enum row_state state;
        enum row_fail fail;
        int32_t partition;
        int64_t offset;
        const char *topic; /* where it was produced to (borrowed from route or result) */
        int64_t produced_us;
        int64_t reported_us; /* its delivery report came (the trace only, below) */
        char *error;         /* why it failed (ROW_FAILED) */
        int retry_ms;        /* delay asked for when recording the failure */
        int dead_now;        /* ROW_FAILED for good: dead-lettered at its first failure */
        int produced;        /* handed to the producer (it is part of the transaction) */
        /* An earlier row of its key went back unpublished while this one
         * was in flight: it stays pending whatever its report says. */
        int behind;
        /* The newest batch when it failed: the rows produced before the
         * failure are in it or before it (later rows of its key are held). */
        unsigned long wait_seq;
};

/* With --log-level debug, a batch's way, logged as it is freed ("batch
 * trace"), to split each row's latency into the relay's steps (bench/README.md,
 * "Where the latency goes"): CLOCK_MONOTONIC microseconds, 0 when not noted.
 * held, while the fetch was wanted: 1 the pipeline was full of batches
 * awaiting reports, 2 of batches awaiting marks, 4 a fetch was under way. */
struct batch_trace {
        int64_t want_us, sent_us, fetched_us;
        int held;
};

struct batch {
        struct relay *relay; /* that fetched it */
        struct batch *next;
        struct db_rows *res; /* owns the memory the rows borrow */
        struct relay_row *rows;
        int n;
        enum batch_state state;
        enum batch_txn txn;
        int outstanding;   /* delivery reports still awaited */
        int next_row;      /* BATCH_PRODUCING: the next row to produce */
        int64_t bytes;     /* memory it holds: the result and the rows (--memory-budget-bytes) */
        unsigned long seq; /* fetch order: names the batch holding a key */
        int left_pending;  /* some row stays pending (unsent): fetch again when done */
        int in_submit;     /* being submitted: not to be freed under the caller */
        int unrecorded;    /* failed rows whose failure is not recorded yet */
        struct batch_trace trace;
};

/* The one transition function: an illegal move is a bug (assertion). */
void batch_set_state(struct batch *b, enum batch_state to);
/* Whether from -> to is a legal move. */
int batch_transition_ok(enum batch_state from, enum batch_state to);
const char *batch_state_name(enum batch_state s);

/* The row's failure moves on (assertion on an illegal move); its batch
 * counts the failures not recorded yet. */
void batch_row_fail_set(struct relay_row *row, enum row_fail to);
/* Whether row failed and its failure is not recorded yet. */
int batch_row_unrecorded(const struct relay_row *row);
/* Whether b holds a row acknowledged by Kafka that is a later row of
 * failed's key (published after failed was refused). */
int batch_overtakes(const struct batch *b, const struct relay_row *failed);

/* unsent was handed to the producer and came back unpublished (ROW_UNSENT:
 * producer rebuilt or purged): it goes again, after the later rows of its
 * key that Kafka may have appended behind its request. So those stay
 * pending too, to follow it again: the acknowledged ones (from its batch on)
 * are made ROW_UNSENT, those in flight are made to stay pending whatever
 * their report (behind). Returns how many were in a batch marked already
 * (0 while marks keep fetch order: relay_mark.c). */
int batch_unsent_overtaken(struct batch *from, const struct relay_row *unsent);

/* Sent rows (those a mark names). */
int batch_sent_rows(const struct batch *b);
/* Every report is in and told to the database (its failures may be
 * recorded): REPORTED or later. */
int batch_submitted(const struct batch *b);
/* Its mark is due, queued or done. */
int batch_marking(const struct batch *b);
/* Nothing of it is left to do: it may be freed. */
int batch_done(const struct batch *b);

#endif
