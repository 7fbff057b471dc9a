/* outbox-bench: the benchmark's measuring tools (bench/run.sh drives them).
 * Shared helpers: clocks, /proc readers, percentiles, option parsing, and
 * the entry point of each subcommand. Results go to stdout as "name value" lines. */
#ifndef OUTBOX_BENCH_H
#define OUTBOX_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>

/* Nanoseconds on the given clock. */
int64_t bench_now_ns(clockid_t clock);
/* Sleeps until the CLOCK_MONOTONIC time t_ns (returns at once if it passed). */
void bench_sleep_until(int64_t t_ns);

/* CPU seconds (user + system, all threads) of a process or one of its
 * threads (tid 0: the whole process); children reaped by it when
 * with_children. 0 or -1 if it is gone. */
int bench_proc_cpu(pid_t pid, pid_t tid, int with_children, double *sec);
/* A "Name:  N kB" field of /proc/<pid>/status (VmRSS, VmHWM); 0 or -1. */
int bench_proc_status_kb(pid_t pid, const char *field, long *kb);
/* Seconds since boot at which the process started (resolution: clock ticks). */
int bench_proc_start_s(pid_t pid, double *sec);

/* Machine-wide jiffies from /proc/stat: busy (everything but idle and
 * iowait), iowait, softirq (charged to no process: loopback networking
 * is much of it), and total. */
struct bench_cpustat {
        unsigned long long busy, iowait, softirq, total;
};
int bench_cpustat_read(struct bench_cpustat *s);

/* Sorts v (n values, nanoseconds) and returns its p-quantile (nearest rank)
 * in milliseconds; 0 when n is 0. */
void bench_sort_ns(int64_t *v, size_t n);
double bench_quantile_ms(const int64_t *sorted, size_t n, double p);

/* Strict number parsing for options: 0 or -1. */
int bench_parse_long(const char *s, long min, long max, long *out);
int bench_parse_double(const char *s, double min, double max, double *out);

/* Connects with libpq and checks the status; 0 or -1 with errbuf filled. */
int bench_pg_connect(const char *conninfo, PGconn **out, char *errbuf, size_t errsz);
/* Runs a command or query and checks it succeeded; the result is cleared. */
int bench_pg_exec(PGconn *conn, const char *sql, char *errbuf, size_t errsz);

/* Kafka clients (bench_kafka.c, bench_load.c). A producer with the relay's
 * settings (idempotent, acks=all, linger.ms=0, five requests in flight, no
 * compression), -X name=value properties after them, and the delivery
 * report callback dr with opaque; NULL with errbuf filled. */
typedef void bench_dr_fn(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
rd_kafka_t *bench_kafka_producer(const char *brokers, char **props, int nprops, bench_dr_fn *dr,
                                 void *opaque, char *errbuf, size_t errsz);
/* An outbox-like JSON value of exactly value_bytes (>= 64), for bench_produce. */
char *bench_value_new(long value_bytes);
/* Produces message i as the relay would an outbox row with id i: key
 * customer-<i % keys>, the value (its order_id set to i), and the
 * event_id, event_type and outbox_id headers. */
rd_kafka_resp_err_t bench_produce(rd_kafka_t *rk, const char *topic, char *value, long value_bytes,
                                  long i, long keys, void *msg_opaque);
/* A consumer assigned to every partition of topic (and partition 0 of
 * progress_topic, unless NULL) at its current end, so it reads exactly what
 * is written from now on; isolation is its isolation.level (read_committed,
 * librdkafka's default, or read_uncommitted; the dev Kafka ignores it);
 * NULL with errbuf filled. */
rd_kafka_t *bench_consumer_new(const char *brokers, const char *topic, const char *progress_topic,
                               long fetch_wait_ms, const char *isolation, char *errbuf,
                               size_t errsz);
/* The outbox id of a message (its outbox_id header), or -1. */
long long bench_header_id(rd_kafka_message_t *m);

/* Subcommands: each parses its own options (argv[0] is the subcommand) and
 * returns a process exit status. */
int bench_cmd_pg_ceiling(int argc, char **argv);
int bench_cmd_kafka_ceiling(int argc, char **argv);
int bench_cmd_hwm(int argc, char **argv);
int bench_cmd_topics(int argc, char **argv);
int bench_cmd_load(int argc, char **argv);
int bench_cmd_split(int argc, char **argv);
int bench_cmd_monitor(int argc, char **argv);
int bench_cmd_waits(int argc, char **argv);
int bench_cmd_kafka_latency(int argc, char **argv);

#endif
