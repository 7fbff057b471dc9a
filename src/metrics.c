/* metrics: keeps the numbers operators alert on and writes them in the
 * Prometheus text exposition format (version 0.0.4). Names follow the
 * Prometheus conventions: outbox_relay_..._total for counters, base units
 * (seconds) in the name. */
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "outbox_relay_"

struct topic_counts {
        char *topic;
        uint64_t n[METRICS_TOPIC_COUNTERS];
};

struct broker_rtt {
        char *broker;
        double seconds;
};

static const double batch_bounds[] = {1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000};
static const double ack_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                    0.25,   0.5,   1,      2.5,   5,    10,    30,   60};
/* created_at to ack: what a consumer waits for an event, from the
 * writer's transaction to Kafka; up to an hour, for retries and outages. */
static const double lag_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                    2.5,   5,    10,    30,   60,  300,  900, 3600};
#define MAX_BOUNDS 16

struct histogram {
        const double *bounds;
        size_t n_bounds;
        uint64_t buckets[MAX_BOUNDS]; /* not cumulative: rendered cumulatively */
        uint64_t count;
        double sum;
};

/* Open addressing over the topics, at most half full: slot i holds the
 * index + 1 of a topic, 0 when empty. Topics are never removed. */
#define TOPIC_SLOTS 256
_Static_assert(TOPIC_SLOTS >= 2 * METRICS_MAX_TOPICS, "the topic hash must stay half empty");

struct metrics {
        struct topic_counts *topics; /* in the order first seen */
        size_t n_topics;
        size_t last_topic; /* the hot path usually repeats a topic */
        unsigned short slots[TOPIC_SLOTS];
        struct topic_counts other; /* every topic past METRICS_MAX_TOPICS */
        int other_used;
        uint64_t statements[METRICS_STATEMENTS];
        uint64_t counters[METRICS_COUNTERS];
        double gauges[METRICS_GAUGES];
        struct histogram hists[METRICS_HISTOGRAMS];
        struct broker_rtt *brokers;
        size_t n_brokers;
        /* metrics_share: updated by a relay's thread, rendered by another. */
        int shared;
        pthread_mutex_t lock;
};

static void lock(const struct metrics *m)
{
        if (m->shared)
                pthread_mutex_lock((pthread_mutex_t *)&m->lock);
}

static void unlock(const struct metrics *m)
{
        if (m->shared)
                pthread_mutex_unlock((pthread_mutex_t *)&m->lock);
}

static const struct {
        const char *name, *help;
} topic_info[METRICS_TOPIC_COUNTERS] = {
    {"messages_published_total", "Messages acknowledged by Kafka and marked sent."},
    {"messages_failed_total", "Publish attempts that failed for a reason of the message."},
    {"messages_retried_total", "Failed messages scheduled for another attempt."},
    {"messages_dead_lettered_total", "Messages moved to the dead-letter table."},
};

static const char *const statement_names[METRICS_STATEMENTS] = {"fetch", "mark", "record_failure",
                                                                "other"};

static const struct {
        const char *name, *help;
} counter_info[METRICS_COUNTERS] = {
    {"producer_rebuilds_total", "Kafka producers rebuilt after a fatal error."},
    {"database_reconnects_total", "Successful database connections after the first."},
    {"retention_deleted_rows_total", "Sent rows deleted by retention."},
    {"transactions_committed_total", "Kafka transactions committed (--exactly-once)."},
    {"transactions_aborted_total",
     "Kafka transactions aborted (--exactly-once); their rows are published again."},
    {"recovered_rows_total",
     "Rows marked sent at takeover from the last progress record (--exactly-once): Kafka had "
     "them, the database did not know yet."},
};

static const struct {
        const char *name, *help;
} gauge_info[METRICS_GAUGES] = {
    {"pending_rows", "Rows waiting to be published."},
    {"oldest_pending_age_seconds", "Age of the oldest pending row: the outbox lag."},
    {"database_connected", "1 when connected to the database."},
    {"kafka_connected", "1 when at least one Kafka broker is up."},
    {"leader", "1 when this relay holds the leader lock and publishes; 0 on a standby."},
    {"kafka_queue_messages", "Messages in librdkafka's queues, waiting or in flight."},
    {"in_flight_batches", "Batches fetched and not yet marked."},
    {"dead_letter_rows",
     "Rows in the dead-letter table now (requeued or deleted ones leave it), counted every "
     "10 s."},
    {"leader_lock_foreign",
     "1 on a standby when the leader lock is held by a session that is not a relay (its "
     "application_name does not start with outbox-relay/): no relay publishes."},
};

static const struct {
        const char *name, *help;
} hist_info[METRICS_HISTOGRAMS] = {
    {"batch_rows", "Rows per batch fetched from the outbox."},
    {"publish_ack_seconds", "Time from handing a message to the producer to Kafka's ack."},
    {"event_lag_seconds",
     "Time from a row's created_at (its transaction's start) to Kafka's ack, by the relay's "
     "clock; replayed rows are left out."},
};

struct metrics *metrics_new(void)
{
        struct metrics *m = calloc(1, sizeof(*m));

        if (m == NULL)
                return NULL;
        m->hists[METRICS_BATCH_ROWS].bounds = batch_bounds;
        m->hists[METRICS_BATCH_ROWS].n_bounds = sizeof(batch_bounds) / sizeof(batch_bounds[0]);
        m->hists[METRICS_ACK_SECONDS].bounds = ack_bounds;
        m->hists[METRICS_ACK_SECONDS].n_bounds = sizeof(ack_bounds) / sizeof(ack_bounds[0]);
        m->hists[METRICS_LAG_SECONDS].bounds = lag_bounds;
        m->hists[METRICS_LAG_SECONDS].n_bounds = sizeof(lag_bounds) / sizeof(lag_bounds[0]);
        if (pthread_mutex_init(&m->lock, NULL) != 0) {
                free(m);
                return NULL;
        }
        return m;
}

void metrics_share(struct metrics *m)
{
        m->shared = 1;
}

void metrics_free(struct metrics *m)
{
        if (m == NULL)
                return;
        for (size_t i = 0; i < m->n_topics; i++)
                free(m->topics[i].topic);
        for (size_t i = 0; i < m->n_brokers; i++)
                free(m->brokers[i].broker);
        free(m->topics);
        free(m->brokers);
        pthread_mutex_destroy(&m->lock);
        free(m);
}

static size_t topic_hash(const char *topic)
{
        uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

        for (const unsigned char *p = (const unsigned char *)topic; *p != '\0'; p++)
                h = (h ^ *p) * 0x100000001b3ULL;
        return (size_t)(h ^ (h >> 32));
}

/* The counts of topic: found, added while there is room, else the shared
 * "(other)" series (also when out of memory: a lost label beats a crash). */
static struct topic_counts *topic_counts(struct metrics *m, const char *topic)
{
        size_t i = topic_hash(topic) & (TOPIC_SLOTS - 1);
        char *copy;

        for (; m->slots[i] != 0; i = (i + 1) & (TOPIC_SLOTS - 1)) {
                size_t t = m->slots[i] - 1u;

                if (strcmp(m->topics[t].topic, topic) == 0) {
                        m->last_topic = t;
                        return &m->topics[t];
                }
        }
        if (m->n_topics == METRICS_MAX_TOPICS || (copy = strdup(topic)) == NULL) {
                m->other_used = 1;
                return &m->other;
        }
        if (m->topics == NULL &&
            (m->topics = calloc(METRICS_MAX_TOPICS, sizeof(*m->topics))) == NULL) {
                free(copy);
                m->other_used = 1;
                return &m->other;
        }
        m->topics[m->n_topics].topic = copy;
        m->slots[i] = (unsigned short)(m->n_topics + 1);
        m->last_topic = m->n_topics++;
        return &m->topics[m->last_topic];
}

void metrics_topic_add(struct metrics *m, enum metrics_topic_counter c, const char *topic,
                       uint64_t n)
{
        lock(m);
        if (m->n_topics > 0 && strcmp(m->topics[m->last_topic].topic, topic) == 0)
                m->topics[m->last_topic].n[c] += n;
        else
                topic_counts(m, topic)->n[c] += n;
        unlock(m);
}

size_t metrics_topics(const struct metrics *m)
{
        size_t n;

        lock(m);
        n = m->n_topics;
        unlock(m);
        return n;
}

void metrics_statement_error(struct metrics *m, enum metrics_statement s)
{
        lock(m);
        m->statements[s]++;
        unlock(m);
}

void metrics_add(struct metrics *m, enum metrics_counter c, uint64_t n)
{
        lock(m);
        m->counters[c] += n;
        unlock(m);
}

void metrics_set(struct metrics *m, enum metrics_gauge g, double v)
{
        lock(m);
        m->gauges[g] = v;
        unlock(m);
}

double metrics_get(const struct metrics *m, enum metrics_gauge g)
{
        double v;

        lock(m);
        v = m->gauges[g];
        unlock(m);
        return v;
}

void metrics_observe(struct metrics *m, enum metrics_histogram h, double v)
{
        struct histogram *hg = &m->hists[h];
        size_t i;

        for (i = 0; i < hg->n_bounds && v > hg->bounds[i]; i++)
                ;
        lock(m);
        if (i < hg->n_bounds)
                hg->buckets[i]++;
        hg->count++;
        hg->sum += v;
        unlock(m);
}

void metrics_broker_rtt(struct metrics *m, const char *broker, double seconds)
{
        struct broker_rtt *grown;
        char *copy;

        lock(m);
        for (size_t i = 0; i < m->n_brokers; i++) {
                if (strcmp(m->brokers[i].broker, broker) == 0) {
                        m->brokers[i].seconds = seconds;
                        goto out;
                }
        }
        copy = strdup(broker);
        grown = realloc(m->brokers, (m->n_brokers + 1) * sizeof(*grown));
        if (grown != NULL)
                m->brokers = grown;
        if (copy == NULL || grown == NULL) {
                free(copy);
                goto out;
        }
        m->brokers[m->n_brokers].broker = copy;
        m->brokers[m->n_brokers].seconds = seconds;
        m->n_brokers++;
out:
        unlock(m);
}

/* Label values may hold any text: escape as the format requires. */
static void put_label(FILE *f, const char *v)
{
        for (; *v != '\0'; v++) {
                if (*v == '\\' || *v == '"')
                        fputc('\\', f);
                if (*v == '\n')
                        fputs("\\n", f);
                else
                        fputc(*v, f);
        }
}

static void header(FILE *f, const char *name, const char *help, const char *type)
{
        fprintf(f, "# HELP " PREFIX "%s %s\n# TYPE " PREFIX "%s %s\n", name, help, name, type);
}

/* A series' name and labels: outbox="<name>" first when rendering the
 * outboxes of --outboxes-file, then label="value" when given (value
 * escaped), then le="<le>" when given. */
static void series(FILE *f, const char *name, const char *suffix, const char *outbox,
                   const char *label, const char *value, const char *le)
{
        int any = 0;

        fprintf(f, PREFIX "%s%s", name, suffix);
        if (outbox != NULL) {
                fputs("{outbox=\"", f);
                put_label(f, outbox);
                fputc('"', f);
                any = 1;
        }
        if (label != NULL) {
                fprintf(f, "%s%s=\"", any ? "," : "{", label);
                put_label(f, value);
                fputc('"', f);
                any = 1;
        }
        if (le != NULL) {
                fprintf(f, "%sle=\"%s\"", any ? "," : "{", le);
                any = 1;
        }
        fputs(any ? "} " : " ", f);
}

static void render_histogram(FILE *f, const struct histogram *hg, const char *name,
                             const char *outbox)
{
        uint64_t cumulative = 0;
        char le[32];

        for (size_t i = 0; i < hg->n_bounds; i++) {
                cumulative += hg->buckets[i];
                snprintf(le, sizeof(le), "%g", hg->bounds[i]);
                series(f, name, "_bucket", outbox, NULL, NULL, le);
                fprintf(f, "%llu\n", (unsigned long long)cumulative);
        }
        series(f, name, "_bucket", outbox, NULL, NULL, "+Inf");
        fprintf(f, "%llu\n", (unsigned long long)hg->count);
        series(f, name, "_sum", outbox, NULL, NULL, NULL);
        fprintf(f, "%.6f\n", hg->sum);
        series(f, name, "_count", outbox, NULL, NULL, NULL);
        fprintf(f, "%llu\n", (unsigned long long)hg->count);
}

/* One family's series of one outbox (o NULL: no label); fam picks the
 * counter, gauge or histogram of the kind kind. */
enum family_kind { FAM_TOPIC, FAM_STATEMENTS, FAM_COUNTER, FAM_GAUGE, FAM_BROKERS, FAM_HISTOGRAM };

static void render_family(FILE *f, const struct metrics *m, const char *o, enum family_kind kind,
                          int fam)
{
        switch (kind) {
        case FAM_TOPIC:
                for (size_t i = 0; i < m->n_topics; i++) {
                        series(f, topic_info[fam].name, "", o, "topic", m->topics[i].topic, NULL);
                        fprintf(f, "%llu\n", (unsigned long long)m->topics[i].n[fam]);
                }
                if (m->other_used) {
                        series(f, topic_info[fam].name, "", o, "topic", METRICS_OTHER_TOPIC, NULL);
                        fprintf(f, "%llu\n", (unsigned long long)m->other.n[fam]);
                }
                break;
        case FAM_STATEMENTS:
                for (int s = 0; s < METRICS_STATEMENTS; s++) {
                        series(f, "statement_errors_total", "", o, "statement", statement_names[s],
                               NULL);
                        fprintf(f, "%llu\n", (unsigned long long)m->statements[s]);
                }
                break;
        case FAM_COUNTER:
                series(f, counter_info[fam].name, "", o, NULL, NULL, NULL);
                fprintf(f, "%llu\n", (unsigned long long)m->counters[fam]);
                break;
        case FAM_GAUGE:
                series(f, gauge_info[fam].name, "", o, NULL, NULL, NULL);
                fprintf(f, "%.17g\n", m->gauges[fam]);
                break;
        case FAM_BROKERS:
                for (size_t i = 0; i < m->n_brokers; i++) {
                        series(f, "kafka_broker_rtt_seconds", "", o, "broker", m->brokers[i].broker,
                               NULL);
                        fprintf(f, "%.6f\n", m->brokers[i].seconds);
                }
                break;
        case FAM_HISTOGRAM:
                render_histogram(f, &m->hists[fam], hist_info[fam].name, o);
                break;
        }
}

/* Each family once (HELP and TYPE may appear once), with the series of
 * every outbox under it. */
static void render_all(FILE *f, const struct metrics *const *ms, const char *const *names, size_t n)
{
#define EVERY_OUTBOX(kind, fam)                                                                    \
        for (size_t k = 0; k < n; k++)                                                             \
        render_family(f, ms[k], names != NULL ? names[k] : NULL, (kind), (fam))
        for (int c = 0; c < METRICS_TOPIC_COUNTERS; c++) {
                header(f, topic_info[c].name, topic_info[c].help, "counter");
                EVERY_OUTBOX(FAM_TOPIC, c);
        }
        header(f, "statement_errors_total",
               "Statements that failed with the database connection fine (each is retried with "
               "a backoff).",
               "counter");
        EVERY_OUTBOX(FAM_STATEMENTS, 0);
        for (int c = 0; c < METRICS_COUNTERS; c++) {
                header(f, counter_info[c].name, counter_info[c].help, "counter");
                EVERY_OUTBOX(FAM_COUNTER, c);
        }
        for (int g = 0; g < METRICS_GAUGES; g++) {
                header(f, gauge_info[g].name, gauge_info[g].help, "gauge");
                EVERY_OUTBOX(FAM_GAUGE, g);
        }
        header(f, "kafka_broker_rtt_seconds", "Average round-trip time to each broker.", "gauge");
        EVERY_OUTBOX(FAM_BROKERS, 0);
        for (int h = 0; h < METRICS_HISTOGRAMS; h++) {
                header(f, hist_info[h].name, hist_info[h].help, "histogram");
                EVERY_OUTBOX(FAM_HISTOGRAM, h);
        }
#undef EVERY_OUTBOX
}

char *metrics_render_many(const struct metrics *const *ms, const char *const *names, size_t n,
                          size_t *len)
{
        char *buf = NULL;
        FILE *f = open_memstream(&buf, len);

        if (f == NULL)
                return NULL;
        for (size_t k = 0; k < n; k++)
                lock(ms[k]);
        render_all(f, ms, names, n);
        for (size_t k = 0; k < n; k++)
                unlock(ms[k]);
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

char *metrics_render(const struct metrics *m, size_t *len)
{
        return metrics_render_many(&m, NULL, 1, len);
}
