/* Unit tests of config's database settings and files: the database URL
 * checked offline (never echoed), --database-url-file, and --outboxes-file
 * with every refusal of it. */
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
        ck_assert_int_eq(ct_validate_args(ARGS("--database-url", (char *)bad_urls[_i], KAFKA)), -1);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "--database-url"));
        ck_assert_ptr_null(strstr(ct_errbuf, "s3cret"));
        ck_assert_ptr_null(strstr(ct_errbuf, "host"));
}
END_TEST

START_TEST(test_good_urls)
{
        ck_assert_int_eq(
            ct_validate_args(ARGS("--database-url", "postgres://u:pw@db:5432/app", KAFKA)), 0);
        ck_assert_int_eq(
            ct_validate_args(
                ARGS("--database-url", "postgresql://u:pw@h1:5432,h2/app?sslmode=require", KAFKA)),
            0);
        ck_assert_int_eq(
            ct_validate_args(ARGS("--database-url", "host=/tmp port=5433 dbname=x", KAFKA)), 0);
}
END_TEST

START_TEST(test_database_url_file)
{
        char *url = WRITE("url", "host=h password=s3cret\r\n");
        char *two = WRITE("two", "host=h2\n\n");
        char *bare = WRITE("bare", "host=h3");
        struct config *cfg;

        /* One trailing newline (\n or \r\n) is stripped, no more. */
        setenv("OUTBOX_DATABASE_URL_FILE", url, 1);
        cfg = ct_parse_ok(ARGS("--batch-size", "1"));
        ck_assert_str_eq(cfg->database_url, "host=h password=s3cret");
        ck_assert_str_eq(cfg->database_url_file, url);
        config_free(cfg);
        cfg = ct_parse_ok(ARGS("--database-url-file", two));
        ck_assert_str_eq(cfg->database_url, "host=h2\n");
        config_free(cfg);
        cfg = ct_parse_ok(ARGS("--database-url-file="
                               "/dev/null",
                               "--database-url-file", bare));
        ck_assert_str_eq(cfg->database_url, "host=h3"); /* the last flag wins */
        config_free(cfg);

        /* A flag of either form overrides the environment's; the file
         * the environment names is then not even read. */
        cfg = ct_parse_ok(ARGS("--database-url", "host=flag"));
        ck_assert_str_eq(cfg->database_url, "host=flag");
        ck_assert_ptr_null(cfg->database_url_file);
        config_free(cfg);
        setenv("OUTBOX_DATABASE_URL_FILE", "/nonexistent/url", 1);
        cfg = ct_parse_ok(ARGS("--database-url", "host=flag"));
        ck_assert_str_eq(cfg->database_url, "host=flag");
        config_free(cfg);
        unsetenv("OUTBOX_DATABASE_URL_FILE");
        setenv("OUTBOX_DATABASE_URL", "host=env password=s3cret", 1);
        cfg = ct_parse_ok(ARGS("--database-url-file", bare));
        ck_assert_str_eq(cfg->database_url, "host=h3");
        config_free(cfg);

        /* Both forms from one source. */
        setenv("OUTBOX_DATABASE_URL_FILE", url, 1);
        ct_parse_fails(ARGS("--batch-size", "1"));
        ck_assert_str_eq(ct_errbuf,
                         "OUTBOX_DATABASE_URL and OUTBOX_DATABASE_URL_FILE are both set: set one");
        unsetenv("OUTBOX_DATABASE_URL");
        unsetenv("OUTBOX_DATABASE_URL_FILE");
        ct_parse_fails(
            ARGS("--database-url", "host=h password=s3cret", "--database-url-file", url));
        ck_assert_str_eq(ct_errbuf,
                         "--database-url and --database-url-file are both given: give one");
}
END_TEST

START_TEST(test_database_url_file_errors)
{
        char big[64 * 1024 + 1];
        char *missing, *empty, *newline, *nul, *huge, *limit, *bad;

        missing = (char *)"/nonexistent/outbox/url";
        setenv("OUTBOX_DATABASE_URL_FILE", missing, 1);
        ct_parse_fails(ARGS("--batch-size", "1"));
        ct_assert_names("OUTBOX_DATABASE_URL_FILE", missing);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "No such file"));
        unsetenv("OUTBOX_DATABASE_URL_FILE");

        empty = WRITE("empty", "");
        ct_parse_fails(ARGS("--database-url-file", empty));
        ct_assert_names("--database-url-file", empty);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "is empty"));
        newline = WRITE("newline", "\r\n");
        ct_parse_fails(ARGS("--database-url-file", newline));
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "is empty"));
        nul = ct_write_file("nul", "host=h\0password=s3cret", 22);
        ct_parse_fails(ARGS("--database-url-file", nul));
        ct_assert_names("--database-url-file", nul);
        ct_parse_fails(ARGS("--database-url-file", ct_tmpdir)); /* a directory */
        ct_assert_names("--database-url-file", ct_tmpdir);

        /* 64 KiB is the limit: at it, the file is read; one byte more is refused. */
        memset(big, ' ', sizeof(big));
        memcpy(big, "host=h password=s3cret", 22);
        limit = ct_write_file("limit", big, sizeof(big) - 1);
        config_free(ct_parse_ok(ARGS("--database-url-file", limit)));
        huge = ct_write_file("huge", big, sizeof(big));
        ct_parse_fails(ARGS("--database-url-file", huge));
        ct_assert_names("--database-url-file", huge);
        ck_assert_ptr_nonnull(strstr(ct_errbuf, "64 KiB"));

        /* A URL libpq cannot parse: the file is named, its content is not. */
        bad = WRITE("bad", "host=h password=s3cret port=x\n");
        ck_assert_int_eq(ct_validate_args(ARGS("--database-url-file", bad, KAFKA)), -1);
        ct_assert_names("database URL", bad);
}
END_TEST

static struct config_outbox *load_outboxes(const char *json, char **argv, size_t *n, int *rc)
{
        char *path = ct_write_file("outboxes.json", json, strlen(json));
        struct config *cfg = ct_parse_ok(argv);
        struct config_outbox *o = NULL;

        ck_assert_int_eq(config_validate(cfg, 0, ct_errbuf, sizeof(ct_errbuf)), 0);
        cfg->outboxes_file = strdup(path);
        ct_errbuf[0] = '\0';
        *rc = config_outboxes_load(cfg, ct_argc_of(argv), argv, CONFIG_NEED_DB | CONFIG_NEED_KAFKA,
                                   &o, n, ct_errbuf, sizeof(ct_errbuf));
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
        ck_assert_msg(rc == 0, "%s", ct_errbuf);
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
    /* One database written differently (the process's URL is "host=localhost
     * dbname=app"): the loopback's names, a URL with its parameters in
     * another order, libpq's default port written out. */
    {"[{\"name\": \"a\", \"database-url\": \"host=127.0.0.1 port=5432 dbname=app\"},"
     " {\"name\": \"b\"}]",
     "outboxes \"a\" and \"b\": key \"schema\": both serve schema \"outbox\" of one database"},
    {"[{\"name\": \"a\"}, {\"name\": \"b\", \"database-url\":"
     " \"postgresql:///app?port=5432&host=%3A%3A1&sslmode=disable\"}]",
     "both serve schema \"outbox\" of one database"},
    {"[{\"name\": \"a\", \"schema\": \"s\", \"database-url\": "
     "\"postgresql://u:s3cret@localhost/app\"},"
     " {\"name\": \"b\", \"schema\": \"s\", \"database-url\":"
     " \"dbname=app user=v password=s3cret hostaddr=127.0.0.1 host=db.example\"}]",
     "both serve schema \"s\" of one database"},
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
        ck_assert_msg(strstr(ct_errbuf, "outboxes.json") != NULL, "names no file: %s", ct_errbuf);
        ck_assert_msg(strstr(ct_errbuf, bad_outboxes[_i].want) != NULL,
                      "%s: got \"%s\", want \"%s\"", bad_outboxes[_i].json, ct_errbuf,
                      bad_outboxes[_i].want);
        ck_assert_msg(strchr(ct_errbuf, '\n') == NULL, "not one line: %s", ct_errbuf);
        ck_assert_msg(strstr(ct_errbuf, "s3cret") == NULL, "echoes a secret: %s", ct_errbuf);
}
END_TEST

/* Outboxes of one schema name in databases that differ (port, database,
 * server, service) are accepted. */
START_TEST(test_outboxes_other_databases)
{
        static const char *const ok[] = {
            "[{\"name\": \"a\", \"database-url\": \"host=localhost port=5433 dbname=app\"},"
            " {\"name\": \"b\"}]",
            "[{\"name\": \"a\", \"database-url\": \"postgresql://127.0.0.1/other\"},"
            " {\"name\": \"b\"}]",
            "[{\"name\": \"a\", \"database-url\": \"host=db1 dbname=app\"}, {\"name\": \"b\"}]",
            "[{\"name\": \"a\", \"database-url\": \"service=one\"},"
            " {\"name\": \"b\", \"database-url\": \"service=two\"}]",
        };

        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                size_t n = 0;
                int rc;
                struct config_outbox *o = load_outboxes(ok[i], ARGS(DB, KAFKA), &n, &rc);

                ck_assert_msg(rc == 0, "%s refused: %s", ok[i], ct_errbuf);
                ck_assert_uint_eq(n, 2);
                config_outboxes_free(o, n);
        }
}
END_TEST

Suite *test_suite(void)
{
        Suite *s = suite_create("config_files");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_database_url_file);
        tcase_add_test(tc, test_database_url_file_errors);
        tcase_add_loop_test(tc, test_bad_url_not_echoed, 0,
                            (int)(sizeof(bad_urls) / sizeof(bad_urls[0])));
        tcase_add_test(tc, test_good_urls);
        tcase_add_test(tc, test_outboxes_file);
        tcase_add_loop_test(tc, test_outboxes_file_refused, 0,
                            (int)(sizeof(bad_outboxes) / sizeof(bad_outboxes[0])));
        tcase_add_test(tc, test_outboxes_other_databases);
        suite_add_tcase(s, tc);
        return s;
}
