/* Unit tests of route: rule parsing, topic name rules, and the precedence
 * of a row's own topic, exact rules, the longest prefix, "*" and the
 * default topic, checked against a brute-force reference on many rules. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "config.h"
#include "route.h"
#include "runner.h"

static char errbuf[256];

static struct route *make(const char *const *texts, size_t n, const char *default_topic)
{
        struct config_kv *kv = calloc(n + 1, sizeof(*kv));
        struct route *rt;

        ck_assert_ptr_nonnull(kv);
        for (size_t i = 0; i < n; i++)
                ck_assert_msg(route_parse_rule(texts[i], &kv[i], errbuf, sizeof(errbuf)) == 0,
                              "rule %s: %s", texts[i], errbuf);
        errbuf[0] = '\0';
        rt = route_new(kv, n, default_topic, errbuf, sizeof(errbuf));
        for (size_t i = 0; i < n; i++) {
                free(kv[i].name);
                free(kv[i].value);
        }
        free(kv);
        return rt;
}

static void expect_topic(const struct route *rt, const char *event_type, const char *want)
{
        const char *got;

        errbuf[0] = '\0';
        got = route_topic(rt, NULL, event_type, errbuf, sizeof(errbuf));
        ck_assert_msg(got != NULL, "no topic for %s: %s", event_type, errbuf);
        ck_assert_str_eq(got, want);
}

START_TEST(test_topic_names)
{
        char name[260];

        ck_assert(route_topic_name_ok("orders"));
        ck_assert(route_topic_name_ok("Orders.v1_x-y"));
        ck_assert(route_topic_name_ok("..."));
        ck_assert(!route_topic_name_ok(""));
        ck_assert(!route_topic_name_ok(NULL));
        ck_assert(!route_topic_name_ok("."));
        ck_assert(!route_topic_name_ok(".."));
        ck_assert(!route_topic_name_ok("a b"));
        ck_assert(!route_topic_name_ok("a/b"));
        ck_assert(!route_topic_name_ok("a=b"));
        ck_assert(!route_topic_name_ok("caf\xc3\xa9"));
        memset(name, 'a', ROUTE_TOPIC_MAX);
        name[ROUTE_TOPIC_MAX] = '\0';
        ck_assert(route_topic_name_ok(name));
        name[ROUTE_TOPIC_MAX] = 'a';
        name[ROUTE_TOPIC_MAX + 1] = '\0';
        ck_assert(!route_topic_name_ok(name));
}
END_TEST

START_TEST(test_parse_rule)
{
        struct config_kv kv;

        ck_assert_int_eq(route_parse_rule("order.created=orders", &kv, errbuf, sizeof(errbuf)), 0);
        ck_assert_str_eq(kv.name, "order.created");
        ck_assert_str_eq(kv.value, "orders");
        free(kv.name);
        free(kv.value);

        ck_assert_int_eq(route_parse_rule("  user.* =\tusers ", &kv, errbuf, sizeof(errbuf)), 0);
        ck_assert_str_eq(kv.name, "user.*");
        ck_assert_str_eq(kv.value, "users");
        free(kv.name);
        free(kv.value);

        ck_assert_int_eq(route_parse_rule("*=all", &kv, errbuf, sizeof(errbuf)), 0);
        ck_assert_str_eq(kv.name, "*");
        free(kv.name);
        free(kv.value);

        /* Topics cannot hold '=', so the last one separates. */
        ck_assert_int_eq(route_parse_rule("k=v=t", &kv, errbuf, sizeof(errbuf)), 0);
        ck_assert_str_eq(kv.name, "k=v");
        ck_assert_str_eq(kv.value, "t");
        free(kv.name);
        free(kv.value);
}
END_TEST

static const char *const bad_rules[] = {
    "orders",      /* no '=' */
    "=orders",     /* empty pattern */
    " =orders",    /* blank pattern */
    "a=",          /* empty topic */
    "a=bad topic", /* illegal topic */
    "a=..",        /* illegal topic */
    "user*=t",     /* '*' not after '.' */
    "*.x=t",       /* '*' not at the end */
    "a.**=t",      /* two stars */
    "a.*.b=t",     /* '*' in the middle */
};

START_TEST(test_parse_rule_errors)
{
        struct config_kv kv = {(char *)"x", (char *)"y", 0};

        errbuf[0] = '\0';
        ck_assert_int_eq(route_parse_rule(bad_rules[_i], &kv, errbuf, sizeof(errbuf)), -1);
        ck_assert_msg(errbuf[0] != '\0', "no message for %s", bad_rules[_i]);
        ck_assert_ptr_null(kv.name);
        ck_assert_ptr_null(kv.value);
}
END_TEST

START_TEST(test_precedence)
{
        static const char *const rules[] = {
            "*=fallback",
            "user.*=users",
            "user.admin.*=admins",
            "user.admin.created=admin_created",
            "order.created=orders_created",
        };
        struct route *rt = make(rules, 5, "default_t");

        ck_assert_ptr_nonnull(rt);
        /* A row's own topic always wins. */
        ck_assert_str_eq(route_topic(rt, "own", "user.admin.created", errbuf, sizeof(errbuf)),
                         "own");
        /* Exact beats every prefix. */
        expect_topic(rt, "user.admin.created", "admin_created");
        expect_topic(rt, "order.created", "orders_created");
        /* Longest prefix wins, at any depth. */
        expect_topic(rt, "user.admin.deleted", "admins");
        expect_topic(rt, "user.admin.x.y.z", "admins");
        expect_topic(rt, "user.created", "users");
        expect_topic(rt, "user.a.b", "users");
        /* Prefixes match at a dot boundary only. */
        expect_topic(rt, "username", "fallback");
        expect_topic(rt, "user", "fallback");
        expect_topic(rt, "user.admin", "users");
        /* "*" takes everything else, so the default is never needed for typed rows. */
        expect_topic(rt, "order.deleted", "fallback");
        expect_topic(rt, "x", "fallback");
        /* An empty own topic counts as none. */
        ck_assert_str_eq(route_topic(rt, "", "order.created", errbuf, sizeof(errbuf)),
                         "orders_created");
        /* No event type: only the default applies. */
        ck_assert_str_eq(route_topic(rt, NULL, NULL, errbuf, sizeof(errbuf)), "default_t");
        route_free(rt);
}
END_TEST

START_TEST(test_default_and_no_match)
{
        static const char *const rules[] = {"user.*=users"};
        struct route *rt = make(rules, 1, "dflt");

        expect_topic(rt, "order.created", "dflt");
        route_free(rt);

        rt = make(rules, 1, "");
        ck_assert_ptr_nonnull(rt);
        ck_assert_ptr_null(route_topic(rt, NULL, "order.created", errbuf, sizeof(errbuf)));
        ck_assert_str_eq(errbuf,
                         "no route for event_type \"order.created\" and no --default-topic");
        ck_assert_ptr_null(route_topic(rt, NULL, NULL, errbuf, sizeof(errbuf)));
        ck_assert_str_eq(errbuf, "row has neither topic nor event_type and no --default-topic");
        ck_assert_ptr_null(route_topic(rt, NULL, "", errbuf, sizeof(errbuf)));
        ck_assert_str_eq(errbuf, "row has neither topic nor event_type and no --default-topic");
        route_free(rt);

        /* No rules at all, no default. */
        rt = route_new(NULL, 0, NULL, errbuf, sizeof(errbuf));
        ck_assert_ptr_nonnull(rt);
        ck_assert_ptr_null(route_topic(rt, NULL, "a", errbuf, sizeof(errbuf)));
        ck_assert_str_eq(route_topic(rt, "t", "a", errbuf, sizeof(errbuf)), "t");
        route_free(rt);
        route_free(NULL);
}
END_TEST

START_TEST(test_duplicates)
{
        static const char *const exact[] = {"a.b=t1", "c=t3", "a.b=t2"};
        static const char *const prefix[] = {"a.*=t1", "a.*=t2"};
        static const char *const star[] = {"*=t1", "*=t2"};
        static const char *const distinct[] = {"a=t1", "a.*=t2", "*=t3"};
        struct route *rt;

        ck_assert_ptr_null(make(exact, 3, NULL));
        ck_assert_str_eq(errbuf, "duplicate exact route pattern \"a.b\"");
        ck_assert_ptr_null(make(prefix, 2, NULL));
        ck_assert_str_eq(errbuf, "duplicate prefix route pattern \"a.*\"");
        ck_assert_ptr_null(make(star, 2, NULL));
        ck_assert_str_eq(errbuf, "duplicate prefix route pattern \"*\"");
        rt = make(distinct, 3, NULL);
        ck_assert_ptr_nonnull(rt);
        route_free(rt);
}
END_TEST

START_TEST(test_new_validates)
{
        struct config_kv bad_topic = {(char *)"a", (char *)"no good", 0};
        struct config_kv bad_pattern = {(char *)"a*b", (char *)"t", 0};
        struct config_kv good = {(char *)"a", (char *)"t", 0};

        ck_assert_ptr_null(route_new(&bad_topic, 1, NULL, errbuf, sizeof(errbuf)));
        ck_assert_ptr_nonnull(strstr(errbuf, "no good"));
        ck_assert_ptr_null(route_new(&bad_pattern, 1, NULL, errbuf, sizeof(errbuf)));
        ck_assert_ptr_nonnull(strstr(errbuf, "a*b"));
        ck_assert_ptr_null(route_new(&good, 1, "bad default", errbuf, sizeof(errbuf)));
        ck_assert_ptr_nonnull(strstr(errbuf, "bad default"));
}
END_TEST

/* What a writer may not reach, whatever the allow-list says. */
START_TEST(test_guard_refuses)
{
        struct route *rt = route_new(NULL, 0, NULL, errbuf, sizeof(errbuf));

        ck_assert_ptr_nonnull(rt);
        ck_assert_int_eq(route_guard(rt, NULL, "progress", errbuf, sizeof(errbuf)), 0);
        ck_assert_int_eq(route_refused(rt, "orders", errbuf, sizeof(errbuf)), 0);
        ck_assert_int_eq(route_refused(rt, "_single", errbuf, sizeof(errbuf)), 0);
        ck_assert_int_eq(route_refused(rt, "progress2", errbuf, sizeof(errbuf)), 0);
        ck_assert_int_eq(route_refused(rt, "__consumer_offsets", errbuf, sizeof(errbuf)), -1);
        ck_assert_str_eq(errbuf, "topic \"__consumer_offsets\" is refused: names starting with "
                                 "\"__\" are Kafka's internal topics");
        ck_assert_int_eq(route_refused(rt, "__", errbuf, sizeof(errbuf)), -1);
        ck_assert_int_eq(route_refused(rt, "progress", errbuf, sizeof(errbuf)), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "progress topic"));
        route_free(rt);
}
END_TEST

START_TEST(test_guard_allow_list)
{
        struct config_kv kv[] = {{.name = (char *)"a", .value = (char *)"orders"},
                                 {.name = (char *)"b.*", .value = (char *)"b-x"}};
        struct route *rt = route_new(kv, 2, "orders", errbuf, sizeof(errbuf));

        ck_assert_ptr_nonnull(rt);
        ck_assert_int_eq(route_guard(rt, " orders ,, b-*,q?,__*", NULL, errbuf, sizeof(errbuf)), 0);
        ck_assert_int_eq(route_refused(rt, "orders", errbuf, sizeof(errbuf)), 0);
        ck_assert_int_eq(route_refused(rt, "b-anything", errbuf, sizeof(errbuf)), 0);
        ck_assert_int_eq(route_refused(rt, "qz", errbuf, sizeof(errbuf)), 0);
        ck_assert_int_eq(route_refused(rt, "qzz", errbuf, sizeof(errbuf)), -1);
        ck_assert_str_eq(errbuf, "topic \"qzz\" is refused: it matches no pattern of "
                                 "--allowed-topics");
        ck_assert_int_eq(route_refused(rt, "orders2", errbuf, sizeof(errbuf)), -1);
        /* A pattern cannot let internal topics through. */
        ck_assert_int_eq(route_refused(rt, "__consumer_offsets", errbuf, sizeof(errbuf)), -1);
        route_free(rt);

        /* Targets the configuration names are checked at once. */
        rt = route_new(kv, 2, NULL, errbuf, sizeof(errbuf));
        ck_assert_int_eq(route_guard(rt, "orders", NULL, errbuf, sizeof(errbuf)), -1);
        ck_assert_str_eq(errbuf, "route \"b.*\": topic \"b-x\" is refused: it matches no "
                                 "pattern of --allowed-topics");
        route_free(rt);
        rt = route_new(NULL, 0, "p", errbuf, sizeof(errbuf));
        ck_assert_int_eq(route_guard(rt, NULL, "p", errbuf, sizeof(errbuf)), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "--default-topic: topic \"p\" is refused"));
        route_free(rt);
        rt = route_new(NULL, 0, NULL, errbuf, sizeof(errbuf));
        ck_assert_int_eq(route_guard(rt, "ok,bad[x]", NULL, errbuf, sizeof(errbuf)), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "invalid --allowed-topics pattern \"bad[x]\""));
        route_free(rt);
        rt = route_new(NULL, 0, NULL, errbuf, sizeof(errbuf));
        ck_assert_int_eq(route_guard(rt, " ,", NULL, errbuf, sizeof(errbuf)), -1);
        ck_assert_str_eq(errbuf, "--allowed-topics names no pattern");
        route_free(rt);
}
END_TEST

/* The rules outlive the config_kv array they were compiled from. */
START_TEST(test_copies_rules)
{
        struct config_kv kv[2];
        char pattern[] = "a.*", topic[] = "t1", dflt[] = "d";
        struct route *rt;

        kv[0].name = pattern;
        kv[0].value = topic;
        kv[1].name = (char *)"b";
        kv[1].value = (char *)"t2";
        rt = route_new(kv, 2, dflt, errbuf, sizeof(errbuf));
        ck_assert_ptr_nonnull(rt);
        pattern[0] = 'z';
        topic[1] = '9';
        dflt[0] = 'x';
        expect_topic(rt, "a.x", "t1");
        expect_topic(rt, "q", "d");
        route_free(rt);
}
END_TEST

/* The reference: the brute-force reading of the rules in route.h. */
static const char *reference(char patterns[][16], char topics[][16], size_t n,
                             const char *event_type)
{
        const char *best = NULL;
        size_t best_len = 0;

        for (size_t i = 0; i < n; i++)
                if (strcmp(patterns[i], event_type) == 0)
                        return topics[i];
        for (size_t i = 0; i < n; i++) {
                size_t len = strlen(patterns[i]);

                if (patterns[i][len - 1] != '*')
                        continue;
                len--;
                if (strncmp(patterns[i], event_type, len) == 0 &&
                    (best == NULL || len > best_len)) {
                        best = topics[i];
                        best_len = len;
                }
        }
        return best;
}

/* Many rules over a small alphabet, so prefixes nest and collide often,
 * given in a scrambled order; every event type is checked. */
START_TEST(test_against_reference)
{
        enum { MAXR = 200 };
        static char patterns[MAXR][16], topics[MAXR][16];
        static const char *const parts[] = {"a", "b", "ab", "c"};
        struct config_kv kv[MAXR];
        size_t n = 0;
        struct route *rt;
        uint64_t x = 88172645463325252ULL;

        while (n < MAXR) {
                char p[16] = "";
                int depth, is_prefix, dup = 0;

                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                depth = 1 + (int)(x % 3);
                is_prefix = (int)((x >> 8) % 2);
                for (int d = 0; d < depth; d++) {
                        if (d > 0)
                                strcat(p, ".");
                        strcat(p, parts[(x >> (16 + 2 * d)) % 4]);
                }
                if (is_prefix)
                        strcat(p, ".*");
                if ((x >> 40) % 50 == 0)
                        strcpy(p, "*");
                for (size_t i = 0; i < n; i++)
                        dup |= strcmp(patterns[i], p) == 0;
                if (dup) {
                        if (n >= 60) /* every distinct pattern is taken */
                                break;
                        continue;
                }
                strcpy(patterns[n], p);
                snprintf(topics[n], sizeof(topics[n]), "t%zu", n);
                kv[n].name = patterns[n];
                kv[n].value = topics[n];
                n++;
        }
        ck_assert_uint_gt(n, 30);
        rt = route_new(kv, n, NULL, errbuf, sizeof(errbuf));
        ck_assert_msg(rt != NULL, "%s", errbuf);
        for (int a = 0; a < 5; a++)
                for (int b = 0; b < 5; b++)
                        for (int c = 0; c < 5; c++) {
                                static const char *const seg[] = {"a", "b", "ab", "c", "d"};
                                char ev[32];
                                const char *want, *got;

                                snprintf(ev, sizeof(ev), "%s.%s.%s", seg[a], seg[b], seg[c]);
                                for (int cut = 0; cut < 3; cut++) {
                                        if (cut > 0)
                                                *strrchr(ev, '.') = '\0';
                                        want = reference(patterns, topics, n, ev);
                                        got = route_topic(rt, NULL, ev, errbuf, sizeof(errbuf));
                                        if (want == NULL)
                                                ck_assert_msg(got == NULL, "%s -> %s", ev, got);
                                        else
                                                ck_assert_msg(got != NULL && strcmp(got, want) == 0,
                                                              "%s: want %s got %s", ev, want,
                                                              got ? got : "(null)");
                                }
                        }
        route_free(rt);
}
END_TEST

Suite *test_suite(void)
{
        Suite *s = suite_create("route");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_topic_names);
        tcase_add_test(tc, test_parse_rule);
        tcase_add_loop_test(tc, test_parse_rule_errors, 0,
                            (int)(sizeof(bad_rules) / sizeof(bad_rules[0])));
        tcase_add_test(tc, test_precedence);
        tcase_add_test(tc, test_default_and_no_match);
        tcase_add_test(tc, test_duplicates);
        tcase_add_test(tc, test_new_validates);
        tcase_add_test(tc, test_copies_rules);
        tcase_add_test(tc, test_guard_refuses);
        tcase_add_test(tc, test_guard_allow_list);
        tcase_add_test(tc, test_against_reference);
        suite_add_tcase(s, tc);
        return s;
}
