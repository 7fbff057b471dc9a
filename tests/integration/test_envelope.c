/* What a message carries besides its value, end to end: trace context
 * headers (traceparent, tracestate) arriving unchanged and named in the log
 * line of a failed row, and the CloudEvents binary mode (--envelope
 * cloudevents). The real relay, PostgreSQL and the dev Kafka. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "fixture.h"
#include "runner.h"

FX_DEV_SERVERS(1, 1);

#define BROKERS fx_kafka_bootstraps(kafka)

/* W3C Trace Context examples; the tracestate with the optional spaces
 * after its comma, which a consumer must get byte for byte. */
#define TP1 "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define TP2 "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
#define TS1 "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"

static int header_is(const struct fx_msg *m, const char *name, const char *want)
{
        const struct fx_header *h = fx_msg_header(m, name);

        return h != NULL && h->value != NULL && h->value_len == strlen(want) &&
               memcmp(h->value, want, h->value_len) == 0;
}

/* How many headers of m are named name. */
static int header_count(const struct fx_msg *m, const char *name)
{
        int n = 0;

        for (size_t i = 0; i < m->n_headers; i++)
                n += strcmp(m->headers[i].name, name) == 0;
        return n;
}

/* The relay's log line whose msg is msg and whose id is id, parsed (NULL
 * when there is none yet). */
static json_t *log_line(const struct fx_relay *r, const char *msg, long long id)
{
        char *log = fx_relay_log(r), *save = NULL;
        json_t *found = NULL;

        for (char *line = strtok_r(log, "\n", &save); line != NULL && found == NULL;
             line = strtok_r(NULL, "\n", &save)) {
                json_t *j = json_loads(line, 0, NULL);

                if (json_is_string(json_object_get(j, "msg")) &&
                    strcmp(json_string_value(json_object_get(j, "msg")), msg) == 0 &&
                    json_integer_value(json_object_get(j, "id")) == id)
                        found = json_incref(j);
                json_decref(j);
        }
        free(log);
        return found;
}

/* Polls the relay's log for that line until the deadline. */
static json_t *wait_log_line(const struct fx_relay *r, const char *msg, long long id,
                             int timeout_ms)
{
        int64_t deadline = fx_now_ms() + timeout_ms;
        json_t *j;

        while ((j = log_line(r, msg, id)) == NULL && fx_now_ms() < deadline)
                usleep(20000); /* the poll's interval */
        return j;
}

static void assert_traceparent(const struct fx_relay *r, json_t *line, const char *msg,
                               long long id, const char *want)
{
        const char *got;
        char *log;

        if (line == NULL) {
                log = fx_relay_log(r);
                ck_abort_msg("no \"%s\" line for row %lld in the relay's log:\n%s", msg, id, log);
        }
        got = json_string_value(json_object_get(line, "traceparent"));
        if (want == NULL)
                ck_assert_msg(json_object_get(line, "traceparent") == NULL,
                              "row %lld has no traceparent, yet its \"%s\" line names one", id,
                              msg);
        else
                ck_assert_msg(got != NULL && strcmp(got, want) == 0,
                              "\"%s\" line of row %lld: traceparent %s, wanted %s", msg, id,
                              got != NULL ? got : "(none)", want);
        json_decref(line);
}

/* Rows with trace context headers: the published one carries them byte
 * for byte (once each, beside the relay's own headers); failing ones
 * (no route: the topic is NULL and there is no --default-topic) are
 * retried, then dead-lettered, and each of those log lines names the
 * row's own traceparent, and a row without one gets none. */
START_TEST(trace_headers_unchanged_and_logged)
{
        char *ci = fx_fresh_outbox(pg, kafka, "env_trace", "e-trace", 1);
        PGconn *c = fx_db_connect_as(ci, FX_WRITER_ROLE);
        PGconn *su = fx_db_connect(ci);
        const char *args[] = {"--poll-interval-ms",
                              "100",
                              "--retry-base-ms",
                              "50",
                              "--retry-max-ms",
                              "100",
                              "--max-attempts",
                              "2",
                              NULL};
        struct fx_relay *r;
        struct fx_msg *msgs = NULL;
        size_t n;
        long long ok_id, fail1, fail2, fail3;

        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload, headers) VALUES ('e-trace', "
                  "'k', '{\"n\": 1}', '{\"traceparent\": \"" TP1 "\", \"tracestate\": \"" TS1
                  "\", \"x\": \"y\"}')");
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload, headers) VALUES (NULL, 'a', "
                  "'{\"n\": 2}', '{\"traceparent\": \"" TP1 "\"}')");
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload, headers) VALUES (NULL, 'b', "
                  "'{\"n\": 3}', '{\"tracestate\": \"" TS1 "\", \"traceparent\": \"" TP2 "\"}')");
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload, headers) VALUES (NULL, 'c', "
                  "'{\"n\": 4}', '{\"tracestate\": \"" TS1 "\"}')");
        ok_id = fx_sql_int(su, "SELECT id FROM outbox.events WHERE key = 'k'");
        fail1 = fx_sql_int(su, "SELECT id FROM outbox.events WHERE key = 'a'");
        fail2 = fx_sql_int(su, "SELECT id FROM outbox.events WHERE key = 'b'");
        fail3 = fx_sql_int(su, "SELECT id FROM outbox.events WHERE key = 'c'");
        r = fx_relay_start(ci, BROKERS, args);

        n = fx_consume(BROKERS, "e-trace", 1, 10000, &msgs);
        ck_assert_uint_eq(n, 1);
        ck_assert_msg(header_is(&msgs[0], "traceparent", TP1), "traceparent changed");
        ck_assert_msg(header_is(&msgs[0], "tracestate", TS1), "tracestate changed");
        ck_assert_int_eq(header_count(&msgs[0], "traceparent"), 1);
        ck_assert_int_eq(header_count(&msgs[0], "tracestate"), 1);
        ck_assert_msg(header_is(&msgs[0], "x", "y"), "other row header lost");

        ck_assert_int_eq(fx_wait_sql(su, 3, 20000, "SELECT count(*) FROM outbox.dead_letters"), 3);
        assert_traceparent(r, wait_log_line(r, "publish failed, will retry", fail1, 10000),
                           "publish failed, will retry", fail1, TP1);
        assert_traceparent(r, wait_log_line(r, "row dead-lettered", fail1, 10000),
                           "row dead-lettered", fail1, TP1);
        assert_traceparent(r, wait_log_line(r, "publish failed, will retry", fail2, 10000),
                           "publish failed, will retry", fail2, TP2);
        assert_traceparent(r, wait_log_line(r, "row dead-lettered", fail2, 10000),
                           "row dead-lettered", fail2, TP2);
        assert_traceparent(r, wait_log_line(r, "row dead-lettered", fail3, 10000),
                           "row dead-lettered", fail3, NULL);
        ck_assert_ptr_null(log_line(r, "row dead-lettered", ok_id));
        fx_relay_kill(r, SIGTERM);
        ck_assert_int_eq(fx_relay_wait(r, 15000), 0);
        fx_relay_free(r);
        fx_msgs_free(msgs, n);
        PQfinish(c);
        PQfinish(su);
        free(ci);
}
END_TEST

Suite *test_suite(void)
{
        static const struct runner_servers servers = {suite_setup, suite_teardown};
        Suite *s = suite_create("envelope");
        const TTest *const tests[] = {trace_headers_unchanged_and_logged, NULL};

        runner_add_each(s, tests, &servers, 120);
        return s;
}
