/* Integration tests of the way off Debezium (sql/006_debezium.sql): tables
 * in Debezium's outbox layout written by services that know nothing of the
 * relay, the trigger install_debezium_outbox() puts on them, the real relay
 * publishing to the dev Kafka, and a consumer checking every message is the
 * one Debezium's outbox event router would have sent. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "runner.h"

static struct fx_pg *pg;
static struct fx_kafka *kafka;

static void suite_setup(void)
{
        pg = fx_pg_start();
        kafka = fx_kafka_start(1, 4);
}

static void suite_teardown(void)
{
        fx_kafka_stop(kafka);
        fx_pg_stop(pg);
}

static char *fresh_db(const char *name)
{
        char *conninfo = fx_pg_create_db(pg, name);

        fx_migrate(conninfo, NULL);
        return conninfo;
}

/* A service's role: LOGIN and nothing else until the test grants it rights
 * on its own tables (roles are shared by the cluster's databases). */
static void make_role(PGconn *c, const char *role)
{
        fx_sql(c,
               "DO $$ BEGIN CREATE ROLE %s LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; "
               "END $$",
               role);
}

/* Runs sql expecting it to fail with an error containing want. */
static void expect_error(PGconn *c, const char *sql, const char *want)
{
        PGresult *res = PQexec(c, sql);

        ck_assert_msg(PQresultStatus(res) == PGRES_FATAL_ERROR, "%s succeeded", sql);
        ck_assert_msg(strstr(PQresultErrorMessage(res), want) != NULL, "%s: %s (wanted \"%s\")",
                      sql, PQresultErrorMessage(res), want);
        PQclear(res);
}

/* Event n's id: a uuid the test can read back its number from. */
static void event_uuid(char *out, size_t size, int n)
{
        snprintf(out, size, "00000000-0000-4000-8000-%012d", n);
}

static int uuid_number(const char *uuid)
{
        return atoi(uuid + 24);
}

/* The aggregate (key) of event n of the orders table, and the payload the
 * service writes for it: odd spacing and key order that jsonb normalises. */
#define ORDER_KEYS 4
static void order_key(char *out, size_t size, int n)
{
        snprintf(out, size, "order-%d", n % ORDER_KEYS);
}

static void order_payload(char *out, size_t size, int n)
{
        snprintf(out, size,
                 "{ \"seq\":%d ,  \"aggregate\" : \"order-%d\", \"note\":\"caf\\u00e9 \xc3\xbc\" }",
                 n, n % ORDER_KEYS);
}

/* One INSERT statement of count orders, numbered from *ev + 1. */
static void insert_orders(PGconn *c, int *ev, int count)
{
        char sql[4096], id[64], key[32], payload[160];
        size_t len = (size_t)snprintf(sql, sizeof(sql),
                                      "INSERT INTO outboxevent (id, aggregatetype, aggregateid,"
                                      " type, payload) VALUES ");

        for (int i = 0; i < count; i++) {
                ++*ev;
                event_uuid(id, sizeof(id), *ev);
                order_key(key, sizeof(key), *ev);
                order_payload(payload, sizeof(payload), *ev);
                len += (size_t)snprintf(sql + len, sizeof(sql) - len,
                                        "%s('%s', 'Order', '%s', '%s', '%s')", i > 0 ? ", " : "",
                                        id, key, i % 2 ? "OrderUpdated" : "OrderCreated", payload);
                ck_assert(len < sizeof(sql));
        }
        fx_sql(c, "%s", sql);
}

static int header_is(const struct fx_msg *m, const char *name, const char *want)
{
        const struct fx_header *h = fx_msg_header(m, name);

        return h != NULL && h->value != NULL && h->value_len == strlen(want) &&
               memcmp(h->value, want, h->value_len) == 0;
}

static int bytes_are(const char *p, size_t len, const char *want, size_t want_len)
{
        return p != NULL && len == want_len && memcmp(p, want, len) == 0;
}

/* Three Debezium-layout tables (jsonb payload with Debezium's defaults;
 * bytea payload, a changed route.topic.replacement and the type placed in a
 * header; text payload under renamed columns), written by a role with rights
 * on those tables only, some rows deleted right after their insert as
 * Debezium users do, one transaction rolled back. Each message must be what
 * the event router sends by default: topic, key, id header, payload bytes,
 * in order per aggregate, and nothing of the rolled-back transaction. */
START_TEST(debezium_layout_published_as_the_event_router_would)
{
        char *ci = fresh_db("dbz_publish");
        PGconn *admin = fx_db_connect(ci);
        PGconn *svc;
        const char *args[] = {"--poll-interval-ms", "3600000", NULL};
        struct fx_relay *r;
        struct fx_msg *msgs;
        PGresult *res;
        char id[64], key[32], payload[160], want[160];
        int last_seq[ORDER_KEYS];
        size_t n;
        int ev = 0;

        fx_sql(admin, "CREATE TABLE public.outboxevent (id uuid NOT NULL PRIMARY KEY,"
                      " aggregatetype varchar(255) NOT NULL, aggregateid varchar(255) NOT NULL,"
                      " type varchar(255) NOT NULL, payload jsonb,"
                      " \"timestamp\" timestamp DEFAULT now(), tracingspancontext varchar(256))");
        fx_sql(admin, "CREATE TABLE public.invoice_outbox (id uuid PRIMARY KEY,"
                      " aggregatetype text NOT NULL, aggregateid text NOT NULL, type text,"
                      " payload bytea)");
        fx_sql(admin, "CREATE TABLE public.customer_events (event_id uuid PRIMARY KEY,"
                      " aggregate_type text NOT NULL, aggregate_id bigint NOT NULL,"
                      " event_type text, body text)");
        res = PQexec(admin, "SELECT outbox.install_debezium_outbox('public.outboxevent')");
        ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
        ck_assert_str_eq(PQgetvalue(res, 0, 0), "outbox_relay_debezium");
        PQclear(res);
        fx_sql(admin, "SELECT outbox.install_debezium_outbox('invoice_outbox',"
                      " topic_pattern => 'legacy.${routedByValue}.events',"
                      " additional_placement => 'type:header:eventType')");
        fx_sql(admin, "SELECT outbox.install_debezium_outbox('customer_events',"
                      " event_id_field => 'event_id', route_by_field => 'aggregate_type',"
                      " event_key_field => 'aggregate_id', payload_field => 'body',"
                      " event_type_field => 'event_type')");
        make_role(admin, "dbz_service");
        fx_sql(admin, "GRANT INSERT, SELECT, DELETE ON public.outboxevent TO dbz_service");
        fx_sql(admin,
               "GRANT INSERT ON public.invoice_outbox, public.customer_events TO dbz_service");
        svc = fx_db_connect_as(ci, "dbz_service");
        /* The service has no right on the relay's outbox: only the trigger does. */
        expect_error(svc, "INSERT INTO outbox.events (topic) VALUES ('x')", "permission denied");

        r = fx_relay_start(ci, fx_kafka_bootstraps(kafka), args);
        /* 100 orders in 10 transactions, each of single-row and multi-row
         * INSERTs; every other transaction deletes its rows before it
         * commits. */
        for (int tx = 0; tx < 10; tx++) {
                fx_sql(svc, "BEGIN");
                insert_orders(svc, &ev, 1);
                insert_orders(svc, &ev, 6);
                insert_orders(svc, &ev, 1);
                insert_orders(svc, &ev, 2);
                if (tx % 2 == 1)
                        fx_sql(svc,
                               "DELETE FROM outboxevent WHERE xmin = pg_current_xact_id()::xid");
                fx_sql(svc, "COMMIT");
        }
        ck_assert_int_eq(ev, 100);
        fx_sql(svc, "BEGIN");
        fx_sql(svc, "INSERT INTO outboxevent (id, aggregatetype, aggregateid, type, payload)"
                    " SELECT gen_random_uuid(), 'Order', 'order-0', 'RolledBack', '{}'"
                    " FROM generate_series(1, 10)");
        fx_sql(svc, "INSERT INTO invoice_outbox (id, aggregatetype, aggregateid, payload)"
                    " VALUES (gen_random_uuid(), 'Invoice', 'inv-rolled-back', '\\x00')");
        fx_sql(svc, "ROLLBACK");
        /* The trigger runs as the outbox's owner: the writer's temporary
         * tables named like what it writes and reads stay out of it. */
        fx_sql(svc, "CREATE TEMP TABLE events (event_id uuid, topic text, key text,"
                    " event_type text, payload jsonb, payload_bytes bytea, headers jsonb)");
        fx_sql(svc, "CREATE TEMP TABLE debezium_rows (id uuid, aggregatetype text,"
                    " aggregateid text, type text, payload bytea)");
        for (int i = 1; i <= 10; i++) {
                event_uuid(id, sizeof(id), 1000 + i);
                fx_sql(svc,
                       "INSERT INTO invoice_outbox VALUES ('%s', 'Invoice', 'inv-%d', %s,"
                       " '\\x00ff%02x80'::bytea)",
                       id, i % 2, i == 3 ? "NULL" : "'InvoiceIssued'", 'A' + i);
        }
        for (int i = 1; i <= 5; i++) {
                event_uuid(id, sizeof(id), 2000 + i);
                fx_sql(svc,
                       "INSERT INTO customer_events VALUES ('%s', 'Customer', 42, 'Renamed',"
                       " '{\"b\" : %d,\"a\":[ ],\"name\":\"Zoë\"}')",
                       id, i);
        }
        ck_assert_int_eq(fx_wait_sql(admin, 115, 60000,
                                     "SELECT count(*) FROM outbox.events WHERE status = 'sent'"),
                         115);
        ck_assert_int_eq(fx_sql_int(admin, "SELECT count(*) FROM outbox.events"), 115);
        ck_assert_int_eq(fx_sql_int(admin, "SELECT count(*) FROM outbox.dead_letters"), 0);
        ck_assert_int_eq(fx_sql_int(svc, "SELECT count(*) FROM pg_temp.events"), 0);
        ck_assert_int_eq(fx_sql_int(admin, "SELECT count(*) FROM public.outboxevent"), 50);
        /* The type column is the relay's event_type (its logs, dead letters). */
        ck_assert_int_eq(fx_sql_int(admin, "SELECT count(*) FROM outbox.events"
                                           " WHERE event_type IN ('OrderCreated', 'OrderUpdated')"),
                         100);

        /* Orders: Debezium's defaults. */
        n = fx_consume(fx_kafka_bootstraps(kafka), "outbox.event.Order", 101, 3000, &msgs);
        ck_assert_uint_eq(n, 100);
        for (int k = 0; k < ORDER_KEYS; k++)
                last_seq[k] = 0;
        for (size_t i = 0; i < n; i++) {
                const struct fx_header *h = fx_msg_header(&msgs[i], "id");
                int num;

                ck_assert_msg(h != NULL && h->value != NULL, "message %zu has no id header", i);
                num = uuid_number(h->value);
                ck_assert(num >= 1 && num <= 100);
                event_uuid(id, sizeof(id), num);
                ck_assert(header_is(&msgs[i], "id", id));
                ck_assert(header_is(&msgs[i], "event_id", id)); /* the relay's, same uuid */
                ck_assert_ptr_null(fx_msg_header(&msgs[i], "eventType"));
                order_key(key, sizeof(key), num);
                ck_assert_msg(bytes_are(msgs[i].key, msgs[i].key_len, key, strlen(key)),
                              "event %d: key %.*s", num, (int)msgs[i].key_len, msgs[i].key);
                /* The value is the jsonb as PostgreSQL prints it, as Debezium
                 * reads it from the WAL. */
                order_payload(payload, sizeof(payload), num);
                {
                        const char *p[1] = {payload};

                        res = PQexecParams(admin, "SELECT $1::jsonb::text", 1, NULL, p, NULL, NULL,
                                           0);
                        ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
                        snprintf(want, sizeof(want), "%s", PQgetvalue(res, 0, 0));
                        PQclear(res);
                }
                ck_assert_msg(bytes_are(msgs[i].value, msgs[i].value_len, want, strlen(want)),
                              "event %d: value %.*s, want %s", num, (int)msgs[i].value_len,
                              msgs[i].value, want);
                /* One key, one partition, in the order the service wrote. */
                ck_assert_msg(num > last_seq[num % ORDER_KEYS], "event %d after %d of %s", num,
                              last_seq[num % ORDER_KEYS], key);
                last_seq[num % ORDER_KEYS] = num;
        }
        fx_msgs_free(msgs, n);

        /* Invoices: bytes as written, the pattern the user had, type in a
         * header only where it is set. */
        n = fx_consume(fx_kafka_bootstraps(kafka), "legacy.Invoice.events", 11, 3000, &msgs);
        ck_assert_uint_eq(n, 10);
        for (size_t i = 0; i < n; i++) {
                const struct fx_header *h = fx_msg_header(&msgs[i], "id");
                int num = h != NULL && h->value != NULL ? uuid_number(h->value) - 1000 : -1;
                char bin[4] = {'\x00', '\xff', (char)('A' + num), '\x80'};

                ck_assert(num >= 1 && num <= 10);
                snprintf(key, sizeof(key), "inv-%d", num % 2);
                ck_assert(bytes_are(msgs[i].key, msgs[i].key_len, key, strlen(key)));
                ck_assert(bytes_are(msgs[i].value, msgs[i].value_len, bin, sizeof(bin)));
                if (num == 3)
                        ck_assert_ptr_null(fx_msg_header(&msgs[i], "eventType"));
                else
                        ck_assert(header_is(&msgs[i], "eventType", "InvoiceIssued"));
        }
        fx_msgs_free(msgs, n);

        /* Customers: renamed columns, a bigint key, text kept byte for byte. */
        n = fx_consume(fx_kafka_bootstraps(kafka), "outbox.event.Customer", 6, 3000, &msgs);
        ck_assert_uint_eq(n, 5);
        for (size_t i = 0; i < n; i++) {
                const struct fx_header *h = fx_msg_header(&msgs[i], "id");
                int num = h != NULL && h->value != NULL ? uuid_number(h->value) - 2000 : -1;

                ck_assert_int_eq(num, (int)i + 1); /* one key: all in order */
                ck_assert(bytes_are(msgs[i].key, msgs[i].key_len, "42", 2));
                snprintf(want, sizeof(want), "{\"b\" : %d,\"a\":[ ],\"name\":\"Zo\xc3\xab\"}", num);
                ck_assert_msg(bytes_are(msgs[i].value, msgs[i].value_len, want, strlen(want)),
                              "value %.*s", (int)msgs[i].value_len, msgs[i].value);
                ck_assert(header_is(&msgs[i], "event_type", "Renamed"));
        }
        fx_msgs_free(msgs, n);

        fx_relay_free(r);
        PQfinish(svc);
        PQfinish(admin);
        free(ci);
}
END_TEST

/* Bad tables and arguments are refused at install with the column or the
 * argument named; bad rows are refused at INSERT, naming the row; and only
 * a role granted EXECUTE on the trigger function may attach it (it lends
 * the outbox owner's INSERT on events). */
START_TEST(install_and_insert_refuse_bad_input)
{
        char *ci = fresh_db("dbz_refuse");
        PGconn *admin = fx_db_connect(ci);
        PGconn *owner;

        fx_sql(admin, "CREATE TABLE no_key (id uuid, aggregatetype text, payload jsonb)");
        expect_error(admin, "SELECT outbox.install_debezium_outbox('no_key')",
                     "table public.no_key has no column \"aggregateid\" (name another with "
                     "table.field.event.key)");
        fx_sql(admin, "CREATE TABLE int_id (id bigint, aggregatetype text, aggregateid text,"
                      " payload jsonb)");
        expect_error(admin, "SELECT outbox.install_debezium_outbox('int_id')",
                     "column \"id\" of public.int_id must be uuid, not bigint");
        fx_sql(admin, "CREATE TABLE int_payload (id uuid, aggregatetype text, aggregateid text,"
                      " payload integer, type integer)");
        expect_error(
            admin, "SELECT outbox.install_debezium_outbox('int_payload')",
            "column \"payload\" of public.int_payload must be jsonb, json, text, varchar or "
            "bytea, not integer");
        fx_sql(admin, "ALTER TABLE int_payload ALTER payload TYPE text");
        expect_error(admin, "SELECT outbox.install_debezium_outbox('int_payload')",
                     "column \"type\" of public.int_payload must be text or varchar, not integer");
        fx_sql(admin,
               "SELECT outbox.install_debezium_outbox('int_payload', event_type_field => NULL)");
        expect_error(admin,
                     "SELECT outbox.install_debezium_outbox('int_payload',"
                     " event_type_field => NULL, additional_placement => 'type:envelope')",
                     "placement \"envelope\" is not supported, only header");
        expect_error(admin,
                     "SELECT outbox.install_debezium_outbox('int_payload',"
                     " event_type_field => NULL, additional_placement => 'id:header')",
                     "header \"id\" is already set");
        expect_error(admin,
                     "SELECT outbox.install_debezium_outbox('int_payload',"
                     " event_type_field => NULL, additional_placement => 'nope:header:x')",
                     "has no column \"nope\"");
        expect_error(admin,
                     "SELECT outbox.install_debezium_outbox('int_payload',"
                     " event_type_field => NULL, topic_pattern => 'events/${routedByValue}')",
                     "topic_pattern \"events/${routedByValue}\" is not a Kafka topic name");
        fx_sql(admin, "CREATE VIEW a_view AS SELECT * FROM int_payload");
        expect_error(admin, "SELECT outbox.install_debezium_outbox('a_view')",
                     "public.a_view is not a table");

        /* Rows: a topic Kafka would refuse, a NULL aggregatetype. Nothing
         * reaches events. */
        fx_sql(admin, "INSERT INTO int_payload VALUES (gen_random_uuid(), 'Good', 'k', 'x', 1)");
        expect_error(admin,
                     "INSERT INTO int_payload VALUES"
                     " ('00000000-0000-4000-8000-000000000001', 'Good', 'k', 'x', 1),"
                     " ('00000000-0000-4000-8000-000000000002', 'Not good', 'k', 'x', 1)",
                     "Debezium outbox row 00000000-0000-4000-8000-000000000002 in "
                     "public.int_payload: topic \"outbox.event.Not good\" (from aggregatetype "
                     "\"Not good\") is not a Kafka topic name");
        expect_error(admin,
                     "INSERT INTO int_payload VALUES"
                     " ('00000000-0000-4000-8000-000000000003', NULL, 'k', 'x', 1)",
                     "has a NULL aggregatetype (it names the topic)");
        ck_assert_int_eq(fx_sql_int(admin, "SELECT count(*) FROM outbox.events"), 1);
        /* A column changed to a type of the table owner's own after the
         * install: the trigger, running as the outbox's owner, refuses to
         * cast it (a cast of the owner's own would run with its rights). */
        fx_sql(admin, "DROP VIEW a_view");
        fx_sql(admin, "CREATE TYPE mood AS ENUM ('k')");
        fx_sql(admin, "ALTER TABLE int_payload ALTER aggregateid TYPE mood USING 'k'");
        expect_error(admin,
                     "INSERT INTO int_payload VALUES (gen_random_uuid(), 'Good', 'k', 'x', 1)",
                     "Debezium outbox table public.int_payload has a column of a type that is "
                     "not built in");
        expect_error(admin,
                     "SELECT outbox.install_debezium_outbox('int_payload',"
                     " event_type_field => NULL)",
                     "column \"aggregateid\" of public.int_payload must be text, varchar, uuid or "
                     "an integer, not public.mood");
        ck_assert_int_eq(fx_sql_int(admin, "SELECT count(*) FROM outbox.events"), 1);

        /* A table's owner without EXECUTE on the trigger function cannot
         * attach it; granted, it can, and its rows reach events. */
        make_role(admin, "dbz_table_owner");
        fx_sql(admin, "GRANT CREATE ON SCHEMA public TO dbz_table_owner");
        fx_sql(admin, "GRANT USAGE ON SCHEMA outbox TO dbz_table_owner");
        owner = fx_db_connect_as(ci, "dbz_table_owner");
        fx_sql(owner, "CREATE TABLE owned (id uuid, aggregatetype text, aggregateid text,"
                      " payload jsonb)");
        expect_error(owner, "SELECT outbox.install_debezium_outbox('owned')",
                     "permission denied for function install_debezium_outbox");
        fx_sql(admin, "GRANT EXECUTE ON FUNCTION outbox.install_debezium_outbox(regclass, text,"
                      " name, name, name, name, name, text),"
                      " outbox.debezium_column_type(regclass, name, text) TO dbz_table_owner");
        expect_error(owner, "SELECT outbox.install_debezium_outbox('owned')",
                     "permission denied for function outbox.debezium_forward");
        fx_sql(admin, "GRANT EXECUTE ON FUNCTION outbox.debezium_forward() TO dbz_table_owner");
        fx_sql(owner, "SELECT outbox.install_debezium_outbox('owned')");
        fx_sql(owner, "INSERT INTO owned VALUES (gen_random_uuid(), 'Owned', 'k', '{}')");
        ck_assert_int_eq(fx_sql_int(admin, "SELECT count(*) FROM outbox.events"
                                           " WHERE topic = 'outbox.event.Owned'"),
                         1);
        PQfinish(owner);
        PQfinish(admin);
        free(ci);
}
END_TEST

/* A partitioned outbox table: rows inserted through the parent, straight
 * into a partition, and into a partition made after the install, all reach
 * events (a statement trigger on the parent would miss the last two). */
START_TEST(partitioned_table_rows_all_reach_the_outbox)
{
        char *ci = fresh_db("dbz_partitioned");
        PGconn *admin = fx_db_connect(ci);

        fx_sql(admin, "CREATE TABLE part (id uuid NOT NULL, aggregatetype text NOT NULL,"
                      " aggregateid text NOT NULL, type text, payload jsonb, day date NOT NULL)"
                      " PARTITION BY RANGE (day)");
        fx_sql(admin, "CREATE TABLE part_2024 PARTITION OF part"
                      " FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')");
        fx_sql(admin, "SELECT outbox.install_debezium_outbox('part')");
        fx_sql(admin, "CREATE TABLE part_2025 PARTITION OF part"
                      " FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')");
        fx_sql(admin,
               "INSERT INTO part VALUES"
               " ('00000000-0000-4000-8000-000000000001', 'Part', 'a', 't', '{}', '2024-05-01'),"
               " ('00000000-0000-4000-8000-000000000002', 'Part', 'b', 't', '{}', '2025-05-01')");
        fx_sql(admin,
               "INSERT INTO part_2024 VALUES"
               " ('00000000-0000-4000-8000-000000000003', 'Part', 'c', 't', '{}', '2024-06-01')");
        fx_sql(admin,
               "INSERT INTO part_2025 VALUES"
               " ('00000000-0000-4000-8000-000000000004', 'Part', 'd', 't', '{}', '2025-06-01')");
        ck_assert_int_eq(fx_sql_int(admin, "SELECT count(*) FROM outbox.events"
                                           " WHERE topic = 'outbox.event.Part'"
                                           " AND headers ->> 'id' = event_id::text"),
                         4);
        ck_assert_int_eq(fx_sql_int(admin, "SELECT string_agg(key, '' ORDER BY id) = 'abcd'"
                                           " FROM outbox.events"),
                         1);
        PQfinish(admin);
        free(ci);
}
END_TEST

/* Each test a test case of its own (CK_RUN_CASE=<test>), the servers
 * started once for them all. */
static const struct runner_servers servers = {suite_setup, suite_teardown};

Suite *test_suite(void)
{
        Suite *s = suite_create("debezium");
        const TTest *const tests[] = {debezium_layout_published_as_the_event_router_would,
                                      install_and_insert_refuse_bad_input,
                                      partitioned_table_rows_all_reach_the_outbox, NULL};

        runner_add_each(s, tests, &servers, 240);
        return s;
}
