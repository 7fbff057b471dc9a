/* Unit tests of kafka_conf: what the producer's and the progress reader's
 * librdkafka configurations hold (the relay's defaults, -X over defaults,
 * required properties over -X, the transactional producer of
 * --exactly-once), and the checks of -X properties, read back with
 * rd_kafka_conf_get without connecting anywhere. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "kafka_conf.h"
#include "runner.h"

static char errbuf[512];

#define ARGS(...) (sizeof((char *[]){__VA_ARGS__}) / sizeof(char *)), ((char *[]){__VA_ARGS__})

static struct config *parse(int argc, char **argv)
{
        struct config *cfg = config_new();

        ck_assert_ptr_nonnull(cfg);
        ck_assert_msg(config_parse(cfg, argc, argv, errbuf, sizeof(errbuf)) == 0, "config: %s",
                      errbuf);
        return cfg;
}

/* conf's value of name ("" when it has none). */
static const char *get(rd_kafka_conf_t *conf, const char *name)
{
        static char buf[512];
        size_t sz = sizeof(buf);

        if (rd_kafka_conf_get(conf, name, buf, &sz) != RD_KAFKA_CONF_OK)
                buf[0] = '\0';
        return buf;
}

START_TEST(test_producer_defaults_then_x_then_required)
{
        struct config *cfg = parse(ARGS("--kafka-brokers", "k1:9092,k2:9092", "-X", "linger.ms=5",
                                        "-X", "log.queue=false", "-X", "compression.type=zstd"));
        rd_kafka_conf_t *conf = kafka_conf_producer(cfg, errbuf, sizeof(errbuf));

        ck_assert_msg(conf != NULL, "%s", errbuf);
        ck_assert_str_eq(get(conf, "bootstrap.servers"), "k1:9092,k2:9092");
        /* the relay's defaults */
        ck_assert_str_eq(get(conf, "client.id"), "outbox-relay");
        ck_assert_str_eq(get(conf, "message.timeout.ms"), "0");
        ck_assert_str_eq(get(conf, "enable.gapless.guarantee"), "true");
        ck_assert_str_eq(get(conf, "allow.auto.create.topics"), "false");
        ck_assert_str_eq(get(conf, "max.in.flight.requests.per.connection"), "5");
        ck_assert_str_eq(get(conf, "socket.nagle.disable"), "true");
        ck_assert_str_eq(get(conf, "partitioner"), "murmur2_random");
        /* -X wins over a default */
        ck_assert_str_eq(get(conf, "linger.ms"), "5");
        ck_assert_str_eq(get(conf, "compression.type"), "zstd");
        /* what the relay requires wins over -X */
        ck_assert_str_eq(get(conf, "log.queue"), "true");
        ck_assert_str_eq(get(conf, "enable.idempotence"), "true");
        ck_assert_str_eq(get(conf, "request.required.acks"), "-1");
        ck_assert_str_eq(get(conf, "transactional.id"), "");
        rd_kafka_conf_destroy(conf);
        config_free(cfg);
}
END_TEST

/* --exactly-once: a transactional producer, whose messages may not outlive
 * their transaction (librdkafka's own message.timeout.ms), which needs no
 * gapless guarantee (a gap aborts the transaction) and keeps one request
 * in flight. */
START_TEST(test_transactional_producer)
{
        struct config *cfg = parse(ARGS("--kafka-brokers", "k:9092", "--exactly-once", "--schema",
                                        "orders", "--transaction-timeout-ms", "20000"));
        rd_kafka_conf_t *conf = kafka_conf_producer(cfg, errbuf, sizeof(errbuf));

        ck_assert_msg(conf != NULL, "%s", errbuf);
        ck_assert_str_eq(get(conf, "transactional.id"), "outbox-relay.orders");
        ck_assert_str_eq(get(conf, "transaction.timeout.ms"), "20000");
        ck_assert_str_ne(get(conf, "message.timeout.ms"), "0");
        ck_assert_str_eq(get(conf, "enable.gapless.guarantee"), "false");
        ck_assert_str_eq(get(conf, "max.in.flight.requests.per.connection"), "1");
        ck_assert_str_eq(get(conf, "enable.idempotence"), "true");
        rd_kafka_conf_destroy(conf);
        config_free(cfg);
}
END_TEST

/* The reader takes the -X properties a consumer takes (security ones, say)
 * and keeps what it requires whatever -X says. */
START_TEST(test_reader)
{
        struct config *cfg =
            parse(ARGS("--kafka-brokers", "k:9092", "-X", "security.protocol=SASL_SSL", "-X",
                       "isolation.level=read_uncommitted", "-X", "linger.ms=5"));
        rd_kafka_conf_t *conf = kafka_conf_reader(cfg, NULL, errbuf, sizeof(errbuf));

        ck_assert_msg(conf != NULL, "%s", errbuf);
        ck_assert_str_eq(get(conf, "bootstrap.servers"), "k:9092");
        ck_assert_str_eq(get(conf, "security.protocol"), "sasl_ssl");
        ck_assert_str_eq(get(conf, "isolation.level"), "read_committed");
        ck_assert_str_eq(get(conf, "enable.auto.commit"), "false");
        ck_assert_str_eq(get(conf, "allow.auto.create.topics"), "false");
        ck_assert_str_eq(get(conf, "auto.offset.reset"), "smallest");
        rd_kafka_conf_destroy(conf);
        config_free(cfg);
}
END_TEST

START_TEST(test_validate)
{
        static const struct {
                const char *prop, *error;
        } bad[] = {
            {"bootstrap.servers=x:1", "librdkafka property bootstrap.servers cannot be set: use "
                                      "--kafka-brokers (OUTBOX_KAFKA_BROKERS) instead"},
            {"transactional.id=t", "librdkafka property transactional.id cannot be set: use "
                                   "--transactional-id with --exactly-once instead"},
            {"delivery.report.only.error=true",
             "librdkafka property delivery.report.only.error cannot be set: the relay needs a "
             "delivery report for every message to mark rows sent"},
            {"no.such.property=1", "unknown librdkafka property \"no.such.property\""},
            {"enable.idempotence=false", "librdkafka property enable.idempotence must stay true: "
                                         "retries must not duplicate or reorder messages"},
            {"acks=1", "librdkafka property acks must be all (or -1): a row is marked sent only "
                       "when every in-sync replica has it"},
            {"sasl.password=", NULL}, /* accepted: an empty password is librdkafka's to judge */
            {"linger.ms=-5", "librdkafka property linger.ms: Configuration property "
                             "\"queue.buffering.max.ms\" value -5 is outside allowed range "
                             "0..900000"},
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct config *cfg = parse(ARGS("-X", (char *)bad[i].prop));
                int rc = kafka_conf_validate(cfg, errbuf, sizeof(errbuf));

                if (bad[i].error == NULL) {
                        ck_assert_msg(rc == 0, "%s: %s", bad[i].prop, errbuf);
                } else {
                        ck_assert_int_eq(rc, -1);
                        ck_assert_str_eq(errbuf, bad[i].error);
                }
                config_free(cfg);
        }
}
END_TEST

/* Which property names may hold a credential, whose value is never echoed
 * (test_config checks the messages). */
START_TEST(test_secret_names)
{
        ck_assert(kafka_conf_is_secret("sasl.password"));
        ck_assert(kafka_conf_is_secret("ssl.key.password"));
        ck_assert(kafka_conf_is_secret("ssl.key.pem"));
        ck_assert(kafka_conf_is_secret("sasl.oauthbearer.client.secret"));
        ck_assert(kafka_conf_is_secret("sasl.oauthbearer.config"));
        ck_assert(kafka_conf_is_secret("sasl.jaas.config"));
        ck_assert(!kafka_conf_is_secret("linger.ms"));
        ck_assert(!kafka_conf_is_secret("ssl.ca.location"));
}
END_TEST

Suite *test_suite(void)
{
        Suite *s = suite_create("kafka_conf");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_producer_defaults_then_x_then_required);
        tcase_add_test(tc, test_transactional_producer);
        tcase_add_test(tc, test_reader);
        tcase_add_test(tc, test_validate);
        tcase_add_test(tc, test_secret_names);
        suite_add_tcase(s, tc);
        return s;
}
