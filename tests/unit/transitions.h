/* transitions: the check the state-machine unit tests share, every move of
 * a machine against the table of moves its design allows (test_relay_batch,
 * test_relay_txn). */
#ifndef OUTBOX_TEST_TRANSITIONS_H
#define OUTBOX_TEST_TRANSITIONS_H

#include <check.h>

/* A state's number as text, for machines without state names. */
static inline const char *transitions_number(int state)
{
        static const char *const n[] = {"0", "1", "2",  "3",  "4",  "5",  "6",  "7",
                                        "8", "9", "10", "11", "12", "13", "14", "15"};

        return state >= 0 && state < 16 ? n[state] : "?";
}

/* Asserts ok(from, to) == legal[from][to] for each of the n * n moves of
 * `machine`, naming a wrong one with name(state). A macro, since each
 * machine's ok() and name() take its own enum. */
#define TRANSITIONS_CHECK(machine, n, legal, ok, name)                                             \
        do {                                                                                       \
                for (int from_ = 0; from_ < (n); from_++)                                          \
                        for (int to_ = 0; to_ < (n); to_++)                                        \
                                ck_assert_msg((ok)(from_, to_) == (legal)[from_][to_],             \
                                              "%s: %s -> %s", (machine), (name)(from_),            \
                                              (name)(to_));                                        \
        } while (0)

#endif
