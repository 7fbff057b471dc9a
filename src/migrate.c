/* migrate: applies the SQL files compiled in from sql/ to a database, one
 * transaction per file under an advisory lock, after substituting the
 * schema name the way psql's :"schema" and :'schema' variables would. */
#include "migrate.h"
#include "migrate_int.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "pq_util.h"

/* Serialises concurrent `outbox-relay migrate` runs: "outbox" in ASCII. */
#define MIGRATE_LOCK_KEY "110386039336824" /* 0x6f7574626f78 */

int migrate_latest_version(void)
{
        return migrate_file_count > 0 ? migrate_files[migrate_file_count - 1].version : 0;
}

static int exec_cmd(PGconn *conn, const char *sql, const char *what, char *errbuf, size_t errsz)
{
        PGresult *res = PQexec(conn, sql);
        ExecStatusType st = PQresultStatus(res);
        int rc = 0;

        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                /* "what: why", the message written in place (no truncation
                 * of a copy at a fixed size). */
                int n = snprintf(errbuf, errsz, "%s: ", what);

                if (n >= 0 && (size_t)n < errsz)
                        pq_failure(conn, res, errbuf + n, errsz - (size_t)n);
                rc = -1;
        }
        PQclear(res);
        return rc;
}

/* Reads the schema's version: -1 when the schema does not exist, 0 when it
 * has no schema_migrations table, else the highest version recorded.
 * Looks in the catalogs first so a missing table is not an error (which
 * would abort the surrounding transaction). Returns 0 or -1 with errbuf. */
const char *const migrate_probe_sql =
    "SELECT n.oid IS NOT NULL, EXISTS (SELECT 1 FROM pg_catalog.pg_class c"
    " WHERE c.relnamespace = n.oid AND c.relname = 'schema_migrations')"
    " FROM (SELECT 1) AS one"
    " LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = $1";

static int read_version(PGconn *conn, const char *schema, int *version, char *errbuf, size_t errsz)
{
        const char *probe = migrate_probe_sql;
        const char *params[1] = {schema};
        PGresult *res = NULL;
        char *ident = NULL, sql[256], msg[512];
        int rc = -1;

        res = PQexecParams(conn, probe, 1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
                pq_failure(conn, res, msg, sizeof(msg));
                snprintf(errbuf, errsz, "cannot read the outbox schema version: %s", msg);
                goto out;
        }
        if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
                *version = -1;
                rc = 0;
                goto out;
        }
        if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
                *version = 0;
                rc = 0;
                goto out;
        }
        PQclear(res);
        res = NULL;
        ident = PQescapeIdentifier(conn, schema, strlen(schema));
        if (ident == NULL) {
                snprintf(errbuf, errsz, "cannot quote the schema name");
                goto out;
        }
        snprintf(sql, sizeof(sql), "SELECT coalesce(max(version), 0) FROM %s.schema_migrations",
                 ident);
        res = PQexec(conn, sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
                pq_failure(conn, res, msg, sizeof(msg));
                snprintf(errbuf, errsz, "cannot read the outbox schema version: %s", msg);
                goto out;
        }
        *version = atoi(PQgetvalue(res, 0, 0));
        rc = 0;
out:
        PQclear(res);
        PQfreemem(ident);
        return rc;
}

/* A growable string for the substituted SQL. */
struct buf {
        char *s;
        size_t len, cap;
};

static int buf_add(struct buf *b, const char *p, size_t n)
{
        if (b->len + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 4096;
                char *s;

                while (b->len + n + 1 > cap)
                        cap *= 2;
                s = realloc(b->s, cap);
                if (s == NULL)
                        return -1;
                b->s = s;
                b->cap = cap;
        }
        memcpy(b->s + b->len, p, n);
        b->len += n;
        b->s[b->len] = '\0';
        return 0;
}

static int ident_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '$' || (unsigned char)c >= 0x80;
}

/* Length of the block comment at p, which nests as SQL's do (C's do not). */
static size_t block_comment_len(const char *p)
{
        size_t n = 2;
        int depth = 1;

        while (p[n] != '\0' && depth > 0) {
                if ((p[n] == '/' && p[n + 1] == '*') || (p[n] == '*' && p[n + 1] == '/')) {
                        depth += p[n] == '/' ? 1 : -1;
                        n += 2;
                } else {
                        n++;
                }
        }
        return n;
}

/* Length of the '...' or "..." at p, where the quote doubles; with
 * backslash (an E'...' string) a backslash also escapes what follows. */
static size_t quoted_len(const char *p, int backslash)
{
        size_t n = 1;

        while (p[n] != '\0') {
                if ((backslash && p[n] == '\\' && p[n + 1] != '\0') ||
                    (p[n] == p[0] && p[n + 1] == p[0]))
                        n += 2;
                else if (p[n] == p[0])
                        return n + 1;
                else
                        n++;
        }
        return n;
}

/* Length of the $tag$...$tag$ at p, or 0 when p starts no tag: "$1" is a
 * parameter and the tag must be an identifier. */
static size_t dollar_quote_len(const char *p)
{
        size_t tag_len = 1;
        const char *end;

        if (p[1] >= '0' && p[1] <= '9')
                return 0;
        while (p[tag_len] != '\0' && p[tag_len] != '$' && ident_char(p[tag_len]))
                tag_len++;
        if (p[tag_len] != '$')
                return 0;
        tag_len++;
        for (end = p + tag_len; (end = strchr(end, '$')) != NULL; end++)
                if (strncmp(end, p, tag_len) == 0)
                        return (size_t)(end - p) + tag_len;
        return strlen(p);
}

/* What starts at sql[i] is told by its first characters; the quoted forms
 * also look back, since E'...' and a $ inside an identifier depend on what
 * precedes them. Unterminated tokens run to the end, as in psql. */
size_t migrate_skip_token(const char *sql, size_t i)
{
        const char *p = sql + i;

        if (p[0] == '-' && p[1] == '-')
                return strcspn(p, "\n");
        if (p[0] == '/' && p[1] == '*')
                return block_comment_len(p);
        if (p[0] == '"')
                return quoted_len(p, 0);
        if (p[0] == '\'')
                return quoted_len(p, i > 0 && (sql[i - 1] == 'E' || sql[i - 1] == 'e') &&
                                         (i < 2 || !ident_char(sql[i - 2])));
        if (p[0] == '$' && (i == 0 || !ident_char(sql[i - 1])))
                return dollar_quote_len(p);
        return 0;
}

/* Replaces :"schema" and :'schema' outside quotes and comments, as psql
 * does. Any other :"name" / :'name' is an error: psql would have needed a
 * variable we do not set. Returns a malloc'ed string or NULL with errbuf. */
static char *substitute(PGconn *conn, const struct migrate_file *f, const char *schema,
                        char *errbuf, size_t errsz)
{
        struct buf b = {NULL, 0, 0};
        char *ident = PQescapeIdentifier(conn, schema, strlen(schema));
        char *literal = PQescapeLiteral(conn, schema, strlen(schema));
        const char *sql = f->sql;
        size_t i = 0, start = 0;
        int ok = 0;

        if (ident == NULL || literal == NULL) {
                snprintf(errbuf, errsz, "cannot quote the schema name");
                goto out;
        }
        while (sql[i] != '\0') {
                size_t n = migrate_skip_token(sql, i);
                const char *q;

                if (n > 0) {
                        i += n;
                        continue;
                }
                if (sql[i] == ':' && sql[i + 1] == ':') {
                        i += 2; /* a cast */
                        continue;
                }
                if (sql[i] != ':' || (sql[i + 1] != '"' && sql[i + 1] != '\'')) {
                        i++;
                        continue;
                }
                q = strchr(sql + i + 2, sql[i + 1]);
                if (q == NULL || (size_t)(q - (sql + i + 2)) != strlen("schema") ||
                    strncmp(sql + i + 2, "schema", strlen("schema")) != 0) {
                        snprintf(errbuf, errsz,
                                 "migration %s uses an unknown variable near \"%.20s\"", f->name,
                                 sql + i);
                        goto out;
                }
                if (buf_add(&b, sql + start, i - start) != 0 ||
                    buf_add(&b, sql[i + 1] == '"' ? ident : literal,
                            strlen(sql[i + 1] == '"' ? ident : literal)) != 0)
                        goto nomem;
                i = (size_t)(q - sql) + 1;
                start = i;
        }
        if (buf_add(&b, sql + start, i - start) != 0)
                goto nomem;
        ok = 1;
        goto out;
nomem:
        snprintf(errbuf, errsz, "out of memory");
out:
        PQfreemem(ident);
        PQfreemem(literal);
        if (!ok) {
                free(b.s);
                return NULL;
        }
        return b.s;
}

/* The session's lock_timeout bounds the waits for the outbox's tables (a
 * long transaction, a LOCK TABLE): waiting on, every writer queues behind
 * the DDL's lock. The migration lock is another migrate at work: waited
 * for without that bound, then the bound is set back for the file. */
static int migration_lock(PGconn *conn, char *errbuf, size_t errsz)
{
        PGresult *res = PQexec(conn, "SELECT pg_catalog.current_setting('lock_timeout')");
        const char *params[1];
        char saved[64];
        int rc = -1;

        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
                snprintf(errbuf, errsz, "reading lock_timeout: ");
                pq_failure(conn, res, errbuf + strlen(errbuf), errsz - strlen(errbuf));
                goto out;
        }
        snprintf(saved, sizeof(saved), "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        res = NULL;
        if (exec_cmd(conn, "SET LOCAL lock_timeout = 0", "setting up the migration", errbuf,
                     errsz) != 0 ||
            exec_cmd(conn, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ")",
                     "taking the migration lock", errbuf, errsz) != 0)
                goto out;
        params[0] = saved;
        res = PQexecParams(conn, "SELECT pg_catalog.set_config('lock_timeout', $1, true)", 1, NULL,
                           params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                snprintf(errbuf, errsz, "setting lock_timeout back: ");
                pq_failure(conn, res, errbuf + strlen(errbuf), errsz - strlen(errbuf));
                goto out;
        }
        rc = 0;
out:
        PQclear(res);
        return rc;
}

/* After a file waited longer than lock_timeout (its transaction rolled
 * back): who holds locks on the schema's tables now, appended to errbuf. */
static void name_lock_holders(PGconn *conn, const char *schema, const char *file, char *errbuf,
                              size_t errsz)
{
        const char *params[1] = {schema};
        PGresult *res = PQexecParams(
            conn,
            "SELECT pg_catalog.current_setting('lock_timeout'),"
            " pg_catalog.string_agg(pg_catalog.format('pid %s (role %s) holds %s on %s',"
            " l.pid, coalesce(a.usename::text, '?'), l.mode, c.relname), '; '"
            " ORDER BY l.pid, c.relname)"
            " FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'relation' AND l.granted AND n.nspname = $1"
            " AND c.relkind IN ('r', 'p', 'S')"
            " AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d"
            " WHERE d.datname = pg_catalog.current_database())"
            " AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid()",
            1, NULL, params, NULL, NULL, 0);
        int ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
        const char *timeout = ok ? PQgetvalue(res, 0, 0) : "?";
        const char *who =
            ok && !PQgetisnull(res, 0, 1) ? PQgetvalue(res, 0, 1) : "no session holds one any more";

        snprintf(errbuf, errsz,
                 "migration %s waited longer than lock_timeout (%s) for a lock on a table of "
                 "schema \"%s\" and was rolled back: %.300s; end that transaction, or raise "
                 "--lock-timeout-ms, and run migrate again",
                 file, timeout, schema, who);
        PQclear(res);
}

/* Applies one file in its own transaction. The version is read again under
 * the lock: a concurrent run may have applied the file while we waited.
 * *did is set when the file was applied here. Returns 0 or -1 with errbuf;
 * on error the transaction is rolled back. */
static int apply_file(PGconn *conn, const char *schema, const struct migrate_file *f, int *did,
                      char *errbuf, size_t errsz)
{
        PGresult *res = NULL;
        char *sql = NULL, msg[512], ignore[1024];
        int version, rc = -1, in_tx = 0, lock_waited = 0;

        *did = 0;
        if (exec_cmd(conn, "BEGIN", "starting the migration transaction", errbuf, errsz) != 0)
                goto out;
        in_tx = 1;
        /* Keeps NOTICEs such as "schema ... already exists, skipping" off stderr. */
        if (exec_cmd(conn, "SET LOCAL client_min_messages = warning", "setting up the migration",
                     errbuf, errsz) != 0 ||
            migration_lock(conn, errbuf, errsz) != 0 ||
            read_version(conn, schema, &version, errbuf, errsz) != 0)
                goto out;
        if (version >= f->version) {
                rc = 0; /* applied by a concurrent run */
                goto out;
        }
        sql = substitute(conn, f, schema, errbuf, errsz);
        if (sql == NULL)
                goto out;
        /* Simple query protocol: the file's statements run one after another. */
        res = PQexec(conn, sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
                const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

                pq_failure(conn, res, msg, sizeof(msg));
                snprintf(errbuf, errsz, "migration %s failed: %s", f->name, msg);
                lock_waited = state != NULL && strcmp(state, "55P03") == 0; /* lock_not_available */
                goto out;
        }
        if (read_version(conn, schema, &version, errbuf, errsz) != 0)
                goto out;
        if (version != f->version) {
                snprintf(errbuf, errsz,
                         "migration %s left the schema at version %d instead of %d (the file "
                         "must record itself in schema_migrations)",
                         f->name, version, f->version);
                goto out;
        }
        if (exec_cmd(conn, "COMMIT", "committing the migration", errbuf, errsz) != 0) {
                in_tx = 0; /* a failed COMMIT has ended the transaction */
                goto out;
        }
        in_tx = 0;
        *did = 1;
        rc = 0;
out:
        PQclear(res);
        free(sql);
        if (in_tx) /* also ends the transaction when the file was already applied */
                (void)exec_cmd(conn, "ROLLBACK", "rolling back", ignore, sizeof(ignore));
        if (lock_waited)
                name_lock_holders(conn, schema, f->name, errbuf, errsz);
        return rc;
}

int migrate_run(PGconn *conn, const char *schema, struct log *lg, int *applied, char *errbuf,
                size_t errsz)
{
        int version, did;

        *applied = 0;
        if (PQstatus(conn) != CONNECTION_OK) {
                snprintf(errbuf, errsz, "cannot migrate: not connected to the database");
                return -1;
        }
        if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
                /* Our BEGIN/COMMIT would nest in, or commit, the caller's work. */
                snprintf(errbuf, errsz,
                         "cannot migrate: the connection is busy or in a transaction");
                return -1;
        }
        for (int i = 1; i < migrate_file_count; i++) {
                if (migrate_files[i].version <= migrate_files[i - 1].version) {
                        snprintf(errbuf, errsz, "migrations %s and %s are out of order",
                                 migrate_files[i - 1].name, migrate_files[i].name);
                        return -1;
                }
        }
        if (read_version(conn, schema, &version, errbuf, errsz) != 0)
                return -1;
        if (version > migrate_latest_version()) {
                snprintf(errbuf, errsz,
                         "outbox schema \"%s\" is at version %d, newer than this relay knows "
                         "(version %d): upgrade outbox-relay",
                         schema, version, migrate_latest_version());
                return -1;
        }
        for (int i = 0; i < migrate_file_count; i++) {
                const struct migrate_file *f = &migrate_files[i];

                if (f->version <= version)
                        continue;
                if (apply_file(conn, schema, f, &did, errbuf, errsz) != 0)
                        return -1;
                if (did) {
                        (*applied)++;
                        if (lg != NULL)
                                log_info(lg, "migration applied", "{s:i,s:s}", "version",
                                         f->version, "name", f->name);
                }
        }
        return 0;
}

int migrate_check(PGconn *conn, const char *schema, char *errbuf, size_t errsz)
{
        int version;

        if (read_version(conn, schema, &version, errbuf, errsz) != 0)
                return -1;
        return migrate_verdict(schema, version, errbuf, errsz);
}

int migrate_verdict(const char *schema, int version, char *errbuf, size_t errsz)
{
        int need = migrate_latest_version();

        if (version < 0) {
                snprintf(errbuf, errsz,
                         "database has no outbox schema \"%s\": run outbox-relay migrate", schema);
                return -1;
        }
        if (version < need) {
                snprintf(errbuf, errsz,
                         "outbox schema \"%s\" is at version %d but this relay needs version %d: "
                         "run outbox-relay migrate",
                         schema, version, need);
                return -1;
        }
        if (version > need) {
                snprintf(errbuf, errsz,
                         "outbox schema \"%s\" is at version %d but this relay supports only up "
                         "to version %d: upgrade outbox-relay",
                         schema, version, need);
                return -1;
        }
        return 0;
}

/* The grants of each kind of role, %1$s the quoted schema and %2$s the
 * quoted role (docs/security.md shows them). The relay's role may read and
 * change the outbox's rows and call its functions; it owns nothing, so it
 * can neither CREATE in the schema nor ALTER or DROP its tables. INSERT on
 * events is for requeue_dead() (dlq requeue); the sequences are reached
 * only through the security definer functions and the identity column. */
static const char *const writer_grants[] = {
    "GRANT USAGE ON SCHEMA %1$s TO %2$s",
    "GRANT INSERT ON %1$s.events TO %2$s",
    NULL,
};

static const char *const relay_grants[] = {
    "GRANT USAGE ON SCHEMA %1$s TO %2$s",
    "GRANT SELECT ON %1$s.schema_migrations TO %2$s",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON %1$s.events, %1$s.dead_letters TO %2$s",
    "GRANT SELECT, UPDATE ON %1$s.relay_state TO %2$s",
    "GRANT EXECUTE ON FUNCTION %1$s.writers(text[]),"
    " %1$s.record_failure(bigint, integer, text, integer, integer),"
    " %1$s.replay(bigint, bigint, timestamptz, timestamptz, text, text, boolean),"
    " %1$s.requeue_dead(bigint, text, boolean) TO %2$s",
    "GRANT EXECUTE ON FUNCTION %1$s.record_failure(bigint, integer, text, integer, integer, text)"
    " TO %2$s",
    "GRANT EXECUTE ON FUNCTION"
    " %1$s.record_failure(bigint, integer, text, integer, integer, text, bigint) TO %2$s",
    NULL,
};

int migrate_grant(PGconn *conn, const char *schema, const char *role, enum migrate_grantee kind,
                  int *superuser, char *errbuf, size_t errsz)
{
        const char *const *grants = kind == MIGRATE_WRITER ? writer_grants : relay_grants;
        const char *params[1] = {role};
        char *sch = NULL, *rol = NULL, sql[512], msg[512], ignore[1024];
        PGresult *res = NULL;
        int rc = -1, in_tx = 0;

        *superuser = 0;
        res = PQexecParams(conn, "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = $1", 1,
                           NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                pq_failure(conn, res, msg, sizeof(msg));
                snprintf(errbuf, errsz, "cannot look up role \"%.63s\": %s", role, msg);
                goto out;
        }
        if (PQntuples(res) != 1) {
                snprintf(errbuf, errsz,
                         "role \"%.63s\" does not exist: create it first (CREATE ROLE ... LOGIN); "
                         "migrate grants to roles but does not create them",
                         role);
                goto out;
        }
        *superuser = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        sch = PQescapeIdentifier(conn, schema, strlen(schema));
        rol = PQescapeIdentifier(conn, role, strlen(role));
        if (sch == NULL || rol == NULL) {
                snprintf(errbuf, errsz, "cannot quote the schema or role name");
                goto out;
        }
        if (exec_cmd(conn, "BEGIN", "starting the grant transaction", errbuf, errsz) != 0)
                goto out;
        in_tx = 1;
        for (const char *const *g = grants; *g != NULL; g++) {
                char what[128];

                snprintf(sql, sizeof(sql), *g, sch, rol);
                snprintf(what, sizeof(what), "granting to role \"%.63s\"", role);
                if (exec_cmd(conn, sql, what, errbuf, errsz) != 0)
                        goto out;
        }
        in_tx = 0;
        if (exec_cmd(conn, "COMMIT", "committing the grants", errbuf, errsz) != 0)
                goto out;
        rc = 0;
out:
        if (in_tx)
                (void)exec_cmd(conn, "ROLLBACK", "rolling back", ignore, sizeof(ignore));
        PQclear(res);
        PQfreemem(sch);
        PQfreemem(rol);
        return rc;
}
