/* migrate_int: what migrate.c keeps to itself, exposed for its unit tests
 * (tests/unit/test_migrate.c) and nothing else. */
#ifndef OUTBOX_MIGRATE_INT_H
#define OUTBOX_MIGRATE_INT_H

#include <stddef.h>

/* Length of the quoted or commented token (-- and nested block comments,
 * '...', E'...', "...", $tag$...$tag$) starting at sql[i], which psql
 * passes through untouched, or 0 when sql[i] starts none. An unterminated
 * token runs to the end. */
size_t migrate_skip_token(const char *sql, size_t i);

#endif
