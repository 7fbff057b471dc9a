/* fault_cluster: the servers a fault case runs against and the steps the
 * cases share. One PostgreSQL and either the dev Kafka (librdkafka's mock
 * cluster, three brokers: the default) or, with OUTBOX_FAULT_KAFKA=apache,
 * Apache Kafka (fixture_apache_kafka.c). The cases reach the brokers only
 * through these functions, so the same case runs against either; what only
 * one of them can do (the mock's injected produce errors, a real leader
 * election) stays in the cases that need it. */
#ifndef OUTBOX_TEST_FAULT_CLUSTER_H
#define OUTBOX_TEST_FAULT_CLUSTER_H

#include <libpq-fe.h>

#include "fault_harness.h"

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

#endif
