/* progress_reader: reads the last committed progress record of a
 * transactional.id back from partition 0 of --progress-topic, with one
 * read_committed consumer kept for every read in a thread of the reader's
 * own, so that the relay's loop never waits for Kafka. (librdkafka 2.0 has
 * no asynchronous call for the topic's metadata or its watermarks, and a
 * blocking call cut into short waits never completes against a broker
 * slower than the wait.) A read creates the topic when it is missing. */
#ifndef OUTBOX_PROGRESS_READER_H
#define OUTBOX_PROGRESS_READER_H

#include <stddef.h>

#include "compiler.h"
#include "progress.h"

struct config;
struct log;

struct progress_reader;

/* The consumer is made by the first read (an error there is that read's,
 * and the next read tries again). */
struct progress_reader *progress_reader_new(const struct config *cfg, struct log *lg, char *errbuf,
                                            size_t errsz) OUTBOX_MUST_CHECK;
/* Stops the thread (a read under way gives up within about a second) and
 * frees. Accepts NULL. */
void progress_reader_free(struct progress_reader *pr);

/* Asks for the last record keyed transactional_id; returns a ticket for
 * progress_reader_poll. A read asked for before is given up: its result,
 * if it comes, is dropped. The read takes up to about timeout_ms. A missing
 * topic is created (one partition, compacted, cfg's replication factor)
 * unless cfg->progress_no_create, when it is an error saying how to create
 * it; a topic of another shape is logged as a warning. */
unsigned long progress_reader_start(struct progress_reader *pr, const char *transactional_id,
                                    int timeout_ms);
#define PROGRESS_READING 1
/* Never blocks: PROGRESS_READING while the read of ticket goes on; then,
 * once, its result: 0 with the record's rows moved into out (which must be
 * empty) and its outbox_id copied, *found 0 when there is no record (or a
 * tombstone); or -1 with errbuf set. */
int progress_reader_poll(struct progress_reader *pr, unsigned long ticket,
                         struct progress_rows *out, int *found,
                         char outbox_id[PROGRESS_OUTBOX_ID_SIZE], char *errbuf,
                         size_t errsz) OUTBOX_MUST_CHECK;
/* Start and wait: the same result, blocking (for callers without a loop of
 * their own; not to be mixed with start and poll from another thread). */
int progress_reader_read(struct progress_reader *pr, const char *transactional_id, int timeout_ms,
                         struct progress_rows *out, int *found,
                         char outbox_id[PROGRESS_OUTBOX_ID_SIZE], char *errbuf,
                         size_t errsz) OUTBOX_MUST_CHECK;

#endif
