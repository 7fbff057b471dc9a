/* relay_int: the loop's state (struct relay) and what relay.c's modules
 * offer it: relay_produce.c, relay_mark.c, relay_fail.c, relay_duties.c and
 * relay_txn.c (the pure parts have headers of their own: relay_batch.h,
 * relay_floor.h, relay_mark.h, relay_txn_state.h). Modules call down, and
 * back into the loop only through struct relay_hooks. Internal. */
#ifndef OUTBOX_RELAY_INT_H
#define OUTBOX_RELAY_INT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "backoff.h"
#include "compiler.h"

/* Only pointed to here: each .c includes the headers of what it uses. */
struct batch;
struct config;
struct db;
struct http;
struct log;
struct metrics;
struct producer;
struct relay;
struct relay_floor;
struct relay_marks;
struct relay_row;
struct relay_txn;
struct route;

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

/* What the loop (relay.c) does for its modules, registered by relay_new:
 * they call down into each other and back up only through these, so no
 * two files call each other. */
struct relay_hooks {
        /* Every row of b has its outcome from the producer (or its
         * transaction ended): finish it, or let the transaction end first. */
        void (*batch_reported)(struct relay *r, struct batch *b);
        /* Unlinks and frees b if nothing of it is left to do. */
        void (*batch_check_done)(struct relay *r, struct batch *b);
};

/* relay_duties.c's own state: leadership, busy polling, the check for
 * failing rows, the statistics, retention, and the statements that fail. */
struct relay_duties {
        int leader; /* holds the outbox's leader lock: only the leader publishes */
        int lock_queued, standby_logged;
        int64_t next_lock_at;
        /* A session that is not a relay holding the leader lock: nothing
         * is published while it does, so it is named in the log (at once,
         * then every minute), in /readyz and in a gauge. foreign_pid 0: none
         * seen at the last try. foreign_since is when this relay first saw
         * that pid hold it (pg_stat_activity hides other roles' start). */
        int holder_queued, foreign_pid;
        int64_t foreign_since, foreign_logged_at;
        int64_t holder_next_at; /* another relay leads: its lock looked up again then */
        /* The relay that leads is a session of this same instance (its
         * application_name): another outbox of this process on the same
         * database and schema under a URL written otherwise, or a relay
         * given the same --instance-id. Logged at once, then every minute. */
        int64_t twin_logged_at;
        char foreign_role[64], foreign_app[64];
        int busy; /* polling on its own; writers were told not to notify */
        /* Back to notifications: writers that inserted while the relay was
         * busy send none at their commit. Their transactions (flip_writers,
         * a text[] literal; NULL until the first look) are followed until
         * they have all ended, then a fetch finds their rows. */
        int flip_watch, flip_queued;
        int64_t flip_next_at;
        char *flip_writers;
        int64_t last_rows_at, next_busy_poll_at;
        /* Rows fetched in the second from rate_at: the arrival rate that
         * decides between polling and notifications. */
        int64_t rate_at;
        long rate_rows;
        int failing;          /* some pending row failed before: fetch holds keys back */
        unsigned failing_gen; /* counts recorded failures, to order them with checks */
        int stats_queued, retention_queued;
        int64_t next_stats_at, next_retention_at;
        /* Statements failing with the connection fine, and sessions lost
         * as soon as they are made. */
        struct backoff stmt_backoff;
        struct relay_stmt_state stmt[RELAY_STMTS];
        int session_ok;   /* a statement succeeded on the current session */
        int flap_attempt; /* sessions in a row lost before any statement succeeded */
        int fetch;        /* news for the loop (relay_duties_want_fetch) */
};

/* The loop's own state, and the modules it drives. */
struct relay {
        struct relay_hooks hooks;
        const struct config *cfg;
        struct log *lg;
        struct route *route;
        struct message_envelope *envelope; /* --envelope */
        struct producer *producer;
        struct db *db;
        struct metrics *metrics;
        struct http *http;         /* NULL unless --http-listen */
        struct relay_floor *floor; /* where fetches start */
        struct relay_marks *marks; /* when the due rows are marked */
        struct relay_duties *duty; /* leadership, polling, statements that fail */
        struct relay_txn *tx;      /* --exactly-once (NULL without) */
        struct backoff retry_backoff, reconnect_backoff;
        int sig_fd;
        int sig_is_stop_fd; /* sig_fd is the caller's eventfd (relay_opts) */
        int metrics_borrowed;
        void (*on_turn)(void *arg, struct relay *r, int64_t now_ms);
        void *turn_arg;

        struct batch *batches; /* in fetch order */
        int n_batches;
        unsigned long batch_seq;
        int64_t held_bytes;  /* the batches' bytes, against --memory-budget-bytes */
        json_t *held;        /* key -> newest batch seq when a row of it was held */
        int64_t row_bytes;   /* estimated bytes per row of the last fetch (0: none yet) */
        int fetch_limit;     /* the running fetch's row limit ... */
        int64_t fetch_bytes; /* ... and byte limit */
        int fetch_queued;    /* a fetch is running */
        int want_fetch;
        /* --log-level debug: batches are traced (struct batch_trace); the
         * fetch wanted and the one under way. Nothing is noted otherwise. */
        int trace;
        int64_t trace_want_us, trace_sent_want_us, trace_sent_us;
        int trace_held, trace_sent_held;
        int queue_full;        /* a batch waits for room in the producer's queue */
        long queue_full_count; /* times it filled since the last log line */
        int64_t queue_full_logged_at;
        int64_t next_poll_at, retry_at, reconnect_at;
        int reconnect_attempt, connected_once;
        int64_t record_retry_at; /* record failures whose record_failure failed (0: none) */
        int64_t rebuild_at;      /* rebuild the failed producer then (0: not pending) */
        int rebuild_attempt;
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

/* relay_produce.c */
/* The row stays pending: later rows of its key wait until its batch is done. */
void relay_hold_key(struct relay *r, const struct relay_row *row);
/* Frees the held keys whose batches are all done, once no fetched row waits. */
void relay_release_keys(struct relay *r);
/* The producer's delivery report callback (producer_new's on_delivery). */
void relay_on_delivery(void *arg, void *msg_opaque, rd_kafka_resp_err_t err, int32_t partition,
                       int64_t offset);
/* Makes r->envelope from --envelope and --cloudevents-source. */
int relay_envelope_init(struct relay *r, char *errbuf, size_t errsz) OUTBOX_MUST_CHECK;
/* Hands b's rows to the producer in id order, after those of the batches
 * before it; a full queue pauses it until relay_resume_producing. */
void relay_produce_batch(struct relay *r, struct batch *b);
/* From the loop, once reports made room: goes on producing. */
void relay_resume_producing(struct relay *r);

/* relay_txn.c: --exactly-once (the state machines: relay_txn_state.h) */
int relay_txn_init(struct relay *r, char *errbuf, size_t errsz) OUTBOX_MUST_CHECK;
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
/* A batch's reports are in: the failures of other batches that waited
 * for them are recorded. */
void relay_submit_waiting(struct relay *r);
/* From the loop: failures whose record_failure failed are recorded again
 * once the backoff is up. */
void relay_retry_records(struct relay *r, int64_t now);

/* relay_mark.c: sending the marks */
/* From the loop: marks what is due; and when that is (INT64_MAX: never). */
void relay_mark_tick(struct relay *r, int64_t now);
int64_t relay_mark_next_at(const struct relay *r);

/* relay_duties.c */
struct relay_duties *relay_duties_new(const struct config *cfg) OUTBOX_MUST_CHECK;
void relay_duties_free(struct relay_duties *d);
/* Whether a duty's outcome calls for a fetch (leadership began, the floor
 * went down, writers were told to notify); cleared as it is read. */
int relay_duties_want_fetch(struct relay_duties *d);
/* Sends the look at the writers the floor wants, if any (leader only). */
void relay_look_writers(struct relay *r, int64_t now);
/* When the next look at the writers of the last switch to notifications
 * is due (INT64_MAX: none). */
int64_t relay_flip_next_at(const struct relay *r);
/* A fetch brought rows: polls every --busy-poll-ms once they come at
 * --busy-poll-min-rate or more (leadership beginning passes rows 0). */
void relay_go_busy(struct relay *r, int rows, int64_t now);
/* While polling: back to notifications after --idle-after-ms without rows
 * or a second at under half of --busy-poll-min-rate. */
void relay_maybe_go_waiting(struct relay *r, int64_t now);
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
