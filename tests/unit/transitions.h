/* transitions: what the state-machine unit tests share (test_relay_batch,
 * test_relay_txn): every move of a machine checked against the table of
 * moves its design allows, and a suite whose illegal moves must abort. */
#ifndef OUTBOX_TEST_TRANSITIONS_H
#define OUTBOX_TEST_TRANSITIONS_H

#include <check.h>
#include <signal.h>
#include <stddef.h>

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

/* A machine's suite: test case "core" runs `core` (NULL-terminated) as
 * they are, "illegal" expects each of `illegal` to abort (the assertion
 * that refuses a move). */
static inline Suite *transitions_suite(const char *name, const TTest *const core[],
                                       const TTest *const illegal[])
{
        Suite *s = suite_create(name);
        TCase *tc = tcase_create("core"), *bad = tcase_create("illegal");

        for (size_t i = 0; core[i]; i++)
                tcase_add_test(tc, core[i]);
        for (size_t i = 0; illegal[i]; i++)
                tcase_add_test_raise_signal(bad, illegal[i], SIGABRT);
        suite_add_tcase(s, tc);
        suite_add_tcase(s, bad);
        return s;
}

#endif
