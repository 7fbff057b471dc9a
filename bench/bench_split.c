/* outbox-bench split: where each row's latency went. Joins `load --dump`
 * (each row's COMMIT and arrival) with the relay's "batch trace" lines
 * (--log-level debug: when its fetch was wanted, sent and returned, when
 * the row was produced and reported delivered; the same CLOCK_MONOTONIC)
 * and prints each step's percentiles, and what the slowest 1% spent where. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bench.h"

enum { S_WAKE, S_HELD, S_FETCH, S_PRODUCE, S_ACK, S_READ, S_TOTAL, S_N };

static const char *const step_names[S_N] = {
    "commit_to_wanted",    /* the wake-up: a notification or the next busy poll */
    "wanted_to_sent",      /* the loop held the fetch: pipeline full, a fetch under way */
    "sent_to_fetched",     /* the fetch on the reader session, queue included */
    "fetched_to_produced", /* the loop handing the row to librdkafka */
    "produced_to_report",  /* librdkafka and the broker: the delivery report */
    "report_to_read",      /* the broker and the bench's consumer */
    "total",
};

struct split_row {
        int64_t commit_us, arrive_us;
        int64_t want_us, sent_us, fetched_us, produced_us, reported_us;
        int held, traced;
};

struct split {
        long long base; /* id of rows[0] */
        size_t n;
        struct split_row *rows;
};

static int read_dump(struct split *S, const char *path)
{
        FILE *f = fopen(path, "r");
        long long id, c, a;
        size_t cap = 0;

        if (f == NULL) {
                perror(path);
                return -1;
        }
        while (fscanf(f, "%lld %lld %lld", &id, &c, &a) == 3) {
                if (S->n == 0)
                        S->base = id;
                if (id < S->base || id - S->base > 100000000LL)
                        continue;
                if ((size_t)(id - S->base) >= cap) {
                        size_t ncap = (size_t)(id - S->base) * 2 + 1024;
                        struct split_row *nr = realloc(S->rows, ncap * sizeof(*nr));

                        if (nr == NULL) {
                                fclose(f);
                                return -1;
                        }
                        memset(nr + cap, 0, (ncap - cap) * sizeof(*nr));
                        S->rows = nr;
                        cap = ncap;
                }
                S->rows[id - S->base].commit_us = c / 1000;
                S->rows[id - S->base].arrive_us = a / 1000;
                if ((size_t)(id - S->base) + 1 > S->n)
                        S->n = (size_t)(id - S->base) + 1;
        }
        fclose(f);
        return S->n > 0 ? 0 : -1;
}

/* One "batch trace" line: its times onto each of its rows. */
static void trace_line(struct split *S, json_t *j)
{
        json_t *rows = json_object_get(j, "rows"), *r;
        int64_t want = json_integer_value(json_object_get(j, "want_us"));
        int64_t sent = json_integer_value(json_object_get(j, "sent_us"));
        int64_t fetched = json_integer_value(json_object_get(j, "fetched_us"));
        int held = (int)json_integer_value(json_object_get(j, "held"));
        size_t i;

        json_array_foreach(rows, i, r)
        {
                long long id = json_integer_value(json_array_get(r, 0));
                struct split_row *row;

                if (id < S->base || (size_t)(id - S->base) >= S->n)
                        continue;
                row = &S->rows[id - S->base];
                /* A row fetched twice (published again): its last copy counts. */
                *row = (struct split_row){.commit_us = row->commit_us,
                                          .arrive_us = row->arrive_us,
                                          .want_us = want,
                                          .sent_us = sent,
                                          .fetched_us = fetched,
                                          .produced_us = json_integer_value(json_array_get(r, 1)),
                                          .reported_us = json_integer_value(json_array_get(r, 2)),
                                          .held = held,
                                          .traced = 1};
        }
}

static int read_trace(struct split *S, const char *path)
{
        FILE *f = fopen(path, "r");
        char *line = NULL;
        size_t sz = 0;

        if (f == NULL) {
                perror(path);
                return -1;
        }
        while (getline(&line, &sz, f) > 0) {
                json_t *j;

                if (strstr(line, "\"batch trace\"") == NULL)
                        continue;
                j = json_loads(line, 0, NULL);
                if (j != NULL)
                        trace_line(S, j);
                json_decref(j);
        }
        free(line);
        fclose(f);
        return 0;
}

static int parse_args(int argc, char **argv, const char **dump, const char **trace, double *warmup)
{
        static const struct option opts[] = {{"dump", required_argument, NULL, 'd'},
                                             {"trace", required_argument, NULL, 't'},
                                             {"warmup", required_argument, NULL, 'w'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
        int opt, bad = 0;

        while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (opt) {
                case 'd':
                        *dump = optarg;
                        break;
                case 't':
                        *trace = optarg;
                        break;
                case 'w':
                        bad |= bench_parse_double(optarg, 0, 86400, warmup);
                        break;
                case 'h':
                        printf("usage: outbox-bench split --dump FILE --trace RELAY_LOG"
                               " [--warmup S]\n"
                               "FILE from outbox-bench load --dump; RELAY_LOG the stderr of"
                               " outbox-relay run --log-level debug\n"
                               "during that load. Rows committed in the first S seconds"
                               " (default 2) are left out.\n");
                        return 1;
                default:
                        return -1;
                }
        }
        if (bad || *dump == NULL || *trace == NULL) {
                fprintf(stderr, "split: needs --dump and --trace\n");
                return -1;
        }
        return 0;
}

int bench_cmd_split(int argc, char **argv)
{
        const char *dump_path = NULL, *trace_path = NULL;
        double warmup = 2;
        struct split S = {0};
        int64_t *steps[S_N] = {0}, first = INT64_MAX, slow_sum[S_N] = {0}, cut;
        size_t n = 0, slow = 0, held[3] = {0}, untraced = 0;
        int rc;

        rc = parse_args(argc, argv, &dump_path, &trace_path, &warmup);
        if (rc != 0)
                return rc > 0 ? 0 : 2;
        rc = 1;
        if (read_dump(&S, dump_path) != 0 || read_trace(&S, trace_path) != 0) {
                fprintf(stderr, "split: cannot read %s or %s\n", dump_path, trace_path);
                goto out;
        }
        for (int k = 0; k < S_N; k++)
                if ((steps[k] = calloc(S.n, sizeof(int64_t))) == NULL)
                        goto out;
        for (size_t i = 0; i < S.n; i++)
                if (S.rows[i].commit_us != 0 && S.rows[i].commit_us < first)
                        first = S.rows[i].commit_us;
        for (size_t i = 0; i < S.n; i++) {
                const struct split_row *r = &S.rows[i];
                int64_t v[S_N];

                if (r->commit_us == 0 || r->commit_us < first + (int64_t)(warmup * 1e6) ||
                    r->arrive_us == 0)
                        continue;
                if (!r->traced || r->reported_us == 0 || r->produced_us == 0) {
                        untraced++;
                        continue;
                }
                v[S_WAKE] = r->want_us - r->commit_us; /* < 0: wanted before (held) */
                v[S_HELD] = r->sent_us - r->want_us;
                v[S_FETCH] = r->fetched_us - r->sent_us;
                v[S_PRODUCE] = r->produced_us - r->fetched_us;
                v[S_ACK] = r->reported_us - r->produced_us;
                v[S_READ] = r->arrive_us - r->reported_us;
                v[S_TOTAL] = r->arrive_us - r->commit_us;
                for (int k = 0; k < S_N; k++)
                        steps[k][n] = v[k] * 1000; /* ns, as bench_quantile_ms takes */
                for (int b = 0; b < 3; b++)
                        held[b] += (r->held >> b) & 1;
                n++;
        }
        /* The slowest 1%: the rows at or above the total's p99. */
        {
                int64_t *tot = malloc((n ? n : 1) * sizeof(int64_t));

                if (tot == NULL)
                        goto out;
                memcpy(tot, steps[S_TOTAL], n * sizeof(int64_t));
                bench_sort_ns(tot, n);
                cut = n ? tot[(size_t)((double)(n - 1) * 0.99)] : 0;
                free(tot);
        }
        for (size_t i = 0; i < n; i++) {
                if (steps[S_TOTAL][i] < cut)
                        continue;
                slow++;
                for (int k = 0; k < S_N; k++)
                        slow_sum[k] += steps[k][i];
        }
        printf("split.rows %zu\nsplit.untraced %zu\nsplit.held_by_reports %zu\n"
               "split.held_by_marks %zu\nsplit.held_by_fetch %zu\nsplit.slowest_rows %zu\n",
               n, untraced, held[0], held[1], held[2], slow);
        for (int k = 0; k < S_N; k++) {
                double mean = slow ? (double)slow_sum[k] / (double)slow / 1e6 : 0;

                bench_sort_ns(steps[k], n);
                printf("split.%s.p50_ms %.3f\nsplit.%s.p90_ms %.3f\nsplit.%s.p99_ms %.3f\n"
                       "split.%s.slowest_mean_ms %.3f\n",
                       step_names[k], bench_quantile_ms(steps[k], n, 0.5), step_names[k],
                       bench_quantile_ms(steps[k], n, 0.9), step_names[k],
                       bench_quantile_ms(steps[k], n, 0.99), step_names[k], mean);
        }
        rc = 0;
out:
        for (int k = 0; k < S_N; k++)
                free(steps[k]);
        free(S.rows);
        return rc;
}
