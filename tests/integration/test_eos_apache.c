/* --exactly-once's two transactional producers against Apache Kafka itself
 * (fixture_apache_kafka.c, one node): a zombie of the second transactional
 * id is fenced, and a kill -9 right after the second producer's commit
 * loses and repeats nothing. Read back by Kafka's own read_committed
 * consumer; each case adds a line to the fault report. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "fault_harness.h"
#include "fixture.h"
#include "runner.h"

static struct fx_pg *pg;
static struct fx_apache *ak;

static void suite_setup(void)
{
        pg = fx_pg_start();
        ak = fx_apache_start(1);
        fh_use_apache(ak);
}

static void suite_teardown(void)
{
        fh_use_apache(NULL);
        fx_apache_stop(ak);
        fx_pg_stop(pg);
}

#define BROKERS fx_apache_bootstraps(ak)

/* Stops the relay, reads the topics back as a read_committed consumer and
 * compares them with the database (fh_check), reports the case and
 * asserts: nothing lost, repeated or unknown published, per-key order and
 * keys intact. Then closes c and frees ci. */
static void check_and_report(struct fx_relay *r, PGconn *c, char *ci, const char *const topics[],
                             struct fh_result *res)
{
        int ok;

        fh_relay_stop(r, 30000);
        fh_relay_free(r, res->name);
        fh_check_topics(c, BROKERS, topics, res);
        ok = res->committed > 0 && res->lost == 0 && res->phantoms == 0 &&
             res->order_violations == 0 && res->key_mismatch == 0 && res->duplicates == 0 &&
             res->dead_letters == 0;
        fh_report(res, ok);
        ck_assert_msg(res->lost == 0, "%lld of %lld events lost", res->lost, res->committed);
        ck_assert_msg(res->phantoms == 0, "%lld messages of no committed row (%s)", res->phantoms,
                      res->notes);
        ck_assert_msg(res->order_violations == 0, "per-key order broken (%s)", res->notes);
        ck_assert_int_eq(res->key_mismatch, 0);
        ck_assert_int_eq(res->duplicates, 0);
        ck_assert_int_eq(res->dead_letters, 0);
        PQfinish(c);
        free(ci);
}

static long long wait_sent(PGconn *c, long long n)
{
        return fh_wait_sent(c, n, 90000);
}

static void insert_rows(PGconn *c, const char *topic, int n)
{
        fx_sql(c,
               "INSERT INTO outbox.events (topic, key, payload)"
               " SELECT '%s', 'k' || (g %% 7), jsonb_build_object('n', g)"
               " FROM generate_series(1, %d) g",
               topic, n);
}

/* One case: its database (also its transactional id), a connection, its
 * topic (2 partitions) and the relay's arguments naming the progress
 * topic. */
struct eos_case {
        char *ci;
        PGconn *c;
        const char *args[8];
};

static void eos_case_init(struct eos_case *e, const char *db, const char *topic,
                          const char *progress)
{
        const char *const args[] = {
            "--exactly-once", "--transactional-id", db, "--progress-topic", progress, NULL};

        memset(e, 0, sizeof(*e));
        memcpy(e->args, args, sizeof(args));
        setenv("OUTBOX_FAULT_EOS", "1", 1);
        e->ci = fx_pg_create_db(pg, db);
        fx_migrate(e->ci, NULL);
        e->c = fx_db_connect(e->ci);
        fx_apache_create_topic(ak, topic, 2, NULL);
}

static struct fx_relay *eos_start(struct eos_case *e)
{
        return fx_relay_start(e->ci, BROKERS, e->args);
}

/* The relay publishes through two transactional producers taking turns,
 * "<id>" and "<id>.1" (producer.c): a leader must fence both before it
 * publishes, or a zombie of the second (a relay that lost its lease with a
 * transaction open) could still commit after the new leader took over. The
 * zombie here is a producer of "<id>.1" with a message in an open
 * transaction when the relay starts: once the relay has published, the
 * zombie's commit must be refused, and a read_committed consumer sees the
 * rows once each and nothing of the zombie. */
START_TEST(eos_second_transactional_id_is_fenced)
{
        const char *const topics[] = {"eos-fence", NULL};
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_error_t *error;
        struct eos_case e;
        struct fx_relay *r;
        struct fh_result res;
        rd_kafka_t *zombie;
        char err[512];

        eos_case_init(&e, "eos_fence", "eos-fence", "eos-fence-progress");
        fh_result_init(&res, "ak-eos-second-id-fenced",
                       "--exactly-once: a producer of the relay's second transactional id "
                       "(<id>.1) has a message in an open transaction as the relay starts; "
                       "500 rows over 7 keys");
        ck_assert_int_eq(rd_kafka_conf_set(conf, "bootstrap.servers", BROKERS, err, sizeof(err)),
                         RD_KAFKA_CONF_OK);
        ck_assert_int_eq(
            rd_kafka_conf_set(conf, "transactional.id", "eos_fence.1", err, sizeof(err)),
            RD_KAFKA_CONF_OK);
        zombie = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        ck_assert_msg(zombie != NULL, "%s", err);
        ck_assert_ptr_null(rd_kafka_init_transactions(zombie, 60000));
        ck_assert_ptr_null(rd_kafka_begin_transaction(zombie));
        ck_assert_int_eq(
            rd_kafka_producev(zombie, RD_KAFKA_V_TOPIC("eos-fence"), RD_KAFKA_V_VALUE("zombie", 6),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
            RD_KAFKA_RESP_ERR_NO_ERROR);
        ck_assert_int_eq(rd_kafka_flush(zombie, 60000), RD_KAFKA_RESP_ERR_NO_ERROR);

        r = eos_start(&e);
        insert_rows(e.c, "eos-fence", 500);
        ck_assert_int_eq(wait_sent(e.c, 500), 500);
        error = rd_kafka_commit_transaction(zombie, 60000);
        ck_assert_msg(error != NULL, "a producer of eos_fence.1 begun before the relay started "
                                     "committed after the relay published: the relay did not "
                                     "fence its second transactional id");
        snprintf(res.notes, sizeof(res.notes), "the zombie's commit: %s",
                 rd_kafka_error_name(error));
        rd_kafka_error_destroy(error);
        rd_kafka_destroy(zombie);
        check_and_report(r, e.c, e.ci, topics, &res);
}
END_TEST

/* The transaction after a commit runs on the other producer: kill -9 right
 * after the second producer's commit while the first transaction's marks
 * are held up in the database (a trigger waits on an advisory lock the
 * test holds). The second record, written by "<id>.1" under "<id>", names
 * both transactions' rows; the next relay marks them all from it and
 * publishes neither again, and the rows written after keep their keys'
 * order for a read_committed consumer. */
START_TEST(eos_kill_after_second_producer_commit_with_marks_held)
{
        const char *const topics[] = {"eos-held", NULL};
        const char *const compact[] = {"cleanup.policy=compact", NULL};
        struct eos_case e;
        struct fx_relay *r;
        struct fh_result res;
        struct fx_msg *msgs;
        PGconn *gate;
        long long gate_pid;
        size_t n;

        eos_case_init(&e, "eos_held", "eos-held", "eos-held-progress");
        fx_apache_create_topic(ak, "eos-held-progress", 1, compact);
        fh_result_init(&res, "ak-eos-kill-after-second-producer",
                       "--exactly-once: kill -9 right after the second transactional producer's "
                       "commit, the first transaction's marks held in the database; then 300 "
                       "rows over 7 keys");
        fx_sql(e.c, "CREATE FUNCTION public.mark_gate() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NEW; END$$");
        fx_sql(e.c, "CREATE TRIGGER mark_gate BEFORE UPDATE ON outbox.events FOR EACH ROW"
                    " WHEN (NEW.status = 'sent') EXECUTE FUNCTION public.mark_gate()");
        gate = fx_db_connect(e.ci);
        fx_sql(gate, "SELECT pg_advisory_lock(4242)");
        r = eos_start(&e);
        fx_sql(e.c, "INSERT INTO outbox.events (topic, key, payload) VALUES ('eos-held', 'k1', "
                    "'{}')");
        n = fx_consume(BROKERS, "eos-held-progress", 1, 60000, &msgs);
        fx_msgs_free(msgs, n);
        ck_assert_uint_eq(n, 1);
        fx_sql(e.c, "INSERT INTO outbox.events (topic, key, payload) VALUES ('eos-held', 'k2', "
                    "'{}')");
        n = fx_consume(BROKERS, "eos-held-progress", 2, 60000, &msgs);
        ck_assert_msg(n == 2, "%zu progress record(s) while the first transaction's mark is held",
                      n);
        ck_assert_ptr_nonnull(msgs[1].value);
        ck_assert_msg(strstr(msgs[1].value, "\"rows\":[[2,") != NULL &&
                          strstr(msgs[1].value, "\"unmarked\":[[1,1]]") != NULL,
                      "the second record does not name both rows: %s", msgs[1].value);
        fx_msgs_free(msgs, n);
        fx_relay_kill(r, SIGKILL);
        ck_assert_int_eq(fx_relay_wait(r, 10000), 128 + SIGKILL);
        fx_relay_free(r);
        /* The killed relay's sessions are ended before the lock is let go:
         * its marks end unapplied, as if it had died before sending them
         * (a mark on its way to the lock, not waiting yet, would otherwise
         * go through once the lock is free). */
        gate_pid = fx_sql_int(gate, "SELECT pg_backend_pid()");
        fx_sql(e.c,
               "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
               "current_database() AND backend_type = 'client backend' AND pid NOT IN "
               "(pg_backend_pid(), %lld)",
               gate_pid);
        ck_assert_int_eq(fx_wait_sql(e.c, 0, 10000,
                                     "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                     "current_database() AND backend_type = 'client backend' AND "
                                     "pid NOT IN (pg_backend_pid(), %lld)",
                                     gate_pid),
                         0);
        fx_sql(gate, "SELECT pg_advisory_unlock(4242)");
        PQfinish(gate);
        ck_assert_int_eq(fh_sent(e.c), 0);
        fx_sql(e.c, "DROP TRIGGER mark_gate ON outbox.events");
        r = eos_start(&e);
        insert_rows(e.c, "eos-held", 300);
        ck_assert_int_eq(wait_sent(e.c, 302), 302);
        ck_assert_int_eq(fh_relay_log_number(r, "recovered_rows"), 2);
        snprintf(res.notes, sizeof(res.notes), "recovered rows: 2");
        check_and_report(r, e.c, e.ci, topics, &res);
}
END_TEST

/* Each test a test case of its own (CK_RUN_CASE=<test>), the servers
 * started once for both. */
static const struct runner_servers servers = {suite_setup, suite_teardown};

Suite *test_suite(void)
{
        Suite *s = suite_create("eos_apache");

        runner_add(s, eos_second_transactional_id_is_fenced, NULL, &servers, 240);
        runner_add(s, eos_kill_after_second_producer_commit_with_marks_held, NULL, &servers, 240);
        return s;
}
