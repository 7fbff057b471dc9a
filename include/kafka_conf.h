/* kafka_conf: every librdkafka configuration the relay builds, in one place:
 * the producer's defaults and required properties, the progress reader's (a
 * read_committed consumer), and the checks of the user's -X properties that
 * config_validate runs. */
#ifndef OUTBOX_KAFKA_CONF_H
#define OUTBOX_KAFKA_CONF_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "compiler.h"

struct config;
struct log;

/* The producer's: the relay's defaults, then the -X properties, then what
 * the relay requires (with --exactly-once, a transactional producer). NULL
 * with errbuf set when librdkafka refuses a property (a value is never
 * quoted: it may be a credential). */
rd_kafka_conf_t *kafka_conf_producer(const struct config *cfg, char *errbuf,
                                     size_t errsz) OUTBOX_MUST_CHECK;

/* The progress reader's: bootstrap.servers, the -X properties a consumer
 * takes (it is given the producer's; each one it refuses is logged at debug
 * and skipped), then what the reader requires. */
rd_kafka_conf_t *kafka_conf_reader(const struct config *cfg, struct log *lg, char *errbuf,
                                   size_t errsz) OUTBOX_MUST_CHECK;

/* Checks the -X properties: each one known to librdkafka with a valid value,
 * none that the relay sets itself, none that would break its guarantees.
 * 0, or -1 with one line in errbuf (never a credential's value). */
int kafka_conf_validate(const struct config *cfg, char *errbuf, size_t errsz) OUTBOX_MUST_CHECK;

/* The transactional.id of --exactly-once: --transactional-id, or
 * outbox-relay.<schema>. Writes it to buf. */
const char *kafka_conf_transactional_id(const struct config *cfg, char *buf, size_t bufsz);

/* Whether a property's value may be a credential (never to be echoed). */
int kafka_conf_is_secret(const char *name);

#endif
