/* Unit tests of relay_batch: every legal move of a batch's life and of a
 * row's failure, every other move refused (an assertion that aborts), and
 * when a batch is done. */
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "runner.h"

#include "relay_batch.h"
#include "transitions.h"

/* The moves the design allows; everything else must be refused. */
static const int legal[BATCH_STATES][BATCH_STATES] = {
    [BATCH_FETCHED] = {[BATCH_DEFERRED] = 1, [BATCH_PRODUCING] = 1},
    [BATCH_DEFERRED] = {[BATCH_PRODUCING] = 1, [BATCH_IN_FLIGHT] = 1},
    [BATCH_PRODUCING] = {[BATCH_IN_FLIGHT] = 1},
    [BATCH_IN_FLIGHT] = {[BATCH_REPORTED] = 1},
    [BATCH_REPORTED] = {[BATCH_MARK_DUE] = 1, [BATCH_MARKED] = 1},
    [BATCH_MARK_DUE] = {[BATCH_MARKING] = 1},
    [BATCH_MARKING] = {[BATCH_MARKED] = 1, [BATCH_REPORTED] = 1},
};

START_TEST(test_transition_table)
{
        TRANSITIONS_CHECK("batch", BATCH_STATES, legal, batch_transition_ok, batch_state_name);
}
END_TEST

/* The life of a batch without --exactly-once, a mark failing once. */
START_TEST(test_life_with_failed_mark)
{
        struct relay_row rows[2] = {0};
        struct batch b = {.rows = rows, .n = 2};

        rows[0].state = ROW_SENT;
        rows[1].state = ROW_SENT;
        batch_set_state(&b, BATCH_PRODUCING);
        batch_set_state(&b, BATCH_IN_FLIGHT);
        ck_assert(!batch_submitted(&b));
        batch_set_state(&b, BATCH_REPORTED);
        ck_assert(batch_submitted(&b));
        ck_assert(!batch_marking(&b));
        ck_assert_int_eq(batch_sent_rows(&b), 2);
        batch_set_state(&b, BATCH_MARK_DUE);
        ck_assert(batch_marking(&b));
        batch_set_state(&b, BATCH_MARKING);
        batch_set_state(&b, BATCH_REPORTED); /* the mark failed */
        ck_assert(!batch_done(&b));
        batch_set_state(&b, BATCH_MARK_DUE);
        batch_set_state(&b, BATCH_MARKING);
        batch_set_state(&b, BATCH_MARKED);
        ck_assert(batch_done(&b));
}
END_TEST

/* Done waits for every failure to be recorded, for a submit under way and
 * for the open transaction. */
START_TEST(test_done_waits)
{
        struct relay_row rows[2] = {0};
        struct batch b = {.rows = rows, .n = 2, .state = BATCH_REPORTED};

        rows[0].state = ROW_SENT;
        rows[1].state = ROW_FAILED;
        batch_row_fail_set(&rows[1], FAIL_WAITING);
        batch_row_fail_set(&rows[1], FAIL_TO_RECORD);
        ck_assert_int_eq(batch_sent_rows(&b), 1);
        batch_set_state(&b, BATCH_MARK_DUE);
        batch_set_state(&b, BATCH_MARKING);
        batch_set_state(&b, BATCH_MARKED);
        ck_assert(!batch_done(&b));
        batch_row_fail_set(&rows[1], FAIL_RECORDING);
        ck_assert(!batch_done(&b));
        batch_row_fail_set(&rows[1], FAIL_RECORDING_ASCII); /* refused: again in ASCII */
        batch_row_fail_set(&rows[1], FAIL_TO_RECORD_ASCII); /* refused again: later */
        batch_row_fail_set(&rows[1], FAIL_RECORDING_ASCII);
        ck_assert(!batch_done(&b));
        batch_row_fail_set(&rows[1], FAIL_RECORDED);
        ck_assert(batch_done(&b));
        b.in_submit = 1;
        ck_assert(!batch_done(&b));
        b.in_submit = 0;
        b.txn = BATCH_TXN_OPEN;
        ck_assert(!batch_done(&b));
        b.txn = BATCH_TXN_COMMITTED;
        ck_assert(batch_done(&b));
}
END_TEST

/* Marked before its reports are in would mark rows Kafka never took. */
START_TEST(test_illegal_transition_aborts)
{
        struct batch b = {.state = BATCH_IN_FLIGHT};

        batch_set_state(&b, BATCH_MARKED);
}
END_TEST

/* Nothing leaves MARKED: a done batch is freed, never reused. */
START_TEST(test_marked_is_final)
{
        struct batch b = {.state = BATCH_MARKED};

        batch_set_state(&b, BATCH_REPORTED);
}
END_TEST

/* A recorded failure is not recorded again (its attempt would count twice). */
START_TEST(test_recorded_failure_is_final)
{
        struct relay_row row = {.state = ROW_FAILED, .fail = FAIL_RECORDED};

        batch_row_fail_set(&row, FAIL_RECORDING);
}
END_TEST

/* Queued twice would record the attempt twice. */
START_TEST(test_failure_not_queued_twice)
{
        struct relay_row row = {.state = ROW_FAILED, .fail = FAIL_RECORDING};

        batch_row_fail_set(&row, FAIL_RECORDING);
}
END_TEST

static void keyed(struct relay_row *r, struct batch *b, int64_t id, const char *key,
                  enum row_state st)
{
        *r = (struct relay_row){.batch = b, .state = st};
        r->m.id = id;
        r->m.key = key;
        r->m.key_len = key != NULL ? strlen(key) : 0;
}

/* Row 2 of key k went back unpublished (its producer rebuilt) after Kafka
 * acknowledged rows 3 and 6 of k, appended behind its request: they stay
 * pending to go again after it, and row 4, in flight, stays pending
 * whatever its report. Earlier rows, rows of other keys and keyless rows
 * are left alone; a batch marked already is counted (too late). */
START_TEST(test_unsent_overtaken)
{
        struct relay_row r1[1], r2[5], r3[2], r4[1];
        struct batch b1 = {.rows = r1, .n = 1, .state = BATCH_MARKED};
        struct batch b2 = {.rows = r2, .n = 5, .state = BATCH_IN_FLIGHT};
        struct batch b3 = {.rows = r3, .n = 2, .state = BATCH_MARK_DUE};
        struct batch b4 = {.rows = r4, .n = 1, .state = BATCH_MARKED};

        b1.next = &b2;
        b2.next = &b3;
        b3.next = &b4;
        keyed(&r1[0], &b1, 1, "k", ROW_SENT);
        keyed(&r2[0], &b2, 2, "k", ROW_UNSENT);
        keyed(&r2[1], &b2, 3, "k", ROW_SENT);
        keyed(&r2[2], &b2, 4, "k", ROW_INFLIGHT);
        keyed(&r2[3], &b2, 5, "kk", ROW_SENT);
        keyed(&r2[4], &b2, 7, NULL, ROW_SENT);
        keyed(&r3[0], &b3, 6, "k", ROW_SENT);
        keyed(&r3[1], &b3, 8, "j", ROW_SENT);
        keyed(&r4[0], &b4, 9, "j", ROW_SENT);
        ck_assert_int_eq(batch_unsent_overtaken(&b2, &r2[0]), 0);
        ck_assert_int_eq(r1[0].state, ROW_SENT);
        ck_assert_int_eq(r2[1].state, ROW_UNSENT);
        ck_assert_int_eq(r2[2].state, ROW_INFLIGHT);
        ck_assert_int_eq(r2[2].behind, 1);
        ck_assert_int_eq(r2[3].state, ROW_SENT);
        ck_assert_int_eq(r2[4].state, ROW_SENT);
        ck_assert_int_eq(r3[0].state, ROW_UNSENT);
        ck_assert_int_eq(r3[1].state, ROW_SENT);
        ck_assert(b2.left_pending && b3.left_pending && !b1.left_pending && !b4.left_pending);
        ck_assert_int_eq(batch_sent_rows(&b3), 1);
        /* A keyless row holds no order. */
        ck_assert_int_eq(batch_unsent_overtaken(&b2, &r2[4]), 0);
        ck_assert_int_eq(r3[1].state, ROW_SENT);
        /* A later row of j in a batch marked already cannot be helped. */
        r3[1].state = ROW_UNSENT;
        ck_assert_int_eq(batch_unsent_overtaken(&b3, &r3[1]), 1);
        ck_assert_int_eq(r4[0].state, ROW_SENT);
}
END_TEST

Suite *test_suite(void)
{
        const TTest *const core[] = {test_transition_table, test_life_with_failed_mark,
                                     test_done_waits, test_unsent_overtaken, NULL};
        const TTest *const illegal[] = {test_illegal_transition_aborts, test_marked_is_final,
                                        test_recorded_failure_is_final,
                                        test_failure_not_queued_twice, NULL};

        return transitions_suite("relay_batch", core, illegal);
}
