/* fault_cluster: the servers a fault case runs against and the steps the
 * cases share. One PostgreSQL and either the dev Kafka (librdkafka's mock
 * cluster, three brokers: the default) or, with OUTBOX_FAULT_KAFKA=apache,
 * Apache Kafka (fixture_apache_kafka.c). The cases reach the brokers only
 * through these functions, so the same case runs against either; what only
 * one of them can do (the mock's injected produce errors, a real leader
 * election) stays in the cases that need it. */
#ifndef OUTBOX_TEST_FAULT_CLUSTER_H
#define OUTBOX_TEST_FAULT_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include <check.h>
#include <libpq-fe.h>

#include "fault_harness.h"
#include "runner.h"

struct fx_pg;
struct fx_kafka;
struct fx_apache;
struct fx_relay;

/* Whether OUTBOX_FAULT_KAFKA=apache asks for Apache Kafka. */
int fc_apache(void);
/* Starts PostgreSQL and the brokers: the mock with three brokers, or an
 * Apache Kafka cluster of apache_nodes nodes (1 or 3). With --exactly-once
 * (OUTBOX_FAULT_EOS=1) also the progress topic (one partition, compacted). */
void fc_setup(int apache_nodes);
void fc_teardown(void);
struct fx_pg *fc_pg(void);
const char *fc_brokers(void);
/* The mock (NULL on Apache Kafka) or the Apache cluster (NULL on the mock). */
struct fx_kafka *fc_mock(void);
struct fx_apache *fc_cluster(void);

/* A topic with `partitions` partitions. */
void fc_create_topic(const char *topic, int partitions);
/* A migrated database `db` and its topic; OUTBOX_TRANSACTIONAL_ID is set to
 * db (one transactional id per outbox). Returns the superuser conninfo. */
char *fc_fresh(const char *db, const char *topic, int partitions);

/* Every broker down at once, then back: on the mock its listeners and
 * connections closed ("down -1"/"up -1"); on Apache Kafka every node
 * killed with SIGKILL, then started again on its ports and log directory
 * (fc_brokers_up returns once each answers). fc_brokers_down_text says
 * which, for the report. */
void fc_brokers_down(void);
void fc_brokers_up(void);
const char *fc_brokers_down_text(void);

/* Waits until at least n rows are marked sent; aborts after timeout_ms. */
void fc_wait_sent(PGconn *c, long long n, int timeout_ms);
/* Commits 200 rows of key "test-0" when nothing is pending, so that the
 * next delivery can be timed. */
void fc_ensure_pending(PGconn *c, const char *topic);
/* One recovery: the time to the next delivery after a fault's end. Aborts
 * (reporting the case as failed) when none comes within 60 s. */
void fc_measure_recovery(PGconn *c, const char *topic, struct fh_result *res,
                         const struct fx_relay *r);
/* Waits for the writers, then for an empty backlog: fills rolled_back and
 * drain_ms. */
void fc_finish(PGconn *c, struct fh_writers *w, struct fh_result *res);

/* ---- the fault cases as a table, run by one scaffold ---- */

enum {
        FC_MOCK = 1,      /* runs against the dev Kafka */
        FC_APACHE = 2,    /* runs against Apache Kafka */
        FC_EOS_ONLY = 4,  /* only in exactly-once runs (OUTBOX_FAULT_EOS=1) */
        FC_OWN_RELAY = 8, /* the act starts its relays (with the case's args) */
};

struct fc_case;

/* A case under way: what the scaffold set up, for the act to use and
 * change. An act that stops the relay or finishes the writers itself sets
 * r or w to NULL (fc_run_finish does); one that reconnects replaces c. */
struct fc_run {
        const struct fc_case *k;
        char *ci; /* the case's database, superuser conninfo */
        PGconn *c;
        struct fh_writers *w;
        struct fx_relay *r;
        struct fh_result res;
        long long scratch[4]; /* what the act measures for `after` */
};

/* One fault case. The scaffold: a fresh database and topic, the writers
 * (unless writers.events is 0), the relay (unless FC_OWN_RELAY), then act;
 * then it waits for the writers and an empty backlog, stops the relay,
 * reads the topic back, reports the row and asserts nothing lost,
 * phantom or reordered; then `after`. An act may name its row again
 * (fh_result_init) before it records anything. */
struct fc_case {
        const char *name;   /* the test case: CK_RUN_CASE=<name> */
        const char *report; /* its row in the fault report; a tag too */
        const char *fault;  /* what is done, for the report */
        unsigned flags;     /* FC_* */
        const char *db;
        const char *topic;
        int partitions;
        struct fh_writers_opts writers;      /* conninfo and topic filled in */
        const char *const *args;             /* the relay's flags */
        void (*prepare)(struct fc_run *run); /* before writers and relay, or NULL */
        void (*act)(struct fc_run *run);
        void (*after)(struct fc_run *run); /* after the row is reported, or NULL */
        int timeout_s;
};

/* Adds each case that runs against this run's brokers (and mode) to s as
 * a test case of its own, sharing the servers srv. Once per program: the
 * scaffold finds the case in the last table given. */
void fc_add_cases(Suite *s, const struct fc_case *cases, size_t n,
                  const struct runner_servers *srv);
/* Waits for the writers and an empty backlog (fc_finish); sets run->w NULL. */
void fc_run_finish(struct fc_run *run);

#endif
