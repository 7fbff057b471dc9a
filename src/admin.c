/* admin: the operator commands: migrate, replay, status and dlq. Each opens its own blocking
 * connection, does one thing, prints one line for the operator on stdout
 * (errors on stderr) and returns main's exit code. */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "migrate.h"
#include "pq_util.h"

/* Server messages can quote what a writer put in a row (a header name, a
 * topic), so they are escaped like row text. */
static void fail(const char *cmd, const char *msg)
{
        char *safe = log_escape(msg);

        fprintf(stderr, "outbox-relay %s: %s\n", cmd, safe != NULL ? safe : "(out of memory)");
        free(safe);
}

/* The escaped copies (log_escape) of one output line's row text, freed
 * together once the line is printed. */
#define LINE_FIELDS 8
struct line_text {
        char *s[LINE_FIELDS];
        int n;
};

static const char *esc(struct line_text *t, const char *s)
{
        char *e = t->n < LINE_FIELDS ? log_escape(s) : NULL;

        if (e == NULL)
                return "(out of memory)";
        t->s[t->n++] = e;
        return e;
}

static void line_text_free(struct line_text *t)
{
        for (int i = 0; i < t->n; i++)
                free(t->s[i]);
        t->n = 0;
}

/* Connects with the user's URL; our settings come first so the URL's own
 * win. A URL libpq cannot parse is reported without libpq's text, which may
 * quote a piece of it (and so of the password). On failure the message
 * names host, port and database, which libpq reports without the conninfo. */
static PGconn *connect_db(const struct config *cfg, const char *cmd)
{
        const char *keys[] = {"fallback_application_name", "connect_timeout", "dbname", NULL};
        char appname[64], msg[1024];
        const char *vals[] = {appname, "10", cfg->database_url, NULL};
        PQconninfoOption *opts;
        char *perr = NULL;
        PGconn *conn;

        if (cfg->database_url == NULL || *cfg->database_url == '\0') {
                fail(cmd, "no database URL given (--database-url or OUTBOX_DATABASE_URL)");
                return NULL;
        }
        opts = PQconninfoParse(cfg->database_url, &perr);
        PQfreemem(perr);
        if (opts == NULL) {
                fail(cmd, "the database URL is malformed");
                return NULL;
        }
        PQconninfoFree(opts);
        snprintf(appname, sizeof(appname), "outbox-relay %s", cmd);
        conn = PQconnectdbParams(keys, vals, 1);
        if (conn == NULL) {
                fail(cmd, "cannot connect to the database: out of memory");
                return NULL;
        }
        if (PQstatus(conn) != CONNECTION_OK) {
                const char *host = PQhost(conn), *port = PQport(conn), *db = PQdb(conn);

                pq_error_line(PQerrorMessage(conn), msg, sizeof(msg));
                fprintf(stderr,
                        "outbox-relay %s: cannot connect to database \"%s\" on host %s port %s: "
                        "%s\n",
                        cmd, db != NULL ? db : "", host != NULL && *host ? host : "(default)",
                        port != NULL && *port ? port : "(default)", msg);
                PQfinish(conn);
                return NULL;
        }
        return conn;
}

/* --grant-writer / --grant-relay: one line saying what the role may now do. */
static int grant(PGconn *conn, const struct config *cfg, const char *role,
                 enum migrate_grantee kind)
{
        char errbuf[1024];
        int superuser;

        if (role == NULL)
                return 0;
        if (migrate_grant(conn, cfg->schema, role, kind, &superuser, errbuf, sizeof(errbuf)) != 0) {
                fail("migrate", errbuf);
                return -1;
        }
        if (kind == MIGRATE_WRITER)
                printf("granted writer role \"%s\": USAGE on schema %s, INSERT on %s.events\n",
                       role, cfg->schema, cfg->schema);
        else
                printf("granted relay role \"%s\": rows and functions of schema %s, no DDL\n", role,
                       cfg->schema);
        /* Not an error: the grants are made, they just add nothing. */
        if (superuser)
                fprintf(stderr,
                        "outbox-relay migrate: warning: role \"%s\" is a superuser, so it is not "
                        "limited to these grants\n",
                        role);
        return 0;
}

static int command(PGconn *conn, const char *cmd, const char *sql);

/* One outbox's migrate; outbox names it in the error line (NULL: none). */
static int migrate_one(const struct config *cfg, const char *outbox, struct log *lg)
{
        char errbuf[1024], msg[1200], sql[64];
        int applied = 0, rc = 1;
        PGconn *conn = connect_db(cfg, "migrate");

        if (conn == NULL)
                return 1;
        /* A lock held on the outbox's tables is said, rather than waited
         * for: every writer would queue behind the DDL's lock, and with
         * --outboxes-file it would hold back every later outbox. */
        snprintf(sql, sizeof(sql), "SET lock_timeout = %d", cfg->lock_timeout_ms);
        if (command(conn, "migrate", sql) != 0)
                goto out;
        if (migrate_run(conn, cfg->schema, lg, &applied, errbuf, sizeof(errbuf)) != 0) {
                if (outbox != NULL)
                        snprintf(msg, sizeof(msg), "outbox \"%s\": %s", outbox, errbuf);
                fail("migrate", outbox != NULL ? msg : errbuf);
                goto out;
        }
        if (applied > 0)
                printf("applied %d migration(s); schema %s is at version %d\n", applied,
                       cfg->schema, migrate_latest_version());
        else
                printf("schema %s is up to date at version %d\n", cfg->schema,
                       migrate_latest_version());
        if (grant(conn, cfg, cfg->grant_writer, MIGRATE_WRITER) != 0 ||
            grant(conn, cfg, cfg->grant_relay, MIGRATE_RELAY) != 0)
                goto out;
        rc = 0;
out:
        PQfinish(conn);
        return rc;
}

int admin_migrate(const struct config *cfg, struct log *lg)
{
        return migrate_one(cfg, NULL, lg);
}

int admin_migrate_outboxes(const struct config_outbox *o, size_t n, struct log *lg)
{
        int rc = 0;

        /* Every outbox, also after one that fails. */
        for (size_t i = 0; i < n; i++) {
                log_info(lg, "migrating outbox", "{s:s,s:s}", "outbox", o[i].name, "schema",
                         o[i].cfg->schema);
                if (migrate_one(o[i].cfg, o[i].name, lg) != 0)
                        rc = 1;
        }
        return rc;
}

int admin_replay(const struct config *cfg, struct log *lg)
{
        char errbuf[1024], sql[256], from[32], to[32];
        const char *params[7];
        char *ident = NULL;
        PGresult *res = NULL;
        int rc = 1;
        PGconn *conn = connect_db(cfg, "replay");

        if (conn == NULL)
                return 1;
        /* A missing or old schema gets the "run migrate" advice rather than
         * "function replay does not exist". */
        if (migrate_check(conn, cfg->schema, errbuf, sizeof(errbuf)) != 0) {
                fail("replay", errbuf);
                goto out;
        }
        ident = PQescapeIdentifier(conn, cfg->schema, strlen(cfg->schema));
        if (ident == NULL) {
                fail("replay", "cannot quote the schema name");
                goto out;
        }
        snprintf(sql, sizeof(sql),
                 "SELECT %s.replay($1::bigint, $2::bigint, $3::timestamptz, $4::timestamptz,"
                 " $5::text, $6::text, $7::boolean)",
                 ident);
        snprintf(from, sizeof(from), "%lld", cfg->replay_from_id);
        snprintf(to, sizeof(to), "%lld", cfg->replay_to_id);
        /* Unset filters are NULL; the function itself refuses a call with none. */
        params[0] = cfg->replay_from_id != 0 ? from : NULL;
        params[1] = cfg->replay_to_id != 0 ? to : NULL;
        params[2] = cfg->replay_since;
        params[3] = cfg->replay_until;
        params[4] = cfg->replay_topic;
        params[5] = cfg->replay_key;
        params[6] = cfg->dry_run ? "true" : "false";
        res = PQexecParams(conn, sql, 7, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
                const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
                char msg[1024];

                pq_error_line(primary != NULL ? primary : PQerrorMessage(conn), msg, sizeof(msg));
                fprintf(stderr, "outbox-relay replay: replay failed: %s\n", msg);
                goto out;
        }
        if (cfg->dry_run) {
                printf("would replay %s row(s)\n", PQgetvalue(res, 0, 0));
        } else {
                printf("replayed %s row(s)\n", PQgetvalue(res, 0, 0));
                if (lg != NULL)
                        log_info(lg, "rows replayed", "{s:s,s:I}", "schema", cfg->schema, "rows",
                                 (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10));
        }
        rc = 0;
out:
        PQclear(res);
        PQfreemem(ident);
        PQfinish(conn);
        return rc;
}

/* Connects and checks the schema; *ident gets the quoted schema name. */
static PGconn *connect_checked(const struct config *cfg, const char *cmd, char **ident)
{
        char errbuf[1024];
        PGconn *conn = connect_db(cfg, cmd);

        if (conn == NULL)
                return NULL;
        if (migrate_check(conn, cfg->schema, errbuf, sizeof(errbuf)) != 0) {
                fail(cmd, errbuf);
                goto fail;
        }
        *ident = PQescapeIdentifier(conn, cfg->schema, strlen(cfg->schema));
        if (*ident == NULL) {
                fail(cmd, "cannot quote the schema name");
                goto fail;
        }
        return conn;
fail:
        PQfinish(conn);
        return NULL;
}

/* Runs a query that returns rows; on error prints it and returns NULL. */
static PGresult *query(PGconn *conn, const char *cmd, const char *sql, int n,
                       const char *const *params)
{
        PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
        char msg[1024];

        if (PQresultStatus(res) == PGRES_TUPLES_OK)
                return res;
        pq_failure(conn, res, msg, sizeof(msg));
        fail(cmd, msg);
        PQclear(res);
        return NULL;
}

/* A statement without rows (SET ...); says why it failed. */
static int command(PGconn *conn, const char *cmd, const char *sql)
{
        PGresult *res = PQexec(conn, sql);
        char msg[1024];
        int rc = 0;

        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                pq_failure(conn, res, msg, sizeof(msg));
                fail(cmd, msg);
                rc = -1;
        }
        PQclear(res);
        return rc;
}

/* Prints a JSON value on stdout, or says why it could not. */
static int print_json(json_t *v, const char *cmd)
{
        char *text = v != NULL ? log_json_dumps(v, JSON_INDENT(2)) : NULL;

        json_decref(v);
        if (text == NULL) {
                fail(cmd, "out of memory");
                return 1;
        }
        puts(text);
        free(text);
        return 0;
}

/* The session holding this schema's leader lock in this database: what
 * makes a relay the leader. One row (pid, role, client, backend start,
 * application_name, whether it is a relay) or none. */
static const char leader_sql[] =
    "SELECT l.pid, a.usename, host(a.client_addr), a.backend_start, a.application_name,"
    " coalesce(a.application_name LIKE 'outbox-relay/%' OR a.usename = current_user, false)"
    " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
    " AND l.classid = $1::bigint::oid AND l.objid = (hashtext($2)::bigint & 4294967295)::oid"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    /* Several sessions may hold it shared: one that is not a relay first. */
    " ORDER BY 6, 1 LIMIT 1";

/* Sessions that call themselves relays (outbox-relay/<instance>). Any
 * session can set application_name, so the name is only a label: leader or
 * standby comes from the lock. */
static const char relays_sql[] =
    "SELECT substr(a.application_name, 14), a.pid, host(a.client_addr), a.backend_start,"
    " a.pid = $1::int, a.usename"
    " FROM pg_stat_activity a"
    " WHERE a.application_name LIKE 'outbox-relay/%' AND a.datname = current_database()"
    " ORDER BY 5 DESC, 1";

static const char *or_unknown(const PGresult *r, int row, int col)
{
        return PQgetisnull(r, row, col) ? "unknown" : PQgetvalue(r, row, col);
}

static const char *or_null(const PGresult *r, int row, int col)
{
        return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* As the relay judges it (db_lock_holder): a session that calls itself a
 * relay or runs as this role. Any other holder keeps every relay a standby. */
static int holder_is_relay(const PGresult *leader)
{
        return strcmp(PQgetvalue(leader, 0, 5), "t") == 0;
}

static json_t *status_json(const struct config *cfg, PGresult *res, PGresult *leader, PGresult *who)
{
        json_t *instances = json_array(), *lock = json_null();

        if (PQntuples(leader) == 1)
                lock = json_pack("{s:i,s:s?,s:s?,s:s?,s:s?,s:b}", "pid",
                                 atoi(PQgetvalue(leader, 0, 0)), "user", or_null(leader, 0, 1),
                                 "client", or_null(leader, 0, 2), "connected_since",
                                 or_null(leader, 0, 3), "application_name", or_null(leader, 0, 4),
                                 "relay", holder_is_relay(leader));
        for (int i = 0; i < PQntuples(who); i++)
                json_array_append_new(
                    instances,
                    json_pack("{s:s,s:i,s:s?,s:s?,s:s?,s:s}", "instance", PQgetvalue(who, i, 0),
                              "pid", atoi(PQgetvalue(who, i, 1)), "user", or_null(who, i, 5),
                              "client", or_null(who, i, 2), "connected_since", or_null(who, i, 3),
                              "role",
                              strcmp(PQgetvalue(who, i, 4), "t") == 0 ? "leader" : "standby"));
        return json_pack("{s:s,s:I,s:f,s:I,s:I,s:o,s:o}", "schema", cfg->schema, "pending",
                         (json_int_t)atoll(PQgetvalue(res, 0, 0)), "oldest_pending_age_seconds",
                         atof(PQgetvalue(res, 0, 1)), "dead_letters",
                         (json_int_t)atoll(PQgetvalue(res, 0, 2)), "sent_last_minute",
                         (json_int_t)atoll(PQgetvalue(res, 0, 3)), "leader_lock", lock, "instances",
                         instances);
}

static void status_text(const struct config *cfg, PGresult *res, PGresult *leader, PGresult *who)
{
        struct line_text t = {.n = 0};

        printf("schema:             %s\n"
               "pending:            %s\n"
               "oldest pending age: %s s\n"
               "dead letters:       %s\n"
               "sent last minute:   %s\n",
               cfg->schema, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
               PQgetvalue(res, 0, 3));
        /* The lock decides who publishes; names are whatever a client set. */
        if (PQntuples(leader) == 0)
                printf("leader lock:        not held: no relay is publishing\n");
        else
                printf("leader lock:        held by pid %s (role %s, client %s, since %s),"
                       " application_name \"%s\"\n",
                       PQgetvalue(leader, 0, 0), esc(&t, or_unknown(leader, 0, 1)),
                       PQgetisnull(leader, 0, 2) ? "local or hidden" : PQgetvalue(leader, 0, 2),
                       or_unknown(leader, 0, 3), esc(&t, or_unknown(leader, 0, 4)));
        line_text_free(&t);
        if (PQntuples(leader) == 1 && !holder_is_relay(leader))
                printf("warning:            the leader lock's holder is not a relay: nothing is"
                       " published until it lets go (docs/security.md)\n");
        if (PQntuples(who) == 0)
                printf("relays:             none connected\n");
        for (int i = 0; i < PQntuples(who); i++) {
                printf("%-20s%s (%s, pid %s, role %s, client %s, since %s)\n",
                       i == 0 ? "relays:" : "", esc(&t, PQgetvalue(who, i, 0)),
                       strcmp(PQgetvalue(who, i, 4), "t") == 0 ? "leader" : "standby",
                       PQgetvalue(who, i, 1), esc(&t, or_unknown(who, i, 5)),
                       PQgetisnull(who, i, 2) ? "local" : PQgetvalue(who, i, 2),
                       or_unknown(who, i, 3));
                line_text_free(&t);
        }
}

/* One outbox's status: appended to list with --json, else printed. */
static int status_say(const struct config *cfg, const char *outbox, json_t *list, PGresult *res,
                      PGresult *leader, PGresult *who)
{
        json_t *v;

        if (!cfg->json) {
                if (outbox != NULL)
                        printf("outbox:             %s\n", outbox);
                status_text(cfg, res, leader, who);
                return 0;
        }
        v = status_json(cfg, res, leader, who);
        if (v != NULL && outbox != NULL)
                json_object_set_new(v, "outbox", json_string(outbox));
        if (v == NULL || json_array_append_new(list, v) != 0) {
                fail("status", "out of memory");
                return 1;
        }
        return 0;
}

/* One outbox's status: printed as text (under an "outbox:" line when
 * named), or with --json added to list (a JSON object, with "outbox" when
 * named). */
static int status_one(const struct config *cfg, const char *outbox, json_t *list)
{
        char sql[1024], lock_class[16], leader_pid[16] = "0";
        const char *params[3] = {lock_class, cfg->schema, leader_pid};
        PGresult *res = NULL, *leader = NULL, *who = NULL;
        char *ident = NULL;
        int rc = 1;
        PGconn *conn = connect_checked(cfg, "status", &ident);

        if (conn == NULL)
                return 1;
        /* A lock held on the table (an open ALTER or LOCK TABLE) or a slow
         * count is said, rather than waited for: with --outboxes-file it
         * would hold back the status of every later outbox. */
        snprintf(sql, sizeof(sql), "SET statement_timeout = %d; SET lock_timeout = %d",
                 cfg->statement_timeout_ms, cfg->lock_timeout_ms);
        if (command(conn, "status", sql) != 0)
                goto out;
        snprintf(sql, sizeof(sql),
                 "SELECT (SELECT count(*) FROM %s.events WHERE status = 'pending'),"
                 " (SELECT coalesce(round(extract(epoch FROM now() - min(created_at)), 3), 0)"
                 "  FROM %s.events WHERE status = 'pending'),"
                 " (SELECT count(*) FROM %s.dead_letters),"
                 " (SELECT count(*) FROM %s.events"
                 "  WHERE status = 'sent' AND sent_at > now() - interval '1 minute')",
                 ident, ident, ident, ident);
        res = query(conn, "status", sql, 0, NULL);
        if (res == NULL)
                goto out;
        snprintf(lock_class, sizeof(lock_class), "%d", DB_LEADER_LOCK_CLASS);
        leader = query(conn, "status", leader_sql, 2, params);
        if (leader == NULL)
                goto out;
        if (PQntuples(leader) == 1)
                snprintf(leader_pid, sizeof(leader_pid), "%s", PQgetvalue(leader, 0, 0));
        who = query(conn, "status", relays_sql, 1, &params[2]);
        if (who == NULL)
                goto out;
        rc = status_say(cfg, outbox, list, res, leader, who);
out:
        PQclear(res);
        PQclear(leader);
        PQclear(who);
        PQfreemem(ident);
        PQfinish(conn);
        return rc;
}

int admin_status(const struct config *cfg, struct log *lg)
{
        json_t *list = cfg->json ? json_array() : NULL;
        int rc;

        (void)lg;
        if (cfg->json && list == NULL) {
                fail("status", "out of memory");
                return 1;
        }
        rc = status_one(cfg, NULL, list);
        if (rc == 0 && cfg->json)
                rc = print_json(json_incref(json_array_get(list, 0)), "status");
        json_decref(list);
        return rc;
}

int admin_status_outboxes(const struct config_outbox *o, size_t n, int json, struct log *lg)
{
        json_t *list = json ? json_array() : NULL;
        int rc = 0;

        (void)lg;
        if (json && list == NULL) {
                fail("status", "out of memory");
                return 1;
        }
        /* Every outbox is looked at, also after one whose database is down. */
        for (size_t i = 0; i < n; i++) {
                if (!json && i > 0)
                        putchar('\n');
                if (status_one(o[i].cfg, o[i].name, list) != 0)
                        rc = 1;
        }
        if (json && print_json(list, "status") != 0)
                return 1;
        return rc;
}

static int dlq_list(const struct config *cfg, PGconn *conn, const char *ident)
{
        char sql[512], limit[16];
        const char *params[2] = {cfg->replay_topic, limit};
        PGresult *res;
        json_t *rows;

        snprintf(limit, sizeof(limit), "%d", cfg->limit);
        snprintf(sql, sizeof(sql),
                 "SELECT id, event_id, coalesce(topic, ''), coalesce(key, ''),"
                 " coalesce(event_type, ''), attempts, reason, dead_at"
                 " FROM %s.dead_letters WHERE $1::text IS NULL OR topic = $1"
                 " ORDER BY dead_at DESC, id DESC LIMIT $2::int",
                 ident);
        res = query(conn, "dlq list", sql, 2, params);
        if (res == NULL)
                return 1;
        if (!cfg->json) {
                struct line_text t = {.n = 0};

                printf("%-10s %-20s %-20s %-8s %-26s %s\n", "ID", "TOPIC", "KEY", "ATTEMPTS",
                       "DEAD AT", "REASON");
                for (int i = 0; i < PQntuples(res); i++) {
                        /* Topic, key and reason come from writers (or from
                         * errors quoting them): escaped for the terminal. */
                        printf("%-10s %-20s %-20s %-8s %-26.26s %s\n", PQgetvalue(res, i, 0),
                               esc(&t, PQgetvalue(res, i, 2)), esc(&t, PQgetvalue(res, i, 3)),
                               PQgetvalue(res, i, 5), PQgetvalue(res, i, 7),
                               esc(&t, PQgetvalue(res, i, 6)));
                        line_text_free(&t);
                }
                PQclear(res);
                return 0;
        }
        rows = json_array();
        for (int i = 0; i < PQntuples(res); i++)
                json_array_append_new(
                    rows, json_pack("{s:I,s:s,s:s,s:s,s:s,s:i,s:s,s:s}", "id",
                                    (json_int_t)atoll(PQgetvalue(res, i, 0)), "event_id",
                                    PQgetvalue(res, i, 1), "topic", PQgetvalue(res, i, 2), "key",
                                    PQgetvalue(res, i, 3), "event_type", PQgetvalue(res, i, 4),
                                    "attempts", atoi(PQgetvalue(res, i, 5)), "reason",
                                    PQgetvalue(res, i, 6), "dead_at", PQgetvalue(res, i, 7)));
        PQclear(res);
        return print_json(rows, "dlq list");
}

static int dlq_requeue(const struct config *cfg, PGconn *conn, const char *ident, struct log *lg)
{
        char sql[256], id[32];
        const char *params[3] = {id, cfg->replay_topic, cfg->all ? "true" : "false"};
        PGresult *res;

        snprintf(id, sizeof(id), "%lld", cfg->id);
        if (cfg->id == 0)
                params[0] = NULL;
        snprintf(sql, sizeof(sql), "SELECT %s.requeue_dead($1::bigint, $2::text, $3::boolean)",
                 ident);
        res = query(conn, "dlq requeue", sql, 3, params);
        if (res == NULL)
                return 1;
        printf("requeued %s dead letter(s)\n", PQgetvalue(res, 0, 0));
        if (lg != NULL)
                log_info(lg, "dead letters requeued", "{s:s,s:I}", "schema", cfg->schema, "rows",
                         (json_int_t)atoll(PQgetvalue(res, 0, 0)));
        PQclear(res);
        return 0;
}

int admin_dlq(const struct config *cfg, struct log *lg)
{
        const char *sub = cfg->n_args > 0 ? cfg->args[0] : "";
        char *ident = NULL;
        PGconn *conn;
        int rc;

        if (strcmp(sub, "list") != 0 && strcmp(sub, "requeue") != 0) {
                fail("dlq", "expected a subcommand: dlq list [--topic T] [--limit N] [--json] | "
                            "dlq requeue --id N | --topic T | --all");
                return 2;
        }
        if (strcmp(sub, "requeue") == 0 && cfg->id == 0 && cfg->replay_topic == NULL && !cfg->all) {
                fail("dlq requeue", "say which dead letters: --id N, --topic T or --all");
                return 2;
        }
        conn = connect_checked(cfg, "dlq", &ident);
        if (conn == NULL)
                return 1;
        rc = strcmp(sub, "list") == 0 ? dlq_list(cfg, conn, ident)
                                      : dlq_requeue(cfg, conn, ident, lg);
        PQfreemem(ident);
        PQfinish(conn);
        return rc;
}
