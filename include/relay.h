/* relay: the loop that moves rows from the outbox to Kafka. Fetches due
 * pending rows in id order, publishes them, and marks each batch sent once
 * every message of it has been acknowledged; failures are retried with
 * backoff and dead-lettered after the last attempt. */
#ifndef OUTBOX_RELAY_H
#define OUTBOX_RELAY_H

#include <stddef.h>

#include "compiler.h"

struct config;
struct log;
struct relay;

/* Reads SIGTERM and SIGINT from a signalfd in the loop: the caller has
 * blocked them before starting any thread (main does, first thing), else
 * relay_new fails. Creates the producer; the database is contacted only by
 * relay_run. Returns NULL with errbuf. */
struct relay *relay_new(const struct config *cfg, struct log *lg, char *errbuf,
                        size_t errsz) OUTBOX_MUST_CHECK;
void relay_free(struct relay *r);

/* Runs until SIGTERM or SIGINT and returns 0 after a clean stop; returns
 * -1 with errbuf when it cannot go on (e.g. the schema is missing). */
int relay_run(struct relay *r, char *errbuf, size_t errsz) OUTBOX_MUST_CHECK;

#endif
