/* db_connect: opens and sets up the relay's sessions without blocking the
 * loop. Each session connects with PQconnectStartParams / PQconnectPoll,
 * driven by the loop's poll() on its socket; then its setup statements
 * (the session's timeouts and settings, the schema version on the reader,
 * the prepared statements, LISTEN and the outbox's identity) go through the
 * session's FIFO like any query. An ACCESS EXCLUSIVE lock on the outbox, a
 * server that accepts and then says nothing, a slow TLS handshake: the loop
 * goes on serving signals, probes and delivery reports meanwhile. The
 * attempt ends when every session is ready (DB_EV_UP) or one fails. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db_int.h"
#include "log.h"
#include "migrate.h"
#include "pq_util.h"

/* After a setup statement's statement_timeout, how long a server that
 * answers nothing is given before the attempt is abandoned. */
#define SETUP_GRACE_MS 5000

enum setup_step {
        ST_SESSION,     /* timeouts, the relay's role, plans */
        ST_PROBE,       /* reader: do the schema and its schema_migrations exist? */
        ST_VERSION,     /* reader: the schema's version */
        ST_WAIT_SCHEMA, /* writers: wait for the reader's verdict on the schema */
        ST_PREPARE,     /* every statement of the relay */
        ST_LISTEN,      /* reader */
        ST_OUTBOX_ID,   /* reader: relay_state.outbox_id */
        ST_READY,
};

static void setup_next(struct lane *l, int64_t now);

/* PostgreSQL notices (e.g. "terminating connection due to administrator
 * command") go to the JSON log instead of raw onto stderr. */
static void on_notice(void *arg, const char *message)
{
        struct db *db = arg;
        char msg[512];

        pq_error_line(message, msg, sizeof(msg));
        log_warn(db->lg, "postgresql notice", "{s:s}", "notice", msg);
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

/* libpq leaves connect_timeout to whoever drives PQconnectPoll: the
 * session's own value (ours, or the URL's), in ms; 0 for none. libpq reads
 * values under 2 s as 2 s. */
static int connect_timeout_ms(PGconn *conn)
{
        PQconninfoOption *opts = PQconninfo(conn);
        int s = 0;

        for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++)
                if (strcmp(o->keyword, "connect_timeout") == 0 && o->val != NULL)
                        s = atoi(o->val);
        PQconninfoFree(opts);
        return s <= 0 ? 0 : (s < 2 ? 2 : s) * 1000;
}

/* Starts one session: our defaults come before dbname so that settings in
 * the user's URL (expanded in dbname's place) override them. Keepalives
 * make a dead peer show up as an error instead of a hang. */
static int start_lane(struct db *db, struct lane *l, int64_t now, char *errbuf, size_t errsz)
{
        const char *keys[] = {
            "application_name",    "connect_timeout",  "keepalives", "keepalives_idle",
            "keepalives_interval", "keepalives_count", "dbname",     NULL};
        char appname[300], msg[512];
        const char *vals[] = {appname, "5", "1", "10", "5", "3", db->cfg->database_url, NULL};
        int timeout;

        /* Sessions show up as outbox-relay/<instance> (the reader, which
         * holds the leader lock) in pg_stat_activity: `outbox-relay status`
         * names the leader by it. */
        snprintf(appname, sizeof(appname), "outbox-relay%s/%s",
                 l->index == DB_READER ? "" : "-writer", db->cfg->instance_id);
        l->conn = PQconnectStartParams(keys, vals, 1);
        if (l->conn == NULL) {
                snprintf(errbuf, errsz, "cannot connect to the database: out of memory");
                return -1;
        }
        PQsetNoticeProcessor(l->conn, on_notice, db);
        if (PQstatus(l->conn) == CONNECTION_BAD) {
                pq_error_line(PQerrorMessage(l->conn), msg, sizeof(msg));
                tls_hint(msg, sizeof(msg));
                snprintf(errbuf, errsz, "cannot connect to the database: %s", msg);
                return -1;
        }
        l->state = LANE_CONNECTING;
        l->poll = PGRES_POLLING_WRITING; /* libpq: wait for writable first */
        l->step = ST_SESSION;
        l->prep = 0;
        timeout = connect_timeout_ms(l->conn);
        l->deadline = timeout > 0 ? now + timeout : INT64_MAX;
        return 0;
}

int db_connect(struct db *db, int64_t now, char *errbuf, size_t errsz)
{
        db_close_all(db, "reconnecting");
        db->state = DB_CONNECTING;
        db->schema_ok = 0;
        db->failed = 0;
        db->event = DB_EV_NONE; /* db->error keeps the last failure until one succeeds */
        for (int i = 0; i < DB_LANES; i++) {
                if (start_lane(db, &db->lanes[i], now, errbuf, errsz) != 0) {
                        snprintf(db->error, sizeof(db->error), "%s", errbuf);
                        db_close_all(db, errbuf);
                        return -1;
                }
        }
        return 0;
}

void db_connect_poll(struct db *db, struct lane *l, int64_t now)
{
        char msg[512];

        l->poll = PQconnectPoll(l->conn);
        if (l->poll == PGRES_POLLING_FAILED) {
                pq_error_line(PQerrorMessage(l->conn), msg, sizeof(msg));
                tls_hint(msg, sizeof(msg));
                db_connect_fail(db, DB_EV_FAILED, "cannot connect to the database: %s", msg);
                return;
        }
        if (l->poll != PGRES_POLLING_OK)
                return; /* reading or writing: poll() says when to go on */
        if (PQsetnonblocking(l->conn, 1) != 0) {
                db_connect_fail(db, DB_EV_FAILED, "cannot make the connections non-blocking");
                return;
        }
        l->state = LANE_SETUP;
        setup_next(l, now);
}

/* What a failed setup step was doing, for the error. */
static const char *step_what(const struct lane *l, char *buf, size_t sz)
{
        switch (l->step) {
        case ST_SESSION:
                return "setting up the session";
        case ST_PROBE:
        case ST_VERSION:
                return "cannot read the outbox schema version";
        case ST_PREPARE:
                snprintf(buf, sz, "preparing %s", l->db->stmts[l->prep].name);
                return buf;
        case ST_LISTEN:
                return "LISTEN";
        case ST_OUTBOX_ID:
                return "reading the outbox identity (relay_state)";
        default:
                return "setting up the session";
        }
}

/* The schema is at the version this relay needs: the writers, which
 * waited so that a missing schema is told as such rather than as a failed
 * prepare, go on. */
static void schema_checked(struct db *db, int version, int64_t now)
{
        char err[512];

        if (migrate_verdict(db->cfg->schema, version, err, sizeof(err)) != 0) {
                db_connect_fail(db, DB_EV_SCHEMA, "%s", err);
                return;
        }
        db->schema_ok = 1;
        for (int i = 0; i < DB_LANES; i++) {
                struct lane *w = &db->lanes[i];

                if (i != DB_READER && w->state == LANE_SETUP && w->step == ST_WAIT_SCHEMA)
                        setup_next(w, now);
        }
}

/* The reader's probe: does the schema exist, with its schema_migrations?
 * Returns the next step. */
static int probed(struct db *db, const PGresult *res, int64_t now)
{
        if (PQntuples(res) != 1) {
                db_connect_fail(db, DB_EV_FAILED,
                                "cannot read the outbox schema version: no answer");
        } else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
                schema_checked(db, -1, now);
        } else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
                schema_checked(db, 0, now);
        } else {
                return ST_VERSION;
        }
        return ST_PREPARE;
}

/* The outbox's identity (migration 002): --exactly-once writes it into its
 * progress records and refuses another's. */
static void outbox_id_read(struct db *db, const PGresult *res)
{
        if (PQntuples(res) != 1)
                db_connect_fail(db, DB_EV_FAILED,
                                "relay_state has %d rows instead of 1: run outbox-relay migrate on "
                                "a fresh schema",
                                PQntuples(res));
        else
                snprintf(db->outbox_id, sizeof(db->outbox_id), "%s", PQgetvalue(res, 0, 0));
}

static void on_setup(void *arg, PGresult *res, const char *error)
{
        struct lane *l = arg;
        struct db *db = l->db;
        int64_t now = db_mono_ms();
        char what[64];

        if (db->state != DB_CONNECTING || db->failed) {
                PQclear(res); /* the attempt is over */
                return;
        }
        if (error != NULL) {
                db_connect_fail(db, DB_EV_FAILED, "%s: %s", step_what(l, what, sizeof(what)),
                                error);
                return;
        }
        switch (l->step) {
        case ST_SESSION:
                l->step = l->index == DB_READER ? ST_PROBE : ST_WAIT_SCHEMA;
                break;
        case ST_PROBE:
                l->step = probed(db, res, now);
                break;
        case ST_VERSION:
                if (PQntuples(res) != 1)
                        db_connect_fail(db, DB_EV_FAILED,
                                        "cannot read the outbox schema version: no answer");
                else
                        schema_checked(db, atoi(PQgetvalue(res, 0, 0)), now);
                l->step = ST_PREPARE;
                break;
        case ST_PREPARE:
                l->prep++;
                break;
        case ST_LISTEN:
                l->step = ST_OUTBOX_ID;
                break;
        case ST_OUTBOX_ID:
                outbox_id_read(db, res);
                l->step = ST_READY;
                break;
        default:
                break;
        }
        PQclear(res);
        if (!db->failed)
                setup_next(l, now);
}

/* Every session is ready: the db is up. The writer sessions start
 * planning every execution until the first look at the statistics (the
 * reader keeps its generic plans: db_statements.c, session_sql). */
static void lane_ready(struct db *db, struct lane *l)
{
        l->state = LANE_READY;
        for (int i = 0; i < DB_LANES; i++)
                if (db->lanes[i].state != LANE_READY)
                        return;
        db->state = DB_UP;
        db->custom_plans = 1;
        db->plans_checked = 0;
        db->event = DB_EV_UP;
        db->error[0] = '\0';
}

/* Sends the lane's next setup statement (or waits, or finishes). Each gets
 * statement_timeout on the server and a little more here. */
static void setup_next(struct lane *l, int64_t now)
{
        struct db *db = l->db;
        char *schema[1] = {db->cfg->schema};

        l->deadline = now + db->cfg->statement_timeout_ms + SETUP_GRACE_MS;
        for (;;) {
                switch (l->step) {
                case ST_SESSION:
                        db_enqueue(db, l->index, OP_QUERY, NULL,
                                   l->index == DB_READER ? db->reader_session_sql : db->session_sql,
                                   0, NULL, 0, on_setup, l);
                        return;
                case ST_PROBE:
                        db_enqueue(db, l->index, OP_QUERY, NULL, migrate_probe_sql, 1, schema, 0,
                                   on_setup, l);
                        return;
                case ST_VERSION:
                        db_enqueue(db, l->index, OP_QUERY, NULL, db->version_sql, 0, NULL, 0,
                                   on_setup, l);
                        return;
                case ST_WAIT_SCHEMA:
                        if (!db->schema_ok)
                                return; /* schema_checked goes on */
                        l->step = ST_PREPARE;
                        continue;
                case ST_PREPARE:
                        if (l->prep < db->n_stmts) {
                                db_enqueue(db, l->index, OP_PREPARE, db->stmts[l->prep].name,
                                           db->stmts[l->prep].sql, 0, NULL, 0, on_setup, l);
                                return;
                        }
                        l->step = l->index == DB_READER ? ST_LISTEN : ST_READY;
                        continue;
                case ST_LISTEN:
                        db_enqueue(db, l->index, OP_QUERY, NULL, db->listen_sql, 0, NULL, 0,
                                   on_setup, l);
                        return;
                case ST_OUTBOX_ID:
                        db_enqueue(db, l->index, OP_QUERY, NULL, db->outbox_id_sql, 0, NULL, 0,
                                   on_setup, l);
                        return;
                default:
                        lane_ready(db, l);
                        return;
                }
        }
}
