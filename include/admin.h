/* admin: the operator commands besides `run`: migrate, replay, status and dlq. Each
 * connects, does its work, prints a human-readable result on stdout and
 * returns an exit code for main (0 ok, 1 runtime failure). */
#ifndef OUTBOX_ADMIN_H
#define OUTBOX_ADMIN_H

#include <stddef.h>

#include "compiler.h"

struct config;
struct config_outbox;
struct log;

int admin_migrate(const struct config *cfg, struct log *lg) OUTBOX_MUST_CHECK;
/* migrate for each outbox of --outboxes-file, in the file's order (every
 * one, also after one that fails), each error line naming its outbox. */
int admin_migrate_outboxes(const struct config_outbox *o, size_t n,
                           struct log *lg) OUTBOX_MUST_CHECK;
/* Resets sent rows matching cfg->replay_* filters to pending (or, with
 * --dry-run, only counts them) through the outbox.replay() function. */
int admin_replay(const struct config *cfg, struct log *lg) OUTBOX_MUST_CHECK;
/* Backlog, lag, dead letters, recent throughput and the connected relays
 * (which one leads); --json for scripts. */
int admin_status(const struct config *cfg, struct log *lg) OUTBOX_MUST_CHECK;
/* status of each outbox of --outboxes-file, in the file's order, each
 * under an "outbox: NAME" line; with json one array of the objects
 * admin_status prints, each with "outbox". An outbox that cannot be read
 * (its database down) says so on stderr and the others are still shown;
 * returns 1 then. */
int admin_status_outboxes(const struct config_outbox *o, size_t n, int json,
                          struct log *lg) OUTBOX_MUST_CHECK;
/* `dlq list` and `dlq requeue` (cfg->args[0]); 2 on a usage error. */
int admin_dlq(const struct config *cfg, struct log *lg) OUTBOX_MUST_CHECK;

#endif
