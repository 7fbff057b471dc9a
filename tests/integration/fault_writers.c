/* fault_writers: the writer threads of the fault-injection tests, which
 * insert events (some in transactions rolled back on purpose) while faults
 * are injected and count what committed (see fault_harness.h). */
#include "fault_harness.h"

#include <check.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

#define FH_POLL_MS  20
#define FH_RETRY_MS 50 /* between a writer's connection attempts */

/* ---- writers ---- */

struct writer {
        struct fh_writers *w;
        int idx;
        long long target;
        uint64_t seed;
        atomic_llong committed;
        long long rolled_back, uncertain, transactions, conn_errs;
        char error[256];
        pthread_t th;
        int started;
};

struct fh_writers {
        struct fh_writers_opts o;
        char *conninfo, *topic;
        atomic_int stop;
        int64_t start_ms;
        struct writer *ws;
};

/* Whether a failed command failed because the server or the connection
 * went away (expected while faults are injected) rather than by a bug. */
static int connection_error(PGconn *conn, const PGresult *res)
{
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

        if (!res || PQstatus(conn) != CONNECTION_OK || !state)
                return 1;
        /* 08: connection exception; 57P0x: admin/crash shutdown, cannot
         * connect now; 57P05: idle session timeout. */
        return !strncmp(state, "08", 2) || !strncmp(state, "57P", 3);
}

/* Runs one command; 0, 1 for a connection loss, -1 (error filled) for
 * anything else. */
static int writer_exec(struct writer *wr, PGconn *conn, const char *sql)
{
        PGresult *res = PQexec(conn, sql);
        ExecStatusType st = PQresultStatus(res);
        int rc = 0;

        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                if (connection_error(conn, res)) {
                        rc = 1;
                } else {
                        snprintf(wr->error, sizeof(wr->error), "writer %d: %s: %s", wr->idx,
                                 sql[0] == 'I' ? "INSERT" : sql, PQerrorMessage(conn));
                        rc = -1;
                }
        }
        PQclear(res);
        return rc;
}

/* Sleeps (in short steps, watching the stop flag) until this writer is
 * no longer ahead of its share of the rate. */
static void writer_pace(struct writer *wr)
{
        const struct fh_writers_opts *o = &wr->w->o;
        double share = (double)o->rate / o->writers;

        if (o->rate <= 0)
                return;
        for (;;) {
                int64_t due = wr->w->start_ms +
                              (int64_t)((double)atomic_load(&wr->committed) * 1000.0 / share);
                int64_t left = due - fx_now_ms();

                if (left <= 0 || atomic_load(&wr->w->stop))
                        return;
                poll(NULL, 0, left > FH_POLL_MS ? FH_POLL_MS : (int)left);
        }
}

static void *writer_main(void *arg)
{
        struct writer *wr = arg;
        const struct fh_writers_opts *o = &wr->w->o;
        PGconn *conn = NULL;
        long long seq = (long long)wr->idx * 100000000LL;
        char sql[768];

        while (atomic_load(&wr->committed) < wr->target && !atomic_load(&wr->w->stop)) {
                long long rows = fh_rand(&wr->seed, 1, o->max_tx_rows);
                int rb = fh_rand(&wr->seed, 1, 100) <= o->rollback_pct, rc;

                if (!conn) {
                        conn = PQconnectdb(wr->w->conninfo);
                        if (PQstatus(conn) != CONNECTION_OK) {
                                PQfinish(conn);
                                conn = NULL;
                                poll(NULL, 0, FH_RETRY_MS);
                                continue;
                        }
                }
                if (!rb && rows > wr->target - atomic_load(&wr->committed))
                        rows = wr->target - atomic_load(&wr->committed);
                snprintf(sql, sizeof(sql),
                         "INSERT INTO outbox.events (topic, key, event_type, payload, headers)"
                         " SELECT '%s', 'w%d-' || (g %% %d), 'fault.test',"
                         " jsonb_build_object('w', %d, 'n', g%s), '{\"src\": \"fault-harness\"}'"
                         " FROM generate_series(%lld, %lld) g",
                         wr->w->topic, wr->idx, o->keys, wr->idx, rb ? ", 'rb', true" : "", seq + 1,
                         seq + rows);
                seq += rows;
                wr->transactions++;
                rc = writer_exec(wr, conn, "BEGIN");
                if (rc == 0)
                        rc = writer_exec(wr, conn, sql);
                if (rc == 0) {
                        rc = writer_exec(wr, conn, rb ? "ROLLBACK" : "COMMIT");
                        if (rb)
                                wr->rolled_back += rows; /* even if ROLLBACK was cut */
                        else if (rc == 0)
                                atomic_fetch_add(&wr->committed, rows);
                        else if (rc == 1)
                                wr->uncertain += rows;
                }
                if (rc < 0)
                        break;
                if (rc == 1) {
                        wr->conn_errs++;
                        PQfinish(conn);
                        conn = NULL;
                        continue;
                }
                writer_pace(wr);
        }
        PQfinish(conn);
        return NULL;
}

struct fh_writers *fh_writers_start(const struct fh_writers_opts *o)
{
        struct fh_writers *w = calloc(1, sizeof(*w));
        uint64_t seed = fh_seed();

        ck_assert_msg(w != NULL, "out of memory");
        ck_assert(o->writers > 0 && o->keys > 0 && o->max_tx_rows > 0 && o->events > 0);
        w->o = *o;
        /* For diagnosis: OUTBOX_FAULT_WRITERS=1 takes concurrent commits
         * out of the picture. */
        if (getenv("OUTBOX_FAULT_WRITERS") && atoi(getenv("OUTBOX_FAULT_WRITERS")) > 0)
                w->o.writers = atoi(getenv("OUTBOX_FAULT_WRITERS"));
        w->conninfo = fx_conninfo_as(o->conninfo, FX_WRITER_ROLE); /* INSERT only */
        w->topic = strdup(o->topic);
        w->ws = calloc((size_t)w->o.writers, sizeof(*w->ws));
        ck_assert_msg(w->conninfo && w->topic && w->ws, "out of memory");
        w->o.conninfo = w->conninfo;
        w->o.topic = w->topic;
        atomic_init(&w->stop, 0);
        w->start_ms = fx_now_ms();
        for (int i = 0; i < w->o.writers; i++) {
                struct writer *wr = &w->ws[i];

                wr->w = w;
                wr->idx = i + 1;
                wr->target = o->events / w->o.writers + (i < o->events % w->o.writers);
                wr->seed = seed + (uint64_t)i * 0x9e3779b97f4a7c15ULL;
                if (!wr->seed)
                        wr->seed = 1;
                atomic_init(&wr->committed, 0);
                ck_assert_msg(pthread_create(&wr->th, NULL, writer_main, wr) == 0,
                              "pthread_create failed");
                wr->started = 1;
        }
        return w;
}

long long fh_writers_committed(struct fh_writers *w)
{
        long long n = 0;

        for (int i = 0; i < w->o.writers; i++)
                n += atomic_load(&w->ws[i].committed);
        return n;
}

static int writers_running(struct fh_writers *w)
{
        for (int i = 0; i < w->o.writers; i++) {
                if (w->ws[i].error[0])
                        return 0; /* one failed: no point waiting */
                if (atomic_load(&w->ws[i].committed) < w->ws[i].target)
                        return 1;
        }
        return 0;
}

void fh_writers_finish(struct fh_writers *w, int timeout_ms, struct fh_writer_stats *st)
{
        int64_t deadline = fx_now_ms() + timeout_ms;
        int timed_out;

        while ((timed_out = writers_running(w)) && fx_now_ms() < deadline)
                poll(NULL, 0, FH_POLL_MS);
        atomic_store(&w->stop, 1);
        memset(st, 0, sizeof(*st));
        for (int i = 0; i < w->o.writers; i++) {
                struct writer *wr = &w->ws[i];

                if (wr->started)
                        pthread_join(wr->th, NULL);
                st->committed += atomic_load(&wr->committed);
                st->rolled_back += wr->rolled_back;
                st->uncertain += wr->uncertain;
                st->transactions += wr->transactions;
                st->connection_errs += wr->conn_errs;
                if (!st->error[0] && wr->error[0])
                        snprintf(st->error, sizeof(st->error), "%s", wr->error);
        }
        free(w->ws);
        free(w->conninfo);
        free(w->topic);
        free(w);
        ck_assert_msg(!st->error[0], "%s", st->error);
        ck_assert_msg(!timed_out, "writers did not finish within %d ms (%lld rows committed)",
                      timeout_ms, st->committed);
}
