/* Unit tests of metrics: the exposition text (every series under its
 * HELP and TYPE), per-topic series bounded at METRICS_MAX_TOPICS (later
 * topics share topic="(other)"), label escaping, statement errors,
 * counters, gauges, broker round trips and cumulative histogram buckets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "metrics.h"
#include "runner.h"

#define PUBLISHED "outbox_relay_messages_published_total"

/* The value of the sample line that starts with series followed by a
 * space, or -1 when there is none. */
static double sample(const char *text, const char *series)
{
        size_t n = strlen(series);

        for (const char *p = text; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p)
                if (strncmp(p, series, n) == 0 && p[n] == ' ')
                        return atof(p + n + 1);
        return -1;
}

/* Lines that start with prefix. */
static int lines_with(const char *text, const char *prefix)
{
        int count = 0;
        size_t n = strlen(prefix);

        for (const char *p = text; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p)
                count += strncmp(p, prefix, n) == 0;
        return count;
}

static char *render(const struct metrics *m)
{
        size_t len = 0;
        char *text = metrics_render(m, &len);

        ck_assert_ptr_nonnull(text);
        ck_assert_uint_eq(strlen(text), len);
        return text;
}

START_TEST(test_topics_counted_apart)
{
        struct metrics *m = metrics_new();
        char *text;

        ck_assert_ptr_nonnull(m);
        metrics_topic_add(m, METRICS_PUBLISHED, "orders", 3);
        metrics_topic_add(m, METRICS_PUBLISHED, "users", 1);
        metrics_topic_add(m, METRICS_PUBLISHED, "orders", 2);
        metrics_topic_add(m, METRICS_FAILED, "users", 7);
        metrics_topic_add(m, METRICS_DEAD_LETTERED, "orders", 1);
        ck_assert_uint_eq(metrics_topics(m), 2);
        text = render(m);
        ck_assert(sample(text, PUBLISHED "{topic=\"orders\"}") == 5);
        ck_assert(sample(text, PUBLISHED "{topic=\"users\"}") == 1);
        ck_assert(sample(text, "outbox_relay_messages_failed_total{topic=\"users\"}") == 7);
        ck_assert(sample(text, "outbox_relay_messages_failed_total{topic=\"orders\"}") == 0);
        ck_assert(sample(text, "outbox_relay_messages_dead_lettered_total{topic=\"orders\"}") == 1);
        /* No "(other)" series until a topic overflows. */
        ck_assert_ptr_null(strstr(text, METRICS_OTHER_TOPIC));
        free(text);
        metrics_free(m);
        metrics_free(NULL);
}
END_TEST

/* Rows naming a new topic each (a writer choosing topics at will): the
 * first METRICS_MAX_TOPICS keep their own series, the rest share one, and
 * no count is lost. */
START_TEST(test_topics_bounded)
{
        struct metrics *m = metrics_new();
        const int topics = 5000;
        char name[128], series[256], *text;
        double total = 0;

        ck_assert_ptr_nonnull(m);
        for (int round = 0; round < 3; round++)
                for (int i = 0; i < topics; i++) {
                        snprintf(name, sizeof(name), "topic-%d", i);
                        metrics_topic_add(m, METRICS_PUBLISHED, name, 1);
                }
        ck_assert_uint_eq(metrics_topics(m), METRICS_MAX_TOPICS);
        text = render(m);
        /* One series per topic kept, plus "(other)", per counter family. */
        ck_assert_int_eq(lines_with(text, PUBLISHED "{"), METRICS_MAX_TOPICS + 1);
        ck_assert_int_eq(lines_with(text, "outbox_relay_messages_failed_total{"),
                         METRICS_MAX_TOPICS + 1);
        for (int i = 0; i < METRICS_MAX_TOPICS; i++) {
                snprintf(series, sizeof(series), PUBLISHED "{topic=\"topic-%d\"}", i);
                ck_assert_msg(sample(text, series) == 3, "%s", series);
                total += sample(text, series);
        }
        snprintf(series, sizeof(series), PUBLISHED "{topic=\"topic-%d\"}", METRICS_MAX_TOPICS);
        ck_assert(sample(text, series) < 0);
        snprintf(series, sizeof(series), PUBLISHED "{topic=\"" METRICS_OTHER_TOPIC "\"}");
        ck_assert(sample(text, series) == 3.0 * (topics - METRICS_MAX_TOPICS));
        total += sample(text, series);
        ck_assert(total == 3.0 * topics);
        free(text);
        /* A topic kept before the limit still counts on its own series. */
        metrics_topic_add(m, METRICS_PUBLISHED, "topic-7", 10);
        metrics_topic_add(m, METRICS_PUBLISHED, "topic-4999", 10);
        text = render(m);
        ck_assert(sample(text, PUBLISHED "{topic=\"topic-7\"}") == 13);
        ck_assert(sample(text, PUBLISHED "{topic=\"" METRICS_OTHER_TOPIC "\"}") ==
                  3.0 * (topics - METRICS_MAX_TOPICS) + 10);
        free(text);
        metrics_free(m);
}
END_TEST

/* Topics that collide in the hash (same slot, different names) and names
 * that are prefixes of each other are told apart. */
START_TEST(test_topics_lookup_exact)
{
        struct metrics *m = metrics_new();
        char name[128], series[256], *text;

        ck_assert_ptr_nonnull(m);
        for (int i = 0; i < METRICS_MAX_TOPICS; i++) {
                snprintf(
                    name, sizeof(name), "%.*s", i + 1,
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
                for (int k = 0; k <= i; k++)
                        metrics_topic_add(m, METRICS_RETRIED, name, 1);
        }
        /* Interleaved, so the one-topic cache does not hide the lookup. */
        for (int i = 0; i < METRICS_MAX_TOPICS; i++) {
                snprintf(
                    name, sizeof(name), "%.*s", METRICS_MAX_TOPICS - i,
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
                metrics_topic_add(m, METRICS_RETRIED, name, 1000);
        }
        text = render(m);
        for (int i = 0; i < METRICS_MAX_TOPICS; i++) {
                snprintf(
                    series, sizeof(series), "outbox_relay_messages_retried_total{topic=\"%.*s\"}",
                    i + 1,
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
                ck_assert_msg(sample(text, series) == i + 1 + 1000, "topic of %d letters", i + 1);
        }
        ck_assert_ptr_null(strstr(text, METRICS_OTHER_TOPIC));
        free(text);
        metrics_free(m);
}
END_TEST

/* Label values are escaped as the text format requires. */
START_TEST(test_label_escaping)
{
        struct metrics *m = metrics_new();
        char *text;

        ck_assert_ptr_nonnull(m);
        metrics_topic_add(m, METRICS_PUBLISHED, "a\"b\\c\nd", 1);
        text = render(m);
        ck_assert(sample(text, PUBLISHED "{topic=\"a\\\"b\\\\c\\nd\"}") == 1);
        free(text);
        metrics_free(m);
}
END_TEST

START_TEST(test_statement_errors)
{
        struct metrics *m = metrics_new();
        char *text;

        ck_assert_ptr_nonnull(m);
        metrics_statement_error(m, METRICS_STMT_FETCH);
        metrics_statement_error(m, METRICS_STMT_FETCH);
        metrics_statement_error(m, METRICS_STMT_RECORD_FAILURE);
        text = render(m);
        ck_assert(sample(text, "outbox_relay_statement_errors_total{statement=\"fetch\"}") == 2);
        ck_assert(sample(text, "outbox_relay_statement_errors_total{statement=\"mark\"}") == 0);
        ck_assert(
            sample(text, "outbox_relay_statement_errors_total{statement=\"record_failure\"}") == 1);
        ck_assert(sample(text, "outbox_relay_statement_errors_total{statement=\"other\"}") == 0);
        ck_assert_ptr_nonnull(strstr(text, "# TYPE outbox_relay_statement_errors_total counter\n"));
        free(text);
        metrics_free(m);
}
END_TEST

/* Buckets are cumulative, a value equal to a bound falls in that bound's
 * bucket (le: less or equal), +Inf and _count hold every observation. */
START_TEST(test_histogram_buckets)
{
        static const double rows[] = {1, 1, 5, 10, 11, 10000, 20000};
        struct metrics *m = metrics_new();
        char *text;

        ck_assert_ptr_nonnull(m);
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
                metrics_observe(m, METRICS_BATCH_ROWS, rows[i]);
        metrics_observe(m, METRICS_ACK_SECONDS, 0.0005);
        metrics_observe(m, METRICS_ACK_SECONDS, 0.0006);
        /* Event lag: up to an hour in buckets, beyond it +Inf only. */
        metrics_observe(m, METRICS_LAG_SECONDS, 0);
        metrics_observe(m, METRICS_LAG_SECONDS, 120);
        metrics_observe(m, METRICS_LAG_SECONDS, 7200);
        metrics_set(m, METRICS_DEAD_LETTER_ROWS, 3);
        text = render(m);
        ck_assert(sample(text, "outbox_relay_event_lag_seconds_bucket{le=\"0.005\"}") == 1);
        ck_assert(sample(text, "outbox_relay_event_lag_seconds_bucket{le=\"60\"}") == 1);
        ck_assert(sample(text, "outbox_relay_event_lag_seconds_bucket{le=\"300\"}") == 2);
        ck_assert(sample(text, "outbox_relay_event_lag_seconds_bucket{le=\"3600\"}") == 2);
        ck_assert(sample(text, "outbox_relay_event_lag_seconds_bucket{le=\"+Inf\"}") == 3);
        ck_assert(sample(text, "outbox_relay_event_lag_seconds_sum") == 7320);
        ck_assert(sample(text, "outbox_relay_dead_letter_rows") == 3);
        ck_assert_ptr_nonnull(strstr(text, "# TYPE outbox_relay_dead_letter_rows gauge\n"));
        ck_assert(sample(text, "outbox_relay_batch_rows_bucket{le=\"1\"}") == 2);
        ck_assert(sample(text, "outbox_relay_batch_rows_bucket{le=\"10\"}") == 4);
        ck_assert(sample(text, "outbox_relay_batch_rows_bucket{le=\"50\"}") == 5);
        ck_assert(sample(text, "outbox_relay_batch_rows_bucket{le=\"5000\"}") == 5);
        ck_assert(sample(text, "outbox_relay_batch_rows_bucket{le=\"10000\"}") == 6);
        ck_assert(sample(text, "outbox_relay_batch_rows_bucket{le=\"+Inf\"}") == 7);
        ck_assert(sample(text, "outbox_relay_batch_rows_count") == 7);
        ck_assert(sample(text, "outbox_relay_batch_rows_sum") == 30028);
        ck_assert(sample(text, "outbox_relay_publish_ack_seconds_bucket{le=\"0.0005\"}") == 1);
        ck_assert(sample(text, "outbox_relay_publish_ack_seconds_bucket{le=\"0.001\"}") == 2);
        ck_assert(sample(text, "outbox_relay_publish_ack_seconds_count") == 2);
        ck_assert_ptr_nonnull(strstr(text, "# TYPE outbox_relay_batch_rows histogram\n"));
        free(text);
        metrics_free(m);
}
END_TEST

/* The length of the metric name a line starts with. */
static size_t name_len(const char *line)
{
        return strcspn(line, "{ \n");
}

/* Every sample belongs to the family the last # TYPE line named (a
 * histogram's by its _bucket, _sum and _count), every family has one
 * # HELP and one # TYPE, every name is prefixed outbox_relay_, and every
 * value parses whole. */
START_TEST(test_every_series_under_its_help_and_type)
{
        struct metrics *m = metrics_new();
        char family[128] = "", type[16] = "", *text, *line, *save = NULL;
        int families = 0, helps = 0;

        ck_assert_ptr_nonnull(m);
        metrics_topic_add(m, METRICS_PUBLISHED, "orders", 1);
        metrics_broker_rtt(m, "b1:9092/1", 0.002);
        metrics_observe(m, METRICS_ACK_SECONDS, 0.01);
        text = render(m);
        ck_assert(text[strlen(text) - 1] == '\n');
        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                size_t n;
                char *end;

                if (strncmp(line, "# HELP ", 7) == 0) {
                        helps++;
                        ck_assert_msg(strchr(line + 7, ' ') != NULL, "no help text: %s", line);
                        continue;
                }
                if (strncmp(line, "# TYPE ", 7) == 0) {
                        ck_assert_int_eq(sscanf(line + 7, "%127s %15s", family, type), 2);
                        ck_assert_msg(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                                          strcmp(type, "histogram") == 0,
                                      "%s", line);
                        ck_assert_msg(strncmp(family, "outbox_relay_", 13) == 0, "%s", line);
                        if (strcmp(type, "counter") == 0)
                                ck_assert_msg(strlen(family) > 6 &&
                                                  strcmp(family + strlen(family) - 6, "_total") ==
                                                      0,
                                              "counter without _total: %s", family);
                        families++;
                        continue;
                }
                ck_assert_msg(line[0] != '#', "%s", line);
                n = name_len(line);
                ck_assert_msg(n >= strlen(family) && strncmp(line, family, strlen(family)) == 0,
                              "%s outside its family %s", line, family);
                if (strcmp(type, "histogram") == 0)
                        ck_assert_msg(strncmp(line + strlen(family), "_bucket{", 8) == 0 ||
                                          strncmp(line + strlen(family), "_sum ", 5) == 0 ||
                                          strncmp(line + strlen(family), "_count ", 7) == 0,
                                      "%s", line);
                else
                        ck_assert_msg(n == strlen(family), "%s", line);
                end = strrchr(line, ' ');
                ck_assert_ptr_nonnull(end);
                (void)strtod(end + 1, &end);
                ck_assert_msg(*end == '\0', "value of %s", line);
        }
        ck_assert_int_eq(helps, families);
        /* 4 per-topic, statement errors, 6 counters, 7 gauges, broker rtt, 2 histograms. */
        ck_assert_int_eq(families, METRICS_TOPIC_COUNTERS + 1 + METRICS_COUNTERS + METRICS_GAUGES +
                                       1 + METRICS_HISTOGRAMS);
        free(text);
        metrics_free(m);
}
END_TEST

/* Counters add up, gauges keep the last value set at full precision, a
 * broker's round-trip time is replaced, not repeated, and its label is
 * escaped. */
START_TEST(test_counters_gauges_and_brokers)
{
        struct metrics *m = metrics_new();
        char *text;

        ck_assert_ptr_nonnull(m);
        metrics_add(m, METRICS_PRODUCER_REBUILDS, 2);
        metrics_add(m, METRICS_PRODUCER_REBUILDS, 1);
        metrics_add(m, METRICS_RECOVERED_ROWS, 40);
        metrics_set(m, METRICS_PENDING_ROWS, 7);
        metrics_set(m, METRICS_PENDING_ROWS, 42);
        metrics_set(m, METRICS_OLDEST_PENDING_AGE, 0.1);
        ck_assert(metrics_get(m, METRICS_PENDING_ROWS) == 42);
        metrics_broker_rtt(m, "b1:9092/1", 0.5);
        metrics_broker_rtt(m, "b\"2", 0.25);
        metrics_broker_rtt(m, "b1:9092/1", 0.125);
        text = render(m);
        ck_assert(sample(text, "outbox_relay_producer_rebuilds_total") == 3);
        ck_assert(sample(text, "outbox_relay_recovered_rows_total") == 40);
        ck_assert(sample(text, "outbox_relay_transactions_aborted_total") == 0);
        ck_assert(sample(text, "outbox_relay_pending_rows") == 42);
        ck_assert(sample(text, "outbox_relay_oldest_pending_age_seconds") == 0.1);
        ck_assert(sample(text, "outbox_relay_kafka_broker_rtt_seconds{broker=\"b1:9092/1\"}") ==
                  0.125);
        ck_assert(sample(text, "outbox_relay_kafka_broker_rtt_seconds{broker=\"b\\\"2\"}") == 0.25);
        ck_assert_int_eq(lines_with(text, "outbox_relay_kafka_broker_rtt_seconds{"), 2);
        free(text);
        metrics_free(m);
}
END_TEST

Suite *test_suite(void)
{
        const TTest *const tests[] = {test_topics_counted_apart,
                                      test_topics_bounded,
                                      test_topics_lookup_exact,
                                      test_label_escaping,
                                      test_statement_errors,
                                      test_histogram_buckets,
                                      test_every_series_under_its_help_and_type,
                                      test_counters_gauges_and_brokers,
                                      NULL};

        return runner_suite("metrics", "core", NULL, 0, tests);
}
