/* Unit tests of relay_floor, the fetch floor: it passes only ids whose
 * writers have all ended, never moves on a fetch that left rows out or
 * that a lowering overtook, goes back to the lowest id on a rewind, a
 * sequence set back or a new session, and stays at 0 when ids are cached. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "runner.h"

#include "backoff.h"
#include "relay_floor.h"

static struct relay_floor *f;

static void setup(void)
{
        f = relay_floor_new(NULL);
        ck_assert_ptr_nonnull(f);
}

static void teardown(void)
{
        relay_floor_free(f);
}

static unsigned look(int64_t now, int64_t last_id, long long rewinds, const char *writers,
                     int earlier_done)
{
        struct relay_floor_writers w = {last_id, rewinds, 1, writers, earlier_done};

        if (relay_floor_next_at(f) > now) {
                /* Looks follow fetches: one that leaves rows out moves
                 * nothing; with enough rows the look is due at once. */
                relay_floor_for_fetch(f, 0, now);
                relay_floor_fetched(f, RELAY_FLOOR_LOOK_ROWS, 0, 0);
        }
        ck_assert_ptr_nonnull(relay_floor_look(f, now));
        return relay_floor_writers(f, &w);
}

/* A fetch that may advance and returns fewer rows than its limit lifts the
 * floor to what was settled when it was sent. */
static int64_t fetch_round(int64_t now, int n, int64_t last_id, int full)
{
        int64_t at = relay_floor_for_fetch(f, 1, now);

        relay_floor_fetched(f, n, last_id, full);
        return at;
}

START_TEST(test_advances_to_settled)
{
        /* The first look takes the rewind count as it is: hold keys back
         * until checked (a former leader may have left failures). */
        ck_assert_uint_eq(look(0, 100, 0, "{}", 0), RELAY_FLOOR_FETCH | RELAY_FLOOR_REWOUND);
        ck_assert_int_eq(fetch_round(1, 3, 100, 0), 0);
        ck_assert_int_eq(relay_floor_for_fetch(f, 1, 2), 100);
        ck_assert_int_eq(relay_floor_fetching(f), 100);
}
END_TEST

/* A full batch: rows above its last one were not looked at. */
START_TEST(test_full_batch_caps)
{
        look(0, 100, 0, "{}", 0);
        fetch_round(1, 10, 40, 1);
        ck_assert_int_eq(relay_floor_for_fetch(f, 1, 2), 40);
}
END_TEST

/* A fetch that left rows out (held keys, failing rows) moves nothing. */
START_TEST(test_no_advance_when_rows_left_out)
{
        look(0, 100, 0, "{}", 0);
        relay_floor_for_fetch(f, 0, 1);
        relay_floor_fetched(f, 3, 100, 0);
        ck_assert_int_eq(relay_floor_for_fetch(f, 1, 2), 0);
}
END_TEST

/* A row went back to the table while the fetch ran: it left that row out. */
START_TEST(test_lowered_while_fetching)
{
        look(0, 100, 0, "{}", 0);
        fetch_round(1, 1, 100, 0);
        relay_floor_for_fetch(f, 1, 2);
        relay_floor_lower(f);
        relay_floor_fetched(f, 1, 100, 0);
        ck_assert_int_eq(relay_floor_for_fetch(f, 1, 3), 0);
}
END_TEST

/* An id is settled only once every writer seen with it has ended. */
START_TEST(test_waits_for_writers)
{
        look(0, 50, 0, "{}", 0);
        ck_assert_uint_eq(look(100, 100, 0, "{123}", 0), 0);
        fetch_round(101, 1, 100, 0);
        ck_assert_int_eq(relay_floor_for_fetch(f, 1, 102), 50); /* 100 not settled */
        relay_floor_fetched(f, 0, 0, 0);
        /* The next look (500 ms on: few rows came) asks about the earlier
         * writers: still one left. */
        ck_assert_str_eq(relay_floor_look(f, 600), "{123}");
        {
                struct relay_floor_writers w = {120, 0, 1, "{124}", 1};

                ck_assert_uint_eq(relay_floor_writers(f, &w), 0);
        }
        fetch_round(601, 1, 100, 0);
        ck_assert_int_eq(relay_floor_for_fetch(f, 1, 602), 100);
}
END_TEST

/* Rows made pending again: back to the lowest id, and the loop checks
 * for failing rows; the same count again is no news. */
START_TEST(test_rewind_lowers)
{
        look(0, 100, 5, "{}", 0);
        fetch_round(1, 1, 100, 0);
        ck_assert_uint_eq(look(100, 100, 5, "{}", 0), 0);
        ck_assert_int_eq(relay_floor_for_fetch(f, 1, 101), 100);
        relay_floor_fetched(f, 0, 0, 0);
        ck_assert_uint_eq(look(200, 100, 6, "{}", 0), RELAY_FLOOR_FETCH | RELAY_FLOOR_REWOUND);
        ck_assert_int_eq(relay_floor_for_fetch(f, 1, 201), 0);
}
END_TEST

/* TRUNCATE ... RESTART IDENTITY: ids below the floor are drawn again. */
START_TEST(test_sequence_back_lowers)
{
        look(0, 100, 0, "{}", 0);
        fetch_round(1, 1, 100, 0);
        ck_assert(look(100, 10, 0, "{}", 0) & RELAY_FLOOR_FETCH);
        ck_assert_int_eq(relay_floor_for_fetch(f, 1, 101), 0);
        relay_floor_fetched(f, 1, 10, 0);
        ck_assert_int_eq(relay_floor_for_fetch(f, 1, 102), 10);
}
END_TEST

/* Cached ids say nothing about when an id is settled: the floor stays 0
 * and no more looks are sent. */
START_TEST(test_cache_disables)
{
        struct relay_floor_writers w = {100, 0, 20, "{}", 0};

        relay_floor_for_fetch(f, 1, 0);
        ck_assert_ptr_nonnull(relay_floor_look(f, 0));
        ck_assert_uint_eq(relay_floor_writers(f, &w), RELAY_FLOOR_FETCH);
        relay_floor_fetched(f, 1, 100, 0);
        ck_assert_int_eq(relay_floor_for_fetch(f, 1, 100), 0);
        ck_assert_ptr_null(relay_floor_look(f, 1000));
        ck_assert(relay_floor_next_at(f) == INT64_MAX);
}
END_TEST

/* A new session, perhaps another server: nothing learnt is kept. */
START_TEST(test_forget)
{
        look(0, 100, 0, "{7}", 0);
        look(100, 100, 0, "{}", 0);
        fetch_round(101, 1, 100, 0);
        relay_floor_forget(f);
        ck_assert_int_eq(relay_floor_for_fetch(f, 1, 102), 0);
        relay_floor_fetched(f, 1, 100, 0);
        ck_assert_int_eq(relay_floor_for_fetch(f, 1, 103), 0); /* nothing settled */
        /* The first look of the new session takes the count as it is. */
        relay_floor_fetched(f, 0, 0, 0);
        ck_assert_uint_eq(look(104, 100, 0, "{}", 0), RELAY_FLOOR_FETCH | RELAY_FLOOR_REWOUND);
}
END_TEST

/* The sweep: once a minute a fetch starts from the lowest id, to find rows
 * inserted below the floor by hand. */
START_TEST(test_sweep)
{
        look(0, 100, 0, "{}", 0);
        fetch_round(1, 1, 100, 0);
        ck_assert_int_eq(relay_floor_for_fetch(f, 1, 59999), 100);
        relay_floor_fetched(f, 0, 0, 0);
        ck_assert_int_eq(relay_floor_for_fetch(f, 1, 60001), 0);
}
END_TEST

/* Looks: one after a fetch, none while one runs, and a failed one backs off. */
START_TEST(test_look_scheduling)
{
        struct backoff bo;

        backoff_init(&bo, 100, 5000, 1);
        ck_assert_ptr_null(relay_floor_look(f, 0)); /* nothing asked for */
        relay_floor_for_fetch(f, 1, 0);
        ck_assert_int_eq(relay_floor_next_at(f), 0);
        ck_assert_str_eq(relay_floor_look(f, 0), "{}");
        relay_floor_for_fetch(f, 1, 1);
        ck_assert_ptr_null(relay_floor_look(f, 1000)); /* one is running */
        relay_floor_look_failed(f, 1, &bo, 1000);
        ck_assert_int_ge(relay_floor_next_at(f), 1050);
        ck_assert_ptr_null(relay_floor_look(f, 1049));
        /* Not connected: no backoff, sent again once reconnected. */
        ck_assert_ptr_nonnull(relay_floor_look(f, relay_floor_next_at(f)));
        relay_floor_look_failed(f, 0, &bo, 9000);
        relay_floor_for_fetch(f, 1, 9000);
        ck_assert_int_le(relay_floor_next_at(f), 9000);
}
END_TEST

/* Looks follow the rows: after a few rows the next waits 500 ms, after
 * RELAY_FLOOR_LOOK_ROWS of them 20 ms; a rewind waiting for its writers is
 * looked at every 20 ms whatever the rows. */
START_TEST(test_look_cadence)
{
        look(0, 100, 0, "{}", 0);
        fetch_round(5, 3, 103, 0);
        ck_assert_int_eq(relay_floor_next_at(f), 500);
        ck_assert_ptr_null(relay_floor_look(f, 499));
        relay_floor_writers(f, &(struct relay_floor_writers){103, 0, 1, "{}", 0});
        fetch_round(510, 3, 106, 0);
        ck_assert_str_eq(relay_floor_look(f, 510), "{}"); /* 500 ms since the last */
        relay_floor_writers(f, &(struct relay_floor_writers){106, 0, 1, "{}", 0});
        fetch_round(515, RELAY_FLOOR_LOOK_ROWS - 1, 300, 0);
        ck_assert_int_eq(relay_floor_next_at(f), 1010);
        fetch_round(520, 1, 301, 0);
        ck_assert_int_eq(relay_floor_next_at(f), 530);
        ck_assert_ptr_nonnull(relay_floor_look(f, 530));
        /* A rewind seen while a writer holds the lock: its rows wait for
         * the writer's end, so the next look comes after 20 ms. */
        relay_floor_writers(f, &(struct relay_floor_writers){310, 1, 1, "{77}", 0});
        fetch_round(535, 1, 310, 0);
        ck_assert_int_eq(relay_floor_next_at(f), 550);
        ck_assert_str_eq(relay_floor_look(f, 550), "{77}");
}
END_TEST

static Suite *relay_floor_suite(void)
{
        Suite *s = suite_create("relay_floor");
        TCase *tc = tcase_create("core");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_advances_to_settled);
        tcase_add_test(tc, test_full_batch_caps);
        tcase_add_test(tc, test_no_advance_when_rows_left_out);
        tcase_add_test(tc, test_lowered_while_fetching);
        tcase_add_test(tc, test_waits_for_writers);
        tcase_add_test(tc, test_rewind_lowers);
        tcase_add_test(tc, test_sequence_back_lowers);
        tcase_add_test(tc, test_cache_disables);
        tcase_add_test(tc, test_forget);
        tcase_add_test(tc, test_sweep);
        tcase_add_test(tc, test_look_scheduling);
        tcase_add_test(tc, test_look_cadence);
        suite_add_tcase(s, tc);
        return s;
}

Suite *test_suite(void)
{
        return relay_floor_suite();
}
