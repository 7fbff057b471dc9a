/* fleet: the outboxes of one process (--outboxes-file). One relay per
 * outbox, each in a thread of its own; the process keeps once what it has
 * once: the signals, the HTTP endpoints and the stop. */
#ifndef OUTBOX_FLEET_H
#define OUTBOX_FLEET_H

#include <stddef.h>

#include "compiler.h"

struct config;
struct config_outbox;
struct log;
struct fleet;

/* cfg is the process's (its --http-listen and --shutdown-timeout-ms);
 * outboxes are not copied and must outlive the fleet. Like relay_new,
 * needs SIGTERM and SIGINT blocked before any thread starts. Opens the
 * HTTP listener; contacts nothing else. Returns NULL with errbuf. */
struct fleet *fleet_new(const struct config *cfg, const struct config_outbox *outboxes, size_t n,
                        struct log *lg, char *errbuf, size_t errsz) OUTBOX_MUST_CHECK;
void fleet_free(struct fleet *f);

/* Runs every outbox until SIGTERM or SIGINT (each told through its own
 * eventfd; a second signal stops them at once) and joins them. An outbox
 * whose relay stops on an error is started again after a backoff (at most
 * its --reconnect-max-ms), the others unaffected. Returns 0 after a clean
 * stop of all, -1 with errbuf otherwise. */
int fleet_run(struct fleet *f, char *errbuf, size_t errsz) OUTBOX_MUST_CHECK;

#endif
