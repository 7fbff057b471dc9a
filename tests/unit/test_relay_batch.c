/* Unit tests of relay_batch: every legal move of a batch's life and of a
 * row's failure, every other move refused (an assertion that aborts), and
 * when a batch is done. */
#include <stdlib.h>

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

Suite *test_suite(void)
{
        const TTest *const core[] = {test_transition_table, test_life_with_failed_mark,
                                     test_done_waits, NULL};
        const TTest *const illegal[] = {test_illegal_transition_aborts, test_marked_is_final,
                                        test_recorded_failure_is_final,
                                        test_failure_not_queued_twice, NULL};

        return transitions_suite("relay_batch", core, illegal);
}
