/* migrate: applies the versioned SQL files of sql/ (compiled into the
 * binary) to a database, and tells the relay whether a database is at the
 * version it needs. */
#ifndef OUTBOX_MIGRATE_H
#define OUTBOX_MIGRATE_H

#include <stddef.h>

#include <libpq-fe.h>

#include "compiler.h"

struct log;

struct migrate_file {
        int version;
        const char *name;
        const char *sql; /* uses :"schema" and :'schema' as psql would */
};

/* Generated from the files in sql/ by cmake/embed_sql.cmake, in version order. */
extern const struct migrate_file migrate_files[];
extern const int migrate_file_count;

/* The schema version this binary needs. */
int migrate_latest_version(void);

/* Applies every file newer than the database's version, each in its own
 * transaction under an advisory lock so concurrent runs wait for each other.
 * A second run applies nothing. *applied gets the number of files applied.
 * Returns 0 or -1 with errbuf. */
int migrate_run(PGconn *conn, const char *schema, struct log *lg, int *applied, char *errbuf,
                size_t errsz) OUTBOX_MUST_CHECK;

enum migrate_grantee {
        MIGRATE_WRITER, /* USAGE on the schema, INSERT on events */
        MIGRATE_RELAY,  /* what run, status, replay and dlq need; no DDL */
};

/* Grants an existing role (quoted here: any name is safe) what `kind`
 * needs on the schema, in one transaction; the grants are listed in
 * docs/security.md. A missing role is an error naming it: roles are not
 * created here. *superuser is set when the role is a superuser, for whom
 * grants change nothing. Returns 0 or -1 with errbuf. */
int migrate_grant(PGconn *conn, const char *schema, const char *role, enum migrate_grantee kind,
                  int *superuser, char *errbuf, size_t errsz) OUTBOX_MUST_CHECK;

/* Returns 0 when the schema exists at migrate_latest_version(); else -1
 * with errbuf: telling the user to run `outbox-relay migrate` (missing
 * schema, older version) or to upgrade the relay (newer version), or why
 * the version could not be read (e.g. the connection dropped). */
int migrate_check(PGconn *conn, const char *schema, char *errbuf, size_t errsz) OUTBOX_MUST_CHECK;

/* The same check in steps, for a caller that runs the queries itself
 * without blocking (the relay's setup): migrate_probe_sql ($1 the schema)
 * answers whether the schema and its schema_migrations table exist ("t"/"f"
 * each); the version is then -1 (no schema), 0 (no table) or the highest in
 * schema_migrations. migrate_verdict tells whether that version will do, as
 * migrate_check does. */
extern const char *const migrate_probe_sql;
int migrate_verdict(const char *schema, int version, char *errbuf, size_t errsz) OUTBOX_MUST_CHECK;

#endif
