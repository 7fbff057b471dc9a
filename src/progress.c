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

/* ---- event ids, 22 characters each ----
 * A record names every row by its event_id: as uuid text (38 bytes with
 * quotes and comma) a thousand-row transaction would need 38 kB for them
 * alone. Instead each list carries one string, the 16 bytes of each event
 * id in base64url without padding (RFC 4648 section 5), 22 characters a
 * row, in the list's order. */

#define EVENT_B64_LEN 22

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int hexval(char c)
{
        return c >= '0' && c <= '9'   ? c - '0'
               : c >= 'a' && c <= 'f' ? c - 'a' + 10
               : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                      : -1;
}

/* uuid text (checked with is_uuid) to its 22 characters at out. */
static void event_b64(const char *uuid, char *out)
{
        unsigned char b[16];
        int n = 0;

        for (const char *p = uuid; *p != '\0'; p++)
                if (*p != '-') {
                        int v = hexval(*p);

                        if (n % 2 == 0)
                                b[n / 2] = (unsigned char)(v << 4);
                        else
                                b[n / 2] |= (unsigned char)v;
                        n++;
                }
        for (int i = 0, o = 0; i < 16; i += 3) {
                unsigned v = (unsigned)b[i] << 16 | (i + 1 < 16 ? (unsigned)b[i + 1] << 8 : 0) |
                             (i + 2 < 16 ? b[i + 2] : 0);

                out[o++] = b64url[v >> 18 & 63];
                out[o++] = b64url[v >> 12 & 63];
                if (i + 1 < 16)
                        out[o++] = b64url[v >> 6 & 63];
                if (i + 2 < 16)
                        out[o++] = b64url[v & 63];
        }
}

static int b64val(char c)
{
        const char *p = c != '\0' ? strchr(b64url, c) : NULL;

        return p != NULL ? (int)(p - b64url) : -1;
}

/* 22 characters at in to uuid text (lowercase); -1 when they are not the
 * canonical encoding of 16 bytes. */
static int event_text(const char *in, char out[PROGRESS_UUID_SIZE])
{
        static const char hex[] = "0123456789abcdef";
        unsigned char b[18];
        int o = 0;

        for (int i = 0; i < EVENT_B64_LEN; i += 4) {
                int k = EVENT_B64_LEN - i < 4 ? EVENT_B64_LEN - i : 4;
                unsigned v = 0;

                for (int j = 0; j < 4; j++) {
                        int d = j < k ? b64val(in[i + j]) : 0;

                        if (d < 0)
                                return -1;
                        v = v << 6 | (unsigned)d;
                }
                b[o++] = (unsigned char)(v >> 16);
                b[o++] = (unsigned char)(v >> 8);
                b[o++] = (unsigned char)v;
        }
        if (b[16] != 0) /* the last character carries 2 bits and 4 zeros */
                return -1;
        for (int i = 0, n = 0; i < 16; i++) {
                if (i == 4 || i == 6 || i == 8 || i == 10)
                        out[n++] = '-';
                out[n++] = hex[b[i] >> 4];
                out[n++] = hex[b[i] & 15];
        }
        out[PROGRESS_UUID_SIZE - 1] = '\0';
        return 0;
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

/* s's rows by id, one per id (a row can be in only one batch at a time;
 * were it listed twice, its newest generation is the copy to name), NULL
 * when out of memory or a row has no event id to be named by. */
static struct row_ref *sorted(const struct progress_rows *s, size_t *n)
{
        struct row_ref *r = malloc((s->n ? s->n : 1) * sizeof(*r));

        *n = 0;
        if (r == NULL)
                return NULL;
        for (size_t i = 0; i < s->n; i++) {
                if (!is_uuid(s->event_ids[i])) {
                        free(r);
                        return NULL;
                }
                r[i] = (struct row_ref){s, i};
        }
        qsort(r, s->n, sizeof(*r), ref_cmp);
        for (size_t i = 0; i < s->n; i++) {
                if (*n > 0 && s->ids[r[*n - 1].i] == s->ids[r[i].i])
                        (*n)--; /* the later one has the larger generation */
                r[(*n)++] = r[i];
        }
        return r;
}

/* The event ids of r[0..n), 22 characters each, as one string. */
static json_t *events_string(const struct row_ref *r, size_t n)
{
        char *buf = malloc(n * EVENT_B64_LEN + 1);
        json_t *str;

        if (buf == NULL)
                return NULL;
        for (size_t k = 0; k < n; k++)
                event_b64(r[k].s->event_ids[r[k].i], buf + k * EVENT_B64_LEN);
        str = json_stringn_nocheck(buf, n * EVENT_B64_LEN);
        free(buf);
        return str;
}

/* "rows": [id,partition,offset,generation] (id, partition and offset first,
 * where version 2 had them) and "row_events". */
static int encode_rows(json_t *root, const struct progress_rows *s)
{
        size_t n;
        struct row_ref *r = sorted(s, &n);
        json_t *arr = r != NULL ? json_array() : NULL;
        int rc;

        for (size_t k = 0; arr != NULL && k < n; k++) {
                size_t i = r[k].i;

                /* append_new takes the value even on failure */
                if (json_array_append_new(
                        arr, json_pack("[IiII]", (json_int_t)s->ids[i], (int)s->partitions[i],
                                       (json_int_t)s->offsets[i], (json_int_t)s->generations[i])) !=
                    0) {
                        json_decref(arr);
                        arr = NULL;
                }
        }
        /* set_new takes the value (NULL fails) even on failure */
        rc = json_object_set_new(root, "rows", arr) != 0 ||
             json_object_set_new(root, "row_events", r != NULL ? events_string(r, n) : NULL) != 0;
        free(r);
        return rc ? -1 : 0;
}

/* "unmarked": ids as [first,last] ranges of consecutive ids,
 * "unmarked_generations": [id,generation] where it is not 0, and
 * "unmarked_events". */
static int encode_unmarked(json_t *root, const struct progress_rows *s)
{
        size_t n;
        struct row_ref *r = sorted(s, &n);
        json_t *ranges = r != NULL ? json_array() : NULL, *gens = r != NULL ? json_array() : NULL;
        int rc;

        for (size_t i = 0, j; ranges != NULL && gens != NULL && i < n; i = j + 1) {
                for (j = i; j + 1 < n && s->ids[r[j + 1].i] - 1 == s->ids[r[j].i];)
                        j++;
                if (json_array_append_new(ranges, json_pack("[II]", (json_int_t)s->ids[r[i].i],
                                                            (json_int_t)s->ids[r[j].i])) != 0) {
                        json_decref(ranges);
                        ranges = NULL;
                }
        }
        for (size_t k = 0; ranges != NULL && gens != NULL && k < n; k++) {
                size_t i = r[k].i;

                if (s->generations[i] != 0 &&
                    json_array_append_new(gens, json_pack("[II]", (json_int_t)s->ids[i],
                                                          (json_int_t)s->generations[i])) != 0) {
                        json_decref(gens);
                        gens = NULL;
                }
        }
        rc = json_object_set_new(root, "unmarked", ranges) != 0 ||
             json_object_set_new(root, "unmarked_generations", gens) != 0 ||
             json_object_set_new(root, "unmarked_events", r != NULL ? events_string(r, n) : NULL) !=
                 0;
        free(r);
        return rc ? -1 : 0;
}

char *progress_encode(const char *transactional_id, const char *schema, const char *outbox_id,
                      const struct progress_rows *rows, const struct progress_rows *unmarked)
{
        json_t *root =
            json_pack("{s:i,s:s,s:s,s:s}", "version", PROGRESS_VERSION, "transactional_id",
                      transactional_id ? transactional_id : "", "schema", schema ? schema : "",
                      "outbox_id", outbox_id ? outbox_id : "");
        char *out = NULL;

        if (root == NULL || encode_rows(root, rows) != 0 || encode_unmarked(root, unmarked) != 0)
                goto cleanup;
        out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
cleanup:
        json_decref(root);
        return out;
}

/* ---- decoding version 3 ---- */

/* Sets the event ids of out[from..out->n) from str, 22 characters each. */
static int decode_events(const json_t *str, const char *name, struct progress_rows *out,
                         size_t from, char *errbuf, size_t errsz)
{
        size_t n = out->n - from;
        const char *v = json_string_value(str);

        if (!json_is_string(str) || json_string_length(str) != n * EVENT_B64_LEN)
                return fail(errbuf, errsz,
                            "\"%s\" is not a string of %d characters for each of %zu rows", name,
                            EVENT_B64_LEN, n);
        for (size_t k = 0; k < n; k++)
                if (event_text(v + k * EVENT_B64_LEN, out->event_ids[from + k]) != 0)
                        return fail(errbuf, errsz, "\"%s\" row %zu is not an event id in base64url",
                                    name, k);
        return 0;
}

/* [id,partition,offset,generation] items, ids ascending. */
static int decode_rows(const json_t *arr, struct progress_rows *out, size_t base, char *errbuf,
                       size_t errsz)
{
        json_int_t id, partition, offset, generation, prev = 0;
        const json_t *v;
        size_t i;

        if (!json_is_array(arr))
                return fail(errbuf, errsz, "\"rows\" is not an array");
        json_array_foreach(arr, i, v)
        {
                if (json_unpack((json_t *)v, "[IIII!]", &id, &partition, &offset, &generation) !=
                        0 ||
                    partition < 0 || partition > INT32_MAX || offset < 0 || generation < 0)
                        return fail(errbuf, errsz,
                                    "\"rows\" item %zu is not [id,partition,offset,generation] "
                                    "(partition, offset and generation non-negative)",
                                    i);
                if (i > 0 && id <= prev)
                        return fail(errbuf, errsz, "\"rows\" ids do not ascend at item %zu", i);
                if (out->n - base >= PROGRESS_MAX_IDS)
                        return fail(errbuf, errsz, "more than %d ids in all", PROGRESS_MAX_IDS);
                if (progress_rows_add(out, id, NULL, generation, (int32_t)partition, offset) != 0)
                        return fail(errbuf, errsz, "out of memory");
                prev = id;
        }
        return 0;
}

static int v2_ranges(const json_t *arr, struct progress_rows *out, size_t base, char *errbuf,
                     size_t errsz);
static int64_t *find_id(struct progress_rows *s, size_t from, size_t to, int64_t id);

/* [id,generation] items, ids ascending, each an unmarked row's
 * (out[from..n)), generation not 0. */
static int decode_generations(const json_t *arr, struct progress_rows *out, size_t from,
                              char *errbuf, size_t errsz)
{
        json_int_t id, g, prev = 0;
        const json_t *v;
        int64_t *p;
        size_t i;

        if (!json_is_array(arr))
                return fail(errbuf, errsz, "\"unmarked_generations\" is not an array");
        json_array_foreach(arr, i, v)
        {
                if (json_unpack((json_t *)v, "[II!]", &id, &g) != 0 || g <= 0)
                        return fail(errbuf, errsz,
                                    "\"unmarked_generations\" item %zu is not [id,generation] "
                                    "(generation positive)",
                                    i);
                if (i > 0 && id <= prev)
                        return fail(errbuf, errsz,
                                    "\"unmarked_generations\" ids do not ascend at item %zu", i);
                if ((p = find_id(out, from, out->n, id)) == NULL)
                        return fail(errbuf, errsz,
                                    "\"unmarked_generations\" names id %lld, which \"unmarked\" "
                                    "does not",
                                    id);
                out->generations[p - out->ids] = g;
                prev = id;
        }
        return 0;
}

static int decode_v3(json_t *root, struct progress_rows *out, size_t base, const json_t **oid,
                     char *why, size_t whysz)
{
        json_t *version, *tid, *schema, *rows, *row_events, *unmarked, *gens, *unmarked_events;
        json_error_t jerr;
        size_t mid;

        /* Strict: a misread record would mark the wrong rows sent, so any
         * member this version does not write is refused too. */
        if (json_unpack_ex(root, &jerr, JSON_STRICT, "{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}",
                           "version", &version, "transactional_id", &tid, "schema", &schema,
                           "outbox_id", oid, "rows", &rows, "row_events", &row_events, "unmarked",
                           &unmarked, "unmarked_generations", &gens, "unmarked_events",
                           &unmarked_events) != 0)
                return fail(why, whysz, "%s", jerr.text);
        if (!json_is_string(tid) || !json_is_string(schema))
                return fail(why, whysz, "\"transactional_id\" and \"schema\" must be strings");
        if (!json_is_string(*oid) || !is_uuid(json_string_value(*oid)))
                return fail(why, whysz, "\"outbox_id\" is not a uuid");
        if (decode_rows(rows, out, base, why, whysz) != 0 ||
            decode_events(row_events, "row_events", out, base, why, whysz) != 0)
                return -1;
        mid = out->n;
        if (v2_ranges(unmarked, out, base, why, whysz) != 0 ||
            decode_events(unmarked_events, "unmarked_events", out, mid, why, whysz) != 0 ||
            decode_generations(gens, out, mid, why, whysz) != 0)
                return -1;
        return 0;
}

/* ---- decoding version 2 (written before migration 005) ----
 * Rows are named by id and replays only. They are read so that an upgrade
 * after a crash does not publish the last transaction again; the relay
 * marks such a row only while its generation is still 0 (never made
 * pending since the migration), see struct db_marks in db.h. */

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
