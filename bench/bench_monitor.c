/* outbox-bench monitor and waits. monitor watches a running relay: until
 * no row is pending (--drain) or for --seconds, it samples the relay's RSS
 * and at the end reports the CPU used by the relay, its PostgreSQL backend,
 * all of PostgreSQL, the dev Kafka and the whole machine. waits samples what
 * PostgreSQL's active client backends wait on (to show the NOTIFY lock). */
#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define MON_MAX_SERIES   100000
#define MON_SERIES_OUT   12
#define WAITS_MAX        64
#define MON_MAX_BACKENDS 64

struct mon_cfg {
        const char *conninfo;
        long relay_pid, kafka_pid, pg_pid, interval_ms;
        double seconds, timeout_s;
        int drain;
};

/* CPU seconds of the postmaster, everything it reaped, and its live
 * children: the difference of two readings is PostgreSQL's CPU between them. */
static double pg_cpu(pid_t postmaster)
{
        double total = 0, s;
        struct dirent *de;
        DIR *d;

        if (postmaster <= 0 || bench_proc_cpu(postmaster, 0, 1, &total) != 0)
                return 0;
        d = opendir("/proc");
        if (d == NULL)
                return total;
        while ((de = readdir(d)) != NULL) {
                char path[300], buf[512], *p;
                long pid = strtol(de->d_name, &p, 10), ppid;
                FILE *f;
                size_t n;

                if (*p != '\0' || pid <= 0)
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
                f = fopen(path, "r");
                if (f == NULL)
                        continue;
                n = fread(buf, 1, sizeof(buf) - 1, f);
                fclose(f);
                buf[n] = '\0';
                p = strrchr(buf, ')');
                /* ") S PPID ..." */
                if (p == NULL || sscanf(p + 1, " %*c %ld", &ppid) != 1 || ppid != postmaster)
                        continue;
                if (bench_proc_cpu((pid_t)pid, 0, 1, &s) == 0)
                        total += s;
        }
        closedir(d);
        return total;
}

/* One process in a snapshot of /proc: its own CPU seconds (utime+stime). */
struct proc_cpu {
        long pid, ppid;
        char comm[32];
        double cpu;
};

/* Every process on the machine, to name the CPU users that are not ours. */
static int procs_take(struct proc_cpu **out, size_t *n)
{
        struct proc_cpu *v = NULL;
        size_t cap = 0;
        struct dirent *de;
        DIR *d = opendir("/proc");

        *n = 0;
        if (d == NULL)
                return -1;
        while ((de = readdir(d)) != NULL) {
                char path[300], buf[512], *open_p, *close_p;
                unsigned long long ut, st;
                long pid = strtol(de->d_name, &close_p, 10), ppid;
                FILE *f;
                size_t len;

                if (*close_p != '\0' || pid <= 0)
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
                f = fopen(path, "r");
                if (f == NULL)
                        continue;
                len = fread(buf, 1, sizeof(buf) - 1, f);
                fclose(f);
                buf[len] = '\0';
                open_p = strchr(buf, '(');
                close_p = strrchr(buf, ')');
                /* ") S PPID PGRP SESSION TTY TPGID FLAGS MINFLT CMINFLT MAJFLT CMAJFLT UTIME STIME"
                 */
                if (open_p == NULL || close_p == NULL || close_p < open_p ||
                    sscanf(close_p + 1, " %*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                           &ppid, &ut, &st) != 3)
                        continue;
                if (*n == cap) {
                        struct proc_cpu *nv = realloc(v, (cap ? cap * 2 : 256) * sizeof(*v));

                        if (nv == NULL)
                                break;
                        v = nv;
                        cap = cap ? cap * 2 : 256;
                }
                v[*n].pid = pid;
                v[*n].ppid = ppid;
                len = (size_t)(close_p - open_p - 1);
                if (len >= sizeof(v[*n].comm))
                        len = sizeof(v[*n].comm) - 1;
                memcpy(v[*n].comm, open_p + 1, len);
                v[*n].comm[len] = '\0';
                v[*n].cpu = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
                (*n)++;
        }
        closedir(d);
        *out = v;
        return 0;
}

/* Prints the three biggest CPU users between two snapshots, by command
 * name, leaving out the relay, PostgreSQL, the dev Kafka and outbox-bench. */
static void print_others(const struct proc_cpu *a, size_t na, const struct proc_cpu *b, size_t nb,
                         const struct mon_cfg *cfg)
{
        struct proc_cpu top[3] = {{0}};

        for (size_t i = 0; i < nb; i++) {
                double d = b[i].cpu;

                if (b[i].pid == cfg->relay_pid || b[i].pid == cfg->kafka_pid ||
                    b[i].pid == cfg->pg_pid || b[i].ppid == cfg->pg_pid ||
                    strcmp(b[i].comm, "outbox-bench") == 0)
                        continue;
                for (size_t j = 0; j < na; j++) {
                        if (a[j].pid == b[i].pid) {
                                d -= a[j].cpu;
                                break;
                        }
                }
                for (int k = 0; k < 3; k++) {
                        if (d > top[k].cpu) {
                                memmove(&top[k + 1], &top[k], (size_t)(2 - k) * sizeof(top[0]));
                                top[k] = b[i];
                                top[k].cpu = d;
                                break;
                        }
                }
        }
        printf("mon.other_top ");
        for (int k = 0; k < 3 && top[k].cpu >= 0.05; k++)
                printf("%s%s:%.1f", k ? "," : "", top[k].comm, top[k].cpu);
        printf("\n");
}

/* The relay's PostgreSQL backends (application_name outbox-relay...) seen
 * during a step, by pid: a backend that connects during the step counts from
 * 0, one that leaves keeps its last reading, so reconnections are counted. */
struct backends {
        struct {
                long pid;
                double first, last;
        } b[MON_MAX_BACKENDS];
        size_t n;
};

/* Reads every live relay backend's CPU; born_now: a pid not seen before
 * started during the step (its CPU so far counts). */
static void backends_update(PGconn *conn, struct backends *bs, int born_now)
{
        PGresult *res;
        double s;

        if (conn == NULL)
                return;
        res = PQexec(conn, "SELECT pid FROM pg_stat_activity WHERE application_name LIKE "
                           "'outbox-relay%'");
        for (int i = 0; PQresultStatus(res) == PGRES_TUPLES_OK && i < PQntuples(res); i++) {
                long pid = atol(PQgetvalue(res, i, 0));
                size_t k;

                if (bench_proc_cpu((pid_t)pid, 0, 0, &s) != 0)
                        continue;
                for (k = 0; k < bs->n && bs->b[k].pid != pid; k++)
                        ;
                if (k == bs->n) {
                        if (bs->n == MON_MAX_BACKENDS)
                                continue;
                        bs->n++;
                        bs->b[k].pid = pid;
                        bs->b[k].first = born_now ? 0 : s;
                }
                bs->b[k].last = s;
        }
        PQclear(res);
}

static double backends_cpu(const struct backends *bs)
{
        double total = 0;

        for (size_t k = 0; k < bs->n; k++)
                total += bs->b[k].last - bs->b[k].first;
        return total;
}

/* 1 once nothing is pending. The cheap probe of the last pending row comes
 * first; only after it is sent does the full check run (under a long
 * transaction it walks every dead index entry). */
static int drained(PGconn *conn, const char *last_id, int *stage, char *errbuf, size_t errsz)
{
        const char *params[1] = {last_id};
        PGresult *res;
        int done = 0;

        if (*stage == 0) {
                res = PQexecParams(conn, "SELECT status FROM outbox.events WHERE id = $1::bigint",
                                   1, NULL, params, NULL, NULL, 0);
                if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                        snprintf(errbuf, errsz, "probe: %s", PQresultErrorMessage(res));
                        PQclear(res);
                        return -1;
                }
                if (PQntuples(res) == 0 || strcmp(PQgetvalue(res, 0, 0), "pending") != 0)
                        *stage = 1;
                PQclear(res);
        }
        if (*stage == 1) {
                res = PQexec(conn, "SELECT EXISTS (SELECT 1 FROM outbox.events"
                                   " WHERE status = 'pending')");
                if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                        snprintf(errbuf, errsz, "check: %s", PQresultErrorMessage(res));
                        PQclear(res);
                        return -1;
                }
                done = strcmp(PQgetvalue(res, 0, 0), "f") == 0;
                PQclear(res);
        }
        return done;
}

static void print_series(const long *s, size_t n)
{
        printf("mon.rss_series_kb ");
        for (size_t i = 0; i < MON_SERIES_OUT && n > 0; i++) {
                size_t k = n == 1 ? 0 : i * (n - 1) / (MON_SERIES_OUT - 1);

                printf("%s%ld", i ? "," : "", s[k]);
                if (n < MON_SERIES_OUT && k == n - 1)
                        break;
        }
        printf("\n");
}

static int parse_monitor(int argc, char **argv, struct mon_cfg *cfg)
{
        static const struct option opts[] = {{"relay-pid", required_argument, NULL, 'r'},
                                             {"kafka-pid", required_argument, NULL, 'k'},
                                             {"pg-pid", required_argument, NULL, 'p'},
                                             {"conninfo", required_argument, NULL, 'c'},
                                             {"drain", no_argument, NULL, 'd'},
                                             {"seconds", required_argument, NULL, 's'},
                                             {"interval-ms", required_argument, NULL, 'i'},
                                             {"timeout", required_argument, NULL, 't'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
        int opt, bad = 0;

        while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (opt) {
                case 'r':
                        bad |= bench_parse_long(optarg, 1, 1L << 30, &cfg->relay_pid);
                        break;
                case 'k':
                        bad |= bench_parse_long(optarg, 1, 1L << 30, &cfg->kafka_pid);
                        break;
                case 'p':
                        bad |= bench_parse_long(optarg, 1, 1L << 30, &cfg->pg_pid);
                        break;
                case 'c':
                        cfg->conninfo = optarg;
                        break;
                case 'd':
                        cfg->drain = 1;
                        break;
                case 's':
                        bad |= bench_parse_double(optarg, 0.1, 86400, &cfg->seconds);
                        break;
                case 'i':
                        bad |= bench_parse_long(optarg, 1, 60000, &cfg->interval_ms);
                        break;
                case 't':
                        bad |= bench_parse_double(optarg, 1, 86400, &cfg->timeout_s);
                        break;
                case 'h':
                        printf("usage: outbox-bench monitor --relay-pid P (--drain --conninfo C"
                               " | --seconds S)\n  [--pg-pid POSTMASTER] [--kafka-pid P]"
                               " [--interval-ms MS] [--timeout S]\n");
                        return 1;
                default:
                        return -1;
                }
        }
        if (bad || cfg->relay_pid == 0 || cfg->drain == (cfg->seconds > 0) ||
            (cfg->drain && cfg->conninfo == NULL)) {
                fprintf(stderr, "monitor: needs --relay-pid and either --drain with --conninfo "
                                "or --seconds\n");
                return -1;
        }
        return 0;
}

int bench_cmd_monitor(int argc, char **argv)
{
        struct mon_cfg cfg = {
            .conninfo = getenv("OUTBOX_DATABASE_URL"), .interval_ms = 20, .timeout_s = 3600};
        struct bench_cpustat cs0, cs1;
        double relay0 = 0, main0 = 0, kafka0 = 0, pg0, relay1 = 0, main1 = 0, kafka1 = 0,
               start_s = 0, t_s, now_boot_s;
        long *series = NULL, rss, rss_max = 0, hwm = 0, last_rss = 0;
        struct proc_cpu *procs0 = NULL, *procs1 = NULL;
        size_t nprocs0 = 0, nprocs1 = 0;
        size_t nseries = 0;
        int64_t t0, next_series, next_backends, deadline;
        struct backends bs = {.n = 0};
        char errbuf[512] = "", last_id[24] = "0";
        PGconn *conn = NULL;
        PGresult *res;
        int rc, stage = 0;

        rc = parse_monitor(argc, argv, &cfg);
        if (rc != 0)
                return rc > 0 ? 0 : 2;
        rc = 1;
        series = malloc(MON_MAX_SERIES * sizeof(*series));
        if (series == NULL)
                return 1;
        if (cfg.conninfo != NULL &&
            bench_pg_connect(cfg.conninfo, &conn, errbuf, sizeof(errbuf)) != 0)
                goto out;
        if (cfg.drain) {
                res = PQexec(conn, "SELECT coalesce(max(id), 0) FROM outbox.events"
                                   " WHERE status = 'pending'");
                if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                        snprintf(errbuf, sizeof(errbuf), "%s", PQresultErrorMessage(res));
                        PQclear(res);
                        goto out;
                }
                snprintf(last_id, sizeof(last_id), "%s", PQgetvalue(res, 0, 0));
                PQclear(res);
                /* A drain is timed from the relay's start (clock ticks). */
                if (bench_proc_start_s((pid_t)cfg.relay_pid, &start_s) != 0) {
                        snprintf(errbuf, sizeof(errbuf), "relay pid %ld is gone", cfg.relay_pid);
                        goto out;
                }
        } else {
                bench_proc_cpu((pid_t)cfg.relay_pid, 0, 0, &relay0);
                bench_proc_cpu((pid_t)cfg.relay_pid, (pid_t)cfg.relay_pid, 0, &main0);
        }
        if (cfg.kafka_pid)
                bench_proc_cpu((pid_t)cfg.kafka_pid, 0, 0, &kafka0);
        pg0 = pg_cpu((pid_t)cfg.pg_pid);
        /* A drain's relay started with the step: all its backends' CPU counts. */
        backends_update(conn, &bs, cfg.drain);
        bench_cpustat_read(&cs0);
        procs_take(&procs0, &nprocs0);
        t0 = bench_now_ns(CLOCK_MONOTONIC);
        next_series = t0;
        next_backends = t0 + 1000000000;
        deadline = t0 + (int64_t)((cfg.drain ? cfg.timeout_s : cfg.seconds) * 1e9);
        for (;;) {
                int64_t now = bench_now_ns(CLOCK_MONOTONIC);

                if (bench_proc_status_kb((pid_t)cfg.relay_pid, "VmRSS", &rss) != 0) {
                        snprintf(errbuf, sizeof(errbuf), "the relay (pid %ld) exited",
                                 cfg.relay_pid);
                        goto out;
                }
                last_rss = rss;
                if (rss > rss_max)
                        rss_max = rss;
                if (now >= next_series && nseries < MON_MAX_SERIES) {
                        series[nseries++] = rss;
                        next_series += 1000000000;
                }
                if (now >= next_backends) {
                        backends_update(conn, &bs, 1);
                        next_backends += 1000000000;
                }
                if (cfg.drain) {
                        int d = drained(conn, last_id, &stage, errbuf, sizeof(errbuf));

                        if (d < 0)
                                goto out;
                        if (d > 0)
                                break;
                }
                if (now >= deadline) {
                        if (cfg.drain) {
                                snprintf(errbuf, sizeof(errbuf), "not drained after %.0f s",
                                         cfg.timeout_s);
                                goto out;
                        }
                        break;
                }
                usleep((useconds_t)cfg.interval_ms * 1000);
        }
        now_boot_s = (double)bench_now_ns(CLOCK_BOOTTIME) / 1e9;
        t_s = cfg.drain ? now_boot_s - start_s : (double)(bench_now_ns(CLOCK_MONOTONIC) - t0) / 1e9;
        bench_cpustat_read(&cs1);
        procs_take(&procs1, &nprocs1);
        backends_update(conn, &bs, 1);
        bench_proc_cpu((pid_t)cfg.relay_pid, 0, 0, &relay1);
        bench_proc_cpu((pid_t)cfg.relay_pid, (pid_t)cfg.relay_pid, 0, &main1);
        bench_proc_status_kb((pid_t)cfg.relay_pid, "VmHWM", &hwm);
        if (cfg.kafka_pid)
                bench_proc_cpu((pid_t)cfg.kafka_pid, 0, 0, &kafka1);
        printf("mon.elapsed_s %.3f\nmon.relay_cpu_s %.2f\nmon.relay_main_cpu_s %.2f\n"
               "mon.backend_cpu_s %.2f\nmon.pg_cpu_s %.2f\nmon.kafka_cpu_s %.2f\n"
               "mon.cpus %ld\nmon.machine_busy %.3f\nmon.machine_busy_cpu_s %.2f\n"
               "mon.machine_softirq_cpu_s %.2f\nmon.machine_iowait %.3f\n"
               "mon.relay_hwm_kb %ld\nmon.relay_rss_max_kb %ld\nmon.relay_rss_last_kb %ld\n"
               "mon.backends %zu\n",
               t_s, relay1 - relay0, main1 - main0, backends_cpu(&bs),
               pg_cpu((pid_t)cfg.pg_pid) - pg0, kafka1 - kafka0, sysconf(_SC_NPROCESSORS_ONLN),
               cs1.total > cs0.total
                   ? (double)(cs1.busy - cs0.busy) / (double)(cs1.total - cs0.total)
                   : 0.0,
               (double)(cs1.busy - cs0.busy) / (double)sysconf(_SC_CLK_TCK),
               (double)(cs1.softirq - cs0.softirq) / (double)sysconf(_SC_CLK_TCK),
               cs1.total > cs0.total
                   ? (double)(cs1.iowait - cs0.iowait) / (double)(cs1.total - cs0.total)
                   : 0.0,
               hwm, rss_max, last_rss, bs.n);
        print_series(series, nseries);
        print_others(procs0, nprocs0, procs1, nprocs1, &cfg);
        rc = 0;
out:
        if (rc != 0)
                fprintf(stderr, "monitor: %s\n", errbuf);
        PQfinish(conn);
        free(series);
        free(procs0);
        free(procs1);
        return rc;
}

struct wait_count {
        char name[96];
        long n;
};

static int cmp_wait(const void *a, const void *b)
{
        const struct wait_count *x = a, *y = b;

        return (y->n > x->n) - (y->n < x->n);
}

int bench_cmd_waits(int argc, char **argv)
{
        static const struct option opts[] = {{"conninfo", required_argument, NULL, 'c'},
                                             {"seconds", required_argument, NULL, 's'},
                                             {"interval-ms", required_argument, NULL, 'i'},
                                             {"application", required_argument, NULL, 'a'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
        const char *conninfo = getenv("OUTBOX_DATABASE_URL"), *app = "pgbench";
        struct wait_count counts[WAITS_MAX];
        double seconds = 10;
        long interval_ms = 10, samples = 0, active = 0;
        int nc = 0, opt, bad = 0, rc = 1;
        char errbuf[512];
        PGconn *conn = NULL;
        int64_t deadline;

        while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (opt) {
                case 'c':
                        conninfo = optarg;
                        break;
                case 's':
                        bad |= bench_parse_double(optarg, 0.1, 86400, &seconds);
                        break;
                case 'i':
                        bad |= bench_parse_long(optarg, 1, 60000, &interval_ms);
                        break;
                case 'a':
                        app = optarg;
                        break;
                case 'h':
                        printf("usage: outbox-bench waits --conninfo C [--seconds S]"
                               " [--interval-ms MS] [--application NAME]\n");
                        return 0;
                default:
                        return 2;
                }
        }
        if (bad || conninfo == NULL) {
                fprintf(stderr, "waits: needs --conninfo and valid numbers\n");
                return 2;
        }
        if (bench_pg_connect(conninfo, &conn, errbuf, sizeof(errbuf)) != 0)
                goto out;
        deadline = bench_now_ns(CLOCK_MONOTONIC) + (int64_t)(seconds * 1e9);
        while (bench_now_ns(CLOCK_MONOTONIC) < deadline) {
                const char *params[1] = {app};
                PGresult *res = PQexecParams(
                    conn,
                    "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), count(*)"
                    " FROM pg_stat_activity WHERE backend_type = 'client backend'"
                    " AND state = 'active' AND application_name = $1 GROUP BY 1",
                    1, NULL, params, NULL, NULL, 0);

                if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                        snprintf(errbuf, sizeof(errbuf), "%s", PQresultErrorMessage(res));
                        PQclear(res);
                        goto out;
                }
                samples++;
                for (int i = 0; i < PQntuples(res); i++) {
                        const char *name = PQgetvalue(res, i, 0);
                        long n = atol(PQgetvalue(res, i, 1));
                        int k = 0;

                        while (k < nc && strcmp(counts[k].name, name) != 0)
                                k++;
                        if (k == nc && nc < WAITS_MAX) {
                                snprintf(counts[nc].name, sizeof(counts[nc].name), "%s", name);
                                counts[nc++].n = 0;
                        }
                        if (k < nc)
                                counts[k].n += n;
                        active += n;
                }
                PQclear(res);
                usleep((useconds_t)interval_ms * 1000);
        }
        qsort(counts, (size_t)nc, sizeof(counts[0]), cmp_wait);
        printf("waits.samples %ld\nwaits.avg_active %.2f\n", samples,
               samples ? (double)active / (double)samples : 0.0);
        for (int k = 0; k < nc && k < 8; k++)
                printf("wait.%s %.3f\n", counts[k].name,
                       active ? (double)counts[k].n / (double)active : 0.0);
        rc = 0;
out:
        if (rc != 0)
                fprintf(stderr, "waits: %s\n", errbuf);
        PQfinish(conn);
        return rc;
}
