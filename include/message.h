/* message: one outbox row as the relay sees it, and the Kafka headers it is
 * published with (the row's headers object plus event_id, event_type and
 * outbox_id). Kept free of I/O so it can be tested on its own. */
#ifndef OUTBOX_MESSAGE_H
#define OUTBOX_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "compiler.h"

/* Header names the relay sets itself; a row header of the same name is
 * dropped so consumers always see the relay's value. */
#define MESSAGE_HDR_EVENT_ID   "event_id"
#define MESSAGE_HDR_EVENT_TYPE "event_type"
#define MESSAGE_HDR_OUTBOX_ID  "outbox_id"

/* A row read from the outbox. Pointers borrow from the query result that
 * produced the row and stay valid as long as it does. */
struct message_row {
        int64_t id;
        const char *event_id; /* uuid as text */
        const char *topic;    /* NULL: route by event_type */
        const char *key;      /* NULL: no key */
        size_t key_len;
        const char *event_type; /* NULL when not set */
        const char *value;      /* NULL: tombstone */
        size_t value_len;
        const char *headers; /* JSON object text */
        size_t headers_len;
        int64_t created_at_ms; /* Kafka message timestamp */
        int attempts;          /* failed attempts so far */
        int replays;           /* times the row was replayed */
        int64_t generation;    /* times the row was made pending again (migration 005) */
};

/* Builds the headers of row into a new rd_kafka_headers_t (*out, owned by
 * the caller until passed to rd_kafka_producev). Returns 0, or -1 with
 * errbuf saying what is wrong with the row's headers. */
int message_headers(const struct message_row *row, rd_kafka_headers_t **out, char *errbuf,
                    size_t errsz) OUTBOX_MUST_CHECK;

/* The value of the row's own header `name` (e.g. "traceparent"), for
 * logging: a malloc'ed copy, or NULL when the row has none (or its headers
 * are not an object of strings, or the value holds a NUL). */
char *message_row_header(const struct message_row *row, const char *name) OUTBOX_MUST_CHECK;

#endif
