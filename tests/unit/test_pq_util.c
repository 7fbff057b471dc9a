/* Unit tests of pq_util: libpq's messages on one line for the log and the
 * operator (the one helper of db, migrate and admin): lines joined, runs of
 * white space one space, the statement excerpt of a positioned error left
 * out, cut to the buffer, never empty. */
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "runner.h"

#include "pq_util.h"

START_TEST(test_joins_lines)
{
        char out[256];

        pq_error_line("connection to server at \"db\" (10.0.0.1), port 5432 failed: Connection "
                      "refused\n\tIs the server running on that host and accepting TCP/IP "
                      "connections?\n",
                      out, sizeof(out));
        ck_assert_str_eq(out, "connection to server at \"db\" (10.0.0.1), port 5432 failed: "
                              "Connection refused Is the server running on that host and "
                              "accepting TCP/IP connections?");
}
END_TEST

START_TEST(test_drops_statement_excerpt)
{
        char out[256];

        pq_error_line("ERROR:  column \"nope\" does not exist\nLINE 1: SELECT nope FROM t\n"
                      "               ^\nHINT:  Perhaps you meant \"note\".\n",
                      out, sizeof(out));
        ck_assert_str_eq(out, "ERROR: column \"nope\" does not exist HINT: Perhaps you meant "
                              "\"note\".");
}
END_TEST

START_TEST(test_never_empty)
{
        char out[32];

        pq_error_line(NULL, out, sizeof(out));
        ck_assert_str_eq(out, "unknown error");
        pq_error_line("\n \n", out, sizeof(out));
        ck_assert_str_eq(out, "unknown error");
}
END_TEST

START_TEST(test_cut_to_buffer)
{
        char out[8];

        pq_error_line("abcdefghijkl", out, sizeof(out));
        ck_assert_str_eq(out, "abcdefg");
        pq_error_line("ab\n  cd  ef", out, sizeof(out));
        ck_assert_str_eq(out, "ab cd e");
}
END_TEST

static Suite *pq_util_suite(void)
{
        Suite *s = suite_create("pq_util");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_joins_lines);
        tcase_add_test(tc, test_drops_statement_excerpt);
        tcase_add_test(tc, test_never_empty);
        tcase_add_test(tc, test_cut_to_buffer);
        suite_add_tcase(s, tc);
        return s;
}

Suite *test_suite(void)
{
        return pq_util_suite();
}
