/* Unit tests of config: defaults, environment and flag precedence, every
 * integer bound, repeatable settings, offline validation of the database URL
 * and librdkafka properties (never echoing secrets), --help and the README. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <check.h>
#include <librdkafka/rdkafka.h>

#include "config.h"
#include "kafka_conf.h"
#include "runner.h"

/* Runs config_parse on a NULL-terminated list; each test runs in its own
 * process (CK_FORK), so setenv does not leak between tests. */
#define ARGS(...) ((char *[]){__VA_ARGS__, NULL})

static char errbuf[512];

static int argc_of(char **argv)
{
        int n = 0;

        while (argv[n] != NULL)
                n++;
        return n;
}

static struct config *parse_ok(char **argv)
{
        struct config *cfg = config_new();

        ck_assert_ptr_nonnull(cfg);
        errbuf[0] = '\0';
        ck_assert_msg(config_parse(cfg, argc_of(argv), argv, errbuf, sizeof(errbuf)) == 0,
                      "unexpected parse error: %s", errbuf);
        return cfg;
}

/* Parse must fail; errbuf holds the message. */
static void parse_fails(char **argv)
{
        struct config *cfg = config_new();

        ck_assert_ptr_nonnull(cfg);
        errbuf[0] = '\0';
        ck_assert_int_eq(config_parse(cfg, argc_of(argv), argv, errbuf, sizeof(errbuf)), -1);
        ck_assert_msg(errbuf[0] != '\0', "no error message");
        ck_assert_msg(strchr(errbuf, '\n') == NULL, "error is not one line: %s", errbuf);
        config_free(cfg);
}

/* Parses and validates with both DB and Kafka needed; returns validate's result. */
static int validate_args(char **argv)
{
        struct config *cfg = parse_ok(argv);
        int rc;

        errbuf[0] = '\0';
        rc = config_validate(cfg, CONFIG_NEED_DB | CONFIG_NEED_KAFKA, errbuf, sizeof(errbuf));
        if (rc != 0) {
                ck_assert_msg(errbuf[0] != '\0', "no error message");
                ck_assert_msg(strchr(errbuf, '\n') == NULL, "error is not one line: %s", errbuf);
        }
        config_free(cfg);
        return rc;
}

#define DB    "--database-url", "host=localhost dbname=app"
#define KAFKA "--kafka-brokers", "localhost:9092"

START_TEST(test_defaults)
{
        struct config *cfg = config_new();
        char want_suffix[32];

        ck_assert_ptr_nonnull(cfg);
        ck_assert_ptr_null(cfg->database_url);
        ck_assert_ptr_null(cfg->kafka_brokers);
        ck_assert_str_eq(cfg->schema, "outbox");
        ck_assert_ptr_null(cfg->default_topic);
        ck_assert_int_eq(cfg->batch_size, 1000);
        ck_assert_int_eq(cfg->pipeline_depth, 4);
        ck_assert_int_eq(cfg->poll_interval_ms, 1000);
        ck_assert_int_eq(cfg->mark_delay_ms, 50);
        ck_assert_int_eq(cfg->retry_base_ms, 1000);
        ck_assert_int_eq(cfg->retry_max_ms, 300000);
        ck_assert_int_eq(cfg->max_attempts, 10);
        ck_assert_int_eq(cfg->shutdown_timeout_ms, 10000);
        ck_assert_int_eq(cfg->reconnect_max_ms, 30000);
        ck_assert_int_eq(cfg->statement_timeout_ms, 30000);
        ck_assert_int_eq(cfg->lock_timeout_ms, 5000);
        ck_assert(cfg->memory_budget == 64LL * 1024 * 1024);
        ck_assert_int_eq(cfg->log_level, LOG_LEVEL_INFO);
        ck_assert_uint_eq(cfg->n_routes, 0);
        ck_assert_uint_eq(cfg->n_kafka_props, 0);
        ck_assert(cfg->replay_from_id == 0 && cfg->replay_to_id == 0);
        ck_assert_ptr_null(cfg->replay_since);
        ck_assert_int_eq(cfg->dry_run, 0);
        snprintf(want_suffix, sizeof(want_suffix), ":%ld", (long)getpid());
        ck_assert_ptr_nonnull(cfg->instance_id);
        ck_assert_uint_gt(strlen(cfg->instance_id), strlen(want_suffix));
        ck_assert_str_eq(cfg->instance_id + strlen(cfg->instance_id) - strlen(want_suffix),
                         want_suffix);
        /* The defaults themselves pass validation when nothing is required. */
        ck_assert_int_eq(config_validate(cfg, 0, errbuf, sizeof(errbuf)), 0);
        config_free(cfg);
        config_free(NULL);
}
END_TEST

START_TEST(test_missing_required)
{
        struct config *cfg = parse_ok(ARGS("--kafka-brokers", "b:9092"));

        ck_assert_int_eq(config_validate(cfg, CONFIG_NEED_DB, errbuf, sizeof(errbuf)), -1);
        ck_assert_str_eq(errbuf, "missing required setting --database-url (OUTBOX_DATABASE_URL) or "
                                 "--database-url-file (OUTBOX_DATABASE_URL_FILE)");
        /* Kafka is not needed by migrate: its absence is no error then. */
        config_free(cfg);
        cfg = parse_ok(ARGS(DB));
        ck_assert_int_eq(config_validate(cfg, CONFIG_NEED_DB, errbuf, sizeof(errbuf)), 0);
        ck_assert_int_eq(config_validate(cfg, CONFIG_NEED_KAFKA, errbuf, sizeof(errbuf)), -1);
        ck_assert_str_eq(errbuf, "missing required setting --kafka-brokers (OUTBOX_KAFKA_BROKERS)");
        config_free(cfg);
}
END_TEST

START_TEST(test_env_then_flags)
{
        struct config *cfg;

        setenv("OUTBOX_BATCH_SIZE", "50", 1);
        setenv("OUTBOX_SCHEMA", "from_env", 1);
        setenv("OUTBOX_DATABASE_URL", "host=envhost", 1);
        setenv("OUTBOX_LOG_LEVEL", "debug", 1);
        setenv("OUTBOX_PIPELINE_DEPTH", "", 1); /* empty counts as unset */
        cfg = parse_ok(ARGS("--dry-run"));
        ck_assert_int_eq(cfg->batch_size, 50);
        ck_assert_str_eq(cfg->schema, "from_env");
        ck_assert_str_eq(cfg->database_url, "host=envhost");
        ck_assert_int_eq(cfg->log_level, LOG_LEVEL_DEBUG);
        ck_assert_int_eq(cfg->pipeline_depth, 4);
        config_free(cfg);

        cfg = parse_ok(ARGS("--batch-size", "60", "--schema=from_flag", "--log-level=ERROR"));
        ck_assert_int_eq(cfg->batch_size, 60);
        ck_assert_str_eq(cfg->schema, "from_flag");
        ck_assert_str_eq(cfg->database_url, "host=envhost");
        ck_assert_int_eq(cfg->log_level, LOG_LEVEL_ERROR);
        config_free(cfg);

        /* The last flag wins. */
        cfg = parse_ok(ARGS("--batch-size=70", "--batch-size", "80"));
        ck_assert_int_eq(cfg->batch_size, 80);
        config_free(cfg);
}
END_TEST

START_TEST(test_env_error_names_variable)
{
        setenv("OUTBOX_MAX_ATTEMPTS", "lots", 1);
        parse_fails(ARGS("--batch-size", "5"));
        ck_assert_str_eq(errbuf, "invalid value \"lots\" for OUTBOX_MAX_ATTEMPTS: expected an "
                                 "integer from 1 to 1000000");
}
END_TEST

struct int_setting {
        const char *flag;
        size_t offset;
        long long min, max;
};

#define INT_SETTING(flag, field, min, max)                                                         \
        {                                                                                          \
                flag, offsetof(struct config, field), min, max                                     \
        }

static const struct int_setting int_settings[] = {
    INT_SETTING("batch-size", batch_size, 1, 100000),
    INT_SETTING("pipeline-depth", pipeline_depth, 1, 64),
    INT_SETTING("poll-interval-ms", poll_interval_ms, 10, 3600000),
    INT_SETTING("retry-base-ms", retry_base_ms, 1, 86400000),
    INT_SETTING("retry-max-ms", retry_max_ms, 1, 86400000),
    INT_SETTING("max-attempts", max_attempts, 1, 1000000),
    INT_SETTING("shutdown-timeout-ms", shutdown_timeout_ms, 0, 3600000),
    INT_SETTING("reconnect-max-ms", reconnect_max_ms, 100, 3600000),
    INT_SETTING("statement-timeout-ms", statement_timeout_ms, 100, 86400000),
    INT_SETTING("lock-timeout-ms", lock_timeout_ms, 100, 86400000),
};

static void expect_bad_int(const struct int_setting *is, const char *value)
{
        char flag[64], want[256];

        snprintf(flag, sizeof(flag), "--%s", is->flag);
        parse_fails(ARGS(flag, (char *)value));
        snprintf(want, sizeof(want),
                 "invalid value \"%s\" for %s: expected an integer from %lld to %lld", value, flag,
                 is->min, is->max);
        ck_assert_str_eq(errbuf, want);
}

/* Looped over int_settings: both bounds accepted, one past each rejected,
 * and junk, trailing characters, overflow and negatives rejected. */
START_TEST(test_int_bounds)
{
        const struct int_setting *is = &int_settings[_i];
        char flag[64], lo[32], hi[32], below[32], above[32];
        struct config *cfg;

        snprintf(flag, sizeof(flag), "--%s", is->flag);
        snprintf(lo, sizeof(lo), "%lld", is->min);
        snprintf(hi, sizeof(hi), "%lld", is->max);
        snprintf(below, sizeof(below), "%lld", is->min - 1);
        snprintf(above, sizeof(above), "%lld", is->max + 1);

        cfg = parse_ok(ARGS(flag, lo));
        ck_assert_int_eq(*(int *)((char *)cfg + is->offset), is->min);
        config_free(cfg);
        cfg = parse_ok(ARGS(flag, hi));
        ck_assert_int_eq(*(int *)((char *)cfg + is->offset), is->max);
        config_free(cfg);

        expect_bad_int(is, below);
        expect_bad_int(is, above);
        expect_bad_int(is, "-1");
        expect_bad_int(is, "12abc");
        expect_bad_int(is, "abc");
        expect_bad_int(is, "99999999999999999999");
        expect_bad_int(is, "-99999999999999999999");
        expect_bad_int(is, "4294967396"); /* 2^32 + 100: must not wrap into range */
        expect_bad_int(is, " 100");
        expect_bad_int(is, "100 ");
        expect_bad_int(is, "+100");
        expect_bad_int(is, "1e3");
        expect_bad_int(is, "0x10");
        parse_fails(ARGS(flag, ""));
        ck_assert_ptr_nonnull(strstr(errbuf, flag));
        parse_fails(ARGS(flag));
        ck_assert_ptr_nonnull(strstr(errbuf, flag));
}
END_TEST

START_TEST(test_retry_max_below_base)
{
        ck_assert_int_eq(
            validate_args(ARGS(DB, KAFKA, "--retry-base-ms", "5000", "--retry-max-ms", "4999")),
            -1);
        ck_assert_str_eq(errbuf, "--retry-max-ms (4999) must be at least --retry-base-ms (5000)");
        ck_assert_int_eq(
            validate_args(ARGS(DB, KAFKA, "--retry-base-ms", "5000", "--retry-max-ms", "5000")), 0);
}
END_TEST

/* With --exactly-once a batch is one progress record's worth of rows at
 * most: larger, the record would pass Kafka's message limit forever. */
START_TEST(test_exactly_once_batch_size)
{
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--exactly-once", "--batch-size", "8001")),
                         -1);
        ck_assert_str_eq(errbuf, "--batch-size 8001 is too large for --exactly-once: at most 8000 "
                                 "rows, so that a transaction's progress record fits one Kafka "
                                 "message");
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--exactly-once", "--batch-size", "8000")),
                         0);
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--batch-size", "100000")), 0);
}
END_TEST

/* The memory budget is a byte count past int's range: 1 MiB to 1 TiB,
 * from the flag or the variable, one clear line when wrong. */
START_TEST(test_memory_budget)
{
        struct config *cfg = parse_ok(ARGS("--memory-budget-bytes", "1099511627776"));

        ck_assert(cfg->memory_budget == 1099511627776LL);
        config_free(cfg);
        setenv("OUTBOX_MEMORY_BUDGET_BYTES", "1048576", 1);
        cfg = parse_ok(ARGS("--batch-size", "5"));
        ck_assert(cfg->memory_budget == 1048576);
        config_free(cfg);
        setenv("OUTBOX_MEMORY_BUDGET_BYTES", "64MiB", 1);
        parse_fails(ARGS("--batch-size", "5"));
        ck_assert_str_eq(errbuf, "invalid value \"64MiB\" for OUTBOX_MEMORY_BUDGET_BYTES: expected "
                                 "an integer from 1048576 to 1099511627776");
        unsetenv("OUTBOX_MEMORY_BUDGET_BYTES");
        parse_fails(ARGS("--memory-budget-bytes", "1048575"));
        ck_assert_str_eq(errbuf, "invalid value \"1048575\" for --memory-budget-bytes: expected an "
                                 "integer from 1048576 to 1099511627776");
        parse_fails(ARGS("--memory-budget-bytes", "1099511627777"));
        ck_assert_ptr_nonnull(strstr(errbuf, "--memory-budget-bytes"));
}
END_TEST

START_TEST(test_log_level)
{
        static const char *const names[] = {"debug", "info", "warn", "error"};
        struct config *cfg;

        for (int i = 0; i < 4; i++) {
                cfg = parse_ok(ARGS("--log-level", (char *)names[i]));
                ck_assert_int_eq(cfg->log_level, i);
                config_free(cfg);
        }
        parse_fails(ARGS("--log-level", "verbose"));
        ck_assert_str_eq(errbuf, "invalid value \"verbose\" for --log-level: expected debug, info, "
                                 "warn or error");
}
END_TEST

START_TEST(test_routes)
{
        struct config *cfg = parse_ok(ARGS("--route", "order.created=orders",
                                           "--route=user.*=users", "--route", " * = everything "));

        ck_assert_uint_eq(cfg->n_routes, 3);
        ck_assert_str_eq(cfg->routes[0].name, "order.created");
        ck_assert_str_eq(cfg->routes[0].value, "orders");
        ck_assert_str_eq(cfg->routes[1].name, "user.*");
        ck_assert_str_eq(cfg->routes[1].value, "users");
        ck_assert_str_eq(cfg->routes[2].name, "*");
        ck_assert_str_eq(cfg->routes[2].value, "everything");
        config_free(cfg);

        parse_fails(ARGS("--route", "order.created"));
        ck_assert_ptr_nonnull(strstr(errbuf, "order.created"));
        parse_fails(ARGS("--route", "order.created=bad topic!"));
        ck_assert_ptr_nonnull(strstr(errbuf, "bad topic!"));
        parse_fails(ARGS("--route", "us*er=t"));
        ck_assert_ptr_nonnull(strstr(errbuf, "us*er"));
}
END_TEST

START_TEST(test_routes_env_and_flags)
{
        struct config *cfg;

        setenv("OUTBOX_ROUTES", "a.x=ta, b.*=tb,,c=tc", 1);
        cfg = parse_ok(ARGS("--batch-size", "1"));
        ck_assert_uint_eq(cfg->n_routes, 3);
        ck_assert_str_eq(cfg->routes[1].name, "b.*");
        ck_assert_str_eq(cfg->routes[1].value, "tb");
        config_free(cfg);

        /* A flag for a pattern the environment set replaces it. */
        cfg = parse_ok(ARGS("--route", "b.*=flag_tb", "--route", "d=td"));
        ck_assert_uint_eq(cfg->n_routes, 4);
        for (size_t i = 0; i < cfg->n_routes; i++)
                if (strcmp(cfg->routes[i].name, "b.*") == 0)
                        ck_assert_str_eq(cfg->routes[i].value, "flag_tb");
        ck_assert_int_eq(config_validate(cfg, 0, errbuf, sizeof(errbuf)), 0);
        config_free(cfg);

        /* The same pattern twice on the command line is a mistake. */
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--route", "d=t1", "--route", "d=t2")), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "duplicate"));
        ck_assert_ptr_nonnull(strstr(errbuf, "\"d\""));
}
END_TEST

START_TEST(test_kafka_properties)
{
        struct config *cfg = parse_ok(ARGS("-X", "linger.ms=5", "-Xclient.id=relay",
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

        parse_fails(ARGS("-X", "linger.ms"));
        ck_assert_ptr_nonnull(strstr(errbuf, "-X"));
        parse_fails(ARGS("-X"));
        ck_assert_ptr_nonnull(strstr(errbuf, "-X"));
        /* No '=': the text is not echoed when it looks like a credential. */
        parse_fails(ARGS("-X", "sasl.password:s3cret"));
        ck_assert_ptr_null(strstr(errbuf, "s3cret"));
        parse_fails(ARGS("-X", "=s3cret"));
        ck_assert_ptr_null(strstr(errbuf, "s3cret"));
        ck_assert_ptr_nonnull(strstr(errbuf, "-X"));
}
END_TEST

START_TEST(test_rdkafka_env_mapping)
{
        struct config *cfg;

        setenv("OUTBOX_RDKAFKA_SECURITY_PROTOCOL", "SASL_SSL", 1);
        setenv("OUTBOX_RDKAFKA_SASL_MECHANISM", "PLAIN", 1);
        setenv("OUTBOX_RDKAFKA_LINGER_MS", "", 1); /* empty: unset */
        cfg = parse_ok(ARGS("--batch-size", "1"));
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
        parse_fails(ARGS("--batch-size", "1"));
        ck_assert_ptr_nonnull(strstr(errbuf, "OUTBOX_RDKAFKA_"));
        ck_assert_ptr_null(strstr(errbuf, "s3cret"));
        unsetenv("OUTBOX_RDKAFKA_");

        /* Flags win over the environment for the same property. */
        cfg = parse_ok(ARGS("-X", "security.protocol=plaintext"));
        ck_assert_uint_eq(cfg->n_kafka_props, 2);
        ck_assert_str_eq(cfg->kafka_props[1].name, "security.protocol");
        ck_assert_str_eq(cfg->kafka_props[1].value, "plaintext");
        ck_assert_str_eq(cfg->kafka_props[0].name, "sasl.mechanism");
        config_free(cfg);
}
END_TEST

START_TEST(test_rdkafka_validation)
{
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "-X", "linger.ms=5", "-X", "acks=all", "-X",
                                            "enable.idempotence=true", "-X", "max.in.flight=5")),
                         0);

        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "-X", "no.such.property=1")), -1);
        ck_assert_str_eq(errbuf, "unknown librdkafka property \"no.such.property\"");

        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "-X", "linger.ms=-5")), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "linger.ms"));

        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "-X", "enable.idempotence=false")), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "enable.idempotence must stay true"));

        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "-X", "acks=1")), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "acks must be all"));
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "-X", "request.required.acks=0")), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "request.required.acks must be all"));

        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "-X", "bootstrap.servers=x:1")), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "--kafka-brokers"));
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "-X", "metadata.broker.list=x:1")), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "--kafka-brokers"));

        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "-X", "dr_msg_cb=x")), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "dr_msg_cb"));
}
END_TEST

START_TEST(test_rdkafka_secret_not_echoed)
{
        /* librdkafka's own message quotes the value; for credential-like
         * names only the name may appear. */
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "-X", "sasl.jaas.config=s3cret")), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "sasl.jaas.config"));
        ck_assert_ptr_null(strstr(errbuf, "s3cret"));
        /* Control: a non-secret bad value is quoted, so the check above is meaningful. */
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "-X", "security.protocol=s3cret")), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "s3cret"));
}
END_TEST

static const char *const bad_urls[] = {
    "postgres://u:s3cret@host:notaport/db",
    "postgres://u:s3cret@host/db?bogus=1",
    "postgresql://u:s3cret@[::1/db",
    "postgresql://u:s3cret@h1:5432,h2:99999/db",
    "host=h password=s3cret port=x",
    "host=h password='s3cret",
    "password=s3cret s3cret",
};

START_TEST(test_bad_url_not_echoed)
{
        ck_assert_int_eq(validate_args(ARGS("--database-url", (char *)bad_urls[_i], KAFKA)), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "--database-url"));
        ck_assert_ptr_null(strstr(errbuf, "s3cret"));
        ck_assert_ptr_null(strstr(errbuf, "host"));
}
END_TEST

START_TEST(test_good_urls)
{
        ck_assert_int_eq(
            validate_args(ARGS("--database-url", "postgres://u:pw@db:5432/app", KAFKA)), 0);
        ck_assert_int_eq(
            validate_args(
                ARGS("--database-url", "postgresql://u:pw@h1:5432,h2/app?sslmode=require", KAFKA)),
            0);
        ck_assert_int_eq(
            validate_args(ARGS("--database-url", "host=/tmp port=5433 dbname=x", KAFKA)), 0);
}
END_TEST

START_TEST(test_schema_and_topics)
{
        char name[65];

        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--schema", "_relay_2")), 0);
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--schema", "Outbox")), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "--schema"));
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--schema", "2outbox")), -1);
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--schema", "out-box")), -1);
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--schema", "a\"; drop table x; --")), -1);
        /* At most 56 characters: the channel "<schema>.events" must fit
         * PostgreSQL's 63-byte identifier limit. */
        memset(name, 'a', 57);
        name[57] = '\0';
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--schema", name)), -1);
        name[56] = '\0';
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--schema", name)), 0);

        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--default-topic", "orders.v1_x-y")), 0);
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--default-topic", "..")), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "--default-topic"));
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--default-topic", "a/b")), -1);
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--topic", "a b")), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "--topic"));
}
END_TEST

/* --http-listen: IPv4, bracketed IPv6 (dual-stack [::]); anything else is
 * one line naming the setting, before anything listens. */
START_TEST(test_http_listen)
{
        static const char *const good[] = {"0.0.0.0:9400", "127.0.0.1:1", "[::]:9400",
                                           "[::1]:65535", "[fe80::1]:80"};
        static const char *const bad[] = {
            "9400",        ":9400",       "0.0.0.0:",     "0.0.0.0:0",    "0.0.0.0:65536",
            "0.0.0.0:+80", "0.0.0.0:80x", "::1:9400",     "[::1]",        "[]:9400",
            "[::1:9400",   "::]:9400",    "localhost:80", "[1.2.3.4]:80", "0.0.0.0:-1",
            "[::%lo]:80",  "[::1]:80:"};
        struct sockaddr_storage addr;
        socklen_t len;

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                ck_assert_msg(validate_args(ARGS(DB, KAFKA, "--http-listen", (char *)good[i])) == 0,
                              "%s: %s", good[i], errbuf);
                ck_assert_int_eq(config_listen_addr(good[i], &addr, &len, errbuf, sizeof(errbuf)),
                                 0);
                ck_assert_int_eq(addr.ss_family, good[i][0] == '[' ? AF_INET6 : AF_INET);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                ck_assert_msg(validate_args(ARGS(DB, KAFKA, "--http-listen", (char *)bad[i])) == -1,
                              "%s accepted", bad[i]);
                ck_assert_msg(strstr(errbuf, "invalid --http-listen") != NULL &&
                                  strchr(errbuf, '\n') == NULL,
                              "%s: %s", bad[i], errbuf);
        }
}
END_TEST

START_TEST(test_flag_errors)
{
        parse_fails(ARGS("--foo"));
        ck_assert_str_eq(errbuf, "unknown option --foo (see --help)");
        parse_fails(ARGS("--foo=bar"));
        ck_assert_str_eq(errbuf, "unknown option --foo (see --help)");
        parse_fails(ARGS("-q"));
        ck_assert_str_eq(errbuf, "unknown option -q (see --help)");
        parse_fails(ARGS("--schema"));
        ck_assert_ptr_nonnull(strstr(errbuf, "--schema"));
        /* A following flag is not taken as the missing value. */
        parse_fails(ARGS("--database-url", "--kafka-brokers", "b:1"));
        ck_assert_ptr_nonnull(strstr(errbuf, "--database-url"));
        parse_fails(ARGS("--dry-run=yes"));
        ck_assert_ptr_nonnull(strstr(errbuf, "--dry-run"));
}
END_TEST

/* getopt_long's forms: a value attached or separate, -X attached or
 * separate, exact names only, options after arguments whatever
 * POSIXLY_CORRECT says, and a fresh start on every call (getopt keeps its
 * state in globals, and a failed parse leaves it mid-argv). */
START_TEST(test_getopt_forms)
{
        struct config *cfg;

        cfg = parse_ok(ARGS("--batch-size=5", "--pipeline-depth", "7", "-Xlinger.ms=5", "-X",
                            "acks=all", "--kafka-property=batch.size=9"));
        ck_assert(cfg->batch_size == 5 && cfg->pipeline_depth == 7);
        ck_assert_uint_eq(cfg->n_kafka_props, 3);
        ck_assert_str_eq(cfg->kafka_props[0].name, "linger.ms");
        ck_assert_str_eq(cfg->kafka_props[2].value, "9");
        config_free(cfg);
        /* A prefix that getopt_long would take is refused, named as typed. */
        parse_fails(ARGS("--batch", "5"));
        ck_assert_str_eq(errbuf, "unknown option --batch (see --help)");
        parse_fails(ARGS("--max", "300000"));
        ck_assert_str_eq(errbuf, "unknown option --max (see --help)");
        parse_fails(ARGS("--dry"));
        ck_assert_str_eq(errbuf, "unknown option --dry (see --help)");
        parse_fails(ARGS("--database-url-fil=/x"));
        ck_assert_str_eq(errbuf, "unknown option --database-url-fil (see --help)");
        /* Left mid-cluster by the failure above, then a fresh parse. */
        parse_fails(ARGS("-qX", "a=b"));
        ck_assert_str_eq(errbuf, "unknown option -q (see --help)");
        cfg = parse_ok(ARGS("list", "--json", "--", "-X", "--limit"));
        ck_assert_int_eq(cfg->json, 1);
        ck_assert_int_eq(cfg->n_args, 3);
        ck_assert_str_eq(cfg->args[1], "-X");
        ck_assert_str_eq(cfg->args[2], "--limit");
        config_free(cfg);
        setenv("POSIXLY_CORRECT", "1", 1);
        cfg = parse_ok(ARGS("requeue", "--id", "4", "extra", "--all"));
        ck_assert(cfg->id == 4 && cfg->all == 1 && cfg->n_args == 2);
        ck_assert_str_eq(cfg->args[1], "extra");
        config_free(cfg);
        unsetenv("POSIXLY_CORRECT");
        /* A value may start with one '-', not two. */
        cfg = parse_ok(ARGS("--key", "-h", "--topic", "-"));
        ck_assert_str_eq(cfg->replay_key, "-h");
        ck_assert_str_eq(cfg->replay_topic, "-");
        config_free(cfg);
        parse_fails(ARGS("-X", "--json"));
        ck_assert_str_eq(errbuf, "option -X needs a value (-X NAME=VALUE)");
        parse_fails(ARGS("--help=yes"));
        ck_assert_str_eq(errbuf, "option --help takes no value");
}
END_TEST

/* --help and -h as options, wherever they are, but not as a value or
 * after "--"; a bad setting before them does not hide them. */
START_TEST(test_wants_help)
{
        ck_assert_int_eq(config_wants_help(1, ARGS("--help")), 1);
        ck_assert_int_eq(config_wants_help(1, ARGS("-h")), 1);
        ck_assert_int_eq(config_wants_help(3, ARGS("--batch-size", "x", "-h")), 1);
        ck_assert_int_eq(config_wants_help(2, ARGS("--no-such-flag", "--help")), 1);
        ck_assert_int_eq(config_wants_help(3, ARGS("list", "--json", "--help")), 1);
        ck_assert_int_eq(config_wants_help(0, ARGS(NULL)), 0);
        ck_assert_int_eq(config_wants_help(2, ARGS("--key", "-h")), 0);
        ck_assert_int_eq(config_wants_help(2, ARGS("--", "--help")), 0);
        ck_assert_int_eq(config_wants_help(1, ARGS("--help=1")), 0);
        ck_assert_int_eq(config_wants_help(1, ARGS("--hel")), 0);
        /* config_parse passes over it: main has answered it already. */
        config_free(parse_ok(ARGS("--help", "-h")));
}
END_TEST

START_TEST(test_positional_and_replay)
{
        char *argv[] = {"first",      "--from-id",    "10",
                        "--to-id",    "20",           "--since",
                        "2026-01-01", "--until",      "2026-02-01 00:00+00",
                        "second",     "--topic",      "orders",
                        "--key",      "k1",           "--dry-run",
                        "--",         "--not-a-flag", NULL};
        struct config *cfg = parse_ok(argv);

        ck_assert_int_eq(cfg->n_args, 3);
        ck_assert_ptr_eq(cfg->args[0], argv[0]);
        ck_assert_ptr_eq(cfg->args[1], argv[9]);
        ck_assert_str_eq(cfg->args[2], "--not-a-flag");
        ck_assert(cfg->replay_from_id == 10 && cfg->replay_to_id == 20);
        ck_assert_str_eq(cfg->replay_since, "2026-01-01");
        ck_assert_str_eq(cfg->replay_until, "2026-02-01 00:00+00");
        ck_assert_str_eq(cfg->replay_topic, "orders");
        ck_assert_str_eq(cfg->replay_key, "k1");
        ck_assert_int_eq(cfg->dry_run, 1);
        ck_assert_int_eq(config_validate(cfg, CONFIG_NEED_DB, errbuf, sizeof(errbuf)), -1);
        config_free(cfg);

        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--from-id", "9223372036854775807")), 0);
        parse_fails(ARGS("--from-id", "0"));
        ck_assert_str_eq(errbuf, "invalid value \"0\" for --from-id: expected an integer >= 1");
        parse_fails(ARGS("--to-id", "9223372036854775808"));
        ck_assert_ptr_nonnull(strstr(errbuf, "--to-id"));
        parse_fails(ARGS("--since", ""));
        ck_assert_ptr_nonnull(strstr(errbuf, "--since"));
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--from-id", "5", "--to-id", "4")), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "--from-id"));
}
END_TEST

START_TEST(test_grant_roles)
{
        char long_role[80];
        struct config *cfg =
            parse_ok(ARGS("--grant-writer", "svc \"orders\"", "--grant-relay", "relay"));

        /* Any name is taken as is: migrate quotes it. */
        ck_assert_str_eq(cfg->grant_writer, "svc \"orders\"");
        ck_assert_str_eq(cfg->grant_relay, "relay");
        config_free(cfg);
        ck_assert_int_eq(
            validate_args(ARGS(DB, KAFKA, "--grant-relay", "r", "--grant-writer", "w")), 0);
        memset(long_role, 'r', 64);
        long_role[64] = '\0';
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--grant-relay", long_role)), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "--grant-relay"));
        ck_assert_ptr_nonnull(strstr(errbuf, "63 bytes"));
        parse_fails(ARGS("--grant-writer", ""));
        ck_assert_ptr_nonnull(strstr(errbuf, "--grant-writer"));
}
END_TEST

/* Every setting of the brief, flag and environment variable. */

/* ---- settings read from files (secrets mounted as files) ---- */

static char tmpdir[64];

/* Writes len bytes to tmpdir/name; returns the path (static per name slot). */
static char *write_file(const char *name, const char *data, size_t len)
{
        static char paths[8][128];
        static int next;
        char *path = paths[next++ % 8];
        FILE *f;

        if (tmpdir[0] == '\0') {
                snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-config-XXXXXX");
                ck_assert_ptr_nonnull(mkdtemp(tmpdir));
        }
        snprintf(path, 128, "%s/%s", tmpdir, name);
        f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(data, 1, len, f), len);
        ck_assert_int_eq(fclose(f), 0);
        return path;
}

#define WRITE(name, text) write_file(name, text, sizeof(text) - 1)

/* errbuf names what and the path, and shows nothing of the content. */
static void assert_names(const char *what, const char *path)
{
        ck_assert_msg(strstr(errbuf, what) != NULL, "error lacks %s: %s", what, errbuf);
        ck_assert_msg(strstr(errbuf, path) != NULL, "error lacks the path: %s", errbuf);
        ck_assert_msg(strstr(errbuf, "s3cret") == NULL, "error shows the secret: %s", errbuf);
}

START_TEST(test_database_url_file)
{
        char *url = WRITE("url", "host=h password=s3cret\r\n");
        char *two = WRITE("two", "host=h2\n\n");
        char *bare = WRITE("bare", "host=h3");
        struct config *cfg;

        /* One trailing newline (\n or \r\n) is stripped, no more. */
        setenv("OUTBOX_DATABASE_URL_FILE", url, 1);
        cfg = parse_ok(ARGS("--batch-size", "1"));
        ck_assert_str_eq(cfg->database_url, "host=h password=s3cret");
        ck_assert_str_eq(cfg->database_url_file, url);
        config_free(cfg);
        cfg = parse_ok(ARGS("--database-url-file", two));
        ck_assert_str_eq(cfg->database_url, "host=h2\n");
        config_free(cfg);
        cfg = parse_ok(ARGS("--database-url-file="
                            "/dev/null",
                            "--database-url-file", bare));
        ck_assert_str_eq(cfg->database_url, "host=h3"); /* the last flag wins */
        config_free(cfg);

        /* A flag of either form overrides the environment's; the file
         * the environment names is then not even read. */
        cfg = parse_ok(ARGS("--database-url", "host=flag"));
        ck_assert_str_eq(cfg->database_url, "host=flag");
        ck_assert_ptr_null(cfg->database_url_file);
        config_free(cfg);
        setenv("OUTBOX_DATABASE_URL_FILE", "/nonexistent/url", 1);
        cfg = parse_ok(ARGS("--database-url", "host=flag"));
        ck_assert_str_eq(cfg->database_url, "host=flag");
        config_free(cfg);
        unsetenv("OUTBOX_DATABASE_URL_FILE");
        setenv("OUTBOX_DATABASE_URL", "host=env password=s3cret", 1);
        cfg = parse_ok(ARGS("--database-url-file", bare));
        ck_assert_str_eq(cfg->database_url, "host=h3");
        config_free(cfg);

        /* Both forms from one source. */
        setenv("OUTBOX_DATABASE_URL_FILE", url, 1);
        parse_fails(ARGS("--batch-size", "1"));
        ck_assert_str_eq(errbuf,
                         "OUTBOX_DATABASE_URL and OUTBOX_DATABASE_URL_FILE are both set: set one");
        unsetenv("OUTBOX_DATABASE_URL");
        unsetenv("OUTBOX_DATABASE_URL_FILE");
        parse_fails(ARGS("--database-url", "host=h password=s3cret", "--database-url-file", url));
        ck_assert_str_eq(errbuf, "--database-url and --database-url-file are both given: give one");
}
END_TEST

START_TEST(test_database_url_file_errors)
{
        char big[64 * 1024 + 1];
        char *missing, *empty, *newline, *nul, *huge, *limit, *bad;

        missing = (char *)"/nonexistent/outbox/url";
        setenv("OUTBOX_DATABASE_URL_FILE", missing, 1);
        parse_fails(ARGS("--batch-size", "1"));
        assert_names("OUTBOX_DATABASE_URL_FILE", missing);
        ck_assert_ptr_nonnull(strstr(errbuf, "No such file"));
        unsetenv("OUTBOX_DATABASE_URL_FILE");

        empty = WRITE("empty", "");
        parse_fails(ARGS("--database-url-file", empty));
        assert_names("--database-url-file", empty);
        ck_assert_ptr_nonnull(strstr(errbuf, "is empty"));
        newline = WRITE("newline", "\r\n");
        parse_fails(ARGS("--database-url-file", newline));
        ck_assert_ptr_nonnull(strstr(errbuf, "is empty"));
        nul = write_file("nul", "host=h\0password=s3cret", 22);
        parse_fails(ARGS("--database-url-file", nul));
        assert_names("--database-url-file", nul);
        parse_fails(ARGS("--database-url-file", tmpdir)); /* a directory */
        assert_names("--database-url-file", tmpdir);

        /* 64 KiB is the limit: at it, the file is read; one byte more is refused. */
        memset(big, ' ', sizeof(big));
        memcpy(big, "host=h password=s3cret", 22);
        limit = write_file("limit", big, sizeof(big) - 1);
        config_free(parse_ok(ARGS("--database-url-file", limit)));
        huge = write_file("huge", big, sizeof(big));
        parse_fails(ARGS("--database-url-file", huge));
        assert_names("--database-url-file", huge);
        ck_assert_ptr_nonnull(strstr(errbuf, "64 KiB"));

        /* A URL libpq cannot parse: the file is named, its content is not. */
        bad = WRITE("bad", "host=h password=s3cret port=x\n");
        ck_assert_int_eq(validate_args(ARGS("--database-url-file", bad, KAFKA)), -1);
        assert_names("database URL", bad);
}
END_TEST

START_TEST(test_rdkafka_file)
{
        char *pw = WRITE("pw", "s3cret\n"), *user = WRITE("user", "relay");
        char *proto = WRITE("proto", "s3cret");
        struct config *cfg;

        setenv("OUTBOX_RDKAFKA_SASL_PASSWORD_FILE", pw, 1);
        parse_fails(ARGS("--kafka-property-file", "sasl.username=/dev/null"));
        assert_names("--kafka-property-file", "/dev/null");
        ck_assert_ptr_nonnull(strstr(errbuf, "is empty"));

        cfg = parse_ok(ARGS("--batch-size", "1"));
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
                cfg = parse_ok(ARGS("-X", "sasl.password=other", "--kafka-property-file", arg));
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
        parse_fails(ARGS("--batch-size", "1"));
        ck_assert_ptr_nonnull(strstr(errbuf, "sasl.password"));
        ck_assert_ptr_nonnull(strstr(errbuf, "OUTBOX_RDKAFKA_SASL_PASSWORD"));
        ck_assert_ptr_null(strstr(errbuf, "s3cret"));
        unsetenv("OUTBOX_RDKAFKA_SASL_PASSWORD");
        unsetenv("OUTBOX_RDKAFKA_SASL_PASSWORD_FILE");

        setenv("OUTBOX_RDKAFKA_SSL_KEY_PASSWORD_FILE", "/nonexistent/pw", 1);
        parse_fails(ARGS("--batch-size", "1"));
        assert_names("OUTBOX_RDKAFKA_SSL_KEY_PASSWORD_FILE", "/nonexistent/pw");
        unsetenv("OUTBOX_RDKAFKA_SSL_KEY_PASSWORD_FILE");

        /* A value read from a file is never quoted, whatever the property;
         * the control shows librdkafka would quote it otherwise. */
        setenv("OUTBOX_RDKAFKA_SECURITY_PROTOCOL_FILE", proto, 1);
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA)), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "security.protocol"));
        ck_assert_ptr_null(strstr(errbuf, "s3cret"));
        unsetenv("OUTBOX_RDKAFKA_SECURITY_PROTOCOL_FILE");
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "-X", "security.protocol=s3cret")), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "s3cret"));
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
static struct config_outbox *load_outboxes(const char *json, char **argv, size_t *n, int *rc)
{
        char *path = write_file("outboxes.json", json, strlen(json));
        struct config *cfg = parse_ok(argv);
        struct config_outbox *o = NULL;

        ck_assert_int_eq(config_validate(cfg, 0, errbuf, sizeof(errbuf)), 0);
        cfg->outboxes_file = strdup(path);
        errbuf[0] = '\0';
        *rc = config_outboxes_load(cfg, argc_of(argv), argv, CONFIG_NEED_DB | CONFIG_NEED_KAFKA, &o,
                                   n, errbuf, sizeof(errbuf));
        config_free(cfg);
        return o;
}

START_TEST(test_outboxes_file)
{
        char *url = WRITE("a-url", "host=a password=s3cret\n");
        char json[1024];
        struct config_outbox *o;
        size_t n;
        int rc;

        snprintf(json, sizeof(json),
                 "[{\"name\": \"a\", \"database-url-file\": \"%s\", \"schema\": \"sa\","
                 " \"route\": [\"order.*=orders\"], \"kafka-property\": \"linger.ms=9\","
                 " \"exactly-once\": true, \"batch-size\": 50},"
                 " {\"name\": \"b-2\", \"retention\": \"7d\"}]",
                 url);
        o = load_outboxes(json,
                          ARGS(DB, KAFKA, "--http-listen", "127.0.0.1:9400", "--batch-size", "7",
                               "-X", "linger.ms=3", "-X", "acks=all", "--route", "x=t"),
                          &n, &rc);
        ck_assert_msg(rc == 0, "%s", errbuf);
        ck_assert_uint_eq(n, 2);
        ck_assert_str_eq(o[0].name, "a");
        /* The outbox's own values ... */
        ck_assert_str_eq(o[0].cfg->database_url, "host=a password=s3cret");
        ck_assert_str_eq(o[0].cfg->schema, "sa");
        ck_assert_int_eq(o[0].cfg->batch_size, 50);
        ck_assert_int_eq(o[0].cfg->exactly_once, 1);
        ck_assert_uint_eq(o[0].cfg->n_routes, 1); /* replaces the process's routes */
        ck_assert_str_eq(o[0].cfg->routes[0].name, "order.*");
        ck_assert_uint_eq(o[0].cfg->n_kafka_props, 2); /* replaces linger.ms, keeps acks */
        for (size_t i = 0; i < 2; i++)
                if (strcmp(o[0].cfg->kafka_props[i].name, "linger.ms") == 0)
                        ck_assert_str_eq(o[0].cfg->kafka_props[i].value, "9");
        /* ... and the process's where it gives none. */
        ck_assert_str_eq(o[1].cfg->database_url, "host=localhost dbname=app");
        ck_assert_str_eq(o[1].cfg->schema, "outbox");
        ck_assert_int_eq(o[1].cfg->batch_size, 7);
        ck_assert_int_eq(o[1].cfg->retention_s, 7 * 86400);
        ck_assert_uint_eq(o[1].cfg->n_routes, 1);
        ck_assert_str_eq(o[1].cfg->routes[0].name, "x");
        /* One transactional id per outbox, from its name; one HTTP server. */
        ck_assert_str_eq(o[0].cfg->transactional_id, "outbox-relay.a");
        ck_assert_str_eq(o[1].cfg->transactional_id, "outbox-relay.b-2");
        ck_assert_ptr_null(o[0].cfg->http_listen);
        ck_assert_ptr_null(o[1].cfg->http_listen);
        config_outboxes_free(o, n);
}
END_TEST

/* Each refused with one line naming the file, the outbox and the key;
 * never a value that may be a secret. */
static const struct {
        const char *json, *want;
} bad_outboxes[] = {
    {"[{\"name\": \"a\", \"http-listen\": \"127.0.0.1:1\"}]",
     "outbox \"a\": key \"http-listen\": a setting of the whole process"},
    {"[{\"name\": \"a\", \"log-level\": \"debug\"}]", "key \"log-level\": a setting of the whole"},
    {"[{\"name\": \"a\", \"shutdown-timeout-ms\": 5}]", "key \"shutdown-timeout-ms\""},
    {"[{\"name\": \"a\", \"outboxes-file\": \"x\"}]", "key \"outboxes-file\""},
    {"[{\"name\": \"a\", \"no-such\": 1}]", "outbox \"a\": key \"no-such\": unknown setting"},
    {"[{\"name\": \"a\"}, {\"name\": \"a\", \"schema\": \"s2\"}]", "two outboxes are named \"a\""},
    {"[{\"name\": \"\"}]", "outbox 1: key \"name\""},
    {"[{\"name\": \"Upper\"}]", "outbox 1: key \"name\""},
    {"[{\"name\": \"a b\"}]", "outbox 1: key \"name\""},
    {"[{\"schema\": \"x\"}]", "outbox 1: key \"name\""},
    {"[{\"name\": 3}]", "outbox 1: key \"name\""},
    {"[{\"name\": \"a\"}, 7]", "outbox 2: key \"name\""},
    {"[]", "expected a JSON array of 1 to"},
    {"{\"name\": \"a\"}", "expected a JSON array of 1 to"},
    {"[{\"name\": \"a\", \"batch-size\": 0}]", "outbox \"a\": key \"batch-size\""},
    {"[{\"name\": \"a\", \"batch-size\": 1.5}]", "key \"batch-size\": expected a string"},
    {"[{\"name\": \"a\", \"batch-size\": null}]", "key \"batch-size\": expected a string"},
    {"[{\"name\": \"a\", \"schema\": \"\"}]", "key \"schema\": must not be empty"},
    {"[{\"name\": \"a\", \"schema\": \"Bad-Schema\"}]", "outbox \"a\": invalid --schema"},
    {"[{\"name\": \"a\", \"exactly-once\": \"maybe\"}]", "key \"exactly-once\""},
    {"[{\"name\": \"a\", \"route\": []}]", "key \"route\": expected at least one"},
    {"[{\"name\": \"a\", \"route\": [1]}]", "key \"route\": expected a list of strings"},
    {"[{\"name\": \"a\", \"database-url\": \"host=x port=99999 password=s3cret\"}]",
     "outbox \"a\": --database-url"},
    {"[{\"name\": \"a\", \"database-url-file\": \"/nonexistent/url\"}]",
     "key \"database-url-file\": cannot read"},
    {"[{\"name\": \"a\", \"kafka-property\": \"sasl.password\"}]", "key \"kafka-property\""},
    {"[{\"name\": \"a\", \"kafka-property\": \"no.such.property=s3cret\"}]", "outbox \"a\""},
    {"[{\"name\": \"a\", \"database-url\": \"password=s3cret\", }]", "not valid JSON"},
    {"[{\"name\": \"a\", \"name\": \"b\"}]", "not valid JSON or a key given twice"},
    {"[{\"name\": \"a\"}, {\"name\": \"b\"}]", "both serve schema \"outbox\" of one database"},
    {"[{\"name\": \"a\", \"exactly-once\": true, \"transactional-id\": \"t\"},"
     " {\"name\": \"b\", \"schema\": \"s2\", \"exactly-once\": true, \"transactional-id\": \"t\"}]",
     "key \"transactional-id\": both use \"t\""},
    /* The process's own --transactional-id would be shared. */
    {"[{\"name\": \"a\", \"exactly-once\": true, \"transactional-id\": \"outbox-relay.b\"},"
     " {\"name\": \"b\", \"schema\": \"s2\", \"exactly-once\": true}]",
     "both use \"outbox-relay.b\""},
};

START_TEST(test_outboxes_file_refused)
{
        size_t n = 99;
        int rc;
        struct config_outbox *o = load_outboxes(bad_outboxes[_i].json, ARGS(DB, KAFKA), &n, &rc);

        ck_assert_msg(rc == -1, "accepted: %s", bad_outboxes[_i].json);
        ck_assert_ptr_null(o);
        ck_assert_uint_eq(n, 0);
        ck_assert_msg(strstr(errbuf, "outboxes.json") != NULL, "names no file: %s", errbuf);
        ck_assert_msg(strstr(errbuf, bad_outboxes[_i].want) != NULL, "%s: got \"%s\", want \"%s\"",
                      bad_outboxes[_i].json, errbuf, bad_outboxes[_i].want);
        ck_assert_msg(strchr(errbuf, '\n') == NULL, "not one line: %s", errbuf);
        ck_assert_msg(strstr(errbuf, "s3cret") == NULL, "echoes a secret: %s", errbuf);
}
END_TEST

static const char *const documented[] = {
    "--outboxes-file",
    "OUTBOX_OUTBOXES_FILE",
    "--envelope",
    "OUTBOX_ENVELOPE",
    "--cloudevents-source",
    "OUTBOX_CLOUDEVENTS_SOURCE",
    "--dead-letter-topic",
    "OUTBOX_DEAD_LETTER_TOPIC",
    "--allowed-topics",
    "OUTBOX_ALLOWED_TOPICS",
    "--grant-writer",
    "OUTBOX_GRANT_WRITER",
    "--grant-relay",
    "OUTBOX_GRANT_RELAY",
    "--exactly-once",
    "OUTBOX_EXACTLY_ONCE",
    "--transactional-id",
    "OUTBOX_TRANSACTIONAL_ID",
    "--progress-topic",
    "OUTBOX_PROGRESS_TOPIC",
    "--progress-topic-no-create",
    "OUTBOX_PROGRESS_TOPIC_NO_CREATE",
    "--progress-topic-replication-factor",
    "OUTBOX_PROGRESS_TOPIC_REPLICATION_FACTOR",
    "--transaction-timeout-ms",
    "OUTBOX_TRANSACTION_TIMEOUT_MS",
    "--http-listen",
    "OUTBOX_HTTP_LISTEN",
    "--leader-poll-ms",
    "OUTBOX_LEADER_POLL_MS",
    "--retention",
    "OUTBOX_RETENTION",
    "--busy-poll-ms",
    "--busy-poll-min-rate",
    "OUTBOX_BUSY_POLL_MS",
    "OUTBOX_BUSY_POLL_MIN_RATE",
    "--mark-delay-ms",
    "OUTBOX_MARK_DELAY_MS",
    "--idle-after-ms",
    "OUTBOX_IDLE_AFTER_MS",
    "--json",
    "--id",
    "--all",
    "--limit",
    "--database-url",
    "OUTBOX_DATABASE_URL",
    "--database-url-file",
    "OUTBOX_DATABASE_URL_FILE",
    "--kafka-brokers",
    "OUTBOX_KAFKA_BROKERS",
    "--schema",
    "OUTBOX_SCHEMA",
    "--default-topic",
    "OUTBOX_DEFAULT_TOPIC",
    "--route",
    "OUTBOX_ROUTES",
    "-X",
    "--kafka-property",
    "--kafka-property-file",
    "OUTBOX_RDKAFKA_<NAME>_FILE",
    "OUTBOX_RDKAFKA_",
    "--batch-size",
    "OUTBOX_BATCH_SIZE",
    "--pipeline-depth",
    "OUTBOX_PIPELINE_DEPTH",
    "--poll-interval-ms",
    "OUTBOX_POLL_INTERVAL_MS",
    "--retry-base-ms",
    "OUTBOX_RETRY_BASE_MS",
    "--retry-max-ms",
    "OUTBOX_RETRY_MAX_MS",
    "--max-attempts",
    "OUTBOX_MAX_ATTEMPTS",
    "--shutdown-timeout-ms",
    "OUTBOX_SHUTDOWN_TIMEOUT_MS",
    "--reconnect-max-ms",
    "OUTBOX_RECONNECT_MAX_MS",
    "--statement-timeout-ms",
    "OUTBOX_STATEMENT_TIMEOUT_MS",
    "--lock-timeout-ms",
    "OUTBOX_LOCK_TIMEOUT_MS",
    "--memory-budget-bytes",
    "OUTBOX_MEMORY_BUDGET_BYTES",
    "--log-level",
    "OUTBOX_LOG_LEVEL",
    "--instance-id",
    "OUTBOX_INSTANCE_ID",
    "--from-id",
    "--to-id",
    "--since",
    "--until",
    "--topic",
    "--key",
    "--dry-run",
};
#define N_DOCUMENTED (sizeof(documented) / sizeof(documented[0]))

static char *capture(void (*print)(FILE *))
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        ck_assert_ptr_nonnull(f);
        print(f);
        ck_assert_int_eq(fclose(f), 0);
        return buf;
}

/* --exactly-once and its settings: the variable says true or false, the
 * transactional id defaults per schema, and the producer's own
 * transactional.id cannot be set around it. */
START_TEST(test_exactly_once)
{
        struct config *cfg;
        char tid[300];

        cfg = parse_ok(ARGS("--schema", "orders"));
        ck_assert_int_eq(cfg->exactly_once, 0);
        ck_assert_str_eq(cfg->progress_topic, "outbox-relay-progress");
        ck_assert_int_eq(cfg->transaction_timeout_ms, 10000);
        ck_assert_str_eq(kafka_conf_transactional_id(cfg, tid, sizeof(tid)), "outbox-relay.orders");
        config_free(cfg);

        setenv("OUTBOX_EXACTLY_ONCE", "true", 1);
        cfg = parse_ok(ARGS("--transactional-id", "orders-outbox"));
        ck_assert_int_eq(cfg->exactly_once, 1);
        ck_assert_str_eq(kafka_conf_transactional_id(cfg, tid, sizeof(tid)), "orders-outbox");
        config_free(cfg);
        setenv("OUTBOX_EXACTLY_ONCE", "false", 1);
        cfg = parse_ok(ARGS("--batch-size", "5"));
        ck_assert_int_eq(cfg->exactly_once, 0);
        config_free(cfg);
        cfg = parse_ok(ARGS("--exactly-once"));
        ck_assert_int_eq(cfg->exactly_once, 1);
        config_free(cfg);
        setenv("OUTBOX_EXACTLY_ONCE", "yes please", 1);
        parse_fails(ARGS("--batch-size", "5"));
        ck_assert_str_eq(errbuf, "OUTBOX_EXACTLY_ONCE must be true or false, not \"yes please\"");
        unsetenv("OUTBOX_EXACTLY_ONCE");
        parse_fails(ARGS("--exactly-once=1"));
        ck_assert_str_eq(errbuf, "option --exactly-once takes no value");

        ck_assert_int_eq(
            validate_args(ARGS(DB, KAFKA, "--exactly-once", "--progress-topic", "a b")), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "--progress-topic"));
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "-X", "transactional.id=x")), -1);
        ck_assert_str_eq(errbuf, "librdkafka property transactional.id cannot be set: use "
                                 "--transactional-id with --exactly-once instead");
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--exactly-once")), 0);
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
        cfg = parse_ok(ARGS(DB, "--schema", "orders"));
        ck_assert_str_eq(cfg->envelope, "plain");
        ck_assert_int_eq(config_cloudevents(cfg), 0);
        ck_assert_str_eq(config_cloudevents_source(cfg, src, sizeof(src)),
                         "/outbox-relay/app/orders");
        config_free(cfg);
        setenv("OUTBOX_ENVELOPE", "cloudevents", 1);
        cfg =
            parse_ok(ARGS("--database-url", "postgres://u:pw@h:5432/my%20db%2Fx?sslmode=disable"));
        ck_assert_int_eq(config_cloudevents(cfg), 1);
        ck_assert_str_eq(config_cloudevents_source(cfg, src, sizeof(src)),
                         "/outbox-relay/my%20db%2Fx/outbox");
        config_free(cfg);
        unsetenv("OUTBOX_ENVELOPE");
        /* No dbname: libpq takes PGDATABASE, else the user name. */
        cfg = parse_ok(ARGS("--database-url", "host=h user=alice"));
        ck_assert_str_eq(config_cloudevents_source(cfg, src, sizeof(src)),
                         "/outbox-relay/alice/outbox");
        setenv("PGDATABASE", "envdb", 1);
        ck_assert_str_eq(config_cloudevents_source(cfg, src, sizeof(src)),
                         "/outbox-relay/envdb/outbox");
        unsetenv("PGDATABASE");
        config_free(cfg);
        cfg = parse_ok(ARGS(DB, "--cloudevents-source", "https://example.com/orders?x=%C3%A9"));
        ck_assert_str_eq(config_cloudevents_source(cfg, src, sizeof(src)),
                         "https://example.com/orders?x=%C3%A9");
        config_free(cfg);
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--envelope", "cloudevents",
                                            "--cloudevents-source", "urn:event:from:orders")),
                         0);

        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--envelope", "CloudEvents")), -1);
        ck_assert_str_eq(errbuf, "invalid --envelope (OUTBOX_ENVELOPE) \"CloudEvents\": expected "
                                 "plain or cloudevents");
        parse_fails(ARGS("--envelope", ""));
        ck_assert_ptr_nonnull(strstr(errbuf, "--envelope"));
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--cloudevents-source", "/a b")), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "--cloudevents-source"));
        ck_assert_ptr_nonnull(strstr(errbuf, "byte 3 is 0x20"));
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--cloudevents-source", "/a%2")), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "byte 3 is a '%'"));
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--cloudevents-source", "/caf\xc3\xa9")),
                         -1);
        parse_fails(ARGS("--cloudevents-source", ""));
        ck_assert_ptr_nonnull(strstr(errbuf, "--cloudevents-source"));
        setenv("OUTBOX_CLOUDEVENTS_SOURCE", "a\tb", 1);
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA)), -1);
        ck_assert_ptr_nonnull(strstr(errbuf, "OUTBOX_CLOUDEVENTS_SOURCE"));
        unsetenv("OUTBOX_CLOUDEVENTS_SOURCE");
}
END_TEST

static void print_help_all(FILE *f)
{
        config_print_help(f, CONFIG_CMD_ALL);
}

/* The progress topic is created unless told not to, with the brokers'
 * replication factor unless one is given; 0 is no replication factor. */
START_TEST(test_progress_topic_creation)
{
        struct config *cfg = parse_ok(ARGS("--exactly-once"));

        ck_assert_int_eq(cfg->progress_no_create, 0);
        ck_assert_int_eq(cfg->progress_replication, -1);
        config_free(cfg);
        cfg = parse_ok(
            ARGS("--progress-topic-no-create", "--progress-topic-replication-factor", "3"));
        ck_assert_int_eq(cfg->progress_no_create, 1);
        ck_assert_int_eq(cfg->progress_replication, 3);
        config_free(cfg);
        setenv("OUTBOX_PROGRESS_TOPIC_NO_CREATE", "true", 1);
        setenv("OUTBOX_PROGRESS_TOPIC_REPLICATION_FACTOR", "2", 1);
        cfg = parse_ok(ARGS("--exactly-once"));
        ck_assert_int_eq(cfg->progress_no_create, 1);
        ck_assert_int_eq(cfg->progress_replication, 2);
        config_free(cfg);
        unsetenv("OUTBOX_PROGRESS_TOPIC_NO_CREATE");
        unsetenv("OUTBOX_PROGRESS_TOPIC_REPLICATION_FACTOR");
        ck_assert_int_eq(validate_args(ARGS(DB, KAFKA, "--progress-topic-replication-factor", "0")),
                         -1);
        ck_assert_str_eq(errbuf, "--progress-topic-replication-factor is 0: expected -1 (the "
                                 "brokers' default) or 1 to 32767");
        parse_fails(ARGS("--progress-topic-replication-factor", "-2"));
        ck_assert_str_eq(errbuf, "invalid value \"-2\" for --progress-topic-replication-factor: "
                                 "expected an integer from -1 to 32767");
}
END_TEST

START_TEST(test_help)
{
        char *help = capture(print_help_all);
        const char *line;

        for (size_t i = 0; i < N_DOCUMENTED; i++)
                ck_assert_msg(strstr(help, documented[i]) != NULL, "--help lacks %s",
                              documented[i]);
        for (line = help; *line != '\0'; line = strchr(line, '\n') + 1)
                ck_assert_msg(strcspn(line, "\n") <= 80, "help line too long: %.90s", line);
        /* Ranges and defaults come from the table (wrapping aside). */
        for (char *r = help, *w = help;; r++) {
                if (*r == '\n' || *r == ' ') {
                        if (w == help || w[-1] != ' ')
                                *w++ = ' ';
                } else {
                        *w++ = *r;
                }
                if (*r == '\0')
                        break;
        }
        ck_assert_ptr_nonnull(strstr(help, "--batch-size N OUTBOX_BATCH_SIZE Rows fetched from the "
                                           "outbox per batch; at most 8000 with --exactly-once (a "
                                           "transaction's progress record names each row and "
                                           "must fit one Kafka message). Range 1 to 100000. "
                                           "Default: 1000."));
        ck_assert_ptr_nonnull(strstr(help, "Range 0 to 3600000. Default: 10000."));
        free(help);
}
END_TEST

START_TEST(test_markdown)
{
        char *md = capture(config_print_markdown);
        size_t rows = 0, flags = 0;

        ck_assert_ptr_eq(
            strstr(md, "| Flag | Environment | Default | Description | Per outbox |\n|"), md);
        for (const char *line = md; *line != '\0'; line = strchr(line, '\n') + 1) {
                if (strncmp(line, "| `-", 4) == 0)
                        rows++;
                ck_assert_msg(line[0] == '|', "not a table row: %.60s", line);
        }
        for (size_t i = 0; i < N_DOCUMENTED; i++) {
                if (documented[i][0] != '-' || strcmp(documented[i], "-X") == 0)
                        continue;
                flags++;
                ck_assert_msg(strstr(md, documented[i]) != NULL, "README table lacks %s",
                              documented[i]);
        }
        ck_assert_uint_eq(rows, flags);
        ck_assert_ptr_nonnull(strstr(md, "| `--batch-size N` | `OUTBOX_BATCH_SIZE` | `1000` |"));
        /* The column that says what --outboxes-file may set. */
        ck_assert_ptr_nonnull(strstr(md, "Used by run. | yes |\n| `--pipeline-depth"));
        ck_assert_ptr_nonnull(strstr(md, "Used by run. |  |\n| `--busy-poll-ms"));
        free(md);
}
END_TEST

Suite *test_suite(void)
{
        Suite *s = suite_create("config");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_defaults);
        tcase_add_test(tc, test_missing_required);
        tcase_add_test(tc, test_env_then_flags);
        tcase_add_test(tc, test_env_error_names_variable);
        tcase_add_loop_test(tc, test_int_bounds, 0,
                            (int)(sizeof(int_settings) / sizeof(int_settings[0])));
        tcase_add_test(tc, test_retry_max_below_base);
        tcase_add_test(tc, test_exactly_once_batch_size);
        tcase_add_test(tc, test_memory_budget);
        tcase_add_test(tc, test_log_level);
        tcase_add_test(tc, test_routes);
        tcase_add_test(tc, test_routes_env_and_flags);
        tcase_add_test(tc, test_kafka_properties);
        tcase_add_test(tc, test_rdkafka_env_mapping);
        tcase_add_test(tc, test_rdkafka_validation);
        tcase_add_test(tc, test_rdkafka_secret_not_echoed);
        tcase_add_test(tc, test_database_url_file);
        tcase_add_test(tc, test_database_url_file_errors);
        tcase_add_test(tc, test_rdkafka_file);
        tcase_add_test(tc, test_no_rdkafka_property_ends_in_file);
        tcase_add_loop_test(tc, test_bad_url_not_echoed, 0,
                            (int)(sizeof(bad_urls) / sizeof(bad_urls[0])));
        tcase_add_test(tc, test_good_urls);
        tcase_add_test(tc, test_schema_and_topics);
        tcase_add_test(tc, test_http_listen);
        tcase_add_test(tc, test_flag_errors);
        tcase_add_test(tc, test_positional_and_replay);
        tcase_add_test(tc, test_getopt_forms);
        tcase_add_test(tc, test_wants_help);
        tcase_add_test(tc, test_exactly_once);
        tcase_add_test(tc, test_progress_topic_creation);
        tcase_add_test(tc, test_envelope);
        tcase_add_test(tc, test_help);
        tcase_add_test(tc, test_markdown);
        tcase_add_test(tc, test_grant_roles);
        tcase_add_test(tc, test_outboxes_file);
        tcase_add_loop_test(tc, test_outboxes_file_refused, 0,
                            (int)(sizeof(bad_outboxes) / sizeof(bad_outboxes[0])));
        suite_add_tcase(s, tc);
        return s;
}
