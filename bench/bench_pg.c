/* outbox-bench pg-ceiling: the bare PostgreSQL ceiling of a drain. One
 * connection claims a batch of pending rows (SELECT ... ORDER BY id LIMIT n
 * FOR UPDATE SKIP LOCKED, the columns the relay reads, binary results) and
 * marks them (UPDATE ... WHERE id = ANY(...)) in one transaction, until none is left.
 * With --copy-from it first copies another schema's rows into its own: the
 * reference (bench/sql/reference_schema.sql) drains the same rows as the relay. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench.h"

struct ceiling {
        PGconn *conn;
        char *ids; /* "{1,2,...}": the claimed ids as an array literal */
        size_t ids_cap;
        long rows, batches;
};

static int prepare(PGconn *conn, const char *name, const char *sql, char *errbuf, size_t errsz)
{
        PGresult *res = PQprepare(conn, name, sql, 0, NULL);
        int rc = 0;

        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                snprintf(errbuf, errsz, "preparing %s: %s", name, PQresultErrorMessage(res));
                rc = -1;
        }
        PQclear(res);
        return rc;
}

/* Big-endian int8 of a binary result field. */
static long long be64(const char *p)
{
        unsigned long long v = 0;

        for (int i = 0; i < 8; i++)
                v = v << 8 | (unsigned char)p[i];
        return (long long)v;
}

/* One claim-and-mark transaction; *claimed is 0 once nothing is pending. */
static int one_batch(struct ceiling *c, const char *limit, int *claimed, char *errbuf, size_t errsz)
{
        const char *params[1] = {limit};
        PGresult *res = NULL;
        size_t len = 0;
        int n, rc = -1;

        if (bench_pg_exec(c->conn, "BEGIN", errbuf, errsz) != 0)
                return -1;
        res = PQexecPrepared(c->conn, "claim", 1, params, NULL, NULL, 1);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                snprintf(errbuf, errsz, "claim: %s", PQresultErrorMessage(res));
                goto out;
        }
        n = PQntuples(res);
        if (c->ids_cap < (size_t)n * 21 + 3) {
                char *p = realloc(c->ids, (size_t)n * 21 + 3);

                if (p == NULL) {
                        snprintf(errbuf, errsz, "out of memory");
                        goto out;
                }
                c->ids = p;
                c->ids_cap = (size_t)n * 21 + 3;
        }
        c->ids[len++] = '{';
        for (int i = 0; i < n; i++)
                len += (size_t)snprintf(c->ids + len, c->ids_cap - len, "%s%lld", i ? "," : "",
                                        be64(PQgetvalue(res, i, 0)));
        c->ids[len++] = '}';
        c->ids[len] = '\0';
        PQclear(res);
        res = NULL;
        if (n > 0) {
                params[0] = c->ids;
                res = PQexecPrepared(c->conn, "mark", 1, params, NULL, NULL, 0);
                if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                        snprintf(errbuf, errsz, "mark: %s", PQresultErrorMessage(res));
                        goto out;
                }
                c->batches++;
                c->rows += n;
        }
        if (bench_pg_exec(c->conn, "COMMIT", errbuf, errsz) != 0)
                goto out;
        *claimed = n;
        rc = 0;
out:
        PQclear(res);
        return rc;
}

/* Replaces schema's rows by from's (ids, status and all), then vacuums,
 * analyzes and checkpoints, as bench/run.sh's load_rows does. */
static int copy_rows(PGconn *conn, const char *schema, const char *from, char *errbuf, size_t errsz)
{
        static const char cols[] = "id, event_id, topic, key, event_type, payload, payload_bytes,"
                                   " headers, created_at, status, attempts, replays,"
                                   " next_attempt_at, first_attempt_at, last_attempt_at,"
                                   " last_error, sent_at, kafka_partition, kafka_offset";
        char sql[1024];

        snprintf(sql, sizeof(sql),
                 "BEGIN; TRUNCATE %s.events; INSERT INTO %s.events (%s) OVERRIDING SYSTEM VALUE"
                 " SELECT %s FROM %s.events; COMMIT",
                 schema, schema, cols, cols, from);
        if (bench_pg_exec(conn, sql, errbuf, errsz) != 0)
                return -1;
        snprintf(sql, sizeof(sql), "VACUUM (ANALYZE) %s.events", schema);
        return bench_pg_exec(conn, sql, errbuf, errsz) != 0 ||
                       bench_pg_exec(conn, "CHECKPOINT", errbuf, errsz) != 0
                   ? -1
                   : 0;
}

int bench_cmd_pg_ceiling(int argc, char **argv)
{
        static const struct option opts[] = {{"conninfo", required_argument, NULL, 'c'},
                                             {"schema", required_argument, NULL, 's'},
                                             {"batch-size", required_argument, NULL, 'b'},
                                             {"copy-from", required_argument, NULL, 'f'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
        const char *conninfo = getenv("OUTBOX_DATABASE_URL"), *schema = "outbox", *from = NULL;
        struct ceiling c = {0};
        char errbuf[1024], sql[1024], limit[24];
        long batch = 1000;
        struct rusage ru;
        double backend_cpu = 0, cpu0 = 0, cpu1 = 0;
        int64_t t0, t1;
        int opt, claimed, rc = 1;

        while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (opt) {
                case 'c':
                        conninfo = optarg;
                        break;
                case 's':
                        schema = optarg;
                        break;
                case 'f':
                        from = optarg;
                        break;
                case 'b':
                        if (bench_parse_long(optarg, 1, 100000, &batch) != 0) {
                                fprintf(stderr, "pg-ceiling: bad --batch-size\n");
                                return 2;
                        }
                        break;
                case 'h':
                        printf("usage: outbox-bench pg-ceiling [--conninfo C] [--schema S] "
                               "[--batch-size N] [--copy-from SCHEMA]\nClaims and marks every "
                               "pending row, N per transaction, and reports the rate.\n"
                               "--copy-from first replaces S's rows by SCHEMA's (e.g. --schema ref "
                               "--copy-from outbox:\nthe reference loop on the relay's rows).\n");
                        return 0;
                default:
                        return 2;
                }
        }
        if (conninfo == NULL) {
                fprintf(stderr, "pg-ceiling: --conninfo or OUTBOX_DATABASE_URL is required\n");
                return 2;
        }
        if (bench_pg_connect(conninfo, &c.conn, errbuf, sizeof(errbuf)) != 0)
                goto out;
        if (from != NULL && copy_rows(c.conn, schema, from, errbuf, sizeof(errbuf)) != 0)
                goto out;
        /* Like the relay's session: its marks must not NOTIFY. */
        if (bench_pg_exec(c.conn, "SET outbox_relay.role = 'relay'", errbuf, sizeof(errbuf)) != 0)
                goto out;
        snprintf(sql, sizeof(sql),
                 "SELECT id, event_id::text, topic, key, event_type, payload, payload_bytes,"
                 " headers, created_at, attempts FROM %s.events WHERE status = 'pending'"
                 " ORDER BY id LIMIT $1::int FOR UPDATE SKIP LOCKED",
                 schema);
        if (prepare(c.conn, "claim", sql, errbuf, sizeof(errbuf)) != 0)
                goto out;
        /* The columns the relay sets when it marks (constants here). */
        snprintf(sql, sizeof(sql),
                 "UPDATE %s.events SET status = 'sent', sent_at = now(), kafka_partition = 0,"
                 " kafka_offset = 0 WHERE id = ANY($1::bigint[])",
                 schema);
        if (prepare(c.conn, "mark", sql, errbuf, sizeof(errbuf)) != 0)
                goto out;
        snprintf(limit, sizeof(limit), "%ld", batch);
        bench_proc_cpu(PQbackendPID(c.conn), 0, 0, &cpu0);
        t0 = bench_now_ns(CLOCK_MONOTONIC);
        do {
                if (one_batch(&c, limit, &claimed, errbuf, sizeof(errbuf)) != 0)
                        goto out;
        } while (claimed > 0);
        t1 = bench_now_ns(CLOCK_MONOTONIC);
        if (bench_proc_cpu(PQbackendPID(c.conn), 0, 0, &cpu1) == 0)
                backend_cpu = cpu1 - cpu0;
        getrusage(RUSAGE_SELF, &ru);
        printf("pgceil.rows %ld\npgceil.batches %ld\npgceil.seconds %.3f\n"
               "pgceil.events_per_s %.0f\npgceil.client_cpu_s %.2f\npgceil.backend_cpu_s %.2f\n",
               c.rows, c.batches, (double)(t1 - t0) / 1e9,
               (double)c.rows / ((double)(t1 - t0) / 1e9),
               (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                   (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6,
               backend_cpu);
        rc = 0;
out:
        if (rc != 0)
                fprintf(stderr, "pg-ceiling: %s\n", errbuf);
        PQfinish(c.conn);
        free(c.ids);
        return rc;
}
