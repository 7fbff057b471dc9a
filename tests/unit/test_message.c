/* Unit tests of message: how an outbox row's headers become Kafka headers. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"
#include "runner.h"

static struct message_row row_with(const char *headers)
{
        struct message_row m;

        memset(&m, 0, sizeof(m));
        m.id = 42;
        m.event_id = "6f1c1a52-9f57-4c7e-9f3e-1d2b3c4d5e6f";
        m.headers = headers;
        m.headers_len = strlen(headers);
        return m;
}

/* The value of header `name` as a NUL-terminated copy, or NULL. */
static char *header(rd_kafka_headers_t *h, const char *name)
{
        const void *v;
        size_t len;
        char *out;

        if (rd_kafka_header_get_last(h, name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
                return NULL;
        out = malloc(len + 1);
        memcpy(out, v, len);
        out[len] = '\0';
        return out;
}

static void assert_header(rd_kafka_headers_t *h, const char *name, const char *want)
{
        char *got = header(h, name);

        ck_assert_ptr_nonnull(got);
        ck_assert_str_eq(got, want);
        free(got);
}

START_TEST(empty_headers_get_relay_headers)
{
        struct message_row m = row_with("{}");
        rd_kafka_headers_t *h = NULL;
        char err[256];

        ck_assert_int_eq(message_headers(&m, &h, err, sizeof(err)), 0);
        ck_assert_uint_eq(rd_kafka_header_cnt(h), 2);
        assert_header(h, MESSAGE_HDR_EVENT_ID, m.event_id);
        assert_header(h, MESSAGE_HDR_OUTBOX_ID, "42");
        ck_assert_ptr_null(header(h, MESSAGE_HDR_EVENT_TYPE));
        rd_kafka_headers_destroy(h);
}
END_TEST

START_TEST(row_headers_and_event_type)
{
        struct message_row m =
            row_with("{\"correlation_id\": \"c-1\", \"tenant\": \"\\u00e9t\\u00e9\"}");
        rd_kafka_headers_t *h = NULL;
        char err[256];

        m.event_type = "order.created";
        ck_assert_int_eq(message_headers(&m, &h, err, sizeof(err)), 0);
        ck_assert_uint_eq(rd_kafka_header_cnt(h), 5);
        assert_header(h, "correlation_id", "c-1");
        assert_header(h, "tenant", "\xc3\xa9t\xc3\xa9");
        assert_header(h, MESSAGE_HDR_EVENT_TYPE, "order.created");
        rd_kafka_headers_destroy(h);
}
END_TEST

START_TEST(relay_headers_win_over_row_headers)
{
        struct message_row m = row_with("{\"event_id\": \"forged\", \"outbox_id\": \"1\"}");
        rd_kafka_headers_t *h = NULL;
        char err[256];

        ck_assert_int_eq(message_headers(&m, &h, err, sizeof(err)), 0);
        ck_assert_uint_eq(rd_kafka_header_cnt(h), 2);
        assert_header(h, MESSAGE_HDR_EVENT_ID, m.event_id);
        assert_header(h, MESSAGE_HDR_OUTBOX_ID, "42");
        rd_kafka_headers_destroy(h);
}
END_TEST

/* Rows can get past the table's CHECK if a user dropped it: each bad shape
 * must be refused with a reason, never published half-formed. */
static const struct {
        const char *headers;
        const char *reason;
} bad[] = {
    {"[\"a\"]", "must be a JSON object"},
    {"{\"n\": 1}", "header \"n\" must be a JSON string"},
    {"{\"a\": \"x\", \"b\": null}", "header \"b\" must be a JSON string"},
    {"{\"o\": {\"x\": \"y\"}}", "header \"o\" must be a JSON string"},
    {"{not json", "not valid JSON"},
};

START_TEST(bad_headers_are_refused)
{
        struct message_row m = row_with(bad[_i].headers);
        rd_kafka_headers_t *h = NULL;
        char err[256] = "";

        ck_assert_int_eq(message_headers(&m, &h, err, sizeof(err)), -1);
        ck_assert_ptr_null(h);
        ck_assert_msg(strstr(err, bad[_i].reason) != NULL, "error \"%s\" lacks \"%s\"", err,
                      bad[_i].reason);
}
END_TEST

Suite *test_suite(void)
{
        Suite *s = suite_create("message");
        TCase *tc = tcase_create("headers");

        tcase_add_test(tc, empty_headers_get_relay_headers);
        tcase_add_test(tc, row_headers_and_event_type);
        tcase_add_test(tc, relay_headers_win_over_row_headers);
        tcase_add_loop_test(tc, bad_headers_are_refused, 0, (int)(sizeof(bad) / sizeof(bad[0])));
        suite_add_tcase(s, tc);
        return s;
}
