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

/* One configuration built from args: the producer's or the reader's, and
 * the properties it must hold ("!v": any value but v). */
struct conf_case {
        const char *what;
        int reader;
        const char *args[12];
        struct {
                const char *name, *value;
        } want[16];
};

static const struct conf_case conf_cases[] = {
    {"producer: the relay's defaults, -X over them, what it requires over -X",
     0,
     {"--kafka-brokers", "k1:9092,k2:9092", "-X", "linger.ms=5", "-X", "log.queue=false", "-X",
      "compression.type=zstd"},
     {{"bootstrap.servers", "k1:9092,k2:9092"},
      /* the relay's defaults */
      {"client.id", "outbox-relay"},
      {"message.timeout.ms", "0"},
      {"enable.gapless.guarantee", "true"},
      {"allow.auto.create.topics", "false"},
      {"max.in.flight.requests.per.connection", "5"},
      {"socket.nagle.disable", "true"},
      {"partitioner", "murmur2_random"},
      /* -X wins over a default */
      {"linger.ms", "5"},
      {"compression.type", "zstd"},
      /* what the relay requires wins over -X */
      {"log.queue", "true"},
      {"enable.idempotence", "true"},
      {"request.required.acks", "-1"},
      {"transactional.id", ""}}},
    /* --exactly-once: a transactional producer, whose messages may not
     * outlive their transaction (librdkafka's own message.timeout.ms),
     * which needs no gapless guarantee (a gap aborts the transaction) and
     * keeps one request in flight. */
    {"transactional producer",
     0,
     {"--kafka-brokers", "k:9092", "--exactly-once", "--schema", "orders",
      "--transaction-timeout-ms", "20000"},
     {{"transactional.id", "outbox-relay.orders"},
      {"transaction.timeout.ms", "20000"},
      {"message.timeout.ms", "!0"},
      {"enable.gapless.guarantee", "false"},
      {"max.in.flight.requests.per.connection", "1"},
      {"enable.idempotence", "true"}}},
    /* The reader takes the -X properties a consumer takes (security ones,
     * say) and keeps what it requires whatever -X says. */
    {"progress reader",
     1,
     {"--kafka-brokers", "k:9092", "-X", "security.protocol=SASL_SSL", "-X",
      "isolation.level=read_uncommitted", "-X", "linger.ms=5"},
     {{"bootstrap.servers", "k:9092"},
      {"security.protocol", "sasl_ssl"},
      {"isolation.level", "read_committed"},
      {"enable.auto.commit", "false"},
      {"allow.auto.create.topics", "false"},
      {"auto.offset.reset", "smallest"}}},
};

START_TEST(test_conf)
{
        const struct conf_case *k = &conf_cases[_i];
        char *argv[13] = {NULL}; /* config_parse may permute it */
        int argc = 0;
        struct config *cfg;
        rd_kafka_conf_t *conf;

        for (; argc < 12 && k->args[argc]; argc++)
                argv[argc] = (char *)k->args[argc];
        cfg = parse(argc, argv);
        conf = k->reader ? kafka_conf_reader(cfg, NULL, errbuf, sizeof(errbuf))
                         : kafka_conf_producer(cfg, errbuf, sizeof(errbuf));
        ck_assert_msg(conf != NULL, "%s: %s", k->what, errbuf);
        for (size_t i = 0; i < 16 && k->want[i].name; i++) {
                const char *got = get(conf, k->want[i].name), *want = k->want[i].value;
                int negated = want[0] == '!';

                ck_assert_msg((strcmp(got, want + negated) == 0) != negated,
                              "%s: %s is \"%s\", expected \"%s\"", k->what, k->want[i].name, got,
                              want);
        }
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
        static const char *const secret[] = {"sasl.password",
                                             "ssl.key.password",
                                             "ssl.key.pem",
                                             "sasl.oauthbearer.client.secret",
                                             "sasl.oauthbearer.config",
                                             "sasl.jaas.config"};
        static const char *const plain[] = {"linger.ms", "ssl.ca.location"};

        for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
                ck_assert_msg(kafka_conf_is_secret(secret[i]), "%s", secret[i]);
        for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
                ck_assert_msg(!kafka_conf_is_secret(plain[i]), "%s", plain[i]);
}
END_TEST

Suite *test_suite(void)
{
        Suite *s = suite_create("kafka_conf");
        TCase *tc = tcase_create("core");

        tcase_add_loop_test(tc, test_conf, 0, (int)(sizeof(conf_cases) / sizeof(conf_cases[0])));
        tcase_add_test(tc, test_validate);
        tcase_add_test(tc, test_secret_names);
        suite_add_tcase(s, tc);
        return s;
}
