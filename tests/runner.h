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

/* The same for one iteration i of a loop test, named `name`. */
TCase *runner_add_loop(Suite *s, const char *name, const TTest *t, int i, const char *tags,
                       const struct runner_servers *srv, int timeout_s);

#endif
