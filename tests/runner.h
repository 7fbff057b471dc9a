/* runner: the one main() of the Check test programs. Each program defines
 * test_suite(); Check's own variables pick what runs (CK_RUN_SUITE,
 * CK_RUN_CASE, CK_INCLUDE_TAGS, CK_EXCLUDE_TAGS, CK_FORK, CK_VERBOSITY). */
#ifndef OUTBOX_TEST_RUNNER_H
#define OUTBOX_TEST_RUNNER_H

#include <check.h>

/* The program's suite, made before anything runs (environment set here is
 * seen by every test). */
Suite *test_suite(void);

/* Servers several test cases share: started by the first selected test
 * case that needs them, in the runner's process, and stopped once after
 * the run, so that a test case per test costs no restart. */
struct runner_servers {
        void (*start)(void);
        void (*stop)(void);
};

/* Adds test t as a test case of its own, named after its function, so that
 * CK_RUN_CASE=<function> runs just it. tags (space-separated, or NULL) are
 * given to it besides its name, for CK_INCLUDE_TAGS / CK_EXCLUDE_TAGS.
 * srv may be NULL (no servers); timeout_s 0 keeps Check's default. */
TCase *runner_add(Suite *s, const TTest *t, const char *tags, const struct runner_servers *srv,
                  int timeout_s);

/* runner_add for each of tests (NULL-terminated), in order. */
void runner_add_each(Suite *s, const TTest *const tests[], const struct runner_servers *srv,
                     int timeout_s);

/* A suite `name` of one test case `tc_name` holding tests (NULL-terminated)
 * in order, sharing the servers srv (or none) with that timeout (0:
 * Check's default). */
Suite *runner_suite(const char *name, const char *tc_name, const struct runner_servers *srv,
                    int timeout_s, const TTest *const tests[]);

/* The same for one iteration i of a loop test, named `name`. */
TCase *runner_add_loop(Suite *s, const char *name, const TTest *t, int i, const char *tags,
                       const struct runner_servers *srv, int timeout_s);

#endif
