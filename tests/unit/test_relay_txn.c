/* Unit tests of --exactly-once's two state machines (relay_txn_state):
 * the legal moves of the leader's recovery and of the transaction, every
 * other move refused (an assertion), and what the rest of the relay sees. */
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "runner.h"

#include "relay_txn_state.h"
#include "transitions.h"

static const int eos_legal[EOS_STATES][EOS_STATES] = {
    [EOS_INIT] = {[EOS_INIT] = 1, [EOS_READ] = 1},
    [EOS_READ] = {[EOS_INIT] = 1, [EOS_MARKING] = 1, [EOS_READY] = 1, [EOS_STALE] = 1},
    [EOS_MARKING] = {[EOS_INIT] = 1, [EOS_READ] = 1, [EOS_READY] = 1, [EOS_STALE] = 1},
    [EOS_READY] = {[EOS_INIT] = 1, [EOS_STALE] = 1},
    [EOS_STALE] = {[EOS_INIT] = 1, [EOS_STALE] = 1},
};

static const int phase_legal[TXN_PHASES][TXN_PHASES] = {
    [TXN_PHASE_NONE] = {[TXN_PHASE_OPEN] = 1},
    [TXN_PHASE_OPEN] = {[TXN_PHASE_NONE] = 1, [TXN_PHASE_COMMITTING] = 1, [TXN_PHASE_ABORTING] = 1},
    [TXN_PHASE_COMMITTING] = {[TXN_PHASE_NONE] = 1, [TXN_PHASE_ABORTING] = 1},
    [TXN_PHASE_ABORTING] = {[TXN_PHASE_NONE] = 1, [TXN_PHASE_ABORTING] = 1},
};

START_TEST(test_tables)
{
        TRANSITIONS_CHECK("eos", EOS_STATES, eos_legal, relay_eos_transition_ok,
                          transitions_number);
        TRANSITIONS_CHECK("phase", TXN_PHASES, phase_legal, relay_txn_transition_ok,
                          transitions_number);
}
END_TEST

/* A leader's term: recovery, publishing, the session lost. */
START_TEST(test_term)
{
        struct relay_txn *t = relay_txn_state_new();
        char why[256];

        ck_assert_ptr_nonnull(t);
        strcpy(t->tid, "outbox-relay-x");
        ck_assert(!relay_txn_ready(t));
        ck_assert(relay_txn_not_ready(t, why, sizeof(why)));
        ck_assert_ptr_nonnull(strstr(why, "outbox-relay-x"));
        relay_txn_session_ended(t); /* nothing begun: stays INIT */
        ck_assert_int_eq(t->eos, EOS_INIT);
        relay_txn_set_eos(t, EOS_READ);
        relay_txn_set_eos(t, EOS_MARKING);
        relay_txn_set_eos(t, EOS_READY);
        ck_assert(relay_txn_ready(t));
        ck_assert(!relay_txn_not_ready(t, why, sizeof(why)));
        relay_txn_set_phase(t, TXN_PHASE_OPEN);
        ck_assert(!relay_txn_doomed(t));
        relay_txn_message_failed(t);
        ck_assert(relay_txn_doomed(t));
        ck_assert(t->due);
        relay_txn_set_phase(t, TXN_PHASE_ABORTING);
        relay_txn_set_phase(t, TXN_PHASE_NONE);
        relay_txn_session_ended(t);
        ck_assert_int_eq(t->eos, EOS_STALE);
        ck_assert(!relay_txn_ready(t));
        relay_txn_set_eos(t, EOS_INIT);
        t->fetch = 1;
        ck_assert_uint_eq(relay_txn_news(t), RELAY_TXN_FETCH);
        ck_assert_uint_eq(relay_txn_news(t), 0);
        relay_txn_state_free(t);
}
END_TEST

/* Without --exactly-once there is no state: always ready, never waiting. */
START_TEST(test_null_is_at_least_once)
{
        char why[8];

        ck_assert(relay_txn_ready(NULL));
        ck_assert(!relay_txn_doomed(NULL));
        ck_assert(!relay_txn_waiting(NULL));
        ck_assert(!relay_txn_not_ready(NULL, why, sizeof(why)));
        ck_assert_uint_eq(relay_txn_news(NULL), 0);
        relay_txn_poke(NULL);
        relay_txn_message_failed(NULL);
        relay_txn_session_ended(NULL);
}
END_TEST

/* Publishing before the last record's rows are marked would publish them
 * again. */
START_TEST(test_ready_before_recovery_aborts)
{
        struct relay_txn *t = relay_txn_state_new();

        relay_txn_set_eos(t, EOS_READY);
}
END_TEST

/* A commit without an open transaction. */
START_TEST(test_commit_without_txn_aborts)
{
        struct relay_txn *t = relay_txn_state_new();

        relay_txn_set_phase(t, TXN_PHASE_COMMITTING);
}
END_TEST

Suite *test_suite(void)
{
        const TTest *const core[] = {test_tables, test_term, test_null_is_at_least_once, NULL};
        const TTest *const illegal[] = {test_ready_before_recovery_aborts,
                                        test_commit_without_txn_aborts, NULL};

        return transitions_suite("relay_txn_state", core, illegal);
}
