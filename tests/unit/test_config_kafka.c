/* Unit tests of config's Kafka-side settings: routes, librdkafka
 * properties from flags, the environment and files (validated offline,
 * never echoing a secret), --exactly-once and its progress topic, and
 * --envelope. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <check.h>
#include <librdkafka/rdkafka.h>

#include "config.h"
#include "config_test_util.h"
#include "kafka_conf.h"
#include "runner.h"

START_TEST(test_routes)
{
        struct config *cfg =
            ct_parse_ok(ARGS("--route", "order.created=orders", "--route=user.*=users", "--route",
                             " * = everything "));

        ck_assert_uint_eq(cfg->n_routes, 3);
        ck_assert_str_eq(cfg->routes[0].name, "order.created");
        ck_assert_str_eq(cfg->routes[0].value, "orders");
        ck_assert_str_eq(cfg->routes[1].name, "user.*");
        ck_assert_str_eq(cfg->routes[1].value, "users");
        ck_assert_str_eq(cfg->routes[2].name, "*");
        ck_assert_str_eq(cfg->routes[2].value, "everything");
        config_free(cfg);

        ct_parse_fails(ARGS("--route", "order.created"));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "order.created"));
        ct_parse_fails(ARGS("--route", "order.created=bad topic!"));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "bad topic!"));
        ct_parse_fails(ARGS("--route", "us*er=t"));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "us*er"));
}
END_TEST

START_TEST(test_routes_env_and_flags)
{
        struct config *cfg;

        setenv("OUTBOX_ROUTES", "a.x=ta, b.*=tb,,c=tc", 1);
        cfg = ct_parse_ok(ARGS("--batch-size", "1"));
        ck_assert_uint_eq(cfg->n_routes, 3);
        ck_assert_str_eq(cfg->routes[1].name, "b.*");
        ck_assert_str_eq(cfg->routes[1].value, "tb");
        config_free(cfg);

        /* A flag for a pattern the environment set replaces it. */
        cfg = ct_parse_ok(ARGS("--route", "b.*=flag_tb", "--route", "d=td"));
        ck_assert_uint_eq(cfg->n_routes, 4);
        for (size_t i = 0; i < cfg->n_routes; i++)
                if (strcmp(cfg->routes[i].name, "b.*") == 0)
                        ck_assert_str_eq(cfg->routes[i].value, "flag_tb");
        ck_assert_int_eq(config_validate(cfg, 0, ct_errbuf, sizeof(ct_errbuf)), 0);
        config_free(cfg);

        /* The same pattern twice on the command line is a mistake. */
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--route", "d=t1", "--route", "d=t2")),
                         -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "duplicate"));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "\"d\""));
}
END_TEST

START_TEST(test_kafka_properties)
{
        struct config *cfg = ct_parse_ok(ARGS("-X", "linger.ms=5", "-Xclient.id=relay",
                                              "--kafka-property", "compression.type=lz4",
                                              "--kafka-property=sasl.oauthbearer.config=a=b c=d"));

        ck_assert_uint_eq(cfg->n_kafka_props, 4);
        ck_assert_str_eq(cfg->kafka_props[0].name, "linger.ms");
        ck_assert_str_eq(cfg->kafka_props[0].value, "5");
        ck_assert_str_eq(cfg->kafka_props[1].name, "client.id");
        ck_assert_str_eq(cfg->kafka_props[1].value, "relay");
        ck_assert_str_eq(cfg->kafka_props[2].name, "compression.type");
        ck_assert_str_eq(cfg->kafka_props[3].name, "sasl.oauthbearer.config");
        ck_assert_str_eq(cfg->kafka_props[3].value, "a=b c=d");
        config_free(cfg);

        ct_parse_fails(ARGS("-X", "linger.ms"));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "-X"));
        ct_parse_fails(ARGS("-X"));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "-X"));
        /* No '=': the text is not echoed when it looks like a credential. */
        ct_parse_fails(ARGS("-X", "sasl.password:s3cret"));
        ck_assert_ptr_null(strstr(ct_errbuf, "s3cret"));
        ct_parse_fails(ARGS("-X", "=s3cret"));
        ck_assert_ptr_null(strstr(ct_errbuf, "s3cret"));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "-X"));
}
END_TEST

START_TEST(test_rdkafka_env_mapping)
{
        struct config *cfg;

        setenv("OUTBOX_RDKAFKA_SECURITY_PROTOCOL", "SASL_SSL", 1);
        setenv("OUTBOX_RDKAFKA_SASL_MECHANISM", "PLAIN", 1);
        setenv("OUTBOX_RDKAFKA_LINGER_MS", "", 1); /* empty: unset */
        cfg = ct_parse_ok(ARGS("--batch-size", "1"));
        ck_assert_uint_eq(cfg->n_kafka_props, 2);
        for (size_t i = 0; i < cfg->n_kafka_props; i++) {
                if (strcmp(cfg->kafka_props[i].name, "security.protocol") == 0)
                        ck_assert_str_eq(cfg->kafka_props[i].value, "SASL_SSL");
                else
                        ck_assert_str_eq(cfg->kafka_props[i].name, "sasl.mechanism");
        }
        config_free(cfg);

        /* A variable named just the prefix has no property name. */
        setenv("OUTBOX_RDKAFKA_", "s3cret", 1);
        ct_parse_fails(ARGS("--batch-size", "1"));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "OUTBOX_RDKAFKA_"));
        ck_assert_ptr_null(strstr(ct_errbuf, "s3cret"));
        unsetenv("OUTBOX_RDKAFKA_");

        /* Flags win over the environment for the same property. */
        cfg = ct_parse_ok(ARGS("-X", "security.protocol=plaintext"));
        ck_assert_uint_eq(cfg->n_kafka_props, 2);
        ck_assert_str_eq(cfg->kafka_props[1].name, "security.protocol");
        ck_assert_str_eq(cfg->kafka_props[1].value, "plaintext");
        ck_assert_str_eq(cfg->kafka_props[0].name, "sasl.mechanism");
        config_free(cfg);
}
END_TEST

START_TEST(test_rdkafka_validation)
{
        ck_assert_int_eq(
            ct_validate_args(ARGS(DB, KAFKA, "-X", "linger.ms=5", "-X", "acks=all", "-X",
                                  "enable.idempotence=true", "-X", "max.in.flight=5")),
            0);

        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "-X", "no.such.property=1")), -1);
        ck_assert_str_eq(ct_errbuf, "unknown librdkafka property \"no.such.property\"");

        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "-X", "linger.ms=-5")), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "linger.ms"));

        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "-X", "enable.idempotence=false")), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "enable.idempotence must stay true"));

        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "-X", "acks=1")), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "acks must be all"));
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "-X", "request.required.acks=0")), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "request.required.acks must be all"));

        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "-X", "bootstrap.servers=x:1")), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "--kafka-brokers"));
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "-X", "metadata.broker.list=x:1")), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "--kafka-brokers"));

        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "-X", "dr_msg_cb=x")), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "dr_msg_cb"));
}
END_TEST

START_TEST(test_rdkafka_secret_not_echoed)
{
        /* librdkafka's own message quotes the value; for credential-like
         * names only the name may appear. */
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "-X", "sasl.jaas.config=s3cret")), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "sasl.jaas.config"));
        ck_assert_ptr_null(strstr(ct_errbuf, "s3cret"));
        /* Control: a non-secret bad value is quoted, so the check above is meaningful. */
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "-X", "security.protocol=s3cret")), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "s3cret"));
}
END_TEST

START_TEST(test_rdkafka_file)
{
        char *pw = WRITE("pw", "s3cret\n"), *user = WRITE("user", "relay");
        char *proto = WRITE("proto", "s3cret");
        struct config *cfg;

        setenv("OUTBOX_RDKAFKA_SASL_PASSWORD_FILE", pw, 1);
        ct_parse_fails(ARGS("--kafka-property-file", "sasl.username=/dev/null"));
        ct_assert_names("--kafka-property-file", "/dev/null");
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "is empty"));

        cfg = ct_parse_ok(ARGS("--batch-size", "1"));
        ck_assert_uint_eq(cfg->n_kafka_props, 1);
        ck_assert_str_eq(cfg->kafka_props[0].name, "sasl.password");
        ck_assert_str_eq(cfg->kafka_props[0].value, "s3cret");
        ck_assert_int_eq(cfg->kafka_props[0].from_file, 1);
        config_free(cfg);

        /* Flags: -X and --kafka-property-file override the environment's
         * either form, and a file flag marks its value secret. */
        {
                char arg[160];

                snprintf(arg, sizeof(arg), "sasl.username=%s", user);
                cfg = ct_parse_ok(ARGS("-X", "sasl.password=other", "--kafka-property-file", arg));
        }
        ck_assert_uint_eq(cfg->n_kafka_props, 2);
        ck_assert_str_eq(cfg->kafka_props[0].name, "sasl.password");
        ck_assert_str_eq(cfg->kafka_props[0].value, "other");
        ck_assert_int_eq(cfg->kafka_props[0].from_file, 0);
        ck_assert_str_eq(cfg->kafka_props[1].name, "sasl.username");
        ck_assert_str_eq(cfg->kafka_props[1].value, "relay");
        ck_assert_int_eq(cfg->kafka_props[1].from_file, 1);
        config_free(cfg);

        /* Two variables for one property: which one wins is not guessed. */
        setenv("OUTBOX_RDKAFKA_SASL_PASSWORD", "s3cret", 1);
        ct_parse_fails(ARGS("--batch-size", "1"));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "sasl.password"));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "OUTBOX_RDKAFKA_SASL_PASSWORD"));
        ck_assert_ptr_null(strstr(ct_errbuf, "s3cret"));
        unsetenv("OUTBOX_RDKAFKA_SASL_PASSWORD");
        unsetenv("OUTBOX_RDKAFKA_SASL_PASSWORD_FILE");

        setenv("OUTBOX_RDKAFKA_SSL_KEY_PASSWORD_FILE", "/nonexistent/pw", 1);
        ct_parse_fails(ARGS("--batch-size", "1"));
        ct_assert_names("OUTBOX_RDKAFKA_SSL_KEY_PASSWORD_FILE", "/nonexistent/pw");
        unsetenv("OUTBOX_RDKAFKA_SSL_KEY_PASSWORD_FILE");

        /* A value read from a file is never quoted, whatever the property;
         * the control shows librdkafka would quote it otherwise. */
        setenv("OUTBOX_RDKAFKA_SECURITY_PROTOCOL_FILE", proto, 1);
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA)), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "security.protocol"));
        ck_assert_ptr_null(strstr(ct_errbuf, "s3cret"));
        unsetenv("OUTBOX_RDKAFKA_SECURITY_PROTOCOL_FILE");
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "-X", "security.protocol=s3cret")), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "s3cret"));
}
END_TEST

/* OUTBOX_RDKAFKA_<NAME>_FILE is the file form only because no librdkafka
 * property name ends in "file": checked against the linked librdkafka's own
 * list, so an upgrade that adds one fails here instead of being misread. */
START_TEST(test_no_rdkafka_property_ends_in_file)
{
        char *buf = NULL, *line, *save = NULL;
        size_t len = 0, names = 0;
        FILE *f = open_memstream(&buf, &len);

        ck_assert_ptr_nonnull(f);
        rd_kafka_conf_properties_show(f);
        ck_assert_int_eq(fclose(f), 0);
        for (line = strtok_r(buf, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
                size_t n = strcspn(line, " |");

                if (n == 0 || line[n] == '\0' || strchr("#-", line[0]) != NULL ||
                    strncmp(line, "Property", 8) == 0)
                        continue;
                names++;
                ck_assert_msg(n < 4 || strncasecmp(line + n - 4, "file", 4) != 0,
                              "librdkafka property %.*s ends in \"file\": "
                              "OUTBOX_RDKAFKA_<NAME>_FILE would be ambiguous",
                              (int)n, line);
        }
        ck_assert_uint_gt(names, 100);
        free(buf);
}
END_TEST

/* --outboxes-file: each outbox's keys over the process's settings. */

START_TEST(test_exactly_once)
{
        struct config *cfg;
        char tid[300];

        cfg = ct_parse_ok(ARGS("--schema", "orders"));
        ck_assert_int_eq(cfg->exactly_once, 0);
        ck_assert_str_eq(cfg->progress_topic, "outbox-relay-progress");
        ck_assert_int_eq(cfg->transaction_timeout_ms, 10000);
        ck_assert_str_eq(kafka_conf_transactional_id(cfg, tid, sizeof(tid)), "outbox-relay.orders");
        config_free(cfg);

        setenv("OUTBOX_EXACTLY_ONCE", "true", 1);
        cfg = ct_parse_ok(ARGS("--transactional-id", "orders-outbox"));
        ck_assert_int_eq(cfg->exactly_once, 1);
        ck_assert_str_eq(kafka_conf_transactional_id(cfg, tid, sizeof(tid)), "orders-outbox");
        config_free(cfg);
        setenv("OUTBOX_EXACTLY_ONCE", "false", 1);
        cfg = ct_parse_ok(ARGS("--batch-size", "5"));
        ck_assert_int_eq(cfg->exactly_once, 0);
        config_free(cfg);
        cfg = ct_parse_ok(ARGS("--exactly-once"));
        ck_assert_int_eq(cfg->exactly_once, 1);
        config_free(cfg);
        setenv("OUTBOX_EXACTLY_ONCE", "yes please", 1);
        ct_parse_fails(ARGS("--batch-size", "5"));
        ck_assert_str_eq(ct_errbuf,
                         "OUTBOX_EXACTLY_ONCE must be true or false, not \"yes please\"");
        unsetenv("OUTBOX_EXACTLY_ONCE");
        ct_parse_fails(ARGS("--exactly-once=1"));
        ck_assert_str_eq(ct_errbuf, "option --exactly-once takes no value");

        ck_assert_int_eq(
            ct_validate_args(ARGS(DB, KAFKA, "--exactly-once", "--progress-topic", "a b")), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "--progress-topic"));
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "-X", "transactional.id=x")), -1);
        ck_assert_str_eq(ct_errbuf, "librdkafka property transactional.id cannot be set: use "
                                    "--transactional-id with --exactly-once instead");
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--exactly-once")), 0);
}
END_TEST

/* --envelope: plain unless told; the CloudEvents source defaults to the
 * database libpq would connect to (percent-encoded) and the schema; bad
 * values are one line naming the setting. */
START_TEST(test_envelope)
{
        struct config *cfg;
        char src[1100];

        unsetenv("PGDATABASE");
        cfg = ct_parse_ok(ARGS(DB, "--schema", "orders"));
        ck_assert_str_eq(cfg->envelope, "plain");
        ck_assert_int_eq(config_cloudevents(cfg), 0);
        ck_assert_str_eq(config_cloudevents_source(cfg, src, sizeof(src)),
                         "/outbox-relay/app/orders");
        config_free(cfg);
        setenv("OUTBOX_ENVELOPE", "cloudevents", 1);
        cfg = ct_parse_ok(
            ARGS("--database-url", "postgres://u:pw@h:5432/my%20db%2Fx?sslmode=disable"));
        ck_assert_int_eq(config_cloudevents(cfg), 1);
        ck_assert_str_eq(config_cloudevents_source(cfg, src, sizeof(src)),
                         "/outbox-relay/my%20db%2Fx/outbox");
        config_free(cfg);
        unsetenv("OUTBOX_ENVELOPE");
        /* No dbname: libpq takes PGDATABASE, else the user name. */
        cfg = ct_parse_ok(ARGS("--database-url", "host=h user=alice"));
        ck_assert_str_eq(config_cloudevents_source(cfg, src, sizeof(src)),
                         "/outbox-relay/alice/outbox");
        setenv("PGDATABASE", "envdb", 1);
        ck_assert_str_eq(config_cloudevents_source(cfg, src, sizeof(src)),
                         "/outbox-relay/envdb/outbox");
        unsetenv("PGDATABASE");
        config_free(cfg);
        cfg = ct_parse_ok(ARGS(DB, "--cloudevents-source", "https://example.com/orders?x=%C3%A9"));
        ck_assert_str_eq(config_cloudevents_source(cfg, src, sizeof(src)),
                         "https://example.com/orders?x=%C3%A9");
        config_free(cfg);
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--envelope", "cloudevents",
                                               "--cloudevents-source", "urn:event:from:orders")),
                         0);

        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--envelope", "CloudEvents")), -1);
        ck_assert_str_eq(ct_errbuf,
                         "invalid --envelope (OUTBOX_ENVELOPE) \"CloudEvents\": expected "
                         "plain or cloudevents");
        ct_parse_fails(ARGS("--envelope", ""));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "--envelope"));
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--cloudevents-source", "/a b")), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "--cloudevents-source"));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "byte 3 is 0x20"));
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--cloudevents-source", "/a%2")), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "byte 3 is a '%'"));
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--cloudevents-source", "/caf\xc3\xa9")),
                         -1);
        ct_parse_fails(ARGS("--cloudevents-source", ""));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "--cloudevents-source"));
        setenv("OUTBOX_CLOUDEVENTS_SOURCE", "a\tb", 1);
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA)), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "OUTBOX_CLOUDEVENTS_SOURCE"));
        unsetenv("OUTBOX_CLOUDEVENTS_SOURCE");
}
END_TEST

START_TEST(test_progress_topic_creation)
{
        struct config *cfg = ct_parse_ok(ARGS("--exactly-once"));

        ck_assert_int_eq(cfg->progress_no_create, 0);
        ck_assert_int_eq(cfg->progress_replication, -1);
        config_free(cfg);
        cfg = ct_parse_ok(
            ARGS("--progress-topic-no-create", "--progress-topic-replication-factor", "3"));
        ck_assert_int_eq(cfg->progress_no_create, 1);
        ck_assert_int_eq(cfg->progress_replication, 3);
        config_free(cfg);
        setenv("OUTBOX_PROGRESS_TOPIC_NO_CREATE", "true", 1);
        setenv("OUTBOX_PROGRESS_TOPIC_REPLICATION_FACTOR", "2", 1);
        cfg = ct_parse_ok(ARGS("--exactly-once"));
        ck_assert_int_eq(cfg->progress_no_create, 1);
        ck_assert_int_eq(cfg->progress_replication, 2);
        config_free(cfg);
        unsetenv("OUTBOX_PROGRESS_TOPIC_NO_CREATE");
        unsetenv("OUTBOX_PROGRESS_TOPIC_REPLICATION_FACTOR");
        ck_assert_int_eq(
            ct_validate_args(ARGS(DB, KAFKA, "--progress-topic-replication-factor", "0")), -1);
        ck_assert_str_eq(ct_errbuf, "--progress-topic-replication-factor is 0: expected -1 (the "
                                    "brokers' default) or 1 to 32767");
        ct_parse_fails(ARGS("--progress-topic-replication-factor", "-2"));
        ck_assert_str_eq(ct_errbuf, "invalid value \"-2\" for --progress-topic-replication-factor: "
                                    "expected an integer from -1 to 32767");
}
END_TEST

Suite *test_suite(void)
{
        Suite *s = suite_create("config_kafka");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_routes);
        tcase_add_test(tc, test_routes_env_and_flags);
        tcase_add_test(tc, test_kafka_properties);
        tcase_add_test(tc, test_rdkafka_env_mapping);
        tcase_add_test(tc, test_rdkafka_validation);
        tcase_add_test(tc, test_rdkafka_secret_not_echoed);
        tcase_add_test(tc, test_rdkafka_file);
        tcase_add_test(tc, test_no_rdkafka_property_ends_in_file);
        tcase_add_test(tc, test_exactly_once);
        tcase_add_test(tc, test_progress_topic_creation);
        tcase_add_test(tc, test_envelope);
        suite_add_tcase(s, tc);
        return s;
}
