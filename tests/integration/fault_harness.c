/* fault_harness: the end-of-run checker and the report lines of the
 * fault-injection tests, and helpers to wait for and drive the relay (see
 * fault_harness.h; the writer threads are in fault_writers.c). The database is
 * the ledger: what committed is what outbox.events and outbox.dead_letters
 * hold at the end; rolled-back rows carry "rb": true in their payload. */
#include "fault_harness.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "fixture.h"

#ifndef OUTBOX_FAULT_REPORT_DEFAULT
#define OUTBOX_FAULT_REPORT_DEFAULT "fault-report.tsv"
#endif

#define FH_POLL_MS      20
#define FH_RB_MARKER    "\"rb\": true"
#define FH_CONSUME_IDLE 1500

/* ---- small helpers ---- */

uint64_t fh_seed(void)
{
        struct timespec ts;
        uint64_t s;

        clock_gettime(CLOCK_REALTIME, &ts);
        s = (uint64_t)ts.tv_nsec * 6364136223846793005ULL ^ (uint64_t)ts.tv_sec ^
            ((uint64_t)getpid() << 32);
        return s ? s : 1;
}

int fh_rand(uint64_t *seed, int lo, int hi)
{
        uint64_t x = *seed;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *seed = x;
        return lo + (int)(x % (uint64_t)(hi - lo + 1));
}

int fh_count_fds(int pid)
{
        char path[64];
        DIR *d;
        struct dirent *de;
        int n = 0;

        snprintf(path, sizeof(path), "/proc/%d/fd", pid);
        d = opendir(path);
        if (!d)
                return -1;
        while ((de = readdir(d)))
                n += de->d_name[0] != '.';
        closedir(d);
        return n;
}

/* ---- waiting for the relay ---- */

long long fh_sent(PGconn *c)
{
        return fx_sql_int(c, "SELECT count(*) FROM outbox.events WHERE status = 'sent'");
}

long long fh_wait_sent(PGconn *c, long long n, int timeout_ms)
{
        return fx_wait_sql(c, n, timeout_ms,
                           "SELECT count(*) FROM outbox.events WHERE status = 'sent'");
}

long long fh_wait_delivery(PGconn *c, int timeout_ms)
{
        int64_t start = fx_now_ms();
        long long before = fh_sent(c);

        for (;;) {
                if (fh_sent(c) > before)
                        return fx_now_ms() - start;
                if (fx_now_ms() - start >= timeout_ms)
                        return -1;
                poll(NULL, 0, FH_POLL_MS);
        }
}

long long fh_wait_drained(PGconn *c, int timeout_ms)
{
        int64_t start = fx_now_ms();

        /* The partial index of pending rows makes this probe cheap. */
        if (fx_wait_sql(c, 0, timeout_ms,
                        "SELECT count(*) FROM outbox.events WHERE status = 'pending'") != 0)
                return -1;
        return fx_now_ms() - start;
}

long long fh_relay_sessions(PGconn *c)
{
        return fx_sql_int(c, "SELECT count(*) FROM pg_stat_activity"
                             " WHERE application_name LIKE 'outbox-relay%%'");
}

int fh_wait_no_relay_session(PGconn *c, int timeout_ms)
{
        return fx_wait_sql(c, 0, timeout_ms,
                           "SELECT count(*) FROM pg_stat_activity"
                           " WHERE application_name LIKE 'outbox-relay%%'") == 0
                   ? 0
                   : -1;
}

int fh_wait_relay_connected(PGconn *c, int timeout_ms)
{
        return fx_wait_sql(c, 1, timeout_ms,
                           "SELECT (count(*) > 0)::int FROM pg_stat_activity"
                           " WHERE application_name LIKE 'outbox-relay/%%'") == 1
                   ? 0
                   : -1;
}

/* ---- the relay process ---- */

/* Frees the relay; OUTBOX_FAULT_KEEP_LOGS=<dir> first keeps its log there
 * as <case>-<pid>.log, for diagnosis. */
void fh_relay_free(struct fx_relay *r, const char *name)
{
        const char *dir = getenv("OUTBOX_FAULT_KEEP_LOGS");

        if (dir && *dir) {
                char path[512], *log = fx_relay_log(r);
                FILE *f;

                snprintf(path, sizeof(path), "%s/%s-%d.log", dir, name, (int)fx_relay_pid(r));
                f = fopen(path, "w");
                if (f) {
                        fputs(log, f);
                        fclose(f);
                }
                free(log);
        }
        fx_relay_free(r);
}

/* The relay log's last 1500 bytes, for an abort message (malloc'ed). */
char *fh_relay_log_tail(const struct fx_relay *r)
{
        char *log = fx_relay_log(r), *tail;
        size_t n = strlen(log);

        tail = strdup(n > 1500 ? log + n - 1500 : log);
        free(log);
        return tail;
}

/* How many log lines of the relay contain `what`. */
long long fh_relay_log_number(const struct fx_relay *r, const char *field)
{
        char *log = fx_relay_log(r), pat[128], *p;
        long long n;

        snprintf(pat, sizeof(pat), "\"%s\":", field);
        p = strstr(log, pat);
        n = p != NULL ? atoll(p + strlen(pat)) : -1;
        free(log);
        return n;
}

int fh_relay_log_count(const struct fx_relay *r, const char *what)
{
        char *log = fx_relay_log(r);
        int n = 0;

        for (const char *p = log; (p = strstr(p, what)); p += strlen(what))
                n++;
        free(log);
        return n;
}

void fh_wait_relay_log(const struct fx_relay *r, const char *what, int n, int timeout_ms)
{
        int64_t deadline = fx_now_ms() + timeout_ms;

        while (fh_relay_log_count(r, what) < n && fx_now_ms() < deadline)
                poll(NULL, 0, 20);
}

/* SIGTERM; it must exit 0 within timeout_ms. Returns how long it took. */
long long fh_relay_stop(struct fx_relay *r, int timeout_ms)
{
        int64_t t0 = fx_now_ms();
        int rc;

        fx_relay_kill(r, SIGTERM);
        rc = fx_relay_wait(r, timeout_ms);
        if (rc != 0) {
                char *tail = fh_relay_log_tail(r);

                ck_abort_msg("relay exited %d after SIGTERM (-1: still running); log:\n%s", rc,
                             tail);
        }
        return fx_now_ms() - t0;
}

/* VmRSS or VmHWM of a process in kB, from /proc/<pid>/status; -1 if gone. */
long fh_proc_kb(int pid, const char *field)
{
        char path[64], line[256];
        size_t n = strlen(field);
        long kb = -1;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", pid);
        f = fopen(path, "r");
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (!strncmp(line, field, n) && line[n] == ':')
                        kb = atol(line + n + 1);
        fclose(f);
        return kb;
}

/* ---- checking ---- */

void fh_result_init(struct fh_result *r, const char *name, const char *fault)
{
        /* Runs that change the producer's pipelining for every relay
         * (OUTBOX_RDKAFKA_* in the environment, as ctest's
         * apache_kafka_*_inflight5 do) say so in the name and the text. */
        const char *mif = getenv("OUTBOX_RDKAFKA_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION");
        const char *linger = getenv("OUTBOX_RDKAFKA_LINGER_MS");

        memset(r, 0, sizeof(*r));
        snprintf(r->name, sizeof(r->name), "%s%s%s%s", name, mif ? "-inflight" : "", mif ? mif : "",
                 fh_eos() ? "-eos" : "");
        snprintf(r->fault, sizeof(r->fault), "%s", fault);
        if (mif || linger)
                snprintf(r->fault + strlen(r->fault), sizeof(r->fault) - strlen(r->fault),
                         " [producer: max.in.flight.requests.per.connection=%s, linger.ms=%s]",
                         mif ? mif : "default", linger ? linger : "default");
        snprintf(r->broker, sizeof(r->broker), "%s", fh_broker());
        r->drain_ms = -1;
}

void fh_result_recovery(struct fh_result *r, long long ms)
{
        if (r->n_recover < FH_MAX_SAMPLES)
                r->recover_ms[r->n_recover++] = ms;
}

static int by_key_then_pos(const void *a, const void *b)
{
        const struct fh_first *x = a, *y = b;
        size_t n = x->m->key_len < y->m->key_len ? x->m->key_len : y->m->key_len;
        int c = n > 0 ? memcmp(x->m->key, y->m->key, n) : 0;

        if (c == 0 && x->m->key_len != y->m->key_len)
                c = x->m->key_len < y->m->key_len ? -1 : 1;
        if (c == 0)
                c = x->pos < y->pos ? -1 : 1;
        return c;
}

static int same_key(const struct fx_msg *a, const struct fx_msg *b)
{
        return a->key && b->key && a->key_len == b->key_len && !memcmp(a->key, b->key, a->key_len);
}

long long fh_key_order(struct fh_first *firsts, size_t n, char *note, size_t cap)
{
        long long violations = 0;

        qsort(firsts, n, sizeof(*firsts), by_key_then_pos);
        for (size_t i = 1; i < n; i++) {
                const struct fh_first *a = &firsts[i - 1], *b = &firsts[i];
                size_t len = note ? strlen(note) : 0;

                if (!same_key(a->m, b->m) || a->id < b->id)
                        continue;
                if (violations++ == 0 && note)
                        snprintf(note + len, cap - len,
                                 "%sorder: key %.*s has %lld (partition %d offset %lld) before "
                                 "%lld (offset %lld)",
                                 len ? "; " : "", (int)(a->m->key_len > 40 ? 40 : a->m->key_len),
                                 a->m->key, a->id, (int)a->m->partition, (long long)a->m->offset,
                                 b->id, (long long)b->m->offset);
        }
        return violations;
}

/* The committed rows: id -> key (NULL for a keyless row), and which ids
 * exist at all. */
struct ledger {
        long long max_id;
        char *exists; /* 1: events, 2: dead_letters */
        char **key;
};

static void ledger_load(PGconn *c, struct ledger *l)
{
        PGresult *res = PQexec(c, "SELECT id, key, 1 FROM outbox.events UNION ALL"
                                  " SELECT id, key, 2 FROM outbox.dead_letters");

        ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
        l->max_id = 0;
        for (int i = 0; i < PQntuples(res); i++) {
                long long id = atoll(PQgetvalue(res, i, 0));

                if (id > l->max_id)
                        l->max_id = id;
        }
        l->exists = calloc((size_t)l->max_id + 1, 1);
        l->key = calloc((size_t)l->max_id + 1, sizeof(*l->key));
        ck_assert_msg(l->exists && l->key, "out of memory");
        for (int i = 0; i < PQntuples(res); i++) {
                long long id = atoll(PQgetvalue(res, i, 0));

                l->exists[id] = (char)atoi(PQgetvalue(res, i, 2));
                if (!PQgetisnull(res, i, 1))
                        l->key[id] = strdup(PQgetvalue(res, i, 1));
        }
        PQclear(res);
}

static void ledger_free(struct ledger *l)
{
        for (long long i = 0; i <= l->max_id; i++)
                free(l->key[i]);
        free(l->key);
        free(l->exists);
}

static long long msg_outbox_id(const struct fx_msg *m)
{
        const struct fx_header *h = fx_msg_header(m, "outbox_id");
        char *end;
        long long id;

        if (!h || !h->value)
                return -1;
        errno = 0;
        id = strtoll(h->value, &end, 10);
        return errno || *end || end == h->value ? -1 : id;
}

/* ---- exactly-once runs (OUTBOX_FAULT_EOS) ----
 * librdkafka 2.0.2's mock cluster does not implement read_committed: the
 * messages of aborted or unfinished transactions stay visible (no abort
 * markers, last stable offset = high watermark). So the checker does what a
 * read_committed consumer of a real broker would: it keeps only messages a
 * progress record lists, each record being written last in its
 * transaction. The relay treats the same records as the truth at takeover,
 * so the two views agree; a transaction that failed at EndTxn after its
 * record was written (not injected here) would be counted as committed. */

struct listed {
        int32_t partition;
        int64_t offset;
        long long id;
};

static int by_position(const void *a, const void *b)
{
        const struct listed *x = a, *y = b;

        if (x->partition != y->partition)
                return x->partition < y->partition ? -1 : 1;
        return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int fh_eos(void)
{
        const char *v = getenv("OUTBOX_FAULT_EOS");

        return v != NULL && strcmp(v, "1") == 0;
}

static struct fx_apache *apache; /* NULL: the dev Kafka */

void fh_use_apache(struct fx_apache *k)
{
        apache = k;
}

const char *fh_broker(void)
{
        static char label[48];

        if (apache)
                snprintf(label, sizeof(label), "Apache Kafka %s", fx_apache_version());
        else
                snprintf(label, sizeof(label), "librdkafka %s mock", rd_kafka_version_str());
        return label;
}

/* Adds the rows record lists as published by its transaction to *l. */
static void listed_add(const struct fx_msg *rec_msg, struct listed **l, size_t *n, size_t *cap)
{
        json_t *rec = json_loadb(rec_msg->value, rec_msg->value_len, 0, NULL), *rows, *row;
        size_t j;

        ck_assert_msg(rec != NULL, "progress record at offset %lld is not JSON",
                      (long long)rec_msg->offset);
        rows = json_object_get(rec, "rows");
        json_array_foreach(rows, j, row)
        {
                if (*n == *cap) {
                        *cap = *cap ? *cap * 2 : 4096;
                        *l = realloc(*l, *cap * sizeof(**l));
                        ck_assert_msg(*l != NULL, "out of memory");
                }
                (*l)[(*n)++] =
                    (struct listed){(int32_t)json_integer_value(json_array_get(row, 1)),
                                    (int64_t)json_integer_value(json_array_get(row, 2)),
                                    (long long)json_integer_value(json_array_get(row, 0))};
        }
        json_decref(rec);
}

/* The (partition, offset, id) of every row the progress records of the
 * relay's transactional.id list as published by their transaction. The
 * mock keeps about 5 MB a partition and drops the oldest records beyond:
 * those come from the tap that read the topic during the case (fault_tap.c);
 * without them their rows would count as lost. The relay writes partition
 * 0 only, from offset 0, one offset a record (the mock writes no markers). */
static size_t eos_listed(const char *brokers, struct listed **out)
{
        const char *tid = getenv("OUTBOX_TRANSACTIONAL_ID");
        const char *ptopic = getenv("OUTBOX_PROGRESS_TOPIC");
        struct fx_msg *pm = NULL, *early = NULL;
        struct listed *l = NULL;
        size_t np, ne, n = 0, cap = 0, bytes = 0, records = 0;
        int64_t first;
        int tapped = 0;

        ck_assert_msg(tid != NULL, "exactly-once check without OUTBOX_TRANSACTIONAL_ID");
        ptopic = ptopic ? ptopic : "outbox-relay-progress";
        np = fx_consume(brokers, ptopic, (size_t)-1, FH_CONSUME_IDLE, &pm);
        first = np > 0 && pm[0].partition == 0 ? pm[0].offset : 0;
        ne = first > 0 ? fh_tap_before(ptopic, first, &early, &tapped) : 0;
        /* Untapped (a topic shared by a suite's cases): the records dropped
         * may be earlier cases'; if they were this one's, its rows show as
         * lost, and this line says why. */
        if (first > 0 && !tapped)
                fprintf(stderr,
                        "checker: the dev Kafka dropped the first %lld progress records of %s (it "
                        "keeps about 5 MB a partition): rows they listed count as lost\n",
                        (long long)first, ptopic);
        ck_assert_msg(!tapped || (int64_t)ne == first,
                      "the dev Kafka dropped the first %lld progress records of %s (it keeps about "
                      "5 MB a partition) and the tap has %zu of them: the checker cannot tell "
                      "which messages were committed",
                      (long long)first, ptopic, ne);
        if (ne > 0)
                fprintf(stderr,
                        "checker: the first %zu progress records of %s, dropped by the dev "
                        "Kafka, read from the tap\n",
                        ne, ptopic);
        for (size_t i = 0; i < ne + np; i++) {
                const struct fx_msg *m = i < ne ? &early[i] : &pm[i - ne];

                if (m->key != NULL && m->key_len == strlen(tid) &&
                    memcmp(m->key, tid, m->key_len) == 0) {
                        listed_add(m, &l, &n, &cap);
                        bytes += m->value_len;
                        records++;
                }
        }
        fprintf(stderr, "checker: %zu progress records of %s, %zu bytes, listing %zu messages\n",
                records, tid, bytes, n);
        fx_msgs_free(early, ne);
        fx_msgs_free(pm, np);
        qsort(l, n, sizeof(*l), by_position);
        *out = l;
        return n;
}

/* On Apache Kafka, what a read_committed consumer sees is asked of one:
 * Kafka's own console consumer, as (partition, offset) pairs; those
 * messages' contents come from the read of every message. A pair that read
 * did not return would be a message the checker cannot see: counted as a
 * phantom (it cannot be matched to a row). */
static size_t apache_visible(const char *topic, const struct fx_msg *msgs, size_t n,
                             struct listed **out, struct fh_result *r)
{
        struct fx_pos *pos = NULL;
        size_t np = fx_apache_read_committed(apache, topic, &pos), missing = 0;
        struct listed *l = calloc(np ? np : 1, sizeof(*l));

        ck_assert_msg(l != NULL, "out of memory");
        for (size_t i = 0; i < np; i++) {
                size_t lo = 0, hi = n;

                l[i] = (struct listed){pos[i].partition, pos[i].offset, -1};
                /* msgs are sorted by partition, then offset */
                while (lo < hi) {
                        size_t mid = (lo + hi) / 2;
                        const struct fx_msg *m = &msgs[mid];

                        if (m->partition < pos[i].partition ||
                            (m->partition == pos[i].partition && m->offset < pos[i].offset))
                                lo = mid + 1;
                        else
                                hi = mid;
                }
                if (lo < n && msgs[lo].partition == pos[i].partition &&
                    msgs[lo].offset == pos[i].offset)
                        l[i].id = msg_outbox_id(&msgs[lo]);
                else
                        missing++;
        }
        if (missing) {
                r->phantoms += (long long)missing;
                snprintf(r->notes + strlen(r->notes), sizeof(r->notes) - strlen(r->notes),
                         "%s%zu messages the read_committed consumer saw are missing from the "
                         "full read",
                         r->notes[0] ? "; " : "", missing);
        }
        free(pos);
        *out = l;
        return np;
}

/* Moves the messages a read_committed consumer would see to the front of
 * msgs (keeping their order) and returns how many; notes the others. */
size_t fh_eos_visible(const char *brokers, const char *topic, struct fx_msg *msgs, size_t n,
                      struct fh_result *r)
{
        struct listed *l = NULL;
        size_t nl = apache ? apache_visible(topic, msgs, n, &l, r) : eos_listed(brokers, &l);
        size_t kept = 0;

        for (size_t i = 0; i < n; i++) {
                struct listed want = {msgs[i].partition, msgs[i].offset, 0};
                struct listed *hit = bsearch(&want, l, nl, sizeof(*l), by_position);

                if (hit == NULL)
                        continue;
                if (!apache && hit->id != msg_outbox_id(&msgs[i]))
                        r->phantoms++; /* the record names another row: a relay bug */
                if (kept != i) {
                        struct fx_msg t = msgs[kept];

                        msgs[kept] = msgs[i];
                        msgs[i] = t;
                }
                kept++;
        }
        snprintf(r->notes + strlen(r->notes), sizeof(r->notes) - strlen(r->notes),
                 "%s%zu messages of aborted or unfinished transactions not visible to "
                 "read_committed%s",
                 r->notes[0] ? "; " : "", n - kept,
                 apache ? " (Kafka's own consumer, isolation.level=read_committed)"
                        : " (by the progress records: the mock does not implement it)");
        free(l);
        return kept;
}

/* Every message of the topics, those of aborted transactions too, each
 * topic's in partition and offset order; with --exactly-once only what a
 * read_committed consumer sees, at the front (*n_all counts all). */
static struct fx_msg *read_topics(const char *brokers, const char *const topics[], size_t *n,
                                  size_t *n_all, struct fh_result *r)
{
        struct fx_msg *all = NULL;
        size_t total = 0, visible = 0;

        for (size_t t = 0; topics[t]; t++) {
                struct fx_msg *msgs = NULL, *grown;
                size_t got =
                    fx_consume_uncommitted(brokers, topics[t], (size_t)-1, FH_CONSUME_IDLE, &msgs);
                size_t vis = fh_eos() ? fh_eos_visible(brokers, topics[t], msgs, got, r) : got;

                grown = realloc(all, (total + got + 1) * sizeof(*all));
                ck_assert_msg(grown != NULL, "out of memory");
                all = grown;
                /* Visible ones first, in topic order; the rest after. */
                memmove(all + visible + vis, all + visible, (total - visible) * sizeof(*all));
                memcpy(all + visible, msgs, vis * sizeof(*all));
                memcpy(all + visible + vis + (total - visible), msgs + vis,
                       (got - vis) * sizeof(*all));
                total += got;
                visible += vis;
                free(msgs); /* the contents moved to all */
        }
        *n = visible;
        *n_all = total;
        return all;
}

void fh_check(PGconn *c, const char *brokers, const char *topic, struct fh_result *r)
{
        const char *const topics[] = {topic, NULL};

        fh_check_topics(c, brokers, topics, r);
}

void fh_check_topics(PGconn *c, const char *brokers, const char *const topics[],
                     struct fh_result *r)
{
        struct ledger l;
        struct fx_msg *msgs = NULL;
        struct fh_first *firsts;
        unsigned char *seen;
        size_t n, n_all, nf = 0;
        long long rb_seen = 0;

        ledger_load(c, &l);
        msgs = read_topics(brokers, topics, &n, &n_all, r);
        seen = calloc((size_t)l.max_id + 1, 1);
        firsts = calloc(n ? n : 1, sizeof(*firsts));
        ck_assert_msg(seen && firsts, "out of memory");
        r->messages = (long long)n;
        r->committed = 0;
        for (long long id = 1; id <= l.max_id; id++) {
                r->committed += l.exists[id] != 0;
                r->dead_letters += l.exists[id] == 2;
        }
        for (size_t i = 0; i < n; i++) {
                const struct fx_msg *m = &msgs[i];
                long long id = msg_outbox_id(m);
                int rb = m->value &&
                         memmem(m->value, m->value_len, FH_RB_MARKER, strlen(FH_RB_MARKER)) != NULL;

                rb_seen += rb;
                if (id < 1 || id > l.max_id || !l.exists[id] || rb) {
                        r->phantoms++;
                        continue;
                }
                if (seen[id]) {
                        r->duplicates++;
                        continue;
                }
                seen[id] = 1;
                if ((l.key[id] == NULL) != (m->key == NULL) ||
                    (m->key && (strlen(l.key[id]) != m->key_len ||
                                memcmp(l.key[id], m->key, m->key_len) != 0)))
                        r->key_mismatch++;
                firsts[nf++] = (struct fh_first){m, i, id};
        }
        /* Dead letters are counted apart: a fault must make none, a bad
         * row is expected to become one. */
        for (long long id = 1; id <= l.max_id; id++)
                r->lost += l.exists[id] == 1 && !seen[id];
        r->order_violations = fh_key_order(firsts, nf, r->notes, sizeof(r->notes));
        if (rb_seen) {
                size_t len = strlen(r->notes);

                snprintf(r->notes + len, sizeof(r->notes) - len,
                         "%s%lld rolled-back rows published", len ? "; " : "", rb_seen);
        }
        free(firsts);
        free(seen);
        fx_msgs_free(msgs, n_all);
        ledger_free(&l);
}

/* ---- the report ---- */

static int cmp_ll(const void *a, const void *b)
{
        long long x = *(const long long *)a, y = *(const long long *)b;

        return x < y ? -1 : x > y;
}

/* Tabs and newlines would break the line format. */
static void clean(char *s)
{
        for (; *s; s++)
                if (*s == '\t' || *s == '\n' || *s == '\r')
                        *s = ' ';
}

void fh_report(const struct fh_result *r, int ok)
{
        const char *path = getenv("OUTBOX_FAULT_REPORT");
        long long sorted[FH_MAX_SAMPLES], median = -1, max = -1;
        char name[64], fault[384], notes[512], broker[48], *line = NULL;
        int fd, len;

        if (!path || !*path)
                path = OUTBOX_FAULT_REPORT_DEFAULT;
        memcpy(sorted, r->recover_ms, sizeof(long long) * (size_t)r->n_recover);
        qsort(sorted, (size_t)r->n_recover, sizeof(long long), cmp_ll);
        if (r->n_recover > 0) {
                median = sorted[r->n_recover / 2];
                max = sorted[r->n_recover - 1];
                if (sorted[0] < 0)
                        max = -2; /* one never recovered */
        }
        snprintf(name, sizeof(name), "%s", r->name);
        snprintf(fault, sizeof(fault), "%s", r->fault);
        snprintf(notes, sizeof(notes), "%s", r->notes);
        snprintf(broker, sizeof(broker), "%s", r->broker[0] ? r->broker : fh_broker());
        clean(broker);
        clean(name);
        clean(fault);
        clean(notes);
        /* One write() of the whole line: O_APPEND keeps lines whole. */
        len =
            asprintf(&line,
                     "%s\t%s\t%lld\t%lld\t%lld\t%lld\t%lld\t%lld\t%lld\t%lld\t%d\t%lld\t%lld\t%lld"
                     "\t%s\t%s\t%s\n",
                     name, fault, r->committed, r->rolled_back, r->messages, r->lost, r->duplicates,
                     r->phantoms, r->order_violations, r->dead_letters, r->faults, median, max,
                     r->drain_ms, ok ? "pass" : "FAIL", notes, broker);
        ck_assert_msg(len > 0, "out of memory");
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, line, (size_t)len) != len)
                fprintf(stderr, "fault report %s: %s\n", path, strerror(errno));
        if (fd >= 0)
                close(fd);
        fprintf(stderr, "fault case %s", line);
        free(line);
}

void fh_report_and_assert(const struct fh_result *r)
{
        int ok = r->lost == 0 && r->phantoms == 0 && r->order_violations == 0 &&
                 r->key_mismatch == 0 && r->dead_letters == 0 && r->committed > 0 &&
                 (!fh_eos() || r->duplicates == 0);

        for (int i = 0; i < r->n_recover; i++)
                ok &= r->recover_ms[i] >= 0;
        fh_report(r, ok);
        ck_assert_msg(r->committed > 0, "%s: nothing committed", r->name);
        ck_assert_msg(r->lost == 0, "%s: %lld of %lld committed events lost", r->name, r->lost,
                      r->committed);
        ck_assert_msg(r->phantoms == 0, "%s: %lld messages of no committed row (%s)", r->name,
                      r->phantoms, r->notes);
        ck_assert_msg(r->order_violations == 0, "%s: per-key order broken %lld times", r->name,
                      r->order_violations);
        ck_assert_msg(r->key_mismatch == 0, "%s: %lld messages with another key than their row",
                      r->name, r->key_mismatch);
        ck_assert_msg(!fh_eos() || r->duplicates == 0,
                      "%s: %lld duplicates visible to read_committed consumers (%s)", r->name,
                      r->duplicates, r->notes);
        ck_assert_msg(r->dead_letters == 0, "%s: %lld rows dead-lettered by a transient fault",
                      r->name, r->dead_letters);
        for (int i = 0; i < r->n_recover; i++)
                ck_assert_msg(r->recover_ms[i] >= 0, "%s: no delivery after fault %d", r->name,
                              i + 1);
}
