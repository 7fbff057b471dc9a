/* metrics: the relay's counters, gauges and histograms, rendered in the
 * Prometheus text format. Updated and read in the relay's thread only (the
 * HTTP endpoint is served from the same loop), so nothing here locks;
 * unless shared (metrics_share), as with --outboxes-file, where one
 * thread renders what each outbox's thread updates. */
#ifndef OUTBOX_METRICS_H
#define OUTBOX_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

/* Per-topic message counters. */
enum metrics_topic_counter {
        METRICS_PUBLISHED,     /* acknowledged by Kafka */
        METRICS_FAILED,        /* failed attempts (rejected by Kafka or the relay) */
        METRICS_RETRIED,       /* failures scheduled for another attempt */
        METRICS_DEAD_LETTERED, /* moved to the dead letters */
        METRICS_TOPIC_COUNTERS
};

/* Per-topic series are bounded: the first METRICS_MAX_TOPICS topics seen
 * get their own, every later one shares topic="(other)" (no Kafka topic
 * name has parentheses). A relay routes to a handful of topics; rows
 * naming topics at will must not grow the scrape without bound. */
#define METRICS_MAX_TOPICS  100
#define METRICS_OTHER_TOPIC "(other)"

/* Statements that failed with the connection fine, by what they do. */
enum metrics_statement {
        METRICS_STMT_FETCH,
        METRICS_STMT_MARK,
        METRICS_STMT_RECORD_FAILURE,
        METRICS_STMT_OTHER, /* writers, leader lock, relay_state, retention, ... */
        METRICS_STATEMENTS
};

enum metrics_counter {
        METRICS_PRODUCER_REBUILDS,
        METRICS_DB_RECONNECTS,
        METRICS_RETENTION_DELETED,
        METRICS_TXN_COMMITTED, /* --exactly-once */
        METRICS_TXN_ABORTED,
        METRICS_RECOVERED_ROWS, /* marked sent from a progress record */
        METRICS_COUNTERS
};

enum metrics_gauge {
        METRICS_PENDING_ROWS,
        METRICS_OLDEST_PENDING_AGE,
        METRICS_DB_CONNECTED,
        METRICS_KAFKA_CONNECTED,
        METRICS_LEADER,
        METRICS_KAFKA_QUEUE,
        METRICS_IN_FLIGHT,
        METRICS_DEAD_LETTER_ROWS,    /* rows in <schema>.dead_letters, on the stats cadence */
        METRICS_LEADER_LOCK_FOREIGN, /* a session that is not a relay holds the leader lock */
        METRICS_GAUGES
};

enum metrics_histogram {
        METRICS_BATCH_ROWS,  /* rows per fetched batch */
        METRICS_ACK_SECONDS, /* produce to delivery report */
        METRICS_LAG_SECONDS, /* the row's created_at to its delivery report */
        METRICS_HISTOGRAMS
};

struct metrics;

struct metrics *metrics_new(void) OUTBOX_MUST_CHECK;
void metrics_free(struct metrics *m);

/* topic is copied the first time it is seen (past METRICS_MAX_TOPICS it
 * counts under METRICS_OTHER_TOPIC). Found by hash, not by a search. */
void metrics_topic_add(struct metrics *m, enum metrics_topic_counter c, const char *topic,
                       uint64_t n);
/* How many topics have series of their own (at most METRICS_MAX_TOPICS). */
size_t metrics_topics(const struct metrics *m);
void metrics_statement_error(struct metrics *m, enum metrics_statement s);
void metrics_add(struct metrics *m, enum metrics_counter c, uint64_t n);
void metrics_set(struct metrics *m, enum metrics_gauge g, double v);
double metrics_get(const struct metrics *m, enum metrics_gauge g);
void metrics_observe(struct metrics *m, enum metrics_histogram h, double v);
/* Round-trip time of a broker, from librdkafka's statistics. */
void metrics_broker_rtt(struct metrics *m, const char *broker, double seconds);

/* From now on m is updated and read under its lock: call before another
 * thread sees it. */
void metrics_share(struct metrics *m);

/* The exposition text (malloc'ed, NUL-terminated), or NULL when out of memory. */
char *metrics_render(const struct metrics *m, size_t *len) OUTBOX_MUST_CHECK;
/* The same for the n outboxes of --outboxes-file: each family once, every
 * series of ms[k] labelled outbox="names[k]" (names NULL: no label). */
char *metrics_render_many(const struct metrics *const *ms, const char *const *names, size_t n,
                          size_t *len) OUTBOX_MUST_CHECK;

#endif
