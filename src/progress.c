/* progress: the progress records of --exactly-once, encoded as JSON and
 * strictly decoded (version 3, and version 2 for upgrades). Reading the last
 * record back from Kafka is in progress_reader.c. */
#include "progress.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define PROGRESS_VERSION 3        /* 3: rows named by event_id and generation */
#define PROGRESS_MAX_IDS 10000000 /* per record once expanded (and per v2 range) */

__attribute__((format(printf, 3, 4))) static int fail(char *errbuf, size_t errsz, const char *fmt,
                                                      ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(errbuf, errsz, fmt, ap);
        va_end(ap);
        return -1;
}

/* Grows one array of s to cap elements of size each; keeps it on failure. */
static int grow(void **p, size_t cap, size_t size)
{
        void *q;

        if (cap > SIZE_MAX / size)
                return -1;
        if ((q = realloc(*p, cap * size)) == NULL)
                return -1;
        *p = q;
        return 0;
}

/* A uuid in its text form: 8-4-4-4-12 hex digits. */
static int is_uuid(const char *s)
{
        if (s == NULL || strlen(s) != PROGRESS_UUID_SIZE - 1)
                return 0;
        for (int i = 0; s[i] != '\0'; i++) {
                int dash = i == 8 || i == 13 || i == 18 || i == 23;

                if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
                        return 0;
        }
        return 1;
}

int progress_rows_add(struct progress_rows *s, int64_t id, const char *event_id, int64_t generation,
                      int32_t partition, int64_t offset)
{
        if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 64;

                /* Each array keeps what it holds until all have grown. */
                if (grow((void **)&s->ids, cap, sizeof(*s->ids)) != 0 ||
                    grow((void **)&s->event_ids, cap, sizeof(*s->event_ids)) != 0 ||
                    grow((void **)&s->generations, cap, sizeof(*s->generations)) != 0 ||
                    grow((void **)&s->replays, cap, sizeof(*s->replays)) != 0 ||
                    grow((void **)&s->partitions, cap, sizeof(*s->partitions)) != 0 ||
                    grow((void **)&s->offsets, cap, sizeof(*s->offsets)) != 0)
                        return -1;
                s->cap = cap;
        }
        s->ids[s->n] = id;
        snprintf(s->event_ids[s->n], PROGRESS_UUID_SIZE, "%s", event_id != NULL ? event_id : "");
        s->generations[s->n] = generation;
        s->replays[s->n] = 0;
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
        free(s->event_ids);
        free(s->generations);
        free(s->replays);
        free(s->partitions);
        free(s->offsets);
        memset(s, 0, sizeof(*s));
}

/* ---- encoding (version 3) ---- */

struct row_ref {
        const struct progress_rows *s;
        size_t i;
};

static int ref_cmp(const void *a, const void *b)
{
        const struct row_ref *x = a, *y = b;
        int64_t xi = x->s->ids[x->i], yi = y->s->ids[y->i];
        int64_t xg = x->s->generations[x->i], yg = y->s->generations[y->i];

        if (xi != yi)
                return xi < yi ? -1 : 1;
        return (xg > yg) - (xg < yg);
}

/* s's rows sorted by id (then generation), or NULL when out of memory. */
static struct row_ref *sorted(const struct progress_rows *s)
{
        struct row_ref *r = malloc((s->n ? s->n : 1) * sizeof(*r));

        if (r == NULL)
                return NULL;
        for (size_t i = 0; i < s->n; i++)
                r[i] = (struct row_ref){s, i};
        qsort(r, s->n, sizeof(*r), ref_cmp);
        return r;
}

/* [id,partition,offset,"event_id",generation] for the transaction's own
 * rows (id, partition and offset first, where version 2 had them), or
 * [id,"event_id",generation] for unmarked ones. */
static json_t *encode_list(const struct progress_rows *s, int own)
{
        struct row_ref *r = sorted(s);
        json_t *arr = r != NULL ? json_array() : NULL;

        for (size_t k = 0; arr != NULL && k < s->n; k++) {
                size_t i = r[k].i;
                json_t *item;

                if (!is_uuid(s->event_ids[i])) { /* unnamed: cannot be recorded */
                        json_decref(arr);
                        arr = NULL;
                        break;
                }
                item = own ? json_pack("[IiIsI]", (json_int_t)s->ids[i], (int)s->partitions[i],
                                       (json_int_t)s->offsets[i], s->event_ids[i],
                                       (json_int_t)s->generations[i])
                           : json_pack("[IsI]", (json_int_t)s->ids[i], s->event_ids[i],
                                       (json_int_t)s->generations[i]);
                /* append_new takes the value even on failure */
                if (json_array_append_new(arr, item) != 0) {
                        json_decref(arr);
                        arr = NULL;
                }
        }
        free(r);
        return arr;
}

char *progress_encode(const char *transactional_id, const char *schema, const char *outbox_id,
                      const struct progress_rows *rows, const struct progress_rows *unmarked)
{
        json_t *root =
            json_pack("{s:i,s:s,s:s,s:s}", "version", PROGRESS_VERSION, "transactional_id",
                      transactional_id ? transactional_id : "", "schema", schema ? schema : "",
                      "outbox_id", outbox_id ? outbox_id : "");
        char *out = NULL;

        /* set_new takes the value (NULL fails) even on failure */
        if (root == NULL || json_object_set_new(root, "rows", encode_list(rows, 1)) != 0 ||
            json_object_set_new(root, "unmarked", encode_list(unmarked, 0)) != 0)
                goto cleanup;
        out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
cleanup:
        json_decref(root);
        return out;
}

/* ---- decoding version 3 ---- */

/* rows ([id,partition,offset,"event_id",generation], own) or unmarked
 * ([id,"event_id",generation]) into out, ids never descending. */
static int decode_list(const json_t *arr, const char *name, int own, struct progress_rows *out,
                       size_t base, char *errbuf, size_t errsz)
{
        json_int_t id, partition = -1, offset = -1, generation, prev = 0;
        const char *event_id;
        const json_t *v;
        size_t i;
        int bad;

        if (!json_is_array(arr))
                return fail(errbuf, errsz, "\"%s\" is not an array", name);
        json_array_foreach(arr, i, v)
        {
                if (own)
                        bad = json_unpack((json_t *)v, "[IIIsI!]", &id, &partition, &offset,
                                          &event_id, &generation) != 0 ||
                              partition < 0 || partition > INT32_MAX || offset < 0;
                else
                        bad = json_unpack((json_t *)v, "[IsI!]", &id, &event_id, &generation) != 0;
                if (bad || generation < 0 || !is_uuid(event_id))
                        return fail(errbuf, errsz,
                                    own ? "\"rows\" item %zu is not [id,partition,offset,"
                                          "\"event_id\",generation] (non-negative integers, "
                                          "a uuid)"
                                        : "\"unmarked\" item %zu is not [id,\"event_id\","
                                          "generation] (a uuid, a non-negative generation)",
                                    i);
                if (i > 0 && id < prev)
                        return fail(errbuf, errsz, "\"%s\" ids descend at item %zu", name, i);
                if (out->n - base >= PROGRESS_MAX_IDS)
                        return fail(errbuf, errsz, "more than %d rows in all", PROGRESS_MAX_IDS);
                if (progress_rows_add(out, id, event_id, generation, (int32_t)partition, offset) !=
                    0)
                        return fail(errbuf, errsz, "out of memory");
                prev = id;
        }
        return 0;
}

static int decode_v3(json_t *root, struct progress_rows *out, size_t base, const json_t **oid,
                     char *why, size_t whysz)
{
        json_t *version, *tid, *schema, *rows, *unmarked;
        json_error_t jerr;

        /* Strict: a misread record would mark the wrong rows sent, so any
         * member this version does not write is refused too. */
        if (json_unpack_ex(root, &jerr, JSON_STRICT, "{s:o,s:o,s:o,s:o,s:o,s:o}", "version",
                           &version, "transactional_id", &tid, "schema", &schema, "outbox_id", oid,
                           "rows", &rows, "unmarked", &unmarked) != 0)
                return fail(why, whysz, "%s", jerr.text);
        if (!json_is_string(tid) || !json_is_string(schema))
                return fail(why, whysz, "\"transactional_id\" and \"schema\" must be strings");
        if (!json_is_string(*oid) || !is_uuid(json_string_value(*oid)))
                return fail(why, whysz, "\"outbox_id\" is not a uuid");
        if (decode_list(rows, "rows", 1, out, base, why, whysz) != 0 ||
            decode_list(unmarked, "unmarked", 0, out, base, why, whysz) != 0)
                return -1;
        return 0;
}

/* ---- decoding version 2 (written before migration 005) ----
 * Rows are named by id and replays only. They are read so that an upgrade
 * after a crash does not publish the last transaction again; the relay
 * marks such a row only while its generation is still 0 (never made
 * pending since the migration), see db_mark_committed. */

static int64_t *find_id(struct progress_rows *s, size_t from, size_t to, int64_t id)
{
        while (from < to) { /* s->ids[from..to) ascend */
                size_t mid = from + (to - from) / 2;

                if (s->ids[mid] == id)
                        return &s->ids[mid];
                if (s->ids[mid] < id)
                        from = mid + 1;
                else
                        to = mid;
        }
        return NULL;
}

static int32_t *v2_replays_of(struct progress_rows *s, size_t from, size_t to, int64_t id)
{
        int64_t *p = find_id(s, from, to, id);

        return p != NULL ? &s->replays[p - s->ids] : NULL;
}

/* [[first,last],...] ranges, ascending without overlap. */
static int v2_ranges(const json_t *arr, struct progress_rows *out, size_t base, char *errbuf,
                     size_t errsz)
{
        json_int_t first, last, prev = 0;
        const json_t *v;
        size_t i;

        if (!json_is_array(arr))
                return fail(errbuf, errsz, "\"unmarked\" is not an array of [first,last] pairs");
        json_array_foreach(arr, i, v)
        {
                if (json_unpack((json_t *)v, "[II!]", &first, &last) != 0)
                        return fail(errbuf, errsz,
                                    "\"unmarked\" item %zu is not a [first,last] pair of integers",
                                    i);
                if (first > last)
                        return fail(errbuf, errsz,
                                    "\"unmarked\" range [%lld,%lld] has first > last", first, last);
                if ((uint64_t)last - (uint64_t)first >= PROGRESS_MAX_IDS)
                        return fail(errbuf, errsz,
                                    "\"unmarked\" range [%lld,%lld] is larger than %d ids", first,
                                    last, PROGRESS_MAX_IDS);
                if (i > 0 && first <= prev)
                        return fail(errbuf, errsz,
                                    "\"unmarked\" ranges do not ascend without overlap at item %zu",
                                    i);
                if (out->n - base + (size_t)(last - first) >= PROGRESS_MAX_IDS)
                        return fail(errbuf, errsz, "more than %d ids in all", PROGRESS_MAX_IDS);
                for (json_int_t id = first;; id++) { /* no id++ past last: it may be INT64_MAX */
                        if (progress_rows_add(out, id, NULL, 0, -1, -1) != 0)
                                return fail(errbuf, errsz, "out of memory");
                        if (id == last)
                                break;
                }
                prev = last;
        }
        return 0;
}

/* [[id,partition,offset],...], ids ascending. */
static int v2_rows(const json_t *arr, struct progress_rows *out, size_t base, char *errbuf,
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
                if (progress_rows_add(out, id, NULL, 0, (int32_t)partition, offset) != 0)
                        return fail(errbuf, errsz, "out of memory");
                prev = id;
        }
        return 0;
}

/* [[id,n],...]: the replays of ids in out[base..mid) (rows) or
 * out[mid..n) (unmarked). */
static int v2_replays(const json_t *arr, struct progress_rows *out, size_t base, size_t mid,
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
                a = v2_replays_of(out, base, mid, id);
                b = v2_replays_of(out, mid, out->n, id);
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

static int decode_v2(json_t *root, struct progress_rows *out, size_t base, const json_t **oid,
                     char *why, size_t whysz)
{
        json_t *version, *tid, *schema, *rows, *unmarked, *replays;
        json_error_t jerr;
        size_t mid;

        if (json_unpack_ex(root, &jerr, JSON_STRICT, "{s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "version",
                           &version, "transactional_id", &tid, "schema", &schema, "outbox_id", oid,
                           "rows", &rows, "unmarked", &unmarked, "replays", &replays) != 0)
                return fail(why, whysz, "%s", jerr.text);
        if (!json_is_string(tid) || !json_is_string(schema))
                return fail(why, whysz, "\"transactional_id\" and \"schema\" must be strings");
        if (!json_is_string(*oid) || !is_uuid(json_string_value(*oid)))
                return fail(why, whysz, "\"outbox_id\" is not a uuid");
        if (v2_rows(rows, out, base, why, whysz) != 0)
                return -1;
        mid = out->n;
        if (v2_ranges(unmarked, out, base, why, whysz) != 0 ||
            v2_replays(replays, out, base, mid, why, whysz) != 0)
                return -1;
        return 0;
}

int progress_decode(const char *json, size_t len, struct progress_rows *out,
                    char outbox_id[PROGRESS_OUTBOX_ID_SIZE], char *errbuf, size_t errsz)
{
        const json_t *oid = NULL, *version;
        size_t base = out->n;
        json_error_t jerr;
        json_t *root;
        char why[400];
        int rc = -1;

        root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
        if (root == NULL)
                return fail(errbuf, errsz, "progress record: not JSON: %s (at byte %d)", jerr.text,
                            jerr.position);
        version = json_object_get(root, "version");
        if (!json_is_object(root))
                fail(why, sizeof(why), "not a JSON object");
        else if (!json_is_integer(version))
                fail(why, sizeof(why), "\"version\" is missing or not an integer");
        else if (json_integer_value(version) == PROGRESS_VERSION)
                rc = decode_v3(root, out, base, &oid, why, sizeof(why));
        else if (json_integer_value(version) == 2)
                rc = decode_v2(root, out, base, &oid, why, sizeof(why));
        else
                fail(why, sizeof(why), "version %lld is not supported (this relay reads 2 and %d)",
                     json_integer_value(version), PROGRESS_VERSION);
        if (rc != 0) {
                out->n = base; /* out as it was */
                fail(errbuf, errsz, "progress record: %s", why);
        } else {
                snprintf(outbox_id, PROGRESS_OUTBOX_ID_SIZE, "%s", json_string_value(oid));
        }
        json_decref(root);
        return rc;
}
