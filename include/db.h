/* db: the relay's PostgreSQL sessions. Connecting, checking the schema
 * version, preparing the relay's statements and LISTEN all run without
 * blocking, driven by the relay's poll(); then queries run asynchronously,
 * one at a time from a FIFO per session, so the relay's loop never blocks
 * on the database. Every session sets statement_timeout and lock_timeout. */
#ifndef OUTBOX_DB_H
#define OUTBOX_DB_H

#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

struct config;
struct log;
struct message_row;

struct db;

/* Every query's callback is called exactly once: on success with its
 * result decoded (and error NULL), on failure with error saying why (the
 * connection may be gone) and the result empty. Failing to queue a query
 * (not connected, out of memory) calls it at once with the error, so the
 * query functions return nothing. */

/* The rows of a fetch; they own the memory the decoded rows borrow. */
struct db_rows;
typedef void (*db_rows_cb)(void *arg, struct db_rows *rows, const char *error);
/* How many rows a statement changed (0 on failure). */
typedef void (*db_count_cb)(void *arg, long count, const char *error);
/* A boolean answer (0 on failure). */
typedef void (*db_flag_cb)(void *arg, int yes, const char *error);

/* What <schema>.writers(earlier) says (db_writers). */
struct db_writers {
        int64_t last_id;     /* the newest id drawn */
        long long rewinds;   /* rewind_count: rows made pending again */
        long long id_cache;  /* the sequence's CACHE */
        const char *writers; /* a text[] literal to pass back as earlier (valid in the callback) */
        int earlier_done;    /* every writer of earlier has ended */
};
typedef void (*db_writers_cb)(void *arg, const struct db_writers *w, const char *error);

/* What record_failure did with the row. */
enum db_outcome {
        DB_OUTCOME_RETRY, /* its retry is scheduled */
        DB_OUTCOME_DEAD,  /* moved to the dead letters */
        DB_OUTCOME_STALE, /* not counted: the row changed since it was fetched */
};
typedef void (*db_outcome_cb)(void *arg, enum db_outcome outcome, const char *error);

/* Pending rows (db_pending_stats). */
struct db_stats {
        double pending;      /* how many */
        double oldest_age_s; /* age of the oldest */
        int stale;           /* the outbox table's statistics are stale for planning */
        double dead_letters; /* rows in the dead-letter table */
};
typedef void (*db_stats_cb)(void *arg, const struct db_stats *st, const char *error);

struct db *db_new(const struct config *cfg, struct log *lg) OUTBOX_MUST_CHECK;
void db_free(struct db *db);

enum db_state {
        DB_DOWN,       /* no connection, no attempt under way */
        DB_CONNECTING, /* an attempt is under way (db_service drives it) */
        DB_UP,         /* every session is set up: queries may be queued */
};

/* What db_service reports. */
enum db_event {
        DB_EV_NONE = 0,
        DB_EV_UP = 1,    /* the attempt under way succeeded: the db is up */
        DB_EV_LOST = -1, /* a connection that was up broke (all are closed) */
        /* the attempt failed: the schema is missing or at another version,
         * which retrying won't fix (db_last_error) */
        DB_EV_SCHEMA = -2,
        DB_EV_FAILED = -3, /* the attempt failed, worth retrying (db_last_error) */
};

/* Starts connecting every session: the attempt then goes on in db_service
 * (connect, check the schema, set the timeouts, prepare, LISTEN) and ends
 * with DB_EV_UP or an error. Returns 0, or -1 with errbuf (never holding
 * the password) when it cannot even start. */
int db_connect(struct db *db, int64_t now_ms, char *errbuf, size_t errsz) OUTBOX_MUST_CHECK;
/* Closes the connections (or ends the attempt); queued queries fail. */
void db_disconnect(struct db *db, const char *why);
enum db_state db_state(const struct db *db);
/* Up: queries may be queued. */
int db_connected(const struct db *db);
/* Why the last attempt failed ("" when none has). */
const char *db_last_error(const struct db *db);
/* When an attempt under way times out (INT64_MAX: none), for poll(). */
int64_t db_next_deadline(const struct db *db);
/* The outbox's identity (relay_state.outbox_id, a uuid), read at connect. */
const char *db_outbox_id(const struct db *db);

/* Fetch due pending rows with ids above floor in id order, leaving out the
 * n_skip ids in skip (the rows in flight) and the rows of the n_keys keys
 * (held back). With hold_keys, rows whose key has an earlier failed row
 * still pending are left out. At most limit rows, and only while the rows
 * before one come to less than max_bytes (db_rows_bytes): at least one
 * row, so that a row larger than max_bytes still goes out. */
void db_fetch(struct db *db, int64_t floor, size_t n_skip, const int64_t *skip, size_t n_keys,
              const char *const *keys, int limit, int64_t max_bytes, int hold_keys, db_rows_cb cb,
              void *arg);
/* What a row costs the relay's memory, as the fetch counts it: the bytes
 * of its payload, headers, key, topic and event_type, plus this much for
 * the rest of the result and the relay's own record of the row (measured:
 * about 540 bytes). */
#define DB_ROW_OVERHEAD 640
int db_rows_count(const struct db_rows *rows);
/* Decodes row i into m, which borrows the rows' memory until db_rows_free. */
void db_rows_decode(const struct db_rows *rows, int i, struct message_row *m);
/* The estimated bytes of the rows (the sum the fetch cut). */
int64_t db_rows_bytes(const struct db_rows *rows);
/* The memory the rows hold. */
int64_t db_rows_memory(const struct db_rows *rows);
void db_rows_free(struct db_rows *rows);

/* <schema>.writers(earlier) on the reader session, in order with fetches. */
void db_writers(struct db *db, const char *earlier, db_writers_cb cb, void *arg);
/* Whether any pending row has failed before. */
void db_any_failing(struct db *db, db_flag_cb cb, void *arg);

/* Rows to mark sent, each named by id, event_id and generation, with where
 * Kafka put it. A row whose event_id is not known (NULL or "": a version 2
 * progress record) is named by its replays count instead, and a partition
 * of -1 leaves partition and offset NULL (not known). */
struct db_marks {
        size_t n;
        const int64_t *ids;
        const char *const *event_ids;
        const int64_t *generations;
        const int32_t *replays;
        const int32_t *partitions;
        const int64_t *offsets;
};
/* Marks the rows sent in one statement: a row only while it is pending
 * with the event_id and generation it was published with (a row made
 * pending again since, or a new row that took a published row's id after
 * a restore, is left pending). The count says how many were marked. */
void db_mark(struct db *db, const struct db_marks *m, db_count_cb cb, void *arg);
/* Record a failed attempt through <schema>.record_failure(): counted only
 * while the row is pending in the generation and with the attempts it was
 * fetched with (sql/010_failure_generation.sql); else nothing changes. */
void db_record_failure(struct db *db, int64_t id, int64_t generation, int attempts,
                       const char *error, int retry_ms, int max_attempts, db_outcome_cb cb,
                       void *arg);

/* pg_try_advisory_lock(DB_LEADER_LOCK_CLASS, hashtext(schema)) on this
 * session: yes when this relay is the leader. */
#define DB_LEADER_LOCK_CLASS 0x6f627278 /* "obrx" */
void db_try_leader_lock(struct db *db, db_flag_cb cb, void *arg);
/* Who holds that lock when this relay could not take it, as pg_locks and
 * pg_stat_activity show it to the relay's role (any role that can connect
 * can take an advisory lock: docs/security.md). A session whose
 * application_name starts with "outbox-relay/", or of the relay's own role
 * (a URL may set another application_name), is taken for a relay; the name
 * is only a label, the role is reported beside it. */
struct db_lock_holder {
        int found; /* 0: nobody holds it now */
        int pid;
        int relay;                    /* a relay by its name or role */
        const char *role;             /* "" when hidden (valid in the callback) */
        const char *application_name; /* "" when hidden (valid in the callback) */
};
typedef void (*db_holder_cb)(void *arg, const struct db_lock_holder *h, const char *error);
void db_lock_holder(struct db *db, db_holder_cb cb, void *arg);

/* Pending rows: count and age of the oldest, and whether the outbox
 * table's statistics are stale. */
void db_pending_stats(struct db *db, db_stats_cb cb, void *arg);
/* Plan every execution while the statistics are stale, else reuse generic
 * plans; 1 if that changed (the sessions of a new connection plan every
 * execution until told otherwise); 1 as well on the first call after a
 * connect, so that the caller can say which it is. */
int db_plan_for_statistics(struct db *db, int stale) OUTBOX_MUST_CHECK;

/* Deletes up to limit sent rows whose sent_at is older than older_than_s
 * (retention); the count says how many. */
void db_delete_sent(struct db *db, int older_than_s, int limit, db_count_cb cb, void *arg);

/* Sessions: one reader (fetch, LISTEN, the leader lock) and two writers. */
#define DB_LANES 3

/* Tells writers whether to notify: true while the relay waits for a
 * notification, false while it polls on its own. */
void db_set_waiting(struct db *db, int waiting, db_count_cb cb, void *arg);
/* For the loop: a session's socket (-1: none) and the poll() events it
 * waits for (output to flush, or what connecting waits for). */
int db_socket(const struct db *db, int lane);
short db_events(const struct db *db, int lane);
/* No query of the relay's queued or running (setup does not count). */
int db_idle(const struct db *db);

/* Does the I/O that is possible now, given each session's poll() revents:
 * advances an attempt under way (and times it out), flushes, reads,
 * completes queries (calling their callbacks) and sends the next.
 * *notified is set when a notification arrived. Returns a DB_EV_* (after
 * DB_EV_LOST, DB_EV_FAILED and DB_EV_SCHEMA every connection is closed
 * and every queued query has failed). */
enum db_event db_service(struct db *db, const short revents[DB_LANES], int64_t now_ms,
                         int *notified) OUTBOX_MUST_CHECK;

#endif
