/* db: the relay's PostgreSQL sessions. Setup is blocking and short; after
 * that every query goes through a FIFO and is sent with the asynchronous
 * libpq calls, so delivery reports keep being served while a query runs.
 * Two sessions ("lanes") work in parallel: one reads (fetch, LISTEN, the
 * leader lock), one writes (marks, failures, retention), so marking a
 * batch never waits behind fetching the next one. */
#include "db.h"

#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate.h"

#define DB_MAX_PARAMS 6

struct db_op {
        struct db_op *next;
        const char *stmt;
        int nparams;
        char *params[DB_MAX_PARAMS];
        int binary_result;
        db_done_cb cb;
        void *arg;
        PGresult *res; /* first result, kept until the query completes */
};

struct lane {
        PGconn *conn;
        struct db_op *head, *tail;
        int sent;   /* head has been sent */
        int queued; /* ops in the FIFO, to spread writes over the writers */
};

struct db {
        const struct config *cfg;
        struct log *lg;
        struct lane lanes[DB_LANES];
        char outbox_id[40]; /* relay_state.outbox_id, read at connect */
        int custom_plans;   /* sessions plan every execution (stale statistics) */
        int plans_checked;  /* db_plan_for_statistics ran since the connect */
};

enum { READER = 0 }; /* lanes 1 .. DB_LANES-1 write */

struct db *db_new(const struct config *cfg, struct log *lg)
{
        struct db *db = calloc(1, sizeof(*db));

        if (db == NULL)
                return NULL;
        db->cfg = cfg;
        db->lg = lg;
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

/* Both lanes go together: the leader lock lives on the reader, and a
 * writer without it must not go on marking for a relay that lost it. */
void db_disconnect(struct db *db, const char *why)
{
        for (int i = 0; i < DB_LANES; i++) {
                if (db->lanes[i].conn != NULL) {
                        PQfinish(db->lanes[i].conn);
                        db->lanes[i].conn = NULL;
                }
        }
        for (int i = 0; i < DB_LANES; i++)
                fail_all(&db->lanes[i], why);
}

void db_free(struct db *db)
{
        if (db == NULL)
                return;
        db_disconnect(db, "shutting down");
        free(db);
}

int db_connected(const struct db *db)
{
        return db->lanes[READER].conn != NULL;
}

/* libpq error messages end with a newline; logs want one line. */
static void copy_pq_error(const char *msg, char *errbuf, size_t errsz)
{
        size_t n;

        snprintf(errbuf, errsz, "%s", msg != NULL ? msg : "unknown error");
        n = strlen(errbuf);
        while (n > 0 && (errbuf[n - 1] == '\n' || errbuf[n - 1] == ' '))
                errbuf[--n] = '\0';
        /* libpq puts its advice on lines of their own: one line reads better
         * in a log. */
        for (char *p = errbuf; (p = strchr(p, '\n')) != NULL;)
                *p = ' ';
}

/* libpq's TLS messages say what failed, not what to set: with
 * sslmode=verify-full and no sslrootcert it looks for ~/.postgresql/root.crt,
 * and in a container HOME is often /nonexistent. */
static void tls_hint(char *msg, size_t sz)
{
        size_t n = strlen(msg);

        if (strstr(msg, "root.crt") != NULL)
                snprintf(msg + n, sz - n,
                         " (name the CA certificate with sslrootcert=PATH in the database URL, or "
                         "PGSSLROOTCERT)");
        else if (strstr(msg, "certificate verify failed") != NULL)
                snprintf(msg + n, sz - n,
                         " (is sslrootcert the CA that signed the server's certificate?)");
}

static int exec_ok(PGconn *conn, const char *sql, const char *what, char *errbuf, size_t errsz)
{
        PGresult *res = PQexec(conn, sql);
        ExecStatusType st = PQresultStatus(res);
        int rc = 0;

        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                char msg[512];

                copy_pq_error(PQresultErrorMessage(res), msg, sizeof(msg));
                snprintf(errbuf, errsz, "%s: %s", what, msg);
                rc = -1;
        }
        PQclear(res);
        return rc;
}

static int prepare(PGconn *conn, const char *name, const char *sql, char *errbuf, size_t errsz)
{
        PGresult *res = PQprepare(conn, name, sql, 0, NULL);
        int rc = 0;

        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                char msg[512];

                copy_pq_error(PQresultErrorMessage(res), msg, sizeof(msg));
                snprintf(errbuf, errsz, "preparing %s: %s", name, msg);
                rc = -1;
        }
        PQclear(res);
        return rc;
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
 *   never reorder a key; skipped while no row is failing. */
static int prepare_fetches(PGconn *conn, const char *s, char *errbuf, size_t errsz)
{
        char sql[1536], name[32];

        for (int held = 0; held <= 1; held++) {
                snprintf(sql, sizeof(sql),
                         "SELECT e.id, e.event_id::text, e.topic, e.key, e.event_type,"
                         " e.payload, e.payload_bytes, coalesce(e.headers, '{}'),"
                         " coalesce(e.created_at, now()), coalesce(e.attempts, 0),"
                         " coalesce(e.replays, 0), coalesce(e.generation, 0)"
                         " FROM %s.events e"
                         " WHERE e.status = 'pending' AND e.id > $4::bigint"
                         " AND (e.attempts = 0 OR e.next_attempt_at <= now())"
                         " AND e.id NOT IN (SELECT unnest($1::bigint[]))"
                         " AND (e.key IS NULL OR e.key NOT IN (SELECT unnest($3::text[]))) %s%s%s"
                         " ORDER BY e.id LIMIT $2",
                         s, held ? "AND (e.key IS NULL OR NOT EXISTS (SELECT 1 FROM " : "",
                         held ? s : "",
                         held ? ".events b WHERE b.status = 'pending'"
                                " AND b.attempts > 0 AND b.key = e.key AND b.id < e.id))"
                              : "");
                snprintf(name, sizeof(name), "outbox_fetch_%d", held);
                if (prepare(conn, name, sql, errbuf, errsz) != 0)
                        return -1;
        }
        return 0;
}

/* The relay's other statements. */
static int prepare_all(PGconn *conn, const char *s, char *errbuf, size_t errsz)
{
        char sql[1536];

        if (prepare_fetches(conn, s, errbuf, errsz) != 0)
                return -1;
        snprintf(
            sql, sizeof(sql),
            "SELECT EXISTS (SELECT 1 FROM %s.events WHERE status = 'pending' AND attempts > 0)", s);
        if (prepare(conn, "outbox_failing", sql, errbuf, errsz) != 0)
                return -1;
        snprintf(sql, sizeof(sql),
                 "SELECT last_id, rewind_count, id_cache, writers, earlier_done"
                 " FROM %s.writers($1::text[])",
                 s);
        if (prepare(conn, "outbox_writers", sql, errbuf, errsz) != 0)
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
        if (prepare(conn, "outbox_mark", sql, errbuf, errsz) != 0)
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
        if (prepare(conn, "outbox_mark_committed", sql, errbuf, errsz) != 0)
                return -1;
        snprintf(sql, sizeof(sql),
                 "SELECT %s.record_failure($1::bigint, $2::integer, $3::text, $4::integer,"
                 " $5::integer)",
                 s);
        if (prepare(conn, "outbox_fail", sql, errbuf, errsz) != 0)
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
        if (prepare(conn, "outbox_stats", sql, errbuf, errsz) != 0 ||
            prepare(conn, "outbox_plans", "SELECT set_config('plan_cache_mode', $1, false)", errbuf,
                    errsz) != 0)
                return -1;
        snprintf(sql, sizeof(sql),
                 "DELETE FROM %s.events WHERE id IN (SELECT id FROM %s.events"
                 " WHERE status = 'sent' AND sent_at < now() - $1 * interval '1 second'"
                 " LIMIT $2) AND status = 'sent' AND sent_at < now() - $1 * interval '1 second'",
                 s, s);
        if (prepare(conn, "outbox_retention", sql, errbuf, errsz) != 0)
                return -1;
        snprintf(sql, sizeof(sql), "UPDATE %s.relay_state SET waiting = $1::boolean", s);
        if (prepare(conn, "outbox_waiting", sql, errbuf, errsz) != 0)
                return -1;
        /* The leader lock of this outbox: one key per schema, held by the
         * session, so it goes away with the connection or the process. */
        snprintf(sql, sizeof(sql), "SELECT pg_try_advisory_lock(%d, hashtext($1::text))",
                 DB_LEADER_LOCK_CLASS);
        return prepare(conn, "outbox_lock", sql, errbuf, errsz);
}

/* PostgreSQL notices (e.g. "terminating connection due to administrator
 * command") go to the JSON log instead of raw onto stderr. */
static void on_notice(void *arg, const char *message)
{
        struct db *db = arg;
        char msg[512];

        copy_pq_error(message, msg, sizeof(msg));
        log_warn(db->lg, "postgresql notice", "{s:s}", "notice", msg);
}

/* Opens one session: our defaults come before dbname so that settings in
 * the user's URL (expanded in dbname's place) override them. Keepalives
 * make a dead peer show up as an error instead of a hang. */
static PGconn *open_session(struct db *db, const char *role, char *errbuf, size_t errsz)
{
        const char *keys[] = {
            "application_name",    "connect_timeout",  "keepalives", "keepalives_idle",
            "keepalives_interval", "keepalives_count", "dbname",     NULL};
        char appname[64];
        const char *vals[] = {appname, "5", "1", "10", "5", "3", db->cfg->database_url, NULL};
        PGconn *conn;

        /* Sessions show up as outbox-relay/<instance> (the reader, which
         * holds the leader lock) in pg_stat_activity: `outbox-relay status`
         * names the leader by it. */
        snprintf(appname, sizeof(appname), "outbox-relay%s/%s", role, db->cfg->instance_id);
        conn = PQconnectdbParams(keys, vals, 1);
        if (conn != NULL)
                PQsetNoticeProcessor(conn, on_notice, db);
        if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
                char msg[512];

                copy_pq_error(conn != NULL ? PQerrorMessage(conn) : "out of memory", msg,
                              sizeof(msg));
                tls_hint(msg, sizeof(msg));
                snprintf(errbuf, errsz, "cannot connect to the database: %s", msg);
                PQfinish(conn);
                return NULL;
        }
        /* The role keeps the relay's own updates from notifying it. Plans:
         * see db_plan_for_statistics; a session starts planning every
         * execution until the first look at the statistics. */
        if (exec_ok(conn,
                    "SET outbox_relay.role = 'relay'; SET plan_cache_mode = force_custom_plan",
                    "setting up the session", errbuf, errsz) != 0) {
                PQfinish(conn);
                return NULL;
        }
        return conn;
}

/* The outbox's identity (migration 002): --exactly-once writes it into its
 * progress records and refuses the records of another outbox. */
static int read_outbox_id(struct db *db, PGconn *conn, const char *schema, char *errbuf,
                          size_t errsz)
{
        char sql[160], msg[256];
        PGresult *res;
        int rc = -1;

        snprintf(sql, sizeof(sql), "SELECT outbox_id::text FROM %s.relay_state", schema);
        res = PQexec(conn, sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                copy_pq_error(PQresultErrorMessage(res), msg, sizeof(msg));
                snprintf(errbuf, errsz, "reading the outbox identity (relay_state): %s", msg);
        } else if (PQntuples(res) != 1) {
                snprintf(errbuf, errsz,
                         "relay_state has %d rows instead of 1: run outbox-relay migrate on a "
                         "fresh schema",
                         PQntuples(res));
        } else {
                snprintf(db->outbox_id, sizeof(db->outbox_id), "%s", PQgetvalue(res, 0, 0));
                rc = 0;
        }
        PQclear(res);
        return rc;
}

const char *db_outbox_id(const struct db *db)
{
        return db->outbox_id;
}

int db_connect(struct db *db, char *errbuf, size_t errsz)
{
        char *schema = NULL, *channel = NULL, sql[256];
        PGconn *conns[DB_LANES] = {NULL};
        int rc = -1;

        db_disconnect(db, "reconnecting");
        conns[READER] = open_session(db, "", errbuf, errsz);
        if (conns[READER] == NULL)
                goto out;
        rc = migrate_check(conns[READER], db->cfg->schema, errbuf, errsz);
        if (rc != 0) {
                rc = rc == MIGRATE_ERR_SCHEMA ? DB_ERR_SCHEMA : -1;
                goto out;
        }
        rc = -1;
        schema = PQescapeIdentifier(conns[READER], db->cfg->schema, strlen(db->cfg->schema));
        snprintf(sql, sizeof(sql), "%s.events", db->cfg->schema);
        channel = PQescapeIdentifier(conns[READER], sql, strlen(sql));
        if (schema == NULL || channel == NULL) {
                snprintf(errbuf, errsz, "cannot quote the schema name");
                goto out;
        }
        for (int i = 0; i < DB_LANES; i++) {
                if (i != READER && (conns[i] = open_session(db, "-writer", errbuf, errsz)) == NULL)
                        goto out;
                if (prepare_all(conns[i], schema, errbuf, errsz) != 0)
                        goto out;
                if (PQsetnonblocking(conns[i], 1) != 0) {
                        snprintf(errbuf, errsz, "cannot make the connections non-blocking");
                        goto out;
                }
        }
        snprintf(sql, sizeof(sql), "LISTEN %s", channel);
        if (exec_ok(conns[READER], sql, "LISTEN", errbuf, errsz) != 0 ||
            read_outbox_id(db, conns[READER], schema, errbuf, errsz) != 0)
                goto out;
        for (int i = 0; i < DB_LANES; i++) {
                db->lanes[i].conn = conns[i];
                conns[i] = NULL;
        }
        db->custom_plans = 1;
        db->plans_checked = 0;
        rc = 0;
out:
        PQfreemem(schema);
        PQfreemem(channel);
        for (int i = 0; i < DB_LANES; i++)
                PQfinish(conns[i]);
        return rc;
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

        for (int i = 0; i < op->nparams; i++)
                values[i] = op->params[i];
        if (!PQsendQueryPrepared(l->conn, op->stmt, op->nparams, values, NULL, NULL,
                                 op->binary_result))
                return -1;
        l->sent = 1;
        return PQflush(l->conn) < 0 ? -1 : 0;
}

/* Queues a query on a lane; params are copied. Fails at once when
 * disconnected. */
static int enqueue(struct db *db, int lane, const char *stmt, int nparams, char *const params[],
                   int binary_result, db_done_cb cb, void *arg)
{
        struct lane *l = &db->lanes[lane];
        struct db_op *op;

        if (l->conn == NULL) {
                cb(arg, NULL, "not connected to the database");
                return -1;
        }
        op = calloc(1, sizeof(*op));
        if (op == NULL) {
                cb(arg, NULL, "out of memory");
                return -1;
        }
        op->stmt = stmt;
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

                copy_pq_error(PQerrorMessage(l->conn), msg, sizeof(msg));
                db_disconnect(db, msg);
                return -1;
        }
        return 0;
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
             const char *const *keys, int limit, int hold_keys, db_done_cb cb, void *arg)
{
        char l[16], f[24],
            *params[4] = {array_literal(n_skip, skip, 1), l, text_array_literal(n_keys, keys), f};
        int rc = -1;

        snprintf(l, sizeof(l), "%d", limit);
        snprintf(f, sizeof(f), "%lld", (long long)floor);
        if (params[0] == NULL || params[2] == NULL)
                cb(arg, NULL, "out of memory");
        else
                rc = enqueue(db, READER, hold_keys ? "outbox_fetch_1" : "outbox_fetch_0", 4, params,
                             1, cb, arg);
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
        if (!PQgetisnull(res, i, 5)) { /* binary jsonb: a version byte, then the text */
                m->value = PQgetvalue(res, i, 5) + 1;
                m->value_len = (size_t)PQgetlength(res, i, 5) - 1;
        } else if (!PQgetisnull(res, i, 6)) {
                m->value = PQgetvalue(res, i, 6);
                m->value_len = (size_t)PQgetlength(res, i, 6);
        }
        m->headers = PQgetvalue(res, i, 7) + 1;
        m->headers_len = (size_t)PQgetlength(res, i, 7) - 1;
        us = be64(PQgetvalue(res, i, 8));
        m->created_at_ms = (us >= 0 ? us / 1000 : -((999 - us) / 1000)) + pg_epoch_ms;
        m->attempts = be32(PQgetvalue(res, i, 9));
        m->replays = be32(PQgetvalue(res, i, 10));
        m->generation = be64(PQgetvalue(res, i, 11));
}

int db_writers(struct db *db, const char *earlier, db_done_cb cb, void *arg)
{
        char *params[1] = {(char *)earlier};

        return enqueue(db, READER, "outbox_writers", 1, params, 0, cb, arg);
}

int db_any_failing(struct db *db, db_done_cb cb, void *arg)
{
        return enqueue(db, READER, "outbox_failing", 0, NULL, 0, cb, arg);
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

        return enqueue(db, READER, "outbox_lock", 1, params, 0, cb, arg);
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

int db_wants_write(const struct db *db, int lane)
{
        const struct lane *l = &db->lanes[lane];

        return l->conn != NULL && l->sent && PQflush(l->conn) == 1;
}

int db_idle(const struct db *db)
{
        for (int i = 0; i < DB_LANES; i++)
                if (db->lanes[i].head != NULL)
                        return 0;
        return 1;
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

                copy_pq_error(res != NULL ? PQresultErrorMessage(res) : "no result", msg,
                              sizeof(msg));
                PQclear(res);
                op->cb(op->arg, NULL, msg);
        }
        op_free(op);
}

/* Does what is possible on one lane; -1 when its connection broke (or a
 * callback closed it). */
static int service_lane(struct db *db, struct lane *l, int *notified)
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
                        if (l->head->res == NULL)
                                l->head->res = res;
                        else
                                PQclear(res);
                        continue;
                }
                complete_head(l);
                if (!db_connected(db) || l->conn == NULL)
                        return -1; /* a callback disconnected */
                /* A callback may have queued (and so sent) the next one. */
                if (l->head != NULL && !l->sent && send_head(l) != 0)
                        return -1;
        }
        return PQstatus(l->conn) == CONNECTION_OK ? 0 : -1;
}

int db_service(struct db *db, int *notified)
{
        for (int i = 0; i < DB_LANES; i++) {
                struct lane *l = &db->lanes[i];
                char msg[512];

                if (l->conn == NULL)
                        return -1;
                if (service_lane(db, l, notified) == 0)
                        continue;
                copy_pq_error(l->conn != NULL ? PQerrorMessage(l->conn) : "connection closed", msg,
                              sizeof(msg));
                log_warn(db->lg, "database connection lost", "{s:s,s:s}", "session",
                         i == READER ? "reader" : "writer", "error", msg);
                db_disconnect(db, msg);
                return -1;
        }
        return 0;
}
