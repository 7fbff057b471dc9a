/* message: one outbox row as the relay sees it, and the Kafka headers it is
 * published with (the row's headers object plus event_id, event_type and
 * outbox_id, and with --envelope cloudevents the CloudEvents attributes of
 * its Kafka binding). Kept free of I/O so it can be tested on its own. */
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

/* CloudEvents 1.0, Kafka protocol binding, binary content mode: the
 * attributes as headers. Those that identify the event are the relay's (a
 * row header of the same name is dropped); those that describe the data,
 * content-type and subject, a row may set itself (its own wins). */
#define MESSAGE_CE_SPECVERSION  "ce_specversion"
#define MESSAGE_CE_ID           "ce_id"
#define MESSAGE_CE_SOURCE       "ce_source"
#define MESSAGE_CE_TYPE         "ce_type"
#define MESSAGE_CE_TIME         "ce_time"
#define MESSAGE_CE_SUBJECT      "ce_subject"
#define MESSAGE_CE_CONTENT_TYPE "content-type"
#define MESSAGE_CE_SPEC         "1.0"
#define MESSAGE_CE_JSON         "application/json"
#define MESSAGE_CE_OCTETS       "application/octet-stream"
/* "YYYY-MM-DDTHH:MM:SS.ffffffZ" and its NUL. */
#define MESSAGE_RFC3339_SIZE 28

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
        int64_t created_at_us; /* the same in microseconds, as stored (ce_time) */
        int value_is_bytes;    /* value is payload_bytes, not payload's JSON text */
        int attempts;          /* failed attempts so far */
        int replays;           /* times the row was replayed */
        int64_t generation;    /* times the row was made pending again (migration 005) */
};

/* Builds the headers of row into a new rd_kafka_headers_t (*out, owned by
 * the caller until passed to rd_kafka_producev). Returns 0, or -1 with
 * errbuf saying what is wrong with the row's headers. */
int message_headers(const struct message_row *row, rd_kafka_headers_t **out, char *errbuf,
                    size_t errsz) OUTBOX_MUST_CHECK;

/* How messages are enveloped: today's headers, or CloudEvents besides. */
struct message_envelope;

/* cloudevents 0 keeps the relay's headers as they are; 1 adds the
 * CloudEvents attributes with ce_source set to source (copied). NULL when
 * out of memory. */
struct message_envelope *message_envelope_new(int cloudevents,
                                              const char *source) OUTBOX_MUST_CHECK;
void message_envelope_free(struct message_envelope *env);

/* message_headers with an envelope (NULL: none). topic is where the row
 * goes: the CloudEvents type of a row without event_type. */
int message_headers_env(const struct message_row *row, const struct message_envelope *env,
                        const char *topic, rd_kafka_headers_t **out, char *errbuf,
                        size_t errsz) OUTBOX_MUST_CHECK;

/* Microseconds since the Unix epoch as RFC 3339 in UTC, the fraction as
 * PostgreSQL prints it (trailing zeros dropped, none when whole): buf of
 * MESSAGE_RFC3339_SIZE. Returns 0, or -1 for a time outside years 0000 to
 * 9999 (RFC 3339 has four digits; PostgreSQL's infinity). */
int message_rfc3339(int64_t us, char *buf, size_t size) OUTBOX_MUST_CHECK;

/* The value of the row's own header `name` (e.g. "traceparent"), for
 * logging: a malloc'ed copy, or NULL when the row has none (or its headers
 * are not an object of strings, or the value holds a NUL). */
char *message_row_header(const struct message_row *row, const char *name) OUTBOX_MUST_CHECK;

#endif
