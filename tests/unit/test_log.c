/* Unit tests of log (kept in the helper's build dir; suggested for
 * tests/unit): JSON shape, level filtering, bad field formats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <jansson.h>

#include "log.h"

static char *buf;
static size_t len;

static struct log *open_log(enum config_log_level level, FILE **f)
{
        struct log *lg;

        *f = open_memstream(&buf, &len);
        ck_assert_ptr_nonnull(*f);
        lg = log_new(*f, level);
        ck_assert_ptr_nonnull(lg);
        return lg;
}

/* Returns the parsed line i (0-based) of the output. */
static json_t *line(int i)
{
        const char *p = buf;
        json_error_t e;
        json_t *j;

        for (; i > 0; i--) {
                p = strchr(p, '\n');
                ck_assert_ptr_nonnull(p);
                p++;
        }
        j = json_loadb(p, strcspn(p, "\n"), 0, &e);
        ck_assert_msg(j != NULL, "bad JSON: %s in %s", e.text, p);
        return j;
}

START_TEST(test_shape)
{
        FILE *f;
        struct log *lg = open_log(CONFIG_LOG_INFO, &f);
        json_t *j;
        const char *ts;

        log_info(lg, "hello \"world\"", "{s:s, s:i, s:b}", "topic", "t1", "n", 42, "ok", 1);
        log_debug(lg, "dropped", NULL);
        log_warn(lg, "no fields", NULL);
        log_error(lg, "clobber", "{s:s, s:s}", "msg", "other", "level", "x");
        log_error(lg, "bad fmt", "{s:s", "a", "b");
        log_error(lg, "bad utf8 \xff", "{s:s}", "a", "\xfe");
        log_error(lg, "not object", "[i]", 1);
        fflush(f);
        ck_assert_int_eq(buf[len - 1], '\n');
        j = line(0);
        ts = json_string_value(json_object_get(j, "ts"));
        ck_assert_ptr_nonnull(ts);
        ck_assert_uint_eq(strlen(ts), strlen("2026-11-23T12:00:00.123Z"));
        ck_assert_int_eq(ts[10], 'T');
        ck_assert_int_eq(ts[19], '.');
        ck_assert_int_eq(ts[23], 'Z');
        ck_assert_str_eq(json_string_value(json_object_get(j, "level")), "info");
        ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), "hello \"world\"");
        ck_assert_str_eq(json_string_value(json_object_get(j, "topic")), "t1");
        ck_assert_int_eq(json_integer_value(json_object_get(j, "n")), 42);
        ck_assert(json_is_true(json_object_get(j, "ok")));
        ck_assert_ptr_eq(strstr(buf, "{\"ts\":"), buf);
        json_decref(j);
        j = line(1);
        ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), "no fields");
        ck_assert_str_eq(json_string_value(json_object_get(j, "level")), "warn");
        ck_assert_uint_eq(json_object_size(j), 3);
        json_decref(j);
        j = line(2);
        ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), "clobber");
        ck_assert_str_eq(json_string_value(json_object_get(j, "level")), "error");
        json_decref(j);
        j = line(3);
        ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), "bad fmt");
        ck_assert_ptr_nonnull(json_object_get(j, "log_error"));
        json_decref(j);
        j = line(4);
        ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), "bad utf8 ?");
        ck_assert_ptr_nonnull(json_object_get(j, "log_error"));
        json_decref(j);
        j = line(5);
        ck_assert_ptr_nonnull(json_object_get(j, "log_error"));
        json_decref(j);
        ck_assert_ptr_null(strstr(buf, "dropped"));
        log_free(lg);
        fclose(f);
        free(buf);
}
END_TEST

START_TEST(test_levels)
{
        FILE *f;
        struct log *lg = open_log(CONFIG_LOG_WARN, &f);
        char big[5000];

        ck_assert(!log_enabled(lg, CONFIG_LOG_INFO));
        ck_assert(log_enabled(lg, CONFIG_LOG_WARN));
        ck_assert(!log_enabled(NULL, CONFIG_LOG_ERROR));
        log_info(lg, "no", NULL);
        log_debug(lg, "no", NULL);
        fflush(f);
        ck_assert_uint_eq(len, 0);
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        log_error(lg, big, "{s:s}", "k", big);
        fflush(f);
        ck_assert_uint_gt(len, 10000);
        json_decref(line(0));
        log_write(NULL, CONFIG_LOG_ERROR, "null log", NULL);
        log_free(lg);
        log_free(NULL);
        fclose(f);
        free(buf);
}
END_TEST

/* Row text as a hostile writer might fill it, and what an operator's
 * terminal must be given instead. */
static const struct {
        const char *in, *out;
} escapes[] = {
    {"plain text", "plain text"},
    {"", ""},
    {"\x1b]0;pwned\x07\x1b[2J", "\\x1b]0;pwned\\x07\\x1b[2J"},
    {"line1\nline2\r\tend", "line1\\nline2\\r\\tend"},
    {"del\x7f", "del\\x7f"},
    {"csi \xc2\x9b" "31m", "csi \\u009b31m"},       /* C1 CSI as UTF-8 */
    {"nel \xc2\x85", "nel \\u0085"},                 /* C1 next line */
    {"raw \x9b" "31m", "raw \\x9b31m"},               /* C1 as a lone byte: not UTF-8 */
    {"bad \xff\xfe", "bad \\xff\\xfe"},
    {"cut \xe2\x82", "cut \\xe2\\x82"},            /* a sequence cut short */
    {"overlong \xc0\xaf", "overlong \\xc0\\xaf"},
    {"surrogate \xed\xa0\x80", "surrogate \\xed\\xa0\\x80"},
    {"rlo \xe2\x80\xae" "gnp.exe", "rlo \\u202egnp.exe"}, /* bidirectional override */
    {"ls \xe2\x80\xa8", "ls \\u2028"},
    {"back\\slash \\x1b", "back\\\\slash \\\\x1b"}, /* text that looks escaped */
    {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xc2\xa0", /* UTF-8 is kept */
     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xc2\xa0"},
};

START_TEST(test_escape)
{
        char *got = log_escape(escapes[_i].in);

        ck_assert_ptr_nonnull(got);
        ck_assert_msg(strcmp(got, escapes[_i].out) == 0, "case %d: got \"%s\", want \"%s\"", _i,
                      got, escapes[_i].out);
        for (const unsigned char *p = (const unsigned char *)got; *p != '\0'; p++)
                ck_assert_msg(*p >= 0x20 && *p != 0x7f, "case %d: raw byte 0x%02x", _i, *p);
        free(got);
}
END_TEST

/* Log lines and --json output: JSON that says the same, with no raw
 * control byte, C1 control or bidirectional override in it. */
START_TEST(test_json_guard)
{
        FILE *f;
        struct log *lg = open_log(CONFIG_LOG_INFO, &f);
        const char *evil = "a\x1b[2J\x7f\xc2\x9b\xe2\x80\xae\r\n\xc3\xa9";
        json_t *v = json_pack("{s:s}", "reason", evil), *j;
        char *text = log_json_dumps(v, JSON_INDENT(2));

        ck_assert_ptr_nonnull(text);
        ck_assert_ptr_nonnull(strstr(text, "\\u001B[2J\\u007F\\u009B\\u202E\\r\\n\xc3\xa9"));
        j = json_loads(text, 0, NULL);
        ck_assert_str_eq(json_string_value(json_object_get(j, "reason")), evil);
        json_decref(j);
        free(text);
        json_decref(v);

        log_warn(lg, "row failed", "{s:s}", "error", evil);
        fflush(f);
        for (size_t i = 0; i + 1 < len; i++) {
                unsigned char c = (unsigned char)buf[i];

                ck_assert_msg(c >= 0x20 && c != 0x7f, "raw byte 0x%02x in %s", c, buf);
                ck_assert_msg(!(c == 0xc2 && (unsigned char)buf[i + 1] < 0xa0), "raw C1 in %s",
                              buf);
                ck_assert_msg(!(c == 0xe2 && (unsigned char)buf[i + 1] == 0x80 &&
                                (unsigned char)buf[i + 2] == 0xae),
                              "raw U+202E in %s", buf);
        }
        j = line(0);
        ck_assert_str_eq(json_string_value(json_object_get(j, "error")), evil);
        json_decref(j);
        log_free(lg);
        fclose(f);
        free(buf);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("log");
        TCase *tc = tcase_create("core");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_shape);
        tcase_add_test(tc, test_levels);
        tcase_add_loop_test(tc, test_escape, 0, (int)(sizeof(escapes) / sizeof(escapes[0])));
        tcase_add_test(tc, test_json_guard);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
