/* relay_int: the relay's state, shared by relay.c (the loop and the
 * pipeline of batches) and relay_duties.c (leadership, busy polling,
 * metrics and retention). Internal to the relay module. */
#ifndef OUTBOX_RELAY_INT_H
#define OUTBOX_RELAY_INT_H

#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "backoff.h"
#include "config.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "message.h"
#include "relay_batch.h"
#include "metrics.h"
#include "producer.h"
#include "route.h"

/* Where fetches start (relay_floor.c). */
struct relay_floor {
        int64_t floor;   /* every pending row with a lower or equal id is in a batch */
        unsigned gen;    /* counts resets: a fetch sent before one must not advance */
        int64_t settled; /* every writer of an id up to this one has ended */
        char *earlier;   /* writers seen last (text[]) whose end is awaited; NULL: none */
        int64_t earlier_id;
        long long earlier_rewinds;
        long long rewinds; /* rewinds acted on (-1: none yet) */
        int queued, disabled, look_due;
        int fail_attempt; /* looks failed in a row (they back off) */
        int64_t next_at, sweep_at;
        /* the fetch running */
        int64_t fetch_floor;
        int fetch_may_advance;
        unsigned fetch_gen;
        int64_t fetch_settled;
};

/* Statements that are sent again after a failure with the connection
 * fine (relay_duties.c): each backs off on its own, and /readyz says which
 * fails. */
enum relay_stmt {
        RELAY_STMT_FETCH,
        RELAY_STMT_MARK,
        RELAY_STMT_RECORD, /* record_failure */
        RELAY_STMTS
};

struct relay_stmt_state {
        int attempt;      /* failures in a row (0: the last one succeeded) */
        int64_t retry_at; /* not sent again before (0: at once) */
        char error[160];  /* the last failure's, for /readyz (whose reason fits 255) */
};

/* --exactly-once: the Kafka transaction of the leader's producer. Commit
 * and abort run in short resumable steps from the loop, so that it keeps
 * serving signals, probes and the database while Kafka is slow. */
enum relay_txn_phase {
        TXN_PHASE_NONE,       /* no transaction has begun */
        TXN_PHASE_OPEN,       /* begun: its batches are being published */
        TXN_PHASE_COMMITTING, /* its progress record is sent, commit in progress */
        TXN_PHASE_ABORTING,   /* abort in progress */
};

struct progress_reader;

/* --exactly-once: where the leader is before it may publish. */
enum relay_eos_state {
        EOS_INIT,    /* the producer needs init_transactions (fences older ones) */
        EOS_READ,    /* read the last committed progress record */
        EOS_MARKING, /* marking that record's rows sent */
        EOS_READY,   /* publishing */
        EOS_STALE,   /* leadership was lost: a new term needs a new producer */
};

struct relay {
        const struct config *cfg;
        struct log *lg;
        struct route *route;
        struct producer *producer;
        struct db *db;
        struct metrics *metrics;
        struct http *http; /* NULL unless --http-listen */
        int64_t next_stats_at;
        int stats_queued, connected_once;
        int retention_queued;
        int64_t next_retention_at;
        struct backoff retry_backoff, reconnect_backoff;
        int sig_fd;

        struct batch *batches; /* in fetch order */
        int n_batches;
        int64_t held_bytes;    /* the batches' bytes, against --memory-budget-bytes */
        int64_t row_bytes;     /* estimated bytes per row of the last fetch (0: none yet) */
        int fetch_limit;       /* the running fetch's row limit ... */
        int64_t fetch_bytes;   /* ... and byte limit */
        int queue_full;        /* a batch waits for room in the producer's queue */
        long queue_full_count; /* times it filled since the last log line */
        int64_t queue_full_logged_at;
        unsigned long batch_seq;
        int n_deferred;   /* --exactly-once: batches waiting for the next transaction */
        json_t *held;     /* key -> newest batch seq when a row of it was held */
        int mark_rows;    /* sent rows of the batches whose mark is due */
        int64_t mark_at;  /* when they are marked at the latest (0: none due) */
        int fetch_queued; /* a fetch is running */
        int want_fetch;
        struct relay_floor fl;
        int failing;          /* some pending row failed before: fetch holds keys back */
        unsigned failing_gen; /* counts recorded failures, to order them with checks */
        int64_t next_poll_at, retry_at, reconnect_at;
        int reconnect_attempt;

        /* Failure paths (relay_duties.c): statements failing with the
         * connection fine, and sessions lost as soon as they are made. */
        struct backoff stmt_backoff;
        struct relay_stmt_state stmt[RELAY_STMTS];
        int64_t record_retry_at; /* record failures whose record_failure failed (0: none) */
        int session_ok;          /* a statement succeeded on the current session */
        int flap_attempt;        /* sessions in a row lost before any statement succeeded */

        int64_t rebuild_at; /* rebuild the failed producer then (0: not pending) */
        int rebuild_attempt;
        int leader; /* holds the outbox's leader lock: only the leader publishes */
        int busy;   /* polling on its own; writers were told not to notify */
        int64_t last_rows_at, next_busy_poll_at;
        int lock_queued;
        int64_t next_lock_at;
        int standby_logged;
        enum relay_eos_state eos;
        enum relay_txn_phase txn;
        int txn_due;    /* its batches have all been reported: commit or abort */
        int txn_failed; /* a message of it failed: abort now, without waiting */
        int txn_rows;   /* rows its progress record lists */
        int txn_empty;  /* nothing of it was published: its end is not news */
        int txn_steps;  /* commit or abort steps so far */
        int64_t txn_step_at, txn_deadline;
        char txn_error[512]; /* why it is being aborted */
        struct progress_reader *reader;
        unsigned long read_ticket; /* the read of the progress record under way (0: none) */
        int64_t eos_retry_at;
        int eos_attempt;
        char eos_error[512]; /* why the leader is not publishing yet ("": none known) */
        char tid[300];       /* transactional.id */
#ifdef OUTBOX_TEST_HOOKS
        long kill_after_commits; /* test hook: OUTBOX_RELAY_TEST_KILL_AFTER_COMMITS */
        long commits;
#endif
        int stopping, purged;
        int64_t stop_deadline;
        int fatal_schema;
        char fatal_msg[512];
};

static inline int64_t now_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t now_ms(void)
{
        return now_us() / 1000;
}

/* How often pending-row figures are refreshed for the metrics. */
#define STATS_INTERVAL_MS 10000
/* Retention deletes this many rows per statement, so locks stay short,
 * and looks again this often once nothing is left to delete. */
#define RETENTION_BATCH       1000
#define RETENTION_INTERVAL_MS 10000

/* relay.c, for relay_txn.c and relay_produce.c */
void relay_hold_key(struct relay *r, const struct relay_row *row);
/* Hands one row to the producer (or settles it: failed, held back).
 * Returns 0, or 1 when the producer's queue is full (nothing changed). */
int relay_produce_row(struct relay *r, struct batch *b, struct relay_row *row);
void relay_batch_reported(struct relay *r, struct batch *b);
/* Unlinks and frees b if nothing of it is left to do. */
void relay_batch_check_done(struct relay *r, struct batch *b);
/* Frees the held keys whose batches are all done, once no fetched row waits. */
void relay_release_keys(struct relay *r);

/* relay_produce.c */
/* Hands b's rows to the producer in id order, after those of the batches
 * before it; a full queue pauses it until relay_resume_producing. */
void relay_produce_batch(struct relay *r, struct batch *b);
/* From the loop, once reports made room: goes on producing. */
void relay_resume_producing(struct relay *r);

/* relay_txn.c: --exactly-once */
int relay_txn_init(struct relay *r, char *errbuf, size_t errsz);
void relay_txn_free(struct relay *r);
void relay_txn_add(struct relay *r, struct batch *b);
/* From the loop: ends the transaction once its batches are reported, and
 * steps its commit or abort when due. */
void relay_txn_tick(struct relay *r, int64_t now);
/* When relay_txn_tick or relay_txn_recover has something to do next
 * (INT64_MAX: nothing). */
int64_t relay_txn_next_at(const struct relay *r);
void relay_txn_abandon(struct relay *r);
void relay_txn_recover(struct relay *r, int64_t now);

/* relay_fail.c */
/* Longest error text recorded for a row (last_error, the dead letter's
 * reason), in bytes of UTF-8. */
#define RELAY_REASON_MAX 512
/* Records the failures of b not recorded yet (nor being recorded). */
void relay_submit_failures(struct relay *r, struct batch *b);
/* From the loop: failures whose record_failure failed are recorded again
 * once the backoff is up. */
void relay_retry_records(struct relay *r, int64_t now);

/* relay_mark.c */
/* b's sent rows are to be marked: within --mark-delay-ms, with the batches
 * that finish meanwhile (b is marked at once when it has none). */
void relay_mark_due(struct relay *r, struct batch *b);
/* From the loop: marks what is due; and when that is (INT64_MAX: never). */
void relay_mark_tick(struct relay *r, int64_t now);
int64_t relay_mark_next_at(const struct relay *r);
/* Whether a fetch must wait: --pipeline-depth batches are being published,
 * or as many again wait for their mark (which is then sent at once). */
int relay_pipeline_full(const struct relay *r);

/* relay_floor.c */
void relay_floor_reset(struct relay *r);
/* The floor for a fetch about to be sent; may_advance: it leaves out no
 * pending row but those in batches. */
int64_t relay_floor_for_fetch(struct relay *r, int may_advance, int64_t now);
/* Looks at the writers behind the fetch just sent, or once it is time
 * (what it learns serves the next fetch). */
void relay_floor_look(struct relay *r, int64_t now);
/* From the loop: a look that is due. */
void relay_floor_tick(struct relay *r, int64_t now);
/* When relay_floor_tick has something to do (INT64_MAX: nothing). */
int64_t relay_floor_next_at(const struct relay *r);
/* A fetch returned n rows, the last with last_id; full: it stopped at its
 * limit (of rows or bytes), so rows above last_id were not looked at. */
void relay_floor_fetched(struct relay *r, int n, int64_t last_id, int full);
/* A new database session, perhaps on another server: forgets what the
 * floor learnt from the old one. */
void relay_floor_forget(struct relay *r);
void relay_floor_free(struct relay *r);

/* relay_duties.c */
void relay_go_busy(struct relay *r, int64_t now);
void relay_go_waiting(struct relay *r);
void relay_check_failing(struct relay *r);
void relay_maybe_lock(struct relay *r, int64_t now);
void relay_lost_connection(struct relay *r, int64_t now);
/* A new session is up: every view of the database cached from the old one
 * is dropped (the server may be another one after a failover). */
void relay_session_started(struct relay *r, int64_t now);
/* A statement of kind s failed. With the connection fine it is the
 * statement's own failure: counted, logged at a bounded rate, and sent
 * again no sooner than the returned time (a backoff). With the connection
 * lost only logged (the reconnect decides): returns now. */
int64_t relay_stmt_failed(struct relay *r, enum relay_stmt s, const char *error, int64_t now);
/* A statement of kind s succeeded: its backoff starts again. */
void relay_stmt_ok(struct relay *r, enum relay_stmt s);
void relay_maybe_stats(struct relay *r, int64_t now);
void relay_maybe_retention(struct relay *r, int64_t now);
int relay_is_ready(void *arg, char *why, size_t whysz);

#endif
