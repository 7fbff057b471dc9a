/* db: the relay's PostgreSQL sessions, as the relay sees them: its queries
 * and their results decoded into typed values, so that no libpq type or
 * column index leaves the db module. Three sessions ("lanes") work in
 * parallel: one reads (fetch, LISTEN, the leader lock), two write (marks,
 * failures, retention), so marking a batch never waits behind fetching the
 * next one. Queries go through each session's FIFO (db_lane.c); sessions
 * are opened and set up without blocking (db_connect.c). */
#include "db.h"

#include <endian.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db_int.h"
#include "log.h"
#include "message.h"
#include "pq_util.h"

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

const char *db_outbox_id(const struct db *db)
{
        return db->outbox_id;
}

/* A writer whose statement has run this long is most likely waiting for
 * a lock (a row another session holds blocks record_failure until
 * lock_timeout): work queued behind it would wait as long. */
#define DB_WRITER_STUCK_MS 200

static int writer_stuck(const struct lane *l, int64_t now)
{
        return l->sent && now - l->sent_ms >= DB_WRITER_STUCK_MS;
}

/* The writer with the shortest queue among those not stuck: marks of
 * different batches touch different rows, so they run in parallel on as
 * many server cores, and one held by a lock does not hold the rest. */
static int writer(const struct db *db)
{
        int64_t now = db_mono_ms();
        int best = 1, best_stuck = writer_stuck(&db->lanes[1], now);

        for (int i = 2; i < DB_LANES; i++) {
                int stuck = writer_stuck(&db->lanes[i], now);

                if (stuck < best_stuck ||
                    (stuck == best_stuck && db->lanes[i].queued < db->lanes[best].queued)) {
                        best = i;
                        best_stuck = stuck;
                }
        }
        return best;
}

/* A query's callback as its caller gave it, with the decoder that turns
 * libpq's result into what that callback takes: the columns of every
 * statement are known here only. */
struct call {
        void (*decode)(const struct call *c, PGresult *res, const char *error);
        union {
                db_rows_cb rows;
                db_count_cb count;
                db_flag_cb flag;
                db_writers_cb writers;
                db_outcome_cb outcome;
                db_stats_cb stats;
                db_holder_cb holder;
        } cb;
        void *arg;
};

static void on_result(void *arg, PGresult *res, const char *error)
{
        struct call *c = arg;

        c->decode(c, res, error); /* it clears res, or hands it over */
        free(c);
}

/* Queues one of the relay's queries (only once the db is up); its
 * callback is called in any case. */
static void submit(struct db *db, int lane, const char *stmt, int nparams, char *const params[],
                   int binary_result, const struct call *proto)
{
        struct call *c;

        if (db->state != DB_UP) {
                proto->decode(proto, NULL, "not connected to the database");
                return;
        }
        if ((c = malloc(sizeof(*c))) == NULL) {
                proto->decode(proto, NULL, "out of memory");
                return;
        }
        *c = *proto;
        db_enqueue(db, lane, OP_EXECUTE, stmt, NULL, nparams, params, binary_result, on_result, c);
}

/* A statement that returns one row: a result without it is an error. */
static const char *one_row(const PGresult *res, const char *error)
{
        if (error == NULL && PQntuples(res) < 1)
                return "the statement returned no row";
        return error;
}

static void decode_count(const struct call *c, PGresult *res, const char *error)
{
        long n = error == NULL ? atol(PQcmdTuples(res)) : 0;

        PQclear(res);
        c->cb.count(c->arg, n, error);
}

static void decode_flag(const struct call *c, PGresult *res, const char *error)
{
        int yes = 0;

        error = one_row(res, error);
        if (error == NULL)
                yes = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        c->cb.flag(c->arg, yes, error);
        PQclear(res);
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

static void decode_rows(const struct call *c, PGresult *res, const char *error);

void db_fetch(struct db *db, int64_t floor, size_t n_skip, const int64_t *skip, size_t n_keys,
              const char *const *keys, int limit, int64_t max_bytes, int hold_keys, db_rows_cb cb,
              void *arg)
{
        struct call c = {decode_rows, {.rows = cb}, arg};
        char l[16], f[24], mb[24],
            *params[5] = {array_literal(n_skip, skip, 1), l, text_array_literal(n_keys, keys), f,
                          mb};

        snprintf(l, sizeof(l), "%d", limit);
        snprintf(f, sizeof(f), "%lld", (long long)floor);
        snprintf(mb, sizeof(mb), "%lld", (long long)max_bytes);
        if (params[0] == NULL || params[2] == NULL)
                cb(arg, NULL, "out of memory");
        else
                submit(db, DB_READER, hold_keys ? "outbox_fetch_1" : "outbox_fetch_0", 5, params, 1,
                       &c);
        free(params[0]);
        free(params[2]);
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

struct db_rows {
        PGresult *res;
};

/* Row i of a fetch's binary result (column order of outbox_fetch_*). */
void db_rows_decode(const struct db_rows *rows, int i, struct message_row *m)
{
        const PGresult *res = rows->res;
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
                m->value_is_bytes = 1;
        }
        m->headers = PQgetvalue(res, i, 7); /* jsonb, as its text */
        m->headers_len = (size_t)PQgetlength(res, i, 7);
        us = be64(PQgetvalue(res, i, 8));
        m->created_at_ms = (us >= 0 ? us / 1000 : -((999 - us) / 1000)) + pg_epoch_ms;
        /* Saturated: infinity is INT64_MAX, which the epoch would overflow. */
        m->created_at_us =
            us > INT64_MAX - pg_epoch_ms * 1000 ? INT64_MAX : us + pg_epoch_ms * 1000;
        m->attempts = be32(PQgetvalue(res, i, 9));
        m->replays = be32(PQgetvalue(res, i, 10));
        m->generation = be64(PQgetvalue(res, i, 11));
}

static void decode_rows(const struct call *c, PGresult *res, const char *error)
{
        struct db_rows *rows = NULL;

        if (error == NULL && (rows = malloc(sizeof(*rows))) == NULL)
                error = "out of memory for a batch";
        if (error != NULL) {
                PQclear(res);
                c->cb.rows(c->arg, NULL, error);
                return;
        }
        rows->res = res;
        c->cb.rows(c->arg, rows, NULL);
}

int db_rows_count(const struct db_rows *rows)
{
        return PQntuples(rows->res);
}

int64_t db_rows_bytes(const struct db_rows *rows)
{
        int n = PQntuples(rows->res);

        /* The window's running sum, the last column, at the last row. */
        return n > 0 ? be64(PQgetvalue(rows->res, n - 1, PQnfields(rows->res) - 1)) : 0;
}

int64_t db_rows_memory(const struct db_rows *rows)
{
        return (int64_t)PQresultMemorySize(rows->res);
}

void db_rows_free(struct db_rows *rows)
{
        if (rows == NULL)
                return;
        PQclear(rows->res);
        free(rows);
}

/* Columns last_id, rewind_count, id_cache, writers, earlier_done. */
static void decode_writers(const struct call *c, PGresult *res, const char *error)
{
        struct db_writers w = {0, 0, 0, "{}", 0};

        error = one_row(res, error);
        if (error == NULL) {
                w.last_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
                w.rewinds = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
                w.id_cache = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
                w.writers = PQgetvalue(res, 0, 3);
                w.earlier_done = strcmp(PQgetvalue(res, 0, 4), "t") == 0;
        }
        c->cb.writers(c->arg, &w, error);
        PQclear(res);
}

void db_writers(struct db *db, const char *earlier, db_writers_cb cb, void *arg)
{
        struct call c = {decode_writers, {.writers = cb}, arg};
        char *params[1] = {(char *)earlier};

        submit(db, DB_READER, "outbox_writers", 1, params, 0, &c);
}

void db_any_failing(struct db *db, db_flag_cb cb, void *arg)
{
        struct call c = {decode_flag, {.flag = cb}, arg};

        submit(db, DB_READER, "outbox_failing", 0, NULL, 0, &c);
}

void db_mark(struct db *db, const struct db_marks *m, db_count_cb cb, void *arg)
{
        struct call c = {decode_count, {.count = cb}, arg};
        char *params[6] = {
            array_literal(m->n, m->ids, 1),         uuid_array_literal(m->n, m->event_ids),
            array_literal(m->n, m->generations, 1), array_literal(m->n, m->replays, 0),
            array_literal(m->n, m->partitions, 0),  array_literal(m->n, m->offsets, 1)};
        int built = 1;

        for (int i = 0; i < 6; i++)
                built &= params[i] != NULL;
        if (!built)
                cb(arg, 0, "out of memory");
        else
                submit(db, writer(db), "outbox_mark", 6, params, 0, &c);
        for (int i = 0; i < 6; i++)
                free(params[i]);
}

static void decode_outcome(const struct call *c, PGresult *res, const char *error)
{
        enum db_outcome o = DB_OUTCOME_RETRY;

        error = one_row(res, error);
        if (error == NULL && strcmp(PQgetvalue(res, 0, 0), "dead") == 0)
                o = DB_OUTCOME_DEAD;
        else if (error == NULL && strcmp(PQgetvalue(res, 0, 0), "stale") == 0)
                o = DB_OUTCOME_STALE;
        c->cb.outcome(c->arg, o, error);
        PQclear(res);
}

void db_record_failure(struct db *db, int64_t id, int64_t generation, int attempts,
                       const char *error, int retry_ms, int max_attempts, db_outcome_cb cb,
                       void *arg)
{
        struct call c = {decode_outcome, {.outcome = cb}, arg};
        char i[24], a[16], r[16], m[16], g[24];
        /* NULL: no --dead-letter-topic (sql/007_dead_letter_topic.sql). */
        char *params[7] = {i, a, (char *)error, r, m, db->cfg->dead_letter_topic, g};

        snprintf(i, sizeof(i), "%lld", (long long)id);
        snprintf(g, sizeof(g), "%lld", (long long)generation);
        snprintf(a, sizeof(a), "%d", attempts);
        snprintf(r, sizeof(r), "%d", retry_ms);
        snprintf(m, sizeof(m), "%d", max_attempts);
        submit(db, writer(db), "outbox_fail", 7, params, 0, &c);
}

void db_try_leader_lock(struct db *db, db_flag_cb cb, void *arg)
{
        struct call c = {decode_flag, {.flag = cb}, arg};
        char *params[1] = {db->cfg->schema};

        submit(db, DB_READER, "outbox_lock", 1, params, 0, &c);
}

static void decode_holder(const struct call *c, PGresult *res, const char *error)
{
        struct db_lock_holder h = {0, 0, 0, "", ""};

        if (error == NULL && PQntuples(res) == 1) {
                h.found = 1;
                h.pid = atoi(PQgetvalue(res, 0, 0));
                h.role = PQgetvalue(res, 0, 1);
                h.application_name = PQgetvalue(res, 0, 2);
                h.relay = strcmp(PQgetvalue(res, 0, 3), "t") == 0;
        }
        c->cb.holder(c->arg, &h, error);
        PQclear(res);
}

void db_lock_holder(struct db *db, db_holder_cb cb, void *arg)
{
        struct call c = {decode_holder, {.holder = cb}, arg};
        char *params[1] = {db->cfg->schema};

        submit(db, DB_READER, "outbox_lock_holder", 1, params, 0, &c);
}

static void decode_stats(const struct call *c, PGresult *res, const char *error)
{
        struct db_stats st = {0, 0, 0, 0};

        error = one_row(res, error);
        if (error == NULL) {
                st.pending = atof(PQgetvalue(res, 0, 0));
                st.oldest_age_s = atof(PQgetvalue(res, 0, 1));
                st.stale = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
                st.dead_letters = atof(PQgetvalue(res, 0, 3));
        }
        c->cb.stats(c->arg, &st, error);
        PQclear(res);
}

void db_pending_stats(struct db *db, db_stats_cb cb, void *arg)
{
        struct call c = {decode_stats, {.stats = cb}, arg};
        char *params[1] = {(char *)db->cfg->schema};

        submit(db, writer(db), "outbox_stats", 1, params, 0, &c);
}

static void on_plans_set(void *arg, PGresult *res, const char *error)
{
        struct db *db = arg;

        if (error != NULL && db_connected(db))
                log_warn(db->lg, "setting plan_cache_mode failed", "{s:s}", "error", error);
        PQclear(res);
}

/* The writer sessions' plans: the mark, record_failure, the count of
 * pending rows, retention (the reader's are generic, held to index scans:
 * db_statements.c, session_sql). A generic plan is made once, from the
 * statistics of the moment, and kept until they change. Made from the
 * statistics of an empty table (a new or truncated outbox, until
 * autovacuum analyzes it), it joins every mark with the whole pending
 * index. Planning every execution avoids that but costs ~0.1 ms a
 * statement (9% of a CPU at 1,000 events/s), so it is only done while the
 * statistics are stale: until the table has been analyzed at 1 MB or
 * more, and again when it has outgrown them fourfold. */
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
        for (int i = DB_READER + 1; i < DB_LANES; i++)
                db_enqueue(db, i, OP_EXECUTE, "outbox_plans", NULL, 1, params, 0, on_plans_set, db);
        return 1;
}

void db_delete_sent(struct db *db, int older_than_s, int limit, db_count_cb cb, void *arg)
{
        struct call c = {decode_count, {.count = cb}, arg};
        char a[16], l[16];
        char *params[2] = {a, l};

        snprintf(a, sizeof(a), "%d", older_than_s);
        snprintf(l, sizeof(l), "%d", limit);
        submit(db, writer(db), "outbox_retention", 2, params, 0, &c);
}

void db_set_waiting(struct db *db, int waiting, db_count_cb cb, void *arg)
{
        struct call c = {decode_count, {.count = cb}, arg};
        char *params[1] = {waiting ? "true" : "false"};

        submit(db, writer(db), "outbox_waiting", 1, params, 0, &c);
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

enum db_event db_service(struct db *db, const short revents[DB_LANES], int64_t now, int *notified)
{
        int was_up = db->state == DB_UP, any = 0;
        enum db_event ev;

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
                pq_error_line(PQerrorMessage(l->conn), msg, sizeof(msg));
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
