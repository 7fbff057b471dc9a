/* The long run (tests/longrun.sh, not part of ctest): 1,000,000 events
 * (OUTBOX_LONGRUN_EVENTS) through the relay, half as one backlog and half
 * streamed by writer threads, with the relay's RSS sampled: does its memory
 * grow with the number of events or the size of the backlog? */
#include <check.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_harness.h"
#include "fixture.h"
#include "runner.h"

FX_DEV_SERVERS(3, 4);

#define BROKERS fx_kafka_bootstraps(kafka)

/* Polls until no row is pending, sampling the relay's VmRSS; returns the
 * largest sample (kB). */
static long drain_sampling(PGconn *c, const struct fx_relay *r, int timeout_ms)
{
        int64_t deadline = fx_now_ms() + timeout_ms;
        long max = 0;

        for (;;) {
                long kb = fh_proc_kb(fx_relay_pid(r), "VmRSS");

                max = kb > max ? kb : max;
                if (fx_sql_int(c, "SELECT count(*) FROM outbox.events WHERE status = 'pending'") ==
                    0)
                        return max;
                ck_assert_msg(fx_now_ms() < deadline, "not drained within %d ms", timeout_ms);
                poll(NULL, 0, 200);
        }
}

static void insert_backlog(PGconn *c, const char *topic, long long from, long long n)
{
        for (long long at = from; at < from + n; at += 100000)
                fx_sql(c,
                       "INSERT INTO outbox.events (topic, key, event_type, payload)"
                       " SELECT '%s', 'b-' || (g %% 64), 'longrun', jsonb_build_object('n', g)"
                       " FROM generate_series(%lld, %lld) g",
                       topic, at, (at + 100000 < from + n ? at + 100000 : from + n) - 1);
}

/* The long run (tests/longrun.sh; OUTBOX_LONGRUN_EVENTS=1000000): does the
 * relay's memory grow with the number of events or with the backlog? A
 * relay drains a small backlog, another a backlog of half the events and
 * then a stream of the other half from writer threads; peak RSS of each and
 * RSS samples along the stream go into the report. */
START_TEST(long_run_memory_is_flat)
{
        const char *topic = "f-longrun";
        const char *env = getenv("OUTBOX_LONGRUN_EVENTS");
        long long total = env && atoll(env) > 0 ? atoll(env) : 1000000, half = total / 2;
        char *ci = fx_pg_create_db(pg, "flongrun");
        PGconn *c;
        const char *args[] = {"--poll-interval-ms", "200", NULL};
        struct fh_writers_opts wo = {ci, topic, 4, 16, half, 0, 10, 100};
        struct fh_result res;
        struct fh_writers *w;
        struct fx_relay *r;
        long small_hwm, big_hwm, stream_max = 0, samples[10] = {0};
        int64_t t0;
        long long drain_ms, stream_ms;
        struct fh_writer_stats ws;
        size_t len;

        fx_migrate(ci, NULL);
        /* The dev Kafka keeps ~5 MiB per partition: 64 hold a million. */
        ck_assert_int_eq(fx_kafka_command(kafka, "topic f-longrun 64"), 0);
        c = fx_db_connect(ci);
        fh_result_init(&res, "long-run",
                       "no fault: a 10,000-row backlog, then a backlog of half "
                       "the events and a stream of the other half");
        insert_backlog(c, topic, 1, 10000);
        r = fx_relay_start(ci, BROKERS, args);
        drain_sampling(c, r, 120000);
        small_hwm = fh_proc_kb(fx_relay_pid(r), "VmHWM");
        fh_relay_stop(r, 30000);
        fh_relay_free(r, res.name);

        insert_backlog(c, topic, 10001, half);
        r = fx_relay_start(ci, BROKERS, args);
        t0 = fx_now_ms();
        drain_sampling(c, r, 1800000);
        drain_ms = fx_now_ms() - t0;
        big_hwm = fh_proc_kb(fx_relay_pid(r), "VmHWM");

        t0 = fx_now_ms();
        w = fh_writers_start(&wo);
        for (int i = 0; i < 10; i++) { /* a sample at every tenth of the stream */
                long long target = half * (i + 1) / 10;

                while (fh_writers_committed(w) < target)
                        poll(NULL, 0, 100);
                samples[i] = fh_proc_kb(fx_relay_pid(r), "VmRSS");
                stream_max = samples[i] > stream_max ? samples[i] : stream_max;
        }
        fh_writers_finish(w, 1800000, &ws);
        res.rolled_back = ws.rolled_back;
        res.drain_ms = fh_wait_drained(c, 600000);
        stream_ms = fx_now_ms() - t0;
        res.faults = 0;
        len = (size_t)snprintf(res.notes, sizeof(res.notes),
                               "peak RSS (VmHWM) %ld kB after a 10,000-row backlog, %ld kB after "
                               "a %lld-row backlog (drained in %lld ms), %ld kB after %lld more "
                               "streamed (%lld ms); VmRSS at each tenth of the stream (kB):",
                               small_hwm, big_hwm, half, drain_ms,
                               fh_proc_kb(fx_relay_pid(r), "VmHWM"), half, stream_ms);
        for (int i = 0; i < 10 && len < sizeof(res.notes); i++)
                len +=
                    (size_t)snprintf(res.notes + len, sizeof(res.notes) - len, " %ld", samples[i]);
        fh_relay_stop(r, 30000);
        fh_relay_free(r, res.name);
        fh_check(c, BROKERS, topic, &res);
        fh_report_and_assert(&res);
        PQfinish(c);
        free(ci);
}
END_TEST

static const struct runner_servers servers = {suite_setup, suite_teardown};

Suite *test_suite(void)
{
        const TTest *const tests[] = {long_run_memory_is_flat, NULL};

        return runner_suite("longrun", "longrun", &servers, 3600, tests);
}
