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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay_int.h"

/* How often the writers are looked at while fetching: the floor trails the
 * newest settled id by about this much. */
#define FLOOR_SAMPLE_MS 20
/* A row below the floor that nothing announced (inserted by hand with an
 * explicit id) is found by the next fetch from the lowest id: one a minute
 * costs little even when a long transaction makes that fetch slow. */
#define FLOOR_SWEEP_MS 60000

/* Back to the lowest id; a fetch already sent must not move it up. */
static void lower(struct relay_floor *f)
{
        f->floor = 0;
        f->gen++;
}

void relay_floor_reset(struct relay *r)
{
        lower(&r->fl);
        /* An idle relay fetches only when woken: rows below the old floor
         * (made pending again, say) would wait for the next wake-up. */
        r->want_fetch = 1;
}

/* Every writer of an id up to last_id has ended, and every rewind counted
 * up to rewinds is committed or rolled back. */
static void settle(struct relay *r, int64_t last_id, long long rewinds)
{
        struct relay_floor *f = &r->fl;

        if (last_id > f->settled)
                f->settled = last_id;
        if (rewinds == f->rewinds)
                return;
        if (f->rewinds >= 0)
                log_info(r->lg, "rows were made pending again: fetching from the lowest id",
                         "{s:I}", "rewinds", (json_int_t)(rewinds - f->rewinds));
        f->rewinds = rewinds;
        relay_floor_reset(r);
        /* A hand-made update may have left rows failing: hold keys back
         * until a check says none is. */
        r->failing = 1;
        r->failing_gen++;
        relay_check_failing(r);
}

static void on_writers(void *arg, PGresult *res, const char *error)
{
        struct relay *r = arg;
        struct relay_floor *f = &r->fl;
        long long last_id, rewinds, cache;
        const char *writers;

        f->queued = 0;
        if (error != NULL) {
                /* The floor stays where it is (safe: fetches start lower,
                 * nothing is skipped). A look follows every fetch, so a
                 * refused writers() would be sent 50 times a second while
                 * rows flow: back off instead, like the other statements. */
                if (db_connected(r->db)) {
                        metrics_statement_error(r->metrics, METRICS_STMT_OTHER);
                        f->next_at =
                            now_ms() + backoff_delay_ms(&r->stmt_backoff, ++f->fail_attempt);
                }
                log_limited(r->lg, CONFIG_LOG_WARN, "reading the outbox's writers failed", error,
                            NULL);
                return;
        }
        f->fail_attempt = 0;
        last_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        rewinds = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        cache = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
        writers = PQgetvalue(res, 0, 3);
        if (cache != 1) {
                /* A writer's session hands out ids from its cache long after
                 * drawing them: nothing says when an id is settled. */
                log_warn(r->lg,
                         "the sequence of events.id caches ids per session (CACHE > 1): every "
                         "fetch starts from the lowest pending id, which is slower while a long "
                         "transaction keeps old row versions",
                         "{s:I}", "cache", (json_int_t)cache);
                f->disabled = 1;
                relay_floor_reset(r);
                PQclear(res);
                return;
        }
        if (last_id < f->settled) {
                /* The sequence was set back (TRUNCATE ... RESTART IDENTITY):
                 * ids below the floor are drawn again. */
                log_warn(r->lg, "the sequence of events.id went back: fetching from the lowest id",
                         "{s:I,s:I}", "last_id", (json_int_t)last_id, "was",
                         (json_int_t)f->settled);
                f->settled = 0;
                free(f->earlier);
                f->earlier = NULL;
                relay_floor_reset(r);
        }
        if (f->earlier != NULL && strcmp(PQgetvalue(res, 0, 4), "t") == 0) {
                settle(r, f->earlier_id, f->earlier_rewinds);
                free(f->earlier);
                f->earlier = NULL;
        }
        if (strcmp(writers, "{}") == 0) {
                settle(r, last_id, rewinds);
        } else if (f->earlier == NULL && (f->earlier = strdup(writers)) != NULL) {
                f->earlier_id = last_id;
                f->earlier_rewinds = rewinds;
        }
        PQclear(res);
}

int64_t relay_floor_for_fetch(struct relay *r, int may_advance, int64_t now)
{
        struct relay_floor *f = &r->fl;

        /* The fetch being sent is the sweep: no other one is needed. */
        if (now >= f->sweep_at) {
                f->sweep_at = now + FLOOR_SWEEP_MS;
                lower(f);
        }
        /* Disabled, the floor stays 0: relay_floor_fetched never moves it. */
        f->fetch_floor = f->floor;
        f->fetch_may_advance = may_advance;
        f->fetch_gen = f->gen;
        f->fetch_settled = f->settled;
        return f->floor;
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

void relay_floor_look(struct relay *r, int64_t now)
{
        struct relay_floor *f = &r->fl;

        f->look_due = 1;
        relay_floor_tick(r, now);
}

void relay_floor_tick(struct relay *r, int64_t now)
{
        struct relay_floor *f = &r->fl;

        if (!wants_look(f) || now < f->next_at || !r->leader || !db_connected(r->db))
                return;
        f->queued = 1;
        f->look_due = 0;
        f->next_at = now + FLOOR_SAMPLE_MS;
        db_writers(r->db, f->earlier != NULL ? f->earlier : "{}", on_writers, r);
}

int64_t relay_floor_next_at(const struct relay *r)
{
        return wants_look(&r->fl) && r->leader ? r->fl.next_at : INT64_MAX;
}

void relay_floor_fetched(struct relay *r, int n, int64_t last_id, int full)
{
        struct relay_floor *f = &r->fl;
        int64_t to = f->fetch_settled;

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
 * again. Fetches sent on the old session have failed by now. */
void relay_floor_forget(struct relay *r)
{
        struct relay_floor *f = &r->fl;

        free(f->earlier);
        f->earlier = NULL;
        f->earlier_id = 0;
        f->earlier_rewinds = 0;
        f->settled = 0;
        f->rewinds = -1;
        f->disabled = 0;
        f->next_at = 0;
        f->fail_attempt = 0;
        lower(f);
}

void relay_floor_free(struct relay *r)
{
        free(r->fl.earlier);
        r->fl.earlier = NULL;
}
