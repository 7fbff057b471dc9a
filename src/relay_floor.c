/* relay_floor: where each fetch starts. Below the floor every pending row
 * is in the relay's batches, so a fetch skips the index entries of the rows
 * marked before it: a long transaction elsewhere keeps every one of them,
 * and fetches from the lowest id would walk them all, again and again.
 *
 * The floor only passes ids whose writers have all ended. A writer takes
 * RowExclusiveLock on events before it draws an id and keeps it until it
 * ends, so once the transactions that held the lock when the newest id was
 * last_id have let it go, every row up to last_id is committed or rolled
 * back (<schema>.writers() reads both, in that order). It goes back to the
 * lowest id whenever a fetched row returns to the table unpublished, when
 * leadership begins, and when an old row was made pending again (a rewind,
 * migration 003); and it forgets all it learnt when a new database session
 * starts (relay_floor_forget). */
#include "relay_floor.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "backoff.h"
#include "log.h"

/* How often the writers are looked at at most: while rows flow by the
 * batch, the floor trails the newest settled id by about this much. */
#define FLOOR_SAMPLE_MS 20
/* Otherwise a look waits for RELAY_FLOOR_LOOK_ROWS fetched rows, or this
 * long. writers() reads pg_locks (about 0.6 ms of the server's CPU, more
 * than a fetch), and the floor it lifts only saves a fetch the index
 * entries of the rows marked since the last look: under a long
 * transaction a hundred rows, a few µs. A look after every fetch made
 * 40-50 a second at 100 and at 1,000 events/s. */
#define FLOOR_LOOK_MAX_MS 500
/* A row below the floor that nothing announced (inserted by hand with an
 * explicit id) is found by the next fetch from the lowest id: one a minute
 * costs little even when a long transaction makes that fetch slow. */
#define FLOOR_SWEEP_MS 60000

struct relay_floor {
        struct log *lg;
        int64_t floor;   /* every pending row with a lower or equal id is in a batch */
        unsigned gen;    /* counts lowerings: a fetch sent before one must not advance */
        int64_t settled; /* every writer of an id up to this one has ended */
        char *earlier;   /* writers seen last (text[]) whose end is awaited; NULL: none */
        int64_t earlier_id;
        long long earlier_rewinds;
        long long rewinds; /* rewinds acted on (-1: none yet) */
        int queued, disabled, look_due;
        int fail_attempt; /* looks failed in a row (they back off) */
        int64_t next_at, sweep_at;
        int64_t last_look_at; /* when the last look was sent */
        long rows_since_look; /* rows fetched since then */
        /* the fetch running */
        int64_t fetch_floor;
        int fetch_may_advance;
        unsigned fetch_gen;
        int64_t fetch_settled;
};

struct relay_floor *relay_floor_new(struct log *lg)
{
        struct relay_floor *f = calloc(1, sizeof(*f));

        if (f == NULL)
                return NULL;
        f->lg = lg;
        f->rewinds = -1;
        return f;
}

void relay_floor_free(struct relay_floor *f)
{
        if (f == NULL)
                return;
        free(f->earlier);
        free(f);
}

void relay_floor_lower(struct relay_floor *f)
{
        f->floor = 0;
        f->gen++;
}

/* Every writer of an id up to last_id has ended, and every rewind counted
 * up to rewinds is committed or rolled back. */
static unsigned settle(struct relay_floor *f, int64_t last_id, long long rewinds)
{
        if (last_id > f->settled)
                f->settled = last_id;
        if (rewinds == f->rewinds)
                return 0;
        if (f->rewinds >= 0 && f->lg != NULL)
                log_info(f->lg, "rows were made pending again: fetching from the lowest id",
                         "{s:I}", "rewinds", (json_int_t)(rewinds - f->rewinds));
        f->rewinds = rewinds;
        relay_floor_lower(f);
        /* A hand-made update may have left rows failing. */
        return RELAY_FLOOR_FETCH | RELAY_FLOOR_REWOUND;
}

unsigned relay_floor_writers(struct relay_floor *f, const struct relay_floor_writers *w)
{
        unsigned d = 0;

        f->queued = 0;
        f->fail_attempt = 0;
        if (w->id_cache != 1) {
                /* A writer's session hands out ids from its cache long after
                 * drawing them: nothing says when an id is settled. */
                if (f->lg != NULL)
                        log_warn(f->lg,
                                 "the sequence of events.id caches ids per session (CACHE > 1): "
                                 "every fetch starts from the lowest pending id, which is slower "
                                 "while a long transaction keeps old row versions",
                                 "{s:I}", "cache", (json_int_t)w->id_cache);
                f->disabled = 1;
                relay_floor_lower(f);
                return RELAY_FLOOR_FETCH;
        }
        if (w->last_id < f->settled) {
                /* The sequence was set back (TRUNCATE ... RESTART IDENTITY):
                 * ids below the floor are drawn again. */
                if (f->lg != NULL)
                        log_warn(f->lg,
                                 "the sequence of events.id went back: fetching from the lowest id",
                                 "{s:I,s:I}", "last_id", (json_int_t)w->last_id, "was",
                                 (json_int_t)f->settled);
                f->settled = 0;
                free(f->earlier);
                f->earlier = NULL;
                relay_floor_lower(f);
                d |= RELAY_FLOOR_FETCH;
        }
        if (f->earlier != NULL && w->earlier_done) {
                d |= settle(f, f->earlier_id, f->earlier_rewinds);
                free(f->earlier);
                f->earlier = NULL;
        }
        if (strcmp(w->writers, "{}") == 0) {
                d |= settle(f, w->last_id, w->rewinds);
        } else if (f->earlier == NULL && (f->earlier = strdup(w->writers)) != NULL) {
                f->earlier_id = w->last_id;
                f->earlier_rewinds = w->rewinds;
        }
        return d;
}

void relay_floor_look_failed(struct relay_floor *f, int connected, struct backoff *bo, int64_t now)
{
        /* The floor stays where it is (safe: fetches start lower, nothing
         * is skipped). A look follows every fetch, so a refused writers()
         * would be sent 50 times a second while rows flow: back off
         * instead, like the other statements. */
        f->queued = 0;
        if (connected)
                f->next_at = now + backoff_delay_ms(bo, ++f->fail_attempt);
}

int64_t relay_floor_for_fetch(struct relay_floor *f, int may_advance, int64_t now)
{
        /* The fetch being sent is the sweep: no other one is needed. */
        if (now >= f->sweep_at) {
                f->sweep_at = now + FLOOR_SWEEP_MS;
                relay_floor_lower(f);
        }
        /* Disabled, the floor stays 0: relay_floor_fetched never moves it. */
        f->fetch_floor = f->floor;
        f->fetch_may_advance = may_advance;
        f->fetch_gen = f->gen;
        f->fetch_settled = f->settled;
        f->look_due = 1;
        return f->floor;
}

int64_t relay_floor_fetching(const struct relay_floor *f)
{
        return f->fetch_floor;
}

/* A look is wanted after every fetch (one that came too soon after the
 * last is made when the interval is up: the relay may fall idle after that
 * fetch, and a rewind it missed would wait for the next wake-up), and
 * while a rewind waits for its writers to end. */
static int wants_look(const struct relay_floor *f)
{
        return !f->disabled && !f->queued &&
               (f->look_due || (f->earlier != NULL && f->earlier_rewinds != f->rewinds));
}

/* When the wanted look is due: at once the first time on a session (the
 * floor knows nothing yet) and while a rewind waits for its writers (rows
 * made pending again wait for it); otherwise once enough rows came to
 * make the floor worth lifting, or FLOOR_LOOK_MAX_MS after the last. */
static int64_t look_due_at(const struct relay_floor *f)
{
        int64_t slow = f->last_look_at + FLOOR_LOOK_MAX_MS;

        if (f->rewinds < 0 || f->rows_since_look >= RELAY_FLOOR_LOOK_ROWS ||
            (f->earlier != NULL && f->earlier_rewinds != f->rewinds) || slow < f->next_at)
                return f->next_at;
        return slow;
}

const char *relay_floor_look(struct relay_floor *f, int64_t now)
{
        if (!wants_look(f) || now < look_due_at(f))
                return NULL;
        f->queued = 1;
        f->look_due = 0;
        f->next_at = now + FLOOR_SAMPLE_MS;
        f->last_look_at = now;
        f->rows_since_look = 0;
        return f->earlier != NULL ? f->earlier : "{}";
}

int64_t relay_floor_next_at(const struct relay_floor *f)
{
        return wants_look(f) ? look_due_at(f) : INT64_MAX;
}

void relay_floor_fetched(struct relay_floor *f, int n, int64_t last_id, int full)
{
        int64_t to = f->fetch_settled;

        f->rows_since_look += n;
        /* Not if the fetch left rows out that are not in a batch (rows of
         * held keys, failed rows waiting for their retry), nor if a row
         * went back to the table while it ran (it left that row out). */
        if (f->disabled || !f->fetch_may_advance || f->fetch_gen != f->gen)
                return;
        /* A full batch: rows above its last one were not looked at. */
        if (full && n > 0 && last_id < to)
                to = last_id;
        if (to > f->floor)
                f->floor = to;
}

/* Everything here was learnt from one server. After a failover that lost
 * the tail of the sequence, the new server hands out again ids the old one
 * had drawn: writers seen on the old server are "gone" on the new one, and
 * settling the ids they held (or the ids settled there) would lift the
 * floor over rows the new server's writers are still inserting, which
 * would then wait for the sweep, behind later rows of their keys. So a new
 * session starts from nothing: floor 0, nothing settled, no rewind seen
 * (the first look takes the count as it is), the sequence's cache asked
 * again. Fetches sent on the old session have failed by now. A look sent
 * on it has failed too (its callback ran when the session closed). */
void relay_floor_forget(struct relay_floor *f)
{
        free(f->earlier);
        f->earlier = NULL;
        f->earlier_id = 0;
        f->earlier_rewinds = 0;
        f->settled = 0;
        f->rewinds = -1;
        f->disabled = 0;
        f->next_at = 0;
        f->fail_attempt = 0;
        relay_floor_lower(f);
}
