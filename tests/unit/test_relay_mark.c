/* Unit tests of the marks (relay_mark.h): which rows a mark names (the
 * sent ones of the due batches, in fetch order, each with its event_id,
 * generation, replays and Kafka position), which batches it moves on, and
 * when it is due. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "runner.h"

#include "relay_mark.h"

#define EV(n) "00000000-0000-0000-0000-00000000000" #n

static void row(struct relay_row *r, struct batch *b, int64_t id, enum row_state st, int gen)
{
        memset(r, 0, sizeof(*r));
        r->batch = b;
        r->m.id = id;
        r->m.generation = gen;
        r->m.replays = gen + 10;
        r->m.event_id = id == 6 ? NULL : EV(1); /* NULL: refused before producing, in practice */
        r->state = st;
        r->partition = (int32_t)(id % 3);
        r->offset = id * 100;
}

START_TEST(test_collect_names_sent_rows_in_order)
{
        struct relay_row r1[3], r2[1], r3[2];
        struct batch b1 = {.rows = r1, .n = 3, .state = BATCH_MARK_DUE};
        struct batch b2 = {.rows = r2, .n = 1, .state = BATCH_MARKED};
        struct batch b3 = {.rows = r3, .n = 2, .state = BATCH_MARK_DUE};
        struct relay_marks *m = relay_marks_new(10, 100, 4);
        struct relay_mark_set set;
        static const int64_t want[] = {1, 3, 6};

        b1.next = &b2;
        b2.next = &b3;
        row(&r1[0], &b1, 1, ROW_SENT, 0);
        row(&r1[1], &b1, 2, ROW_FAILED, 0);
        row(&r1[2], &b1, 3, ROW_SENT, 2);
        row(&r2[0], &b2, 4, ROW_SENT, 0); /* its batch is marked already */
        row(&r3[0], &b3, 5, ROW_UNSENT, 0);
        row(&r3[1], &b3, 6, ROW_SENT, 1);
        ck_assert_int_eq(relay_marks_collect(m, &b1, &set, 0), 0);
        ck_assert_uint_eq(set.rows.n, 3);
        for (size_t i = 0; i < set.rows.n; i++) {
                ck_assert_int_eq(set.rows.ids[i], want[i]);
                ck_assert_str_eq(set.rows.event_ids[i], i == 2 ? "" : EV(1));
                ck_assert_int_eq(set.rows.offsets[i], want[i] * 100);
                ck_assert_int_eq(set.rows.partitions[i], want[i] % 3);
                ck_assert_int_eq(set.rows.replays[i], set.rows.generations[i] + 10);
        }
        ck_assert_int_eq(set.rows.generations[1], 2);
        ck_assert_int_eq(set.n_batches, 2);
        ck_assert_ptr_eq(set.batches[0], &b1);
        ck_assert_ptr_eq(set.batches[1], &b3);
        ck_assert_int_eq(b1.state, BATCH_MARKING);
        ck_assert_int_eq(b2.state, BATCH_MARKED);
        ck_assert_int_eq(b3.state, BATCH_MARKING);
        relay_mark_set_free(&set);
        relay_marks_free(m);
}
END_TEST

/* A batch with nothing sent is marked at once; one with sent rows waits
 * for --mark-delay-ms, or not at all once a batch's worth is due. */
START_TEST(test_due_and_when)
{
        struct relay_row r1[2], r2[1];
        struct batch b1 = {.rows = r1, .n = 2, .state = BATCH_REPORTED};
        struct batch b2 = {.rows = r2, .n = 1, .state = BATCH_REPORTED};
        struct relay_marks *m = relay_marks_new(10, 3, 4);
        struct relay_mark_set set;

        row(&r1[0], &b1, 1, ROW_SENT, 0);
        row(&r1[1], &b1, 2, ROW_SENT, 0);
        row(&r2[0], &b2, 3, ROW_FAILED, 0);
        ck_assert(relay_marks_next_at(m, 2, 0) == INT64_MAX);
        relay_marks_due(m, &b2, 1000);
        ck_assert_int_eq(b2.state, BATCH_MARKED);
        ck_assert(relay_marks_next_at(m, 2, 0) == INT64_MAX);
        relay_marks_due(m, &b1, 1000);
        ck_assert_int_eq(b1.state, BATCH_MARK_DUE);
        ck_assert_int_eq(relay_marks_next_at(m, 2, 0), 1010);
        ck_assert_int_eq(relay_marks_next_at(m, 2, 1), 0);                /* stopping */
        ck_assert_int_eq(relay_marks_next_at(m, 8, 0), 1010);             /* 8 held: still waits */
        ck_assert_int_eq(relay_marks_next_at(m, RELAY_MARKS_HOLD, 0), 0); /* fetching waits */
        /* Again: nothing changes (due already). */
        relay_marks_due(m, &b1, 2000);
        ck_assert_int_eq(relay_marks_next_at(m, 2, 0), 1010);
        ck_assert_int_eq(relay_marks_collect(m, &b1, &set, 1010), 0);
        ck_assert(relay_marks_next_at(m, 2, 0) == INT64_MAX);
        relay_mark_set_free(&set);
        relay_marks_free(m);
}
END_TEST

START_TEST(test_batch_size_marks_at_once)
{
        struct relay_row r1[3];
        struct batch b1 = {.rows = r1, .n = 3, .state = BATCH_REPORTED};
        struct relay_marks *m = relay_marks_new(1000, 3, 4);

        for (int i = 0; i < 3; i++)
                row(&r1[i], &b1, i + 1, ROW_SENT, 0);
        relay_marks_due(m, &b1, 5);
        ck_assert_int_eq(relay_marks_next_at(m, 1, 0), 0);
        relay_marks_free(m);
}
END_TEST

/* Only a reported batch becomes due: one still producing is left alone. */
START_TEST(test_due_only_when_reported)
{
        struct relay_row r1[1];
        struct batch b1 = {.rows = r1, .n = 1, .state = BATCH_IN_FLIGHT};
        struct relay_marks *m = relay_marks_new(10, 3, 4);

        row(&r1[0], &b1, 1, ROW_SENT, 0);
        relay_marks_due(m, &b1, 5);
        ck_assert_int_eq(b1.state, BATCH_IN_FLIGHT);
        ck_assert(relay_marks_next_at(m, 1, 0) == INT64_MAX);
        relay_marks_free(m);
}
END_TEST

/* depth batches being published, or relay_marks_hold in all, stop
 * fetching; published batches waiting for their shared mark do not. */
START_TEST(test_pipeline_full)
{
        struct batch b[4] = {{.state = BATCH_IN_FLIGHT},
                             {.state = BATCH_MARK_DUE},
                             {.state = BATCH_MARKING},
                             {.state = BATCH_PRODUCING}};

        for (int i = 0; i < 3; i++)
                b[i].next = &b[i + 1];
        ck_assert(!relay_marks_pipeline_full(b, 4, 3, 1000)); /* 2 publishing */
        ck_assert(relay_marks_pipeline_full(b, 4, 2, 1000));  /* 2 publishing, depth 2 */
        b[3].state = BATCH_MARKED;
        ck_assert(!relay_marks_pipeline_full(b, 4, 3, 1000)); /* 1 publishing, 4 in all */
        ck_assert(!relay_marks_pipeline_full(b, 4, 2, 1000)); /* 1 publishing, 4 in all: held */
        ck_assert_int_eq(relay_marks_hold(2), RELAY_MARKS_HOLD);
        ck_assert_int_eq(relay_marks_hold(64), 128);
}
END_TEST

/* The first n of b as the pipeline, in order. */
static int chain(struct batch *b, int n)
{
        for (int i = 0; i < n; i++)
                b[i].next = i + 1 < n ? &b[i + 1] : NULL;
        return n;
}

/* Batches whose mark is on its way do not hold a fetch back: while rows
 * wait, a fetch no longer waits for the round trip of a mark (a commit on
 * the server). relay_marks_hold batches waiting for their mark to be sent
 * do, and so do twice that many in all, so that slow marks bound the
 * batches held, and twice the depth's full batches of rows. */
START_TEST(test_pipeline_not_held_by_marks_on_their_way)
{
        enum { HOLD = RELAY_MARKS_HOLD };
        static struct batch b[2 * HOLD];

        for (int i = 0; i < 2 * HOLD; i++)
                b[i] = (struct batch){.state = i % 2 ? BATCH_MARKED : BATCH_MARKING};
        ck_assert(!relay_marks_pipeline_full(b, chain(b, 8), 2, 1000)); /* 8 marking, depth 2 */
        ck_assert(!relay_marks_pipeline_full(b, chain(b, 2 * HOLD - 1), 2, 1000));
        ck_assert(relay_marks_pipeline_full(b, chain(b, 2 * HOLD), 2, 1000)); /* twice the hold */
        b[3].state = BATCH_IN_FLIGHT;
        b[2].state = b[1].state = b[0].state = BATCH_MARK_DUE;
        ck_assert(!relay_marks_pipeline_full(b, chain(b, 4), 2, 1000)); /* 3 due + 1 publishing */
        b[4].state = BATCH_PRODUCING;
        ck_assert(relay_marks_pipeline_full(b, chain(b, 5), 2, 1000)); /* 2 publishing */
        /* What the mark's timing counts (relay_mark_next_at): the batches
         * finishing while a mark is on its way share the next one. */
        ck_assert_int_eq(relay_marks_unsent(b), 5); /* MARK_DUE x3, IN_FLIGHT, PRODUCING */
        b[0].state = BATCH_MARKED;
        b[1].state = BATCH_MARKING;
        ck_assert_int_eq(relay_marks_unsent(b), 3);
        /* The hold: batches waiting for their mark to be sent. */
        for (int i = 0; i < HOLD; i++)
                b[i] = (struct batch){.state = BATCH_MARK_DUE};
        ck_assert(!relay_marks_pipeline_full(b, chain(b, HOLD - 1), 2, 1000));
        ck_assert(relay_marks_pipeline_full(b, chain(b, HOLD), 2, 1000));
        /* A drain's full batches: no more rows held than 2 * depth batches'. */
        for (int i = 0; i < 4; i++)
                b[i] = (struct batch){.state = BATCH_MARKING, .n = 1000};
        ck_assert(!relay_marks_pipeline_full(b, chain(b, 3), 2, 1000));
        ck_assert(relay_marks_pipeline_full(b, chain(b, 4), 2, 1000));
        ck_assert(!relay_marks_pipeline_full(b, chain(b, 4), 2, 2000));
}
END_TEST

/* A later row of a failed row's key, acknowledged while that failure is
 * unrecorded, is not marked until it is recorded (a crash between the two
 * would leave the failed row pending behind a row marked sent); rows of
 * other keys are marked meanwhile. */
START_TEST(test_later_row_of_unrecorded_failure_held_back)
{
        struct relay_row r1[1], r2[2], r3[1];
        struct batch b1 = {.rows = r1, .n = 1, .state = BATCH_MARKED};
        struct batch b2 = {.rows = r2, .n = 2, .state = BATCH_MARK_DUE};
        struct batch b3 = {.rows = r3, .n = 1, .state = BATCH_MARK_DUE};
        struct relay_marks *m = relay_marks_new(10, 100, 4);
        struct relay_mark_set set;

        b1.next = &b2;
        b2.next = &b3;
        row(&r1[0], &b1, 1, ROW_FAILED, 0);
        row(&r2[0], &b2, 2, ROW_SENT, 0);
        row(&r2[1], &b2, 3, ROW_SENT, 0);
        row(&r3[0], &b3, 4, ROW_SENT, 0);
        r1[0].m.key = "k";
        r2[1].m.key = "k\0x"; /* another key, equal as a C string */
        r2[1].m.key_len = 3;
        r3[0].m.key = "k";
        r1[0].m.key_len = r3[0].m.key_len = 1;
        ck_assert(relay_marks_ready(&b1)); /* no failure yet */
        batch_row_fail_set(&r1[0], FAIL_WAITING);
        ck_assert_int_eq(b1.unrecorded, 1);
        ck_assert(batch_row_unrecorded(&r1[0]));
        ck_assert(!batch_overtakes(&b2, &r1[0]));
        ck_assert(batch_overtakes(&b3, &r1[0]));
        ck_assert(relay_marks_ready(&b1)); /* b2 may be marked */
        ck_assert_int_eq(relay_marks_collect(m, &b1, &set, 50), 0);
        ck_assert_uint_eq(set.rows.n, 2);
        ck_assert_int_eq(set.n_batches, 1);
        ck_assert_ptr_eq(set.batches[0], &b2);
        ck_assert_int_eq(b3.state, BATCH_MARK_DUE); /* still due ... */
        ck_assert_int_eq(relay_marks_next_at(m, 3, 0), 50);
        ck_assert(!relay_marks_ready(&b1)); /* ... but not before the record */
        relay_mark_set_free(&set);
        batch_row_fail_set(&r1[0], FAIL_TO_RECORD);
        batch_row_fail_set(&r1[0], FAIL_RECORDING);
        ck_assert(!relay_marks_ready(&b1));
        batch_row_fail_set(&r1[0], FAIL_RECORDED);
        ck_assert_int_eq(b1.unrecorded, 0);
        ck_assert(relay_marks_ready(&b1));
        ck_assert_int_eq(relay_marks_collect(m, &b1, &set, 60), 0);
        ck_assert_uint_eq(set.rows.n, 1);
        ck_assert_int_eq(set.rows.ids[0], 4);
        ck_assert_int_eq(b3.state, BATCH_MARKING);
        ck_assert(relay_marks_next_at(m, 3, 0) == INT64_MAX);
        relay_mark_set_free(&set);
        relay_marks_free(m);
}
END_TEST

/* The defect seen in the fatal-persisting fault case: row 1 of key k is in
 * a request Kafka refused (the producer is rebuilt), row 3 of k went in a
 * later request the broker appended anyway. A batch waits for the reports
 * of every batch before it: once row 1 is reported unpublished, row 3
 * stays pending (batch_unsent_overtaken) to go again after it, and is
 * never marked sent before that report. Row 2 (another key) is marked. */
START_TEST(test_later_batch_waits_for_earlier_reports)
{
        struct relay_row r1[1], r2[2];
        struct batch b1 = {.rows = r1, .n = 1, .state = BATCH_IN_FLIGHT, .outstanding = 1};
        struct batch b2 = {.rows = r2, .n = 2, .state = BATCH_REPORTED};
        struct relay_marks *m = relay_marks_new(0, 100, 4);
        struct relay_mark_set set;

        b1.next = &b2;
        row(&r1[0], &b1, 1, ROW_INFLIGHT, 0);
        row(&r2[0], &b2, 2, ROW_SENT, 0);
        row(&r2[1], &b2, 3, ROW_SENT, 0);
        r1[0].m.key = r2[1].m.key = "k";
        r2[0].m.key = "j";
        r1[0].m.key_len = r2[0].m.key_len = r2[1].m.key_len = 1;
        relay_marks_due(m, &b2, 0);
        ck_assert_int_eq(b2.state, BATCH_MARK_DUE);
        ck_assert(!relay_marks_ready(&b1)); /* b1's reports are not in */
        ck_assert_int_eq(relay_marks_collect(m, &b1, &set, 0), 0);
        ck_assert_uint_eq(set.rows.n, 0);
        ck_assert_int_eq(set.n_batches, 0);
        ck_assert_int_eq(b2.state, BATCH_MARK_DUE);
        relay_mark_set_free(&set);
        /* Row 1 comes back unpublished (producer rebuilt). */
        r1[0].state = ROW_UNSENT;
        b1.outstanding = 0;
        ck_assert_int_eq(batch_unsent_overtaken(&b1, &r1[0]), 0);
        batch_set_state(&b1, BATCH_REPORTED);
        relay_marks_due(m, &b1, 0);
        ck_assert_int_eq(b1.state, BATCH_MARKED); /* nothing sent */
        ck_assert(relay_marks_ready(&b1));
        ck_assert_int_eq(relay_marks_collect(m, &b1, &set, 0), 0);
        ck_assert_uint_eq(set.rows.n, 1);
        ck_assert_int_eq(set.rows.ids[0], 2);
        ck_assert_int_eq(r2[1].state, ROW_UNSENT);
        ck_assert(b2.left_pending);
        ck_assert_int_eq(b2.state, BATCH_MARKING);
        relay_mark_set_free(&set);
        relay_marks_free(m);
}
END_TEST

static Suite *relay_mark_suite(void)
{
        Suite *s = suite_create("relay_mark");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_collect_names_sent_rows_in_order);
        tcase_add_test(tc, test_due_and_when);
        tcase_add_test(tc, test_batch_size_marks_at_once);
        tcase_add_test(tc, test_due_only_when_reported);
        tcase_add_test(tc, test_pipeline_full);
        tcase_add_test(tc, test_pipeline_not_held_by_marks_on_their_way);
        tcase_add_test(tc, test_later_row_of_unrecorded_failure_held_back);
        tcase_add_test(tc, test_later_batch_waits_for_earlier_reports);
        suite_add_tcase(s, tc);
        return s;
}

Suite *test_suite(void)
{
        return relay_mark_suite();
}
