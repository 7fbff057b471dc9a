/* db_lane: the FIFO of queries on each database session. Every query is
 * sent with the asynchronous libpq calls, one at a time per session, and
 * completes with its callback; db.c and db_connect.c queue through it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db_int.h"
#include "pq_util.h"

static void op_free(struct db_op *op)
{
        for (int i = 0; i < op->nparams; i++)
                free(op->params[i]);
        PQclear(op->res);
        free(op);
}

/* Fails every queued query; callbacks may queue new ones, which then fail
 * too because the connections are gone. */
static void fail_all(struct lane *l, const char *why)
{
        while (l->head != NULL) {
                struct db_op *op = l->head;

                l->head = op->next;
                if (l->head == NULL)
                        l->tail = NULL;
                l->queued--;
                op->cb(op->arg, NULL, why);
                op_free(op);
        }
        l->sent = 0;
}

/* Every lane goes together: the leader lock lives on the reader, and a
 * writer without it must not go on marking for a relay that lost it. */
void db_close_all(struct db *db, const char *why)
{
        db->state = DB_DOWN; /* first: setup callbacks failed below ignore it */
        for (int i = 0; i < DB_LANES; i++) {
                if (db->lanes[i].conn != NULL) {
                        PQfinish(db->lanes[i].conn);
                        db->lanes[i].conn = NULL;
                }
                db->lanes[i].state = LANE_DOWN;
        }
        for (int i = 0; i < DB_LANES; i++)
                fail_all(&db->lanes[i], why);
}

int64_t db_mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int send_head(struct lane *l)
{
        struct db_op *op = l->head;
        const char *values[DB_MAX_PARAMS];
        int ok;

        for (int i = 0; i < op->nparams; i++)
                values[i] = op->params[i];
        if (op->kind == OP_PREPARE)
                ok = PQsendPrepare(l->conn, op->stmt, op->sql, 0, NULL);
        else if (op->kind == OP_QUERY && op->nparams == 0)
                ok = PQsendQuery(l->conn, op->sql); /* may hold several statements */
        else if (op->kind == OP_QUERY)
                ok = PQsendQueryParams(l->conn, op->sql, op->nparams, NULL, values, NULL, NULL,
                                       op->binary_result);
        else
                ok = PQsendQueryPrepared(l->conn, op->stmt, op->nparams, values, NULL, NULL,
                                         op->binary_result);
        if (!ok)
                return -1;
        l->sent = 1;
        l->sent_ms = db_mono_ms();
        return PQflush(l->conn) < 0 ? -1 : 0;
}

void db_enqueue(struct db *db, int lane, enum db_op_kind kind, const char *stmt, const char *sql,
                int nparams, char *const params[], int binary_result, db_done_cb cb, void *arg)
{
        struct lane *l = &db->lanes[lane];
        struct db_op *op;

        if (l->conn == NULL || (l->state != LANE_SETUP && l->state != LANE_READY)) {
                cb(arg, NULL, "not connected to the database");
                return;
        }
        if (nparams > DB_MAX_PARAMS) { /* a statement added without raising the bound */
                cb(arg, NULL, "too many statement parameters");
                return;
        }
        op = calloc(1, sizeof(*op));
        if (op == NULL) {
                cb(arg, NULL, "out of memory");
                return;
        }
        op->kind = kind;
        op->stmt = stmt;
        op->sql = sql;
        op->binary_result = binary_result;
        op->cb = cb;
        op->arg = arg;
        for (int i = 0; i < nparams; i++) {
                op->params[i] = params[i] != NULL ? strdup(params[i]) : NULL;
                op->nparams++;
        }
        if (l->tail != NULL)
                l->tail->next = op;
        else
                l->head = op;
        l->tail = op;
        l->queued++;
        if (!l->sent && send_head(l) != 0) {
                char msg[512];

                pq_error_line(PQerrorMessage(l->conn), msg, sizeof(msg));
                if (db->state == DB_CONNECTING)
                        db_connect_fail(db, DB_EV_FAILED, "%s", msg); /* db_service closes */
                else
                        db_close_all(db, msg);
        }
}

/* The head query has returned all its results: hand them over. */
static void complete_head(struct lane *l)
{
        struct db_op *op = l->head;
        PGresult *res = op->res;
        ExecStatusType st = PQresultStatus(res);

        l->head = op->next;
        if (l->head == NULL)
                l->tail = NULL;
        l->queued--;
        l->sent = 0;
        op->res = NULL;
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
                op->cb(op->arg, res, NULL);
        } else {
                char msg[512];

                pq_error_line(res != NULL ? PQresultErrorMessage(res) : "no result", msg,
                              sizeof(msg));
                PQclear(res);
                op->cb(op->arg, NULL, msg);
        }
        op_free(op);
}

static int is_error(const PGresult *res)
{
        ExecStatusType st = PQresultStatus(res);

        return st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK;
}

int db_service_lane(struct db *db, struct lane *l, int *notified)
{
        PGnotify *n;

        if (PQflush(l->conn) < 0 || !PQconsumeInput(l->conn))
                return -1;
        while ((n = PQnotifies(l->conn)) != NULL) {
                *notified = 1;
                PQfreemem(n);
        }
        while (l->sent && !PQisBusy(l->conn)) {
                PGresult *res = PQgetResult(l->conn);

                if (res != NULL) {
                        /* The first result, unless a later one is an error
                         * (a setup string holds several statements). */
                        if (l->head->res == NULL) {
                                l->head->res = res;
                        } else if (is_error(res) && !is_error(l->head->res)) {
                                PQclear(l->head->res);
                                l->head->res = res;
                        } else {
                                PQclear(res);
                        }
                        continue;
                }
                complete_head(l);
                if (l->conn == NULL || db->failed || db->state == DB_DOWN)
                        return -1; /* a callback disconnected or failed the setup */
                /* A callback may have queued (and so sent) the next one. */
                if (l->head != NULL && !l->sent && send_head(l) != 0)
                        return -1;
        }
        return PQstatus(l->conn) == CONNECTION_OK ? 0 : -1;
}

void db_connect_fail(struct db *db, enum db_event code, const char *fmt, ...)
{
        va_list ap;

        if (db->state != DB_CONNECTING || db->failed)
                return; /* the first reason is the one worth telling */
        va_start(ap, fmt);
        vsnprintf(db->error, sizeof(db->error), fmt, ap);
        va_end(ap);
        db->failed = 1;
        db->event = code;
}
