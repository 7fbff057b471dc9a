/* fault_cluster: PostgreSQL plus the dev Kafka or Apache Kafka for the
 * fault cases, and the steps they share (see fault_cluster.h). */
#include "fault_cluster.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

static struct fx_pg *pg;
static struct fx_kafka *mock;
static struct fx_apache *cluster;

int fc_apache(void)
{
        const char *v = getenv("OUTBOX_FAULT_KAFKA");

        /* Called from main() too, where Check cannot report a failure. */
        if (v != NULL && *v != '\0' && strcmp(v, "mock") != 0 && strcmp(v, "apache") != 0) {
                fprintf(stderr, "OUTBOX_FAULT_KAFKA=%s: mock or apache\n", v);
                exit(2);
        }
        return v != NULL && strcmp(v, "apache") == 0;
}

void fc_setup(int apache_nodes)
{
        pg = fx_pg_start();
        if (fc_apache()) {
                cluster = fx_apache_start(apache_nodes);
                fh_use_apache(cluster);
        } else {
                mock = fx_kafka_start(3, 4);
        }
        /* Exactly-once runs: the relays find their settings in the
         * environment they inherit (see test_faults.c's test_suite). */
        if (fh_eos()) {
                static const char *const compact[] = {"cleanup.policy=compact", NULL};

                if (cluster)
                        fx_apache_create_topic(cluster, "outbox-relay-progress", 1, compact);
                else
                        ck_assert_int_eq(fx_kafka_command(mock, "topic outbox-relay-progress 1"),
                                         0);
        }
}

void fc_teardown(void)
{
        fh_use_apache(NULL);
        fx_apache_stop(cluster);
        fx_kafka_stop(mock);
        fx_pg_stop(pg);
        cluster = NULL;
        mock = NULL;
        pg = NULL;
}

struct fx_pg *fc_pg(void)
{
        return pg;
}

const char *fc_brokers(void)
{
        return cluster ? fx_apache_bootstraps(cluster) : fx_kafka_bootstraps(mock);
}

struct fx_kafka *fc_mock(void)
{
        return mock;
}

struct fx_apache *fc_cluster(void)
{
        return cluster;
}

void fc_create_topic(const char *topic, int partitions)
{
        char cmd[160];

        if (cluster) {
                fx_apache_create_topic(cluster, topic, partitions, NULL);
                return;
        }
        snprintf(cmd, sizeof(cmd), "topic %s %d", topic, partitions);
        ck_assert_int_eq(fx_kafka_command(mock, cmd), 0);
}

char *fc_fresh(const char *db, const char *topic, int partitions)
{
        char *ci = fx_pg_create_db(pg, db);

        /* A case that failed may have left a broker down. */
        if (cluster && fx_apache_ensure_up(cluster) > 0)
                fprintf(stderr, "%s: a broker was down (left so by a failed case?): started\n", db);
        fx_migrate(ci, NULL);
        fc_create_topic(topic, partitions);
        /* One transactional.id per outbox: each case has its own database. */
        setenv("OUTBOX_TRANSACTIONAL_ID", db, 1);
        /* And a progress topic of its own: the dev Kafka keeps about 5 MiB
         * a partition, which the records of several cases together pass,
         * and the oldest would be gone before the relay or the checker
         * reads them (a compacted topic of a real Kafka keeps each key's
         * last record). */
        if (fh_eos()) {
                static const char *const compact[] = {"cleanup.policy=compact", NULL};
                char ptopic[160];

                snprintf(ptopic, sizeof(ptopic), "%s-progress", topic);
                if (cluster)
                        fx_apache_create_topic(cluster, ptopic, 1, compact);
                else
                        fc_create_topic(ptopic, 1);
                setenv("OUTBOX_PROGRESS_TOPIC", ptopic, 1);
                /* A case may write more than the mock keeps (fault_tap.c). */
                if (!cluster)
                        fh_tap_start(fc_brokers(), ptopic);
        }
        return ci;
}

void fc_brokers_down(void)
{
        if (!cluster) {
                ck_assert_int_eq(fx_kafka_command(mock, "down -1"), 0);
                return;
        }
        for (int i = 1; i <= fx_apache_nodes(cluster); i++)
                fx_apache_kill(cluster, i);
}

void fc_brokers_up(void)
{
        if (!cluster) {
                ck_assert_int_eq(fx_kafka_command(mock, "up -1"), 0);
                return;
        }
        fx_apache_ensure_up(cluster);
}

const char *fc_brokers_down_text(void)
{
        return cluster ? "the broker killed with SIGKILL mid-stream, started again 10 s later on "
                         "its ports and log directory"
                       : "all 3 Kafka brokers down (listeners and connections closed) for 10 s "
                         "mid-stream, then up";
}

void fc_wait_sent(PGconn *c, long long n, int timeout_ms)
{
        ck_assert_int_eq(fx_wait_sql(c, 1, timeout_ms,
                                     "SELECT (count(*) >= %lld)::int FROM outbox.events"
                                     " WHERE status = 'sent'",
                                     n),
                         1);
}

void fc_ensure_pending(PGconn *c, const char *topic)
{
        if (fx_sql_int(c, "SELECT count(*) FROM outbox.events WHERE status = 'pending'") > 0)
                return;
        fx_sql(c,
               "INSERT INTO outbox.events (topic, key, payload)"
               " SELECT '%s', 'test-0', jsonb_build_object('n', g) FROM generate_series(1, 200) g",
               topic);
}

void fc_measure_recovery(PGconn *c, const char *topic, struct fh_result *res,
                         const struct fx_relay *r)
{
        long long ms;

        fc_ensure_pending(c, topic);
        ms = fh_wait_delivery(c, 60000);
        fh_result_recovery(res, ms);
        if (ms < 0) {
                char *tail = fh_relay_log_tail(r);

                fh_report(res, 0);
                ck_abort_msg("%s: nothing delivered within 60 s of the fault's end; log:\n%s",
                             res->name, tail);
        }
}

void fc_finish(PGconn *c, struct fh_writers *w, struct fh_result *res)
{
        struct fh_writer_stats ws;

        fh_writers_finish(w, 180000, &ws);
        res->rolled_back = ws.rolled_back;
        res->drain_ms = fh_wait_drained(c, 120000);
        ck_assert_msg(res->drain_ms >= 0, "%s: backlog not drained", res->name);
}

static const struct fc_case *cases_table;

START_TEST(fault_case)
{
        const struct fc_case *k = &cases_table[_i];
        struct fc_run run = {.k = k};

        run.ci = fc_fresh(k->db, k->topic, k->partitions);
        run.c = fx_db_connect(run.ci);
        fh_result_init(&run.res, k->report, k->fault ? k->fault : "");
        if (k->prepare)
                k->prepare(&run);
        if (k->writers.events > 0) {
                struct fh_writers_opts wo = k->writers;

                wo.conninfo = run.ci;
                wo.topic = k->topic;
                run.w = fh_writers_start(&wo);
        }
        if (!(k->flags & FC_OWN_RELAY))
                run.r = fx_relay_start(run.ci, fc_brokers(), k->args);
        k->act(&run);
        if (run.w)
                fc_run_finish(&run);
        if (run.r) {
                fh_relay_stop(run.r, 30000);
                fh_relay_free(run.r, run.res.name);
        }
        fh_check(run.c, fc_brokers(), k->topic, &run.res);
        fh_report_and_assert(&run.res);
        if (k->after)
                k->after(&run);
        PQfinish(run.c);
        free(run.ci);
}
END_TEST

void fc_add_cases(Suite *s, const struct fc_case *cases, size_t n, const struct runner_servers *srv)
{
        unsigned broker = fc_apache() ? FC_APACHE : FC_MOCK;

        cases_table = cases;
        for (size_t i = 0; i < n; i++) {
                if (!(cases[i].flags & broker) || ((cases[i].flags & FC_EOS_ONLY) && !fh_eos()))
                        continue;
                runner_add_loop(s, cases[i].name, fault_case, (int)i, cases[i].report, srv,
                                cases[i].timeout_s);
        }
}

void fc_run_finish(struct fc_run *run)
{
        fc_finish(run->c, run->w, &run->res);
        run->w = NULL;
}
