/* db_int: the state of the db module, shared by db.c (the relay's queries
 * and their decoding), db_lane.c (the FIFO of queries on each session),
 * db_connect.c (opening and setting up the sessions without blocking) and
 * db_statements.c (their SQL). Internal to the db module; calls go one
 * way: db -> db_connect -> db_lane, db_statements. */
#ifndef OUTBOX_DB_INT_H
#define OUTBOX_DB_INT_H

#include <stdint.h>

#include <libpq-fe.h>

#include "db.h"

/* A query's raw outcome, inside the db module: on success res (owned by
 * the callback, which must PQclear it) and error NULL; on failure res NULL
 * and error saying why. db.c decodes it for the public callbacks. */
typedef void (*db_done_cb)(void *arg, PGresult *res, const char *error);

/* The most any statement takes (record_failure: 7). */
#define DB_MAX_PARAMS 7

enum db_op_kind {
        OP_EXECUTE, /* a prepared statement, by name */
        OP_QUERY,   /* SQL text (setup only); several statements when without params */
        OP_PREPARE, /* prepares the statement named stmt from sql (setup only) */
};

struct db_op {
        struct db_op *next;
        enum db_op_kind kind;
        const char *stmt; /* OP_EXECUTE, OP_PREPARE: the statement's name */
        const char *sql;  /* OP_QUERY, OP_PREPARE: borrowed, lives as long as the db */
        int nparams;
        char *params[DB_MAX_PARAMS];
        int binary_result;
        db_done_cb cb;
        void *arg;
        PGresult *res; /* first result (or the first error), kept until the query completes */
};

/* A session's life: DOWN, CONNECTING (PQconnectPoll), SETUP (its setup
 * statements run through the FIFO), READY (the relay's queries). */
enum db_lane_state { LANE_DOWN, LANE_CONNECTING, LANE_SETUP, LANE_READY };

struct lane {
        struct db *db;
        int index;
        PGconn *conn;
        enum db_lane_state state;
        PostgresPollingStatusType poll; /* CONNECTING: what PQconnectPoll waits for */
        int step;                       /* SETUP: the setup statement running */
        size_t prep;                    /* SETUP: the next statement to prepare */
        int64_t deadline;               /* CONNECTING, SETUP: give up at (ms) */
        struct db_op *head, *tail;
        int sent;        /* head has been sent */
        int64_t sent_ms; /* when (db_mono_ms) */
        int queued;      /* ops in the FIFO, to spread writes over the writers */
};

/* A statement every session prepares. */
struct db_stmt {
        char name[32];
        char *sql;
};

struct db {
        const struct config *cfg;
        struct log *lg;
        struct lane lanes[DB_LANES];
        enum db_state state;
        char outbox_id[40]; /* relay_state.outbox_id, read at connect */
        int custom_plans;   /* writer sessions plan every execution (stale statistics) */
        int plans_checked;  /* db_plan_for_statistics ran since the connect */
        /* The setup statements, made once from the schema's name. */
        struct db_stmt *stmts;
        size_t n_stmts;
        char *session_sql, *reader_session_sql, *version_sql, *listen_sql, *outbox_id_sql;
        /* The attempt under way (DB_CONNECTING). */
        int schema_ok;       /* the reader found the schema at the right version */
        int failed;          /* the attempt failed: tear it down, report event */
        enum db_event event; /* what db_service reports next */
        char error[1024];    /* why the last attempt failed */
};

enum { DB_READER = 0 }; /* lanes 1 .. DB_LANES-1 write */

/* db_lane.c */
/* Queues an op on a lane whatever the db's state (setup uses it before the
 * db is up); params are copied. cb is called in any case: when the op
 * cannot be queued, at once with the error (the connection is then torn
 * down if sending failed). */
void db_enqueue(struct db *db, int lane, enum db_op_kind kind, const char *stmt, const char *sql,
                int nparams, char *const params[], int binary_result, db_done_cb cb, void *arg);
/* Fails every queued op of every lane and closes the connections. */
void db_close_all(struct db *db, const char *why);
/* Flushes, reads and completes what it can on an up or setting-up lane;
 * -1 when its connection broke or a callback closed or failed it. */
int db_service_lane(struct db *db, struct lane *l, int *notified) OUTBOX_MUST_CHECK;
/* Ends the attempt under way: the connections are closed by db_service. */
void db_connect_fail(struct db *db, enum db_event code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* db_statements.c */
/* Makes the statements every session runs at setup (db->stmts and the
 * setup queries). */
int db_build_statements(struct db *db, char *errbuf, size_t errsz) OUTBOX_MUST_CHECK;
void db_free_statements(struct db *db);

/* db_connect.c */
/* PQconnectPoll once the lane's socket is ready; then the setup steps. */
void db_connect_poll(struct db *db, struct lane *l, int64_t now);
/* CLOCK_MONOTONIC in milliseconds. */
int64_t db_mono_ms(void);

#endif
