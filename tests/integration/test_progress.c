/* Integration tests of the progress reader against outbox-dev-kafka:
 * records written by a plain transactional librdkafka producer, as the relay
 * writes them, and read back (one reader, so one consumer, for all the reads
 * of a case) for one key behind other keys' records, past the first window,
 * for unknown keys and for a missing topic.
 * librdkafka 2.0.2's mock cluster does not implement read_committed: its
 * Fetch reports no aborted transactions and the last stable offset is the
 * high watermark, so aborted records stay visible there and no test here
 * expects them to be hidden. */
#include <check.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "fixture.h"
#include "log.h"
#include "progress_reader.h"
#include "runner.h"

#define TIMEOUT_MS 20000

static struct fx_kafka *kafka;
static char errbuf[512];

/* The outbox identity the records here carry. */
#define OID "6f1c1a52-8d1e-4a56-9b1f-0d1d2e3f4a5b"

static void suite_setup(void)
{
        kafka = fx_kafka_start(1, 1);
}

static void suite_teardown(void)
{
        fx_kafka_stop(kafka);
}

/* A configuration as the relay has it, with producer -X properties the
 * reader must take or ignore without failing (one the consumer refuses). */
static struct config *make_config_with(const char *brokers, const char *topic, const char *flag)
{
        char *argv[] = {"--kafka-brokers",
                        (char *)brokers,
                        "--progress-topic",
                        (char *)topic,
                        "-X",
                        "acks=all",
                        "-X",
                        "linger.ms=5",
                        "-X",
                        "enable.idempotence=true",
                        (char *)flag};
        int argc = (int)(sizeof(argv) / sizeof(argv[0])) - (flag == NULL);
        struct config *cfg = config_new();

        ck_assert_ptr_nonnull(cfg);
        ck_assert_msg(config_parse(cfg, argc, argv, errbuf, sizeof(errbuf)) == 0, "config: %s",
                      errbuf);
        return cfg;
}

static struct config *make_config(const char *brokers, const char *topic)
{
        return make_config_with(brokers, topic, NULL);
}

static FILE *devnull;

/* Debug level, to run the reader's log callback; the lines go nowhere. */
static struct log *make_log(void)
{
        struct log *lg;

        devnull = fopen("/dev/null", "w");
        ck_assert_ptr_nonnull(devnull);
        lg = log_new(devnull, LOG_LEVEL_DEBUG);
        ck_assert_ptr_nonnull(lg);
        return lg;
}

static void free_log(struct log *lg)
{
        log_free(lg);
        fclose(devnull);
}

static rd_kafka_t *txn_producer(const char *tid)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_error_t *error;
        char err[256];
        rd_kafka_t *rk;

        ck_assert_int_eq(rd_kafka_conf_set(conf, "bootstrap.servers", fx_kafka_bootstraps(kafka),
                                           err, sizeof(err)),
                         RD_KAFKA_CONF_OK);
        ck_assert_int_eq(rd_kafka_conf_set(conf, "transactional.id", tid, err, sizeof(err)),
                         RD_KAFKA_CONF_OK);
        ck_assert_int_eq(rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err)),
                         RD_KAFKA_CONF_OK);
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        ck_assert_msg(rk != NULL, "producer: %s", err);
        error = rd_kafka_init_transactions(rk, TIMEOUT_MS);
        ck_assert_msg(error == NULL, "init_transactions: %s", rd_kafka_error_string(error));
        return rk;
}

struct rec {
        const char *key;
        char *value; /* NULL: a tombstone */
};

/* One committed transaction of records on partition 0 of topic. */
static void commit_records(rd_kafka_t *rk, const char *topic, const struct rec *recs, size_t n)
{
        rd_kafka_error_t *error = rd_kafka_begin_transaction(rk);

        ck_assert_msg(error == NULL, "begin: %s", rd_kafka_error_string(error));
        for (size_t i = 0; i < n; i++) {
                rd_kafka_resp_err_t err = rd_kafka_producev(
                    rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                    RD_KAFKA_V_KEY(recs[i].key, strlen(recs[i].key)),
                    RD_KAFKA_V_VALUE(recs[i].value, recs[i].value ? strlen(recs[i].value) : 0),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);

                ck_assert_msg(err == RD_KAFKA_RESP_ERR_NO_ERROR, "produce: %s",
                              rd_kafka_err2str(err));
        }
        error = rd_kafka_commit_transaction(rk, TIMEOUT_MS);
        ck_assert_msg(error == NULL, "commit: %s", rd_kafka_error_string(error));
}

/* Where the records below say Kafka put row id. */
static int32_t partition_of(int64_t id)
{
        return (int32_t)(id % 3);
}

static int64_t offset_of(int64_t id)
{
        return id * 10 + 1;
}

/* The event id the records here give row id. */
static const char *ev_of(int64_t id)
{
        static char buf[4][PROGRESS_UUID_SIZE];
        static int next;
        char *b = buf[next++ % 4];

        snprintf(b, PROGRESS_UUID_SIZE, "00000000-0000-4000-8000-%012lld", (long long)id);
        return b;
}

/* A record listing rows first..last (the last in its second generation),
 * and unmarked ids u[0..nu). */
static char *record(int64_t first, int64_t last, const int64_t *u, size_t nu)
{
        struct progress_rows rows = {0}, unmarked = {0};
        char *json;

        for (int64_t id = first; id <= last; id++)
                ck_assert_int_eq(progress_rows_add(&rows, id, ev_of(id), id == last ? 2 : 0,
                                                   partition_of(id), offset_of(id)),
                                 0);
        for (size_t i = 0; i < nu; i++)
                ck_assert_int_eq(progress_rows_add(&unmarked, u[i], ev_of(u[i]), 0, -1, -1), 0);
        json = progress_encode("t", "outbox", OID, &rows, &unmarked);
        ck_assert_ptr_nonnull(json);
        progress_rows_free(&rows);
        progress_rows_free(&unmarked);
        return json;
}

static struct progress_reader *make_reader(const struct config *cfg, struct log *lg)
{
        struct progress_reader *pr = progress_reader_new(cfg, lg, errbuf, sizeof(errbuf));

        ck_assert_msg(pr != NULL, "%s", errbuf);
        return pr;
}

/* A read with pr (progress_reader_read: start and wait). */
static int read_with(struct progress_reader *pr, const char *key, int timeout_ms,
                     struct progress_rows *out, int *found, char oid[PROGRESS_OUTBOX_ID_SIZE])
{
        errbuf[0] = '\0';
        return progress_reader_read(pr, key, timeout_ms, out, found, oid, errbuf, sizeof(errbuf));
}

/* A read asserting success; returns *found. */
static int read_last(struct progress_reader *pr, const char *key, struct progress_rows *out)
{
        char oid[PROGRESS_OUTBOX_ID_SIZE] = "";
        int found = -1;

        ck_assert_msg(read_with(pr, key, TIMEOUT_MS, out, &found, oid) == 0, "read %s: %s", key,
                      errbuf);
        ck_assert_int_ge(found, 0);
        if (found)
                ck_assert_str_eq(oid, OID);
        return found;
}

/* s holds want[0..n): the first n_rows a record's rows, with where Kafka
 * put them, and the rest unmarked rows, whose place is not known (-1). */
static void assert_ids(const struct progress_rows *s, const int64_t *want, size_t n, size_t n_rows)
{
        ck_assert_uint_eq(s->n, n);
        for (size_t i = 0; i < n; i++) {
                ck_assert_int_eq(s->ids[i], want[i]);
                ck_assert_str_eq(s->event_ids[i], ev_of(want[i]));
                ck_assert_int_eq(s->partitions[i], i < n_rows ? partition_of(want[i]) : -1);
                ck_assert_int_eq(s->offsets[i], i < n_rows ? offset_of(want[i]) : -1);
        }
}

START_TEST(last_record_of_key_behind_other_keys)
{
        const char *topic = "progress-keys";
        struct config *cfg = make_config(fx_kafka_bootstraps(kafka), topic);
        static const int64_t unmarked[] = {1, 2, 3};
        struct log *lg = make_log();
        struct progress_rows out = {0};
        struct progress_reader *pr;
        rd_kafka_t *rk;

        ck_assert_int_eq(fx_kafka_command(kafka, "topic progress-keys 1"), 0);
        pr = make_reader(cfg, lg);
        /* An empty topic: nothing to find. The same reader (consumer and
         * topic handle kept) then finds what was committed since. */
        ck_assert_int_eq(read_last(pr, "a", &out), 0);
        rk = txn_producer("progress-keys-writer");
        {
                struct rec t1[] = {{"a", record(1, 3, NULL, 0)}};
                struct rec t2[] = {{"a", record(4, 5, unmarked, 3)},
                                   {"b", record(100, 100, NULL, 0)},
                                   {"c", record(7, 7, NULL, 0)}};
                struct rec t3[] = {{"b", record(101, 102, NULL, 0)}, {"c", NULL}};

                commit_records(rk, topic, t1, 1);
                commit_records(rk, topic, t2, 3);
                commit_records(rk, topic, t3, 2);
                free(t1[0].value);
                for (int i = 0; i < 3; i++)
                        free(t2[i].value);
                free(t3[0].value);
        }
        rd_kafka_destroy(rk);

        ck_assert_int_eq(read_last(pr, "a", &out), 1);
        {
                static const int64_t want[] = {4, 5, 1, 2, 3};

                assert_ids(&out, want, 5, 2);
                ck_assert_int_eq(out.generations[1], 2); /* the generations came along */
                ck_assert_int_eq(out.generations[0], 0);
        }
        progress_rows_clear(&out);
        ck_assert_int_eq(read_last(pr, "b", &out), 1);
        {
                static const int64_t want[] = {101, 102};

                assert_ids(&out, want, 2, 2);
        }
        progress_rows_clear(&out);
        /* A key whose last record is a tombstone has no progress. */
        ck_assert_int_eq(read_last(pr, "c", &out), 0);
        ck_assert_int_eq(read_last(pr, "unknown", &out), 0);
        ck_assert_int_eq(read_last(pr, "", &out), 0);
        ck_assert_uint_eq(out.n, 0);
        progress_reader_free(pr);
        progress_rows_free(&out);
        free_log(lg);
        config_free(cfg);
}
END_TEST

/* 2500 records of another key after "a"'s: the first window (1000
 * offsets) and the second (2000) miss it, the third reaches the start. */
START_TEST(window_doubles_back_to_the_start)
{
        const char *topic = "progress-window";
        struct config *cfg = make_config(fx_kafka_bootstraps(kafka), topic);
        struct log *lg = make_log();
        struct progress_rows out = {0};
        struct rec *others = calloc(500, sizeof(*others));
        struct rec a = {"a", record(10, 19, NULL, 0)};
        struct progress_reader *pr = make_reader(cfg, lg);
        rd_kafka_t *rk;
        int64_t t0;

        ck_assert_ptr_nonnull(others);
        ck_assert_int_eq(fx_kafka_command(kafka, "topic progress-window 1"), 0);
        rk = txn_producer("progress-window-writer");
        commit_records(rk, topic, &a, 1);
        for (int i = 0; i < 500; i++)
                others[i] = (struct rec){"b", record(1000 + i, 1000 + i, NULL, 0)};
        for (int t = 0; t < 5; t++)
                commit_records(rk, topic, others, 500);
        for (int i = 0; i < 500; i++)
                free(others[i].value);
        free(others);
        free(a.value);
        rd_kafka_destroy(rk);

        t0 = fx_now_ms();
        ck_assert_int_eq(read_last(pr, "a", &out), 1);
        {
                static const int64_t want[] = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19};

                assert_ids(&out, want, 10, 10);
                ck_assert_int_eq(out.generations[9], 2);
        }
        fprintf(stderr, "test_progress: found behind 2500 records in %lld ms\n",
                (long long)(fx_now_ms() - t0));
        progress_rows_clear(&out);
        /* The newest record of "b" is in the first window. */
        ck_assert_int_eq(read_last(pr, "b", &out), 1);
        {
                static const int64_t want[] = {1499};

                assert_ids(&out, want, 1, 1);
        }
        progress_rows_clear(&out);
        ck_assert_int_eq(read_last(pr, "nobody", &out), 0);
        progress_reader_free(pr);
        progress_rows_free(&out);
        free_log(lg);
        config_free(cfg);
}
END_TEST

/* With --progress-topic-no-create, a missing topic is an error naming the
 * topic and the setting. */
START_TEST(missing_topic_is_a_clear_error)
{
        struct config *cfg = make_config_with(fx_kafka_bootstraps(kafka), "progress-missing",
                                              "--progress-topic-no-create");
        struct progress_reader *pr = make_reader(cfg, NULL);
        struct progress_rows out = {0};
        char oid[PROGRESS_OUTBOX_ID_SIZE];
        int found = -1;

        /* Twice: asking for its metadata must not have created it. */
        for (int i = 0; i < 2; i++) {
                ck_assert_int_eq(read_with(pr, "a", TIMEOUT_MS, &out, &found, oid), -1);
                ck_assert_str_eq(errbuf, "progress topic \"progress-missing\" does not exist and "
                                         "--progress-topic-no-create is set: create it with one "
                                         "partition and cleanup.policy=compact");
                ck_assert_int_eq(found, 0);
        }
        ck_assert_uint_eq(out.n, 0);
        progress_reader_free(pr);
        progress_rows_free(&out);
        config_free(cfg);
}
END_TEST

/* librdkafka 2.0.2's mock cluster has no CreateTopics (nor DescribeConfigs):
 * the relay's attempt to create the topic fails with one line saying so and
 * how to create it, and the topic is not created some other way (by a
 * Metadata request naming it, which the mock would obey). */
START_TEST(creation_refused_by_the_mock_is_a_clear_error)
{
        struct config *cfg = make_config(fx_kafka_bootstraps(kafka), "progress-uncreatable");
        struct progress_reader *pr = make_reader(cfg, NULL);
        struct progress_rows out = {0};
        char oid[PROGRESS_OUTBOX_ID_SIZE];
        int found = -1;

        for (int i = 0; i < 2; i++) {
                ck_assert_int_eq(read_with(pr, "a", TIMEOUT_MS, &out, &found, oid), -1);
                ck_assert_msg(
                    strncmp(errbuf,
                            "cannot create progress topic \"progress-uncreatable\": ", 52) == 0,
                    "%s", errbuf);
                ck_assert_msg(strstr(errbuf, "; create it with one partition and "
                                             "cleanup.policy=compact") != NULL,
                              "%s", errbuf);
                ck_assert_int_eq(found, 0);
        }
        ck_assert_uint_eq(out.n, 0);
        progress_reader_free(pr);
        progress_rows_free(&out);
        config_free(cfg);
}
END_TEST

START_TEST(malformed_record_is_an_error)
{
        const char *topic = "progress-bad";
        struct config *cfg = make_config(fx_kafka_bootstraps(kafka), topic);
        /* "b": rows as [first,last] ranges, as an early format had them. */
        struct rec bad[] = {{"a", "not json"},
                            {"b", "{\"version\":2,\"transactional_id\":\"b\",\"schema\":"
                                  "\"outbox\",\"outbox_id\":\"" OID "\",\"rows\":[[1,3]],"
                                  "\"unmarked\":[],\"replays\":[]}"}};
        struct progress_rows out = {0};
        struct progress_reader *pr;
        rd_kafka_t *rk;
        char oid[PROGRESS_OUTBOX_ID_SIZE];
        int found = -1;

        ck_assert_int_eq(fx_kafka_command(kafka, "topic progress-bad 1"), 0);
        rk = txn_producer("progress-bad-writer");
        commit_records(rk, topic, bad, 2);
        rd_kafka_destroy(rk);
        pr = make_reader(cfg, NULL);
        ck_assert_int_eq(read_with(pr, "a", TIMEOUT_MS, &out, &found, oid), -1);
        ck_assert_msg(strstr(errbuf, "progress record: not JSON") != NULL, "%s", errbuf);
        ck_assert_int_eq(found, 0);
        ck_assert_uint_eq(out.n, 0);
        found = -1;
        ck_assert_int_eq(read_with(pr, "b", TIMEOUT_MS, &out, &found, oid), -1);
        ck_assert_str_eq(errbuf, "progress record: \"rows\" item 0 is not an "
                                 "[id,partition,offset] triple of non-negative integers");
        ck_assert_int_eq(found, 0);
        ck_assert_uint_eq(out.n, 0);
        progress_reader_free(pr);
        progress_rows_free(&out);
        config_free(cfg);
}
END_TEST

START_TEST(unreachable_kafka_times_out)
{
        struct config *cfg = make_config("127.0.0.1:1", "progress-keys");
        struct progress_reader *pr = make_reader(cfg, NULL);
        struct progress_rows out = {0};
        int64_t t0 = fx_now_ms(), took;
        char oid[PROGRESS_OUTBOX_ID_SIZE];
        int found = -1;

        ck_assert_int_eq(read_with(pr, "a", 1500, &out, &found, oid), -1);
        took = fx_now_ms() - t0;
        ck_assert_str_eq(errbuf,
                         "reading progress topic \"progress-keys\" timed out after 1500 ms");
        ck_assert_msg(took >= 1300 && took < 5000, "took %lld ms", (long long)took);
        progress_reader_free(pr);
        progress_rows_free(&out);
        config_free(cfg);
}
END_TEST

/* Polls the reader (it never blocks) until the read of ticket is over,
 * with a deadline; returns its result. */
static int reader_wait(struct progress_reader *pr, unsigned long ticket, struct progress_rows *out,
                       int *found, char oid[PROGRESS_OUTBOX_ID_SIZE])
{
        int64_t deadline = fx_now_ms() + 2 * TIMEOUT_MS;
        int rc;

        while ((rc = progress_reader_poll(pr, ticket, out, found, oid, errbuf, sizeof(errbuf))) ==
               PROGRESS_READING) {
                ck_assert_msg(fx_now_ms() < deadline, "the reader never answered");
                poll(NULL, 0, 5);
        }
        return rc;
}

/* Start and poll, as the relay's loop reads: a read asked for again before the first ended answers
 * the second request only, and its result is handed over once. */
START_TEST(reader_thread_reads_the_last_record)
{
        const char *topic = "progress-thread";
        struct config *cfg = make_config(fx_kafka_bootstraps(kafka), topic);
        struct log *lg = make_log();
        struct progress_rows out = {0};
        char oid[PROGRESS_OUTBOX_ID_SIZE];
        struct progress_reader *pr;
        unsigned long t1, t2;
        int found = -1;
        rd_kafka_t *rk;

        ck_assert_int_eq(fx_kafka_command(kafka, "topic progress-thread 1"), 0);
        rk = txn_producer("progress-thread-writer");
        {
                struct rec t[] = {{"a", record(1, 3, NULL, 0)}, {"b", record(7, 8, NULL, 0)}};

                commit_records(rk, topic, t, 2);
                free(t[0].value);
                free(t[1].value);
        }
        rd_kafka_destroy(rk);
        pr = progress_reader_new(cfg, lg, errbuf, sizeof(errbuf));
        ck_assert_msg(pr != NULL, "%s", errbuf);
        t1 = progress_reader_start(pr, "a", TIMEOUT_MS);
        ck_assert_int_eq(reader_wait(pr, t1, &out, &found, oid), 0);
        ck_assert_int_eq(found, 1);
        ck_assert_str_eq(oid, OID);
        {
                static const int64_t want[] = {1, 2, 3};

                assert_ids(&out, want, 3, 3);
        }
        /* Handed over once. */
        ck_assert_int_eq(progress_reader_poll(pr, t1, &out, &found, oid, errbuf, sizeof(errbuf)),
                         PROGRESS_READING);
        /* Two requests in a row: only the second is answered. */
        t1 = progress_reader_start(pr, "a", TIMEOUT_MS);
        t2 = progress_reader_start(pr, "b", TIMEOUT_MS);
        ck_assert_int_eq(reader_wait(pr, t2, &out, &found, oid), 0);
        ck_assert_int_eq(found, 1);
        {
                static const int64_t want[] = {7, 8};

                assert_ids(&out, want, 2, 2);
        }
        ck_assert_int_eq(progress_reader_poll(pr, t1, &out, &found, oid, errbuf, sizeof(errbuf)),
                         PROGRESS_READING);
        /* A key without a record, and a read that fails (a missing topic). */
        t1 = progress_reader_start(pr, "nobody", TIMEOUT_MS);
        ck_assert_int_eq(reader_wait(pr, t1, &out, &found, oid), 0);
        ck_assert_int_eq(found, 0);
        ck_assert_uint_eq(out.n, 0);
        progress_reader_free(pr);
        config_free(cfg);
        cfg = make_config_with(fx_kafka_bootstraps(kafka), "progress-thread-missing",
                               "--progress-topic-no-create");
        pr = progress_reader_new(cfg, lg, errbuf, sizeof(errbuf));
        ck_assert_msg(pr != NULL, "%s", errbuf);
        t1 = progress_reader_start(pr, "a", TIMEOUT_MS);
        ck_assert_int_eq(reader_wait(pr, t1, &out, &found, oid), -1);
        ck_assert_str_eq(errbuf, "progress topic \"progress-thread-missing\" does not exist "
                                 "and --progress-topic-no-create is set: create it with one "
                                 "partition and cleanup.policy=compact");
        progress_reader_free(pr);
        progress_rows_free(&out);
        free_log(lg);
        config_free(cfg);
}
END_TEST

/* Freeing the reader while its read waits for an unreachable Kafka stops
 * the read instead of waiting for its timeout (the relay frees it when it
 * shuts down). */
START_TEST(reader_free_stops_a_read_under_way)
{
        struct config *cfg = make_config("127.0.0.1:1", "progress-keys");
        struct progress_reader *pr = progress_reader_new(cfg, NULL, errbuf, sizeof(errbuf));
        int64_t t0;

        ck_assert_msg(pr != NULL, "%s", errbuf);
        (void)progress_reader_start(pr, "a", 60000);
        poll(NULL, 0, 200); /* let it start waiting: freeing an idle reader proves nothing */
        t0 = fx_now_ms();
        progress_reader_free(pr);
        ck_assert_msg(fx_now_ms() - t0 < 30000, "free waited for the read's timeout");
        config_free(cfg);
}
END_TEST

static const struct runner_servers servers = {suite_setup, suite_teardown};

Suite *test_suite(void)
{
        const TTest *const tests[] = {last_record_of_key_behind_other_keys,
                                      window_doubles_back_to_the_start,
                                      missing_topic_is_a_clear_error,
                                      creation_refused_by_the_mock_is_a_clear_error,
                                      malformed_record_is_an_error,
                                      unreachable_kafka_times_out,
                                      reader_thread_reads_the_last_record,
                                      reader_free_stops_a_read_under_way,
                                      NULL};

        return runner_suite("progress", "dev_kafka", &servers, 120, tests);
}
