/* fault_tap: reads a case's progress topic on the dev Kafka while the case
 * runs, so that the exactly-once checker still has the records the mock
 * drops later (it keeps about 5 MB a partition, and a case with many kills
 * writes more: records list the rows whose marks are not confirmed yet). */
#include "fault_harness.h"

#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "fixture.h"

#define TAP_POLL_MS 50

static struct {
        pthread_mutex_t mu;
        pthread_t th;
        int running, stop;
        rd_kafka_t *rk;
        char topic[160];
        struct fx_msg *recs; /* partition 0, in offset order */
        size_t n, cap;
} tap = {.mu = PTHREAD_MUTEX_INITIALIZER};

static char *copy(const void *p, size_t n)
{
        char *c = malloc(n + 1);

        ck_assert_msg(c != NULL, "out of memory");
        if (n > 0)
                memcpy(c, p, n);
        c[n] = '\0';
        return c;
}

static void keep(const rd_kafka_message_t *m)
{
        struct fx_msg *r;

        pthread_mutex_lock(&tap.mu);
        if (tap.n == tap.cap) {
                tap.cap = tap.cap ? tap.cap * 2 : 256;
                tap.recs = realloc(tap.recs, tap.cap * sizeof(*tap.recs));
                ck_assert_msg(tap.recs != NULL, "out of memory");
        }
        r = &tap.recs[tap.n++];
        *r = (struct fx_msg){.partition = m->partition, .offset = m->offset};
        r->key = m->key != NULL ? copy(m->key, m->key_len) : NULL;
        r->key_len = m->key_len;
        r->value = m->payload != NULL ? copy(m->payload, m->len) : NULL;
        r->value_len = m->len;
        pthread_mutex_unlock(&tap.mu);
}

static void *tap_main(void *arg)
{
        (void)arg;
        for (;;) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(tap.rk, TAP_POLL_MS);
                int stop;

                if (m != NULL) {
                        if (!m->err && m->partition == 0)
                                keep(m);
                        rd_kafka_message_destroy(m); /* errors: the topic's broker is down */
                }
                pthread_mutex_lock(&tap.mu);
                stop = tap.stop;
                pthread_mutex_unlock(&tap.mu);
                if (stop)
                        return NULL;
        }
}

void fh_tap_start(const char *brokers, const char *topic)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_topic_partition_list_t *parts;
        char errstr[256];

        fh_tap_stop();
        if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) ||
            rd_kafka_conf_set(conf, "group.id", "outbox-test-tap", errstr, sizeof(errstr)) ||
            rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)) ||
            rd_kafka_conf_set(conf, "fetch.wait.max.ms", "50", errstr, sizeof(errstr)) ||
            rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)))
                ck_abort_msg("tap: %s", errstr);
        tap.rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
        ck_assert_msg(tap.rk != NULL, "tap: %s", errstr);
        parts = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(parts, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
        ck_assert_int_eq(rd_kafka_assign(tap.rk, parts), 0);
        rd_kafka_topic_partition_list_destroy(parts);
        snprintf(tap.topic, sizeof(tap.topic), "%s", topic);
        tap.stop = 0;
        ck_assert_int_eq(pthread_create(&tap.th, NULL, tap_main, NULL), 0);
        tap.running = 1;
}

void fh_tap_stop(void)
{
        if (!tap.running)
                return;
        pthread_mutex_lock(&tap.mu);
        tap.stop = 1;
        pthread_mutex_unlock(&tap.mu);
        pthread_join(tap.th, NULL);
        rd_kafka_consumer_close(tap.rk);
        rd_kafka_destroy(tap.rk);
        fx_msgs_free(tap.recs, tap.n);
        tap.recs = NULL;
        tap.n = tap.cap = 0;
        tap.running = 0;
}

size_t fh_tap_before(const char *topic, int64_t first, struct fx_msg **out, int *tapped)
{
        size_t n = 0;

        *out = NULL;
        pthread_mutex_lock(&tap.mu);
        *tapped = tap.running && strcmp(topic, tap.topic) == 0;
        if (*tapped) {
                while (n < tap.n && tap.recs[n].offset < first)
                        n++;
                *out = calloc(n ? n : 1, sizeof(**out));
                ck_assert_msg(*out != NULL, "out of memory");
                for (size_t i = 0; i < n; i++) {
                        (*out)[i] = tap.recs[i];
                        (*out)[i].key =
                            tap.recs[i].key ? copy(tap.recs[i].key, tap.recs[i].key_len) : NULL;
                        (*out)[i].value = tap.recs[i].value
                                              ? copy(tap.recs[i].value, tap.recs[i].value_len)
                                              : NULL;
                }
        }
        pthread_mutex_unlock(&tap.mu);
        return n;
}
