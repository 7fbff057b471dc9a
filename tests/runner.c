/* runner: main() for every Check test program (see runner.h), and test
 * cases that share servers started once. Check selects the test cases;
 * the unchecked fixture of each starts the servers only when it runs. */
#include "runner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Check's fixtures take no argument: one trampoline per set of servers. */
#define RUNNER_MAX_SERVERS 4

enum runner_state { RUNNER_DOWN, RUNNER_STARTING, RUNNER_UP };

static struct {
        const struct runner_servers *srv;
        enum runner_state state;
} servers[RUNNER_MAX_SERVERS];
static int n_servers;

static void servers_start(int i)
{
        /* A start that failed (aborted by an assertion) must not be taken
         * for servers that are up by the next test case. */
        ck_assert_msg(servers[i].state != RUNNER_STARTING,
                      "the servers did not start for an earlier test case");
        if (servers[i].state == RUNNER_UP)
                return;
        servers[i].state = RUNNER_STARTING;
        servers[i].srv->start();
        servers[i].state = RUNNER_UP;
}

static void start0(void)
{
        servers_start(0);
}
static void start1(void)
{
        servers_start(1);
}
static void start2(void)
{
        servers_start(2);
}
static void start3(void)
{
        servers_start(3);
}

static void (*const trampolines[RUNNER_MAX_SERVERS])(void) = {start0, start1, start2, start3};

static int servers_index(const struct runner_servers *srv)
{
        for (int i = 0; i < n_servers; i++)
                if (servers[i].srv == srv)
                        return i;
        if (n_servers == RUNNER_MAX_SERVERS) {
                fprintf(stderr, "runner: more than %d sets of servers\n", RUNNER_MAX_SERVERS);
                exit(2);
        }
        servers[n_servers].srv = srv;
        return n_servers++;
}

static TCase *test_case(Suite *s, const char *name, const char *tags,
                        const struct runner_servers *srv, int timeout_s)
{
        TCase *tc = tcase_create(name);
        char all[512];

        snprintf(all, sizeof(all), "%s%s%s", name, tags ? " " : "", tags ? tags : "");
        tcase_set_tags(tc, all);
        if (timeout_s > 0)
                tcase_set_timeout(tc, timeout_s);
        if (srv)
                tcase_add_unchecked_fixture(tc, trampolines[servers_index(srv)], NULL);
        suite_add_tcase(s, tc);
        return tc;
}

TCase *runner_add(Suite *s, const TTest *t, const char *tags, const struct runner_servers *srv,
                  int timeout_s)
{
        TCase *tc = test_case(s, t->name, tags, srv, timeout_s);

        tcase_add_test(tc, t);
        return tc;
}

void runner_add_each(Suite *s, const TTest *const tests[], const struct runner_servers *srv,
                     int timeout_s)
{
        for (size_t i = 0; tests[i] != NULL; i++)
                runner_add(s, tests[i], NULL, srv, timeout_s);
}

Suite *runner_suite(const char *name, const char *tc_name, const struct runner_servers *srv,
                    int timeout_s, const TTest *const tests[])
{
        Suite *s = suite_create(name);
        TCase *tc = tcase_create(tc_name);

        if (timeout_s > 0)
                tcase_set_timeout(tc, timeout_s);
        if (srv)
                tcase_add_unchecked_fixture(tc, trampolines[servers_index(srv)], NULL);
        for (size_t i = 0; tests[i] != NULL; i++)
                tcase_add_test(tc, tests[i]);
        suite_add_tcase(s, tc);
        return s;
}

TCase *runner_add_loop(Suite *s, const char *name, const TTest *t, int i, const char *tags,
                       const struct runner_servers *srv, int timeout_s)
{
        TCase *tc = test_case(s, name, tags, srv, timeout_s);

        tcase_add_loop_test(tc, t, i, i + 1);
        return tc;
}

/* Stops the servers in a test case of a runner of its own: Check's
 * assertions (the fixtures use them) work only while a test case runs. */
static void servers_stop(void)
{
        for (int i = n_servers - 1; i >= 0; i--) {
                if (servers[i].state != RUNNER_DOWN && servers[i].srv->stop)
                        servers[i].srv->stop();
                servers[i].state = RUNNER_DOWN;
        }
}

START_TEST(servers_stopped)
{
}
END_TEST

static int stop_servers(void)
{
        Suite *s = suite_create("runner");
        TCase *tc = tcase_create("stop");
        SRunner *sr;
        int failed;

        tcase_set_tags(tc, "runner-stop");
        /* The unchecked setup runs in this process, where the servers are. */
        tcase_add_unchecked_fixture(tc, servers_stop, NULL);
        tcase_add_test(tc, servers_stopped);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        /* Named explicitly, so that the caller's CK_* do not leave it out. */
        srunner_run_tagged(sr, "runner", "stop", "runner-stop", "", CK_SILENT);
        failed = srunner_ntests_failed(sr);
        if (failed) {
                TestResult **tr = srunner_failures(sr);

                for (int i = 0; i < failed; i++)
                        fprintf(stderr, "stopping the servers: %s\n", tr_msg(tr[i]));
                free(tr);
        }
        srunner_free(sr);
        return failed;
}

int main(void)
{
        SRunner *sr = srunner_create(test_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        for (int i = 0; i < n_servers; i++)
                if (servers[i].state != RUNNER_DOWN) {
                        failed += stop_servers();
                        break;
                }
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
