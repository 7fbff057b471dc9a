/* db: the relay's PostgreSQL sessions. Every query goes through a FIFO per
 * session and is sent with the asynchronous libpq calls, so delivery
 * reports keep being served while a query runs; the sessions are opened and
 * set up the same way (db_connect.c). Three sessions ("lanes") work in
 * parallel: one reads (fetch, LISTEN, the leader lock), two write (marks,
 * failures, retention), so marking a batch never waits behind fetching the
 * next one. */
#include "db.h"

#include <endian.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_int.h"

struct db *db_new(const struct config *cfg, struct log *lg)
{
        struct db *db = calloc(1, sizeof(*db));
        char err[256];

        if (db == NULL)
                return NULL;
        db->cfg = cfg;
        db->lg = lg;
        for (int i = 0; i < DB_LANES; i++) {
                db->lanes[i].db = db;
                db->lanes[i].index = i;
        }
        if (db_build_statements(db, err, sizeof(err)) != 0) {
                db_free(db);
                return NULL;
        }
        return db;
}

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

void db_disconnect(struct db *db, const char *why)
{
        db_close_all(db, why);
}

void db_free(struct db *db)
{
        if (db == NULL)
                return;
        db_close_all(db, "shutting down");
        db_free_statements(db);
        free(db);
}

enum db_state db_state(const struct db *db)
{
        return db->state;
}

int db_connected(const struct db *db)
{
        return db->state == DB_UP;
}

const char *db_last_error(const struct db *db)
{
        return db->error;
}

/* libpq's messages end with a newline and put DETAIL, HINT and advice on
 * lines of their own; a log wants one line. An error at a position in a
 * statement comes with the statement's text and a caret under it ("LINE 1:
 * ..."), which says nothing on one line: left out. */
void db_copy_pq_error(const char *msg, char *errbuf, size_t errsz)
{
        size_t len = 0;

        if (errsz == 0)
                return;
        errbuf[0] = '\0';
        for (const char *line = msg != NULL ? msg : "unknown error"; *line != '\0';) {
                size_t n = strcspn(line, "\n"), blank = strspn(line, " ");

                if (strncmp(line, "LINE ", 5) != 0 && !(blank < n && line[blank] == '^') &&
                    blank < n && len + 1 < errsz)
                        len += (size_t)snprintf(errbuf + len, errsz - len, "%s%.*s",
                                                len > 0 ? " " : "", (int)n, line);
                if (len >= errsz)
                        len = errsz - 1;
                line += n + (line[n] == '\n');
        }
        while (len > 0 && errbuf[len - 1] == ' ')
                errbuf[--len] = '\0';
        if (len == 0)
                snprintf(errbuf, errsz, "unknown error");
}

/* Adds a statement for every session to prepare. */
static int prepare(struct db *db, const char *name, const char *sql, char *errbuf, size_t errsz)
{
        struct db_stmt *grown = realloc(db->stmts, (db->n_stmts + 1) * sizeof(*grown));

        if (grown == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                return -1;
        }
        db->stmts = grown;
        snprintf(grown[db->n_stmts].name, sizeof(grown[db->n_stmts].name), "%s", name);
        if ((grown[db->n_stmts].sql = strdup(sql)) == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                return -1;
        }
        db->n_stmts++;
        return 0;
}

/* The two fetch statements, outbox_fetch_<held>: due pending rows above
 * the relay's floor ($4: below it every pending row is in the relay's
 * hands), leaving out the rows in flight ($1, a hashed NOT IN in any plan)
 * and the keys the relay holds back in memory ($3, usually empty). The
 * floor stays below every writer still in progress, so a row whose
 * transaction commits late with a lower id than rows already published is
 * found by the next fetch, before any later row of its key (whose writer
 * committed after it). A row that never failed is due whatever its
 * next_attempt_at says: one skipped for a clock step could fall below the
 * floor.
 * - held: leave out rows of a key whose earlier row failed and waits for its
 *   retry (the NOT EXISTS over the small index of failing rows), so retries
 *   never reorder a key; skipped while no row is failing.
 * Memory: the rows come in id order while the ones before a row come to
 * less than $5 bytes (so at least one), as the window's running sum of
 * each row's size says (the last column, db_fetched_bytes): what arrives,
 * plus DB_ROW_OVERHEAD. The jsonb columns come as their text (what the
 * binary jsonb format sends anyway, less a version byte), made once and
 * measured as it is: a compressed payload's stored size can be a fiftieth
 * of it. Only the rows the LIMIT lets through are turned into text: the
 * OFFSET 0 keeps the planner from doing it below a sort of every pending
 * row (250 MB of text sorted on disk for 2,500 rows of 100 KB while the
 * statistics were stale), and its ORDER BY tells the window the rows come
 * sorted (else it sorts them again, on disk past work_mem). $2 bounds how
 * many rows the server reads. */
static int prepare_fetches(struct db *db, const char *s, char *errbuf, size_t errsz)
{
        char sql[2560], name[32];

        for (int held = 0; held <= 1; held++) {
                snprintf(sql, sizeof(sql),
                         "SELECT * FROM (SELECT t.*, sum(t.row_bytes)"
                         " OVER (ORDER BY t.id ROWS UNBOUNDED PRECEDING)::bigint AS upto"
                         " FROM (SELECT c.*, (%d + coalesce(octet_length(c.payload),"
                         " octet_length(c.payload_bytes), 0) + octet_length(c.headers)"
                         " + coalesce(octet_length(c.key), 0) + coalesce(octet_length(c.topic), 0)"
                         " + coalesce(octet_length(c.event_type), 0))::bigint AS row_bytes"
                         " FROM (SELECT r.id, r.event_id, r.topic, r.key, r.event_type,"
                         " r.payload::text AS payload, r.payload_bytes, r.headers::text AS headers,"
                         " r.created_at, r.attempts, r.replays, r.generation FROM ("
                         "SELECT e.id, e.event_id::text AS event_id, e.topic, e.key, e.event_type,"
                         " e.payload, e.payload_bytes, coalesce(e.headers, '{}') AS headers,"
                         " coalesce(e.created_at, now()) AS created_at,"
                         " coalesce(e.attempts, 0) AS attempts, coalesce(e.replays, 0) AS replays,"
                         " coalesce(e.generation, 0) AS generation"
                         " FROM %s.events e"
                         " WHERE e.status = 'pending' AND e.id > $4::bigint"
                         " AND (e.attempts = 0 OR e.next_attempt_at <= now())"
                         " AND e.id NOT IN (SELECT unnest($1::bigint[]))"
                         " AND (e.key IS NULL OR e.key NOT IN (SELECT unnest($3::text[]))) %s%s%s"
                         " ORDER BY e.id LIMIT $2) r ORDER BY r.id OFFSET 0) c) t) w"
                         " WHERE w.upto - w.row_bytes < $5::bigint ORDER BY w.id",
                         DB_ROW_OVERHEAD, s,
                         held ? "AND (e.key IS NULL OR NOT EXISTS (SELECT 1 FROM " : "",
                         held ? s : "",
                         held ? ".events b WHERE b.status = 'pending'"
                                " AND b.attempts > 0 AND b.key = e.key AND b.id < e.id))"
                              : "");
                snprintf(name, sizeof(name), "outbox_fetch_%d", held);
                if (prepare(db, name, sql, errbuf, errsz) != 0)
                        return -1;
        }
        return 0;
}

/* The relay's other statements. */
int db_prepare_all(struct db *db, const char *s, char *errbuf, size_t errsz)
{
        char sql[1536];

        if (prepare_fetches(db, s, errbuf, errsz) != 0)
                return -1;
        snprintf(
            sql, sizeof(sql),
            "SELECT EXISTS (SELECT 1 FROM %s.events WHERE status = 'pending' AND attempts > 0)", s);
        if (prepare(db, "outbox_failing", sql, errbuf, errsz) != 0)
                return -1;
        snprintf(sql, sizeof(sql),
                 "SELECT last_id, rewind_count, id_cache, writers, earlier_done"
                 " FROM %s.writers($1::text[])",
                 s);
        if (prepare(db, "outbox_writers", sql, errbuf, errsz) != 0)
                return -1;
        /* A mark applies only to the copy that was published: the same
         * event (a restore or a failover that lost the sequence's tail
         * hands published ids to new rows) in the same generation (a row
         * made pending again since is published again, whatever an old
         * leader that reconnects still has to mark). */
        snprintf(sql, sizeof(sql),
                 "UPDATE %s.events AS e SET status = 'sent', sent_at = now(),"
                 " kafka_partition = u.p, kafka_offset = u.o"
                 " FROM unnest($1::bigint[], $2::uuid[], $3::bigint[], $4::integer[],"
                 " $5::bigint[]) AS u(id, ev, g, p, o)"
                 " WHERE e.id = u.id AND e.event_id = u.ev AND coalesce(e.generation, 0) = u.g"
                 " AND e.status = 'pending'",
                 s);
        if (prepare(db, "outbox_mark", sql, errbuf, errsz) != 0)
                return -1;
        /* --exactly-once: rows a committed transaction carried, as its
         * progress record lists them, by the same rule. A version 2 record
         * (written before migration 005) names rows by id and replays only
         * (ev NULL): such a row is marked only if no return to pending has
         * happened since the migration (generation 0) and replay() has not
         * counted one since the record. */
        snprintf(sql, sizeof(sql),
                 "UPDATE %s.events AS e SET status = 'sent', sent_at = now(),"
                 " kafka_partition = nullif(u.p, -1), kafka_offset = nullif(u.o, -1)"
                 " FROM unnest($1::bigint[], $2::uuid[], $3::bigint[], $4::integer[],"
                 " $5::integer[], $6::bigint[]) AS u(id, ev, g, r, p, o)"
                 " WHERE e.id = u.id AND coalesce(e.generation, 0) = u.g AND e.status = 'pending'"
                 " AND (e.event_id = u.ev OR (u.ev IS NULL AND e.replays = u.r))",
                 s);
        if (prepare(db, "outbox_mark_committed", sql, errbuf, errsz) != 0)
                return -1;
        snprintf(sql, sizeof(sql),
                 "SELECT %s.record_failure($1::bigint, $2::integer, $3::text, $4::integer,"
                 " $5::integer)",
                 s);
        if (prepare(db, "outbox_fail", sql, errbuf, errsz) != 0)
                return -1;
        /* The third column: whether the table's statistics are stale for
         * planning (db_plan_for_statistics): they describe under 1 MB (an
         * empty or new table), or the table has grown to more than 4 times
         * what they describe. */
        snprintf(sql, sizeof(sql),
                 "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0),"
                 " (SELECT c.relpages < 128 OR pg_relation_size(c.oid)"
                 "  > 4 * c.relpages::bigint * current_setting('block_size')::bigint"
                 "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                 "  WHERE n.nspname = $1 AND c.relname = 'events')"
                 " FROM %s.events WHERE status = 'pending'",
                 s);
        if (prepare(db, "outbox_stats", sql, errbuf, errsz) != 0 ||
            prepare(db, "outbox_plans", "SELECT set_config('plan_cache_mode', $1, false)", errbuf,
                    errsz) != 0)
                return -1;
        snprintf(sql, sizeof(sql),
                 "DELETE FROM %s.events WHERE id IN (SELECT id FROM %s.events"
                 " WHERE status = 'sent' AND sent_at < now() - $1 * interval '1 second'"
                 " LIMIT $2) AND status = 'sent' AND sent_at < now() - $1 * interval '1 second'",
                 s, s);
        if (prepare(db, "outbox_retention", sql, errbuf, errsz) != 0)
                return -1;
        snprintf(sql, sizeof(sql), "UPDATE %s.relay_state SET waiting = $1::boolean", s);
        if (prepare(db, "outbox_waiting", sql, errbuf, errsz) != 0)
                return -1;
        /* The leader lock of this outbox: one key per schema, held by the
         * session, so it goes away with the connection or the process. */
        snprintf(sql, sizeof(sql), "SELECT pg_try_advisory_lock(%d, hashtext($1::text))",
                 DB_LEADER_LOCK_CLASS);
        return prepare(db, "outbox_lock", sql, errbuf, errsz);
}

const char *db_outbox_id(const struct db *db)
{
        return db->outbox_id;
}

/* The writer with the shortest queue: marks of different batches touch
 * different rows, so they run in parallel on as many server cores. */
static int writer(const struct db *db)
{
        int best = 1;

        for (int i = 2; i < DB_LANES; i++)
                if (db->lanes[i].queued < db->lanes[best].queued)
                        best = i;
        return best;
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
        return PQflush(l->conn) < 0 ? -1 : 0;
}

int db_enqueue(struct db *db, int lane, enum db_op_kind kind, const char *stmt, const char *sql,
               int nparams, char *const params[], int binary_result, db_done_cb cb, void *arg)
{
        struct lane *l = &db->lanes[lane];
        struct db_op *op;

        if (l->conn == NULL || (l->state != LANE_SETUP && l->state != LANE_READY)) {
                cb(arg, NULL, "not connected to the database");
                return -1;
        }
        op = calloc(1, sizeof(*op));
        if (op == NULL) {
                cb(arg, NULL, "out of memory");
                return -1;
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

                db_copy_pq_error(PQerrorMessage(l->conn), msg, sizeof(msg));
                if (db->state == DB_CONNECTING)
                        db_connect_fail(db, DB_EV_FAILED, "%s", msg); /* db_service closes */
                else
                        db_disconnect(db, msg);
                return -1;
        }
        return 0;
}

/* Queues one of the relay's queries: only once the db is up. */
static int enqueue(struct db *db, int lane, const char *stmt, int nparams, char *const params[],
                   int binary_result, db_done_cb cb, void *arg)
{
        if (db->state != DB_UP) {
                cb(arg, NULL, "not connected to the database");
                return -1;
        }
        return db_enqueue(db, lane, OP_EXECUTE, stmt, NULL, nparams, params, binary_result, cb,
                          arg);
}

/* Writes "{v1,v2,...}" for n values (int64_t when is64, else int32_t). */
static char *array_literal(size_t n, const void *values, int is64)
{
        size_t cap = 3 + n * 21, len = 0; /* braces, NUL; sign, 19 digits, comma */
        char *buf = malloc(cap);

        if (buf == NULL)
                return NULL;
        buf[len++] = '{';
        for (size_t i = 0; i < n; i++) {
                long long v = is64 ? (long long)((const int64_t *)values)[i]
                                   : (long long)((const int32_t *)values)[i];

                len += (size_t)snprintf(buf + len, cap - len, i ? ",%lld" : "%lld", v);
        }
        buf[len++] = '}';
        buf[len] = '\0';
        return buf;
}

/* Writes a text[] literal: every element quoted, '"' and '\\' escaped. */
static char *text_array_literal(size_t n, const char *const *values)
{
        size_t cap = 3, len = 0;
        char *buf;

        for (size_t i = 0; i < n; i++)
                cap += 3 + 2 * strlen(values[i]);
        if ((buf = malloc(cap)) == NULL)
                return NULL;
        buf[len++] = '{';
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        buf[len++] = ',';
                buf[len++] = '"';
                for (const char *p = values[i]; *p != '\0'; p++) {
                        if (*p == '"' || *p == '\\')
                                buf[len++] = '\\';
                        buf[len++] = *p;
                }
                buf[len++] = '"';
        }
        buf[len++] = '}';
        buf[len] = '\0';
        return buf;
}

/* Writes a uuid[] literal; an element that is not a uuid's text (NULL,
 * "": not known) is NULL, which matches no row. */
static char *uuid_array_literal(size_t n, const char *const *values)
{
        size_t cap = 3 + n * 38, len = 0; /* braces, NUL; 36 characters and a comma each */
        char *buf = malloc(cap);

        if (buf == NULL)
                return NULL;
        buf[len++] = '{';
        for (size_t i = 0; i < n; i++) {
                const char *v = values[i];
                int ok = v != NULL && strlen(v) == 36 && strspn(v, "0123456789abcdefABCDEF-") == 36;

                if (i > 0)
                        buf[len++] = ',';
                memcpy(buf + len, ok ? v : "NULL", ok ? 36 : 4);
                len += ok ? 36 : 4;
        }
        buf[len++] = '}';
        buf[len] = '\0';
        return buf;
}

int db_fetch(struct db *db, int64_t floor, size_t n_skip, const int64_t *skip, size_t n_keys,
             const char *const *keys, int limit, int64_t max_bytes, int hold_keys, db_done_cb cb,
             void *arg)
{
        char l[16], f[24], mb[24],
            *params[5] = {array_literal(n_skip, skip, 1), l, text_array_literal(n_keys, keys), f,
                          mb};
        int rc = -1;

        snprintf(l, sizeof(l), "%d", limit);
        snprintf(f, sizeof(f), "%lld", (long long)floor);
        snprintf(mb, sizeof(mb), "%lld", (long long)max_bytes);
        if (params[0] == NULL || params[2] == NULL)
                cb(arg, NULL, "out of memory");
        else
                rc = enqueue(db, DB_READER, hold_keys ? "outbox_fetch_1" : "outbox_fetch_0", 5,
                             params, 1, cb, arg);
        free(params[0]);
        free(params[2]);
        return rc;
}

static int64_t be64(const char *p)
{
        uint64_t v;

        memcpy(&v, p, sizeof(v));
        return (int64_t)be64toh(v);
}

static int32_t be32(const char *p)
{
        uint32_t v;

        memcpy(&v, p, sizeof(v));
        return (int32_t)be32toh(v);
}

/* Decodes row i of a binary fetch result (column order of db_fetch). */
void db_decode_row(const PGresult *res, int i, struct message_row *m)
{
        /* PostgreSQL timestamps count microseconds from 2000-01-01 UTC. */
        const int64_t pg_epoch_ms = 946684800000LL;
        int64_t us;

        memset(m, 0, sizeof(*m));
        m->id = be64(PQgetvalue(res, i, 0));
        /* NOT NULL in the schema, but a user may have dropped that: the
         * relay refuses the row rather than publish it without its id. */
        m->event_id = PQgetisnull(res, i, 1) ? NULL : PQgetvalue(res, i, 1);
        m->topic = PQgetisnull(res, i, 2) ? NULL : PQgetvalue(res, i, 2);
        if (!PQgetisnull(res, i, 3)) {
                m->key = PQgetvalue(res, i, 3);
                m->key_len = (size_t)PQgetlength(res, i, 3);
        }
        m->event_type = PQgetisnull(res, i, 4) ? NULL : PQgetvalue(res, i, 4);
        if (!PQgetisnull(res, i, 5)) { /* jsonb, as its text */
                m->value = PQgetvalue(res, i, 5);
                m->value_len = (size_t)PQgetlength(res, i, 5);
        } else if (!PQgetisnull(res, i, 6)) {
                m->value = PQgetvalue(res, i, 6);
                m->value_len = (size_t)PQgetlength(res, i, 6);
        }
        m->headers = PQgetvalue(res, i, 7); /* jsonb, as its text */
        m->headers_len = (size_t)PQgetlength(res, i, 7);
        us = be64(PQgetvalue(res, i, 8));
        m->created_at_ms = (us >= 0 ? us / 1000 : -((999 - us) / 1000)) + pg_epoch_ms;
        m->attempts = be32(PQgetvalue(res, i, 9));
        m->replays = be32(PQgetvalue(res, i, 10));
        m->generation = be64(PQgetvalue(res, i, 11));
}

int64_t db_fetched_bytes(const PGresult *res)
{
        int n = PQntuples(res);

        /* The window's running sum, the last column, at the last row. */
        return n > 0 ? be64(PQgetvalue(res, n - 1, PQnfields(res) - 1)) : 0;
}

int db_writers(struct db *db, const char *earlier, db_done_cb cb, void *arg)
{
        char *params[1] = {(char *)earlier};

        return enqueue(db, DB_READER, "outbox_writers", 1, params, 0, cb, arg);
}

int db_any_failing(struct db *db, db_done_cb cb, void *arg)
{
        return enqueue(db, DB_READER, "outbox_failing", 0, NULL, 0, cb, arg);
}

/* Queues stmt with the n params built (NULL: out of memory), then frees them. */
static int enqueue_built(struct db *db, const char *stmt, int n, char *params[], db_done_cb cb,
                         void *arg)
{
        int rc = -1, built = 1;

        for (int i = 0; i < n; i++)
                built &= params[i] != NULL;
        if (!built)
                cb(arg, NULL, "out of memory");
        else
                rc = enqueue(db, writer(db), stmt, n, params, 0, cb, arg);
        for (int i = 0; i < n; i++)
                free(params[i]);
        return rc;
}

int db_mark(struct db *db, size_t n, const int64_t *ids, const char *const *event_ids,
            const int64_t *generations, const int32_t *partitions, const int64_t *offsets,
            db_done_cb cb, void *arg)
{
        char *params[5] = {array_literal(n, ids, 1), uuid_array_literal(n, event_ids),
                           array_literal(n, generations, 1), array_literal(n, partitions, 0),
                           array_literal(n, offsets, 1)};

        return enqueue_built(db, "outbox_mark", 5, params, cb, arg);
}

int db_mark_committed(struct db *db, size_t n, const int64_t *ids, const char *const *event_ids,
                      const int64_t *generations, const int32_t *replays, const int32_t *partitions,
                      const int64_t *offsets, db_done_cb cb, void *arg)
{
        char *params[6] = {array_literal(n, ids, 1),         uuid_array_literal(n, event_ids),
                           array_literal(n, generations, 1), array_literal(n, replays, 0),
                           array_literal(n, partitions, 0),  array_literal(n, offsets, 1)};

        return enqueue_built(db, "outbox_mark_committed", 6, params, cb, arg);
}

int db_record_failure(struct db *db, int64_t id, int attempts, const char *error, int retry_ms,
                      int max_attempts, db_done_cb cb, void *arg)
{
        char i[24], a[16], r[16], m[16];
        char *params[5] = {i, a, (char *)error, r, m};

        snprintf(i, sizeof(i), "%lld", (long long)id);
        snprintf(a, sizeof(a), "%d", attempts);
        snprintf(r, sizeof(r), "%d", retry_ms);
        snprintf(m, sizeof(m), "%d", max_attempts);
        return enqueue(db, writer(db), "outbox_fail", 5, params, 0, cb, arg);
}

int db_try_leader_lock(struct db *db, db_done_cb cb, void *arg)
{
        char *params[1] = {db->cfg->schema};

        return enqueue(db, DB_READER, "outbox_lock", 1, params, 0, cb, arg);
}

int db_pending_stats(struct db *db, db_done_cb cb, void *arg)
{
        char *params[1] = {(char *)db->cfg->schema};

        return enqueue(db, writer(db), "outbox_stats", 1, params, 0, cb, arg);
}

static void on_plans_set(void *arg, PGresult *res, const char *error)
{
        struct db *db = arg;

        if (error != NULL && db_connected(db))
                log_warn(db->lg, "setting plan_cache_mode failed", "{s:s}", "error", error);
        PQclear(res);
}

/* A generic plan is made once, from the statistics of the moment, and
 * kept until they change. Made from the statistics of an empty table (a
 * new or truncated outbox, until autovacuum analyzes it), it scans the
 * whole table on every fetch and joins every mark with the whole pending
 * index: fetches of 11 ms instead of 0.4 ms at 3,000 events/s. Planning
 * every execution avoids that but costs ~0.1 ms a statement (9% of a CPU
 * at 1,000 events/s), so it is only done while the statistics are stale:
 * until the table has been analyzed at 1 MB or more, and again when it has
 * outgrown them fourfold. */
int db_plan_for_statistics(struct db *db, int stale)
{
        char *params[1] = {stale ? "force_custom_plan" : "auto"};
        int first = !db->plans_checked;

        if (!db_connected(db))
                return 0;
        db->plans_checked = 1;
        if (stale == db->custom_plans)
                return first;
        db->custom_plans = stale;
        for (int i = 0; i < DB_LANES; i++)
                enqueue(db, i, "outbox_plans", 1, params, 0, on_plans_set, db);
        return 1;
}

int db_delete_sent(struct db *db, int older_than_s, int limit, db_done_cb cb, void *arg)
{
        char a[16], l[16];
        char *params[2] = {a, l};

        snprintf(a, sizeof(a), "%d", older_than_s);
        snprintf(l, sizeof(l), "%d", limit);
        return enqueue(db, writer(db), "outbox_retention", 2, params, 0, cb, arg);
}

int db_set_waiting(struct db *db, int waiting, db_done_cb cb, void *arg)
{
        char *params[1] = {waiting ? "true" : "false"};

        return enqueue(db, writer(db), "outbox_waiting", 1, params, 0, cb, arg);
}

int db_socket(const struct db *db, int lane)
{
        return db->lanes[lane].conn != NULL ? PQsocket(db->lanes[lane].conn) : -1;
}

short db_events(const struct db *db, int lane)
{
        const struct lane *l = &db->lanes[lane];

        if (l->conn == NULL)
                return 0;
        if (l->state == LANE_CONNECTING)
                return l->poll == PGRES_POLLING_READING ? POLLIN : POLLOUT;
        return POLLIN | (l->sent && PQflush(l->conn) == 1 ? POLLOUT : 0);
}

int db_idle(const struct db *db)
{
        if (db->state != DB_UP)
                return 1; /* setup is the db's own business */
        for (int i = 0; i < DB_LANES; i++)
                if (db->lanes[i].head != NULL)
                        return 0;
        return 1;
}

int64_t db_next_deadline(const struct db *db)
{
        int64_t at = INT64_MAX;

        if (db->state != DB_CONNECTING)
                return at;
        for (int i = 0; i < DB_LANES; i++) {
                const struct lane *l = &db->lanes[i];

                if ((l->state == LANE_CONNECTING || l->state == LANE_SETUP) && l->deadline < at)
                        at = l->deadline;
        }
        return at;
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

                db_copy_pq_error(res != NULL ? PQresultErrorMessage(res) : "no result", msg,
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

/* A session of an attempt under way that is taking too long. */
static void check_deadlines(struct db *db, int64_t now)
{
        for (int i = 0; i < DB_LANES && !db->failed; i++) {
                const struct lane *l = &db->lanes[i];

                if (l->state == LANE_CONNECTING && now >= l->deadline)
                        db_connect_fail(
                            db, DB_EV_FAILED,
                            "cannot connect to the database: timed out (connect_timeout)");
                else if (l->state == LANE_SETUP && now >= l->deadline)
                        db_connect_fail(db, DB_EV_FAILED,
                                        "timed out setting up the database session (the server "
                                        "answered nothing within --statement-timeout-ms)");
        }
}

int db_service(struct db *db, const short revents[DB_LANES], int64_t now, int *notified)
{
        int was_up = db->state == DB_UP, any = 0, ev;

        if (db->state == DB_DOWN)
                return DB_EV_NONE;
        for (int i = 0; i < DB_LANES; i++)
                any |= revents[i] != 0;
        for (int i = 0; i < DB_LANES && !db->failed && db->state != DB_DOWN; i++) {
                struct lane *l = &db->lanes[i];
                char msg[512];

                if (l->state == LANE_CONNECTING) {
                        if (revents[i] != 0)
                                db_connect_poll(db, l, now);
                        continue;
                }
                if (!any || (l->state != LANE_SETUP && l->state != LANE_READY) ||
                    db_service_lane(db, l, notified) == 0)
                        continue;
                if (db->failed || db->state == DB_DOWN)
                        break; /* a callback failed the attempt or disconnected */
                db_copy_pq_error(PQerrorMessage(l->conn), msg, sizeof(msg));
                if (db->state == DB_CONNECTING) {
                        db_connect_fail(db, DB_EV_FAILED,
                                        "connection lost while setting up the session: %s", msg);
                        break;
                }
                log_warn(db->lg, "database connection lost", "{s:s,s:s}", "session",
                         i == DB_READER ? "reader" : "writer", "error", msg);
                db_close_all(db, msg);
                return DB_EV_LOST;
        }
        if (db->state == DB_CONNECTING)
                check_deadlines(db, now);
        if (db->failed) {
                ev = db->event;
                db->failed = 0;
                db->event = DB_EV_NONE;
                db_close_all(db, db->error);
                return ev;
        }
        if (was_up && db->state == DB_DOWN) {
                log_warn(db->lg, "database connection lost", "{s:s}", "error",
                         "closed after a failed statement");
                return DB_EV_LOST;
        }
        if (db->event == DB_EV_UP) {
                db->event = DB_EV_NONE;
                return DB_EV_UP;
        }
        return DB_EV_NONE;
}
