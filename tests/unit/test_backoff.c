/* Unit tests of backoff: the ceiling doubles then stays at the cap without
 * overflowing, every delay lies in [ceiling/2, ceiling], and a seed fixes
 * the sequence. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include <check.h>

#include "backoff.h"
#include "runner.h"

START_TEST(test_ceiling_doubles_then_caps)
{
        static const int want[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000};
        struct backoff b;

        backoff_init(&b, 100, 5000, 1);
        for (int n = 1; n <= 9; n++)
                ck_assert_int_eq(backoff_ceiling_ms(&b, n), want[n - 1]);
        /* Attempt numbers below 1 are treated as the first attempt. */
        ck_assert_int_eq(backoff_ceiling_ms(&b, 0), 100);
        ck_assert_int_eq(backoff_ceiling_ms(&b, -5), 100);
}
END_TEST

/* base * 2^(n-1) would overflow int (and long long) for large n. */
START_TEST(test_ceiling_no_overflow)
{
        struct backoff b;

        backoff_init(&b, 1, 86400000, 1);
        ck_assert_int_eq(backoff_ceiling_ms(&b, 27), 67108864);
        ck_assert_int_eq(backoff_ceiling_ms(&b, 28), 86400000);
        ck_assert_int_eq(backoff_ceiling_ms(&b, 64), 86400000);
        ck_assert_int_eq(backoff_ceiling_ms(&b, 1000000), 86400000);
        ck_assert_int_eq(backoff_ceiling_ms(&b, INT_MAX), 86400000);

        backoff_init(&b, 86400000, 86400000, 1);
        ck_assert_int_eq(backoff_ceiling_ms(&b, 1), 86400000);
        ck_assert_int_eq(backoff_ceiling_ms(&b, INT_MAX), 86400000);

        backoff_init(&b, INT_MAX, INT_MAX, 1);
        ck_assert_int_eq(backoff_ceiling_ms(&b, 2), INT_MAX);
        ck_assert_int_le(backoff_delay_ms(&b, INT_MAX), INT_MAX);
        ck_assert_int_ge(backoff_delay_ms(&b, INT_MAX), INT_MAX / 2);

        /* A cap below the base wins. */
        backoff_init(&b, 1000, 300, 1);
        ck_assert_int_eq(backoff_ceiling_ms(&b, 1), 300);
}
END_TEST

START_TEST(test_delay_within_bounds)
{
        static const uint64_t seeds[] = {0, 1, 42, 0xFFFFFFFFFFFFFFFFULL};
        struct backoff b;

        for (size_t s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++) {
                backoff_init(&b, 1000, 300000, seeds[s]);
                for (int n = 1; n <= 100; n++) {
                        int ceiling = backoff_ceiling_ms(&b, n);

                        for (int k = 0; k < 200; k++) {
                                int d = backoff_delay_ms(&b, n);

                                ck_assert_int_ge(d, ceiling / 2);
                                ck_assert_int_le(d, ceiling);
                        }
                }
        }
}
END_TEST

/* Full jitter over the upper half: with a fixed seed, many draws reach
 * both ends of [ceiling/2, ceiling] rather than clustering. */
START_TEST(test_delay_spreads)
{
        struct backoff b;
        int lo = INT_MAX, hi = 0, tiny_seen[2] = {0, 0};

        backoff_init(&b, 1000, 1000, 7);
        for (int k = 0; k < 2000; k++) {
                int d = backoff_delay_ms(&b, 1);

                lo = d < lo ? d : lo;
                hi = d > hi ? d : hi;
        }
        ck_assert_int_lt(lo, 520);
        ck_assert_int_gt(hi, 980);

        /* Ceiling 1: the delay is 0 or 1 and both occur. */
        backoff_init(&b, 1, 1, 7);
        for (int k = 0; k < 200; k++) {
                int d = backoff_delay_ms(&b, 1);

                ck_assert(d == 0 || d == 1);
                tiny_seen[d] = 1;
        }
        ck_assert(tiny_seen[0] && tiny_seen[1]);
}
END_TEST

START_TEST(test_deterministic_for_seed)
{
        struct backoff a, b, c, z1, z2;
        int differ = 0;

        backoff_init(&a, 100, 100000, 12345);
        backoff_init(&b, 100, 100000, 12345);
        backoff_init(&c, 100, 100000, 54321);
        for (int n = 1; n <= 50; n++) {
                int da = backoff_delay_ms(&a, n), dc = backoff_delay_ms(&c, n);

                ck_assert_int_eq(da, backoff_delay_ms(&b, n));
                differ += da != dc;
        }
        ck_assert_int_gt(differ, 0);

        /* Seed 0 is replaced by a fixed nonzero seed: still random, still repeatable. */
        backoff_init(&z1, 100, 100000, 0);
        backoff_init(&z2, 100, 100000, 0);
        ck_assert(z1.rng != 0);
        differ = 0;
        for (int k = 0; k < 50; k++) {
                int d = backoff_delay_ms(&z1, 10);

                ck_assert_int_eq(d, backoff_delay_ms(&z2, 10));
                differ += d != backoff_delay_ms(&z1, 10);
                (void)backoff_delay_ms(&z2, 10);
        }
        ck_assert_int_gt(differ, 0);
}
END_TEST

Suite *test_suite(void)
{
        const TTest *const tests[] = {test_ceiling_doubles_then_caps, test_ceiling_no_overflow,
                                      test_delay_within_bounds,       test_delay_spreads,
                                      test_deterministic_for_seed,    NULL};

        return runner_suite("backoff", "core", NULL, 0, tests);
}
