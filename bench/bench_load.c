/* outbox-bench load: end-to-end latency at a fixed offered event rate.
 * Writer threads (one connection each) run the service's transaction
 * (update a business row, insert an outbox row, COMMIT) on an open-loop
 * schedule and note when COMMIT returned, by outbox id; a consumer thread in
 * the same process reads the topic and notes when each message arrived, by
 * its outbox_id header. Latency = arrival - COMMIT return, one clock.
 * With --progress-topic (a relay in --exactly-once mode) a row arrives
 * instead when the progress record listing it does: the dev Kafka does not
 * implement read_committed, so its data messages are readable before their
 * transaction commits, and the record is the last message of it. On Apache
 * Kafka the consumer reads with isolation.level=read_committed instead (no
 * --progress-topic): a row arrives when its data message becomes readable,
 * i.e. once its transaction has committed. */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "bench.h"

#define LOAD_MAX_WRITERS 256

struct load_cfg {
        const char *conninfo, *brokers, *topic;
        const char *progress_topic; /* arrival by progress record (--exactly-once) */
        const char *isolation;      /* the consumer's isolation.level */
        const char *samples;        /* --samples: where the latencies go, one ms a line */
        const char *dump;           /* --dump: every row's times, for joining with a trace */
        double rate, seconds, warmup, grace;
        long writers, accounts, keys, fetch_wait_ms;
        int no_consumer; /* writers only: no latency, no fetch load on the dev Kafka */
};

struct load {
        const struct load_cfg *cfg;
        long long base_id; /* this run's rows have ids above it */
        size_t cap;        /* slots in the arrays below, by id - base_id - 1 */
        int64_t *commit_ns, *commit_dur_ns, *arrive_ns;
        int64_t *data_ns;  /* with a progress topic: when the data message arrived */
        int64_t t0, t_end; /* schedule start and end, CLOCK_MONOTONIC */
        atomic_long committed, out_of_range;
        atomic_int writers_left, failed;
        /* What counts as arrival (data messages, or rows of progress records):
         * rows this run committed, ids outside this run, rows seen again. */
        long received, unmatched, duplicates, consumer_errors;
        /* With a progress topic: the records read, those that are not a
         * progress record, and the data messages, counted as above. */
        long records, bad_records, data_received, data_unmatched, data_duplicates;
        pthread_mutex_t err_mu;
        char err[1024];
};

struct writer_arg {
        struct load *L;
        long index;
};

static void set_error(struct load *L, const char *fmt, const char *detail)
{
        pthread_mutex_lock(&L->err_mu);
        if (L->err[0] == '\0')
                snprintf(L->err, sizeof(L->err), fmt, detail);
        pthread_mutex_unlock(&L->err_mu);
        atomic_store(&L->failed, 1);
}

static int writer_prepare(PGconn *conn, char *errbuf, size_t errsz)
{
        static const char *const stmts[][2] = {
            {"upd", "UPDATE bench.accounts SET balance = balance + 1, updated_at = now()"
                    " WHERE id = $1::int"},
            {"ins", "INSERT INTO outbox.events (topic, key, event_type, payload)"
                    " VALUES ($1, $2, 'order.updated', bench.payload($3::bigint)) RETURNING id"},
        };

        for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
                PGresult *res = PQprepare(conn, stmts[i][0], stmts[i][1], 0, NULL);
                int ok = PQresultStatus(res) == PGRES_COMMAND_OK;

                if (!ok)
                        snprintf(errbuf, errsz, "preparing %s: %s", stmts[i][0],
                                 PQresultErrorMessage(res));
                PQclear(res);
                if (!ok)
                        return -1;
        }
        return 0;
}

/* One service transaction; fills the row's id and the COMMIT times. */
static int writer_tx(PGconn *conn, const struct load_cfg *cfg, unsigned long long r, long long *id,
                     int64_t *c0, int64_t *c1, char *errbuf, size_t errsz)
{
        char aid[24], key[32], n[24];
        const char *p_upd[1] = {aid}, *p_ins[3] = {cfg->topic, key, n};
        PGresult *res;

        snprintf(aid, sizeof(aid), "%llu", 1 + r % (unsigned long long)cfg->accounts);
        snprintf(key, sizeof(key), "customer-%llu", (r >> 20) % (unsigned long long)cfg->keys);
        snprintf(n, sizeof(n), "%llu", r >> 24);
        if (bench_pg_exec(conn, "BEGIN", errbuf, errsz) != 0)
                return -1;
        res = PQexecPrepared(conn, "upd", 1, p_upd, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                snprintf(errbuf, errsz, "update: %s", PQresultErrorMessage(res));
                PQclear(res);
                return -1;
        }
        PQclear(res);
        res = PQexecPrepared(conn, "ins", 3, p_ins, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
                snprintf(errbuf, errsz, "insert: %s", PQresultErrorMessage(res));
                PQclear(res);
                return -1;
        }
        *id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        *c0 = bench_now_ns(CLOCK_MONOTONIC);
        if (bench_pg_exec(conn, "COMMIT", errbuf, errsz) != 0)
                return -1;
        *c1 = bench_now_ns(CLOCK_MONOTONIC);
        return 0;
}

/* Open loop: transaction k of writer i is due at t0 + (k * writers + i) /
 * rate. A writer that falls behind sends at once; none sends after t_end. */
static void *writer_main(void *arg)
{
        struct writer_arg *wa = arg;
        struct load *L = wa->L;
        const struct load_cfg *cfg = L->cfg;
        unsigned long long rng = 0x9E3779B97F4A7C15ULL * (unsigned long long)(wa->index + 1);
        char errbuf[512];
        PGconn *conn = NULL;

        if (bench_pg_connect(cfg->conninfo, &conn, errbuf, sizeof(errbuf)) != 0 ||
            writer_prepare(conn, errbuf, sizeof(errbuf)) != 0) {
                set_error(L, "writer: %s", errbuf);
                goto out;
        }
        for (long k = 0; !atomic_load(&L->failed); k++) {
                double slot = (double)(k * cfg->writers + wa->index) / cfg->rate;
                int64_t due = L->t0 + (int64_t)(slot * 1e9), c0, c1;
                long long id;

                if (due >= L->t_end || bench_now_ns(CLOCK_MONOTONIC) >= L->t_end)
                        break;
                bench_sleep_until(due);
                rng ^= rng << 13; /* xorshift64 */
                rng ^= rng >> 7;
                rng ^= rng << 17;
                if (writer_tx(conn, cfg, rng, &id, &c0, &c1, errbuf, sizeof(errbuf)) != 0) {
                        set_error(L, "writer: %s", errbuf);
                        break;
                }
                if (id > L->base_id && (size_t)(id - L->base_id - 1) < L->cap) {
                        L->commit_ns[id - L->base_id - 1] = c1;
                        L->commit_dur_ns[id - L->base_id - 1] = c1 - c0;
                } else {
                        atomic_fetch_add(&L->out_of_range, 1);
                }
                atomic_fetch_add(&L->committed, 1);
        }
out:
        PQfinish(conn);
        atomic_fetch_sub(&L->writers_left, 1);
        return NULL;
}

/* Notes that row id arrived at now in arr (by id - base_id - 1), once. */
static void arrived(const struct load *L, int64_t *arr, long long id, int64_t now, long *received,
                    long *unmatched, long *duplicates)
{
        if (id <= L->base_id || (size_t)(id - L->base_id - 1) >= L->cap) {
                (*unmatched)++;
        } else if (arr[id - L->base_id - 1] != 0) {
                (*duplicates)++;
        } else {
                arr[id - L->base_id - 1] = now;
                (*received)++;
        }
}

long long bench_header_id(rd_kafka_message_t *m)
{
        rd_kafka_headers_t *hdrs = NULL;
        const void *val;
        size_t len;
        char buf[24];

        if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
            rd_kafka_header_get_last(hdrs, "outbox_id", &val, &len) != RD_KAFKA_RESP_ERR_NO_ERROR ||
            val == NULL || len == 0 || len >= sizeof(buf))
                return -1;
        memcpy(buf, val, len);
        buf[len] = '\0';
        return strtoll(buf, NULL, 10);
}

/* A progress record: every id of its "rows" ([[id,partition,offset],...],
 * the rows its transaction published) arrives now. "unmarked" lists rows of
 * earlier transactions, which arrived with their own record. */
static void consume_record(struct load *L, rd_kafka_message_t *m, int64_t now)
{
        json_t *root = json_loadb(m->payload, m->len, 0, NULL);
        json_t *rows = json_object_get(root, "rows"), *row;
        size_t i;

        if (!json_is_array(rows)) {
                L->bad_records++;
                json_decref(root);
                return;
        }
        L->records++;
        json_array_foreach(rows, i, row)
        {
                json_t *id = json_array_get(row, 0);

                if (json_is_integer(id))
                        arrived(L, L->arrive_ns, (long long)json_integer_value(id), now,
                                &L->received, &L->unmatched, &L->duplicates);
                else
                        L->unmatched++;
        }
        json_decref(root);
}

static void consume_one(struct load *L, rd_kafka_message_t *m)
{
        int64_t now = bench_now_ns(CLOCK_MONOTONIC);
        const char *progress = L->cfg->progress_topic;
        long long id;

        if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        L->consumer_errors++;
                return;
        }
        if (progress != NULL && strcmp(rd_kafka_topic_name(m->rkt), progress) == 0) {
                consume_record(L, m, now);
                return;
        }
        id = bench_header_id(m);
        if (progress == NULL) {
                if (id < 0)
                        L->unmatched++;
                else
                        arrived(L, L->arrive_ns, id, now, &L->received, &L->unmatched,
                                &L->duplicates);
        } else {
                if (id < 0)
                        L->data_unmatched++;
                else
                        arrived(L, L->data_ns, id, now, &L->data_received, &L->data_unmatched,
                                &L->data_duplicates);
        }
}

struct consumer_arg {
        struct load *L;
        rd_kafka_t *rk;
};

/* Reads until every committed row has arrived (and, with a progress topic,
 * its data message too), or grace seconds after the last writer stopped. */
static void *consumer_main(void *arg)
{
        struct consumer_arg *ca = arg;
        struct load *L = ca->L;
        int64_t done_at = 0;

        for (;;) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(ca->rk, 20);

                if (m != NULL) {
                        consume_one(L, m);
                        rd_kafka_message_destroy(m);
                }
                if (atomic_load(&L->writers_left) == 0) {
                        int64_t now = bench_now_ns(CLOCK_MONOTONIC);
                        long committed = atomic_load(&L->committed);

                        if (done_at == 0)
                                done_at = now;
                        if ((L->received >= committed &&
                             (L->data_ns == NULL || L->data_received >= committed)) ||
                            now - done_at > (int64_t)(L->cfg->grace * 1e9))
                                break;
                }
        }
        return NULL;
}

/* Adds every partition of topic (only partition 0 when first_only) to
 * parts at its current high-water offset; 0 or -1 with errbuf filled. */
static int add_at_end(rd_kafka_t *rk, const char *topic, int first_only,
                      rd_kafka_topic_partition_list_t *parts, char *errbuf, size_t errsz)
{
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        rd_kafka_resp_err_t err;
        int rc = -1, added = 0;

        err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        if (err || md->topic_cnt != 1 || md->topics[0].err) {
                snprintf(errbuf, errsz, "metadata of %s: %s", topic,
                         rd_kafka_err2str(err ? err : md->topics[0].err));
                goto out;
        }
        for (int p = 0; p < md->topics[0].partition_cnt; p++) {
                int32_t id = md->topics[0].partitions[p].id;
                int64_t lo, hi;

                if (first_only && id != 0)
                        continue;
                err = rd_kafka_query_watermark_offsets(rk, topic, id, &lo, &hi, 10000);
                if (err) {
                        snprintf(errbuf, errsz, "watermarks of %s: %s", topic,
                                 rd_kafka_err2str(err));
                        goto out;
                }
                rd_kafka_topic_partition_list_add(parts, topic, id)->offset = hi;
                added++;
        }
        if (added == 0)
                snprintf(errbuf, errsz, "%s has no partition%s", topic, first_only ? " 0" : "s");
        else
                rc = 0;
out:
        if (md != NULL)
                rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        return rc;
}

rd_kafka_t *bench_consumer_new(const char *brokers, const char *topic, const char *progress_topic,
                               long fetch_wait_ms, const char *isolation, char *errbuf,
                               size_t errsz)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_topic_partition_list_t *parts = NULL;
        rd_kafka_resp_err_t err;
        rd_kafka_t *rk = NULL;
        char wait[24];

        snprintf(wait, sizeof(wait), "%ld", fetch_wait_ms);
        if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errbuf, errsz) ||
            rd_kafka_conf_set(conf, "group.id", "outbox-bench-load", errbuf, errsz) ||
            rd_kafka_conf_set(conf, "enable.auto.commit", "false", errbuf, errsz) ||
            rd_kafka_conf_set(conf, "fetch.wait.max.ms", wait, errbuf, errsz) ||
            rd_kafka_conf_set(conf, "fetch.min.bytes", "1", errbuf, errsz) ||
            rd_kafka_conf_set(conf, "isolation.level", isolation, errbuf, errsz)) {
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, errsz);
        if (rk == NULL) {
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        rd_kafka_poll_set_consumer(rk);
        parts = rd_kafka_topic_partition_list_new(64);
        if (add_at_end(rk, topic, 0, parts, errbuf, errsz) != 0 ||
            (progress_topic != NULL &&
             add_at_end(rk, progress_topic, 1, parts, errbuf, errsz) != 0))
                goto fail;
        err = rd_kafka_assign(rk, parts);
        if (err) {
                snprintf(errbuf, errsz, "assign: %s", rd_kafka_err2str(err));
                goto fail;
        }
        rd_kafka_topic_partition_list_destroy(parts);
        return rk;
fail:
        rd_kafka_topic_partition_list_destroy(parts);
        rd_kafka_destroy(rk);
        return NULL;
}

/* The latencies behind the percentiles, for bench/run.sh's charts. */
static int write_samples(const char *path, const int64_t *lat, size_t n)
{
        FILE *f = fopen(path, "w");
        int rc = 0;

        if (f == NULL) {
                fprintf(stderr, "load: --samples %s: cannot be written\n", path);
                return -1;
        }
        for (size_t i = 0; i < n && rc == 0; i++)
                rc = fprintf(f, "%.3f\n", (double)lat[i] / 1e6) < 0 ? -1 : 0;
        if (fclose(f) != 0 || rc != 0) {
                fprintf(stderr, "load: --samples %s: write failed\n", path);
                return -1;
        }
        return 0;
}

/* --dump: one line per row committed, its id and when its COMMIT returned
 * and it arrived (CLOCK_MONOTONIC ns, 0 when it never did), so the latency
 * can be split with times the relay notes on the same clock. */
static int dump(const struct load *L, const char *path)
{
        FILE *f = fopen(path, "w");
        int rc = 0;

        if (f == NULL) {
                perror(path);
                return -1;
        }
        for (size_t i = 0; i < L->cap; i++)
                if (L->commit_ns[i] != 0)
                        fprintf(f, "%lld %lld %lld\n", L->base_id + 1 + (long long)i,
                                (long long)L->commit_ns[i], (long long)L->arrive_ns[i]);
        if (fclose(f) != 0) {
                perror(path);
                rc = -1;
        }
        return rc;
}

/* Latency and COMMIT-duration percentiles over the rows committed after
 * the warm-up. */
static int report(struct load *L)
{
        const struct load_cfg *cfg = L->cfg;
        int64_t from = L->t0 + (int64_t)(cfg->warmup * 1e9);
        int64_t *lat = malloc(L->cap * sizeof(*lat)), *dur = malloc(L->cap * sizeof(*dur));
        int64_t *dlat = L->data_ns != NULL ? malloc(L->cap * sizeof(*dlat)) : NULL;
        size_t n = 0, nd = 0, missing = 0, negative = 0, ndl = 0, data_missing = 0, data_later = 0;
        double sum = 0;
        struct rusage ru;

        if (lat == NULL || dur == NULL || (L->data_ns != NULL && dlat == NULL)) {
                free(lat);
                free(dur);
                free(dlat);
                fprintf(stderr, "load: out of memory\n");
                return -1;
        }
        for (size_t i = 0; i < L->cap; i++) {
                if (L->commit_ns[i] == 0 || L->commit_ns[i] < from)
                        continue;
                dur[nd++] = L->commit_dur_ns[i];
                if (L->data_ns != NULL) {
                        if (L->data_ns[i] == 0)
                                data_missing++;
                        else
                                dlat[ndl++] = L->data_ns[i] > L->commit_ns[i]
                                                  ? L->data_ns[i] - L->commit_ns[i]
                                                  : 0;
                        if (L->data_ns[i] != 0 && L->arrive_ns[i] != 0 &&
                            L->data_ns[i] > L->arrive_ns[i])
                                data_later++;
                }
                if (L->arrive_ns[i] == 0) {
                        missing++;
                        continue;
                }
                /* The relay can publish a row before its writer's COMMIT
                 * call has returned: count that as zero. */
                lat[n] = L->arrive_ns[i] - L->commit_ns[i];
                if (lat[n] < 0) {
                        negative++;
                        lat[n] = 0;
                }
                sum += (double)lat[n++];
        }
        bench_sort_ns(lat, n);
        bench_sort_ns(dur, nd);
        bench_sort_ns(dlat, ndl);
        if (cfg->samples != NULL && write_samples(cfg->samples, lat, n) != 0) {
                free(lat);
                free(dur);
                free(dlat);
                return -1;
        }
        getrusage(RUSAGE_SELF, &ru);
        printf("load.cpu_s %.2f\n", (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                                        (double)ru.ru_stime.tv_sec +
                                        (double)ru.ru_stime.tv_usec / 1e6);
        printf("load.offered_rate %.0f\nload.achieved_rate %.0f\nload.writers %ld\n"
               "load.committed %ld\nload.samples %zu\nload.missing %zu\nload.negative %zu\n"
               "load.unmatched %ld\nload.duplicates %ld\nload.out_of_range %ld\n"
               "load.isolation %s\n",
               cfg->rate, (double)nd / (cfg->seconds - cfg->warmup), cfg->writers,
               atomic_load(&L->committed), n, missing, negative, L->unmatched, L->duplicates,
               atomic_load(&L->out_of_range), cfg->isolation);
        /* Arrival by progress record: the data messages only as a check
         * (missing: never read; after_record: read after their record) and
         * for what a consumer ignoring transactions would see. */
        if (L->data_ns != NULL)
                printf("progress.records %ld\nprogress.bad_records %ld\ndata.received %ld\n"
                       "data.unmatched %ld\ndata.duplicates %ld\ndata.missing %zu\n"
                       "data.after_record %zu\ndata.p50_ms %.3f\ndata.p99_ms %.3f\n",
                       L->records, L->bad_records, L->data_received, L->data_unmatched,
                       L->data_duplicates, data_missing, data_later,
                       bench_quantile_ms(dlat, ndl, 0.5), bench_quantile_ms(dlat, ndl, 0.99));
        if (!cfg->no_consumer)
                printf("lat.p50_ms %.3f\nlat.p99_ms %.3f\nlat.p999_ms %.3f\nlat.max_ms %.3f\n"
                       "lat.mean_ms %.3f\n",
                       bench_quantile_ms(lat, n, 0.5), bench_quantile_ms(lat, n, 0.99),
                       bench_quantile_ms(lat, n, 0.999), bench_quantile_ms(lat, n, 1.0),
                       n ? sum / (double)n / 1e6 : 0.0);
        printf("commit.p50_ms %.3f\ncommit.p99_ms %.3f\n", bench_quantile_ms(dur, nd, 0.5),
               bench_quantile_ms(dur, nd, 0.99));
        free(lat);
        free(dur);
        free(dlat);
        return 0;
}

static int parse_args(int argc, char **argv, struct load_cfg *cfg)
{
        static const struct option opts[] = {{"conninfo", required_argument, NULL, 'c'},
                                             {"brokers", required_argument, NULL, 'b'},
                                             {"topic", required_argument, NULL, 't'},
                                             {"rate", required_argument, NULL, 'r'},
                                             {"seconds", required_argument, NULL, 's'},
                                             {"warmup", required_argument, NULL, 'w'},
                                             {"grace", required_argument, NULL, 'g'},
                                             {"writers", required_argument, NULL, 'W'},
                                             {"accounts", required_argument, NULL, 'a'},
                                             {"keys", required_argument, NULL, 'k'},
                                             {"fetch-wait-ms", required_argument, NULL, 'f'},
                                             {"no-consumer", no_argument, NULL, 'n'},
                                             {"progress-topic", required_argument, NULL, 'p'},
                                             {"isolation", required_argument, NULL, 'i'},
                                             {"samples", required_argument, NULL, 'S'},
                                             {"dump", required_argument, NULL, 'd'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
        int opt, bad = 0;

        while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (opt) {
                case 'c':
                        cfg->conninfo = optarg;
                        break;
                case 'b':
                        cfg->brokers = optarg;
                        break;
                case 't':
                        cfg->topic = optarg;
                        break;
                case 'r':
                        bad |= bench_parse_double(optarg, 0.1, 1e7, &cfg->rate);
                        break;
                case 's':
                        bad |= bench_parse_double(optarg, 0.1, 86400, &cfg->seconds);
                        break;
                case 'w':
                        bad |= bench_parse_double(optarg, 0, 86400, &cfg->warmup);
                        break;
                case 'g':
                        bad |= bench_parse_double(optarg, 0, 3600, &cfg->grace);
                        break;
                case 'W':
                        bad |= bench_parse_long(optarg, 1, LOAD_MAX_WRITERS, &cfg->writers);
                        break;
                case 'a':
                        bad |= bench_parse_long(optarg, 1, 1000000000L, &cfg->accounts);
                        break;
                case 'k':
                        bad |= bench_parse_long(optarg, 1, 1000000000L, &cfg->keys);
                        break;
                case 'f':
                        bad |= bench_parse_long(optarg, 0, 10000, &cfg->fetch_wait_ms);
                        break;
                case 'n':
                        cfg->no_consumer = 1;
                        break;
                case 'p':
                        cfg->progress_topic = optarg;
                        break;
                case 'i':
                        cfg->isolation = optarg;
                        bad |= strcmp(optarg, "read_committed") != 0 &&
                               strcmp(optarg, "read_uncommitted") != 0;
                        break;
                case 'S':
                        cfg->samples = optarg;
                        break;
                case 'd':
                        cfg->dump = optarg;
                        break;
                case 'h':
                        printf("usage: outbox-bench load --conninfo C --brokers B --topic T"
                               " --rate EV_PER_S --seconds S\n"
                               "  [--warmup S] [--grace S] [--writers N] [--accounts N]"
                               " [--keys N] [--fetch-wait-ms MS]\n"
                               "  [--no-consumer | --progress-topic P]"
                               " [--isolation read_committed|read_uncommitted]"
                               " [--samples FILE] [--dump FILE]\n"
                               "Needs bench.accounts and bench.payload() (bench/sql/setup.sql).\n"
                               "--progress-topic: the relay runs --exactly-once with progress"
                               " topic P; a row arrives\n"
                               "when the progress record listing it does (partition 0 of P,"
                               " read from its end).\n"
                               "--isolation: the consumer's isolation.level (read_committed,"
                               " librdkafka's default;\nthe dev Kafka has no transactions to"
                               " hide and ignores it).\n"
                               "--samples: writes every latency after the warm-up to FILE,"
                               " in ms, sorted, one a line.\n"
                               "--dump: writes \"id commit_ns arrive_ns\" for every row"
                               " (CLOCK_MONOTONIC, 0: never\nread), to split the latency with"
                               " the relay's own times.\n");
                        return 1;
                default:
                        return -1;
                }
        }
        if (bad || cfg->conninfo == NULL || cfg->brokers == NULL || cfg->topic == NULL ||
            cfg->warmup >= cfg->seconds || (cfg->no_consumer && cfg->progress_topic != NULL)) {
                fprintf(stderr, "load: needs --conninfo, --brokers, --topic, valid numbers,"
                                " --warmup < --seconds and not both --no-consumer and"
                                " --progress-topic\n");
                return -1;
        }
        return 0;
}

int bench_cmd_load(int argc, char **argv)
{
        struct load_cfg cfg = {.conninfo = getenv("OUTBOX_DATABASE_URL"),
                               .brokers = getenv("OUTBOX_KAFKA_BROKERS"),
                               .rate = 1000,
                               .seconds = 30,
                               .warmup = 2,
                               .grace = 10,
                               .writers = 8,
                               .accounts = 100000,
                               .keys = 1000,
                               .fetch_wait_ms = 1,
                               .isolation = "read_committed"};
        struct load L = {.cfg = &cfg, .err_mu = PTHREAD_MUTEX_INITIALIZER};
        struct writer_arg wa[LOAD_MAX_WRITERS];
        pthread_t wt[LOAD_MAX_WRITERS], ct;
        struct consumer_arg ca = {.L = &L};
        char errbuf[512] = "";
        PGconn *conn = NULL;
        PGresult *res = NULL;
        long started = 0;
        int consumer_started = 0, rc = 1;

        rc = parse_args(argc, argv, &cfg);
        if (rc != 0)
                return rc > 0 ? 0 : 2;
        rc = 1;
        /* Every id allocated from here on is above base_id. */
        if (bench_pg_connect(cfg.conninfo, &conn, errbuf, sizeof(errbuf)) != 0)
                goto out;
        res = PQexec(conn, "SELECT nextval(pg_get_serial_sequence('outbox.events', 'id'))");
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                snprintf(errbuf, sizeof(errbuf), "%s", PQresultErrorMessage(res));
                goto out;
        }
        L.base_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        L.cap = (size_t)(cfg.rate * cfg.seconds * 1.05) + (size_t)cfg.writers * 4 + 1024;
        L.commit_ns = calloc(L.cap, sizeof(int64_t));
        L.commit_dur_ns = calloc(L.cap, sizeof(int64_t));
        L.arrive_ns = calloc(L.cap, sizeof(int64_t));
        if (cfg.progress_topic != NULL)
                L.data_ns = calloc(L.cap, sizeof(int64_t));
        if (L.commit_ns == NULL || L.commit_dur_ns == NULL || L.arrive_ns == NULL ||
            (cfg.progress_topic != NULL && L.data_ns == NULL)) {
                snprintf(errbuf, sizeof(errbuf), "out of memory");
                goto out;
        }
        if (!cfg.no_consumer) {
                ca.rk =
                    bench_consumer_new(cfg.brokers, cfg.topic, cfg.progress_topic,
                                       cfg.fetch_wait_ms, cfg.isolation, errbuf, sizeof(errbuf));
                if (ca.rk == NULL)
                        goto out;
        }
        atomic_store(&L.writers_left, (int)cfg.writers);
        /* Connecting the writers takes a moment; the schedule starts after. */
        L.t0 = bench_now_ns(CLOCK_MONOTONIC) + 300 * 1000000LL;
        L.t_end = L.t0 + (int64_t)(cfg.seconds * 1e9);
        if (!cfg.no_consumer) {
                if (pthread_create(&ct, NULL, consumer_main, &ca) != 0) {
                        snprintf(errbuf, sizeof(errbuf), "cannot start the consumer thread");
                        goto out;
                }
                consumer_started = 1;
        }
        for (; started < cfg.writers; started++) {
                wa[started] = (struct writer_arg){.L = &L, .index = started};
                if (pthread_create(&wt[started], NULL, writer_main, &wa[started]) != 0) {
                        set_error(&L, "%s", "cannot start a writer thread");
                        atomic_fetch_sub(&L.writers_left, (int)(cfg.writers - started));
                        break;
                }
        }
        for (long i = 0; i < started; i++)
                pthread_join(wt[i], NULL);
        if (consumer_started)
                pthread_join(ct, NULL);
        consumer_started = 0;
        if (atomic_load(&L.failed)) {
                fprintf(stderr, "load: %s\n", L.err);
                errbuf[0] = '\0';
                goto out;
        }
        if (report(&L) != 0 || (cfg.dump != NULL && dump(&L, cfg.dump) != 0))
                goto out;
        if (L.consumer_errors > 0)
                fprintf(stderr, "load: %ld consumer errors\n", L.consumer_errors);
        rc = 0;
out:
        if (consumer_started) {
                atomic_store(&L.writers_left, 0);
                pthread_join(ct, NULL);
        }
        if (rc != 0 && errbuf[0] != '\0')
                fprintf(stderr, "load: %s\n", errbuf);
        if (ca.rk != NULL) {
                rd_kafka_consumer_close(ca.rk);
                rd_kafka_destroy(ca.rk);
        }
        PQclear(res);
        PQfinish(conn);
        free(L.commit_ns);
        free(L.commit_dur_ns);
        free(L.arrive_ns);
        free(L.data_ns);
        return rc;
}
