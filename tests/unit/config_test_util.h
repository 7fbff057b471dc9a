/* What the config unit tests share (test_config.c, test_config_kafka.c,
 * test_config_files.c): parsing a NULL-terminated argument list, the error
 * buffer the last call filled, and files written to a temporary directory. */
#ifndef OUTBOX_CONFIG_TEST_UTIL_H
#define OUTBOX_CONFIG_TEST_UTIL_H

#include <stddef.h>
#include <stdio.h>

#include "config.h"

/* A NULL-terminated argument list; each test runs in its own process
 * (CK_FORK), so setenv does not leak between tests. */
#define ARGS(...)         ((char *[]){__VA_ARGS__, NULL})
#define DB                "--database-url", "host=localhost dbname=app"
#define KAFKA             "--kafka-brokers", "localhost:9092"
#define WRITE(name, text) ct_write_file(name, text, sizeof(text) - 1)

/* The error of the last parse or validation. */
extern char ct_errbuf[512];
/* The temporary directory ct_write_file writes to ("" before the first). */
extern char ct_tmpdir[64];

int ct_argc_of(char **argv);
/* config_parse must succeed; the caller frees the config. */
struct config *ct_parse_ok(char **argv);
/* config_parse must fail with one line in ct_errbuf. */
void ct_parse_fails(char **argv);
/* Parses and validates with both DB and Kafka needed; returns validate's
 * result (a failure leaves one line in ct_errbuf). */
int ct_validate_args(char **argv);
/* Writes len bytes to ct_tmpdir/name; returns the path (one of 8 static
 * slots, reused in turn). */
char *ct_write_file(const char *name, const char *data, size_t len);
/* ct_errbuf names what and the path, and shows nothing of the content. */
void ct_assert_names(const char *what, const char *path);
/* What print wrote (malloc'ed). */
char *ct_capture(void (*print)(FILE *));

#endif
