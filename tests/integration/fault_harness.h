/* fault_harness: what the fault-injection tests share. Writer threads that
 * keep inserting outbox rows (some in rolled-back transactions) while a
 * fault is injected, a checker that reads the whole topic back with an
 * independent consumer and compares it with the database, and the report
 * lines that scripts/fault-report.sh turns into docs/FAULTS.md. */
#ifndef OUTBOX_TEST_FAULT_HARNESS_H
#define OUTBOX_TEST_FAULT_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

/* ---- writers ---- */

struct fh_writers_opts {
        const char *conninfo;
        const char *topic;
        int writers;      /* threads, each with its own connection and its own keys */
        int keys;         /* keys per writer ("w<writer>-<n>") */
        long long events; /* committed rows to write, in all */
        int rate;         /* rows per second in all; 0: as fast as possible */
        int rollback_pct; /* share of transactions rolled back, 0 to 100 */
        int max_tx_rows;  /* each transaction inserts 1 to max_tx_rows rows */
};

struct fh_writer_stats {
        long long committed;       /* rows whose COMMIT was acknowledged */
        long long rolled_back;     /* rows inserted by transactions rolled back */
        long long uncertain;       /* rows whose COMMIT got no answer (server lost) */
        long long transactions;    /* attempted, in all */
        long long connection_errs; /* transactions cut by a lost connection */
        char error[256];           /* first unexpected error; "" when none */
};

struct fh_writers;

/* Starts the writer threads; they stop once `events` rows are committed.
 * A lost or refused connection is retried (the server may be down on
 * purpose); the outcome of a COMMIT cut short is left to the database. */
struct fh_writers *fh_writers_start(const struct fh_writers_opts *o);
/* Rows committed so far (acknowledged), in all. */
long long fh_writers_committed(struct fh_writers *w);
/* Waits until the writers are done or timeout_ms passed, then stops and
 * joins them and frees w. Aborts the test when they did not finish or hit
 * an unexpected error. */
void fh_writers_finish(struct fh_writers *w, int timeout_ms, struct fh_writer_stats *st);

/* ---- waiting for the relay ---- */

/* Rows marked sent so far. */
long long fh_sent(PGconn *c);
/* Polls until n rows are sent or timeout_ms passes; returns the last count. */
long long fh_wait_sent(PGconn *c, long long n, int timeout_ms);
/* Polls until one more row than now is marked sent; returns the ms it
 * took, or -1 after timeout_ms. */
long long fh_wait_delivery(PGconn *c, int timeout_ms);
/* Polls until no row is pending; returns the ms it took, or -1. */
long long fh_wait_drained(PGconn *c, int timeout_ms);
/* The relay's database sessions (application_name outbox-relay/<instance>
 * for the reader, outbox-relay-writer/<instance> for the others). */
long long fh_relay_sessions(PGconn *c);
/* Polls until the relay has no session left (a killed relay's backends
 * may still be finishing a statement); returns 0 or -1. */
int fh_wait_no_relay_session(PGconn *c, int timeout_ms);
/* Polls until a relay's reader session exists, i.e. it is connected and
 * has set up its signal handling; returns 0 or -1. */
int fh_wait_relay_connected(PGconn *c, int timeout_ms);
/* Open file descriptors of a process (/proc/<pid>/fd), or -1. */
int fh_count_fds(int pid);
/* A pseudo-random integer in [lo, hi] from the xorshift state *seed
 * (never 0); the seed is reported so a run can be repeated. */
int fh_rand(uint64_t *seed, int lo, int hi);
/* A seed from the clock and the pid, never 0. */
uint64_t fh_seed(void);

/* ---- the relay process ---- */

struct fx_relay;
/* Frees the relay (fx_relay_free); OUTBOX_FAULT_KEEP_LOGS=<dir> first
 * keeps its log there as <name>-<pid>.log, for diagnosis. */
void fh_relay_free(struct fx_relay *r, const char *name);
/* The last 1500 bytes of the relay's log, for an abort message (malloc'ed). */
char *fh_relay_log_tail(const struct fx_relay *r);
/* The number in the first `"field":N` of the relay's log, or -1. */
long long fh_relay_log_number(const struct fx_relay *r, const char *field);
/* How many times `what` occurs in the relay's log. */
int fh_relay_log_count(const struct fx_relay *r, const char *what);
/* Polls until `what` occurs n times in the log or timeout_ms passed. */
void fh_wait_relay_log(const struct fx_relay *r, const char *what, int n, int timeout_ms);
/* SIGTERM; aborts unless it exits 0 within timeout_ms. Returns the ms it took. */
long long fh_relay_stop(struct fx_relay *r, int timeout_ms);
/* A "kB" field of /proc/<pid>/status (VmRSS, VmHWM), or -1. */
long fh_proc_kb(int pid, const char *field);

/* ---- results ---- */

#define FH_MAX_SAMPLES 256

struct fh_result {
        char name[64];              /* case, one word */
        char fault[384];            /* what was done, for the table */
        long long committed;        /* rows in outbox.events + outbox.dead_letters */
        long long rolled_back;      /* rows the writers rolled back */
        long long messages;         /* Kafka messages read */
        long long lost;             /* in outbox.events but never in Kafka */
        long long duplicates;       /* messages beyond the first of an event */
        long long phantoms;         /* messages of no committed row (rolled back included) */
        long long order_violations; /* per-key first appearances out of id order */
        long long key_mismatch;     /* message key differs from its row's */
        long long dead_letters;
        int faults;                           /* times the fault was injected */
        long long recover_ms[FH_MAX_SAMPLES]; /* per fault: end of fault to next delivery */
        int n_recover;
        long long drain_ms; /* end of the last fault (and writes) to an empty backlog */
        char notes[512];
        char broker[48]; /* fh_broker() when the result was made */
};

/* In an exactly-once run (OUTBOX_FAULT_EOS=1) names get "-eos", and
 * fh_check sees the topic as a read_committed consumer would. */
int fh_eos(void);
struct fx_apache;
/* Which brokers the cases run against, for the report's Broker column and
 * for fh_check's read_committed view: the Apache Kafka cluster k, or with
 * NULL (the default) the dev Kafka, librdkafka's mock cluster. */
void fh_use_apache(struct fx_apache *k);
/* "Apache Kafka 4.4.0" or "librdkafka 2.0.2 mock". */
const char *fh_broker(void);
void fh_result_init(struct fh_result *r, const char *name, const char *fault);
void fh_result_recovery(struct fh_result *r, long long ms);
/* Reads `topic` from the beginning (all partitions) and compares with the
 * database: fills committed, messages, lost, duplicates, phantoms,
 * order_violations, key_mismatch and dead_letters. Per-key order is the
 * first appearance of each event: those must ascend by id within a key. */
void fh_check(PGconn *c, const char *brokers, const char *topic, struct fh_result *r);
/* The same over several topics (NULL-terminated): every committed row must
 * be in one of them. */
void fh_check_topics(PGconn *c, const char *brokers, const char *const topics[],
                     struct fh_result *r);
/* Appends r as one tab-separated line to $OUTBOX_FAULT_REPORT (default:
 * fault-report.tsv in the build directory). `ok` says whether the case's
 * own assertions passed. */
void fh_report(const struct fh_result *r, int ok);
/* Exactly-once runs: moves the messages a read_committed consumer would
 * see (those a progress record lists) to the front of msgs, keeping their
 * order, and returns how many; notes the others in r. */
/* The dev Kafka's progress topic, read while a case runs (fault_tap.c):
 * the mock drops a partition's oldest records past about 5 MB, which the
 * checker needs. start stops the last tap; before copies the records of
 * partition 0 of topic below offset first (malloc'ed, fx_msgs_free) and
 * returns how many it has (*tapped: whether it reads topic at all). */
void fh_tap_start(const char *brokers, const char *topic);
void fh_tap_stop(void);
struct fx_msg;
size_t fh_tap_before(const char *topic, int64_t first, struct fx_msg **out, int *tapped);
size_t fh_eos_visible(const char *brokers, const char *topic, struct fx_msg *msgs, size_t n,
                      struct fh_result *r);
/* Per-key order under at-least-once: the first appearance of each event,
 * in log order (pos), its message and outbox id. */
struct fh_first {
        const struct fx_msg *m;
        size_t pos;
        long long id;
};
/* Sorts firsts by key and log order and counts the neighbours of one key
 * whose ids do not ascend; the first is described, appended to note (of
 * cap bytes) unless note is NULL. */
long long fh_key_order(struct fh_first *firsts, size_t n, char *note, size_t cap);
/* Reports r, then asserts nothing lost, no phantom or rolled-back message,
 * per-key order kept, keys intact and no dead letter. */
void fh_report_and_assert(const struct fh_result *r);

#endif
