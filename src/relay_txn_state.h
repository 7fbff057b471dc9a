/* relay_txn_state: --exactly-once's state, as two machines of their own:
 * where the leader is before it may publish (enum relay_eos_state) and the
 * Kafka transaction under way (enum relay_txn_phase). Each moves only
 * through its set function, which refuses an illegal move (an assertion).
 * relay_txn.c drives them; the rest of the relay asks through the
 * accessors below. */
#ifndef OUTBOX_RELAY_TXN_STATE_H
#define OUTBOX_RELAY_TXN_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

/* Where the leader is before it may publish. */
enum relay_eos_state {
        EOS_INIT,    /* the producer needs init_transactions (fences older ones) */
        EOS_READ,    /* read the last committed progress record */
        EOS_MARKING, /* marking that record's rows sent */
        EOS_READY,   /* publishing */
        EOS_STALE,   /* leadership was lost: a new term needs a new producer */
        EOS_STATES
};

/* The Kafka transaction of the leader's producer. Commit and abort run in
 * short resumable steps from the loop. */
enum relay_txn_phase {
        TXN_PHASE_NONE,       /* no transaction has begun */
        TXN_PHASE_OPEN,       /* begun: its batches are being published */
        TXN_PHASE_COMMITTING, /* its progress record is sent, commit in progress */
        TXN_PHASE_ABORTING,   /* abort in progress */
        TXN_PHASES
};

struct progress_reader;

struct relay_txn {
        enum relay_eos_state eos;
        enum relay_txn_phase phase;
        int due;        /* its batches may all be reported: see whether it can end */
        int failed;     /* a message of it failed: abort now, without waiting */
        int fetch;      /* news for the loop: fetch (relay_txn_news) */
        int rows;       /* rows its progress record lists */
        int empty;      /* nothing of it was published: its end is not news */
        int steps;      /* commit or abort steps so far */
        int n_deferred; /* batches waiting for the next transaction */
        int joins;      /* batches that joined the open transaction after it began */
        int64_t step_at, deadline;
        char error[512]; /* why it is being aborted */
        struct progress_reader *reader;
        unsigned long read_ticket; /* the read of the progress record under way (0: none) */
        int64_t retry_at;          /* the recovery's next step (EOS_INIT, EOS_READ) */
        int attempt;
        char eos_error[512];     /* why the leader is not publishing yet ("": none known) */
        char tid[300];           /* transactional.id */
        long kill_after_commits; /* test hook: OUTBOX_RELAY_TEST_KILL_AFTER_COMMITS */
        long commits;
};

struct relay_txn *relay_txn_state_new(void) OUTBOX_MUST_CHECK;
void relay_txn_state_free(struct relay_txn *t);

int relay_eos_transition_ok(enum relay_eos_state from, enum relay_eos_state to);
int relay_txn_transition_ok(enum relay_txn_phase from, enum relay_txn_phase to);
void relay_txn_set_eos(struct relay_txn *t, enum relay_eos_state to);
void relay_txn_set_phase(struct relay_txn *t, enum relay_txn_phase to);

/* For the rest of the relay. t may be NULL (not --exactly-once): then
 * there is no transaction, and the relay is always ready to publish. */
int relay_txn_ready(const struct relay_txn *t);
/* A batch of the open transaction was reported, or a mark it may wait for
 * ended: the loop sees whether the transaction can end (never from a
 * librdkafka callback). */
void relay_txn_poke(struct relay_txn *t);
/* A message of the open transaction failed: it can only be aborted. */
void relay_txn_message_failed(struct relay_txn *t);
int relay_txn_doomed(const struct relay_txn *t);
/* Batches wait for the next transaction. */
int relay_txn_waiting(const struct relay_txn *t);
/* The database session ended: another relay may lead meanwhile and fence
 * this producer, so the next term starts with a new one. */
void relay_txn_session_ended(struct relay_txn *t);
/* Why a leader is not publishing yet (for /readyz): 1 with why, or 0. */
int relay_txn_not_ready(const struct relay_txn *t, char *why, size_t whysz);
const char *relay_txn_id(const struct relay_txn *t);
/* The loop's news (a mask of RELAY_TXN_*), cleared as it is read. */
#define RELAY_TXN_FETCH 1 /* batches were given back, or publishing may begin */
unsigned relay_txn_news(struct relay_txn *t);

#endif
