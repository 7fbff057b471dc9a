/* outbox-bench kafka-latency: what the broker (the dev Kafka or Apache Kafka) and the consumer add
 * to the end-to-end latency (figure 3), without PostgreSQL or the relay. One thread produces
 * outbox-like messages at a fixed rate with the relay's producer settings, another serves the
 * delivery reports as they come (as the relay's loop does), and a consumer configured as `load`'s
 * notes when each arrives. */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "bench.h"

struct klat {
        const char *brokers, *topic;
        double rate, seconds, warmup;
        long keys, value_bytes, fetch_wait_ms;
        long n;                                 /* messages scheduled */
        int64_t *produce_ns, *ack_ns, *read_ns; /* by message index, CLOCK_MONOTONIC */
        atomic_long acked, failed, read;
        atomic_int stop_reports, stop_reads;
        long unmatched, duplicates, consumer_errors;
        char first_error[256];
};

static void on_report(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        struct klat *K = opaque;
        long i = (long)(intptr_t)m->_private - 1;

        (void)rk;
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                if (atomic_fetch_add(&K->failed, 1) == 0)
                        snprintf(K->first_error, sizeof(K->first_error), "%s",
                                 rd_kafka_err2str(m->err));
                return;
        }
        K->ack_ns[i] = bench_now_ns(CLOCK_MONOTONIC);
        atomic_fetch_add(&K->acked, 1);
}

struct thread_arg {
        struct klat *K;
        rd_kafka_t *rk;
};

/* Delivery reports, served the moment they arrive. */
static void *reports_main(void *arg)
{
        struct thread_arg *ta = arg;

        while (!atomic_load(&ta->K->stop_reports))
                rd_kafka_poll(ta->rk, 100);
        return NULL;
}

static void *reads_main(void *arg)
{
        struct thread_arg *ta = arg;
        struct klat *K = ta->K;

        while (!atomic_load(&K->stop_reads)) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(ta->rk, 20);
                long long id;

                if (m == NULL)
                        continue;
                if (m->err) {
                        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                K->consumer_errors++;
                } else if ((id = bench_header_id(m)) < 1 || id > K->n) {
                        K->unmatched++;
                } else if (K->read_ns[id - 1] != 0) {
                        K->duplicates++;
                } else {
                        K->read_ns[id - 1] = bench_now_ns(CLOCK_MONOTONIC);
                        atomic_fetch_add(&K->read, 1);
                }
                rd_kafka_message_destroy(m);
        }
        return NULL;
}

/* Percentiles of to - from over the messages produced after the warm-up
 * that have both times. */
static void print_span(const struct klat *K, const char *name, const int64_t *from,
                       const int64_t *to, int64_t *scratch)
{
        int64_t after = K->produce_ns[0] + (int64_t)(K->warmup * 1e9);
        size_t n = 0;

        for (long i = 0; i < K->n; i++)
                if (from[i] != 0 && to[i] != 0 && K->produce_ns[i] >= after)
                        scratch[n++] = to[i] > from[i] ? to[i] - from[i] : 0;
        bench_sort_ns(scratch, n);
        printf("%s.samples %zu\n%s.p50_ms %.3f\n%s.p99_ms %.3f\n%s.p999_ms %.3f\n%s.max_ms %.3f\n",
               name, n, name, bench_quantile_ms(scratch, n, 0.5), name,
               bench_quantile_ms(scratch, n, 0.99), name, bench_quantile_ms(scratch, n, 0.999),
               name, bench_quantile_ms(scratch, n, 1.0));
}

static void stop_threads(struct klat *K, pthread_t *rt, int *reports_started, pthread_t *ct,
                         int *reads_started)
{
        atomic_store(&K->stop_reports, 1);
        atomic_store(&K->stop_reads, 1);
        if (*reports_started)
                pthread_join(*rt, NULL);
        if (*reads_started)
                pthread_join(*ct, NULL);
        *reports_started = *reads_started = 0;
}

static int parse_args(int argc, char **argv, struct klat *K)
{
        static const struct option opts[] = {{"brokers", required_argument, NULL, 'b'},
                                             {"topic", required_argument, NULL, 't'},
                                             {"rate", required_argument, NULL, 'r'},
                                             {"seconds", required_argument, NULL, 's'},
                                             {"warmup", required_argument, NULL, 'w'},
                                             {"keys", required_argument, NULL, 'k'},
                                             {"value-bytes", required_argument, NULL, 'v'},
                                             {"fetch-wait-ms", required_argument, NULL, 'f'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
        int opt, bad = 0;

        while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (opt) {
                case 'b':
                        K->brokers = optarg;
                        break;
                case 't':
                        K->topic = optarg;
                        break;
                case 'r':
                        bad |= bench_parse_double(optarg, 0.1, 1e6, &K->rate);
                        break;
                case 's':
                        bad |= bench_parse_double(optarg, 0.1, 3600, &K->seconds);
                        break;
                case 'w':
                        bad |= bench_parse_double(optarg, 0, 3600, &K->warmup);
                        break;
                case 'k':
                        bad |= bench_parse_long(optarg, 1, 1000000000L, &K->keys);
                        break;
                case 'v':
                        bad |= bench_parse_long(optarg, 64, 1000000L, &K->value_bytes);
                        break;
                case 'f':
                        bad |= bench_parse_long(optarg, 0, 10000, &K->fetch_wait_ms);
                        break;
                case 'h':
                        printf("usage: outbox-bench kafka-latency --brokers B --topic T"
                               " --rate EV_PER_S --seconds S\n"
                               "  [--warmup S] [--keys N] [--value-bytes N]"
                               " [--fetch-wait-ms MS]\n");
                        return 1;
                default:
                        return -1;
                }
        }
        if (bad || K->brokers == NULL || K->topic == NULL || K->warmup >= K->seconds) {
                fprintf(stderr, "kafka-latency: needs --brokers, --topic, valid numbers and"
                                " --warmup < --seconds\n");
                return -1;
        }
        return 0;
}

int bench_cmd_kafka_latency(int argc, char **argv)
{
        struct klat K = {.brokers = getenv("OUTBOX_KAFKA_BROKERS"),
                         .rate = 1000,
                         .seconds = 20,
                         .warmup = 2,
                         .keys = 1000,
                         .value_bytes = 543,
                         .fetch_wait_ms = 1};
        struct thread_arg reports = {.K = &K}, reads = {.K = &K};
        pthread_t rt, ct;
        int reports_started = 0, reads_started = 0, rc;
        char errbuf[512] = "", *value = NULL;
        int64_t t0, deadline, *scratch = NULL;

        rc = parse_args(argc, argv, &K);
        if (rc != 0)
                return rc > 0 ? 0 : 2;
        rc = 1;
        K.n = (long)(K.rate * K.seconds);
        K.produce_ns = calloc((size_t)K.n, sizeof(int64_t));
        K.ack_ns = calloc((size_t)K.n, sizeof(int64_t));
        K.read_ns = calloc((size_t)K.n, sizeof(int64_t));
        scratch = calloc((size_t)K.n, sizeof(int64_t));
        value = bench_value_new(K.value_bytes);
        if (K.n < 1 || K.produce_ns == NULL || K.ack_ns == NULL || K.read_ns == NULL ||
            scratch == NULL || value == NULL) {
                snprintf(errbuf, sizeof(errbuf), "out of memory, or no message to send");
                goto out;
        }
        reports.rk =
            bench_kafka_producer(K.brokers, NULL, 0, on_report, &K, errbuf, sizeof(errbuf));
        if (reports.rk == NULL)
                goto out;
        reads.rk = bench_consumer_new(K.brokers, K.topic, NULL, K.fetch_wait_ms, "read_committed",
                                      errbuf, sizeof(errbuf));
        if (reads.rk == NULL)
                goto out;
        reports_started = pthread_create(&rt, NULL, reports_main, &reports) == 0;
        reads_started = reports_started && pthread_create(&ct, NULL, reads_main, &reads) == 0;
        if (!reads_started) {
                snprintf(errbuf, sizeof(errbuf), "cannot start a thread");
                goto out;
        }
        /* Open loop: message i is due at t0 + i / rate, however late the
         * ones before it were. */
        t0 = bench_now_ns(CLOCK_MONOTONIC) + 300 * 1000000LL;
        for (long i = 0; i < K.n; i++) {
                rd_kafka_resp_err_t err;

                bench_sleep_until(t0 + (int64_t)((double)i * 1e9 / K.rate));
                K.produce_ns[i] = bench_now_ns(CLOCK_MONOTONIC);
                err = bench_produce(reports.rk, K.topic, value, K.value_bytes, i + 1, K.keys,
                                    (void *)(intptr_t)(i + 1));
                if (err) {
                        snprintf(errbuf, sizeof(errbuf), "produce: %s", rd_kafka_err2str(err));
                        goto out;
                }
        }
        deadline = bench_now_ns(CLOCK_MONOTONIC) + 30 * 1000000000LL;
        while ((atomic_load(&K.acked) + atomic_load(&K.failed) < K.n ||
                atomic_load(&K.read) < atomic_load(&K.acked)) &&
               bench_now_ns(CLOCK_MONOTONIC) < deadline)
                bench_sleep_until(bench_now_ns(CLOCK_MONOTONIC) + 10 * 1000000LL);
        stop_threads(&K, &rt, &reports_started, &ct, &reads_started);
        if (atomic_load(&K.failed) > 0) {
                snprintf(errbuf, sizeof(errbuf), "%ld deliveries failed, first: %s",
                         atomic_load(&K.failed), K.first_error);
                goto out;
        }
        printf("klat.offered_rate %.0f\nklat.messages %ld\nklat.acked %ld\nklat.read %ld\n"
               "klat.unmatched %ld\nklat.duplicates %ld\nklat.consumer_errors %ld\n",
               K.rate, K.n, atomic_load(&K.acked), atomic_load(&K.read), K.unmatched, K.duplicates,
               K.consumer_errors);
        print_span(&K, "klat.ack", K.produce_ns, K.ack_ns, scratch);
        print_span(&K, "klat.ack_read", K.ack_ns, K.read_ns, scratch);
        print_span(&K, "klat.read", K.produce_ns, K.read_ns, scratch);
        rc = 0;
out:
        stop_threads(&K, &rt, &reports_started, &ct, &reads_started);
        if (rc != 0)
                fprintf(stderr, "kafka-latency: %s\n", errbuf);
        if (reads.rk != NULL) {
                rd_kafka_consumer_close(reads.rk);
                rd_kafka_destroy(reads.rk);
        }
        if (reports.rk != NULL)
                rd_kafka_destroy(reports.rk);
        free(value);
        free(scratch);
        free(K.produce_ns);
        free(K.ack_ns);
        free(K.read_ns);
        return rc;
}
