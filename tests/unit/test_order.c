/* Unit tests of the per-key order checker every end-to-end test uses
 * (fh_key_order in tests/integration/fault_harness.c): the first copy of
 * each event, in log order, must ascend by id within a key; other keys,
 * keyless messages and later copies do not count. */
#include <string.h>

#include <check.h>

#include "fault_harness.h"
#include "fixture.h"
#include "runner.h"

/* Messages of the given keys ("" for none) in log order, and their firsts. */
static struct fx_msg msgs[8];
static struct fh_first firsts[8];

static size_t make(const char *const keys[], const long long ids[], size_t n)
{
        memset(msgs, 0, sizeof(msgs));
        for (size_t i = 0; i < n; i++) {
                msgs[i].key = *keys[i] ? (char *)keys[i] : NULL;
                msgs[i].key_len = strlen(keys[i]);
                msgs[i].offset = (int64_t)i;
                firsts[i] = (struct fh_first){&msgs[i], i, ids[i]};
        }
        return n;
}

START_TEST(test_ascending_keys_interleaved)
{
        static const char *const keys[] = {"a", "b", "a", "b", "a"};
        static const long long ids[] = {1, 2, 3, 4, 7};
        char note[256] = "";

        ck_assert_int_eq(fh_key_order(firsts, make(keys, ids, 5), note, sizeof(note)), 0);
        ck_assert_str_eq(note, "");
}
END_TEST

START_TEST(test_one_key_out_of_order)
{
        static const char *const keys[] = {"a", "b", "a", "a"};
        static const long long ids[] = {1, 2, 5, 3};
        char note[256] = "seen before";

        ck_assert_int_eq(fh_key_order(firsts, make(keys, ids, 4), note, sizeof(note)), 1);
        ck_assert_msg(strstr(note, "seen before; order: key a has 5") != NULL, "%s", note);
        ck_assert_int_eq(fh_key_order(firsts, make(keys, ids, 4), NULL, 0), 1);
}
END_TEST

/* Descending across keys, and among keyless messages, is no violation;
 * "a" and "ab" are two keys. */
START_TEST(test_other_keys_and_keyless_do_not_count)
{
        static const char *const keys[] = {"ab", "a", "", "", "b"};
        static const long long ids[] = {9, 8, 7, 6, 1};

        ck_assert_int_eq(fh_key_order(firsts, make(keys, ids, 5), NULL, 0), 0);
}
END_TEST

/* Log order is pos, not the order the firsts are given in. */
START_TEST(test_log_order_is_pos)
{
        static const char *const keys[] = {"k", "k", "k"};
        static const long long ids[] = {3, 1, 2};
        size_t n = make(keys, ids, 3);

        /* In the log: 1 (pos 0), 2 (pos 1), 3 (pos 2). */
        firsts[0].pos = 2;
        firsts[1].pos = 0;
        firsts[2].pos = 1;
        ck_assert_int_eq(fh_key_order(firsts, n, NULL, 0), 0);
        n = make(keys, ids, 3);
        ck_assert_int_eq(fh_key_order(firsts, n, NULL, 0), 1);
}
END_TEST

Suite *test_suite(void)
{
        const TTest *const tests[] = {test_ascending_keys_interleaved, test_one_key_out_of_order,
                                      test_other_keys_and_keyless_do_not_count,
                                      test_log_order_is_pos, NULL};

        return runner_suite("order", "fh_key_order", NULL, 0, tests);
}
