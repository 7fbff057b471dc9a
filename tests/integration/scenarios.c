/* scenarios: rows and expected messages of the end-to-end cases both
 * brokers run (see scenarios.h). */
#include "scenarios.h"

#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "fault_harness.h"
#include "fixture.h"

long long sc_outbox_id(const struct fx_msg *m)
{
        const struct fx_header *h = fx_msg_header(m, "outbox_id");

        ck_assert_ptr_nonnull(h);
        return atoll(h->value);
}

void sc_tenk_write(PGconn *c)
{
        for (int t = 0; t < 11; t++) {
                /* Transaction 5 is rolled back: its ids are drawn, never committed. */
                fx_sql(c, "BEGIN");
                fx_sql(c,
                       "INSERT INTO outbox.events (topic, key, event_type, payload, headers) "
                       "SELECT 'tenk', 'key-' || (g %% 100), 'thing.happened', "
                       "jsonb_build_object('n', g, 'text', repeat('x', g %% 50), 'u', 'é\"\\', "
                       "'rb', %s), jsonb_build_object('correlation_id', 'c-' || g, 'tx', '%d') "
                       "FROM generate_series(%d, %d) g",
                       t == 5 ? "true" : "false", t, t * 1000 + 1, t * 1000 + 1000);
                fx_sql(c, t == 5 ? "ROLLBACK" : "COMMIT");
        }
}

void sc_tenk_check(PGconn *c, const struct fx_msg *msgs, size_t n)
{
        PGresult *rows = PQexec(c, "SELECT id, key, payload::text, event_id::text,"
                                   " headers->>'correlation_id', headers->>'tx', kafka_partition,"
                                   " kafka_offset, floor(extract(epoch FROM created_at) * 1000)"
                                   "::bigint FROM outbox.events ORDER BY id");
        struct fh_first *firsts = calloc(n ? n : 1, sizeof(*firsts));
        char *seen = calloc(11001, 1), note[512] = "";

        ck_assert_msg(firsts && seen, "out of memory");
        ck_assert_int_eq(PQresultStatus(rows), PGRES_TUPLES_OK);
        ck_assert_int_eq(PQntuples(rows), SC_TENK_ROWS);
        ck_assert_uint_eq(n, SC_TENK_ROWS);
        for (size_t i = 0; i < n; i++) {
                const struct fx_msg *m = &msgs[i];
                long long id = sc_outbox_id(m);
                /* ids 5001-6000 were rolled back */
                int row = (int)(id <= 5000 ? id - 1 : id - 1001);

                ck_assert_msg(id >= 1 && id <= 11000 && (id <= 5000 || id > 6000),
                              "message of id %lld, which was never committed", id);
                ck_assert_msg(!seen[id], "event %lld published twice", id);
                seen[id] = 1;
                firsts[i] = (struct fh_first){m, i, id};
                ck_assert_int_eq(atoll(PQgetvalue(rows, row, 0)), id);
                ck_assert_str_eq(PQgetvalue(rows, row, 1), m->key ? m->key : "(null)");
                ck_assert_uint_eq(strlen(PQgetvalue(rows, row, 2)), m->value_len);
                ck_assert(memcmp(PQgetvalue(rows, row, 2), m->value, m->value_len) == 0);
                ck_assert_str_eq(fx_msg_header(m, "event_id")->value, PQgetvalue(rows, row, 3));
                ck_assert_str_eq(fx_msg_header(m, "correlation_id")->value,
                                 PQgetvalue(rows, row, 4));
                ck_assert_str_eq(fx_msg_header(m, "tx")->value, PQgetvalue(rows, row, 5));
                ck_assert_str_eq(fx_msg_header(m, "event_type")->value, "thing.happened");
                ck_assert_uint_eq(m->n_headers, 5);
                ck_assert_int_eq(atoi(PQgetvalue(rows, row, 6)), m->partition);
                ck_assert_int_eq(atoll(PQgetvalue(rows, row, 7)), m->offset);
                ck_assert_int_eq(atoll(PQgetvalue(rows, row, 8)), m->timestamp_ms);
        }
        /* n distinct committed ids out of as many rows: every row is there. */
        ck_assert_msg(fh_key_order(firsts, n, note, sizeof(note)) == 0, "per-key %s", note);
        free(seen);
        free(firsts);
        PQclear(rows);
}

void sc_shapes_write(PGconn *c)
{
        fx_sql(c, "INSERT INTO outbox.events (topic, key, created_at) "
                  "VALUES ('shapes', 'gone', '2024-02-29 12:34:56.789+00')");
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload_bytes) "
                  "VALUES ('shapes', 'gone', '\\x0001ff004180'::bytea)");
        fx_sql(c, "INSERT INTO outbox.events (topic, payload_bytes) VALUES ('shapes', '')");
}

void sc_shapes_check(const struct fx_msg *msgs, size_t n)
{
        static const char bin[] = {'\x00', '\x01', '\xff', '\x00', 'A', '\x80'};

        ck_assert_uint_eq(n, SC_SHAPES_ROWS);
        for (size_t i = 0; i < n; i++) {
                long long id = sc_outbox_id(&msgs[i]);

                if (id == 1) { /* tombstone: a key and a null value */
                        ck_assert_ptr_null(msgs[i].value);
                        ck_assert_uint_eq(msgs[i].key_len, 4);
                        ck_assert_int_eq(msgs[i].timestamp_ms, 1709210096789LL);
                } else if (id == 2) {
                        ck_assert_uint_eq(msgs[i].value_len, sizeof(bin));
                        ck_assert(memcmp(msgs[i].value, bin, sizeof(bin)) == 0);
                } else { /* no key, and an empty (not null) value */
                        ck_assert_int_eq(id, 3);
                        ck_assert_ptr_null(msgs[i].key);
                        ck_assert_ptr_nonnull(msgs[i].value);
                        ck_assert_uint_eq(msgs[i].value_len, 0);
                }
        }
}

/* The poll safety net set to an hour: rows arriving prove the wake-up. */
const char *const sc_routing_args[] = {"--poll-interval-ms", "3600000", "--route",
                                       "user.*=rt-users",    "--route", "order.created=rt-orders",
                                       "--default-topic",    "rt-misc", NULL};
const char *const sc_routing_topics[] = {"rt-users", "rt-orders", "rt-misc", "rt-explicit", NULL};

void sc_routing_write(PGconn *c)
{
        fx_sql(c, "INSERT INTO outbox.events (event_type, key, payload) VALUES"
                  " ('user.created', 'u1', '{}'), ('user.email.changed', 'u1', '{}'),"
                  " ('order.created', 'o1', '{}'), ('order.shipped', 'o1', '{}'),"
                  " (NULL, 'x', '{}')");
        fx_sql(c, "INSERT INTO outbox.events (topic, event_type, key, payload) "
                  "VALUES ('rt-explicit', 'user.created', 'u2', '{}')");
}

void sc_routing_check(const char *brokers, int more)
{
        /* Which ids each topic must hold, in log order (0: either order). */
        static const struct {
                long long first, second;
                size_t n;
                int any_order;
        } want[] = {{1, 2, 2, 0}, {3, 0, 1, 0}, {4, 5, 2, 1}, {6, 0, 1, 0}};
        struct fx_msg *msgs;
        size_t n;

        for (size_t t = 0; sc_routing_topics[t] != NULL; t++) {
                n = fx_consume(brokers, sc_routing_topics[t], want[t].n + (size_t)more, 5000,
                               &msgs);
                ck_assert_msg(n == want[t].n, "%s: %zu messages, want %zu", sc_routing_topics[t], n,
                              want[t].n);
                if (want[t].any_order)
                        ck_assert(sc_outbox_id(&msgs[0]) + sc_outbox_id(&msgs[1]) ==
                                  want[t].first + want[t].second);
                else
                        ck_assert_int_eq(sc_outbox_id(&msgs[0]), want[t].first);
                if (n > 1 && !want[t].any_order)
                        ck_assert_int_eq(sc_outbox_id(&msgs[1]), want[t].second);
                fx_msgs_free(msgs, n);
        }
}
