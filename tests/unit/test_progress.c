/* Unit tests of progress: the exact JSON of a version 3 record, encode /
 * decode round trips (unsorted, non-contiguous and repeated ids, event ids,
 * generations, partitions and offsets, edge values), the reading of
 * version 2 records (written before migration 005) for upgrades, and the
 * message of every kind of malformed record of either version. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "progress.h"
#include "runner.h"

static char errbuf[512];

/* The outbox identity the records here carry. */
#define OID "6f1c1a52-8d1e-4a56-9b1f-0d1d2e3f4a5b"
/* Event ids. */
#define EV1 "00000000-0000-4000-8000-000000000001"
#define EV2 "00000000-0000-4000-8000-000000000002"
#define EV3 "00000000-0000-4000-8000-000000000003"
/* The same in a record: 16 bytes in base64url, 22 characters. */
#define B1 "AAAAAAAAQACAAAAAAAAAAQ"
#define B2 "AAAAAAAAQACAAAAAAAAAAg"
#define B3 "AAAAAAAAQACAAAAAAAAAAw"

/* A deterministic event id for row id (the test's own rule). */
static const char *ev_of(int64_t id)
{
        static char buf[8][PROGRESS_UUID_SIZE];
        static int next;
        char *b = buf[next++ % 8];

        snprintf(b, PROGRESS_UUID_SIZE, "%08x-%04x-4%03x-8000-%012llx", (unsigned)(id >> 32),
                 (unsigned)(id & 0xffff), (unsigned)(id % 4096),
                 (unsigned long long)id & 0xffffffffffffULL);
        return b;
}

/* A row of the transaction's own, and where Kafka put it. */
static void add(struct progress_rows *s, int64_t id, const char *ev, int64_t gen, int32_t partition,
                int64_t offset)
{
        ck_assert_int_eq(progress_rows_add(s, id, ev, gen, partition, offset), 0);
}

/* An unmarked row: where it went is not recorded. */
static void add_unmarked(struct progress_rows *s, int64_t id, const char *ev, int64_t gen)
{
        add(s, id, ev, gen, -1, -1);
}

static void assert_row(const struct progress_rows *s, size_t i, int64_t id, const char *ev,
                       int64_t gen, int32_t replays, int32_t partition, int64_t offset)
{
        ck_assert_uint_lt(i, s->n);
        ck_assert_int_eq(s->ids[i], id);
        ck_assert_str_eq(s->event_ids[i], ev);
        ck_assert_int_eq(s->generations[i], gen);
        ck_assert_int_eq(s->replays[i], replays);
        ck_assert_int_eq(s->partitions[i], partition);
        ck_assert_int_eq(s->offsets[i], offset);
}

static void expect_json(const struct progress_rows *rows, const struct progress_rows *unmarked,
                        const char *want)
{
        char *got = progress_encode("outbox-relay.outbox", "outbox", OID, rows, unmarked);

        ck_assert_ptr_nonnull(got);
        ck_assert_str_eq(got, want);
        free(got);
}

static void decode_ok(const char *json, struct progress_rows *out)
{
        char oid[PROGRESS_OUTBOX_ID_SIZE] = "";

        errbuf[0] = '\0';
        ck_assert_msg(progress_decode(json, strlen(json), out, oid, errbuf, sizeof(errbuf)) == 0,
                      "decode %s: %s", json, errbuf);
        ck_assert_str_eq(oid, OID);
}

START_TEST(test_exact_json)
{
        struct progress_rows rows = {0}, unmarked = {0}, out = {0};
        char *json;

        add(&rows, 9, EV1, 0, 2, 100);
        add(&rows, 3, EV2, 4, 0, 7);
        add(&rows, 1, EV3, 0, 1, 0);
        add(&unmarked, 8, EV2, 1, 3, 55); /* where an unmarked row went is not written */
        add_unmarked(&unmarked, 7, EV1, 0);
        /* [id,partition,offset,generation] per row, by id, their event ids
         * in one string; unmarked ids as ranges, their generations where not
         * 0 and their event ids; no replays any more. */
        expect_json(&rows, &unmarked,
                    "{\"version\":3,\"transactional_id\":\"outbox-relay.outbox\","
                    "\"schema\":\"outbox\",\"outbox_id\":\"" OID "\",\"rows\":[[1,1,0,0],"
                    "[3,0,7,4],[9,2,100,0]],\"row_events\":\"" B3 B2 B1 "\","
                    "\"unmarked\":[[7,8]],\"unmarked_generations\":[[8,1]],"
                    "\"unmarked_events\":\"" B1 B2 "\"}");
        /* The caller's rows are left in their order. */
        assert_row(&rows, 0, 9, EV1, 0, 0, 2, 100);
        assert_row(&unmarked, 0, 8, EV2, 1, 0, 3, 55);
        json = progress_encode("t", "s", OID, &rows, &unmarked);
        ck_assert_ptr_nonnull(json);
        decode_ok(json, &out);
        ck_assert_uint_eq(out.n, 5);
        assert_row(&out, 0, 1, EV3, 0, 0, 1, 0);
        assert_row(&out, 1, 3, EV2, 4, 0, 0, 7);
        assert_row(&out, 2, 9, EV1, 0, 0, 2, 100);
        assert_row(&out, 3, 7, EV1, 0, 0, -1, -1);
        assert_row(&out, 4, 8, EV2, 1, 0, -1, -1);
        free(json);
        progress_rows_free(&rows);
        progress_rows_free(&unmarked);
        progress_rows_free(&out);
        ck_assert_ptr_null(rows.ids);
        ck_assert_uint_eq(rows.n, 0);
}
END_TEST

START_TEST(test_empty_sets)
{
        struct progress_rows none = {0}, out = {0};
        char *json;

        expect_json(&none, &none,
                    "{\"version\":3,\"transactional_id\":\"outbox-relay.outbox\","
                    "\"schema\":\"outbox\",\"outbox_id\":\"" OID "\",\"rows\":[],"
                    "\"row_events\":\"\",\"unmarked\":[],\"unmarked_generations\":[],"
                    "\"unmarked_events\":\"\"}");
        json = progress_encode("t", "s", OID, &none, &none);
        ck_assert_ptr_nonnull(json);
        decode_ok(json, &out);
        ck_assert_uint_eq(out.n, 0);
        free(json);
        progress_rows_free(&out);
}
END_TEST

/* One id listed twice (it cannot be: a row is in one batch at a time) is
 * named once, by its newest generation; extreme ids, partitions, offsets
 * and generations; an event id comes back in lower case. */
START_TEST(test_repeated_ids_and_edges)
{
        struct progress_rows rows = {0}, unmarked = {0}, out = {0};
        static const char *const upper = "ABCDEF01-2345-4789-ABCD-EF0123456789";
        char *json;

        add(&rows, INT64_MAX, EV1, INT64_MAX, INT32_MAX, INT64_MAX);
        add(&rows, INT64_MIN, upper, 0, 1, 2);
        add_unmarked(&unmarked, 6, EV2, 3);
        add_unmarked(&unmarked, 6, EV2, 1);
        add_unmarked(&unmarked, 7, EV3, 0);
        json = progress_encode("t", "s", OID, &rows, &unmarked);
        ck_assert_ptr_nonnull(json);
        ck_assert_msg(strstr(json, "\"unmarked\":[[6,7]],\"unmarked_generations\":[[6,3]],"
                                   "\"unmarked_events\":\"" B2 B3 "\"") != NULL,
                      "%s", json);
        decode_ok(json, &out);
        ck_assert_uint_eq(out.n, 4);
        assert_row(&out, 0, INT64_MIN, "abcdef01-2345-4789-abcd-ef0123456789", 0, 0, 1, 2);
        assert_row(&out, 1, INT64_MAX, EV1, INT64_MAX, 0, INT32_MAX, INT64_MAX);
        assert_row(&out, 2, 6, EV2, 3, 0, -1, -1);
        assert_row(&out, 3, 7, EV3, 0, 0, -1, -1);
        free(json);
        progress_rows_free(&rows);
        progress_rows_free(&unmarked);
        progress_rows_free(&out);
}
END_TEST

/* A row without a usable event id cannot be named: no record is written
 * (the relay aborts that transaction) rather than one naming it by id. */
START_TEST(test_unnamed_row_is_not_encoded)
{
        static const char *const evs[] = {NULL, "", "not-a-uuid",
                                          "6f1c1a52-8d1e-4a56-9b1f-0d1d2e3f4a5"};

        for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
                struct progress_rows rows = {0}, unmarked = {0};

                add(&rows, 1, EV1, 0, 0, 0);
                add(i % 2 ? &rows : &unmarked, 2, evs[i], 0, 0, 0);
                ck_assert_ptr_null(progress_encode("t", "s", OID, &rows, &unmarked));
                progress_rows_free(&rows);
                progress_rows_free(&unmarked);
        }
}
END_TEST

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

        return (x > y) - (x < y);
}

/* Where a row of the transaction went, as the round trip sets it. */
static int32_t partition_of(int64_t id)
{
        return (int32_t)(id * 7 % 12);
}

static int64_t offset_of(int64_t id)
{
        return id * 1000003 % 4099 + (id % 3 == 0 ? INT64_C(1) << 40 : 0);
}

static int64_t gen_of(int64_t id)
{
        return id % 7 == 0 ? id % 5 + 1 : 0;
}

/* Distinct ids in shuffled order (runs of consecutive ids and gaps), every
 * seventh made pending again; decode gives each list back sorted with its
 * event ids and generations, the rows with their partitions and offsets,
 * the unmarked ones with -1. */
START_TEST(test_round_trip)
{
        struct progress_rows rows = {0}, unmarked = {0}, out = {0};
        int64_t want[2][3000];
        size_t n[2] = {0, 0};
        uint32_t rnd = 12345u + (uint32_t)_i;
        int64_t id = 1000;
        char *json;

        for (int i = 0; i < 3000; i++) {
                int list;

                rnd = rnd * 1103515245u + 12345u;
                id += (rnd >> 16) % 4 == 0 ? 1 + (rnd >> 8) % 50 : 1; /* gaps now and then */
                list = (rnd >> 4) % 5 == 0;
                want[list][n[list]++] = id;
        }
        for (int l = 0; l < 2; l++) {
                struct progress_rows *s = l ? &unmarked : &rows;

                for (size_t i = n[l]; i > 1; i--) { /* shuffle before adding */
                        size_t j;
                        int64_t t;

                        rnd = rnd * 1103515245u + 12345u;
                        j = (rnd >> 8) % i;
                        t = want[l][i - 1];
                        want[l][i - 1] = want[l][j];
                        want[l][j] = t;
                }
                for (size_t i = 0; i < n[l]; i++) {
                        int64_t w = want[l][i];

                        if (l == 0)
                                add(s, w, ev_of(w), gen_of(w), partition_of(w), offset_of(w));
                        else
                                add_unmarked(s, w, ev_of(w), gen_of(w));
                }
                qsort(want[l], n[l], sizeof(int64_t), cmp_i64);
        }
        json = progress_encode("t", "s", OID, &rows, &unmarked);
        ck_assert_ptr_nonnull(json);
        add(&out, -1, EV3, 9, 4, 77); /* decode appends */
        decode_ok(json, &out);
        ck_assert_uint_eq(out.n, 1 + n[0] + n[1]);
        assert_row(&out, 0, -1, EV3, 9, 0, 4, 77);
        for (size_t k = 0; k < n[0] + n[1]; k++) {
                int64_t w = k < n[0] ? want[0][k] : want[1][k - n[0]];

                if (k < n[0])
                        assert_row(&out, 1 + k, w, ev_of(w), gen_of(w), 0, partition_of(w),
                                   offset_of(w));
                else
                        assert_row(&out, 1 + k, w, ev_of(w), gen_of(w), 0, -1, -1);
        }
        free(json);
        progress_rows_free(&rows);
        progress_rows_free(&unmarked);
        progress_rows_free(&out);
}
END_TEST

/* ---- version 2 records (before migration 005), read for upgrades ----
 * Rows come out named by id and replays: event id "" and generation 0. */

START_TEST(test_v2_record)
{
        const char *json =
            "{\"version\":2,\"transactional_id\":\"outbox-relay.outbox\",\"schema\":\"outbox\","
            "\"outbox_id\":\"" OID "\",\"rows\":[[1,1,0],[2,0,8],[3,0,7],[5,2,101],[9,2,100]],"
            "\"unmarked\":[[7,8]],\"replays\":[[2,2],[8,1]]}";
        struct progress_rows out = {0};

        decode_ok(json, &out);
        ck_assert_uint_eq(out.n, 7);
        assert_row(&out, 0, 1, "", 0, 0, 1, 0);
        assert_row(&out, 1, 2, "", 0, 2, 0, 8);
        assert_row(&out, 4, 9, "", 0, 0, 2, 100);
        assert_row(&out, 5, 7, "", 0, 0, -1, -1);
        assert_row(&out, 6, 8, "", 0, 1, -1, -1);
        progress_rows_free(&out);
}
END_TEST

START_TEST(test_v2_large_range)
{
        const char *json =
            "{\"version\":2,\"transactional_id\":\"t\",\"schema\":\"s\",\"outbox_id\":\"" OID "\","
            "\"rows\":[[0,3,5]],\"unmarked\":[[1,100000]],"
            "\"replays\":[[100000,1]]}";
        struct progress_rows out = {0};

        decode_ok(json, &out);
        ck_assert_uint_eq(out.n, 100001);
        assert_row(&out, 0, 0, "", 0, 0, 3, 5);
        assert_row(&out, 1, 1, "", 0, 0, -1, -1);
        assert_row(&out, 100000, 100000, "", 0, 1, -1, -1);
        assert_row(&out, 99999, 99999, "", 0, 0, -1, -1);
        progress_rows_free(&out);
}
END_TEST

#define REC(rows, unmarked, replays)                                                               \
        "{\"version\":2,\"transactional_id\":\"t\",\"schema\":\"s\",\"outbox_id\":\"" OID          \
        "\",\"rows\":" rows ",\"unmarked\":" unmarked ",\"replays\":" replays "}"

static const struct {
        const char *json, *want;
} bad_v2[] = {
    {"", "progress record: not JSON: '[' or '{' expected near end of file"},
    {"{\"version\":2,", "progress record: not JSON"},
    {"[1,2]", "progress record: not a JSON object"},
    {"{\"version\":2,\"version\":1}", "progress record: not JSON: duplicate object key"},
    {"{\"transactional_id\":\"t\",\"schema\":\"s\",\"outbox_id\":\"" OID
     "\",\"rows\":[],\"unmarked\":[],\"replays\":[]}",
     "progress record: \"version\" is missing or not an integer"},
    /* A record of the version before outbox_id, and one from the future. */
    {"{\"version\":1,\"transactional_id\":\"t\",\"schema\":\"s\",\"rows\":[],\"unmarked\":[],"
     "\"replays\":[]}",
     "progress record: version 1 is not supported (this relay reads 2 and 3)"},
    {"{\"version\":1,\"transactional_id\":\"t\",\"schema\":\"s\",\"outbox_id\":\"" OID "\","
     "\"rows\":[],\"unmarked\":[],\"replays\":[]}",
     "progress record: version 1 is not supported (this relay reads 2 and 3)"},
    {"{\"version\":4,\"transactional_id\":\"t\",\"schema\":\"s\",\"outbox_id\":\"" OID "\","
     "\"rows\":[],\"unmarked\":[]}",
     "progress record: version 4 is not supported (this relay reads 2 and 3)"},
    /* A version 3 record with version 2's members, and the reverse. */
    {"{\"version\":3,\"transactional_id\":\"t\",\"schema\":\"s\",\"outbox_id\":\"" OID "\","
     "\"rows\":[],\"unmarked\":[],\"replays\":[]}",
     "progress record: Object item not found: row_events"},
    {"{\"version\":2,\"transactional_id\":\"t\",\"schema\":\"s\",\"outbox_id\":\"" OID "\","
     "\"rows\":[],\"unmarked\":[]}",
     "progress record: Object item not found: replays"},
    /* outbox_id: a uuid in its text form. */
    {"{\"version\":2,\"transactional_id\":\"t\",\"schema\":\"s\",\"outbox_id\":7,\"rows\":[],"
     "\"unmarked\":[],\"replays\":[]}",
     "progress record: \"outbox_id\" is not a uuid"},
    {"{\"version\":2,\"transactional_id\":\"t\",\"schema\":\"s\",\"outbox_id\":\"\",\"rows\":[],"
     "\"unmarked\":[],\"replays\":[]}",
     "progress record: \"outbox_id\" is not a uuid"},
    {"{\"version\":2,\"transactional_id\":\"t\",\"schema\":\"s\","
     "\"outbox_id\":\"6f1c1a52-8d1e-4a56-9b1f-0d1d2e3f4a5g\",\"rows\":[],\"unmarked\":[],"
     "\"replays\":[]}",
     "progress record: \"outbox_id\" is not a uuid"},
    {"{\"version\":2,\"transactional_id\":\"t\",\"schema\":\"s\","
     "\"outbox_id\":\"6f1c1a52x8d1e-4a56-9b1f-0d1d2e3f4a5b\",\"rows\":[],\"unmarked\":[],"
     "\"replays\":[]}",
     "progress record: \"outbox_id\" is not a uuid"},
    {"{\"version\":2,\"transactional_id\":\"t\",\"schema\":\"s\","
     "\"outbox_id\":\"6f1c1a52-8d1e-4a56-9b1f-0d1d2e3f4a5b0\",\"rows\":[],\"unmarked\":[],"
     "\"replays\":[]}",
     "progress record: \"outbox_id\" is not a uuid"},
    {"{\"version\":\"1\",\"transactional_id\":\"t\",\"schema\":\"s\",\"outbox_id\":\"" OID
     "\",\"rows\":[],\"unmarked\":[],"
     "\"replays\":[]}",
     "progress record: \"version\" is missing or not an integer"},
    {"{\"version\":2,\"transactional_id\":7,\"schema\":\"s\",\"outbox_id\":\"" OID
     "\",\"rows\":[],\"unmarked\":[],"
     "\"replays\":[]}",
     "\"transactional_id\" and \"schema\" must be strings"},
    {"{\"version\":2,\"transactional_id\":\"t\",\"rows\":[],\"unmarked\":[],\"replays\":[]}",
     "progress record: Object item not found: schema"},
    {"{\"version\":2,\"transactional_id\":\"t\",\"schema\":\"s\",\"outbox_id\":\"" OID
     "\",\"rows\":[],\"unmarked\":[],"
     "\"replays\":[],\"row\":[]}",
     "progress record: 1 object item(s) left unpacked: row"},
    {"{\"version\":2,\"transactional_id\":\"t\",\"schema\":\"s\",\"outbox_id\":\"" OID
     "\",\"unmarked\":[],\"replays\":[]}",
     "progress record: Object item not found: rows"},
    /* "rows": [id,partition,offset] triples, ids ascending. */
    {REC("{}", "[]", "[]"), "progress record: \"rows\" is not an array of [id,partition,offset]"},
    {REC("null", "[]", "[]"), "progress record: \"rows\" is not an array of [id,partition,offset]"},
    {REC("[[1]]", "[]", "[]"),
     "progress record: \"rows\" item 0 is not an [id,partition,offset] triple of non-negative "
     "integers"},
    {REC("[[1,2]]", "[]", "[]"), "\"rows\" item 0 is not an [id,partition,offset] triple"},
    {REC("[[1,0,0],[4,5,6,7]]", "[]", "[]"),
     "\"rows\" item 1 is not an [id,partition,offset] triple"},
    {REC("[[]]", "[]", "[]"), "\"rows\" item 0 is not an [id,partition,offset] triple"},
    {REC("[[1,0,\"2\"]]", "[]", "[]"), "\"rows\" item 0 is not an [id,partition,offset] triple"},
    {REC("[[\"1\",0,2]]", "[]", "[]"), "\"rows\" item 0 is not an [id,partition,offset] triple"},
    {REC("[[1.0,0,2]]", "[]", "[]"), "\"rows\" item 0 is not an [id,partition,offset] triple"},
    {REC("[[1,0.5,2]]", "[]", "[]"), "\"rows\" item 0 is not an [id,partition,offset] triple"},
    {REC("[[1,0,null]]", "[]", "[]"), "\"rows\" item 0 is not an [id,partition,offset] triple"},
    {REC("[7]", "[]", "[]"), "\"rows\" item 0 is not an [id,partition,offset] triple"},
    {REC("[[1,0,0],{\"id\":2}]", "[]", "[]"),
     "\"rows\" item 1 is not an [id,partition,offset] triple"},
    {REC("[[1,-1,0]]", "[]", "[]"),
     "\"rows\" item 0 is not an [id,partition,offset] triple of non-negative integers"},
    {REC("[[1,0,0],[2,0,-1]]", "[]", "[]"),
     "\"rows\" item 1 is not an [id,partition,offset] triple of non-negative integers"},
    {REC("[[1,-2147483648,0]]", "[]", "[]"),
     "\"rows\" item 0 is not an [id,partition,offset] triple of non-negative integers"},
    {REC("[[1,0,-9223372036854775808]]", "[]", "[]"),
     "\"rows\" item 0 is not an [id,partition,offset] triple of non-negative integers"},
    {REC("[[1,2147483648,0]]", "[]", "[]"), /* not an int32 */
     "\"rows\" item 0 is not an [id,partition,offset] triple of non-negative integers"},
    {REC("[[5,0,0],[1,0,0]]", "[]", "[]"), "progress record: \"rows\" ids do not ascend at item 1"},
    {REC("[[1,0,0],[2,0,1],[2,1,0]]", "[]", "[]"), "\"rows\" ids do not ascend at item 2"},
    {REC("[[1,0,0],[3,0,1],[2,0,2]]", "[]", "[]"), "\"rows\" ids do not ascend at item 2"},
    /* "unmarked": [first,last] ranges, ascending without overlap. */
    {REC("[]", "{}", "[]"), "progress record: \"unmarked\" is not an array of [first,last] pairs"},
    {REC("[]", "[[1]]", "[]"),
     "progress record: \"unmarked\" item 0 is not a [first,last] pair of integers"},
    {REC("[]", "[[1,2],[4,5,6]]", "[]"),
     "\"unmarked\" item 1 is not a [first,last] pair of integers"},
    {REC("[]", "[[1,\"2\"]]", "[]"), "\"unmarked\" item 0 is not a [first,last] pair of integers"},
    {REC("[]", "[[1.0,2]]", "[]"), "\"unmarked\" item 0 is not a [first,last] pair of integers"},
    {REC("[]", "[7]", "[]"), "\"unmarked\" item 0 is not a [first,last] pair of integers"},
    {REC("[]", "[[3,1]]", "[]"), "progress record: \"unmarked\" range [3,1] has first > last"},
    {REC("[]", "[[1,10000001]]", "[]"),
     "progress record: \"unmarked\" range [1,10000001] is larger than 10000000 ids"},
    {REC("[]", "[[-9223372036854775808,9223372036854775807]]", "[]"),
     "\"unmarked\" range [-9223372036854775808,9223372036854775807] is larger than 10000000 ids"},
    {REC("[]", "[[5,6],[1,2]]", "[]"),
     "progress record: \"unmarked\" ranges do not ascend without overlap at item 1"},
    {REC("[]", "[[1,5],[5,6]]", "[]"),
     "\"unmarked\" ranges do not ascend without overlap at item 1"},
    {REC("[[1,0,0]]", "[[2,1]]", "[]"), "\"unmarked\" range [2,1] has first > last"},
    {REC("[[1,0,0]]", "null", "[]"), "\"unmarked\" is not an array of [first,last] pairs"},
    /* "replays": [id,n] pairs, ids ascending, each in "rows" or "unmarked". */
    {REC("[[1,0,0],[2,0,1]]", "[]", "{}"),
     "progress record: \"replays\" is not an array of [id,n] pairs"},
    {REC("[[1,0,0],[2,0,1]]", "[]", "[[1,0]]"),
     "progress record: \"replays\" item 0 is not an [id,n] pair of integers, n a non-zero "
     "int32"},
    {REC("[[1,0,0],[2,0,1]]", "[]", "[[1,2147483648]]"),
     "\"replays\" item 0 is not an [id,n] pair"},
    {REC("[[1,0,0],[2,0,1]]", "[]", "[[1,-2147483649]]"),
     "\"replays\" item 0 is not an [id,n] pair"},
    {REC("[[1,0,0],[2,0,1]]", "[]", "[[1]]"), "\"replays\" item 0 is not an [id,n] pair"},
    {REC("[[1,0,0],[2,0,1]]", "[]", "[[1,\"1\"]]"), "\"replays\" item 0 is not an [id,n] pair"},
    {REC("[[1,0,0],[2,0,1]]", "[]", "[[2,1],[1,1]]"),
     "progress record: \"replays\" ids do not ascend at item 1"},
    {REC("[[1,0,0],[2,0,1]]", "[]", "[[1,1],[1,2]]"), "\"replays\" ids do not ascend at item 1"},
    {REC("[[1,0,0],[2,0,1]]", "[[5,5]]", "[[3,1]]"),
     "progress record: \"replays\" names id 3, which is in neither \"rows\" nor "
     "\"unmarked\""},
    /* Rows' partition and offset are not ids: they name no row to replay. */
    {REC("[[1,7,9]]", "[]", "[[7,1]]"),
     "\"replays\" names id 7, which is in neither \"rows\" nor \"unmarked\""},
};

#define REC3(rows, events, unmarked, gens, uevents)                                                \
        "{\"version\":3,\"transactional_id\":\"t\",\"schema\":\"s\",\"outbox_id\":\"" OID          \
        "\",\"rows\":" rows ",\"row_events\":" events ",\"unmarked\":" unmarked                    \
        ",\"unmarked_generations\":" gens ",\"unmarked_events\":" uevents "}"
/* Expands ROWS1 and NONE before REC3 counts its arguments. */
#define REC3V(...) REC3(__VA_ARGS__)
#define ROWS1      "[[1,0,0,0]]", "\"" B1 "\""
#define NONE       "[]", "[]", "\"\""
#define ROW_MSG                                                                                    \
        "is not [id,partition,offset,generation] (partition, offset and generation non-negative)"

static const struct {
        const char *json, *want;
} bad_v3[] = {
    {REC3V(ROWS1, NONE) "x", "progress record: not JSON"},
    {"{\"version\":3,\"transactional_id\":\"t\",\"schema\":\"s\",\"outbox_id\":\"" OID
     "\",\"rows\":[],\"row_events\":\"\",\"unmarked\":[],\"unmarked_events\":\"\"}",
     "progress record: Object item not found: unmarked_generations"},
    {"{\"version\":3,\"transactional_id\":\"t\",\"schema\":\"s\",\"outbox_id\":\"" OID
     "\",\"rows\":[],\"row_events\":\"\",\"unmarked\":[],\"unmarked_generations\":[],"
     "\"unmarked_events\":\"\",\"extra\":1}",
     "progress record: 1 object item(s) left unpacked: extra"},
    {"{\"version\":3,\"transactional_id\":\"t\",\"schema\":7,\"outbox_id\":\"" OID
     "\",\"rows\":[],\"row_events\":\"\",\"unmarked\":[],\"unmarked_generations\":[],"
     "\"unmarked_events\":\"\"}",
     "progress record: \"transactional_id\" and \"schema\" must be strings"},
    {"{\"version\":3,\"transactional_id\":\"t\",\"schema\":\"s\",\"outbox_id\":\"x\","
     "\"rows\":[],\"row_events\":\"\",\"unmarked\":[],\"unmarked_generations\":[],"
     "\"unmarked_events\":\"\"}",
     "progress record: \"outbox_id\" is not a uuid"},
    /* "rows": [id,partition,offset,generation], ids ascending. */
    {REC3V("{}", "\"\"", NONE), "progress record: \"rows\" is not an array"},
    {REC3V("[[1,0,0]]", "\"" B1 "\"", NONE), "progress record: \"rows\" item 0 " ROW_MSG},
    {REC3V("[[1,0,0,0,9]]", "\"" B1 "\"", NONE), "\"rows\" item 0 " ROW_MSG},
    {REC3V("[[1,0,0,-1]]", "\"" B1 "\"", NONE), "\"rows\" item 0 " ROW_MSG},
    {REC3V("[[1,0,0,\"0\"]]", "\"" B1 "\"", NONE), "\"rows\" item 0 " ROW_MSG},
    {REC3V("[[1,0,0,0.0]]", "\"" B1 "\"", NONE), "\"rows\" item 0 " ROW_MSG},
    {REC3V("[[1,-1,0,0]]", "\"" B1 "\"", NONE), "\"rows\" item 0 " ROW_MSG},
    {REC3V("[[1,2147483648,0,0]]", "\"" B1 "\"", NONE), "\"rows\" item 0 " ROW_MSG},
    {REC3V("[[1,0,-1,0]]", "\"" B1 "\"", NONE), "\"rows\" item 0 " ROW_MSG},
    {REC3V("[[1,0,0,0],[1,0,1,1]]", "\"" B1 B2 "\"", NONE),
     "progress record: \"rows\" ids do not ascend at item 1"},
    /* "row_events": 22 base64url characters a row, the last with 4 zero bits. */
    {REC3V("[[1,0,0,0]]", "\"\"", NONE),
     "progress record: \"row_events\" is not a string of 22 characters for each of 1 rows"},
    {REC3V("[[1,0,0,0]]", "null", NONE), "\"row_events\" is not a string of 22 characters"},
    {REC3V("[[1,0,0,0]]", "\"" B1 "A\"", NONE), "\"row_events\" is not a string of 22 characters"},
    {REC3V("[[1,0,0,0],[2,0,1,0]]", "\"" B1 "\"", NONE),
     "\"row_events\" is not a string of 22 characters for each of 2 rows"},
    {REC3V("[[1,0,0,0]]", "\"AAAAAAAAQACAAAAAAAAAA+\"", NONE),
     "progress record: \"row_events\" row 0 is not an event id in base64url"},
    {REC3V("[[1,0,0,0]]", "\"AAAAAAAAQACAAAAAAAAAAR\"", NONE), /* bits past the 16 bytes */
     "\"row_events\" row 0 is not an event id in base64url"},
    {REC3V("[[1,0,0,0],[2,0,0,0]]", "\"" B1 "AAAAAAAAQACAAAAAAAAA=A\"", NONE),
     "\"row_events\" row 1 is not an event id in base64url"},
    /* "unmarked": ranges; "unmarked_events", "unmarked_generations". */
    {REC3V(ROWS1, "[[3,1]]", "[]", "\"\""),
     "progress record: \"unmarked\" range [3,1] has first > last"},
    {REC3V(ROWS1, "[[1,2]]", "[]", "\"" B1 "\""),
     "progress record: \"unmarked_events\" is not a string of 22 characters for each of 2 rows"},
    {REC3V(ROWS1, "[[1,1]]", "[]", "\"" B1 "!\""),
     "\"unmarked_events\" is not a string of 22 characters for each of 1 rows"},
    {REC3V(ROWS1, "[[1,1]]", "{}", "\"" B1 "\""),
     "progress record: \"unmarked_generations\" is not an array"},
    {REC3V(ROWS1, "[[1,1]]", "[[1,0]]", "\"" B1 "\""),
     "progress record: \"unmarked_generations\" item 0 is not [id,generation] (generation "
     "positive)"},
    {REC3V(ROWS1, "[[1,1]]", "[[1,-2]]", "\"" B1 "\""),
     "\"unmarked_generations\" item 0 is not [id,generation]"},
    {REC3V(ROWS1, "[[1,2]]", "[[2,1],[1,1]]", "\"" B1 B2 "\""),
     "progress record: \"unmarked_generations\" ids do not ascend at item 1"},
    {REC3V(ROWS1, "[[1,1]]", "[[2,1]]", "\"" B1 "\""),
     "progress record: \"unmarked_generations\" names id 2, which \"unmarked\" does not"},
};

static void decode_fails(const char *json, const char *want)
{
        struct progress_rows out = {0};
        char oid[PROGRESS_OUTBOX_ID_SIZE] = "before";

        add(&out, 42, EV1, 1, 3, 4);
        errbuf[0] = '\0';
        ck_assert_msg(progress_decode(json, strlen(json), &out, oid, errbuf, sizeof(errbuf)) == -1,
                      "accepted %s", json);
        ck_assert_str_eq(oid, "before"); /* untouched */
        ck_assert_msg(strstr(errbuf, want) != NULL, "%s: got \"%s\", want \"%s\"", json, errbuf,
                      want);
        /* out is left as it was, even after a partial expansion. */
        ck_assert_uint_eq(out.n, 1);
        assert_row(&out, 0, 42, EV1, 1, 0, 3, 4);
        progress_rows_free(&out);
}

START_TEST(test_decode_errors_v2)
{
        decode_fails(bad_v2[_i].json, bad_v2[_i].want);
}
END_TEST

START_TEST(test_decode_errors_v3)
{
        decode_fails(bad_v3[_i].json, bad_v3[_i].want);
}
END_TEST

/* The limit holds for the record as a whole, not only per range: rows
 * count, and so do earlier unmarked ranges. */
START_TEST(test_too_many_ids)
{
        static const char *const json[] = {
            REC("[[0,0,0]]", "[[1,10000000]]", "[]"),
            REC("[]", "[[1,5000000],[10000000,15000000]]", "[]"),
        };

        for (size_t i = 0; i < sizeof(json) / sizeof(json[0]); i++)
                decode_fails(json[i], "progress record: more than 10000000 ids in all");
}
END_TEST

START_TEST(test_rows_grow_and_clear)
{
        struct progress_rows s = {0};

        for (int i = 0; i < 1000; i++)
                add(&s, i, ev_of(i), i % 3, i % 10, (int64_t)i * 100);
        ck_assert_uint_eq(s.n, 1000);
        ck_assert_uint_ge(s.cap, 1000);
        for (int i = 0; i < 1000; i++)
                assert_row(&s, (size_t)i, i, ev_of(i), i % 3, 0, i % 10, (int64_t)i * 100);
        progress_rows_clear(&s);
        ck_assert_uint_eq(s.n, 0);
        add(&s, 7, NULL, 0, -1, -1);
        assert_row(&s, 0, 7, "", 0, 0, -1, -1);
        progress_rows_free(&s);
        progress_rows_free(&s); /* twice is harmless */
}
END_TEST

Suite *test_suite(void)
{
        Suite *s = suite_create("progress");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_exact_json);
        tcase_add_test(tc, test_empty_sets);
        tcase_add_test(tc, test_repeated_ids_and_edges);
        tcase_add_test(tc, test_unnamed_row_is_not_encoded);
        tcase_add_loop_test(tc, test_round_trip, 0, 4);
        tcase_add_test(tc, test_v2_record);
        tcase_add_test(tc, test_v2_large_range);
        tcase_add_loop_test(tc, test_decode_errors_v2, 0,
                            (int)(sizeof(bad_v2) / sizeof(bad_v2[0])));
        tcase_add_loop_test(tc, test_decode_errors_v3, 0,
                            (int)(sizeof(bad_v3) / sizeof(bad_v3[0])));
        tcase_add_test(tc, test_too_many_ids);
        tcase_add_test(tc, test_rows_grow_and_clear);
        tcase_set_timeout(tc, 60);
        suite_add_tcase(s, tc);
        return s;
}
