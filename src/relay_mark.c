/* relay_mark: marks the published rows of finished batches sent. Batches that
 * finish close together share one UPDATE: under a steady trickle of events
 * each fetch brings a few rows, and a statement and a commit per batch would
 * cost the database more than its rows do. Marks are sent from the loop,
 * never from inside a callback that may be walking the batches. A mark
 * names each row by id, event_id and generation, so that it only ever
 * marks the copy that was published (see db_mark). */
#include "relay_mark.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "db.h"
#include "log.h"
#include "relay_batch.h"
#include "relay_floor.h"
#include "relay_int.h"
#include "relay_txn_state.h"

struct relay_marks {
        int delay_ms, batch_size, pipeline_depth;
        int rows;   /* sent rows of the batches whose mark is due */
        int64_t at; /* when they are marked at the latest (0: none due) */
        int fetch;  /* news for the loop: a marked row was not there (relay_marks_want_fetch) */
};

int relay_marks_want_fetch(struct relay_marks *m)
{
        int fetch = m->fetch;

        m->fetch = 0;
        return fetch;
}

/* A mark on its way: what on_marked needs. */
struct mark_group {
        struct relay *relay;
        struct relay_mark_set set;
};

struct relay_marks *relay_marks_new(int delay_ms, int batch_size, int pipeline_depth)
{
        struct relay_marks *m = calloc(1, sizeof(*m));

        if (m == NULL)
                return NULL;
        m->delay_ms = delay_ms;
        m->batch_size = batch_size;
        m->pipeline_depth = pipeline_depth;
        return m;
}

void relay_marks_free(struct relay_marks *m)
{
        free(m);
}

void relay_marks_due(struct relay_marks *m, struct batch *b, int64_t now)
{
        int sent;

        if (b->state != BATCH_REPORTED)
                return; /* due, queued or done already */
        sent = batch_sent_rows(b);
        if (sent == 0) {
                batch_set_state(b, BATCH_MARKED);
                return;
        }
        batch_set_state(b, BATCH_MARK_DUE);
        m->rows += sent;
        if (m->at == 0)
                m->at = now + m->delay_ms;
}

int relay_marks_hold(int pipeline_depth)
{
        return 2 * pipeline_depth > RELAY_MARKS_HOLD ? 2 * pipeline_depth : RELAY_MARKS_HOLD;
}

int64_t relay_marks_next_at(const struct relay_marks *m, int n_batches, int stopping)
{
        if (m->at == 0)
                return INT64_MAX;
        if (m->rows >= m->batch_size || n_batches >= relay_marks_hold(m->pipeline_depth) ||
            stopping)
                return 0;
        return m->at;
}

int relay_marks_unsent(const struct batch *batches)
{
        int n = 0;

        for (const struct batch *b = batches; b != NULL; b = b->next)
                n += b->state < BATCH_MARKING;
        return n;
}

int relay_marks_pipeline_full(const struct batch *batches, int n_batches, int pipeline_depth,
                              int batch_size)
{
        int marking = 0, unsent = 0;
        int64_t rows = 0;

        for (const struct batch *b = batches; b != NULL; b = b->next) {
                marking += batch_marking(b);
                unsent += b->state < BATCH_MARKING;
                rows += b->n;
        }
        /* Published batches waiting for a shared mark count towards the
         * hold, not the depth; those whose mark is on its way count only
         * towards twice the hold and the rows: a fetch does not wait for
         * a mark's round trip, and a drain holds no more rows than
         * before. */
        return n_batches - marking >= pipeline_depth ||
               unsent >= relay_marks_hold(pipeline_depth) ||
               n_batches >= 2 * relay_marks_hold(pipeline_depth) ||
               rows >= (int64_t)2 * pipeline_depth * batch_size;
}

void relay_marks_postpone(struct relay_marks *m, int64_t until)
{
        if (m->at != 0)
                m->at = until;
}

void relay_mark_set_free(struct relay_mark_set *set)
{
        free((void *)set->rows.ids);
        free((void *)set->rows.event_ids);
        free((void *)set->rows.generations);
        free((void *)set->rows.replays);
        free((void *)set->rows.partitions);
        free((void *)set->rows.offsets);
        free(set->batches);
        memset(set, 0, sizeof(*set));
}

/* Whether b holds a later row of a failed row's key whose failure is not
 * recorded yet. Its mark waits for that record: marked first, a crash
 * between the two would leave the failed row pending, to be published
 * after the row marked sent (relay_fail.c). Only the batches with such a
 * failure are scanned: none, as a rule. */
static int mark_blocked(const struct batch *batches, const struct batch *b)
{
        for (const struct batch *f = batches; f != NULL; f = f->next) {
                if (f->unrecorded == 0)
                        continue;
                for (int i = 0; i < f->n; i++)
                        if (batch_row_unrecorded(&f->rows[i]) && batch_overtakes(b, &f->rows[i]))
                                return 1;
        }
        return 0;
}

/* Whether a batch before b still awaits reports. b waits for them: a row
 * of those that comes back unpublished (a producer rebuilt or purged) goes
 * again, and the later rows of its key in b, which Kafka may have appended
 * behind its request, must then stay pending to follow it
 * (batch_unsent_overtaken). Marked first, they would end up in the topic
 * before the last copy of that earlier row. */
static int earlier_unreported(const struct batch *batches, const struct batch *b)
{
        for (const struct batch *e = batches; e != NULL && e != b; e = e->next)
                if (!batch_submitted(e))
                        return 1;
        return 0;
}

static int mark_now(const struct batch *batches, const struct batch *b)
{
        return b->state == BATCH_MARK_DUE && !earlier_unreported(batches, b) &&
               !mark_blocked(batches, b);
}

int relay_marks_ready(const struct batch *batches)
{
        for (const struct batch *b = batches; b != NULL; b = b->next)
                if (mark_now(batches, b))
                        return 1;
        return 0;
}

int relay_marks_collect(struct relay_marks *m, struct batch *batches, struct relay_mark_set *set,
                        int64_t now)
{
        size_t rows = 0, n = 0;
        int nb = 0;
        int64_t *ids, *gens, *offs;
        const char **evs;
        int32_t *reps, *parts;

        memset(set, 0, sizeof(*set));
        for (struct batch *b = batches; b != NULL; b = b->next) {
                if (!mark_now(batches, b))
                        continue;
                nb++;
                rows += (size_t)batch_sent_rows(b);
        }
        set->rows.ids = ids = malloc(sizeof(*ids) * (rows + 1));
        set->rows.event_ids = evs = malloc(sizeof(*evs) * (rows + 1));
        set->rows.generations = gens = malloc(sizeof(*gens) * (rows + 1));
        set->rows.replays = reps = malloc(sizeof(*reps) * (rows + 1));
        set->rows.partitions = parts = malloc(sizeof(*parts) * (rows + 1));
        set->rows.offsets = offs = malloc(sizeof(*offs) * (rows + 1));
        set->batches = malloc(sizeof(*set->batches) * (size_t)(nb + 1));
        if (ids == NULL || evs == NULL || gens == NULL || reps == NULL || parts == NULL ||
            offs == NULL || set->batches == NULL) {
                relay_mark_set_free(set);
                relay_marks_postpone(m, now + 100);
                return -1;
        }
        for (struct batch *b = batches; b != NULL; b = b->next) {
                if (!mark_now(batches, b))
                        continue;
                for (int i = 0; i < b->n; i++) {
                        const struct relay_row *row = &b->rows[i];

                        if (row->state != ROW_SENT)
                                continue;
                        ids[n] = row->m.id;
                        evs[n] = row->m.event_id != NULL ? row->m.event_id : "";
                        gens[n] = row->m.generation;
                        reps[n] = row->m.replays;
                        parts[n] = row->partition;
                        offs[n] = row->offset;
                        n++;
                }
                batch_set_state(b, BATCH_MARKING);
                set->batches[set->n_batches++] = b;
        }
        set->rows.n = n;
        /* The batches held back stay due, marked once the failure is
         * recorded (relay_marks_ready says when). */
        m->rows = 0;
        m->at = 0;
        for (struct batch *b = batches; b != NULL; b = b->next)
                if (b->state == BATCH_MARK_DUE)
                        m->rows += batch_sent_rows(b);
        if (m->rows > 0)
                m->at = now;
        return 0;
}

/* ---- sending marks (the loop's side) ---- */

static void on_marked(void *arg, long marked, const char *error)
{
        struct mark_group *g = arg;
        struct relay *r = g->relay;

        if (error != NULL) {
                /* Not marked: the rows stay pending (and in their batches,
                 * so no fetch returns them). With the connection fine the
                 * statement itself failed (a grant, a lock timeout): marked
                 * again after a backoff (relay_mark_next_at), on this
                 * session; else once reconnected. Nothing unconfirmed is
                 * marked. */
                relay_stmt_failed(r, RELAY_STMT_MARK, error, now_ms());
        } else if (g->set.rows.n > 0) { /* else no statement ran (relay_mark_tick) */
                relay_stmt_ok(r, RELAY_STMT_MARK);
                log_debug(r->lg, "rows marked sent", "{s:I,s:i}", "rows", (json_int_t)marked,
                          "batches", g->set.n_batches);
                if (marked < (long)g->set.rows.n) {
                        /* Made pending again (or marked by another relay)
                         * while being published: not this copy's to mark.
                         * Such a row is fetched again, from below the floor. */
                        log_info(r->lg,
                                 "published rows not marked sent: made pending again, marked by "
                                 "another relay or deleted since they were fetched",
                                 "{s:I}", "rows", (json_int_t)((long)g->set.rows.n - marked));
                        relay_floor_lower(r->floor);
                        r->marks->fetch = 1;
                }
        }
        /* --exactly-once: the open transaction may wait for this mark. */
        relay_txn_poke(r->tx);
        for (int i = 0; i < g->set.n_batches; i++) {
                struct batch *b = g->set.batches[i];

                batch_set_state(b, error == NULL ? BATCH_MARKED : BATCH_REPORTED);
                if (error != NULL && db_connected(r->db))
                        relay_marks_due(r->marks, b, now_ms());
        }
        for (int i = 0; i < g->set.n_batches; i++)
                r->hooks.batch_check_done(r, g->set.batches[i]); /* may free it */
        relay_mark_set_free(&g->set);
        free(g);
}

int64_t relay_mark_next_at(const struct relay *r)
{
        int64_t at, retry = r->duty->stmt[RELAY_STMT_MARK].retry_at;

        if (!db_connected(r->db))
                return INT64_MAX;
        /* Batches whose mark is on its way do not count: while it is, the
         * loop goes on fetching (relay_marks_pipeline_full), and the batches
         * finishing meanwhile share the next mark instead of each taking
         * one at once. */
        at = relay_marks_next_at(r->marks, relay_marks_unsent(r->batches), r->stopping);
        /* Every due batch held back by an unrecorded failure: nothing to
         * do until it is recorded, no loop turning meanwhile. */
        if (at != INT64_MAX && !relay_marks_ready(r->batches))
                return INT64_MAX;
        /* Never before the backoff of a mark that failed. */
        return at == INT64_MAX || at > retry ? at : retry;
}

void relay_mark_tick(struct relay *r, int64_t now)
{
        struct mark_group *g;

        if (now < relay_mark_next_at(r))
                return;
        g = malloc(sizeof(*g));
        if (g == NULL || relay_marks_collect(r->marks, r->batches, &g->set, now) != 0) {
                log_error(r->lg, "out of memory for marking rows sent", NULL);
                relay_marks_postpone(r->marks, now + 100);
                free(g);
                return;
        }
        g->relay = r;
        if (g->set.rows.n == 0) {
                /* Every sent row of these batches was made pending again
                 * (batch_unsent_overtaken): nothing to tell the database. */
                on_marked(g, 0, NULL);
                return;
        }
        db_mark(r->db, &g->set.rows, on_marked, g);
}
