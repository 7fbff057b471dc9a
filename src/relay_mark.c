/* relay_mark: marks the published rows of finished batches sent. Batches that
 * finish close together share one UPDATE: under a steady trickle of events
 * each fetch brings a few rows, and a statement and a commit per batch would
 * cost the database more than its rows do. Marks are sent from the loop,
 * never from inside a callback that may be walking the batches. A mark
 * names each row by id, event_id and generation, so that it only ever
 * marks the copy that was published (see db_mark). */
#include <stdlib.h>

#include "relay_int.h"

struct mark_group {
        struct relay *relay;
        long rows; /* rows the mark names */
        int n;
        struct batch *b[];
};

static void on_marked(void *arg, PGresult *res, const char *error)
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
        } else {
                long marked = atol(PQcmdTuples(res));

                relay_stmt_ok(r, RELAY_STMT_MARK);
                log_debug(r->lg, "rows marked sent", "{s:I,s:i}", "rows", (json_int_t)marked,
                          "batches", g->n);
                if (marked < g->rows) {
                        /* Made pending again (or marked by another relay)
                         * while being published: not this copy's to mark.
                         * Such a row is fetched again, from below the floor. */
                        log_info(r->lg,
                                 "published rows not marked sent: made pending again, marked by "
                                 "another relay or deleted since they were fetched",
                                 "{s:I}", "rows", (json_int_t)(g->rows - marked));
                        relay_floor_reset(r);
                        r->want_fetch = 1;
                }
        }
        PQclear(res);
        /* --exactly-once: the open transaction may wait for this mark. */
        if (r->cfg->exactly_once)
                r->txn_due = 1;
        for (int i = 0; i < g->n; i++) {
                batch_set_state(g->b[i], error == NULL ? BATCH_MARKED : BATCH_REPORTED);
                if (error != NULL && db_connected(r->db))
                        relay_mark_due(r, g->b[i]);
        }
        for (int i = 0; i < g->n; i++)
                relay_batch_check_done(r, g->b[i]); /* may free it */
        free(g);
}

void relay_mark_due(struct relay *r, struct batch *b)
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
        r->mark_rows += sent;
        /* With --exactly-once the batches of a transaction are all due at
         * its commit, so they share a mark already: marking stays as it
         * was, right after each commit. */
        if (r->mark_at == 0)
                r->mark_at = now_ms() + (r->cfg->exactly_once ? 0 : r->cfg->mark_delay_ms);
}

int64_t relay_mark_next_at(const struct relay *r)
{
        int64_t at;

        if (r->mark_at == 0 || !db_connected(r->db))
                return INT64_MAX;
        /* At once when waiting would gain nothing (a batch's worth of
         * rows), hold up fetching (relay_pipeline_full) or delay shutdown. */
        if (r->mark_rows >= r->cfg->batch_size || r->n_batches >= 2 * r->cfg->pipeline_depth ||
            r->stopping)
                at = 0;
        else
                at = r->mark_at;
        /* Never before the backoff of a mark that failed. */
        return at > r->stmt[RELAY_STMT_MARK].retry_at ? at : r->stmt[RELAY_STMT_MARK].retry_at;
}

int relay_pipeline_full(const struct relay *r)
{
        int marking = 0;

        for (const struct batch *b = r->batches; b != NULL; b = b->next)
                marking += batch_marking(b);
        return r->n_batches - marking >= r->cfg->pipeline_depth ||
               r->n_batches >= 2 * r->cfg->pipeline_depth;
}

void relay_mark_tick(struct relay *r, int64_t now)
{
        struct mark_group *g = NULL;
        int64_t *ids = NULL, *offs = NULL, *gens = NULL;
        const char **evs = NULL;
        int32_t *parts = NULL;
        size_t n = 0, rows = 0;
        int nb = 0;

        if (now < relay_mark_next_at(r))
                return;
        for (struct batch *b = r->batches; b != NULL; b = b->next) {
                if (b->state != BATCH_MARK_DUE)
                        continue;
                nb++;
                for (int i = 0; i < b->n; i++)
                        rows += b->rows[i].state == ROW_SENT;
        }
        g = malloc(sizeof(*g) + sizeof(g->b[0]) * (size_t)nb);
        ids = malloc(sizeof(*ids) * rows);
        evs = malloc(sizeof(*evs) * rows);
        gens = malloc(sizeof(*gens) * rows);
        parts = malloc(sizeof(*parts) * rows);
        offs = malloc(sizeof(*offs) * rows);
        if (g == NULL || ids == NULL || evs == NULL || gens == NULL || parts == NULL ||
            offs == NULL) {
                log_error(r->lg, "out of memory for marking rows sent", "{s:i}", "rows", (int)rows);
                r->mark_at = now + 100;
                free(g);
                goto out;
        }
        g->relay = r;
        g->rows = (long)rows;
        g->n = 0;
        for (struct batch *b = r->batches; b != NULL; b = b->next) {
                if (b->state != BATCH_MARK_DUE)
                        continue;
                for (int i = 0; i < b->n; i++) {
                        if (b->rows[i].state != ROW_SENT)
                                continue;
                        ids[n] = b->rows[i].m.id;
                        evs[n] = b->rows[i].m.event_id != NULL ? b->rows[i].m.event_id : "";
                        gens[n] = b->rows[i].m.generation;
                        parts[n] = b->rows[i].partition;
                        offs[n] = b->rows[i].offset;
                        n++;
                }
                batch_set_state(b, BATCH_MARKING);
                g->b[g->n++] = b;
        }
        r->mark_rows = 0;
        r->mark_at = 0;
        db_mark(r->db, n, ids, evs, gens, parts, offs, on_marked, g);
out:
        free(ids);
        free(evs);
        free(gens);
        free(parts);
        free(offs);
}
