/* relay_txn_state: the legal moves of --exactly-once's two machines, and
 * what the rest of the relay may ask of them. A move outside the tables is
 * a bug caught where it happens: a transaction committed twice or a leader
 * publishing before its recovery would lose or repeat events. */
#include "relay_txn_state.h"

#include <stdio.h>
#include <stdlib.h>

struct relay_txn *relay_txn_state_new(void)
{
        struct relay_txn *t = calloc(1, sizeof(*t));

        if (t != NULL) {
                t->eos = EOS_INIT;
                t->phase = TXN_PHASE_NONE;
        }
        return t;
}

void relay_txn_state_free(struct relay_txn *t)
{
        free(t);
}

#define TO(s) (1u << (s))

/* The legal moves: for each state, the states it may go to. Any state may
 * go back to EOS_INIT (a new producer: rebuilt, or after a lost term), and
 * any but EOS_INIT to EOS_STALE (the session ended after it began). */
static const unsigned eos_moves[EOS_STATES] = {
    [EOS_INIT] = TO(EOS_INIT) | TO(EOS_READ),
    /* nothing to recover, or its rows to mark */
    [EOS_READ] = TO(EOS_INIT) | TO(EOS_MARKING) | TO(EOS_READY) | TO(EOS_STALE),
    /* marked, or read and mark again */
    [EOS_MARKING] = TO(EOS_INIT) | TO(EOS_READ) | TO(EOS_READY) | TO(EOS_STALE),
    [EOS_READY] = TO(EOS_INIT) | TO(EOS_STALE),
    [EOS_STALE] = TO(EOS_INIT) | TO(EOS_STALE),
};

static const unsigned txn_moves[TXN_PHASES] = {
    [TXN_PHASE_NONE] = TO(TXN_PHASE_OPEN),
    /* ended; or its producer is gone (abandoned) */
    [TXN_PHASE_OPEN] = TO(TXN_PHASE_COMMITTING) | TO(TXN_PHASE_ABORTING) | TO(TXN_PHASE_NONE),
    /* a refused commit is aborted */
    [TXN_PHASE_COMMITTING] = TO(TXN_PHASE_ABORTING) | TO(TXN_PHASE_NONE),
    /* an abort Kafka wants again starts again */
    [TXN_PHASE_ABORTING] = TO(TXN_PHASE_ABORTING) | TO(TXN_PHASE_NONE),
};

int relay_eos_transition_ok(enum relay_eos_state from, enum relay_eos_state to)
{
        return from < EOS_STATES && (eos_moves[from] & TO(to)) != 0;
}

int relay_txn_transition_ok(enum relay_txn_phase from, enum relay_txn_phase to)
{
        return from < TXN_PHASES && (txn_moves[from] & TO(to)) != 0;
}

void relay_txn_set_eos(struct relay_txn *t, enum relay_eos_state to)
{
        if (!relay_eos_transition_ok(t->eos, to)) {
                fprintf(stderr, "relay_txn: illegal exactly-once transition %d -> %d\n",
                        (int)t->eos, (int)to);
                abort();
        }
        t->eos = to;
}

void relay_txn_set_phase(struct relay_txn *t, enum relay_txn_phase to)
{
        if (!relay_txn_transition_ok(t->phase, to)) {
                fprintf(stderr, "relay_txn: illegal transaction transition %d -> %d\n",
                        (int)t->phase, (int)to);
                abort();
        }
        t->phase = to;
}

int relay_txn_ready(const struct relay_txn *t)
{
        return t == NULL || t->eos == EOS_READY;
}

void relay_txn_poke(struct relay_txn *t)
{
        if (t != NULL)
                t->due = 1;
}

void relay_txn_message_failed(struct relay_txn *t)
{
        if (t != NULL) {
                t->failed = 1;
                t->due = 1;
        }
}

int relay_txn_doomed(const struct relay_txn *t)
{
        return t != NULL && t->failed;
}

int relay_txn_waiting(const struct relay_txn *t)
{
        return t != NULL && t->n_deferred > 0;
}

void relay_txn_session_ended(struct relay_txn *t)
{
        if (t != NULL && t->eos != EOS_INIT)
                relay_txn_set_eos(t, EOS_STALE);
}

int relay_txn_not_ready(const struct relay_txn *t, char *why, size_t whysz)
{
        if (relay_txn_ready(t))
                return 0;
        snprintf(why, whysz, "exactly-once: not publishing yet (transactional id %s): %s", t->tid,
                 t->eos_error[0] != '\0' ? t->eos_error : "recovering");
        return 1;
}

const char *relay_txn_id(const struct relay_txn *t)
{
        return t != NULL ? t->tid : "";
}

unsigned relay_txn_news(struct relay_txn *t)
{
        unsigned news = 0;

        if (t != NULL && t->fetch) {
                news |= RELAY_TXN_FETCH;
                t->fetch = 0;
        }
        return news;
}
