/* What a message carries besides its value, end to end: trace context
 * headers (traceparent, tracestate) arriving unchanged and named in the log
 * line of a failed row, and the CloudEvents binary mode (--envelope
 * cloudevents); and what the relay reports about messages in /metrics: the
 * dead-letter table's size and the created_at-to-ack lag. The real relay,
 * PostgreSQL and the dev Kafka. */
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

/* ---- CloudEvents, binary content mode ---- */

/* The scalar text of a one-row query (malloc'ed; NULL for SQL NULL). */
static char *sql_text(PGconn *c, const char *sql, long long id)
{
        char q[512], *out = NULL;
        PGresult *res;

        snprintf(q, sizeof(q), sql, id);
        res = PQexec(c, q);
        ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s: %s", q,
                      PQresultErrorMessage(res));
        if (!PQgetisnull(res, 0, 0))
                out = strdup(PQgetvalue(res, 0, 0));
        PQclear(res);
        return out;
}

static const char *header_text(const struct fx_msg *m, const char *name, char *buf, size_t size)
{
        const struct fx_header *h = fx_msg_header(m, name);

        if (h == NULL || h->value == NULL)
                return NULL;
        snprintf(buf, size, "%.*s", (int)h->value_len, h->value);
        return buf;
}

/* The attributes of message m are those of row id, as PostgreSQL has it:
 * the spec's required ones (specversion, id, source, type) once each and
 * non-empty, time as PostgreSQL prints created_at in UTC, subject and
 * content type when the row gives them, and the value untouched. */
static void check_event(PGconn *su, const struct fx_msg *m, long long id, const char *type,
                        const char *subject, const char *content_type)
{
        static const char *const required[] = {"ce_specversion", "ce_id", "ce_source", "ce_type"};
        char buf[256];
        char *event_id =
            sql_text(su, "SELECT event_id::text FROM outbox.events WHERE id = %lld", id);
        char *when = sql_text(su,
                              "SELECT (to_json(created_at AT TIME ZONE 'UTC') #>> '{}') || 'Z'"
                              " FROM outbox.events WHERE id = %lld",
                              id);
        char *value = sql_text(su,
                               "SELECT encode(coalesce(convert_to(payload::text, 'UTF8'),"
                               " payload_bytes), 'hex')"
                               " FROM outbox.events WHERE id = %lld",
                               id);

        for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
                ck_assert_msg(header_count(m, required[i]) == 1, "row %lld: %s %d times", id,
                              required[i], header_count(m, required[i]));
                ck_assert_msg(fx_msg_header(m, required[i])->value_len > 0, "row %lld: empty %s",
                              id, required[i]);
        }
        ck_assert_msg(header_is(m, "ce_specversion", "1.0"), "row %lld: specversion", id);
        ck_assert_msg(header_is(m, "ce_id", event_id), "row %lld: ce_id %s, event_id %s", id,
                      header_text(m, "ce_id", buf, sizeof(buf)), event_id);
        ck_assert_msg(header_is(m, "ce_source", "/outbox-relay/env_ce/outbox"),
                      "row %lld: ce_source %s", id, header_text(m, "ce_source", buf, sizeof(buf)));
        ck_assert_msg(header_is(m, "ce_type", type), "row %lld: ce_type %s, wanted %s", id,
                      header_text(m, "ce_type", buf, sizeof(buf)), type);
        ck_assert_int_eq(header_count(m, "ce_time"), 1);
        ck_assert_msg(header_is(m, "ce_time", when), "row %lld: ce_time %s, created_at %s", id,
                      header_text(m, "ce_time", buf, sizeof(buf)), when);
        if (subject != NULL)
                ck_assert_msg(header_is(m, "ce_subject", subject) &&
                                  header_count(m, "ce_subject") == 1,
                              "row %lld: ce_subject", id);
        else
                ck_assert_ptr_null(fx_msg_header(m, "ce_subject"));
        if (content_type != NULL)
                ck_assert_msg(header_is(m, "content-type", content_type) &&
                                  header_count(m, "content-type") == 1,
                              "row %lld: content-type %s, wanted %s", id,
                              header_text(m, "content-type", buf, sizeof(buf)), content_type);
        else
                ck_assert_ptr_null(fx_msg_header(m, "content-type"));
        /* Binary mode: the value is the data, as without the envelope. */
        if (value == NULL) {
                ck_assert_ptr_null(m->value);
        } else {
                ck_assert_msg(m->value != NULL && m->value_len * 2 == strlen(value),
                              "row %lld: value changed", id);
                for (size_t i = 0; i < m->value_len; i++) {
                        snprintf(buf, sizeof(buf), "%02x", (unsigned char)m->value[i]);
                        ck_assert_msg(memcmp(buf, value + 2 * i, 2) == 0,
                                      "row %lld: value changed at byte %zu", id, i);
                }
        }
        ck_assert_msg(header_is(m, "event_id", event_id), "row %lld: event_id header", id);
        free(event_id);
        free(when);
        free(value);
}

/* --envelope cloudevents against the dev Kafka: a JSON event with a type,
 * key and microseconds; a routed bytes event without a type or key (its
 * type is the topic); a tombstone (no content type); a row forging the
 * relay's attributes and giving its own content type and subject. Read
 * back with a consumer, each message's attributes are the row's. */
START_TEST(cloudevents_read_back)
{
        char *ci = fx_fresh_outbox(pg, kafka, "env_ce", "e-ce", 1);
        PGconn *su = fx_db_connect(ci);
        const char *args[] = {"--envelope", "cloudevents", "--default-topic", "e-ce", NULL};
        struct fx_relay *r;
        struct fx_msg *msgs = NULL;
        long long id[4];
        size_t n;

        fx_sql(su, "INSERT INTO outbox.events (topic, key, event_type, payload, created_at)"
                   " VALUES ('e-ce', 'order-1', 'order.created', '{\"n\": 1}',"
                   " '2026-01-02 03:04:05.06789+00')");
        fx_sql(su, "INSERT INTO outbox.events (topic, payload_bytes, created_at)"
                   " VALUES (NULL, '\\x00ff0a'::bytea, '1999-12-31 23:59:59+00')");
        fx_sql(su, "INSERT INTO outbox.events (topic, key, event_type) VALUES ('e-ce', 'order-1',"
                   " 'order.deleted')");
        fx_sql(su, "INSERT INTO outbox.events (topic, key, event_type, payload_bytes, headers)"
                   " VALUES ('e-ce', 'order-2', 'order.avro', '\\x01'::bytea,"
                   " '{\"ce_id\": \"forged\", \"ce_source\": \"/elsewhere\","
                   " \"ce_specversion\": \"0.3\", \"ce_type\": \"t\", \"ce_time\": \"x\","
                   " \"content-type\": \"application/avro\", \"ce_subject\": \"orders/2\"}')");
        for (int i = 0; i < 4; i++)
                id[i] =
                    fx_sql_int(su, "SELECT id FROM outbox.events ORDER BY id OFFSET %d LIMIT 1", i);
        r = fx_relay_start(ci, BROKERS, args);
        n = fx_consume(BROKERS, "e-ce", 4, 10000, &msgs);
        ck_assert_uint_eq(n, 4);
        check_event(su, &msgs[0], id[0], "order.created", "order-1", "application/json");
        check_event(su, &msgs[1], id[1], "e-ce", NULL, "application/octet-stream");
        check_event(su, &msgs[2], id[2], "order.deleted", "order-1", NULL);
        check_event(su, &msgs[3], id[3], "order.avro", "orders/2", "application/avro");
        ck_assert_int_eq(
            fx_wait_sql(su, 0, 10000, "SELECT count(*) FROM outbox.events WHERE status <> 'sent'"),
            0);
        fx_relay_kill(r, SIGTERM);
        ck_assert_int_eq(fx_relay_wait(r, 15000), 0);
        fx_relay_free(r);
        fx_msgs_free(msgs, n);
        PQfinish(su);
        free(ci);
}
END_TEST

/* ---- What the relay reports about them: dead letters, event lag ---- */

/* The value of series in the relay's /metrics once it equals want, or the
 * last one seen when the deadline passed (-1: absent). */
static double wait_metric(int port, const char *series, double want, int timeout_ms)
{
        int64_t deadline = fx_now_ms() + timeout_ms;
        double v = -1;
        char *body;

        do {
                if (fx_http_get(port, "/metrics", &body) == 200)
                        v = fx_metric(body, series);
                free(body);
                if (v == want)
                        break;
                usleep(20000); /* the poll's interval */
        } while (fx_now_ms() < deadline);
        return v;
}

/* The dead-letter gauge counts the table, not this process's dead
 * letters: a relay started after two rows were dead-lettered by another
 * reports 2 at once (its counter says 0). The event lag histogram takes
 * each published row's created_at: one two minutes old lands between the
 * 60 s and 300 s buckets (the case's timeout is under 180 s), one dated in
 * the future (a database clock ahead) counts as 0, a replayed one is left
 * out. */
START_TEST(dead_letter_gauge_and_event_lag)
{
        char *ci = fx_fresh_outbox(pg, kafka, "env_metrics", "e-metrics", 1);
        PGconn *su = fx_db_connect(ci);
        const char *first[] = {"--max-attempts", "1", "--poll-interval-ms", "100", NULL};
        int port = fx_free_port();
        char listen[32];
        const char *second[] = {"--http-listen", listen, NULL};
        struct fx_relay *r;

        fx_sql(su, "INSERT INTO outbox.events (topic, key, payload) VALUES"
                   " (NULL, 'a', '{}'), (NULL, 'b', '{}')");
        r = fx_relay_start(ci, BROKERS, first);
        ck_assert_int_eq(fx_wait_sql(su, 2, 15000, "SELECT count(*) FROM outbox.dead_letters"), 2);
        fx_relay_kill(r, SIGTERM);
        ck_assert_int_eq(fx_relay_wait(r, 15000), 0);
        fx_relay_free(r);

        fx_sql(su, "INSERT INTO outbox.events (topic, key, payload, created_at) VALUES"
                   " ('e-metrics', 'old', '{}', now() - interval '120 seconds'),"
                   " ('e-metrics', 'future', '{}', now() + interval '1 hour')");
        fx_sql(su, "INSERT INTO outbox.events (topic, key, payload, created_at, replays) VALUES"
                   " ('e-metrics', 'replayed', '{}', now() - interval '2 hours', 1)");
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        r = fx_relay_start(ci, BROKERS, second);
        ck_assert_int_eq(fx_wait_sql(su, 0, 15000,
                                     "SELECT count(*) FROM outbox.events WHERE status = 'pending'"),
                         0);
        ck_assert_int_eq(wait_metric(port, "outbox_relay_dead_letter_rows", 2, 15000), 2);
        ck_assert_int_eq(
            wait_metric(port, "outbox_relay_messages_dead_lettered_total{topic=\"(unrouted)\"}", -1,
                        0),
            -1);
        ck_assert_int_eq(wait_metric(port, "outbox_relay_event_lag_seconds_count", 2, 15000), 2);
        ck_assert_int_eq(
            wait_metric(port, "outbox_relay_event_lag_seconds_bucket{le=\"0.005\"}", 1, 0), 1);
        ck_assert_int_eq(
            wait_metric(port, "outbox_relay_event_lag_seconds_bucket{le=\"60\"}", 1, 0), 1);
        ck_assert_int_eq(
            wait_metric(port, "outbox_relay_event_lag_seconds_bucket{le=\"300\"}", 2, 0), 2);
        ck_assert_int_eq(
            wait_metric(port, "outbox_relay_event_lag_seconds_bucket{le=\"+Inf\"}", 2, 0), 2);
        ck_assert_msg(wait_metric(port, "outbox_relay_event_lag_seconds_sum", 0, 0) >= 120,
                      "the lag's sum holds the two-minute-old row's");

        /* The gauge follows the table: a dead letter requeued leaves it. */
        fx_sql(su, "DELETE FROM outbox.dead_letters WHERE key = 'a'");
        fx_relay_kill(r, SIGTERM);
        ck_assert_int_eq(fx_relay_wait(r, 15000), 0);
        fx_relay_free(r);
        r = fx_relay_start(ci, BROKERS, second);
        ck_assert_int_eq(wait_metric(port, "outbox_relay_dead_letter_rows", 1, 15000), 1);
        fx_relay_kill(r, SIGTERM);
        ck_assert_int_eq(fx_relay_wait(r, 15000), 0);
        fx_relay_free(r);
        PQfinish(su);
        free(ci);
}
END_TEST

/* ---- The dead-letter topic (--dead-letter-topic) ---- */

static const char *json_str(json_t *o, const char *path1, const char *path2)
{
        json_t *v = json_object_get(o, path1);

        if (path2 != NULL)
                v = json_object_get(v, path2);
        return json_string_value(v);
}

/* With Kafka down, rows that cannot be routed are dead-lettered all the
 * same, each with its record for the topic waiting as a pending row; once
 * Kafka is back the records arrive, one JSON object each, keyed by the
 * row's key, holding the event (headers and all), the reason and the
 * attempts. A dead letter of the topic itself is not announced again. */
START_TEST(dead_letter_topic_records)
{
        char *ci = fx_fresh_outbox(pg, kafka, "env_dlq", "e-dlq", 1);
        PGconn *su = fx_db_connect(ci);
        /* One attempt: a retry would wait behind the record in flight to
         * the Kafka that is down (a failure is recorded once every row
         * produced before it has its report). */
        const char *args[] = {"--dead-letter-topic",
                              "e-dlq",
                              "--max-attempts",
                              "1",
                              "--poll-interval-ms",
                              "100",
                              NULL};
        struct fx_relay *r;
        struct fx_msg *msgs = NULL;
        long long a, b;
        int seen = 0;
        size_t n;

        /* The loop guard, on the function itself before any relay runs. */
        fx_sql(su,
               "INSERT INTO outbox.events (topic, key, payload) VALUES ('e-dlq', 'loop', '{}')");
        ck_assert_int_eq(fx_sql_int(su, "SELECT (outbox.record_failure(id, 0, 'boom', 0, 1,"
                                        " 'e-dlq') = 'dead')::int FROM outbox.events"
                                        " WHERE key = 'loop'"),
                         1);
        ck_assert_int_eq(fx_sql_int(su, "SELECT count(*) FROM outbox.events"), 0);

        ck_assert_int_eq(fx_kafka_command(kafka, "down -1"), 0);
        fx_sql(su, "INSERT INTO outbox.events (topic, key, event_type, payload, headers) VALUES"
                   " (NULL, 'k1', 'no.route', '{\"n\": 1}', '{\"traceparent\": \"" TP1 "\"}')");
        fx_sql(su,
               "INSERT INTO outbox.events (topic, payload_bytes) VALUES (NULL, '\\x00ff'::bytea)");
        a = fx_sql_int(su, "SELECT id FROM outbox.events WHERE key = 'k1'");
        b = fx_sql_int(su, "SELECT id FROM outbox.events WHERE key IS NULL");
        r = fx_relay_start(ci, BROKERS, args);
        if (fx_wait_sql(su, 3, 20000, "SELECT count(*) FROM outbox.dead_letters") != 3) {
                char *log = fx_relay_log(r);

                ck_abort_msg("not dead-lettered with Kafka down; the relay's log:\n%s", log);
        }
        ck_assert_int_eq(fx_sql_int(su, "SELECT count(*) FROM outbox.events"
                                        " WHERE topic = 'e-dlq' AND status = 'pending'"
                                        " AND event_type = 'outbox.dead_letter'"),
                         2);
        ck_assert_int_eq(fx_kafka_command(kafka, "up -1"), 0);
        ck_assert_int_eq(
            fx_wait_sql(su, 0, 20000, "SELECT count(*) FROM outbox.events WHERE status <> 'sent'"),
            0);
        n = fx_consume(BROKERS, "e-dlq", 2, 10000, &msgs);
        ck_assert_uint_eq(n, 2);
        for (size_t i = 0; i < n; i++) {
                json_t *j = json_loadb(msgs[i].value, msgs[i].value_len, 0, NULL);
                long long id;

                ck_assert_msg(json_is_object(j), "record %zu is not a JSON object", i);
                id = json_integer_value(json_object_get(json_object_get(j, "event"), "id"));
                /* The two died independently: their records in either order. */
                ck_assert_msg(id == a || id == b, "record %zu is of row %lld", i, id);
                seen |= id == a ? 1 : 2;
                ck_assert_ptr_nonnull(json_str(j, "event", "event_id"));
                ck_assert_ptr_null(json_str(j, "event", "topic"));
                ck_assert_int_eq(json_integer_value(json_object_get(j, "attempts")), 1);
                ck_assert_ptr_nonnull(strstr(json_str(j, "reason", NULL), "no --default-topic"));
                ck_assert_ptr_nonnull(json_str(j, "first_attempt_at", NULL));
                ck_assert_ptr_nonnull(json_str(j, "last_attempt_at", NULL));
                ck_assert_ptr_nonnull(json_str(j, "event", "created_at"));
                if (id == a) {
                        ck_assert(msgs[i].key != NULL && msgs[i].key_len == 2 &&
                                  memcmp(msgs[i].key, "k1", 2) == 0);
                        ck_assert_str_eq(json_str(j, "event", "key"), "k1");
                        ck_assert_str_eq(json_str(j, "event", "event_type"), "no.route");
                        ck_assert_int_eq(
                            json_integer_value(json_object_get(
                                json_object_get(json_object_get(j, "event"), "payload"), "n")),
                            1);
                        ck_assert_str_eq(
                            json_str(json_object_get(j, "event"), "headers", "traceparent"), TP1);
                } else {
                        ck_assert_ptr_null(msgs[i].key);
                        ck_assert_str_eq(json_str(j, "event", "payload_bytes_base64"), "AP8=");
                }
                json_decref(j);
        }
        ck_assert_int_eq(seen, 3);
        fx_relay_kill(r, SIGTERM);
        ck_assert_int_eq(fx_relay_wait(r, 15000), 0);
        fx_relay_free(r);
        fx_msgs_free(msgs, n);
        PQfinish(su);
        free(ci);
}
END_TEST

Suite *test_suite(void)
{
        static const struct runner_servers servers = {suite_setup, suite_teardown};
        Suite *s = suite_create("envelope");
        const TTest *const tests[] = {trace_headers_unchanged_and_logged, cloudevents_read_back,
                                      dead_letter_gauge_and_event_lag, dead_letter_topic_records,
                                      NULL};

        runner_add_each(s, tests, &servers, 120);
        return s;
}
