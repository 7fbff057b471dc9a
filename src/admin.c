/* admin: the `migrate` and `replay` commands. Each opens its own blocking
 * connection, does one thing, prints one line for the operator on stdout
 * (errors on stderr) and returns main's exit code. */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "migrate.h"

/* libpq's text (which may span lines: "...failed: ...\n\tIs the server
 * running...") on one line, each run of white space made one space. */
static void one_line(const char *msg, char *out, size_t outsz)
{
        size_t n = 0;
        int space = 0;

        if (msg == NULL || *msg == '\0')
                msg = "unknown error";
        for (; *msg != '\0' && n + 1 < outsz; msg++) {
                if (*msg == ' ' || *msg == '\n' || *msg == '\t' || *msg == '\r') {
                        space = 1;
                        continue;
                }
                if (space && n > 0 && n + 2 < outsz)
                        out[n++] = ' ';
                space = 0;
                out[n++] = *msg;
        }
        if (outsz > 0)
                out[n] = '\0';
}

static void fail(const char *cmd, const char *msg)
{
        fprintf(stderr, "outbox-relay %s: %s\n", cmd, msg);
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

                one_line(PQerrorMessage(conn), msg, sizeof(msg));
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

int admin_migrate(const struct config *cfg, struct log *lg)
{
        char errbuf[1024];
        int applied = 0, rc = 1;
        PGconn *conn = connect_db(cfg, "migrate");

        if (conn == NULL)
                return 1;
        if (migrate_run(conn, cfg->schema, lg, &applied, errbuf, sizeof(errbuf)) != 0) {
                fail("migrate", errbuf);
                goto out;
        }
        if (applied > 0)
                printf("applied %d migration(s); schema %s is at version %d\n", applied,
                       cfg->schema, migrate_latest_version());
        else
                printf("schema %s is up to date at version %d\n", cfg->schema,
                       migrate_latest_version());
        rc = 0;
out:
        PQfinish(conn);
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

                one_line(primary != NULL ? primary : PQerrorMessage(conn), msg, sizeof(msg));
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
