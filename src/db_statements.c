/* db_statements: the SQL of the relay's sessions, made once from the
 * schema's name: what each session runs at setup and the statements it
 * prepares. Only db.c knows the columns they return (it decodes them). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db_int.h"

/* Adds a statement for every session to prepare, its SQL made from fmt. */
static int prepare(struct db *db, char *errbuf, size_t errsz, const char *name, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

static int prepare(struct db *db, char *errbuf, size_t errsz, const char *name, const char *fmt,
                   ...)
{
        struct db_stmt *grown = realloc(db->stmts, (db->n_stmts + 1) * sizeof(*grown));
        va_list ap;
        int n;

        if (grown == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                return -1;
        }
        db->stmts = grown;
        snprintf(grown[db->n_stmts].name, sizeof(grown[db->n_stmts].name), "%s", name);
        va_start(ap, fmt);
        n = vasprintf(&grown[db->n_stmts].sql, fmt, ap);
        va_end(ap);
        if (n < 0) {
                snprintf(errbuf, errsz, "out of memory");
                return -1;
        }
        db->n_stmts++;
        return 0;
}

/* The two fetch statements, outbox_fetch_<held>: due pending rows above
 * the relay's floor ($4: below it every pending row is in the relay's
 * hands), leaving out the rows in flight ($1, a hashed NOT IN in any plan)
 * and the keys the relay holds back in memory ($3, usually empty). The
 * floor stays below every writer still in progress, so a row whose
 * transaction commits late with a lower id than rows already published is
 * found by the next fetch, before any later row of its key (whose writer
 * committed after it). A row that never failed is due whatever its
 * next_attempt_at says: one skipped for a clock step could fall below the
 * floor.
 * - held: leave out rows of a key whose earlier row failed and waits for its
 *   retry (the NOT EXISTS over the small index of failing rows), so retries
 *   never reorder a key; skipped while no row is failing.
 * Memory: the rows come in id order while the ones before a row come to
 * less than $5 bytes (so at least one), as the window's running sum of
 * each row's size says (the last column, db_rows_bytes): what arrives,
 * plus DB_ROW_OVERHEAD. The jsonb columns come as their text (what the
 * binary jsonb format sends anyway, less a version byte), made once and
 * measured as it is: a compressed payload's stored size can be a fiftieth
 * of it. Only the rows the LIMIT lets through are turned into text: the
 * OFFSET 0 keeps the planner from doing it below a sort of every pending
 * row (250 MB of text sorted on disk for 2,500 rows of 100 KB while the
 * statistics were stale), and its ORDER BY tells the window the rows come
 * sorted (else it sorts them again, on disk past work_mem). $2 bounds how
 * many rows the server reads. */
static int prepare_fetches(struct db *db, const char *s, char *errbuf, size_t errsz)
{
        char sql[2560], name[32];

        for (int held = 0; held <= 1; held++) {
                snprintf(sql, sizeof(sql),
                         "SELECT * FROM (SELECT t.*, sum(t.row_bytes)"
                         " OVER (ORDER BY t.id ROWS UNBOUNDED PRECEDING)::bigint AS upto"
                         " FROM (SELECT c.*, (%d + coalesce(octet_length(c.payload),"
                         " octet_length(c.payload_bytes), 0) + octet_length(c.headers)"
                         " + coalesce(octet_length(c.key), 0) + coalesce(octet_length(c.topic), 0)"
                         " + coalesce(octet_length(c.event_type), 0))::bigint AS row_bytes"
                         " FROM (SELECT r.id, r.event_id, r.topic, r.key, r.event_type,"
                         " r.payload::text AS payload, r.payload_bytes, r.headers::text AS headers,"
                         " r.created_at, r.attempts, r.replays, r.generation FROM ("
                         "SELECT e.id, e.event_id::text AS event_id, e.topic, e.key, e.event_type,"
                         " e.payload, e.payload_bytes, coalesce(e.headers, '{}') AS headers,"
                         " coalesce(e.created_at, now()) AS created_at,"
                         " coalesce(e.attempts, 0) AS attempts, coalesce(e.replays, 0) AS replays,"
                         " coalesce(e.generation, 0) AS generation"
                         " FROM %s.events e"
                         " WHERE e.status = 'pending' AND e.id > $4::bigint"
                         " AND (e.attempts = 0 OR e.next_attempt_at <= now())"
                         " AND e.id NOT IN (SELECT unnest($1::bigint[]))"
                         " AND (e.key IS NULL OR e.key NOT IN (SELECT unnest($3::text[]))) %s%s%s"
                         " ORDER BY e.id LIMIT $2) r ORDER BY r.id OFFSET 0) c) t) w"
                         " WHERE w.upto - w.row_bytes < $5::bigint ORDER BY w.id",
                         DB_ROW_OVERHEAD, s,
                         held ? "AND (e.key IS NULL OR NOT EXISTS (SELECT 1 FROM " : "",
                         held ? s : "",
                         held ? ".events b WHERE b.status = 'pending'"
                                " AND b.attempts > 0 AND b.key = e.key AND b.id < e.id))"
                              : "");
                snprintf(name, sizeof(name), "outbox_fetch_%d", held);
                if (prepare(db, errbuf, errsz, name, "%s", sql) != 0)
                        return -1;
        }
        return 0;
}

/* What the relay writes back: a published row sent (the mark), a failed
 * one retried or dead-lettered (record_failure). A mark, and a failure,
 * apply only to
 * the copy that was published: the same event (a restore or a failover
 * that lost the sequence's tail hands published ids to new rows) in the
 * same generation (a row made pending again since is published again,
 * whatever an old leader that reconnects still has to mark). The relay's
 * own marks and --exactly-once's recovery share it: a row of a version 2
 * progress record (written before migration 005) is named by id and
 * replays only (ev NULL), and is marked only if no return to pending has
 * happened since the migration (generation 0) and replay() has not counted
 * one since the record; its partition and offset may not be known (-1). */
static int prepare_outcomes(struct db *db, const char *s, char *errbuf, size_t errsz)
{
        return prepare(db, errbuf, errsz, "outbox_mark",
                       "UPDATE %s.events AS e SET status = 'sent', sent_at = now(),"
                       " kafka_partition = nullif(u.p, -1), kafka_offset = nullif(u.o, -1)"
                       " FROM unnest($1::bigint[], $2::uuid[], $3::bigint[], $4::integer[],"
                       " $5::integer[], $6::bigint[]) AS u(id, ev, g, r, p, o)"
                       " WHERE e.id = u.id AND coalesce(e.generation, 0) = u.g"
                       " AND e.status = 'pending'"
                       " AND (e.event_id = u.ev OR (u.ev IS NULL AND e.replays = u.r))",
                       s) ||
                       prepare(db, errbuf, errsz, "outbox_fail",
                               "SELECT %s.record_failure($1::bigint, $2::integer, $3::text, "
                               "$4::integer,"
                               " $5::integer, $6::text, $7::bigint)",
                               s)
                   ? -1
                   : 0;
}

/* The relay's other statements. The third column of outbox_stats: whether
 * the table's statistics are stale for planning (db_plan_for_statistics):
 * they describe under 1 MB (an empty or new table), or the table has grown
 * to more than 4 times what they describe. The leader lock of this outbox
 * (outbox_lock): one key per schema, held by the session, so it goes away
 * with the connection or the process. */
static int prepare_all(struct db *db, const char *s, char *errbuf, size_t errsz)
{
        if (prepare_fetches(db, s, errbuf, errsz) != 0 ||
            prepare_outcomes(db, s, errbuf, errsz) != 0)
                return -1;
        return prepare(db, errbuf, errsz, "outbox_failing",
                       "SELECT EXISTS (SELECT 1 FROM %s.events"
                       " WHERE status = 'pending' AND attempts > 0)",
                       s) ||
                       prepare(db, errbuf, errsz, "outbox_writers",
                               "SELECT last_id, rewind_count, id_cache, writers, earlier_done"
                               " FROM %s.writers($1::text[])",
                               s) ||
                       prepare(db, errbuf, errsz, "outbox_stats",
                               "SELECT count(*), coalesce(extract(epoch FROM now() - "
                               "min(created_at)), 0),"
                               " (SELECT c.relpages < 128 OR pg_relation_size(c.oid)"
                               "  > 4 * c.relpages::bigint * current_setting('block_size')::bigint"
                               "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                               "  WHERE n.nspname = $1 AND c.relname = 'events'),"
                               " (SELECT count(*) FROM %s.dead_letters)"
                               " FROM %s.events WHERE status = 'pending'",
                               s, s) ||
                       prepare(db, errbuf, errsz, "outbox_plans",
                               "SELECT set_config('plan_cache_mode', $1, false)") ||
                       prepare(
                           db, errbuf, errsz, "outbox_retention",
                           "DELETE FROM %s.events WHERE id IN (SELECT id FROM %s.events"
                           " WHERE status = 'sent' AND sent_at < now() - $1 * interval '1 second'"
                           " LIMIT $2) AND status = 'sent'"
                           " AND sent_at < now() - $1 * interval '1 second'",
                           s, s) ||
                       prepare(db, errbuf, errsz, "outbox_waiting",
                               "UPDATE %s.relay_state SET waiting = $1::boolean", s) ||
                       prepare(db, errbuf, errsz, "outbox_lock",
                               "SELECT pg_try_advisory_lock(%d, hashtext($1::text))",
                               DB_LEADER_LOCK_CLASS) ||
                       /* A shared holder blocks the lock too: a session
                        * that is not a relay comes first. */
                       prepare(db, errbuf, errsz, "outbox_lock_holder",
                               "SELECT l.pid, coalesce(a.usename, ''), "
                               "coalesce(a.application_name, ''),"
                               " coalesce(a.application_name LIKE 'outbox-relay/%%' OR a.usename = "
                               "current_user, false)"
                               " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
                               " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
                               " AND l.classid = %d::bigint::oid"
                               " AND l.objid = (hashtext($1::text)::bigint & 4294967295)::oid"
                               " AND l.database = (SELECT oid FROM pg_database"
                               "  WHERE datname = current_database())"
                               " ORDER BY 4, 1 LIMIT 1",
                               DB_LEADER_LOCK_CLASS)
                   ? -1
                   : 0;
}

/* The session's settings, run first: the timeouts (so that no statement
 * of the relay, setup included, waits for a lock or runs without bound),
 * the role that keeps the relay's own updates from notifying it, and for
 * the writer sessions plans made per execution until the first look at
 * the statistics (see db_plan_for_statistics).
 * The reader (the fetch, writers(), the leader lock) plans each statement
 * once, a generic plan kept until the statistics change: planning the
 * fetch took ~0.2 ms, more than running it, at one fetch an event at low
 * rates. A generic plan is made from the statistics of the moment: from an
 * empty table's, a scan of the whole table sorted by id, kept while the
 * table grows (90 ms for 500 of 200,000 pending rows). With sequential
 * and bitmap scans forbidden the fetch can only walk events_pending_idx
 * from the floor in id order and stop at its limit, the plan right at any
 * size and any statistics (as the failing-keys index is for its NOT
 * EXISTS and outbox_failing). The rest of the reader's statements read
 * catalogs and sequences, by their only path; no JIT, which that path's
 * penalty cost would cross (writers() compiled at each call: 8 ms for
 * 0.3). The writers keep the planner's freedom: a mark's generic plan
 * from an empty table's statistics, held to index scans and nested loops,
 * joined its batch with the whole pending index (reverted 52cb49b). */
static char *session_sql(const struct config *cfg, int reader)
{
        char *sql;

        if (asprintf(&sql,
                     "SET statement_timeout = %d; SET lock_timeout = %d;"
                     " SET outbox_relay.role = 'relay'; %s",
                     cfg->statement_timeout_ms, cfg->lock_timeout_ms,
                     reader
                         ? "SET plan_cache_mode = force_generic_plan;"
                           " SET enable_seqscan = off; SET enable_bitmapscan = off; SET jit = off"
                         : "SET plan_cache_mode = force_custom_plan") < 0)
                return NULL;
        return sql;
}

int db_build_statements(struct db *db, char *errbuf, size_t errsz)
{
        /* The schema is a lowercase identifier (config_validate), so
         * quoting it needs no escaping. */
        const char *sch = db->cfg->schema;
        char s[64];

        snprintf(s, sizeof(s), "\"%s\"", sch);
        db->session_sql = session_sql(db->cfg, 0);
        db->reader_session_sql = session_sql(db->cfg, 1);
        if (db->session_sql == NULL || db->reader_session_sql == NULL ||
            asprintf(&db->version_sql, "SELECT coalesce(max(version), 0) FROM %s.schema_migrations",
                     s) < 0 ||
            asprintf(&db->listen_sql, "LISTEN \"%s.events\"", sch) < 0 ||
            asprintf(&db->outbox_id_sql, "SELECT outbox_id::text FROM %s.relay_state", s) < 0) {
                snprintf(errbuf, errsz, "out of memory");
                return -1;
        }
        return prepare_all(db, s, errbuf, errsz);
}

void db_free_statements(struct db *db)
{
        for (size_t i = 0; i < db->n_stmts; i++)
                free(db->stmts[i].sql);
        free(db->stmts);
        db->stmts = NULL;
        db->n_stmts = 0;
        free(db->session_sql);
        free(db->reader_session_sql);
        free(db->version_sql);
        free(db->listen_sql);
        free(db->outbox_id_sql);
}
