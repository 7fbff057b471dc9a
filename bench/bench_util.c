/* outbox-bench helpers: clocks, readers of /proc (CPU time, RSS, process
 * start), percentiles, strict option parsing and two libpq shorthands. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

int64_t bench_now_ns(clockid_t clock)
{
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bench_sleep_until(int64_t t_ns)
{
        struct timespec ts = {.tv_sec = t_ns / 1000000000, .tv_nsec = t_ns % 1000000000};

        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                ;
}

/* Reads /proc/<pid>/stat (or a thread's) and returns the fields after the
 * command name, which may itself hold spaces and parentheses. */
static int read_stat_fields(pid_t pid, pid_t tid, char *buf, size_t bufsz, char **fields)
{
        char path[96];
        FILE *f;
        size_t n;
        char *p;

        if (tid > 0)
                snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
        else
                snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        f = fopen(path, "r");
        if (f == NULL)
                return -1;
        n = fread(buf, 1, bufsz - 1, f);
        fclose(f);
        buf[n] = '\0';
        p = strrchr(buf, ')');
        if (p == NULL || p[1] != ' ')
                return -1;
        *fields = p + 2; /* field 3 (state) onwards */
        return 0;
}

/* The n-th space-separated token of s (0-based) as unsigned long long. */
static int stat_field(const char *s, int n, unsigned long long *out)
{
        char *end;

        for (int i = 0; i < n; i++) {
                s = strchr(s, ' ');
                if (s == NULL)
                        return -1;
                s++;
        }
        errno = 0;
        *out = strtoull(s, &end, 10);
        return errno || end == s ? -1 : 0;
}

int bench_proc_cpu(pid_t pid, pid_t tid, int with_children, double *sec)
{
        char buf[1024], *fields;
        unsigned long long ut, st, cut = 0, cst = 0;
        long hz = sysconf(_SC_CLK_TCK);

        /* Fields 14-17 (utime stime cutime cstime) are tokens 11-14 here. */
        if (read_stat_fields(pid, tid, buf, sizeof(buf), &fields) != 0 ||
            stat_field(fields, 11, &ut) != 0 || stat_field(fields, 12, &st) != 0)
                return -1;
        if (with_children &&
            (stat_field(fields, 13, &cut) != 0 || stat_field(fields, 14, &cst) != 0))
                return -1;
        *sec = (double)(ut + st + cut + cst) / (double)hz;
        return 0;
}

int bench_proc_start_s(pid_t pid, double *sec)
{
        char buf[1024], *fields;
        unsigned long long start;

        /* Field 22, starttime, in clock ticks after boot. */
        if (read_stat_fields(pid, 0, buf, sizeof(buf), &fields) != 0 ||
            stat_field(fields, 19, &start) != 0)
                return -1;
        *sec = (double)start / (double)sysconf(_SC_CLK_TCK);
        return 0;
}

int bench_proc_status_kb(pid_t pid, const char *field, long *kb)
{
        char path[64], line[256];
        size_t flen = strlen(field);
        FILE *f;
        int rc = -1;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        f = fopen(path, "r");
        if (f == NULL)
                return -1;
        while (fgets(line, sizeof(line), f) != NULL) {
                if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
                        *kb = strtol(line + flen + 1, NULL, 10);
                        rc = 0;
                        break;
                }
        }
        fclose(f);
        return rc;
}

int bench_cpustat_read(struct bench_cpustat *s)
{
        unsigned long long v[10] = {0};
        char line[512];
        FILE *f = fopen("/proc/stat", "r");
        int n;

        if (f == NULL)
                return -1;
        if (fgets(line, sizeof(line), f) == NULL) {
                fclose(f);
                return -1;
        }
        fclose(f);
        /* cpu user nice system idle iowait irq softirq steal guest guest_nice;
         * guest time is already counted in user. */
        n = sscanf(line, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                   &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
        if (n < 8)
                return -1;
        s->total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
        s->iowait = v[4];
        s->softirq = v[6];
        s->busy = s->total - v[3] - v[4];
        return 0;
}

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

        return (x > y) - (x < y);
}

void bench_sort_ns(int64_t *v, size_t n)
{
        if (n > 1)
                qsort(v, n, sizeof(*v), cmp_i64);
}

double bench_quantile_ms(const int64_t *sorted, size_t n, double p)
{
        size_t rank;

        if (n == 0)
                return 0.0;
        rank = (size_t)ceil(p * (double)n);
        if (rank < 1)
                rank = 1;
        if (rank > n)
                rank = n;
        return (double)sorted[rank - 1] / 1e6;
}

int bench_parse_long(const char *s, long min, long max, long *out)
{
        char *end;
        long v;

        if (s == NULL || *s == '\0')
                return -1;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || *end || v < min || v > max)
                return -1;
        *out = v;
        return 0;
}

int bench_parse_double(const char *s, double min, double max, double *out)
{
        char *end;
        double v;

        if (s == NULL || *s == '\0')
                return -1;
        errno = 0;
        v = strtod(s, &end);
        if (errno || *end || !(v >= min && v <= max))
                return -1;
        *out = v;
        return 0;
}

int bench_pg_connect(const char *conninfo, PGconn **out, char *errbuf, size_t errsz)
{
        PGconn *conn = PQconnectdb(conninfo);

        if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
                /* libpq's message names host and port, never the password. */
                snprintf(errbuf, errsz, "cannot connect: %s",
                         conn ? PQerrorMessage(conn) : "out of memory");
                PQfinish(conn);
                return -1;
        }
        *out = conn;
        return 0;
}

int bench_pg_exec(PGconn *conn, const char *sql, char *errbuf, size_t errsz)
{
        PGresult *res = PQexec(conn, sql);
        ExecStatusType st = PQresultStatus(res);
        int rc = 0;

        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                snprintf(errbuf, errsz, "%.60s: %s", sql, PQresultErrorMessage(res));
                rc = -1;
        }
        PQclear(res);
        return rc;
}
