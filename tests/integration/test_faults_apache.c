/* Fault cases only a real broker can have, against a three-node Apache
 * Kafka cluster (replication factor 3, min.insync.replicas=2): the leader
 * of a partition killed while the relay produces to it (a new leader is
 * elected; requests in flight to the dead one are retried against it, and
 * only a broker that checks the idempotent producer's sequence numbers
 * keeps them in order), and a broker down while a topic demands three
 * in-sync replicas (every Produce answered NOT_ENOUGH_REPLICAS until it is
 * back). Writers keep committing and rolling back throughout; the checker
 * reads the topic back and compares it with the database, as in
 * test_faults.c, and each case adds its row to the fault report. */
#include <check.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_cluster.h"
#include "fault_harness.h"
#include "fixture.h"
#include "runner.h"

static void cluster_setup(void)
{
        fc_setup(3);
}

#define BROKERS fc_brokers()

#define FAST_RECOVERY                                                                              \
        "--poll-interval-ms", "200", "--reconnect-max-ms", "1000", "--retry-base-ms", "100",       \
            "--retry-max-ms", "1000"

/* The leader of partition 0 killed with SIGKILL mid-stream, three times;
 * each time it is started again once the partition has a new leader, and
 * the next kill waits until every replica is back in sync. Recovery: from
 * the kill to the first of 100 rows marked sent that the case inserts
 * right after it, for a key partition 0 holds: nothing produced after the
 * kill can have been acknowledged by the dead leader (rows it acknowledged
 * before may still be marked after). */
static void partition_leader_killed(struct fc_run *run)
{
        const char *topic = run->k->topic;
        struct fh_result *res = &run->res;
        struct fx_relay *r = run->r;
        PGconn *c = run->c;
        size_t len = 0;
        PGresult *key;

        for (res->faults = 0; res->faults < 3; res->faults++) {
                int leader, next;
                long long above;
                int64_t t0;
                char *k;

                fc_wait_sent(c, 2000 + 4000LL * res->faults, 60000);
                fx_apache_wait_in_sync(fc_cluster(), topic, 60000);
                leader = fx_apache_leader(fc_cluster(), topic, 0);
                ck_assert_int_ge(leader, 1);
                key = PQexec(c, "SELECT key FROM outbox.events WHERE kafka_partition = 0 LIMIT 1");
                ck_assert_int_eq(PQntuples(key), 1);
                k = strdup(PQgetvalue(key, 0, 0));
                PQclear(key);
                t0 = fx_now_ms();
                fx_apache_kill(fc_cluster(), leader);
                above = fx_sql_int(c, "SELECT coalesce(max(id), 0) FROM outbox.events");
                fx_sql(c,
                       "INSERT INTO outbox.events (topic, key, payload) SELECT '%s', '%s',"
                       " jsonb_build_object('n', g) FROM generate_series(1, 100) g",
                       topic, k);
                while (fx_sql_int(c,
                                  "SELECT count(*) FROM outbox.events WHERE id > %lld"
                                  " AND key = '%s' AND status = 'sent'",
                                  above, k) == 0) {
                        if (fx_now_ms() - t0 > 60000) {
                                char *tail = fh_relay_log_tail(r);

                                fh_result_recovery(res, -1);
                                fh_report(res, 0);
                                ck_abort_msg("nothing sent to partition 0 within 60 s of killing "
                                             "its leader (broker %d); relay log:\n%s",
                                             leader, tail);
                        }
                        poll(NULL, 0, 20);
                }
                fh_result_recovery(res, fx_now_ms() - t0);
                ck_assert_int_eq(fx_sql_int(c,
                                            "SELECT min(kafka_partition) FROM outbox.events"
                                            " WHERE id > %lld AND key = '%s' AND status = 'sent'",
                                            above, k),
                                 0);
                free(k);
                next = fx_apache_leader(fc_cluster(), topic, 0);
                len += (size_t)snprintf(res->notes + len, sizeof(res->notes) - len,
                                        "%sleader %d -> %d", len ? ", " : "", leader, next);
                ck_assert_int_ne(next, leader);
                fx_apache_restart(fc_cluster(), leader);
        }
}

/* A topic that demands all 3 replicas in sync (min.insync.replicas=3),
 * and one broker killed for 10 s: once it is out of the in-sync set every
 * Produce to the topic is answered NOT_ENOUGH_REPLICAS, a retriable error
 * librdkafka retries itself. Rows wait (no attempt, no dead letter) and
 * flow again once the broker is back in sync. Twice. */
static void all_replicas_required(struct fc_run *run)
{
        static const char *const isr3[] = {"min.insync.replicas=3", NULL};

        fx_apache_alter_topic(fc_cluster(), run->k->topic, isr3);
}

static void not_enough_replicas(struct fc_run *run)
{
        const char *topic = run->k->topic;
        struct fh_result *res = &run->res;
        struct fx_relay *r = run->r;
        PGconn *c = run->c;
        size_t len = 0;

        for (res->faults = 0; res->faults < 2; res->faults++) {
                int victim = 1 + res->faults;
                long long at_kill, after;

                fc_wait_sent(c, 1500 + 5000LL * res->faults, 60000);
                fx_apache_wait_in_sync(fc_cluster(), topic, 60000);
                fx_apache_kill(fc_cluster(), victim);
                poll(NULL, 0, 10000); /* the outage; the writers go on */
                at_kill = fh_sent(c);
                poll(NULL, 0, 1000);
                after = fh_sent(c);
                len += (size_t)snprintf(res->notes + len, sizeof(res->notes) - len,
                                        "%sbroker %d down: %lld rows sent in its last second",
                                        len ? ", " : "", victim, after - at_kill);
                fx_apache_restart(fc_cluster(), victim);
                fx_apache_wait_in_sync(fc_cluster(), topic, 60000);
                fc_measure_recovery(c, topic, res, r);
        }
        fc_run_finish(run);
        /* Refused for want of replicas is Kafka's failure, not the rows'. */
        ck_assert_int_eq(fx_sql_int(c, "SELECT count(*) FROM outbox.events WHERE attempts > 0"), 0);
}

static const char *const fast[] = {FAST_RECOVERY, NULL};

static const struct fc_case cases[] = {
    {"partition_leader_killed_while_producing",
     "leader-kill9",
     "3 brokers (replication factor 3, min.insync.replicas=2): the leader of partition 0 killed "
     "with SIGKILL mid-stream, 3 times; restarted once a new leader is elected",
     FC_APACHE,
     "fleader",
     "f-leader",
     6,
     {NULL, NULL, 4, 8, 40000, 2000, 10, 40},
     fast,
     NULL,
     partition_leader_killed,
     NULL,
     300},
    {"not_enough_replicas_while_a_broker_is_down",
     "not-enough-replicas",
     "3 brokers, topic with min.insync.replicas=3: one broker killed with SIGKILL for 10 s "
     "mid-stream (Produce answered NOT_ENOUGH_REPLICAS), then restarted; twice",
     FC_APACHE,
     "fisr",
     "f-isr",
     6,
     {NULL, NULL, 4, 8, 15000, 1500, 10, 40},
     fast,
     all_replicas_required,
     not_enough_replicas,
     NULL,
     300},
};

static const struct runner_servers servers = {cluster_setup, fc_teardown};

Suite *test_suite(void)
{
        Suite *s = suite_create("faults_apache");

        /* fault_cluster starts Apache Kafka for these, whatever the caller set. */
        setenv("OUTBOX_FAULT_KAFKA", "apache", 1);
        fc_add_cases(s, cases, sizeof(cases) / sizeof(cases[0]), &servers);
        return s;
}
