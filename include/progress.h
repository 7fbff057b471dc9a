/* progress: the progress records of --exactly-once. Each Kafka transaction
 * carries one, on partition 0 of the progress topic and keyed by the
 * transactional.id: the rows it published, and the rows of earlier committed
 * transactions not yet marked sent. A new leader reads the last committed
 * record and marks those rows sent before it publishes anything. A row is
 * named by id, event_id and generation, never by id alone: a row made
 * pending again keeps its id and event_id but not its generation, and after
 * a restore or a failover that lost the sequence's tail a new row may have
 * the id of a published one, never its event_id.
 * This is the records' codec, pure; progress_reader.h reads them back. */
#ifndef OUTBOX_PROGRESS_H
#define OUTBOX_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

/* A uuid in its text form (8-4-4-4-12 hex digits), with its NUL. */
#define PROGRESS_UUID_SIZE 37

/* A set of outbox rows as published. */
struct progress_rows {
        int64_t *ids;
        char (*event_ids)[PROGRESS_UUID_SIZE]; /* "" when not known (a version 2 record) */
        int64_t *generations;
        int32_t *replays;    /* a version 2 record's replays column; 0 from version 3 on */
        int32_t *partitions; /* where Kafka put the row, -1 when not known */
        int64_t *offsets;
        size_t n, cap;
};

/* event_id may be NULL or "" (not known: such a row is matched by a
 * version 2 record's rule, see struct db_marks in db.h). */
int progress_rows_add(struct progress_rows *s, int64_t id, const char *event_id, int64_t generation,
                      int32_t partition, int64_t offset) OUTBOX_MUST_CHECK;
void progress_rows_clear(struct progress_rows *s);
void progress_rows_free(struct progress_rows *s);

/* An outbox's identity (relay_state.outbox_id) as text, with its NUL. */
#define PROGRESS_OUTBOX_ID_SIZE PROGRESS_UUID_SIZE

/* The record's value, as JSON (malloc'd; NULL when out of memory, or when
 * a row has no event id to be named by):
 * {"version":3,"transactional_id":...,"schema":...,
 *  "outbox_id":...,                the outbox whose rows these are (a relay
 *                                  refuses another outbox's record)
 *  "rows":[[id,partition,offset,generation],...]
 *                                  rows this transaction published and where
 *                                  Kafka put them (its only record of them:
 *                                  a consumer can tell the committed copy of
 *                                  a row from an aborted one), by id
 *  "row_events":"...",             their event ids, 22 characters each (the
 *                                  16 bytes in base64url), in that order
 *  "unmarked":[[first,last],...],  ids of earlier committed transactions'
 *                                  rows whose mark is not yet confirmed (the
 *                                  relay waits for those marks instead: empty)
 *  "unmarked_generations":[[id,g],...]  those whose generation is not 0
 *  "unmarked_events":"..."}        their event ids, by id
 * A row listed twice (it cannot be: a row is in one batch at a time) is
 * named once, by its newest generation. */
char *progress_encode(const char *transactional_id, const char *schema, const char *outbox_id,
                      const struct progress_rows *rows,
                      const struct progress_rows *unmarked) OUTBOX_MUST_CHECK;

/* Appends every row a record lists (rows, then unmarked) to out, and copies
 * its outbox_id. Reads version 3 and, for upgrades, version 2 (rows named
 * by id and replays: event_id "" and generation 0). Strict: anything but
 * what the encoder of that version writes is an error naming what was
 * wrong, and leaves out as it was. */
int progress_decode(const char *json, size_t len, struct progress_rows *out,
                    char outbox_id[PROGRESS_OUTBOX_ID_SIZE], char *errbuf,
                    size_t errsz) OUTBOX_MUST_CHECK;

#endif
