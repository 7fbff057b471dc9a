/* relay_mark: marks the published rows of finished batches sent. Batches that
 * finish close together share one UPDATE: under a steady trickle of events
 * each fetch brings a few rows, and a statement and a commit per batch would
 * cost the database more than its rows do. Marks are sent from the loop,
 * never from inside a callback that may be walking the batches. */
#include <stdlib.h>

#include "relay_int.h"

struct mark_group {
        struct relay *relay;
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
                relay_stmt_ok(r, RELAY_STMT_MARK);
                log_debug(r->lg, "rows marked sent", "{s:s,s:i}", "rows", PQcmdTuples(res),
                          "batches", g->n);
        }
        PQclear(res);
        for (int i = 0; i < g->n; i++) {
                g->b[i]->mark_queued = 0;
                g->b[i]->marked = error == NULL;
                if (error != NULL && db_connected(r->db))
                        relay_mark_due(r, g->b[i]);
        }
        for (int i = 0; i < g->n; i++)
                relay_batch_check_done(r, g->b[i]); /* may free it */
        free(g);
}

void relay_mark_due(struct relay *r, struct batch *b)
{
        int sent = 0;

        if (b->marked || b->mark_queued || b->mark_due)
                return;
        for (int i = 0; i < b->n; i++)
                sent += b->rows[i].state == ROW_SENT;
        if (sent == 0) {
                b->marked = 1;
                return;
        }
        b->mark_due = 1;
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
                marking += b->mark_due || b->mark_queued || b->marked;
        return r->n_batches - marking >= r->cfg->pipeline_depth ||
               r->n_batches >= 2 * r->cfg->pipeline_depth;
}

void relay_mark_tick(struct relay *r, int64_t now)
{
        struct mark_group *g = NULL;
        int64_t *ids = NULL, *offs = NULL;
        int32_t *parts = NULL;
        size_t n = 0, rows = 0;
        int nb = 0;

        if (now < relay_mark_next_at(r))
                return;
        for (struct batch *b = r->batches; b != NULL; b = b->next) {
                if (!b->mark_due)
                        continue;
                nb++;
                for (int i = 0; i < b->n; i++)
                        rows += b->rows[i].state == ROW_SENT;
        }
        g = malloc(sizeof(*g) + sizeof(g->b[0]) * (size_t)nb);
        ids = malloc(sizeof(*ids) * rows);
        parts = malloc(sizeof(*parts) * rows);
        offs = malloc(sizeof(*offs) * rows);
        if (g == NULL || ids == NULL || parts == NULL || offs == NULL) {
                log_error(r->lg, "out of memory for marking rows sent", "{s:i}", "rows", (int)rows);
                r->mark_at = now + 100;
                free(g);
                goto out;
        }
        g->relay = r;
        g->n = 0;
        for (struct batch *b = r->batches; b != NULL; b = b->next) {
                if (!b->mark_due)
                        continue;
                for (int i = 0; i < b->n; i++) {
                        if (b->rows[i].state != ROW_SENT)
                                continue;
                        ids[n] = b->rows[i].m.id;
                        parts[n] = b->rows[i].partition;
                        offs[n] = b->rows[i].offset;
                        n++;
                }
                b->mark_due = 0;
                b->mark_queued = 1;
                g->b[g->n++] = b;
        }
        r->mark_rows = 0;
        r->mark_at = 0;
        db_mark(r->db, n, ids, parts, offs, on_marked, g);
out:
        free(ids);
        free(parts);
        free(offs);
}
