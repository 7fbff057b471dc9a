/* scenarios: the end-to-end cases that test_relay.c runs against the dev
 * Kafka and test_apache_kafka.c against Apache Kafka, written once: the
 * rows each writes and what the messages read back must be. The callers
 * start the relay and read the topics, each its own broker's way. */
#ifndef OUTBOX_TEST_SCENARIOS_H
#define OUTBOX_TEST_SCENARIOS_H

#include <stddef.h>

#include <libpq-fe.h>

struct fx_msg;

/* The outbox_id header of a message; aborts the test when it has none. */
long long sc_outbox_id(const struct fx_msg *m);

/* 10,000 rows on topic "tenk" over 100 keys in 10 transactions, and 1,000
 * more (ids 5001-6000, "rb": true) in an 11th, rolled back, between them. */
#define SC_TENK_ROWS 10000
void sc_tenk_write(PGconn *c);
/* The n messages are the committed rows, each once, byte for byte (key,
 * payload, event_id and the row's headers, partition, offset, timestamp),
 * none of the rolled-back transaction, each key's in id order. */
void sc_tenk_check(PGconn *c, const struct fx_msg *msgs, size_t n);

/* On topic "shapes": a tombstone with a set timestamp (id 1), a binary
 * payload with NUL and high bytes (id 2), an empty value without a key
 * (id 3). */
#define SC_SHAPES_ROWS 3
void sc_shapes_write(PGconn *c);
void sc_shapes_check(const struct fx_msg *msgs, size_t n);

/* Rows without a topic routed by event_type (an exact rule, a prefix
 * rule, the default topic) next to a row naming its own topic; the relay
 * runs with sc_routing_args (NULL-terminated: the rules, and no poll). */
#define SC_ROUTING_ROWS 6
extern const char *const sc_routing_args[];
extern const char *const sc_routing_topics[]; /* NULL-terminated */
void sc_routing_write(PGconn *c);
/* Reads each topic from brokers and checks which rows it holds; with
 * `more` each read waits for that many messages beyond those expected, to
 * see that none come. */
void sc_routing_check(const char *brokers, int more);

#endif
