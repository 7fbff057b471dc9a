/* Unit tests of config: defaults, environment and flag precedence, every
 * integer bound, the command line's forms, --help and the README's table
 * (every setting documented). The Kafka-side settings are in
 * test_config_kafka.c, the database URL and the files in test_config_files.c. */
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
        ck_assert_int_eq(config_validate(cfg, 0, ct_errbuf, sizeof(ct_errbuf)), 0);
        config_free(cfg);
        config_free(NULL);
}
END_TEST

START_TEST(test_missing_required)
{
        struct config *cfg = ct_parse_ok(ARGS("--kafka-brokers", "b:9092"));

        ck_assert_int_eq(config_validate(cfg, CONFIG_NEED_DB, ct_errbuf, sizeof(ct_errbuf)), -1);
        ck_assert_str_eq(ct_errbuf,
                         "missing required setting --database-url (OUTBOX_DATABASE_URL) or "
                         "--database-url-file (OUTBOX_DATABASE_URL_FILE)");
        /* Kafka is not needed by migrate: its absence is no error then. */
        config_free(cfg);
        cfg = ct_parse_ok(ARGS(DB));
        ck_assert_int_eq(config_validate(cfg, CONFIG_NEED_DB, ct_errbuf, sizeof(ct_errbuf)), 0);
        ck_assert_int_eq(config_validate(cfg, CONFIG_NEED_KAFKA, ct_errbuf, sizeof(ct_errbuf)), -1);
        ck_assert_str_eq(ct_errbuf,
                         "missing required setting --kafka-brokers (OUTBOX_KAFKA_BROKERS)");
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
        cfg = ct_parse_ok(ARGS("--dry-run"));
        ck_assert_int_eq(cfg->batch_size, 50);
        ck_assert_str_eq(cfg->schema, "from_env");
        ck_assert_str_eq(cfg->database_url, "host=envhost");
        ck_assert_int_eq(cfg->log_level, LOG_LEVEL_DEBUG);
        ck_assert_int_eq(cfg->pipeline_depth, 4);
        config_free(cfg);

        cfg = ct_parse_ok(ARGS("--batch-size", "60", "--schema=from_flag", "--log-level=ERROR"));
        ck_assert_int_eq(cfg->batch_size, 60);
        ck_assert_str_eq(cfg->schema, "from_flag");
        ck_assert_str_eq(cfg->database_url, "host=envhost");
        ck_assert_int_eq(cfg->log_level, LOG_LEVEL_ERROR);
        config_free(cfg);

        /* The last flag wins. */
        cfg = ct_parse_ok(ARGS("--batch-size=70", "--batch-size", "80"));
        ck_assert_int_eq(cfg->batch_size, 80);
        config_free(cfg);
}
END_TEST

START_TEST(test_env_error_names_variable)
{
        setenv("OUTBOX_MAX_ATTEMPTS", "lots", 1);
        ct_parse_fails(ARGS("--batch-size", "5"));
        ck_assert_str_eq(ct_errbuf, "invalid value \"lots\" for OUTBOX_MAX_ATTEMPTS: expected an "
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
        ct_parse_fails(ARGS(flag, (char *)value));
        snprintf(want, sizeof(want),
                 "invalid value \"%s\" for %s: expected an integer from %lld to %lld", value, flag,
                 is->min, is->max);
        ck_assert_str_eq(ct_errbuf, want);
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

        cfg = ct_parse_ok(ARGS(flag, lo));
        ck_assert_int_eq(*(int *)((char *)cfg + is->offset), is->min);
        config_free(cfg);
        cfg = ct_parse_ok(ARGS(flag, hi));
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
        ct_parse_fails(ARGS(flag, ""));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, flag));
        ct_parse_fails(ARGS(flag));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, flag));
}
END_TEST

START_TEST(test_retry_max_below_base)
{
        ck_assert_int_eq(
            ct_validate_args(ARGS(DB, KAFKA, "--retry-base-ms", "5000", "--retry-max-ms", "4999")),
            -1);
        ck_assert_str_eq(ct_errbuf,
                         "--retry-max-ms (4999) must be at least --retry-base-ms (5000)");
        ck_assert_int_eq(
            ct_validate_args(ARGS(DB, KAFKA, "--retry-base-ms", "5000", "--retry-max-ms", "5000")),
            0);
}
END_TEST

/* With --exactly-once a batch is one progress record's worth of rows at
 * most: larger, the record would pass Kafka's message limit forever. */
START_TEST(test_exactly_once_batch_size)
{
        ck_assert_int_eq(
            ct_validate_args(ARGS(DB, KAFKA, "--exactly-once", "--batch-size", "8001")), -1);
        ck_assert_str_eq(ct_errbuf,
                         "--batch-size 8001 is too large for --exactly-once: at most 8000 "
                         "rows, so that a transaction's progress record fits one Kafka "
                         "message");
        ck_assert_int_eq(
            ct_validate_args(ARGS(DB, KAFKA, "--exactly-once", "--batch-size", "8000")), 0);
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--batch-size", "100000")), 0);
}
END_TEST

/* The memory budget is a byte count past int's range: 1 MiB to 1 TiB,
 * from the flag or the variable, one clear line when wrong. */
START_TEST(test_memory_budget)
{
        struct config *cfg = ct_parse_ok(ARGS("--memory-budget-bytes", "1099511627776"));

        ck_assert(cfg->memory_budget == 1099511627776LL);
        config_free(cfg);
        setenv("OUTBOX_MEMORY_BUDGET_BYTES", "1048576", 1);
        cfg = ct_parse_ok(ARGS("--batch-size", "5"));
        ck_assert(cfg->memory_budget == 1048576);
        config_free(cfg);
        setenv("OUTBOX_MEMORY_BUDGET_BYTES", "64MiB", 1);
        ct_parse_fails(ARGS("--batch-size", "5"));
        ck_assert_str_eq(ct_errbuf,
                         "invalid value \"64MiB\" for OUTBOX_MEMORY_BUDGET_BYTES: expected "
                         "an integer from 1048576 to 1099511627776");
        unsetenv("OUTBOX_MEMORY_BUDGET_BYTES");
        ct_parse_fails(ARGS("--memory-budget-bytes", "1048575"));
        ck_assert_str_eq(ct_errbuf,
                         "invalid value \"1048575\" for --memory-budget-bytes: expected an "
                         "integer from 1048576 to 1099511627776");
        ct_parse_fails(ARGS("--memory-budget-bytes", "1099511627777"));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "--memory-budget-bytes"));
}
END_TEST

START_TEST(test_log_level)
{
        static const char *const names[] = {"debug", "info", "warn", "error"};
        struct config *cfg;

        for (int i = 0; i < 4; i++) {
                cfg = ct_parse_ok(ARGS("--log-level", (char *)names[i]));
                ck_assert_int_eq(cfg->log_level, i);
                config_free(cfg);
        }
        ct_parse_fails(ARGS("--log-level", "verbose"));
        ck_assert_str_eq(ct_errbuf,
                         "invalid value \"verbose\" for --log-level: expected debug, info, "
                         "warn or error");
}
END_TEST

START_TEST(test_schema_and_topics)
{
        char name[65];

        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--schema", "_relay_2")), 0);
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--schema", "Outbox")), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "--schema"));
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--schema", "2outbox")), -1);
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--schema", "out-box")), -1);
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--schema", "a\"; drop table x; --")),
                         -1);
        /* At most 56 characters: the channel "<schema>.events" must fit
         * PostgreSQL's 63-byte identifier limit. */
        memset(name, 'a', 57);
        name[57] = '\0';
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--schema", name)), -1);
        name[56] = '\0';
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--schema", name)), 0);

        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--default-topic", "orders.v1_x-y")), 0);
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--default-topic", "..")), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "--default-topic"));
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--default-topic", "a/b")), -1);
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--topic", "a b")), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "--topic"));
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
                ck_assert_msg(ct_validate_args(ARGS(DB, KAFKA, "--http-listen", (char *)good[i])) ==
                                  0,
                              "%s: %s", good[i], ct_errbuf);
                ck_assert_int_eq(
                    config_listen_addr(good[i], &addr, &len, ct_errbuf, sizeof(ct_errbuf)), 0);
                ck_assert_int_eq(addr.ss_family, good[i][0] == '[' ? AF_INET6 : AF_INET);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                ck_assert_msg(ct_validate_args(ARGS(DB, KAFKA, "--http-listen", (char *)bad[i])) ==
                                  -1,
                              "%s accepted", bad[i]);
                ck_assert_msg(strstr(ct_errbuf, "invalid --http-listen") != NULL &&
                                  strchr(ct_errbuf, '\n') == NULL,
                              "%s: %s", bad[i], ct_errbuf);
        }
}
END_TEST

START_TEST(test_flag_errors)
{
        ct_parse_fails(ARGS("--foo"));
        ck_assert_str_eq(ct_errbuf, "unknown option --foo (see --help)");
        ct_parse_fails(ARGS("--foo=bar"));
        ck_assert_str_eq(ct_errbuf, "unknown option --foo (see --help)");
        ct_parse_fails(ARGS("-q"));
        ck_assert_str_eq(ct_errbuf, "unknown option -q (see --help)");
        ct_parse_fails(ARGS("--schema"));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "--schema"));
        /* A following flag is not taken as the missing value. */
        ct_parse_fails(ARGS("--database-url", "--kafka-brokers", "b:1"));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "--database-url"));
        ct_parse_fails(ARGS("--dry-run=yes"));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "--dry-run"));
}
END_TEST

/* getopt_long's forms: a value attached or separate, -X attached or
 * separate, exact names only, options after arguments whatever
 * POSIXLY_CORRECT says, and a fresh start on every call (getopt keeps its
 * state in globals, and a failed parse leaves it mid-argv). */
START_TEST(test_getopt_forms)
{
        struct config *cfg;

        cfg = ct_parse_ok(ARGS("--batch-size=5", "--pipeline-depth", "7", "-Xlinger.ms=5", "-X",
                               "acks=all", "--kafka-property=batch.size=9"));
        ck_assert(cfg->batch_size == 5 && cfg->pipeline_depth == 7);
        ck_assert_uint_eq(cfg->n_kafka_props, 3);
        ck_assert_str_eq(cfg->kafka_props[0].name, "linger.ms");
        ck_assert_str_eq(cfg->kafka_props[2].value, "9");
        config_free(cfg);
        /* A prefix that getopt_long would take is refused, named as typed. */
        ct_parse_fails(ARGS("--batch", "5"));
        ck_assert_str_eq(ct_errbuf, "unknown option --batch (see --help)");
        ct_parse_fails(ARGS("--max", "300000"));
        ck_assert_str_eq(ct_errbuf, "unknown option --max (see --help)");
        ct_parse_fails(ARGS("--dry"));
        ck_assert_str_eq(ct_errbuf, "unknown option --dry (see --help)");
        ct_parse_fails(ARGS("--database-url-fil=/x"));
        ck_assert_str_eq(ct_errbuf, "unknown option --database-url-fil (see --help)");
        /* Left mid-cluster by the failure above, then a fresh parse. */
        ct_parse_fails(ARGS("-qX", "a=b"));
        ck_assert_str_eq(ct_errbuf, "unknown option -q (see --help)");
        cfg = ct_parse_ok(ARGS("list", "--json", "--", "-X", "--limit"));
        ck_assert_int_eq(cfg->json, 1);
        ck_assert_int_eq(cfg->n_args, 3);
        ck_assert_str_eq(cfg->args[1], "-X");
        ck_assert_str_eq(cfg->args[2], "--limit");
        config_free(cfg);
        setenv("POSIXLY_CORRECT", "1", 1);
        cfg = ct_parse_ok(ARGS("requeue", "--id", "4", "extra", "--all"));
        ck_assert(cfg->id == 4 && cfg->all == 1 && cfg->n_args == 2);
        ck_assert_str_eq(cfg->args[1], "extra");
        config_free(cfg);
        unsetenv("POSIXLY_CORRECT");
        /* A value may start with one '-', not two. */
        cfg = ct_parse_ok(ARGS("--key", "-h", "--topic", "-"));
        ck_assert_str_eq(cfg->replay_key, "-h");
        ck_assert_str_eq(cfg->replay_topic, "-");
        config_free(cfg);
        ct_parse_fails(ARGS("-X", "--json"));
        ck_assert_str_eq(ct_errbuf, "option -X needs a value (-X NAME=VALUE)");
        ct_parse_fails(ARGS("--help=yes"));
        ck_assert_str_eq(ct_errbuf, "option --help takes no value");
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
        config_free(ct_parse_ok(ARGS("--help", "-h")));
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
        struct config *cfg = ct_parse_ok(argv);

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
        ck_assert_int_eq(config_validate(cfg, CONFIG_NEED_DB, ct_errbuf, sizeof(ct_errbuf)), -1);
        config_free(cfg);

        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--from-id", "9223372036854775807")), 0);
        ct_parse_fails(ARGS("--from-id", "0"));
        ck_assert_str_eq(ct_errbuf, "invalid value \"0\" for --from-id: expected an integer >= 1");
        ct_parse_fails(ARGS("--to-id", "9223372036854775808"));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "--to-id"));
        ct_parse_fails(ARGS("--since", ""));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "--since"));
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--from-id", "5", "--to-id", "4")), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "--from-id"));
}
END_TEST

START_TEST(test_grant_roles)
{
        char long_role[80];
        struct config *cfg =
            ct_parse_ok(ARGS("--grant-writer", "svc \"orders\"", "--grant-relay", "relay"));

        /* Any name is taken as is: migrate quotes it. */
        ck_assert_str_eq(cfg->grant_writer, "svc \"orders\"");
        ck_assert_str_eq(cfg->grant_relay, "relay");
        config_free(cfg);
        ck_assert_int_eq(
            ct_validate_args(ARGS(DB, KAFKA, "--grant-relay", "r", "--grant-writer", "w")), 0);
        memset(long_role, 'r', 64);
        long_role[64] = '\0';
        ck_assert_int_eq(ct_validate_args(ARGS(DB, KAFKA, "--grant-relay", long_role)), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "--grant-relay"));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "63 bytes"));
        ct_parse_fails(ARGS("--grant-writer", ""));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "--grant-writer"));
}
END_TEST

/* Every setting of the brief, flag and environment variable. */

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

static void print_help_all(FILE *f)
{
        config_print_help(f, CONFIG_CMD_ALL);
}

/* The progress topic is created unless told not to, with the brokers'
 * replication factor unless one is given; 0 is no replication factor. */

START_TEST(test_help)
{
        char *help = ct_capture(print_help_all);
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
        char *md = ct_capture(config_print_markdown);
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
        tcase_add_test(tc, test_schema_and_topics);
        tcase_add_test(tc, test_http_listen);
        tcase_add_test(tc, test_flag_errors);
        tcase_add_test(tc, test_positional_and_replay);
        tcase_add_test(tc, test_getopt_forms);
        tcase_add_test(tc, test_wants_help);
        tcase_add_test(tc, test_help);
        tcase_add_test(tc, test_markdown);
        tcase_add_test(tc, test_grant_roles);
        suite_add_tcase(s, tc);
        return s;
}
