/* route: picks the Kafka topic of a row whose topic column is NULL, from
 * rules "event_type=topic" (exact) and "prefix.*=topic" or "*=topic"
 * (prefix): an exact rule wins, then the longest prefix, then the default. */
#ifndef OUTBOX_ROUTE_H
#define OUTBOX_ROUTE_H

#include <stddef.h>

#include "compiler.h"

struct config_kv;

struct route;

/* Longest legal Kafka topic name. */
#define ROUTE_TOPIC_MAX 249

/* 1 when topic is a legal Kafka topic name ([A-Za-z0-9._-], 1 to
 * ROUTE_TOPIC_MAX characters, not "." or ".."); used by config too. */
int route_topic_name_ok(const char *topic);

/* Compiles rules ("pattern=topic" as config_kv pairs: name=pattern,
 * value=topic). default_topic may be NULL or "". Returns NULL with errbuf
 * naming the bad rule. */
struct route *route_new(const struct config_kv *rules, size_t n, const char *default_topic,
                        char *errbuf, size_t errsz) OUTBOX_MUST_CHECK;
void route_free(struct route *rt);

/* Parses one "pattern=topic" rule text into a config_kv; used by config.
 * Blanks around pattern and topic are dropped. Returns 0 with out->name and
 * out->value malloc'ed (the caller frees both), or -1 with errbuf. */
int route_parse_rule(const char *text, struct config_kv *out, char *errbuf,
                     size_t errsz) OUTBOX_MUST_CHECK;

/* Topics rows may not reach: every name starting with "__" (Kafka's
 * internal topics), the reserved topic (the progress topic of
 * --exactly-once; NULL for none) and, when allowed_csv is set, every topic
 * that matches none of its comma-separated patterns (fnmatch: '*' and '?').
 * Checks the routes and the default topic against them. Returns 0, or -1
 * with errbuf naming the bad pattern or rule. */
int route_guard(struct route *rt, const char *allowed_csv, const char *reserved, char *errbuf,
                size_t errsz) OUTBOX_MUST_CHECK;

/* 0 when a row may be published to topic (a legal name), else -1 with
 * errbuf saying why it is refused: a permanent failure of the row. */
int route_refused(const struct route *rt, const char *topic, char *errbuf,
                  size_t errsz) OUTBOX_MUST_CHECK;

/* Topic for a row: its own topic when set (non-empty); else the exact rule
 * for event_type, else the longest matching prefix rule; else the default.
 * Allocation-free: it runs for every row. Returns NULL when nothing matches,
 * with errbuf saying why (the row is a permanent failure). */
const char *route_topic(const struct route *rt, const char *topic, const char *event_type,
                        char *errbuf, size_t errsz) OUTBOX_MUST_CHECK;

#endif
