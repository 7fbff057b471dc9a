/* relay: the loop that moves rows from the outbox to Kafka. Fetches due
 * pending rows in id order, publishes them, and marks each batch sent once
 * every message of it has been acknowledged; failures are retried with
 * backoff and dead-lettered after the last attempt. */
#ifndef OUTBOX_RELAY_H
#define OUTBOX_RELAY_H

#include <stddef.h>
#include <stdint.h>

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

/* One relay among the outboxes of --outboxes-file (fleet.c), which run
 * each in its own thread. */
struct relay_opts {
        /* An eventfd the relay polls instead of a signalfd: each 1 written
         * to it is a SIGTERM (the first drains, the second stops now). Not
         * owned; signals need not be blocked. */
        int stop_fd;
        /* Not owned (NULL: the relay's own): kept by the caller across
         * relays of one outbox, already shared (metrics_share). */
        struct metrics *metrics;
        /* Called in the relay's thread after every turn of its loop (at
         * least once a second): where relay_ready may be asked. */
        void (*on_turn)(void *arg, struct relay *r, int64_t now_ms);
        void *arg;
};
struct relay *relay_new_opts(const struct config *cfg, struct log *lg,
                             const struct relay_opts *opts, char *errbuf,
                             size_t errsz) OUTBOX_MUST_CHECK;

/* What /readyz says of this relay: 1 when ready, else 0 with why. Only in
 * the relay's thread (from on_turn). */
int relay_ready(struct relay *r, char *why, size_t whysz);

/* Runs until SIGTERM or SIGINT and returns 0 after a clean stop; returns
 * -1 with errbuf when it cannot go on (e.g. the schema is missing). */
int relay_run(struct relay *r, char *errbuf, size_t errsz) OUTBOX_MUST_CHECK;

#endif
