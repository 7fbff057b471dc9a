/* progress_reader: reads the last committed progress record of one
 * transactional.id back from partition 0 of the progress topic, in a thread
 * of its own that keeps one consumer for every read. A read creates the
 * topic when it is missing and warns when its shape is another. */
#include "progress_reader.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "config.h"
#include "kafka_conf.h"
#include "log.h"

#define PROGRESS_WINDOW   1000 /* offsets read first; doubled while not found */
#define PROGRESS_RETRY_MS 100  /* pause between attempts to locate the partition */
/* The longest a request waits at a time, so that a read asked to stop
 * (progress_reader_free) does within about that; a request answered later
 * is sent again. Consuming waits less: it has nothing to lose by it. */
#define PROGRESS_SLICE_MS   1000
#define PROGRESS_CONSUME_MS 100

__attribute__((format(printf, 3, 4))) static int fail(char *errbuf, size_t errsz, const char *fmt,
                                                      ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(errbuf, errsz, fmt, ap);
        va_end(ap);
        return -1;
}

/* ---- Reading the last record back ----
 * With the legacy per-partition consumer (consume_start at an offset):
 * rd_kafka_assign() in librdkafka 2.0 refuses a consumer without group.id,
 * and a group would mean coordinator traffic and group ACLs for nothing,
 * since no offset is ever committed. */

struct reader {
        rd_kafka_t *rk;
        rd_kafka_topic_t **rkt; /* made once the topic is known to exist, kept by the caller */
        struct log *lg;
        const struct config *cfg;
        const char *topic, *key;
        int created;    /* this read asked Kafka to create the topic */
        int controller; /* the cluster names a controller among its brokers */
        int timeout_ms;
        int64_t deadline;         /* monotonic ms */
        const atomic_int *cancel; /* NULL, or set when the read must stop */
        int matched;              /* a record of key was seen (maybe a tombstone) */
        char *value;              /* the last one's value; NULL for a tombstone */
        size_t value_len;
};

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(const struct reader *r)
{
        int64_t left = r->deadline - now_ms();

        return left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

/* What one blocking call may wait: the time left, at most slice_ms. */
static int slice_ms(const struct reader *r, int slice)
{
        int left = remaining_ms(r);

        return left < slice ? left : slice;
}

static int cancelled(const struct reader *r, char *errbuf, size_t errsz)
{
        if (r->cancel == NULL || !atomic_load(r->cancel))
                return 0;
        return fail(errbuf, errsz, "reading progress topic \"%s\": stopped", r->topic) != 0;
}

static int timed_out(const struct reader *r, char *errbuf, size_t errsz)
{
        return fail(errbuf, errsz, "reading progress topic \"%s\" timed out after %d ms", r->topic,
                    r->timeout_ms);
}

/* Debug level only: the reader gets the producer's -X properties and
 * librdkafka warns about each one a consumer ignores. */
static void reader_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
        (void)level;
        log_debug(rd_kafka_opaque(rk), "librdkafka (progress reader)", "{s:s,s:s}", "facility", fac,
                  "detail", buf);
}

static rd_kafka_t *reader_new(const struct config *cfg, struct log *lg, char *errbuf, size_t errsz)
{
        rd_kafka_conf_t *conf = kafka_conf_reader(cfg, lg, errbuf, errsz);
        rd_kafka_t *rk;
        char err[512];

        if (conf == NULL)
                return NULL;
        rd_kafka_conf_set_opaque(conf, lg);
        rd_kafka_conf_set_log_cb(conf, reader_log_cb);
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        if (rk != NULL)
                return rk;
        rd_kafka_conf_destroy(conf); /* still ours when rd_kafka_new fails */
        fail(errbuf, errsz, "cannot create the progress topic reader: %s", err);
        return NULL;
}

/* ---- The topic's creation and shape ---- */

/* The result event of an admin request on q, waited for in slices so that
 * a read asked to stop does; NULL (errbuf set) when stopped or timed out. */
static rd_kafka_event_t *admin_wait(struct reader *r, rd_kafka_queue_t *q, char *errbuf,
                                    size_t errsz)
{
        for (;;) {
                rd_kafka_event_t *ev = rd_kafka_queue_poll(q, slice_ms(r, PROGRESS_SLICE_MS));

                if (ev != NULL)
                        return ev;
                if (cancelled(r, errbuf, errsz))
                        return NULL;
                if (remaining_ms(r) == 0) {
                        timed_out(r, errbuf, errsz);
                        return NULL;
                }
        }
}

/* Admin options whose request ends by the read's deadline. */
static rd_kafka_AdminOptions_t *admin_options(struct reader *r, rd_kafka_admin_op_t op)
{
        rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(r->rk, op);
        int ms = remaining_ms(r) > 0 ? remaining_ms(r) : 1;
        char err[256];

        rd_kafka_AdminOptions_set_request_timeout(opt, ms, err, sizeof(err));
        if (op == RD_KAFKA_ADMIN_OP_CREATETOPICS) /* answered once the topic exists */
                rd_kafka_AdminOptions_set_operation_timeout(opt, ms, err, sizeof(err));
        return opt;
}

/* Creates the progress topic as Kafka Connect creates its internal topics:
 * one partition (records are written to and read from partition 0) and
 * compacted (the last record of each transactional.id stays however old it
 * is). Another relay creating it at the same time is as good. */
static int create_topic(struct reader *r, char *errbuf, size_t errsz)
{
        const char *how = "; create it with one partition and cleanup.policy=compact";
        int rf = r->cfg->progress_replication;
        rd_kafka_NewTopic_t *nt;
        rd_kafka_AdminOptions_t *opt;
        rd_kafka_queue_t *q;
        rd_kafka_event_t *ev;
        const rd_kafka_topic_result_t **res;
        rd_kafka_resp_err_t err;
        char why[256];
        size_t n = 0;

        /* librdkafka sends admin requests to the controller, and waits
         * for one until the request times out where there is none. */
        if (!r->controller)
                return fail(errbuf, errsz,
                            "cannot create progress topic \"%s\": the cluster names no "
                            "controller to ask (librdkafka's mock cluster does not)%s",
                            r->topic, how);
        nt = rd_kafka_NewTopic_new(r->topic, 1, rf, why, sizeof(why));
        if (nt == NULL)
                return fail(errbuf, errsz, "cannot create progress topic \"%s\": %s%s", r->topic,
                            why, how);
        if (rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact") != 0) {
                rd_kafka_NewTopic_destroy(nt);
                return fail(errbuf, errsz, "out of memory");
        }
        q = rd_kafka_queue_new(r->rk);
        opt = admin_options(r, RD_KAFKA_ADMIN_OP_CREATETOPICS);
        rd_kafka_CreateTopics(r->rk, &nt, 1, opt, q);
        rd_kafka_AdminOptions_destroy(opt);
        rd_kafka_NewTopic_destroy(nt);
        ev = admin_wait(r, q, errbuf, errsz);
        rd_kafka_queue_destroy(q);
        if (ev == NULL)
                return -1;
        res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        err = rd_kafka_event_error(ev) ? rd_kafka_event_error(ev)
              : n == 1                 ? rd_kafka_topic_result_error(res[0])
                                       : RD_KAFKA_RESP_ERR__BAD_MSG;
        snprintf(why, sizeof(why), "%s",
                 rd_kafka_event_error(ev) ? rd_kafka_event_error_string(ev)
                 : n == 1 && rd_kafka_topic_result_error_string(res[0]) != NULL
                     ? rd_kafka_topic_result_error_string(res[0])
                     : rd_kafka_err2str(err));
        rd_kafka_event_destroy(ev);
        if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                log_info(r->lg, "the progress topic was created meanwhile (by another relay?)",
                         "{s:s}", "topic", r->topic);
                return 0;
        }
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
                return fail(errbuf, errsz, "cannot create progress topic \"%s\": %s: %s%s",
                            r->topic, rd_kafka_err2name(err), why, how);
        log_info(r->lg, "created the progress topic", "{s:s,s:i,s:i,s:s}", "topic", r->topic,
                 "partitions", 1, "replication_factor", rf, "cleanup.policy", "compact");
        return 0;
}

/* The topic's cleanup.policy into buf ("" when Kafka did not say: an old
 * broker, the mock, or no DESCRIBE_CONFIGS permission, logged at debug). */
static void cleanup_policy(struct reader *r, char *buf, size_t size)
{
        rd_kafka_ConfigResource_t *cr =
            rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, r->topic);
        rd_kafka_AdminOptions_t *opt = admin_options(r, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
        rd_kafka_queue_t *q = rd_kafka_queue_new(r->rk);
        const rd_kafka_ConfigResource_t **res;
        const rd_kafka_ConfigEntry_t **entries;
        rd_kafka_event_t *ev = NULL;
        char err[256];
        size_t n = 0, ne = 0;

        buf[0] = '\0';
        if (!r->controller) {
                log_debug(r->lg, "cannot describe the progress topic's configuration", "{s:s,s:s}",
                          "topic", r->topic, "error", "the cluster names no controller");
                goto cleanup;
        }
        rd_kafka_DescribeConfigs(r->rk, &cr, 1, opt, q);
        ev = admin_wait(r, q, err, sizeof(err));
        if (ev == NULL)
                goto cleanup;
        res = rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev),
                                                        &n);
        if (rd_kafka_event_error(ev) || n != 1 || rd_kafka_ConfigResource_error(res[0])) {
                log_debug(r->lg, "cannot describe the progress topic's configuration", "{s:s,s:s}",
                          "topic", r->topic, "error",
                          rd_kafka_event_error(ev) ? rd_kafka_event_error_string(ev)
                          : n == 1 ? rd_kafka_err2str(rd_kafka_ConfigResource_error(res[0]))
                                   : "no result");
                goto cleanup;
        }
        entries = rd_kafka_ConfigResource_configs(res[0], &ne);
        for (size_t i = 0; i < ne; i++)
                if (strcmp(rd_kafka_ConfigEntry_name(entries[i]), "cleanup.policy") == 0 &&
                    rd_kafka_ConfigEntry_value(entries[i]) != NULL)
                        snprintf(buf, size, "%s", rd_kafka_ConfigEntry_value(entries[i]));
cleanup:
        if (ev != NULL)
                rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        rd_kafka_AdminOptions_destroy(opt);
        rd_kafka_ConfigResource_destroy(cr);
}

/* A progress topic not made as create_topic makes it is worth a warning,
 * not a refusal: records are written to and read from partition 0 by
 * number, so other partitions only stay empty; and a policy that deletes
 * records loses the last one only after retention.ms without a commit,
 * when an outbox's rows are long marked unless a relay died between a
 * commit and its mark and stayed away that long (its rows would then be
 * published again: duplicates, never a loss). Refusing would stop every
 * existing deployment whose topic was made otherwise. */
static void check_shape(struct reader *r, int partitions)
{
        char policy[64];

        if (partitions > 1)
                log_warn(r->lg,
                         "the progress topic has more than one partition: the relay uses "
                         "partition 0 only; give it one",
                         "{s:s,s:i}", "topic", r->topic, "partitions", partitions);
        cleanup_policy(r, policy, sizeof(policy));
        if (policy[0] != '\0' && (strstr(policy, "compact") == NULL || strstr(policy, "delete")))
                log_warn(r->lg,
                         "the progress topic's cleanup.policy is not compact: a progress record "
                         "older than retention.ms is deleted, and rows a relay committed but "
                         "had not marked sent would then be published again; set "
                         "cleanup.policy=compact",
                         "{s:s,s:s}", "topic", r->topic, "cleanup.policy", policy);
}

/* The watermarks of partition 0, once the topic is known to have it; a
 * missing leader or broker is waited for. Metadata is asked for all topics:
 * a request naming the topic may create it (brokers before 0.11, and the
 * 2.0.2 mock, whose Metadata stops at v2, ignore allow.auto.create.topics),
 * and rd_kafka_topic_new makes such a request, so it must come after. */
static int locate(struct reader *r, int64_t *low, int64_t *high, int *partitions, char *errbuf,
                  size_t errsz)
{
        for (;;) {
                const struct rd_kafka_metadata *md = NULL;
                rd_kafka_resp_err_t err =
                    rd_kafka_metadata(r->rk, 1, NULL, &md, slice_ms(r, PROGRESS_SLICE_MS));
                rd_kafka_resp_err_t terr = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
                int has_p0 = 0;

                for (int i = 0; err == RD_KAFKA_RESP_ERR_NO_ERROR && i < md->broker_cnt; i++)
                        r->controller |= md->brokers[i].id == rd_kafka_controllerid(r->rk, 0);
                for (int i = 0; err == RD_KAFKA_RESP_ERR_NO_ERROR && i < md->topic_cnt; i++) {
                        if (strcmp(md->topics[i].topic, r->topic) != 0)
                                continue;
                        terr = md->topics[i].err;
                        *partitions = md->topics[i].partition_cnt;
                        for (int j = 0; j < md->topics[i].partition_cnt; j++)
                                has_p0 |= md->topics[i].partitions[j].id == 0;
                }
                if (md != NULL)
                        rd_kafka_metadata_destroy(md);
                if (!err && !has_p0 && (!terr || terr == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)) {
                        if (r->cfg->progress_no_create)
                                return fail(errbuf, errsz,
                                            "progress topic \"%s\" does not exist and "
                                            "--progress-topic-no-create is set: create it with "
                                            "one partition and cleanup.policy=compact",
                                            r->topic);
                        /* Created once; then its metadata is waited for. */
                        if (!r->created && create_topic(r, errbuf, errsz) != 0)
                                return -1;
                        r->created = 1;
                        err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
                } else if (!err && !has_p0 && terr != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)
                        return fail(errbuf, errsz, "progress topic \"%s\": %s", r->topic,
                                    rd_kafka_err2str(terr));
                if (has_p0 &&
                    (err = rd_kafka_query_watermark_offsets(r->rk, r->topic, 0, low, high,
                                                            slice_ms(r, PROGRESS_SLICE_MS))) == 0)
                        return 0;
                log_debug(r->lg, "progress topic not ready", "{s:s}", "error",
                          rd_kafka_err2str(err ? err : terr));
                if (cancelled(r, errbuf, errsz))
                        return -1;
                if (remaining_ms(r) <= PROGRESS_RETRY_MS)
                        return timed_out(r, errbuf, errsz);
                nanosleep(&(struct timespec){0, PROGRESS_RETRY_MS * 1000000L}, NULL);
        }
}

/* Keeps m's value when m is keyed r->key: the last such record wins. */
static int keep_if_keyed(struct reader *r, const rd_kafka_message_t *m)
{
        size_t key_len = strlen(r->key);

        if (m->key == NULL || m->key_len != key_len || memcmp(m->key, r->key, key_len) != 0)
                return 0;
        free(r->value);
        r->value = NULL;
        r->value_len = 0;
        r->matched = 1;
        if (m->payload == NULL)
                return 0; /* a tombstone: no progress to recover */
        r->value = malloc(m->len ? m->len : 1);
        if (r->value == NULL)
                return -1;
        memcpy(r->value, m->payload, m->len);
        r->value_len = m->len;
        return 0;
}

/* Reads partition 0 from start to its end, or only up to stop when
 * stop >= 0. As read_committed, librdkafka's end (PARTITION_EOF) is the
 * last stable offset: records of open transactions are not waited for. */
static int read_range(struct reader *r, int64_t start, int64_t stop, char *errbuf, size_t errsz)
{
        rd_kafka_message_t *m;
        int rc = 1; /* 1: go on reading */

        if (rd_kafka_consume_start(*r->rkt, 0, start) != 0)
                return fail(errbuf, errsz, "reading progress topic \"%s\": %s", r->topic,
                            rd_kafka_err2str(rd_kafka_last_error()));
        while (rc == 1) {
                if (cancelled(r, errbuf, errsz)) {
                        rc = -1;
                        break;
                }
                if (remaining_ms(r) == 0) {
                        rc = timed_out(r, errbuf, errsz);
                        break;
                }
                m = rd_kafka_consume(*r->rkt, 0, slice_ms(r, PROGRESS_CONSUME_MS));
                if (m == NULL)
                        continue;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF ||
                    (!m->err && stop >= 0 && m->offset >= stop))
                        rc = 0;
                else if (m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
                        rc = fail(errbuf, errsz, "reading progress topic \"%s\": %s", r->topic,
                                  rd_kafka_err2str(m->err));
                else if (m->err) /* a broker down, a leader moving: retried by librdkafka */
                        log_debug(r->lg, "progress topic fetch", "{s:s}", "error",
                                  rd_kafka_err2str(m->err));
                else if (keep_if_keyed(r, m) != 0)
                        rc = fail(errbuf, errsz, "out of memory");
                rd_kafka_message_destroy(m);
        }
        rd_kafka_consume_stop(*r->rkt, 0);
        return rc;
}

/* Reads with the consumer rk (and its topic handle *rkt, made here when
 * NULL and left to the caller) as progress_reader_start says. */
static int read_last(rd_kafka_t *rk, rd_kafka_topic_t **rkt, struct log *lg,
                     const struct config *cfg, const char *key, int timeout_ms,
                     const atomic_int *cancel, struct progress_rows *out, int *found,
                     char outbox_id[PROGRESS_OUTBOX_ID_SIZE], char *errbuf, size_t errsz)
{
        struct reader r = {.rk = rk,
                           .rkt = rkt,
                           .lg = lg,
                           .cfg = cfg,
                           .topic = cfg->progress_topic,
                           .key = key,
                           .timeout_ms = timeout_ms,
                           .deadline = now_ms() + timeout_ms,
                           .cancel = cancel};
        int64_t low, high, start, stop, window = PROGRESS_WINDOW;
        const char *topic = cfg->progress_topic;
        int rc = -1, partitions = 0;

        *found = 0;
        if (locate(&r, &low, &high, &partitions, errbuf, errsz) != 0)
                goto cleanup;
        /* The shape is looked at once per consumer, at its first read: each
         * recovery reads again, and a DescribeConfigs round trip each time
         * would repeat a warning that cannot change the outcome. */
        if (*rkt == NULL) {
                check_shape(&r, partitions);
                if ((*rkt = rd_kafka_topic_new(rk, topic, NULL)) == NULL) {
                        fail(errbuf, errsz, "progress topic \"%s\": %s", topic,
                             rd_kafka_err2str(rd_kafka_last_error()));
                        goto cleanup;
                }
        }
        /* The newest records first. While none has the key, the window
         * doubles and only the part before what was read is read. (high is
         * the last stable offset: ListOffsets carries isolation.level.) */
        for (start = high; !r.matched && start > low; window *= 2) {
                stop = start == high ? -1 : start;
                start = high - low > window ? high - window : low;
                log_debug(lg, "reading progress topic", "{s:s,s:I,s:I,s:I,s:I}", "topic", topic,
                          "low", (json_int_t)low, "high", (json_int_t)high, "from",
                          (json_int_t)start, "to", (json_int_t)stop);
                if (read_range(&r, start, stop, errbuf, errsz) != 0)
                        goto cleanup;
        }
        if (r.value != NULL) {
                if (progress_decode(r.value, r.value_len, out, outbox_id, errbuf, errsz) != 0)
                        goto cleanup;
                *found = 1;
        }
        rc = 0;
cleanup:
        free(r.value);
        return rc;
}

/* ---- The reader thread ----
 * One request at a time: the newest asked for wins, and a result is handed
 * over only for the request it answers. */

struct progress_reader {
        const struct config *cfg;
        struct log *lg;
        pthread_t thread;
        int started;
        atomic_int cancel;
        pthread_mutex_t mu;
        pthread_cond_t cv;   /* a request, or cancel */
        pthread_cond_t done; /* an answer */
        /* under mu */
        unsigned long asked, taken, answered; /* request numbers */
        char key[512];
        int timeout_ms;
        int rc, found;
        struct progress_rows rows;
        char outbox_id[PROGRESS_OUTBOX_ID_SIZE];
        char error[512];
        /* the thread's own */
        rd_kafka_t *rk;
        rd_kafka_topic_t *rkt;
};

/* One read, with the consumer kept from the reads before (made on first
 * use: an error there is the read's error, tried again with the next). */
static void serve(struct progress_reader *pr, const char *key, int timeout_ms, unsigned long seq)
{
        struct progress_rows rows = {0};
        char oid[PROGRESS_OUTBOX_ID_SIZE] = "", err[512] = "";
        int found = 0, rc = -1;

        if (pr->rk == NULL)
                pr->rk = reader_new(pr->cfg, pr->lg, err, sizeof(err));
        if (pr->rk != NULL)
                rc = read_last(pr->rk, &pr->rkt, pr->lg, pr->cfg, key, timeout_ms, &pr->cancel,
                               &rows, &found, oid, err, sizeof(err));
        pthread_mutex_lock(&pr->mu);
        if (seq == pr->asked) { /* else a newer request waits: this one is dropped */
                progress_rows_free(&pr->rows);
                pr->rows = rows;
                memset(&rows, 0, sizeof(rows));
                pr->rc = rc;
                pr->found = found;
                memcpy(pr->outbox_id, oid, sizeof(oid));
                memcpy(pr->error, err, sizeof(err));
                pr->answered = seq;
                pthread_cond_broadcast(&pr->done);
        }
        pthread_mutex_unlock(&pr->mu);
        progress_rows_free(&rows);
}

static void *reader_main(void *arg)
{
        struct progress_reader *pr = arg;
        char key[sizeof(pr->key)];
        unsigned long seq;
        int timeout_ms;

        pthread_mutex_lock(&pr->mu);
        for (;;) {
                while (!atomic_load(&pr->cancel) && pr->taken == pr->asked)
                        pthread_cond_wait(&pr->cv, &pr->mu);
                if (atomic_load(&pr->cancel))
                        break;
                seq = pr->taken = pr->asked;
                memcpy(key, pr->key, sizeof(key));
                timeout_ms = pr->timeout_ms;
                pthread_mutex_unlock(&pr->mu);
                serve(pr, key, timeout_ms, seq);
                pthread_mutex_lock(&pr->mu);
        }
        pthread_mutex_unlock(&pr->mu);
        return NULL;
}

struct progress_reader *progress_reader_new(const struct config *cfg, struct log *lg, char *errbuf,
                                            size_t errsz)
{
        struct progress_reader *pr = calloc(1, sizeof(*pr));
        int err;

        if (pr == NULL) {
                fail(errbuf, errsz, "out of memory");
                return NULL;
        }
        pr->cfg = cfg;
        pr->lg = lg;
        atomic_init(&pr->cancel, 0);
        pthread_mutex_init(&pr->mu, NULL);
        pthread_cond_init(&pr->cv, NULL);
        pthread_cond_init(&pr->done, NULL);
        /* Signals stay blocked in it as in the loop's thread (signalfd). */
        if ((err = pthread_create(&pr->thread, NULL, reader_main, pr)) != 0) {
                fail(errbuf, errsz, "cannot start the progress reader thread: %s", strerror(err));
                progress_reader_free(pr);
                return NULL;
        }
        pr->started = 1;
        return pr;
}

void progress_reader_free(struct progress_reader *pr)
{
        if (pr == NULL)
                return;
        if (pr->started) {
                pthread_mutex_lock(&pr->mu);
                atomic_store(&pr->cancel, 1);
                pthread_cond_signal(&pr->cv);
                pthread_mutex_unlock(&pr->mu);
                pthread_join(pr->thread, NULL);
        }
        if (pr->rkt != NULL)
                rd_kafka_topic_destroy(pr->rkt);
        if (pr->rk != NULL)
                rd_kafka_destroy(pr->rk);
        progress_rows_free(&pr->rows);
        pthread_cond_destroy(&pr->cv);
        pthread_cond_destroy(&pr->done);
        pthread_mutex_destroy(&pr->mu);
        free(pr);
}

unsigned long progress_reader_start(struct progress_reader *pr, const char *transactional_id,
                                    int timeout_ms)
{
        unsigned long seq;

        pthread_mutex_lock(&pr->mu);
        seq = ++pr->asked;
        snprintf(pr->key, sizeof(pr->key), "%s", transactional_id);
        pr->timeout_ms = timeout_ms;
        pthread_cond_signal(&pr->cv);
        pthread_mutex_unlock(&pr->mu);
        return seq;
}

int progress_reader_poll(struct progress_reader *pr, unsigned long ticket,
                         struct progress_rows *out, int *found,
                         char outbox_id[PROGRESS_OUTBOX_ID_SIZE], char *errbuf, size_t errsz)
{
        int rc;

        pthread_mutex_lock(&pr->mu);
        if (pr->answered != ticket || ticket == 0) {
                pthread_mutex_unlock(&pr->mu);
                return PROGRESS_READING;
        }
        pr->answered = 0; /* handed over once */
        progress_rows_free(out);
        *out = pr->rows;
        memset(&pr->rows, 0, sizeof(pr->rows));
        *found = pr->found;
        snprintf(outbox_id, PROGRESS_OUTBOX_ID_SIZE, "%s", pr->outbox_id);
        snprintf(errbuf, errsz, "%s", pr->error);
        rc = pr->rc;
        pthread_mutex_unlock(&pr->mu);
        return rc;
}

int progress_reader_read(struct progress_reader *pr, const char *transactional_id, int timeout_ms,
                         struct progress_rows *out, int *found,
                         char outbox_id[PROGRESS_OUTBOX_ID_SIZE], char *errbuf, size_t errsz)
{
        unsigned long ticket = progress_reader_start(pr, transactional_id, timeout_ms);

        pthread_mutex_lock(&pr->mu);
        while (pr->answered != ticket)
                pthread_cond_wait(&pr->done, &pr->mu);
        pthread_mutex_unlock(&pr->mu);
        return progress_reader_poll(pr, ticket, out, found, outbox_id, errbuf, errsz);
}
