/* Unit tests of log: JSON shape, level filtering, bad field formats, the
 * escaping of row text, the rate limit of failure paths (on a clock the
 * test moves) and the cleaning of text sent to PostgreSQL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <jansson.h>

#include "log.h"
#include "runner.h"

static char *buf;
static size_t len;

static struct log *open_log(enum log_level level, FILE **f)
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
        struct log *lg = open_log(LOG_LEVEL_INFO, &f);
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
        struct log *lg = open_log(LOG_LEVEL_WARN, &f);
        char big[5000];

        ck_assert(!log_enabled(lg, LOG_LEVEL_INFO));
        ck_assert(log_enabled(lg, LOG_LEVEL_WARN));
        ck_assert(!log_enabled(NULL, LOG_LEVEL_ERROR));
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
        log_write(NULL, LOG_LEVEL_ERROR, "null log", NULL);
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
    {"csi \xc2\x9b"
     "31m",
     "csi \\u009b31m"},              /* C1 CSI as UTF-8 */
    {"nel \xc2\x85", "nel \\u0085"}, /* C1 next line */
    {"raw \x9b"
     "31m",
     "raw \\x9b31m"}, /* C1 as a lone byte: not UTF-8 */
    {"bad \xff\xfe", "bad \\xff\\xfe"},
    {"cut \xe2\x82", "cut \\xe2\\x82"}, /* a sequence cut short */
    {"overlong \xc0\xaf", "overlong \\xc0\\xaf"},
    {"surrogate \xed\xa0\x80", "surrogate \\xed\\xa0\\x80"},
    {"rlo \xe2\x80\xae"
     "gnp.exe",
     "rlo \\u202egnp.exe"}, /* bidirectional override */
    {"ls \xe2\x80\xa8", "ls \\u2028"},
    {"back\\slash \\x1b", "back\\\\slash \\\\x1b"},        /* text that looks escaped */
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
        struct log *lg = open_log(LOG_LEVEL_INFO, &f);
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

/* ---- the rate limit ---- */

static int64_t fake_now;

static int64_t fake_clock(void *arg)
{
        (void)arg;
        return fake_now;
}

static int count_lines(void)
{
        int n = 0;

        for (size_t i = 0; i < len; i++)
                n += buf[i] == '\n';
        return n;
}

static json_int_t repeated_of(json_t *j)
{
        json_t *v = json_object_get(j, "repeated");

        return v == NULL ? 0 : json_integer_value(v);
}

/* An error failing in a tight loop: one line a second, each saying how
 * many were held back since the one before. */
START_TEST(test_limited_once_a_second)
{
        FILE *f;
        struct log *lg = open_log(LOG_LEVEL_INFO, &f);
        json_t *j;

        fake_now = 1000000;
        log_set_clock(lg, fake_clock, NULL);
        /* 10 seconds of a failure every millisecond: 10,000 calls. */
        for (int i = 0; i < 10000; i++) {
                log_limited(lg, LOG_LEVEL_WARN, "fetching rows failed", "permission denied",
                            "{s:i}", "attempt", i + 1);
                fake_now++;
        }
        fflush(f);
        ck_assert_int_eq(count_lines(), 10);
        j = line(0);
        ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), "fetching rows failed");
        ck_assert_str_eq(json_string_value(json_object_get(j, "error")), "permission denied");
        ck_assert_int_eq(json_integer_value(json_object_get(j, "attempt")), 1);
        ck_assert_int_eq(repeated_of(j), 0);
        json_decref(j);
        for (int i = 1; i < 10; i++) {
                j = line(i);
                ck_assert_int_eq(repeated_of(j), 999);
                /* The fields are those of the call that was written. */
                ck_assert_int_eq(json_integer_value(json_object_get(j, "attempt")), 1000 * i + 1);
                json_decref(j);
        }
        /* Nothing held back is lost: the last 999 go out with the flush,
         * once their second is up (not before). */
        fake_now = 1009999; /* the last call; the last line went out at 1009000 */
        log_flush_repeats(lg, 0);
        fflush(f);
        ck_assert_int_eq(count_lines(), 10);
        fake_now = 1010000;
        log_flush_repeats(lg, 0);
        fflush(f);
        ck_assert_int_eq(count_lines(), 11);
        j = line(10);
        ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), "fetching rows failed");
        ck_assert_str_eq(json_string_value(json_object_get(j, "error")), "permission denied");
        ck_assert_int_eq(repeated_of(j), 999);
        json_decref(j);
        /* Flushed: the count starts again, and the next call within the
         * second after the flush is held back. */
        log_limited(lg, LOG_LEVEL_WARN, "fetching rows failed", "permission denied", NULL);
        log_flush_repeats(lg, 0);
        fflush(f);
        ck_assert_int_eq(count_lines(), 11);
        log_free(lg); /* writes what is held back */
        fclose(f);
        ck_assert_int_eq(count_lines(), 12);
        j = line(11);
        ck_assert_int_eq(repeated_of(j), 1);
        json_decref(j);
        free(buf);
}
END_TEST

/* Different messages, errors or levels are limited apart; a new error
 * text of the same message is written at once. */
START_TEST(test_limited_apart)
{
        FILE *f;
        struct log *lg = open_log(LOG_LEVEL_INFO, &f);
        json_t *j;

        fake_now = 5;
        log_set_clock(lg, fake_clock, NULL);
        for (int i = 0; i < 3; i++) {
                log_limited(lg, LOG_LEVEL_WARN, "fetching rows failed", "a", NULL);
                log_limited(lg, LOG_LEVEL_WARN, "fetching rows failed", "b", NULL);
                log_limited(lg, LOG_LEVEL_WARN, "marking rows sent failed", "a", NULL);
                log_limited(lg, LOG_LEVEL_ERROR, "fetching rows failed", "a", NULL);
                /* "ab"+"c" is not "a"+"bc" */
                log_limited(lg, LOG_LEVEL_WARN, "fetching rows failedx", "", NULL);
                log_limited(lg, LOG_LEVEL_WARN, "fetching rows failed", "x", NULL);
                log_limited(lg, LOG_LEVEL_DEBUG, "not enabled", "a", NULL);
                log_limited(lg, LOG_LEVEL_WARN, NULL, NULL, NULL);
        }
        fflush(f);
        ck_assert_int_eq(count_lines(), 7);
        j = line(6);
        ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), "");
        ck_assert_str_eq(json_string_value(json_object_get(j, "error")), "");
        json_decref(j);
        /* Every one of the 7 held back 2: seven flush lines, no debug one. */
        fake_now += LOG_REPEAT_MS;
        log_flush_repeats(lg, 0);
        fflush(f);
        ck_assert_int_eq(count_lines(), 14);
        for (int i = 7; i < 14; i++) {
                j = line(i);
                ck_assert_int_eq(repeated_of(j), 2);
                json_decref(j);
        }
        ck_assert_ptr_null(strstr(buf, "not enabled"));
        log_free(lg);
        fclose(f);
        free(buf);
}
END_TEST

/* More distinct errors at once than there are slots: each is still
 * written at least once a second at most, and no count is lost (the
 * slot given up writes its count first). */
START_TEST(test_limited_many_errors)
{
        FILE *f;
        struct log *lg = open_log(LOG_LEVEL_INFO, &f);
        char err[32];
        long long total = 0;

        fake_now = 0;
        log_set_clock(lg, fake_clock, NULL);
        for (int round = 0; round < 5; round++)
                for (int e = 0; e < 100; e++) {
                        snprintf(err, sizeof(err), "error %d", e);
                        log_limited(lg, LOG_LEVEL_WARN, "failed", err, "{s:b}", "call", 1);
                }
        log_free(lg);
        fclose(f);
        /* Every call is either a line of its own or counted in a line
         * (its own or a flush line, which has no "call"). */
        for (int i = 0, n = count_lines(); i < n; i++) {
                json_t *j = line(i);

                total += (json_object_get(j, "call") != NULL) + repeated_of(j);
                json_decref(j);
        }
        ck_assert_int_eq(total, 500);
        free(buf);
}
END_TEST

/* ---- text for PostgreSQL ---- */

static const struct {
        const char *in;
        size_t max;
        int ascii;
        const char *out;
} cleans[] = {
    {"plain", 100, 0, "plain"},
    {"", 10, 0, ""},
    {"caf\xc3\xa9", 100, 0, "caf\xc3\xa9"},
    /* cut at the limit: never half a character */
    {"\xc3\xa9\xc3\xa9\xc3\xa9", 5, 0, "\xc3\xa9\xc3\xa9"},
    {"\xc3\xa9\xc3\xa9\xc3\xa9", 4, 0, "\xc3\xa9\xc3\xa9"},
    {"ab\xf0\x9f\x98\x80", 5, 0, "ab"},
    /* already cut inside its last character (snprintf at a byte limit) */
    {"x\xc3", 100, 0, "x"},
    {"x\xe2\x82", 100, 0, "x"},
    {"x\xf0\x9f\x98", 100, 0, "x"},
    /* bytes that are not UTF-8: U+FFFD each */
    {"bad \xff!", 100, 0, "bad \xef\xbf\xbd!"},
    {"\xc3(", 100, 0, "\xef\xbf\xbd("},
    {"overlong \xc0\xaf", 100, 0, "overlong \xef\xbf\xbd\xef\xbf\xbd"},
    {"surrogate \xed\xa0\x80", 100, 0, "surrogate \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    {"end \xed\xa0", 100, 0, "end \xef\xbf\xbd\xef\xbf\xbd"}, /* no valid prefix */
    {"big \xf4\x90\x80\x80", 100, 0, "big \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    /* a replacement does not fit whole: left out */
    {"ab\xff", 4, 0, "ab"},
    /* control characters are text to PostgreSQL */
    {"tab\there", 100, 0, "tab\there"},
    /* ASCII: every other character one '?' */
    {"caf\xc3\xa9 \xf0\x9f\x98\x80\xff\x01", 100, 1, "caf? ???"},
    {"\xc3\xa9\xc3\xa9\xc3\xa9", 2, 1, "??"},
    {"x\xc3", 100, 1, "x"},
};

START_TEST(test_clean_text)
{
        char *got = log_clean_text(cleans[_i].in, cleans[_i].max, cleans[_i].ascii);

        ck_assert_ptr_nonnull(got);
        ck_assert_msg(strcmp(got, cleans[_i].out) == 0, "case %d: got \"%s\", want \"%s\"", _i, got,
                      cleans[_i].out);
        ck_assert_uint_le(strlen(got), cleans[_i].max);
        free(got);
}
END_TEST

/* The case: an error about an event_type of 300 'é' (after one
 * ASCII byte, so that the cut falls inside one) cut at 511 bytes, as
 * snprintf into a 512-byte buffer leaves it, comes out valid and
 * whole-charactered, and jansson (which checks UTF-8) takes it. */
START_TEST(test_clean_text_cut_message)
{
        char msg[512], type[602], *got;
        json_t *j;

        type[0] = 'x';
        for (int i = 0; i < 300; i++)
                memcpy(type + 1 + 2 * i, "\xc3\xa9", 2);
        type[601] = '\0';
        /* The cut is the point: what route.c's snprintf into 512 bytes does. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-truncation"
        snprintf(msg, sizeof(msg), "no route for event_type \"%s\" and no --default-topic", type);
#pragma GCC diagnostic pop
        ck_assert_ptr_null(json_string(msg)); /* cut mid-character: not UTF-8 */
        got = log_clean_text(msg, 512, 0);
        ck_assert_ptr_nonnull(got);
        j = json_string(got);
        ck_assert_ptr_nonnull(j);
        ck_assert_uint_eq(strlen(got), 510);
        json_decref(j);
        free(got);
        got = log_clean_text(NULL, 10, 0);
        ck_assert_str_eq(got, "");
        free(got);
}
END_TEST

Suite *test_suite(void)
{
        Suite *s = suite_create("log");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_shape);
        tcase_add_test(tc, test_levels);
        tcase_add_loop_test(tc, test_escape, 0, (int)(sizeof(escapes) / sizeof(escapes[0])));
        tcase_add_test(tc, test_json_guard);
        tcase_add_test(tc, test_limited_once_a_second);
        tcase_add_test(tc, test_limited_apart);
        tcase_add_test(tc, test_limited_many_errors);
        tcase_add_loop_test(tc, test_clean_text, 0, (int)(sizeof(cleans) / sizeof(cleans[0])));
        tcase_add_test(tc, test_clean_text_cut_message);
        suite_add_tcase(s, tc);
        return s;
}
