/* progress: the progress records of --exactly-once. Encodes and strictly
 * decodes a record's JSON, and finds the last committed record of one
 * transactional.id on partition 0 of the progress topic. */
#include "progress.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#define PROGRESS_VERSION  2        /* 2: outbox_id */
#define PROGRESS_MAX_IDS  10000000 /* per range, and per record once expanded */
#define PROGRESS_WINDOW   1000     /* offsets read first; doubled while not found */
#define PROGRESS_RETRY_MS 100      /* pause between attempts to locate the partition */

struct pair {
        int64_t id;
        int32_t replays;
        int32_t partition;
        int64_t offset;
};

__attribute__((format(printf, 3, 4))) static int fail(char *errbuf, size_t errsz, const char *fmt,
                                                      ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(errbuf, errsz, fmt, ap);
        va_end(ap);
        return -1;
}

int progress_rows_add(struct progress_rows *s, int64_t id, int32_t replays, int32_t partition,
                      int64_t offset)
{
        if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 64;
                void *p;

                if (cap > SIZE_MAX / sizeof(int64_t))
                        return -1;
                /* Each array keeps what it holds until all have grown. */
                if ((p = realloc(s->ids, cap * sizeof(*s->ids))) == NULL)
                        return -1;
                s->ids = p;
                if ((p = realloc(s->replays, cap * sizeof(*s->replays))) == NULL)
                        return -1;
                s->replays = p;
                if ((p = realloc(s->partitions, cap * sizeof(*s->partitions))) == NULL)
                        return -1;
                s->partitions = p;
                if ((p = realloc(s->offsets, cap * sizeof(*s->offsets))) == NULL)
                        return -1;
                s->offsets = p;
                s->cap = cap;
        }
        s->ids[s->n] = id;
        s->replays[s->n] = replays;
        s->partitions[s->n] = partition;
        s->offsets[s->n] = offset;
        s->n++;
        return 0;
}

void progress_rows_clear(struct progress_rows *s)
{
        s->n = 0;
}

void progress_rows_free(struct progress_rows *s)
{
        free(s->ids);
        free(s->replays);
        free(s->partitions);
        free(s->offsets);
        memset(s, 0, sizeof(*s));
}

static int pair_cmp(const void *a, const void *b)
{
        const struct pair *x = a, *y = b;

        if (x->id != y->id)
                return x->id < y->id ? -1 : 1;
        return (x->replays > y->replays) - (x->replays < y->replays);
}

/* A sorted copy of a's rows and b's (b may be NULL), only those whose
 * replays is not 0 when replayed_only. NULL only when out of memory. */
static struct pair *sorted_pairs(const struct progress_rows *a, const struct progress_rows *b,
                                 int replayed_only, size_t *n)
{
        size_t total = a->n + (b != NULL ? b->n : 0);
        struct pair *p = malloc((total ? total : 1) * sizeof(*p));

        *n = 0;
        for (size_t i = 0; p != NULL && i < total; i++) {
                const struct progress_rows *s = i < a->n ? a : b;
                size_t k = i < a->n ? i : i - a->n;

                if (!replayed_only || s->replays[k] != 0)
                        p[(*n)++] = (struct pair){s->ids[k], s->replays[k], s->partitions[k],
                                                  s->offsets[k]};
        }
        if (p != NULL)
                qsort(p, *n, sizeof(*p), pair_cmp);
        return p;
}

static json_t *json_pair(int64_t a, int64_t b)
{
        return json_pack("[II]", (json_int_t)a, (json_int_t)b);
}

/* The transaction's own rows, one [id,partition,offset] each. */
static int add_rows(json_t *root, const struct pair *p, size_t n)
{
        json_t *arr = json_array();

        for (size_t i = 0; arr != NULL && i < n; i++) {
                if (json_array_append_new(arr, json_pack("[IiI]", (json_int_t)p[i].id,
                                                         (int)p[i].partition,
                                                         (json_int_t)p[i].offset)) != 0) {
                        json_decref(arr);
                        arr = NULL;
                }
        }
        return json_object_set_new(root, "rows", arr);
}

/* Sorted pairs as inclusive ranges of consecutive ids ([[first,last],...]),
 * or with replays set as [[id,n],...] once per id: the largest n wins, as a
 * row's replays column only grows. */
static int add_pairs(json_t *root, const char *name, const struct pair *p, size_t n, int as_replays)
{
        json_t *arr = json_array();

        for (size_t i = 0, j; arr != NULL && i < n; i = j + 1) {
                for (j = i; j + 1 < n && (p[j + 1].id == p[j].id ||
                                          (!as_replays && p[j + 1].id - 1 == p[j].id));)
                        j++;
                /* json_*_set_new and append_new take the value even on failure. */
                if (json_array_append_new(arr, as_replays ? json_pair(p[j].id, p[j].replays)
                                                          : json_pair(p[i].id, p[j].id)) != 0) {
                        json_decref(arr);
                        arr = NULL;
                }
        }
        return json_object_set_new(root, name, arr);
}

char *progress_encode(const char *transactional_id, const char *schema, const char *outbox_id,
                      const struct progress_rows *rows, const struct progress_rows *unmarked)
{
        size_t nr, nu, nrep;
        struct pair *r = sorted_pairs(rows, NULL, 0, &nr),
                    *u = sorted_pairs(unmarked, NULL, 0, &nu);
        struct pair *rep = sorted_pairs(rows, unmarked, 1, &nrep); /* one list for both */
        json_t *root =
            json_pack("{s:i,s:s,s:s,s:s}", "version", PROGRESS_VERSION, "transactional_id",
                      transactional_id ? transactional_id : "", "schema", schema ? schema : "",
                      "outbox_id", outbox_id ? outbox_id : "");
        char *out = NULL;

        if (root == NULL || r == NULL || u == NULL || rep == NULL || add_rows(root, r, nr) != 0 ||
            add_pairs(root, "unmarked", u, nu, 0) != 0 ||
            add_pairs(root, "replays", rep, nrep, 1) != 0)
                goto cleanup;
        out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
cleanup:
        json_decref(root);
        free(r);
        free(u);
        free(rep);
        return out;
}

static int id_cmp(const void *a, const void *b)
{
        const int64_t *x = a, *y = b;

        return (*x > *y) - (*x < *y);
}

/* The replays of id among the sorted s[from..to), or NULL. */
static int32_t *replays_of(struct progress_rows *s, size_t from, size_t to, int64_t id)
{
        int64_t *p = to > from ? bsearch(&id, s->ids + from, to - from, sizeof(id), id_cmp) : NULL;

        return p != NULL ? &s->replays[p - s->ids] : NULL;
}

/* Expands ranges (the member called name) into out, whose record began at
 * base. They must ascend without overlapping, so what they add is sorted. */
static int decode_ranges(const json_t *arr, const char *name, struct progress_rows *out,
                         size_t base, char *errbuf, size_t errsz)
{
        json_int_t first, last, prev = 0;
        const json_t *v;
        size_t i;

        if (!json_is_array(arr))
                return fail(errbuf, errsz, "\"%s\" is not an array of [first,last] pairs", name);
        json_array_foreach(arr, i, v)
        {
                if (json_unpack((json_t *)v, "[II!]", &first, &last) != 0)
                        return fail(errbuf, errsz,
                                    "\"%s\" item %zu is not a [first,last] pair of integers", name,
                                    i);
                if (first > last)
                        return fail(errbuf, errsz, "\"%s\" range [%lld,%lld] has first > last",
                                    name, first, last);
                if ((uint64_t)last - (uint64_t)first >= PROGRESS_MAX_IDS)
                        return fail(errbuf, errsz, "\"%s\" range [%lld,%lld] is larger than %d ids",
                                    name, first, last, PROGRESS_MAX_IDS);
                if (i > 0 && first <= prev)
                        return fail(errbuf, errsz,
                                    "\"%s\" ranges do not ascend without overlap at item %zu", name,
                                    i);
                if (out->n - base + (size_t)(last - first) >= PROGRESS_MAX_IDS)
                        return fail(errbuf, errsz, "more than %d ids in all", PROGRESS_MAX_IDS);
                for (json_int_t id = first;; id++) { /* no id++ past last: it may be INT64_MAX */
                        if (progress_rows_add(out, id, 0, -1, -1) != 0)
                                return fail(errbuf, errsz, "out of memory");
                        if (id == last)
                                break;
                }
                prev = last;
        }
        return 0;
}

/* The transaction's own rows, [id,partition,offset] in ascending id order. */
static int decode_rows(const json_t *arr, struct progress_rows *out, size_t base, char *errbuf,
                       size_t errsz)
{
        json_int_t id, partition, offset, prev = 0;
        const json_t *v;
        size_t i;

        if (!json_is_array(arr))
                return fail(errbuf, errsz, "\"rows\" is not an array of [id,partition,offset]");
        json_array_foreach(arr, i, v)
        {
                if (json_unpack((json_t *)v, "[III!]", &id, &partition, &offset) != 0 ||
                    partition < 0 || partition > INT32_MAX || offset < 0)
                        return fail(errbuf, errsz,
                                    "\"rows\" item %zu is not an [id,partition,offset] triple of "
                                    "non-negative integers",
                                    i);
                if (i > 0 && id <= prev)
                        return fail(errbuf, errsz, "\"rows\" ids do not ascend at item %zu", i);
                if (out->n - base >= PROGRESS_MAX_IDS)
                        return fail(errbuf, errsz, "more than %d ids in all", PROGRESS_MAX_IDS);
                if (progress_rows_add(out, id, 0, (int32_t)partition, offset) != 0)
                        return fail(errbuf, errsz, "out of memory");
                prev = id;
        }
        return 0;
}

/* Sets the replays the record lists: out[base..mid) holds its rows and
 * out[mid..n) its unmarked ones, each sorted. */
static int decode_replays(const json_t *arr, struct progress_rows *out, size_t base, size_t mid,
                          char *errbuf, size_t errsz)
{
        json_int_t id, n, prev = 0;
        const json_t *v;
        int32_t *a, *b;
        size_t i;

        if (!json_is_array(arr))
                return fail(errbuf, errsz, "\"replays\" is not an array of [id,n] pairs");
        json_array_foreach(arr, i, v)
        {
                if (json_unpack((json_t *)v, "[II!]", &id, &n) != 0 || n == 0 || n < INT32_MIN ||
                    n > INT32_MAX)
                        return fail(errbuf, errsz,
                                    "\"replays\" item %zu is not an [id,n] pair of integers, "
                                    "n a non-zero int32",
                                    i);
                if (i > 0 && id <= prev)
                        return fail(errbuf, errsz, "\"replays\" ids do not ascend at item %zu", i);
                a = replays_of(out, base, mid, id);
                b = replays_of(out, mid, out->n, id);
                if (a == NULL && b == NULL)
                        return fail(errbuf, errsz,
                                    "\"replays\" names id %lld, which is in neither \"rows\" nor "
                                    "\"unmarked\"",
                                    id);
                if (a != NULL)
                        *a = (int32_t)n;
                if (b != NULL)
                        *b = (int32_t)n;
                prev = id;
        }
        return 0;
}

/* A uuid in its text form: 8-4-4-4-12 hex digits. */
static int is_uuid(const char *s)
{
        if (strlen(s) != PROGRESS_OUTBOX_ID_SIZE - 1)
                return 0;
        for (int i = 0; s[i] != '\0'; i++) {
                int dash = i == 8 || i == 13 || i == 18 || i == 23;

                if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
                        return 0;
        }
        return 1;
}

int progress_decode(const char *json, size_t len, struct progress_rows *out,
                    char outbox_id[PROGRESS_OUTBOX_ID_SIZE], char *errbuf, size_t errsz)
{
        json_t *root, *version, *tid, *schema, *oid, *rows, *unmarked, *replays;
        size_t base = out->n, mid;
        json_error_t jerr;
        char why[400];
        int rc = -1;

        root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
        if (root == NULL)
                return fail(errbuf, errsz, "progress record: not JSON: %s (at byte %d)", jerr.text,
                            jerr.position);
        /* Strict: a misread record would mark the wrong rows sent, so any
         * member this version does not write is refused too. */
        if (json_unpack_ex(root, &jerr, JSON_STRICT, "{s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "version",
                           &version, "transactional_id", &tid, "schema", &schema, "outbox_id", &oid,
                           "rows", &rows, "unmarked", &unmarked, "replays", &replays) != 0)
                fail(why, sizeof(why), "%s", jerr.text);
        else if (!json_is_integer(version))
                fail(why, sizeof(why), "\"version\" is not an integer");
        else if (json_integer_value(version) != PROGRESS_VERSION)
                fail(why, sizeof(why), "version %lld is not supported (this relay reads %d)",
                     json_integer_value(version), PROGRESS_VERSION);
        else if (!json_is_string(tid) || !json_is_string(schema))
                fail(why, sizeof(why), "\"transactional_id\" and \"schema\" must be strings");
        else if (!json_is_string(oid) || !is_uuid(json_string_value(oid)))
                fail(why, sizeof(why), "\"outbox_id\" is not a uuid");
        else if (decode_rows(rows, out, base, why, sizeof(why)) == 0) {
                mid = out->n;
                if (decode_ranges(unmarked, "unmarked", out, base, why, sizeof(why)) == 0 &&
                    decode_replays(replays, out, base, mid, why, sizeof(why)) == 0)
                        rc = 0;
        }
        if (rc != 0) {
                out->n = base; /* out as it was */
                fail(errbuf, errsz, "progress record: %s", why);
        } else {
                snprintf(outbox_id, PROGRESS_OUTBOX_ID_SIZE, "%s", json_string_value(oid));
        }
        json_decref(root);
        return rc;
}

/* ---- Reading the last record back ----
 * With the legacy per-partition consumer (consume_start at an offset):
 * rd_kafka_assign() in librdkafka 2.0 refuses a consumer without group.id,
 * and a group would mean coordinator traffic and group ACLs for nothing,
 * since no offset is ever committed. */

struct reader {
        rd_kafka_t *rk;
        rd_kafka_topic_t *rkt;
        struct log *lg;
        const char *topic, *key;
        int timeout_ms;
        int64_t deadline; /* monotonic ms */
        int matched;      /* a record of key was seen (maybe a tombstone) */
        char *value;      /* the last one's value; NULL for a tombstone */
        size_t value_len;
};

/* What the reader needs, set after the user's -X properties. */
static const char *const reader_props[][2] = {
    {"enable.auto.commit", "false"},
    {"enable.auto.offset.store", "false"},
    {"isolation.level", "read_committed"},
    {"enable.partition.eof", "true"},
    {"allow.auto.create.topics", "false"}, /* where the broker obeys it (see locate) */
    {"auto.offset.reset", "earliest"},     /* compaction may have moved the start past ours */
    {"log.queue", "false"},                /* log_cb on librdkafka's threads: log is safe there */
    {"fetch.wait.max.ms", "100"},          /* at the end, how long a Fetch waits for the EOF */
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
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_t *rk;
        char err[512];
        size_t i;

        rd_kafka_conf_set_opaque(conf, lg);
        rd_kafka_conf_set_log_cb(conf, reader_log_cb);
        if (cfg->kafka_brokers != NULL &&
            rd_kafka_conf_set(conf, "bootstrap.servers", cfg->kafka_brokers, err, sizeof(err))) {
                fail(errbuf, errsz, "progress reader: kafka property bootstrap.servers: %s", err);
                goto fail;
        }
        for (i = 0; i < cfg->n_kafka_props; i++) {
                /* librdkafka's message may quote the value (a credential
                 * perhaps), so only the name is logged. */
                if (rd_kafka_conf_set(conf, cfg->kafka_props[i].name, cfg->kafka_props[i].value,
                                      err, sizeof(err)) != RD_KAFKA_CONF_OK)
                        log_debug(lg, "progress reader ignores a kafka property", "{s:s}",
                                  "property", cfg->kafka_props[i].name);
        }
        for (i = 0; i < sizeof(reader_props) / sizeof(reader_props[0]); i++) {
                if (rd_kafka_conf_set(conf, reader_props[i][0], reader_props[i][1], err,
                                      sizeof(err)) != RD_KAFKA_CONF_OK) {
                        fail(errbuf, errsz, "progress reader: kafka property %s: %s",
                             reader_props[i][0], err);
                        goto fail;
                }
        }
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        if (rk != NULL)
                return rk;
        fail(errbuf, errsz, "cannot create the progress topic reader: %s", err);
fail:
        rd_kafka_conf_destroy(conf); /* still ours when rd_kafka_new fails */
        return NULL;
}

/* The watermarks of partition 0, once the topic is known to have it; a
 * missing leader or broker is waited for. Metadata is asked for all topics:
 * a request naming the topic may create it (brokers before 0.11, and the
 * 2.0.2 mock, whose Metadata stops at v2, ignore allow.auto.create.topics),
 * and rd_kafka_topic_new makes such a request, so it must come after. */
static int locate(struct reader *r, int64_t *low, int64_t *high, char *errbuf, size_t errsz)
{
        for (;;) {
                const struct rd_kafka_metadata *md = NULL;
                rd_kafka_resp_err_t err = rd_kafka_metadata(r->rk, 1, NULL, &md, remaining_ms(r));
                rd_kafka_resp_err_t terr = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
                int has_p0 = 0;

                for (int i = 0; err == RD_KAFKA_RESP_ERR_NO_ERROR && i < md->topic_cnt; i++) {
                        if (strcmp(md->topics[i].topic, r->topic) != 0)
                                continue;
                        terr = md->topics[i].err;
                        for (int j = 0; j < md->topics[i].partition_cnt; j++)
                                has_p0 |= md->topics[i].partitions[j].id == 0;
                }
                if (md != NULL)
                        rd_kafka_metadata_destroy(md);
                if (!err && !has_p0 && (!terr || terr == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART))
                        return fail(errbuf, errsz,
                                    "progress topic \"%s\" does not exist: create it with one "
                                    "partition and cleanup.policy=compact",
                                    r->topic);
                if (!err && !has_p0 && terr != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)
                        return fail(errbuf, errsz, "progress topic \"%s\": %s", r->topic,
                                    rd_kafka_err2str(terr));
                if (has_p0 && (err = rd_kafka_query_watermark_offsets(r->rk, r->topic, 0, low, high,
                                                                      remaining_ms(r))) == 0)
                        return 0;
                log_debug(r->lg, "progress topic not ready", "{s:s}", "error",
                          rd_kafka_err2str(err ? err : terr));
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

        if (rd_kafka_consume_start(r->rkt, 0, start) != 0)
                return fail(errbuf, errsz, "reading progress topic \"%s\": %s", r->topic,
                            rd_kafka_err2str(rd_kafka_last_error()));
        while (rc == 1) {
                if (remaining_ms(r) == 0) {
                        rc = timed_out(r, errbuf, errsz);
                        break;
                }
                m = rd_kafka_consume(r->rkt, 0, remaining_ms(r));
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
        rd_kafka_consume_stop(r->rkt, 0);
        return rc;
}

int progress_read_last(const struct config *cfg, struct log *lg, const char *transactional_id,
                       int timeout_ms, struct progress_rows *out, int *found,
                       char outbox_id[PROGRESS_OUTBOX_ID_SIZE], char *errbuf, size_t errsz)
{
        struct reader r = {.lg = lg,
                           .topic = cfg->progress_topic,
                           .key = transactional_id,
                           .timeout_ms = timeout_ms,
                           .deadline = now_ms() + timeout_ms};
        int64_t low, high, start, stop, window = PROGRESS_WINDOW;
        int rc = -1;

        *found = 0;
        r.rk = reader_new(cfg, lg, errbuf, errsz);
        if (r.rk == NULL)
                return -1;
        if (locate(&r, &low, &high, errbuf, errsz) != 0)
                goto cleanup;
        r.rkt = rd_kafka_topic_new(r.rk, r.topic, NULL);
        if (r.rkt == NULL) {
                fail(errbuf, errsz, "progress topic \"%s\": %s", r.topic,
                     rd_kafka_err2str(rd_kafka_last_error()));
                goto cleanup;
        }
        /* The newest records first. While none has the key, the window
         * doubles and only the part before what was read is read. (high is
         * the last stable offset: ListOffsets carries isolation.level.) */
        for (start = high; !r.matched && start > low; window *= 2) {
                stop = start == high ? -1 : start;
                start = high - low > window ? high - window : low;
                log_debug(lg, "reading progress topic", "{s:s,s:I,s:I,s:I,s:I}", "topic", r.topic,
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
        if (r.rkt != NULL)
                rd_kafka_topic_destroy(r.rkt);
        rd_kafka_destroy(r.rk);
        return rc;
}
