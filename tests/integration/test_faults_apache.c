/* Fault cases only a real broker can have, against a three-node Apache
 * Kafka cluster (replication factor 3, min.insync.replicas=2): the leader
 * of a partition killed while the relay produces to it (a new leader is
 * elected; requests in flight to the dead one are retried against it, and
 * only a broker that checks the idempotent producer's sequence numbers
 * keeps them in order), and a broker down while a topic demands three
 * in-sync replicas (every Produce answered NOT_ENOUGH_REPLICAS until it is
 * back). Writers keep committing and rolling back throughout; the checker
 * reads the topic back and compares it with the database, as in
 * test_faults.c, and each case adds its row to the fault report. And the
 * leader of some partitions of a topic without other replicas down: the
 * other partitions flow, and no row is marked before its key's earlier rows
 * (the marks-wait rule). */
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

#define UNREACH_TOPIC "f-unreach"
#define UNREACH_KEYS  24

/* Rows marked sent while an earlier row of their key is still pending:
 * what the marks-wait rule (relay_mark.c, batch_unsent_overtaken) forbids. */
static long long marked_early(PGconn *c)
{
        return fx_sql_int(c, "SELECT count(*) FROM outbox.events s WHERE s.status = 'sent'"
                             " AND EXISTS (SELECT 1 FROM outbox.events p WHERE p.key = s.key"
                             " AND p.id < s.id AND p.status = 'pending')");
}

/* 2 rows of each key, one statement. */
static void insert_round(PGconn *c)
{
        fx_sql(c,
               "INSERT INTO outbox.events (topic, key, payload) SELECT '" UNREACH_TOPIC "',"
               " 'u' || (g %% %d), jsonb_build_object('n', g) FROM generate_series(1, %d) g",
               UNREACH_KEYS, 2 * UNREACH_KEYS);
}

/* Polls until `sql` (a count) is 0, checking marked_early at every poll;
 * returns the polls, or aborts with the relay's log after timeout_ms. */
static int wait_zero_marks_in_order(PGconn *c, const struct fx_relay *r, int timeout_ms,
                                    const char *what, const char *sql)
{
        int64_t deadline = fx_now_ms() + timeout_ms;
        int polls = 0;
        long long left;

        for (;; polls++) {
                long long early = marked_early(c);

                ck_assert_msg(early == 0,
                              "%lld rows marked sent before an earlier row of their key", early);
                if ((left = fx_sql_int(c, "%s", sql)) == 0)
                        return polls;
                if (fx_now_ms() > deadline)
                        ck_abort_msg("%s: %lld rows left after %d ms; relay log:\n%s", what, left,
                                     timeout_ms, fh_relay_log_tail(r));
                poll(NULL, 0, 50);
        }
}

/* A topic of 6 partitions with one replica each, so that no other broker
 * takes over: the broker leading partition 0 (and others) killed while rows
 * of 24 keys come in, then started again. With -X message.timeout.ms=2000
 * the rows of its partitions time out and wait as pending (no attempt
 * spent) while the rows of the other partitions are published and marked
 * during the outage (with the default, no time-out, every mark waits for
 * the first batch holding a row for the dead broker, relay_mark.c's
 * earlier_unreported, and the pipeline fills: none of 340 rows of the
 * other keys was marked in 60 s when tried); at every poll no row is
 * marked sent while an earlier row of its key is pending; the broker back,
 * nothing is lost, per-key order holds and nothing is dead-lettered. */
START_TEST(partition_leader_unreachable_others_flow_marks_wait)
{
        static const char *const args[] = {FAST_RECOVERY, "-X", "message.timeout.ms=2000", NULL};
        struct fx_apache *k = fc_cluster();
        char *ci, dead[64] = "", affected[160];
        size_t dlen = 0;
        struct fh_result res;
        struct fx_relay *r;
        long long above, free_sent, n_affected;
        int leader, n_dead = 0, polls;
        PGconn *c;

        fh_result_init(&res, "leader-unreachable",
                       "3 brokers, a topic of 6 partitions with 1 replica each: the broker leading "
                       "partition 0 killed with SIGKILL while 24 keys get rows (10 rounds), "
                       "-X message.timeout.ms=2000; then restarted");
        ci = fx_pg_create_db(fc_pg(), "funreach");
        if (fx_apache_ensure_up(k) > 0)
                fprintf(stderr, "funreach: a broker was down (left so by a failed case?)\n");
        fx_migrate(ci, NULL);
        fx_apache_create_topic_rf(k, UNREACH_TOPIC, 6, 1, NULL);
        leader = fx_apache_leader(k, UNREACH_TOPIC, 0);
        ck_assert_int_ge(leader, 1);
        for (int p = 0; p < 6; p++)
                if (fx_apache_leader(k, UNREACH_TOPIC, p) == leader) {
                        dlen += (size_t)snprintf(dead + dlen, sizeof(dead) - dlen, "%s%d",
                                                 n_dead++ ? "," : "", p);
                }
        ck_assert_msg(n_dead < 6, "every partition on broker %d", leader);
        c = fx_db_connect(ci);
        r = fx_relay_start(ci, BROKERS, args);
        /* Where each key goes, from the rows marked before the outage. */
        for (int i = 0; i < 5; i++)
                insert_round(c);
        fc_wait_sent(c, 10 * UNREACH_KEYS, 60000);
        snprintf(affected, sizeof(affected),
                 "(SELECT key FROM outbox.events WHERE kafka_partition IN (%s))", dead);
        n_affected = fx_sql_int(c,
                                "SELECT count(DISTINCT key) FROM outbox.events"
                                " WHERE kafka_partition IN (%s)",
                                dead);
        ck_assert_msg(n_affected > 0 && n_affected < UNREACH_KEYS,
                      "%lld of %d keys on partitions %s", n_affected, UNREACH_KEYS, dead);
        above = fx_sql_int(c, "SELECT max(id) FROM outbox.events");
        fx_apache_kill(k, leader);
        for (int i = 0; i < 10; i++) {
                insert_round(c);
                ck_assert_int_eq(marked_early(c), 0);
                poll(NULL, 0, 100);
        }
        {
                char sql[512];

                /* The other partitions flow while the broker is down. */
                snprintf(sql, sizeof(sql),
                         "SELECT count(*) FROM outbox.events WHERE id > %lld AND status ="
                         " 'pending' AND key NOT IN %s",
                         above, affected);
                polls = wait_zero_marks_in_order(c, r, 60000, "rows of the live partitions", sql);
                free_sent = fx_sql_int(c,
                                       "SELECT count(*) FROM outbox.events WHERE id > %lld"
                                       " AND status = 'sent'",
                                       above);
                /* None of the dead broker's: nothing can acknowledge them. */
                ck_assert_int_eq(fx_sql_int(c,
                                            "SELECT count(*) FROM outbox.events WHERE id > %lld"
                                            " AND status = 'sent' AND key IN %s",
                                            above, affected),
                                 0);
                ck_assert_int_eq(free_sent, 20LL * (UNREACH_KEYS - n_affected));
                fx_apache_restart(k, leader);
                polls += wait_zero_marks_in_order(c, r, 60000, "every row after the restart",
                                                  "SELECT count(*) FROM outbox.events"
                                                  " WHERE status = 'pending'");
        }
        res.faults = 1;
        snprintf(res.notes, sizeof(res.notes),
                 "partitions %s on broker %d (%lld of %d keys): %lld rows of the other keys "
                 "sent during the outage, none of theirs; no row marked before its key's "
                 "earlier rows in %d polls",
                 dead, leader, n_affected, UNREACH_KEYS, free_sent, polls);
        ck_assert_int_eq(fx_sql_int(c, "SELECT count(*) FROM outbox.events WHERE attempts > 0"), 0);
        fh_relay_stop(r, 30000);
        fh_relay_free(r, res.name);
        fh_check(c, BROKERS, UNREACH_TOPIC, &res);
        fh_report_and_assert(&res);
        PQfinish(c);
        free(ci);
}
END_TEST

Suite *test_suite(void)
{
        Suite *s = suite_create("faults_apache");

        /* fault_cluster starts Apache Kafka for these, whatever the caller set. */
        setenv("OUTBOX_FAULT_KAFKA", "apache", 1);
        fc_add_cases(s, cases, sizeof(cases) / sizeof(cases[0]), &servers);
        runner_add(s, partition_leader_unreachable_others_flow_marks_wait, "leader-unreachable",
                   &servers, 300);
        return s;
}
