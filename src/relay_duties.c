/* relay_duties: what the relay does besides moving batches: taking and
 * keeping the leader lock, switching between busy polling and waiting for
 * notifications, checking for failing rows, refreshing the metrics and
 * deleting old sent rows, starting each database session afresh, and
 * backing off statements that fail. All of it runs in the relay's loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "metrics.h"
#include "producer.h"
#include "relay_floor.h"
#include "relay_int.h"
#include "relay_txn_state.h"

/* Longest wait before a failed statement is sent again (and never longer
 * than --reconnect-max-ms). */
#define STMT_RETRY_MAX_MS 5000

struct relay_duties *relay_duties_new(const struct config *cfg)
{
        struct relay_duties *d = calloc(1, sizeof(*d));

        if (d == NULL)
                return NULL;
        /* A statement failing with the connection fine is retried sooner
         * than a lost server: its cause (a grant, a lock) is often fixed
         * by hand, and the relay should notice within seconds. */
        backoff_init(&d->stmt_backoff, 100,
                     cfg->reconnect_max_ms < STMT_RETRY_MAX_MS ? cfg->reconnect_max_ms
                                                               : STMT_RETRY_MAX_MS,
                     (uint64_t)now_ms() ^ 0x5bd1e995u);
        return d;
}

void relay_duties_free(struct relay_duties *d)
{
        if (d != NULL)
                free(d->flip_writers);
        free(d);
}

int relay_duties_want_fetch(struct relay_duties *d)
{
        int fetch = d->fetch;

        d->fetch = 0;
        return fetch;
}

/* ---- busy polling or waiting for notifications ---- */
static void flip_watch(struct relay_duties *d, int on);

static void on_waiting_set(void *arg, long count, const char *error)
{
        struct relay *r = arg;

        if (error != NULL && db_connected(r->db))
                metrics_statement_error(r->metrics, METRICS_STMT_OTHER);
        if (error != NULL)
                log_limited(r->lg, LOG_LEVEL_WARN, "updating relay_state failed", error, NULL);
        /* Rows committed by writers that still saw the old flag: look once
         * more now that every new commit notifies, and follow the writers
         * still open (flip_look). */
        else if (!r->duty->busy) {
                r->duty->fetch = 1;
                flip_watch(r->duty, 1);
        }
        (void)count;
}

/* How often the writers open when the relay went back to notifications
 * are looked at until they have ended: a row they commit waits at most
 * this long (instead of --poll-interval-ms). */
#define FLIP_LOOK_MS 100

/* Starts (on) or ends following the writers of a switch to notifications. */
static void flip_watch(struct relay_duties *d, int on)
{
        d->flip_watch = on;
        d->flip_next_at = 0;
        free(d->flip_writers);
        d->flip_writers = NULL;
}

/* The first look names the writers open since the switch (their commits
 * may notify no one) and fetches what the ones that ended already
 * committed; later ones ask whether those have ended, then fetch. */
static void on_flip_look(void *arg, const struct db_writers *w, const char *error)
{
        struct relay *r = arg;
        struct relay_duties *d = r->duty;
        int first = d->flip_writers == NULL;

        d->flip_queued = 0;
        if (!d->flip_watch)
                return;
        if (error != NULL) {
                if (db_connected(r->db))
                        metrics_statement_error(r->metrics, METRICS_STMT_OTHER);
                log_limited(r->lg, LOG_LEVEL_WARN, "reading the outbox's writers failed", error,
                            NULL);
                d->flip_next_at = now_ms() + FLIP_LOOK_MS * 10;
                return;
        }
        if (first)
                d->fetch = 1;
        if (first ? strcmp(w->writers, "{}") == 0 : w->earlier_done) {
                d->fetch = 1;
                flip_watch(d, 0);
                return;
        }
        if (first && (d->flip_writers = strdup(w->writers)) == NULL) {
                flip_watch(d, 0); /* out of memory: --poll-interval-ms finds the rows */
                return;
        }
        d->flip_next_at = now_ms() + FLIP_LOOK_MS;
}

static void flip_look(struct relay *r, int64_t now)
{
        struct relay_duties *d = r->duty;

        if (!d->flip_watch || d->flip_queued || now < d->flip_next_at)
                return;
        if (d->busy || !d->leader || !db_connected(r->db)) {
                flip_watch(d, 0); /* polling, or a new session fetches anyway */
                return;
        }
        d->flip_queued = 1;
        db_writers(r->db, d->flip_writers != NULL ? d->flip_writers : "{}", on_flip_look, r);
}

int64_t relay_flip_next_at(const struct relay *r)
{
        return r->duty->flip_watch && !r->duty->flip_queued ? r->duty->flip_next_at : INT64_MAX;
}

/* The window over which rows are counted against --busy-poll-min-rate. */
#define RATE_WINDOW_MS 1000

/* Rows fetched since the window began; starts a new window when the last
 * one is over, returning what the finished one counted (-1: not over). */
static long rate_roll(struct relay_duties *d, int64_t now)
{
        long done = d->rate_rows;

        if (now < d->rate_at + RATE_WINDOW_MS)
                return -1;
        d->rate_at = now;
        d->rate_rows = 0;
        return done;
}

/* Rows keep coming: poll every --busy-poll-ms and let writers commit
 * without NOTIFY and its global commit lock. Not while they come sparsely:
 * most polls would find nothing (at 100 events/s, four in five), where a
 * notification brings one fetch per commit, and a notifying commit costs
 * the writers little while commits are far apart. */
void relay_go_busy(struct relay *r, int rows, int64_t now)
{
        struct relay_duties *d = r->duty;
        int min = r->cfg->busy_min_rate;

        d->last_rows_at = now;
        (void)rate_roll(d, now);
        d->rate_rows += rows;
        if (d->busy || r->cfg->idle_after_ms == 0 || (min > 0 && d->rate_rows < min))
                return;
        d->busy = 1;
        d->next_busy_poll_at = now + r->cfg->busy_poll_ms;
        db_set_waiting(r->db, 0, on_waiting_set, r);
}

void relay_go_waiting(struct relay *r)
{
        r->duty->busy = 0;
        db_set_waiting(r->db, 1, on_waiting_set, r);
}

void relay_maybe_go_waiting(struct relay *r, int64_t now)
{
        struct relay_duties *d = r->duty;
        long last;

        if (!d->busy || !d->leader)
                return;
        /* Half the rate that started polling: a rate near the threshold
         * does not flip the flag (an UPDATE each time) every second. */
        last = rate_roll(d, now);
        if (now >= d->last_rows_at + r->cfg->idle_after_ms ||
            (last >= 0 && (int64_t)last * 2 < r->cfg->busy_min_rate))
                relay_go_waiting(r);
}

/* ---- is any row failing? ---- */

struct failing_check {
        struct relay *relay;
        unsigned gen;
};

static void on_failing(void *arg, int failing, const char *error)
{
        struct failing_check *fc = arg;

        /* A failure recorded since the check was sent may be newer than
         * its snapshot: then keep holding keys back. */
        if (error == NULL && !failing && fc->gen == fc->relay->duty->failing_gen)
                fc->relay->duty->failing = 0;
        free(fc);
}

/* Asks whether the cheaper fetch, without holding keys back, is safe. */
void relay_check_failing(struct relay *r)
{
        struct failing_check *fc = malloc(sizeof(*fc));

        if (fc == NULL)
                return; /* stays holding keys back: slower, still correct */
        fc->relay = r;
        fc->gen = r->duty->failing_gen;
        db_any_failing(r->db, on_failing, fc);
}

/* ---- the floor's look at the writers ---- */

static void on_writers(void *arg, const struct db_writers *dw, const char *error)
{
        struct relay *r = arg;
        struct relay_floor_writers w;
        unsigned d;

        if (error != NULL) {
                relay_floor_look_failed(r->floor, db_connected(r->db), &r->duty->stmt_backoff,
                                        now_ms());
                if (db_connected(r->db))
                        metrics_statement_error(r->metrics, METRICS_STMT_OTHER);
                log_limited(r->lg, LOG_LEVEL_WARN, "reading the outbox's writers failed", error,
                            NULL);
                return;
        }
        w.last_id = dw->last_id;
        w.rewinds = dw->rewinds;
        w.id_cache = dw->id_cache;
        w.writers = dw->writers;
        w.earlier_done = dw->earlier_done;
        d = relay_floor_writers(r->floor, &w);
        if (d & RELAY_FLOOR_FETCH)
                r->duty->fetch = 1;
        if (d & RELAY_FLOOR_REWOUND) {
                /* A hand-made update may have left rows failing: hold keys
                 * back until a check says none is. */
                r->duty->failing = 1;
                r->duty->failing_gen++;
                relay_check_failing(r);
        }
}

void relay_look_writers(struct relay *r, int64_t now)
{
        const char *earlier;

        flip_look(r, now);
        if (!r->duty->leader || !db_connected(r->db) ||
            (earlier = relay_floor_look(r->floor, now)) == NULL)
                return;
        db_writers(r->db, earlier, on_writers, r);
}

/* ---- leadership ---- */
/* How often a session that is not a relay and holds the leader lock is
 * named again in the log. */
#define FOREIGN_LOG_MS 60000
/* While another relay leads, its lock is looked up this often rather than
 * at every try (the look-up reads pg_locks and pg_stat_activity). */
#define RELAY_HOLDER_LOOK_MS 10000

/* Copies a name the holder chose into the relay's text (the log escapes
 * it; /readyz's body does not): control characters become '?'. */
static void copy_name(char *dst, size_t size, const char *src)
{
        size_t i;

        for (i = 0; i + 1 < size && src[i] != '\0'; i++)
                dst[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? '?' : src[i];
        dst[i] = '\0';
}

static void foreign_clear(struct relay *r)
{
        r->duty->foreign_pid = 0;
        r->duty->holder_next_at = 0;
        metrics_set(r->metrics, METRICS_LEADER_LOCK_FOREIGN, 0);
}

/* A standby kept by a session of its own instance waits for ever: said
 * as an error, since only a change of configuration ends it. */
static void twin_holder(struct relay *r, const struct db_lock_holder *h, int64_t now)
{
        char own[300];

        snprintf(own, sizeof(own), "outbox-relay/%s", r->cfg->instance_id);
        if (strcmp(h->application_name, own) != 0 ||
            (r->duty->twin_logged_at != 0 && now - r->duty->twin_logged_at < FOREIGN_LOG_MS))
                return;
        r->duty->twin_logged_at = now;
        log_write(r->lg, LOG_LEVEL_ERROR,
                  "the leader lock is held by a session of this same instance: another outbox of "
                  "--outboxes-file serves this database and schema under a URL written otherwise, "
                  "or another relay has the same --instance-id; this one publishes nothing",
                  "{s:i,s:s,s:s}", "pid", h->pid, "application_name", h->application_name, "schema",
                  r->cfg->schema);
}

static void on_holder(void *arg, const struct db_lock_holder *h, const char *error)
{
        struct relay *r = arg;
        struct relay_duties *d = r->duty;
        int64_t now = now_ms();

        d->holder_queued = 0;
        if (error != NULL) {
                if (db_connected(r->db))
                        metrics_statement_error(r->metrics, METRICS_STMT_OTHER);
                log_limited(r->lg, LOG_LEVEL_WARN, "looking up the leader lock's holder failed",
                            error, NULL);
                return;
        }
        if (d->leader || !h->found || h->relay) {
                if (d->foreign_pid != 0)
                        log_info(r->lg, "the session that is not a relay let go of the leader lock",
                                 "{s:i}", "pid", d->foreign_pid);
                foreign_clear(r);
                if (h->found && h->relay)
                        d->holder_next_at = now + RELAY_HOLDER_LOOK_MS;
                if (h->found && h->relay && !d->leader)
                        twin_holder(r, h, now);
                return;
        }
        if (h->pid != d->foreign_pid) {
                d->foreign_pid = h->pid;
                d->foreign_since = now;
                d->foreign_logged_at = 0;
        }
        copy_name(d->foreign_role, sizeof(d->foreign_role), h->role);
        copy_name(d->foreign_app, sizeof(d->foreign_app), h->application_name);
        metrics_set(r->metrics, METRICS_LEADER_LOCK_FOREIGN, 1);
        if (d->foreign_logged_at != 0 && now - d->foreign_logged_at < FOREIGN_LOG_MS)
                return;
        d->foreign_logged_at = now;
        log_write(r->lg, LOG_LEVEL_ERROR,
                  "the leader lock is held by a session that is not a relay: nothing is published "
                  "until it lets go",
                  "{s:i,s:s,s:s,s:I}", "pid", h->pid, "role", h->role, "application_name",
                  h->application_name, "held_for_at_least_s",
                  (json_int_t)((now - d->foreign_since) / 1000));
}

/* Whether a session that is not a relay keeps every relay a standby. */
static int foreign_holder(const struct relay *r, char *why, size_t whysz)
{
        const struct relay_duties *d = r->duty;

        if (d->leader || d->foreign_pid == 0)
                return 0;
        snprintf(why, whysz,
                 "the leader lock is held by a session that is not a relay (pid %d, role \"%s\","
                 " application_name \"%s\", for at least %lld s): nothing is published",
                 d->foreign_pid, d->foreign_role, d->foreign_app,
                 (long long)((now_ms() - d->foreign_since) / 1000));
        return 1;
}

static void on_lock(void *arg, int locked, const char *error)
{
        struct relay *r = arg;

        r->duty->lock_queued = 0;
        if (error == NULL)
                r->duty->session_ok = 1;
        if (error != NULL) {
                /* Tried again after --leader-poll-ms anyway. */
                if (db_connected(r->db))
                        metrics_statement_error(r->metrics, METRICS_STMT_OTHER);
                log_limited(r->lg, LOG_LEVEL_WARN, "trying the leader lock failed", error, NULL);
        } else if (locked) {
                r->duty->leader = 1;
                r->duty->standby_logged = 0;
                foreign_clear(r);
                /* Rows may have been made pending meanwhile. */
                relay_floor_lower(r->floor);
                r->duty->fetch = 1;
                r->duty->failing = 1; /* until checked: a former leader may have left failures */
                relay_check_failing(r);
                /* A former leader may have left relay_state either way:
                 * wait for notifications unless polling starts at once. */
                r->duty->busy = 0;
                r->duty->rate_at = now_ms();
                r->duty->rate_rows = 0;
                if (r->cfg->idle_after_ms == 0 || r->cfg->busy_min_rate > 0)
                        relay_go_waiting(r);
                else
                        relay_go_busy(r, 0, now_ms());
                log_info(r->lg, "leader: publishing", "{s:s}", "instance", r->cfg->instance_id);
        } else if (!r->duty->standby_logged) {
                r->duty->standby_logged = 1;
                log_info(r->lg, "standby: another relay holds the leader lock", "{s:s,s:i}",
                         "instance", r->cfg->instance_id, "retry_ms", r->cfg->leader_poll_ms);
        }
        /* Who keeps it: another relay, or a session that should not. */
        if (error == NULL && !locked && !r->duty->holder_queued &&
            now_ms() >= r->duty->holder_next_at) {
                r->duty->holder_queued = 1;
                db_lock_holder(r->db, on_holder, r);
        }
        r->duty->next_lock_at = now_ms() + r->cfg->leader_poll_ms;
}

void relay_maybe_lock(struct relay *r, int64_t now)
{
        if (r->duty->leader || r->duty->lock_queued || r->stopping || !db_connected(r->db) ||
            now < r->duty->next_lock_at)
                return;
        r->duty->lock_queued = 1;
        db_try_leader_lock(r->db, on_lock, r);
}

/* What belongs to a session that ended: the leader lock, and what the
 * relay told the database (busy polling) or learnt from it. */
static void session_ended(struct relay *r)
{
        r->duty->leader = 0;
        r->duty->busy = 0;
        foreign_clear(r); /* looked up again by the next session */
        /* Another relay may lead meanwhile and fence this producer; the
         * next term starts with a new one (init, then recovery). */
        relay_txn_session_ended(r->tx);
}

/* The lock belonged to the session that just ended. */
void relay_lost_connection(struct relay *r, int64_t now)
{
        if (r->duty->leader)
                log_warn(r->lg, "leader lock lost with the database connection", NULL);
        session_ended(r);
        /* At once after a session that worked (a restart, a failover:
         * recovery is quick). A session lost before any statement succeeded
         * on it (cut as soon as it is made, a server that takes
         * connections and drops them) backs off like a failed connect, or
         * the relay would reconnect in a tight loop. */
        if (r->duty->session_ok) {
                r->duty->flap_attempt = 0;
                r->reconnect_at = now;
        } else {
                r->reconnect_at =
                    now + backoff_delay_ms(&r->reconnect_backoff, ++r->duty->flap_attempt);
        }
        r->duty->session_ok = 0;
}

void relay_session_started(struct relay *r, int64_t now)
{
        (void)now;
        /* However the old session ended (a failed statement may have
         * dropped it without relay_lost_connection). */
        session_ended(r);
        r->duty->session_ok = 0;
        /* The old server's writers, settled ids, rewind count and sequence
         * cache; its failed statements (their backoff starts again). The
         * rest is asked again: failing rows and the waiting flag when
         * leadership begins, statistics and plans by the next stats query,
         * the outbox identity by db_connect. Held keys stay: they keep the
         * order of batches still in memory, whatever the server. */
        relay_floor_forget(r->floor);
        for (int i = 0; i < RELAY_STMTS; i++) {
                r->duty->stmt[i].attempt = 0;
                r->duty->stmt[i].retry_at = 0;
                r->duty->stmt[i].error[0] = '\0';
        }
}

/* ---- statements that fail ---- */

static const struct {
        const char *name, *failed, *ready;
        enum metrics_statement metric;
} stmt_info[RELAY_STMTS] = {
    [RELAY_STMT_FETCH] = {"fetch", "fetching rows failed, will retry", "fetching rows fails",
                          METRICS_STMT_FETCH},
    [RELAY_STMT_MARK] = {"mark", "marking rows sent failed, will retry", "marking rows sent fails",
                         METRICS_STMT_MARK},
    [RELAY_STMT_RECORD] = {"record_failure", "recording a failed row failed, will retry",
                           "recording failed rows (record_failure) fails",
                           METRICS_STMT_RECORD_FAILURE},
};

int64_t relay_stmt_failed(struct relay *r, enum relay_stmt s, const char *error, int64_t now)
{
        struct relay_stmt_state *st = &r->duty->stmt[s];
        char *clean;
        int delay;

        if (!db_connected(r->db)) {
                /* Not the statement's fault: sent again once reconnected. */
                log_limited(r->lg, LOG_LEVEL_WARN, stmt_info[s].failed, error, NULL);
                return now;
        }
        /* The same failure again at once would fail the same way (a grant
         * taken away, a lock timeout, a trigger refusing): wait, longer
         * each time, up to a few seconds. */
        delay = backoff_delay_ms(&r->duty->stmt_backoff, ++st->attempt);
        st->retry_at = now + delay;
        metrics_statement_error(r->metrics, stmt_info[s].metric);
        log_limited(r->lg, LOG_LEVEL_WARN, stmt_info[s].failed, error, "{s:i,s:i}", "attempt",
                    st->attempt, "retry_in_ms", delay);
        /* For /readyz: the first line of the message, without PostgreSQL's
         * DETAIL (a failing row's values), in whole characters. */
        clean = log_clean_text(error, sizeof(st->error) - 1, 0);
        snprintf(st->error, sizeof(st->error), "%s", clean != NULL ? clean : "");
        free(clean);
        if (strstr(st->error, " DETAIL: ") != NULL)
                *strstr(st->error, " DETAIL: ") = '\0';
        return st->retry_at;
}

void relay_stmt_ok(struct relay *r, enum relay_stmt s)
{
        struct relay_stmt_state *st = &r->duty->stmt[s];

        r->duty->session_ok = 1;
        if (st->attempt > 0)
                log_info(r->lg, "statement works again", "{s:s,s:i}", "statement",
                         stmt_info[s].name, "failures", st->attempt);
        st->attempt = 0;
        st->retry_at = 0;
        st->error[0] = '\0';
}

/* ---- metrics and readiness ---- */

static void on_stats(void *arg, const struct db_stats *st, const char *error)
{
        struct relay *r = arg;

        r->duty->stats_queued = 0;
        if (error == NULL) {
                int stale = st->stale;

                metrics_set(r->metrics, METRICS_PENDING_ROWS, st->pending);
                metrics_set(r->metrics, METRICS_OLDEST_PENDING_AGE, st->oldest_age_s);
                metrics_set(r->metrics, METRICS_DEAD_LETTER_ROWS, st->dead_letters);
                if (db_plan_for_statistics(r->db, stale))
                        log_info(r->lg,
                                 stale ? "planning each mark until the outbox table is "
                                         "analyzed: its statistics describe under 1 MB or under "
                                         "a quarter of it (the fetch keeps its one plan)"
                                       : "reusing generic plans for the marks: the outbox "
                                         "table's statistics are current",
                                 NULL);
        }
}

void relay_maybe_stats(struct relay *r, int64_t now)
{
        metrics_set(r->metrics, METRICS_DB_CONNECTED, db_connected(r->db));
        metrics_set(r->metrics, METRICS_LEADER, r->duty->leader);
        metrics_set(r->metrics, METRICS_IN_FLIGHT, r->n_batches);
        if (r->duty->stats_queued || !db_connected(r->db) || now < r->duty->next_stats_at)
                return;
        r->duty->stats_queued = 1;
        r->duty->next_stats_at = now + STATS_INTERVAL_MS;
        db_pending_stats(r->db, on_stats, r);
}

static void on_retention(void *arg, long count, const char *error)
{
        struct relay *r = arg;
        long deleted = 0;

        r->duty->retention_queued = 0;
        if (error != NULL && db_connected(r->db))
                metrics_statement_error(r->metrics, METRICS_STMT_OTHER);
        if (error != NULL)
                log_limited(r->lg, LOG_LEVEL_WARN, "deleting old sent rows failed", error, NULL);
        else
                deleted = count;
        metrics_add(r->metrics, METRICS_RETENTION_DELETED, (uint64_t)deleted);
        /* A full batch: more are due, go on as soon as the relay is idle. */
        r->duty->next_retention_at =
            now_ms() + (deleted == RETENTION_BATCH ? 0 : RETENTION_INTERVAL_MS);
}

/* Retention runs on the leader only, and only while nothing else waits
 * for the database, so it never delays publishing. */
void relay_maybe_retention(struct relay *r, int64_t now)
{
        if (r->cfg->retention_s == 0 || !r->duty->leader || r->duty->retention_queued ||
            !db_connected(r->db) || !db_idle(r->db) || now < r->duty->next_retention_at)
                return;
        r->duty->retention_queued = 1;
        db_delete_sent(r->db, r->cfg->retention_s, RETENTION_BATCH, on_retention, r);
}

/* Ready: connected to the database with a usable producer; a connected
 * standby is ready too (it can take over at once). */
int relay_is_ready(void *arg, char *why, size_t whysz)
{
        struct relay *r = arg;
        char refused[512];

        if (!db_connected(r->db)) {
                const char *err = db_last_error(r->db);

                if (db_state(r->db) == DB_CONNECTING)
                        snprintf(why, whysz, "not connected to the database: connecting%s%s%s",
                                 *err ? " (the last attempt failed: " : "", err, *err ? ")" : "");
                else
                        snprintf(why, whysz, "not connected to the database%s%s", *err ? ": " : "",
                                 err);
                return 0;
        }
        if (producer_fatal(r->producer, NULL, 0)) {
                snprintf(why, whysz, "the Kafka producer is being rebuilt");
                return 0;
        }
        /* A credential or CA the brokers refuse: a rollout should stop here. */
        if (producer_refused(r->producer, refused, sizeof(refused))) {
                snprintf(why, whysz, "kafka refuses the connection: %s", refused);
                return 0;
        }
        /* A standby kept so by a session that is not a relay: no relay
         * publishes, so none is ready. */
        if (foreign_holder(r, why, whysz))
                return 0;
        /* A leader that cannot recover its transactional id publishes
         * nothing: a rollout should stop there, not replace the old pods. */
        if (r->duty->leader && relay_txn_not_ready(r->tx, why, whysz))
                return 0;
        /* Connected, but a statement the relay needs keeps failing (a
         * grant taken away, say): nothing moves until someone acts. */
        for (int i = 0; i < RELAY_STMTS; i++) {
                if (r->duty->stmt[i].attempt > 0) {
                        snprintf(why, whysz, "%s (%d times in a row, retrying): %s",
                                 stmt_info[i].ready, r->duty->stmt[i].attempt,
                                 r->duty->stmt[i].error);
                        return 0;
                }
        }
        return 1;
}
