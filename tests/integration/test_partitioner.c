/* Partitions a Java producer would choose (issue #19 item 2): rows with the
 * keys of tests/data/murmur2-vectors.tsv (computed by Apache Kafka's own
 * client code) published by the real relay to topics of 1 to 100
 * partitions, read back by an independent consumer, each message's
 * partition compared with the vector; and librdkafka's CRC32 partitioner
 * back on request, for relays that must keep their old placement. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "runner.h"

#define VECTORS_FILE OUTBOX_SOURCE_DIR "/tests/data/murmur2-vectors.tsv"
#define MAX_VECTORS  512
#define NULL_KEYS    20  /* rows without a key, beside the vectors */
#define TOMBSTONES   100 /* a tombstone per vector of this count, beside it */

struct vec {
        unsigned char *key;
        size_t key_len;
        char *key_hex;
        int partitions;
        int partition; /* what Kafka's Java producer chooses */
        char note[96];
};

static struct vec vecs[MAX_VECTORS];
static size_t n_vecs;
static const int counts[] = {1, 3, 6, 64, 100};
#define N_COUNTS (sizeof(counts) / sizeof(counts[0]))

static struct fx_pg *pg;
static struct fx_kafka *kafka;
static struct fx_apache *ak;

static int hexval(char c)
{
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Reads the committed vectors: key_hex, partitions, partition, murmur2,
 * note; '#' lines are the header. */
static void load_vectors(void)
{
        FILE *f = fopen(VECTORS_FILE, "r");
        char *line = NULL;
        size_t cap = 0;

        ck_assert_msg(f != NULL, "cannot open %s", VECTORS_FILE);
        while (getline(&line, &cap, f) > 0) {
                struct vec *v = &vecs[n_vecs];
                char *tab = strchr(line, '\t'), *note;
                size_t hex_len;

                if (line[0] == '#')
                        continue;
                ck_assert_msg(tab != NULL && n_vecs < MAX_VECTORS, "bad line in %s", VECTORS_FILE);
                hex_len = (size_t)(tab - line);
                ck_assert(hex_len % 2 == 0);
                v->key_hex = strndup(line, hex_len);
                v->key_len = hex_len / 2;
                v->key = malloc(v->key_len + 1);
                for (size_t i = 0; i < v->key_len; i++) {
                        int hi = hexval(line[2 * i]), lo = hexval(line[2 * i + 1]);

                        ck_assert(hi >= 0 && lo >= 0);
                        v->key[i] = (unsigned char)(hi << 4 | lo);
                }
                ck_assert_int_eq(sscanf(tab + 1, "%d\t%d", &v->partitions, &v->partition), 2);
                note = strrchr(line, '\t');
                snprintf(v->note, sizeof(v->note), "%.*s", (int)strcspn(note + 1, "\n"), note + 1);
                n_vecs++;
        }
        free(line);
        fclose(f);
        ck_assert_msg(n_vecs > 100, "only %zu vectors in %s", n_vecs, VECTORS_FILE);
}

static void free_vectors(void)
{
        for (size_t i = 0; i < n_vecs; i++) {
                free(vecs[i].key);
                free(vecs[i].key_hex);
        }
        n_vecs = 0;
}

static void mock_setup(void)
{
        load_vectors();
        pg = fx_pg_start();
        kafka = fx_kafka_start(3, 4);
}

static void mock_teardown(void)
{
        fx_kafka_stop(kafka);
        fx_pg_stop(pg);
        free_vectors();
}

static void apache_setup(void)
{
        load_vectors();
        pg = fx_pg_start();
        ak = fx_apache_start(1);
}

static void apache_teardown(void)
{
        fx_apache_stop(ak);
        fx_pg_stop(pg);
        free_vectors();
}

static char *fresh_db(const char *name)
{
        char *conninfo = fx_pg_create_db(pg, name);

        fx_migrate(conninfo, NULL);
        return conninfo;
}

/* Topics <prefix>-<count> for each partition count, on the dev Kafka. */
static void mock_topics(const char *prefix)
{
        char cmd[128];

        for (size_t i = 0; i < N_COUNTS; i++) {
                snprintf(cmd, sizeof(cmd), "topic %s-%d %d", prefix, counts[i], counts[i]);
                ck_assert_int_eq(fx_kafka_command(kafka, cmd), 0);
        }
}

/* One row per vector to <prefix>-<its count>, its index in the payload,
 * inserted by the writer role, and a tombstone (no payload) after each
 * vector of TOMBSTONES partitions; then NULL_KEYS rows without a key to
 * <prefix>-6. */
static void insert_rows(const char *conninfo, const char *prefix)
{
        PGconn *w = fx_db_connect_as(conninfo, FX_WRITER_ROLE);

        fx_sql(w, "BEGIN");
        for (size_t i = 0; i < n_vecs; i++)
                fx_sql(w,
                       "INSERT INTO outbox.events (topic, key, payload) VALUES ('%s-%d', "
                       "convert_from(decode('%s', 'hex'), 'UTF8'), '{\"v\": %zu}')",
                       prefix, vecs[i].partitions, vecs[i].key_hex, i);
        for (size_t i = 0; i < n_vecs; i++)
                if (vecs[i].partitions == TOMBSTONES)
                        fx_sql(w,
                               "INSERT INTO outbox.events (topic, key) VALUES ('%s-%d', "
                               "convert_from(decode('%s', 'hex'), 'UTF8'))",
                               prefix, TOMBSTONES, vecs[i].key_hex);
        fx_sql(w,
               "INSERT INTO outbox.events (topic, key, payload) SELECT '%s-6', NULL, "
               "jsonb_build_object('null_key', n) FROM generate_series(1, %d) n",
               prefix, NULL_KEYS);
        fx_sql(w, "COMMIT");
        PQfinish(w);
}

/* CRC-32 (ISO-HDLC, the one of zlib and librdkafka's consistent
 * partitioner), bit by bit: written here so that the test needs no library
 * for it; its check value is asserted below. */
static uint32_t crc32_iso(const unsigned char *p, size_t n)
{
        uint32_t c = 0xffffffffu;

        for (size_t i = 0; i < n; i++) {
                c ^= p[i];
                for (int b = 0; b < 8; b++)
                        c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
        }
        return c ^ 0xffffffffu;
}

/* Which partition each keyed row should reach under the partitioner the
 * relay runs with: Kafka's vectors, or librdkafka's consistent_random
 * (CRC32 of the key; an empty key has none). */
enum expect { EXPECT_JAVA, EXPECT_CRC32 };

static int expected_partition(const struct vec *v, enum expect e)
{
        if (e == EXPECT_JAVA)
                return v->partition;
        if (v->key_len == 0)
                return -1; /* spread at random by consistent_random */
        return (int)(crc32_iso(v->key, v->key_len) % (uint32_t)v->partitions);
}

/* Runs the relay over the rows, reads every topic back and compares each
 * message's partition and key with its vector. Returns the mismatches. */
static int publish_and_compare(const char *conninfo, const char *prefix, const char *brokers,
                               const char *const extra[], enum expect e)
{
        PGconn *c = fx_db_connect(conninfo);
        struct fx_relay *r;
        long long total = (long long)n_vecs + NULL_KEYS;
        int mismatches = 0, checked = 0, null_keys = 0, tombstones = 0, want_tombstones = 0;
        int null_key_partitions[6] = {0}, null_key_spread = 0;
        char *seen = calloc(n_vecs, 1);

        for (size_t i = 0; i < n_vecs; i++)
                want_tombstones += vecs[i].partitions == TOMBSTONES;
        total += want_tombstones;
        insert_rows(conninfo, prefix);
        r = fx_relay_start(conninfo, brokers, extra);
        ck_assert_int_eq(fx_wait_sql(c, total, 120000,
                                     "SELECT count(*) FROM outbox.events WHERE status = 'sent'"),
                         total);
        for (size_t t = 0; t < N_COUNTS; t++) {
                char topic[64];
                size_t expect = counts[t] == 6 ? NULL_KEYS : 0, n;
                struct fx_msg *msgs;

                if (counts[t] == TOMBSTONES)
                        expect += (size_t)want_tombstones;
                for (size_t i = 0; i < n_vecs; i++)
                        expect += vecs[i].partitions == counts[t];
                snprintf(topic, sizeof(topic), "%s-%d", prefix, counts[t]);
                n = fx_consume(brokers, topic, expect, 15000, &msgs);
                ck_assert_msg(n == expect, "%s: %zu messages, expected %zu", topic, n, expect);
                for (size_t m = 0; m < n; m++) {
                        const struct fx_msg *msg = &msgs[m];
                        size_t idx;
                        int want;

                        ck_assert(msg->partition >= 0 && msg->partition < counts[t]);
                        if (msg->value && strstr(msg->value, "null_key")) {
                                ck_assert_ptr_null(msg->key);
                                null_keys++;
                                null_key_partitions[msg->partition]++;
                                continue;
                        }
                        if (msg->value == NULL) { /* a tombstone: found by its key */
                                for (idx = 0; idx < n_vecs; idx++)
                                        if (vecs[idx].partitions == counts[t] &&
                                            vecs[idx].key_len == msg->key_len &&
                                            (msg->key_len == 0 ||
                                             memcmp(vecs[idx].key, msg->key, msg->key_len) == 0))
                                                break;
                                ck_assert_msg(idx < n_vecs, "%s: tombstone of an unknown key",
                                              topic);
                                want = expected_partition(&vecs[idx], e);
                                ck_assert_msg(want < 0 || msg->partition == want,
                                              "%s: tombstone of key %.40s (%s) on partition %d, "
                                              "its key's is %d",
                                              topic, vecs[idx].key_hex, vecs[idx].note,
                                              msg->partition, want);
                                tombstones++;
                                continue;
                        }
                        ck_assert_msg(msg->value && sscanf(msg->value, "{\"v\": %zu}", &idx) == 1 &&
                                          idx < n_vecs && !seen[idx],
                                      "%s: unexpected message %.60s", topic,
                                      msg->value ? msg->value : "(null)");
                        seen[idx] = 1;
                        ck_assert_int_eq(vecs[idx].partitions, counts[t]);
                        /* The key travels as its bytes (an empty key stays
                         * an empty key, not none). */
                        ck_assert_msg(msg->key != NULL && msg->key_len == vecs[idx].key_len &&
                                          memcmp(msg->key, vecs[idx].key, msg->key_len) == 0,
                                      "%s: key of vector %zu (%s) changed", topic, idx,
                                      vecs[idx].note);
                        want = expected_partition(&vecs[idx], e);
                        if (want < 0)
                                continue;
                        checked++;
                        if (msg->partition != want) {
                                if (mismatches < 8)
                                        fprintf(stderr,
                                                "%s: key %.40s (%s) reached partition %d, "
                                                "expected %d\n",
                                                topic, vecs[idx].key_hex, vecs[idx].note,
                                                msg->partition, want);
                                mismatches++;
                        }
                }
                fx_msgs_free(msgs, n);
        }
        ck_assert_int_eq(null_keys, NULL_KEYS);
        ck_assert_int_eq(tombstones, want_tombstones);
        /* Rows without a key are spread at random (no sticky partition at
         * linger.ms=0): 20 on one of 6 partitions would be 6^-19. */
        for (int p = 0; p < 6; p++)
                null_key_spread += null_key_partitions[p] > 0;
        ck_assert_msg(null_key_spread > 1, "%d rows without a key all on one partition", NULL_KEYS);
        ck_assert_int_eq(checked, e == EXPECT_JAVA ? (int)n_vecs : (int)(n_vecs - N_COUNTS));
        fprintf(stderr, "%s: %d keyed messages compared, %d on another partition\n", prefix,
                checked, mismatches);
        fx_relay_free(r);
        free(seen);
        PQfinish(c);
        return mismatches;
}

/* The default: every key on the partition Kafka's Java producer picks. */
START_TEST(default_partitions_match_java_producer)
{
        char *ci = fresh_db("java");
        const char *args[] = {"--poll-interval-ms", "200", NULL};

        mock_topics("pj");
        ck_assert_int_eq(
            publish_and_compare(ci, "pj", fx_kafka_bootstraps(kafka), args, EXPECT_JAVA), 0);
        free(ci);
}
END_TEST

/* The way back for a relay that ran before the change (docs/delivery.md):
 * librdkafka's CRC32 placement, every key where it went before. */
START_TEST(consistent_random_on_request)
{
        char *ci = fresh_db("crc");
        const char *args[] = {"--poll-interval-ms", "200", "-X", "partitioner=consistent_random",
                              NULL};
        int moved = 0, multi = 0;

        ck_assert_uint_eq(crc32_iso((const unsigned char *)"123456789", 9), 0xcbf43926u);
        /* What an upgrade from this partitioner moves (docs/delivery.md). */
        for (size_t i = 0; i < n_vecs; i++)
                if (vecs[i].partitions > 1 && vecs[i].key_len > 0) {
                        multi++;
                        moved += expected_partition(&vecs[i], EXPECT_CRC32) != vecs[i].partition;
                }
        fprintf(stderr,
                "consistent_random -> murmur2: %d of %d keyed vectors on topics of more "
                "than one partition move\n",
                moved, multi);
        mock_topics("pc");
        ck_assert_int_eq(
            publish_and_compare(ci, "pc", fx_kafka_bootstraps(kafka), args, EXPECT_CRC32), 0);
        free(ci);
}
END_TEST

/* --exactly-once produces with a transactional producer: the same
 * placement (fx_consume reads read_committed). */
START_TEST(exactly_once_partitions_match_java_producer)
{
        char *ci = fresh_db("java_eos");
        const char *args[] = {"--poll-interval-ms", "200", "--exactly-once", "--transactional-id",
                              "partitioner_eos",    NULL};

        ck_assert_int_eq(fx_kafka_command(kafka, "topic outbox-relay-progress 1"), 0);
        mock_topics("pe");
        ck_assert_int_eq(
            publish_and_compare(ci, "pe", fx_kafka_bootstraps(kafka), args, EXPECT_JAVA), 0);
        free(ci);
}
END_TEST

/* A partitioner librdkafka does not know is refused before anything is
 * contacted: exit 2 and one line naming it. */
START_TEST(unknown_partitioner_is_refused)
{
        const char *argv[] = {OUTBOX_RELAY_BIN,
                              "run",
                              "--database-url",
                              "host=127.0.0.1 port=1 dbname=none",
                              "--kafka-brokers",
                              "127.0.0.1:1",
                              "-X",
                              "partitioner=java",
                              NULL};
        char *out = NULL;
        int rc = fx_run(argv, NULL, &out, 30000);

        ck_assert_msg(rc == 2, "exit %d: %s", rc, out);
        ck_assert_msg(strstr(out, "partitioner") != NULL, "no line names the setting: %s", out);
        ck_assert_msg(strchr(out, '\n') == strrchr(out, '\n'), "more than one line: %s", out);
        free(out);
}
END_TEST

/* The same against Apache Kafka 4.4.0, its topics made by its admin API. */
START_TEST(apache_partitions_match_java_producer)
{
        char *ci = fresh_db("java_ak");
        const char *args[] = {"--poll-interval-ms", "200", NULL};
        char topic[64];

        for (size_t i = 0; i < N_COUNTS; i++) {
                snprintf(topic, sizeof(topic), "ak-%d", counts[i]);
                fx_apache_create_topic(ak, topic, counts[i], NULL);
        }
        ck_assert_int_eq(publish_and_compare(ci, "ak", fx_apache_bootstraps(ak), args, EXPECT_JAVA),
                         0);
        free(ci);
}
END_TEST

/* Each test a test case of its own (CK_RUN_CASE=<test>); the tag says
 * which broker it needs (CK_INCLUDE_TAGS=dev_kafka or apache_kafka), each
 * started once for the cases that need it. */
static const struct runner_servers mock = {mock_setup, mock_teardown};
static const struct runner_servers apache = {apache_setup, apache_teardown};

Suite *test_suite(void)
{
        Suite *s = suite_create("partitioner");

        runner_add(s, default_partitions_match_java_producer, "dev_kafka", &mock, 300);
        runner_add(s, exactly_once_partitions_match_java_producer, "dev_kafka", &mock, 300);
        runner_add(s, consistent_random_on_request, "dev_kafka", &mock, 300);
        runner_add(s, unknown_partitioner_is_refused, "dev_kafka", &mock, 300);
        runner_add(s, apache_partitions_match_java_producer, "apache_kafka", &apache, 600);
        return s;
}
