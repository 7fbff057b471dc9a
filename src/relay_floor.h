/* relay_floor: where each fetch starts, as a state of its own. Pure: the
 * loop sends the fetches and the looks at the writers, hands their results
 * here, and acts on the decisions returned (fetch again, check failures). */
#ifndef OUTBOX_RELAY_FLOOR_H
#define OUTBOX_RELAY_FLOOR_H

#include <stdint.h>

#include "compiler.h"

struct backoff;
struct log;
struct relay_floor;

/* What <schema>.writers() said (see db_writers). */
struct relay_floor_writers {
        int64_t last_id;     /* the newest id drawn */
        long long rewinds;   /* rows made pending again, counted */
        long long id_cache;  /* the sequence's CACHE */
        const char *writers; /* the transactions writing now (a text[] literal) */
        int earlier_done;    /* every writer of the earlier look has ended */
};

/* Rows fetched since the last look that make the next one due as soon as
 * 20 ms have passed since it (otherwise 500 ms). */
#define RELAY_FLOOR_LOOK_ROWS 100

/* Decisions for the loop (a mask). */
#define RELAY_FLOOR_FETCH   1 /* the floor went down: fetch again (an idle relay would wait) */
#define RELAY_FLOOR_REWOUND 2 /* rows were made pending again: they may be failing ones */

/* lg may be NULL (nothing logged). NULL: out of memory. */
struct relay_floor *relay_floor_new(struct log *lg) OUTBOX_MUST_CHECK;
void relay_floor_free(struct relay_floor *f);

/* Back to the lowest id (a fetched row returned to the table, leadership
 * began): a fetch already sent must not move it up. The loop fetches again. */
void relay_floor_lower(struct relay_floor *f);
/* The floor for a fetch about to be sent; may_advance: it leaves out no
 * pending row but those in batches. A look at the writers is then wanted. */
int64_t relay_floor_for_fetch(struct relay_floor *f, int may_advance, int64_t now);
/* The floor of the fetch running (for the log). */
int64_t relay_floor_fetching(const struct relay_floor *f);
/* That fetch returned n rows, the last with last_id; full: it stopped at
 * its limit (of rows or bytes), so rows above last_id were not looked at. */
void relay_floor_fetched(struct relay_floor *f, int n, int64_t last_id, int full);
/* A new database session, perhaps on another server: forgets all it learnt. */
void relay_floor_forget(struct relay_floor *f);

/* A look at the writers to send now: returns the earlier writers to pass
 * to db_writers ("{}": none) and counts it as sent; NULL: none is due. */
const char *relay_floor_look(struct relay_floor *f, int64_t now);
/* When a look is due (INT64_MAX: none). */
int64_t relay_floor_next_at(const struct relay_floor *f);
/* The look's result; returns RELAY_FLOOR_* decisions. */
unsigned relay_floor_writers(struct relay_floor *f, const struct relay_floor_writers *w);
/* The look failed; with the connection fine it is sent again after bo's
 * backoff, not after every fetch. */
void relay_floor_look_failed(struct relay_floor *f, int connected, struct backoff *bo, int64_t now);

#endif
