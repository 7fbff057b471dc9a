/* The loop never blocks, and memory is bounded by bytes (issue #16, items
 * 7 and 8), against the real relay, PostgreSQL and the dev Kafka:
 * - rows of 100 KB and of 1 MB drain with the relay's peak RSS under
 *   --memory-budget-bytes plus a fixed overhead;
 * - with the brokers down and the producer's queue full, /healthz answers
 *   and SIGTERM ends the relay within its shutdown timeout;
 * - with an ACCESS EXCLUSIVE lock held on the outbox at startup, /healthz
 *   answers, /readyz says why it is not ready, the session timeouts end
 *   every wait, SIGTERM ends the relay at once, and once the lock goes the
 *   rows are published.
 * Settings new with the fix are given in the environment, so that a relay
 * without them runs these cases too (and fails them). Each case adds a
 * line to the fault report (docs/FAULTS.md). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "fault_harness.h"
#include "fixture.h"
#include "runner.h"

FX_DEV_SERVERS(3, 4);

#define BROKERS fx_kafka_bootstraps(kafka)

/* The default budget, given explicitly: the chart's memory limit is sized
 * by it. */
#define BUDGET (64LL * 1024 * 1024)
/* What the process takes besides the rows: libraries, librdkafka's threads
 * and buffers, libpq's input buffer (the largest row), malloc's slack. A
 * relay idle takes ~12 MB; draining 100 KB rows with the default budget
 * peaked at ~13 MB over the budget, 1 MB rows under it (measured). 48 MB is
 * far from both, and far below what holding whole batches took (~190 MB
 * over the budget for 100 KB rows, ~260 MB for 1 MB rows). */
#define OVERHEAD (48LL * 1024 * 1024)
#ifdef __SANITIZE_ADDRESS__ /* ASan keeps freed memory in quarantine */
#define ASSERTED "not asserted under ASan:"
#else
#define ASSERTED "asserted"
#endif

/* The sum of the topic's high watermarks: every message Kafka has of it. */
static long long topic_messages(const char *topic)
{
        char err[512];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *t;
        rd_kafka_t *rk;
        long long total = 0;

        ck_assert_int_eq(rd_kafka_conf_set(conf, "bootstrap.servers", BROKERS, err, sizeof(err)),
                         RD_KAFKA_CONF_OK);
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        ck_assert_msg(rk != NULL, "consumer: %s", err);
        t = rd_kafka_topic_new(rk, topic, NULL);
        ck_assert_int_eq(rd_kafka_metadata(rk, 0, t, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
        ck_assert_int_eq(md->topic_cnt, 1);
        for (int p = 0; p < md->topics[0].partition_cnt; p++) {
                int64_t lo, hi;

                ck_assert_int_eq(rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000),
                                 RD_KAFKA_RESP_ERR_NO_ERROR);
                total += hi;
        }
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(t);
        rd_kafka_destroy(rk);
        return total;
}

/* Checks big rows without reading them back (the dev Kafka keeps ~5 MiB a
 * partition): each row was acknowledged at its own partition and offset,
 * a key's rows ascend in offset as in id, one partition per key, and the
 * topic holds no more messages than rows beyond duplicates. */
static void check_by_offsets(PGconn *c, const char *topic, struct fh_result *res)
{
        res->committed = fx_sql_int(c, "SELECT count(*) FROM outbox.events");
        res->lost = fx_sql_int(c, "SELECT count(*) FROM outbox.events WHERE status <> 'sent'"
                                  " OR kafka_partition IS NULL OR kafka_offset IS NULL");
        res->lost += res->committed - fx_sql_int(c, "SELECT count(DISTINCT (kafka_partition,"
                                                    " kafka_offset)) FROM outbox.events");
        res->order_violations =
            fx_sql_int(c, "SELECT count(*) FROM (SELECT kafka_partition AS p, kafka_offset AS o,"
                          " lag(kafka_partition) OVER k AS pp, lag(kafka_offset) OVER k AS po"
                          " FROM outbox.events WINDOW k AS (PARTITION BY key ORDER BY id)) x"
                          " WHERE pp IS NOT NULL AND (p <> pp OR o <= po)");
        res->dead_letters = fx_sql_int(c, "SELECT count(*) FROM outbox.dead_letters");
        res->messages = topic_messages(topic);
        res->duplicates = res->messages - (res->committed - res->lost);
}

/* n rows of row_kb KB each, a repeated letter (compressible) or random hex
 * (not), drained by a relay with the default memory budget; its peak RSS
 * must stay within the budget plus OVERHEAD. */
static void big_rows(const char *name, const char *what, int n, int row_kb, int compressible)
{
        char topic[64], db[64], budget[64], *ci;
        const char *args[] = {"--poll-interval-ms", "200", "-X", "message.max.bytes=4000000", NULL};
        const char *env[] = {budget, getenv("OUTBOX_LOOP_DEBUG") ? "OUTBOX_LOG_LEVEL=debug" : NULL,
                             NULL};
        struct fh_result res;
        struct fx_relay *r;
        PGconn *c;
        long hwm_kb, idle_kb;
        long long bound = BUDGET + OVERHEAD;

        snprintf(topic, sizeof(topic), "l-%s", name);
        snprintf(db, sizeof(db), "l%s", name);
        for (char *p = db; *p != '\0'; p++)
                *p = *p == '-' ? '_' : *p;
        snprintf(budget, sizeof(budget), "OUTBOX_MEMORY_BUDGET_BYTES=%lld", BUDGET);
        ci = fx_fresh_outbox(pg, kafka, db, topic, 16);
        c = fx_db_connect(ci);
        fh_result_init(&res, name, what);
        /* Compressible rows are stored compressed at a fiftieth of their
         * size: what the relay receives is what counts. */
        if (compressible)
                fx_sql(c,
                       "INSERT INTO outbox.events (topic, key, payload)"
                       " SELECT '%s', 'k' || (g %% 64), jsonb_build_object('n', g, 'data',"
                       " repeat('x', %d)) FROM generate_series(1, %d) g",
                       topic, row_kb * 1024, n);
        else
                fx_sql(c,
                       "INSERT INTO outbox.events (topic, key, payload)"
                       " SELECT '%s', 'k' || (g %% 64), jsonb_build_object('n', g, 'data',"
                       " md5(g::text) || r.s) FROM (SELECT string_agg(md5(random()::text), '')"
                       " AS s FROM generate_series(1, %d)) r, generate_series(1, %d) g",
                       topic, row_kb * 1024 / 32, n);
        r = fx_relay_start_env(ci, BROKERS, args, env);
        ck_assert_int_eq(fh_wait_relay_connected(c, 30000), 0);
        idle_kb = fh_proc_kb(fx_relay_pid(r), "VmRSS");
        res.drain_ms = fh_wait_drained(c, 600000);
        hwm_kb = fh_proc_kb(fx_relay_pid(r), "VmHWM");
        fh_relay_stop(r, 30000);
        fh_relay_free(r, res.name);
        check_by_offsets(c, topic, &res);
        snprintf(res.notes, sizeof(res.notes),
                 "%d rows of %d KB (%s); peak RSS (VmHWM) %ld MB with --memory-budget-bytes "
                 "%lld MiB (%s at most budget + %lld MB), %ld MB at start; drained in "
                 "%lld ms; checked by offsets",
                 n, row_kb, compressible ? "stored compressed" : "incompressible", hwm_kb / 1024,
                 BUDGET >> 20, ASSERTED, OVERHEAD >> 20, idle_kb / 1024, res.drain_ms);
        fprintf(stderr, "%s: %s\n", name, res.notes);
        ck_assert_msg(res.drain_ms >= 0, "%s: not drained", name);
        fh_report_and_assert(&res);
#ifndef __SANITIZE_ADDRESS__
        ck_assert_msg(hwm_kb * 1024LL <= bound, "%s: peak RSS %ld kB above budget + overhead %lld",
                      name, hwm_kb, bound / 1024);
#else
        (void)bound;
#endif
        PQfinish(c);
        free(ci);
}

/* 7a. 2,500 rows of 100 KB (what took the relay past the chart's 256Mi). */
START_TEST(rows_of_100_kb_drain_within_the_budget)
{
        big_rows("rows-100k",
                 "2,500 rows of 100 KB pending at start (stored compressed), default "
                 "--memory-budget-bytes (64 MiB): peak RSS checked",
                 2500, 100, 1);
}
END_TEST

/* 7b. 300 rows of 1 MB, incompressible (stored out of line as they are). */
START_TEST(rows_of_1_mb_drain_within_the_budget)
{
        big_rows("rows-1m",
                 "300 rows of 1 MB pending at start (incompressible), default "
                 "--memory-budget-bytes (64 MiB): peak RSS checked",
                 300, 1024, 0);
}
END_TEST

/* 7c. A row larger than the whole budget still goes out (a fetch returns
 * at least one row), alone, and the rows around it keep their order: the
 * smallest budget, 1 MiB, three rows of 2 MB among 200 small ones. */
START_TEST(row_larger_than_the_budget_goes_out)
{
        const char *topic = "l-overbudget";
        char *ci = fx_fresh_outbox(pg, kafka, "loverbudget", topic, 4);
        PGconn *c = fx_db_connect(ci);
        const char *args[] = {"--poll-interval-ms", "200", "-X", "message.max.bytes=4000000", NULL};
        const char *env[] = {"OUTBOX_MEMORY_BUDGET_BYTES=1048576", NULL};
        struct fh_result res;
        struct fx_relay *r;

        fh_result_init(&res, "row-over-budget",
                       "--memory-budget-bytes 1 MiB (the least), three incompressible rows of "
                       "2 MB among 200 rows of 1 KB on 4 keys");
        fx_sql(c,
               "INSERT INTO outbox.events (topic, key, payload)"
               " SELECT '%s', 'k' || (g %% 4), jsonb_build_object('n', g, 'data',"
               " CASE WHEN g IN (1, 50, 100) THEN md5(g::text) || r.s ELSE repeat('y', 1000) END)"
               " FROM (SELECT string_agg(md5(random()::text), '') AS s"
               " FROM generate_series(1, 65536)) r, generate_series(1, 203) g",
               topic);
        r = fx_relay_start_env(ci, BROKERS, args, env);
        res.drain_ms = fh_wait_drained(c, 120000);
        fh_relay_stop(r, 30000);
        fh_relay_free(r, res.name);
        check_by_offsets(c, topic, &res);
        snprintf(res.notes, sizeof(res.notes), "drained in %lld ms; checked by offsets",
                 res.drain_ms);
        ck_assert_msg(res.drain_ms >= 0, "not drained");
        fh_report_and_assert(&res);
        PQfinish(c);
        free(ci);
}
END_TEST

/* 8a. Brokers down and the producer's queue full: before, producer_send
 * waited inside librdkafka for room that never came, and neither /healthz
 * nor SIGTERM was served. Now the rest of the batch waits in the loop. */
START_TEST(full_producer_queue_blocks_nothing)
{
        const char *topic = "l-qfull";
        char *ci = fx_fresh_outbox(pg, kafka, "lqfull", topic, 4), listen[32], *body = NULL;
        PGconn *c = fx_db_connect(ci);
        int port = fx_free_port(), health, metrics, rc, lines, bad_lines;
        const char *args[] = {"--poll-interval-ms",
                              "200",
                              "--shutdown-timeout-ms",
                              "2000",
                              "--http-listen",
                              listen,
                              "-X",
                              "queue.buffering.max.messages=50",
                              "-X",
                              "reconnect.backoff.max.ms=200",
                              NULL};
        struct fh_result res;
        struct fx_relay *r;
        int64_t t0;
        long long took;

        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        fh_result_init(&res, "queue-full",
                       "all Kafka brokers down, 2,000 rows for a producer queue of 50 "
                       "(queue.buffering.max.messages): /healthz probed, SIGTERM (grace 2000 ms), "
                       "brokers back, the relay restarted with the same queue");
        r = fx_relay_start(ci, BROKERS, args);
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload)"
                  " SELECT 'l-qfull', 'k' || (g %% 8), jsonb_build_object('n', g)"
                  " FROM generate_series(1, 10) g");
        ck_assert_int_ge(fh_wait_drained(c, 60000), 0);
        ck_assert_int_eq(fx_kafka_command(kafka, "down -1"), 0);
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload)"
                  " SELECT 'l-qfull', 'k' || (g %% 8), jsonb_build_object('n', g)"
                  " FROM generate_series(11, 2010) g");
        fh_wait_relay_log(r, "producer queue full", 1, 15000);
        health = fx_http_get(port, "/healthz", &body);
        free(body);
        metrics = fx_http_get(port, "/metrics", &body);
        free(body);
        t0 = fx_now_ms();
        fx_relay_kill(r, SIGTERM);
        rc = fx_relay_wait(r, 2000 + 10000);
        took = fx_now_ms() - t0;
        lines = fh_relay_log_count(r, "producer queue full");
        /* The line must say how full and how often (a malformed one says
         * log_error instead). */
        bad_lines = fh_relay_log_count(r, "log_error");
        if (health != 200 || rc != 0 || lines < 1) {
                char *tail = fh_relay_log_tail(r);

                fh_report(&res, 0);
                /* The other cases need the brokers, and no relay of this one. */
                fx_relay_free(r);
                fx_kafka_command(kafka, "up -1");
                ck_abort_msg("/healthz %d, /metrics %d while the queue was full; exit %d after "
                             "SIGTERM (-1: still running %lld ms later); log:\n%s",
                             health, metrics, rc, took, tail);
        }
        fh_relay_free(r, res.name);
        ck_assert_int_eq(metrics, 200);
        ck_assert_int_eq(fx_kafka_command(kafka, "up -1"), 0);
        res.faults = 1;
        r = fx_relay_start(ci, BROKERS, args);
        fh_result_recovery(&res, fh_wait_delivery(c, 60000));
        res.drain_ms = fh_wait_drained(c, 120000);
        /* Filling and emptying 40 times over is no reason for 40 lines. */
        lines += fh_relay_log_count(r, "producer queue full");
        bad_lines += fh_relay_log_count(r, "log_error");
        fh_relay_stop(r, 30000);
        fh_relay_free(r, res.name);
        snprintf(res.notes, sizeof(res.notes),
                 "/healthz 200 and /metrics 200 while the queue was full; exit 0 %lld ms after "
                 "SIGTERM (grace 2000 ms); the restarted relay drained through the 50-message "
                 "queue; %d \"queue full\" log lines in all",
                 took, lines);
        fh_check(c, BROKERS, topic, &res);
        fh_report_and_assert(&res);
        ck_assert_int_lt(lines, 20);
        ck_assert_int_eq(bad_lines, 0);
        PQfinish(c);
        free(ci);
}
END_TEST

/* Starts a relay named `name` (its sessions are outbox-relay/<name> and
 * outbox-relay-writer/<name>) with its HTTP port and extra environment. */
static struct fx_relay *start_probed(const char *ci, const char *name, int port,
                                     const char *const env[])
{
        char listen[32];
        const char *args[] = {"--poll-interval-ms",
                              "200",
                              "--reconnect-max-ms",
                              "1000",
                              "--shutdown-timeout-ms",
                              "2000",
                              "--http-listen",
                              listen,
                              "--instance-id",
                              name,
                              NULL};

        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        return fx_relay_start_env(ci, BROKERS, args, env);
}

/* Polls until a session of the relay named `name` waits for a lock. */
static int wait_for_lock_wait(PGconn *c, const char *name)
{
        return (int)fx_wait_sql(c, 1, 20000,
                                "SELECT (count(*) > 0)::int FROM pg_stat_activity"
                                " WHERE application_name LIKE 'outbox-relay%%/%s'"
                                " AND wait_event_type = 'Lock'",
                                name);
}

/* /healthz must answer 200 and /readyz 503 saying the database is not
 * there; then SIGTERM must end the relay with 0 within its grace. Returns
 * the ms SIGTERM took; fails the case (reported) otherwise. */
static long long probe_and_stop(struct fx_relay *r, int port, const char *which,
                                struct fh_result *res)
{
        char *health = NULL, *ready = NULL;
        int h = fx_http_get(port, "/healthz", &health), rd = fx_http_get(port, "/readyz", &ready);
        int64_t t0 = fx_now_ms();
        int rc, why;

        why = ready != NULL && strstr(ready, "not connected to the database") != NULL;
        fx_relay_kill(r, SIGTERM);
        rc = fx_relay_wait(r, 2000 + 10000);
        if (h != 200 || rd != 503 || !why || rc != 0) {
                char *tail = fh_relay_log_tail(r);

                fh_report(res, 0);
                fx_relay_free(r);
                ck_abort_msg("%s: /healthz %d, /readyz %d (%s), exit %d after SIGTERM (-1: still "
                             "running); log:\n%s",
                             which, h, rd, ready != NULL ? ready : "no answer", rc, tail);
        }
        free(health);
        free(ready);
        return fx_now_ms() - t0;
}

/* 8b. LOCK TABLE outbox.events IN ACCESS EXCLUSIVE MODE held by another
 * session while relays start: before, setup blocked in a prepare (libpq's
 * blocking calls) with /healthz unanswered and SIGTERM waiting for the
 * lock. Three relays: lock_timeout 500 ms, statement_timeout 500 ms (and a
 * lock_timeout of a minute), the defaults (stopped while it waits). Then
 * the lock goes and a relay publishes every row. */
START_TEST(locked_outbox_at_startup_blocks_nothing)
{
        const char *topic = "l-locked";
        char *ci = fx_fresh_outbox(pg, kafka, "llocked", topic, 4);
        PGconn *c = fx_db_connect(ci), *locker = fx_db_connect(ci);
        const char *lock_env[] = {"OUTBOX_LOCK_TIMEOUT_MS=500", NULL};
        const char *stmt_env[] = {"OUTBOX_STATEMENT_TIMEOUT_MS=500", "OUTBOX_LOCK_TIMEOUT_MS=60000",
                                  NULL};
        int ports[3] = {fx_free_port(), fx_free_port(), fx_free_port()};
        struct fx_relay *r[3];
        struct fh_result res;
        long long took[3];
        int64_t released;

        fh_result_init(&res, "outbox-locked",
                       "ACCESS EXCLUSIVE lock on outbox.events held while relays start (one with "
                       "lock_timeout 500 ms, one with statement_timeout 500 ms, one with the "
                       "defaults): probes, SIGTERM, then the lock released");
        fx_sql(c, "INSERT INTO outbox.events (topic, key, payload)"
                  " SELECT 'l-locked', 'k' || (g %% 8), jsonb_build_object('n', g)"
                  " FROM generate_series(1, 500) g");
        fx_sql(locker, "BEGIN");
        fx_sql(locker, "LOCK TABLE outbox.events IN ACCESS EXCLUSIVE MODE");
        r[0] = start_probed(ci, "locked-a", ports[0], lock_env);
        r[1] = start_probed(ci, "locked-b", ports[1], stmt_env);
        r[2] = start_probed(ci, "locked-c", ports[2], NULL);
        /* Each timeout ends the wait with a line naming it, and the relay
         * tries again (twice at least). */
        fh_wait_relay_log(r[0], "lock timeout", 2, 20000);
        fh_wait_relay_log(r[1], "statement timeout", 2, 20000);
        if (fh_relay_log_count(r[0], "lock timeout") < 2 ||
            fh_relay_log_count(r[1], "statement timeout") < 2) {
                char *tails[2] = {fh_relay_log_tail(r[0]), fh_relay_log_tail(r[1])};

                fh_report(&res, 0);
                for (int i = 0; i < 3; i++)
                        fx_relay_free(r[i]);
                ck_abort_msg("the session timeouts did not end the waits; logs:\n%s\n%s", tails[0],
                             tails[1]);
        }
        /* The third waits for the lock right now. */
        ck_assert_int_eq(wait_for_lock_wait(c, "locked-c"), 1);
        for (int i = 0; i < 3; i++) {
                took[i] = probe_and_stop(r[i], ports[i],
                                         i == 0   ? "lock_timeout 500 ms"
                                         : i == 1 ? "statement_timeout 500 ms"
                                                  : "defaults, mid-wait",
                                         &res);
                fh_relay_free(r[i], res.name);
        }
        /* (Read in the locker's transaction: anyone else would wait.) */
        ck_assert_int_eq(
            fx_sql_int(locker, "SELECT count(*) FROM outbox.events WHERE status = 'sent'"), 0);
        /* A relay waiting for the lock gets the rows once it goes. */
        r[0] = start_probed(ci, "locked-d", ports[0], NULL);
        ck_assert_int_eq(wait_for_lock_wait(c, "locked-d"), 1);
        fx_sql(locker, "ROLLBACK");
        released = fx_now_ms();
        res.faults = 1;
        fh_result_recovery(&res, fh_wait_delivery(c, 60000) >= 0 ? fx_now_ms() - released : -1);
        res.drain_ms = fh_wait_drained(c, 60000);
        fh_relay_stop(r[0], 30000);
        fh_relay_free(r[0], res.name);
        snprintf(res.notes, sizeof(res.notes),
                 "/healthz 200, /readyz 503 \"not connected to the database\" with the lock "
                 "held; exit 0 %lld / %lld / %lld ms after SIGTERM (grace 2000 ms); nothing "
                 "published while locked; recovery from the release",
                 took[0], took[1], took[2]);
        fh_check(c, BROKERS, topic, &res);
        fh_report_and_assert(&res);
        PQfinish(locker);
        PQfinish(c);
        free(ci);
}
END_TEST

/* Each test a test case of its own (CK_RUN_CASE=<test>), the servers
 * started once for them all. */
static const struct runner_servers servers = {suite_setup, suite_teardown};

Suite *test_suite(void)
{
        Suite *s = suite_create("loop");
        const TTest *const tests[] = {
            full_producer_queue_blocks_nothing,     locked_outbox_at_startup_blocks_nothing,
            rows_of_100_kb_drain_within_the_budget, rows_of_1_mb_drain_within_the_budget,
            row_larger_than_the_budget_goes_out,    NULL};

        runner_add_each(s, tests, &servers, 600);
        return s;
}
