/* Unit tests of message: how an outbox row's headers become Kafka headers,
 * with and without the CloudEvents envelope. */
#include <check.h>
#include <stdint.h>
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

/* ---- CloudEvents (--envelope cloudevents) ---- */

#define CE_SOURCE "/outbox-relay/app/outbox"
/* 2026-12-06T10:38:57.12345Z: PostgreSQL prints the stored microseconds
 * without trailing zeros; ce_time the same. */
#define CE_TIME_US 1796553537123450LL

static struct message_row ce_row(const char *headers)
{
        struct message_row m = row_with(headers);

        m.event_type = "order.created";
        m.key = "order-42";
        m.key_len = strlen(m.key);
        m.value = "{\"n\": 1}";
        m.value_len = strlen(m.value);
        m.created_at_us = CE_TIME_US;
        m.created_at_ms = CE_TIME_US / 1000;
        return m;
}

static rd_kafka_headers_t *ce_headers(const struct message_row *m, const char *topic)
{
        struct message_envelope *env = message_envelope_new(1, CE_SOURCE);
        rd_kafka_headers_t *h = NULL;
        char err[256] = "";

        ck_assert_ptr_nonnull(env);
        ck_assert_msg(message_headers_env(m, env, topic, &h, err, sizeof(err)) == 0, "%s", err);
        message_envelope_free(env);
        return h;
}

/* How many headers of h are named name. */
static int count_named(rd_kafka_headers_t *h, const char *name)
{
        const void *v;
        size_t len;
        int n = 0;

        while (rd_kafka_header_get(h, (size_t)n, name, &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR)
                n++;
        return n;
}

START_TEST(cloudevents_attributes)
{
        struct message_row m = ce_row("{\"correlation_id\": \"c-1\"}");
        rd_kafka_headers_t *h = ce_headers(&m, "orders");

        /* The row's header and the relay's three, then the spec's five
         * required-or-set ones, subject and content type. */
        ck_assert_uint_eq(rd_kafka_header_cnt(h), 11);
        assert_header(h, "correlation_id", "c-1");
        assert_header(h, MESSAGE_HDR_EVENT_ID, m.event_id);
        assert_header(h, MESSAGE_HDR_EVENT_TYPE, "order.created");
        assert_header(h, MESSAGE_HDR_OUTBOX_ID, "42");
        assert_header(h, "ce_specversion", "1.0");
        assert_header(h, "ce_id", m.event_id);
        assert_header(h, "ce_source", CE_SOURCE);
        assert_header(h, "ce_type", "order.created");
        assert_header(h, "ce_time", "2026-12-06T10:38:57.12345Z");
        assert_header(h, "ce_subject", "order-42");
        assert_header(h, "content-type", "application/json");
        rd_kafka_headers_destroy(h);
}
END_TEST

/* No event_type: the topic is the type. payload_bytes: octets. No key or
 * an empty one (the spec forbids empty attributes): no subject. */
START_TEST(cloudevents_defaults_and_bytes)
{
        struct message_row m = ce_row("{}");
        rd_kafka_headers_t *h;

        m.event_type = NULL;
        m.value_is_bytes = 1;
        m.key = NULL;
        m.key_len = 0;
        h = ce_headers(&m, "billing.invoices");
        assert_header(h, "ce_type", "billing.invoices");
        assert_header(h, "content-type", "application/octet-stream");
        ck_assert_ptr_null(header(h, "ce_subject"));
        ck_assert_ptr_null(header(h, MESSAGE_HDR_EVENT_TYPE));
        rd_kafka_headers_destroy(h);

        m.key = "";
        h = ce_headers(&m, "billing.invoices");
        ck_assert_ptr_null(header(h, "ce_subject"));
        rd_kafka_headers_destroy(h);
}
END_TEST

/* A tombstone has no data: no content-type, the rest as always. */
START_TEST(cloudevents_tombstone)
{
        struct message_row m = ce_row("{}");
        rd_kafka_headers_t *h;

        m.value = NULL;
        m.value_len = 0;
        h = ce_headers(&m, "orders");
        ck_assert_ptr_null(header(h, "content-type"));
        assert_header(h, "ce_id", m.event_id);
        assert_header(h, "ce_subject", "order-42");
        rd_kafka_headers_destroy(h);
}
END_TEST

/* The attributes that identify the event are the relay's: a row's own is
 * dropped (a forged ce_id would defeat deduplication). Those describing the
 * data, content-type and ce_subject, are the row's when it sets them, once.
 * Other ce_ headers (extensions, dataschema) pass through. */
START_TEST(cloudevents_row_headers)
{
        struct message_row m =
            ce_row("{\"ce_id\": \"forged\", \"ce_specversion\": \"0.3\", \"ce_source\": \"/x\","
                   " \"ce_type\": \"t\", \"ce_time\": \"1999-01-01T00:00:00Z\","
                   " \"content-type\": \"application/avro\", \"ce_subject\": \"s\","
                   " \"ce_dataschema\": \"https://example.com/s\", \"ce_traceparent\": \"tp\"}");
        rd_kafka_headers_t *h = ce_headers(&m, "orders");

        ck_assert_uint_eq(rd_kafka_header_cnt(h), 12);
        assert_header(h, "ce_id", m.event_id);
        assert_header(h, "ce_specversion", "1.0");
        assert_header(h, "ce_source", CE_SOURCE);
        assert_header(h, "ce_type", "order.created");
        assert_header(h, "ce_time", "2026-12-06T10:38:57.12345Z");
        assert_header(h, "content-type", "application/avro");
        assert_header(h, "ce_subject", "s");
        assert_header(h, "ce_dataschema", "https://example.com/s");
        assert_header(h, "ce_traceparent", "tp");
        static const char *const once[] = {"ce_id",   "ce_specversion", "ce_source", "ce_type",
                                           "ce_time", "content-type",   "ce_subject"};
        for (size_t i = 0; i < sizeof(once) / sizeof(once[0]); i++)
                ck_assert_msg(count_named(h, once[i]) == 1, "%s %d times", once[i],
                              count_named(h, once[i]));
        rd_kafka_headers_destroy(h);
}
END_TEST

/* The plain envelope is today's: no attribute added, a row's ce_ headers
 * pass as any other. */
START_TEST(plain_envelope_is_unchanged)
{
        struct message_row m = ce_row("{\"ce_id\": \"mine\"}");
        struct message_envelope *env = message_envelope_new(0, NULL);
        rd_kafka_headers_t *h = NULL, *h0 = NULL;
        char err[256];

        ck_assert_int_eq(message_headers_env(&m, env, "orders", &h, err, sizeof(err)), 0);
        ck_assert_int_eq(message_headers(&m, &h0, err, sizeof(err)), 0);
        ck_assert_uint_eq(rd_kafka_header_cnt(h), 4);
        ck_assert_uint_eq(rd_kafka_header_cnt(h0), 4);
        assert_header(h, "ce_id", "mine");
        ck_assert_ptr_null(header(h, "ce_specversion"));
        ck_assert_ptr_null(header(h, "content-type"));
        rd_kafka_headers_destroy(h);
        rd_kafka_headers_destroy(h0);
        message_envelope_free(env);
}
END_TEST

/* A created_at RFC 3339 cannot write (PostgreSQL's infinity, a year past
 * 9999) is refused with the reason, not published with a wrong time. */
START_TEST(cloudevents_time_out_of_range)
{
        struct message_row m = ce_row("{}");
        struct message_envelope *env = message_envelope_new(1, CE_SOURCE);
        rd_kafka_headers_t *h = NULL;
        char err[256] = "";

        m.created_at_us = INT64_MAX;
        ck_assert_int_eq(message_headers_env(&m, env, "orders", &h, err, sizeof(err)), -1);
        ck_assert_ptr_null(h);
        ck_assert_msg(strstr(err, "created_at") != NULL, "%s", err);
        message_envelope_free(env);
}
END_TEST

static const struct {
        int64_t us;
        const char *want; /* NULL: refused */
} times[] = {
    {0, "1970-01-01T00:00:00Z"},
    {1, "1970-01-01T00:00:00.000001Z"},
    {-1, "1969-12-31T23:59:59.999999Z"},
    {1500000, "1970-01-01T00:00:01.5Z"},
    {-1500000, "1969-12-31T23:59:58.5Z"},
    {951782400000000LL, "2000-02-29T00:00:00Z"},
    {253402300799999999LL, "9999-12-31T23:59:59.999999Z"},
    {253402300800000000LL, NULL},
    {-62167219200000000LL, "0000-01-01T00:00:00Z"},
    {-62167219200000001LL, NULL},
    {INT64_MAX, NULL},
    {INT64_MIN, NULL},
};

START_TEST(rfc3339_times)
{
        char buf[MESSAGE_RFC3339_SIZE];
        int rc = message_rfc3339(times[_i].us, buf, sizeof(buf));

        if (times[_i].want == NULL) {
                ck_assert_int_eq(rc, -1);
        } else {
                ck_assert_int_eq(rc, 0);
                ck_assert_str_eq(buf, times[_i].want);
        }
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
        tc = tcase_create("cloudevents");
        tcase_add_test(tc, cloudevents_attributes);
        tcase_add_test(tc, cloudevents_defaults_and_bytes);
        tcase_add_test(tc, cloudevents_tombstone);
        tcase_add_test(tc, cloudevents_row_headers);
        tcase_add_test(tc, plain_envelope_is_unchanged);
        tcase_add_test(tc, cloudevents_time_out_of_range);
        tcase_add_loop_test(tc, rfc3339_times, 0, (int)(sizeof(times) / sizeof(times[0])));
        suite_add_tcase(s, tc);
        return s;
}
