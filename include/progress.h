/* progress: the progress records of --exactly-once. Each Kafka transaction
 * carries one, on partition 0 of the progress topic and keyed by the
 * transactional.id: the rows it published, and the rows of earlier committed
 * transactions not yet marked sent. A new leader reads the last committed
 * record and marks those rows sent before it publishes anything. */
#ifndef OUTBOX_PROGRESS_H
#define OUTBOX_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "log.h"

/* A set of outbox rows: id and the row's replays column when published (a
 * replayed row must not be taken for the copy published before). */
struct progress_rows {
        int64_t *ids;
        int32_t *replays;
        int32_t *partitions; /* where Kafka put the row, -1 when not known */
        int64_t *offsets;
        size_t n, cap;
};

int progress_rows_add(struct progress_rows *s, int64_t id, int32_t replays, int32_t partition,
                      int64_t offset);
void progress_rows_clear(struct progress_rows *s);
void progress_rows_free(struct progress_rows *s);

/* An outbox's identity (relay_state.outbox_id) as text, with its NUL. */
#define PROGRESS_OUTBOX_ID_SIZE 37

/* The record's value, as JSON (malloc'd; NULL when out of memory):
 * {"version":2,"transactional_id":...,"schema":...,
 *  "outbox_id":...,                the outbox whose rows these are (a relay
 *                                  refuses another outbox's record)
 *  "rows":[[id,partition,offset],...]  rows this transaction published and
 *                                  where Kafka put them (its only record of
 *                                  them: a consumer can tell the committed
 *                                  copy of a row from an aborted one)
 *  "unmarked":[[first,last],...],  ids of earlier committed transactions
 *                                  whose mark is not yet confirmed
 *  "replays":[[id,n],...]}         rows above whose replays column is not 0,
 *                                  once per id (the largest n) */
char *progress_encode(const char *transactional_id, const char *schema, const char *outbox_id,
                      const struct progress_rows *rows, const struct progress_rows *unmarked);

/* Appends every row a record lists (rows, then unmarked) to out, and copies
 * its outbox_id. Strict: anything but what progress_encode writes is an
 * error naming what was wrong, and leaves out as it was. */
int progress_decode(const char *json, size_t len, struct progress_rows *out,
                    char outbox_id[PROGRESS_OUTBOX_ID_SIZE], char *errbuf, size_t errsz);

/* Reads the last committed record keyed transactional_id on partition 0 of
 * cfg->progress_topic (a read_committed consumer) and appends its rows to
 * out, and its outbox_id; *found is 0 when there is none (or it is a
 * tombstone). Blocks up to timeout_ms. A missing topic is an error saying
 * how to create it. */
int progress_read_last(const struct config *cfg, struct log *lg, const char *transactional_id,
                       int timeout_ms, struct progress_rows *out, int *found,
                       char outbox_id[PROGRESS_OUTBOX_ID_SIZE], char *errbuf, size_t errsz);

#endif
