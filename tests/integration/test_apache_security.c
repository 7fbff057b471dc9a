/* The relay against Apache Kafka over SASL_SSL (SCRAM-SHA-512, TLS with a CA
 * made with openssl at test time) and with ACLs (StandardAuthorizer): it
 * publishes through -X settings alone, the password from a file; a wrong
 * password or a wrong CA is one log line without the secret, /readyz not
 * ready, rows waiting without spending attempts; a topic the relay's user
 * may not write dead-letters its rows while other topics flow, and so does
 * a --dead-letter-topic it may not write, without a loop. Each case adds a
 * line to the fault report. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "fault_harness.h"
#include "fixture.h"
#include "runner.h"

#define RELAY_USER     "relay"
#define RELAY_PASSWORD "Relay-pw-7f3c9e"
#define WRONG_PASSWORD "Wrong-pw-2b8d41"
#define ADMIN_PASSWORD "Admin-pw-5a1e60"

static struct fx_pg *pg;
static struct fx_apache *ak;
static char tmpdir[64];
static char ca_file[128], admin_config[128], other_ca_dir[128];

static void suite_setup(void)
{
        char *keystore = NULL, *props[8];
        const char *const format_args[] = {
            "--add-scram", "SCRAM-SHA-512=[name=" RELAY_USER ",password=" RELAY_PASSWORD "]",
            "--add-scram", "SCRAM-SHA-512=[name=admin,password=" ADMIN_PASSWORD "]", NULL};
        struct fx_apache_opts o = {
            .nodes = 1, .listeners = {{"SASL_SSL", "SASL_SSL"}}, .format_args = format_args};
        int n = 0;

        fx_tmpdir_new(tmpdir, sizeof(tmpdir), "test-ak-sec");
        fx_apache_make_tls(tmpdir);
        snprintf(ca_file, sizeof(ca_file), "%s/ca.crt", tmpdir);
        /* A CA that signed nothing the broker shows. */
        snprintf(other_ca_dir, sizeof(other_ca_dir), "%s/other", tmpdir);
        ck_assert_int_eq(mkdir(other_ca_dir, 0700), 0);
        fx_make_ca(other_ca_dir, "ca");
        ck_assert_int_gt(asprintf(&keystore, "ssl.keystore.location=%s/broker.pem", tmpdir), 0);
        props[n++] = "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512";
        props[n++] = "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
                     "org.apache.kafka.common.security.scram.ScramLoginModule required;";
        props[n++] =
            "listener.name.sasl_ssl.plain.sasl.jaas.config="
            "org.apache.kafka.common.security.plain.PlainLoginModule required"
            " user_" RELAY_USER "=\"" RELAY_PASSWORD "\" user_admin=\"" ADMIN_PASSWORD "\";";
        props[n++] = "ssl.keystore.type=PEM";
        props[n++] = keystore;
        props[n++] =
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer";
        /* The brokers among themselves and the fixture's admin client use
         * PLAINTEXT on 127.0.0.1, whose principal is ANONYMOUS. */
        props[n++] = "super.users=User:ANONYMOUS;User:admin";
        props[n] = NULL;
        o.properties = (const char *const *)props;
        pg = fx_pg_start();
        ak = fx_apache_start_opts(&o);
        fh_use_apache(ak);
        snprintf(admin_config, sizeof(admin_config), "%s/admin.properties", tmpdir);
        {
                char text[1024];

                snprintf(text, sizeof(text),
                         "security.protocol=SASL_SSL\n"
                         "sasl.mechanism=SCRAM-SHA-512\n"
                         "sasl.jaas.config=org.apache.kafka.common.security.scram."
                         "ScramLoginModule required username=\"admin\" password=\"%s\";\n"
                         "ssl.truststore.type=PEM\n"
                         "ssl.truststore.location=%s\n",
                         ADMIN_PASSWORD, ca_file);
                free(fx_write_secret(tmpdir, "admin.properties", text));
        }
        /* The relay's user may write and describe topics named sasl-*,
         * except sasl-denied; nothing else. */
        fx_apache_add_acl(ak, "User:" RELAY_USER, "sasl-", 1, "WRITE", 1);
        fx_apache_add_acl(ak, "User:" RELAY_USER, "sasl-", 1, "DESCRIBE", 1);
        fx_apache_add_acl(ak, "User:" RELAY_USER, "sasl-denied", 0, "WRITE", 0);
        /* The dead-letter topic of dead_letter_topic_refused_by_acl. */
        fx_apache_add_acl(ak, "User:" RELAY_USER, "sasl-dlq-denied", 0, "WRITE", 0);
        free(keystore);
}

static void suite_teardown(void)
{
        fh_use_apache(NULL);
        fx_apache_stop(ak);
        fx_pg_stop(pg);
        fx_tmpdir_remove(tmpdir);
}

#define PLAIN  fx_apache_bootstraps(ak)
#define SECURE fx_apache_listener_bootstraps(ak, "SASL_SSL")

static char *fresh_db(const char *name)
{
        char *conninfo = fx_pg_create_db(pg, name);

        fx_migrate(conninfo, NULL);
        return conninfo;
}

/* The relay over SASL_SSL through -X settings alone, its password read
 * from a file (OUTBOX_RDKAFKA_SASL_PASSWORD_FILE), trusting `ca`; extra
 * arguments after (up to 16). */
static struct fx_relay *start_relay(const char *ci, const char *mechanism, const char *password,
                                    const char *ca, const char *const extra[])
{
        char ca_arg[200], mech_arg[64], *pwfile = fx_write_secret(tmpdir, "password", password);
        char *env_var = NULL;
        const char *args[40] = {"-X", "security.protocol=SASL_SSL", "-X", mech_arg,
                                "-X", "sasl.username=" RELAY_USER,  "-X", ca_arg};
        const char *env[2];
        struct fx_relay *r;
        int n = 8;

        snprintf(ca_arg, sizeof(ca_arg), "ssl.ca.location=%s", ca);
        snprintf(mech_arg, sizeof(mech_arg), "sasl.mechanisms=%s", mechanism);
        for (size_t i = 0; extra && extra[i]; i++) {
                ck_assert_int_lt(n, 38);
                args[n++] = extra[i];
        }
        args[n] = NULL;
        ck_assert_int_gt(asprintf(&env_var, "OUTBOX_RDKAFKA_SASL_PASSWORD_FILE=%s", pwfile), 0);
        env[0] = env_var;
        env[1] = NULL;
        r = fx_relay_start_env(ci, SECURE, args, env);
        free(env_var);
        free(pwfile);
        return r;
}

/* How many lines of the relay's log contain `what`. */
static int log_lines(const struct fx_relay *r, const char *what)
{
        char *log = fx_relay_log(r), *line, *save = NULL;
        int n = 0;

        /* Lines an operator sees: debug is opt-in diagnostics. */
        for (line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
                n += strstr(line, what) != NULL && strstr(line, "\"level\":\"debug\"") == NULL;
        free(log);
        return n;
}

/* Asserts that no secret is in the relay's log. */
static void assert_no_secret(const struct fx_relay *r)
{
        char *log = fx_relay_log(r);

        ck_assert_msg(strstr(log, RELAY_PASSWORD) == NULL, "the password is in the log");
        ck_assert_msg(strstr(log, WRONG_PASSWORD) == NULL, "the (wrong) password is in the log");
        free(log);
}

/* Reads topic back over the SASL_SSL listener with Kafka's own consumer
 * (as admin) and checks it against the database: every sent row of the
 * topic is there with its key and value byte for byte, nothing else is,
 * and each key's rows first appear in id order (a producer restart may
 * repeat rows: at-least-once). Returns the number of repeats. */
static size_t read_back_secure(PGconn *c, const char *topic)
{
        struct fx_msg *msgs = NULL;
        size_t n = 0, repeats = 0;
        PGresult *rows = PQexecParams(c,
                                      "SELECT key, payload::text FROM outbox.events"
                                      " WHERE status = 'sent' AND topic = $1 ORDER BY id",
                                      1, NULL, &topic, NULL, NULL, 0);
        int nrows;
        long *first = NULL; /* per row: index of its first message */

        ck_assert_int_eq(PQresultStatus(rows), PGRES_TUPLES_OK);
        nrows = PQntuples(rows);
        /* The console consumer stops after 5 s without a message, which
         * joining its group on two busy cores can take: read again while
         * short (a read that gets everything ends the loop). */
        for (int tries = 0; tries < 5 && n < (size_t)nrows; tries++) {
                fx_msgs_free(msgs, n);
                msgs = NULL;
                n = fx_apache_read_over(ak, SECURE, admin_config, topic, &msgs);
        }
        first = calloc((size_t)nrows + 1, sizeof(*first));
        ck_assert_ptr_nonnull(first);
        for (int i = 0; i < nrows; i++)
                first[i] = -1;
        /* Payloads are unique ({"n": id-ish}): a message is the row whose
         * key and value it carries. */
        for (size_t m = 0; m < n; m++) {
                int row = -1;

                for (int i = 0; i < nrows && row < 0; i++)
                        if (strcmp(msgs[m].key, PQgetvalue(rows, i, 0)) == 0 &&
                            strcmp(msgs[m].value, PQgetvalue(rows, i, 1)) == 0)
                                row = i;
                ck_assert_msg(
                    row >= 0, "%s: message %s/%s (partition %d offset %lld) of no sent row", topic,
                    msgs[m].key, msgs[m].value, (int)msgs[m].partition, (long long)msgs[m].offset);
                if (first[row] >= 0)
                        repeats++;
                else
                        first[row] = (long)m;
        }
        for (int i = 0; i < nrows; i++) {
                ck_assert_msg(first[i] >= 0, "%s: row %s/%s not read back", topic,
                              PQgetvalue(rows, i, 0), PQgetvalue(rows, i, 1));
                /* A key lives in one partition; messages are per partition
                 * in offset order, so within a key index order is offset
                 * order. */
                for (int j = 0; j < i; j++)
                        if (strcmp(PQgetvalue(rows, j, 0), PQgetvalue(rows, i, 0)) == 0)
                                ck_assert_msg(first[j] < first[i],
                                              "%s: key %s out of order (%s after %s)", topic,
                                              PQgetvalue(rows, i, 0), PQgetvalue(rows, j, 1),
                                              PQgetvalue(rows, i, 1));
        }
        free(first);
        PQclear(rows);
        fx_msgs_free(msgs, n);
        return repeats;
}

/* Asserts what a readiness probe says: not ready, naming `cause`. */
static void assert_not_ready(int port, const char *cause)
{
        char *body = NULL;
        int status = fx_http_get(port, "/readyz", &body);

        ck_assert_msg(status == 503 && body != NULL && strstr(body, cause) != NULL,
                      "/readyz: %d %s (expected 503 naming \"%s\")", status, body ? body : "",
                      cause);
        free(body);
}

/* 300 rows over 10 keys through the SASL_SSL listener, the relay set up by
 * -X settings and a password file alone: every row published, read back
 * over the same listener by Kafka's own consumer; the password is nowhere
 * in the log. */
static void publish_over(const char *name, const char *mechanism, const char *db)
{
        char *ci = fresh_db(db), fault[300], topic[64];
        const char *const topics[] = {topic, NULL};
        PGconn *c = fx_db_connect(ci);
        struct fx_relay *r;
        struct fh_result res;

        snprintf(topic, sizeof(topic), "sasl-%s", db);
        snprintf(fault, sizeof(fault),
                 "300 rows over SASL_SSL (%s, a CA made with openssl) set up by -X settings, "
                 "the password from OUTBOX_RDKAFKA_SASL_PASSWORD_FILE; read back over the same "
                 "listener by Kafka's console consumer",
                 mechanism);
        fh_result_init(&res, name, fault);
        fx_apache_create_topic(ak, topic, 2, NULL);
        r = start_relay(ci, mechanism, RELAY_PASSWORD, ca_file, NULL);
        fx_sql(c,
               "INSERT INTO outbox.events (topic, key, payload) "
               "SELECT '%s', 'k' || g %% 10, jsonb_build_object('n', g)"
               " FROM generate_series(1, 300) g",
               topic);
        if (fh_wait_sent(c, 300, 120000) != 300) {
                char *tail = fh_relay_log_tail(r);

                ck_abort_msg("not every row sent over SASL_SSL; log: %s", tail);
        }
        read_back_secure(c, topic);
        assert_no_secret(r);
        fh_relay_stop(r, 30000);
        fh_relay_free(r, res.name);
        fh_check_topics(c, PLAIN, topics, &res);
        fh_report_and_assert(&res);
        PQfinish(c);
        free(ci);
}

START_TEST(sasl_ssl_publishes_through_settings_alone)
{
        publish_over("ak-sasl-ssl", "PLAIN", "sasl_ok");
}
END_TEST

/* A relay that cannot reach Kafka as it is set up (`password`, `ca`),
 * with message.timeout.ms short and --max-attempts 2: 20 rows time out in
 * the producer again and again. One log line names the cause, without
 * the secret; /readyz says not ready; no row spends an attempt or is
 * dead-lettered. Then a relay set up right publishes every row. */
static void refused_then_fixed(const char *name, const char *fault, const char *mechanism,
                               const char *password, const char *ca, const char *cause,
                               const char *ready_cause)
{
        char db[64], listen[64], topic[80];
        const char *const topics[] = {topic, NULL};
        char *ci;
        PGconn *c;
        int port = fx_free_port();
        const char *extra[] = {"--max-attempts",
                               "2",
                               "--retry-base-ms",
                               "50",
                               "--retry-max-ms",
                               "100",
                               "--poll-interval-ms",
                               "100",
                               "--log-level",
                               "debug",
                               "-X",
                               "message.timeout.ms=1000",
                               "--http-listen",
                               listen,
                               NULL};
        struct fx_relay *r;
        struct fh_result res;
        int timeouts;

        snprintf(db, sizeof(db), "sec_%s", name + 3);
        for (char *p = db; *p; p++)
                if (*p == '-')
                        *p = '_';
        ci = fresh_db(db);
        snprintf(topic, sizeof(topic), "sasl-%s", db);
        c = fx_db_connect(ci);
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        fh_result_init(&res, name, fault);
        fx_apache_create_topic(ak, topic, 1, NULL);
        fx_sql(c,
               "INSERT INTO outbox.events (topic, key, payload) "
               "SELECT '%s', 'k' || g %% 4, jsonb_build_object('n', g)"
               " FROM generate_series(1, 20) g",
               topic);
        r = start_relay(ci, mechanism, password, ca, extra);
        /* Three rounds of every row timing out in the producer: with
         * --max-attempts 2, any attempt spent per round would have
         * dead-lettered them all. */
        fh_wait_relay_log(r, "delivery not confirmed", 60, 120000);
        timeouts = fh_relay_log_count(r, "delivery not confirmed");
        if (timeouts < 60) {
                char *tail = fh_relay_log_tail(r);

                ck_abort_msg("%d rows timed out in the producer, not 60; log: %s", timeouts, tail);
        }
        ck_assert_int_eq(fx_sql_int(c, "SELECT count(*) FROM outbox.dead_letters"), 0);
        ck_assert_int_eq(fx_sql_int(c, "SELECT coalesce(sum(attempts), 0) FROM outbox.events"), 0);
        ck_assert_int_eq(fx_sql_int(c, "SELECT count(*) FROM outbox.events WHERE status = 'sent'"),
                         0);
        {
                int lines = log_lines(r, cause);

                if (lines != 1) {
                        char *tail = fx_relay_log(r), *line, *save = NULL;

                        for (line = strtok_r(tail, "\n", &save); line;
                             line = strtok_r(NULL, "\n", &save))
                                if (strstr(line, cause) != NULL)
                                        fprintf(stderr, "%s\n", line);

                        ck_abort_msg("%d log lines name \"%s\", not one; log: %s", lines, cause,
                                     tail);
                }
        }
        assert_no_secret(r);
        assert_not_ready(port, ready_cause);
        snprintf(res.notes, sizeof(res.notes),
                 "%d producer time-outs, 0 attempts spent, 0 dead letters; 1 log line naming "
                 "\"%s\"; /readyz 503",
                 timeouts, cause);
        fh_relay_stop(r, 30000);
        fh_relay_free(r, res.name);
        /* Set up right, the same rows go. */
        r = start_relay(ci, "PLAIN", RELAY_PASSWORD, ca_file, NULL);
        if (fh_wait_sent(c, 20, 120000) != 20) {
                char *tail = fh_relay_log_tail(r);

                ck_abort_msg("rows not sent once set up right; log: %s", tail);
        }
        ck_assert_int_eq(fx_sql_int(c, "SELECT coalesce(sum(attempts), 0) FROM outbox.events"), 0);
        assert_no_secret(r);
        fh_relay_stop(r, 30000);
        fh_relay_free(r, res.name);
        read_back_secure(c, topic);
        fh_check_topics(c, PLAIN, topics, &res);
        fh_report_and_assert(&res);
        PQfinish(c);
        free(ci);
}

START_TEST(wrong_password_spends_no_attempt)
{
        refused_then_fixed("ak-sasl-wrong-password",
                           "SASL_SSL (PLAIN) with a wrong password (from the password file), "
                           "message.timeout.ms=1000, --max-attempts 2; then the right one",
                           "PLAIN", WRONG_PASSWORD, ca_file, "uthentication failed",
                           "authentication failed");
}
END_TEST

START_TEST(wrong_ca_spends_no_attempt)
{
        char other_ca[160];

        snprintf(other_ca, sizeof(other_ca), "%s/ca.crt", other_ca_dir);
        refused_then_fixed("ak-sasl-wrong-ca",
                           "SASL_SSL with ssl.ca.location a CA that did not sign the broker's "
                           "certificate, message.timeout.ms=1000, --max-attempts 2; then the "
                           "right one",
                           "PLAIN", RELAY_PASSWORD, other_ca, "certificate verify failed",
                           "certificate verify failed");
}
END_TEST

/* SCRAM-SHA-512 with the right password. librdkafka before 2.6.1 sends
 * its nonce twice in the SCRAM client-final-message (librdkafka#4895);
 * Apache Kafka 4.0 and later compare the nonce strictly (CVE-2024-56128)
 * and refuse it as invalid credentials, while Kafka's Java client (the
 * reader here) authenticates with the same user. With such a librdkafka
 * the relay must behave as with a wrong password: one line, no attempt
 * spent, not ready; then PLAIN publishes. With a fixed librdkafka, SCRAM
 * must publish. */
START_TEST(scram_sha_512)
{
        if (rd_kafka_version() < 0x020601ff) {
                refused_then_fixed("ak-sasl-scram-old-librdkafka",
                                   "SASL_SSL with SCRAM-SHA-512 and the right password, from "
                                   "librdkafka < 2.6.1 (its SCRAM nonce bug, refused by Kafka "
                                   ">= 4.0), message.timeout.ms=1000, --max-attempts 2; then "
                                   "PLAIN",
                                   "SCRAM-SHA-512", RELAY_PASSWORD, ca_file, "uthentication failed",
                                   "authentication failed");
                return;
        }
        publish_over("ak-sasl-scram", "SCRAM-SHA-512", "sasl_scram");
}
END_TEST

/* What the two ACL cases share: a fresh outbox, the relay as RELAY_USER
 * over SASL_SSL with retries and restarts bounded so that the case stays
 * short (each refused produce request is a gap in the idempotent
 * producer's sequence, so the producer restarts, after the reconnect
 * backoff when no row was delivered since the last restart), and at the
 * end the relay stopped, every topic read back and the result reported:
 * nothing lost, phantom or out of order, and exactly `dead` dead letters. */
struct acl_case {
        char *ci;
        PGconn *c;
        struct fx_relay *r;
        struct fh_result res;
};

/* Creates `allowed` with 2 partitions and each of `others` (NULL-ended)
 * with 1, then starts the relay, with --dead-letter-topic dlt unless NULL. */
static void acl_start(struct acl_case *a, const char *db, const char *name, const char *what,
                      const char *allowed, const char *const others[], const char *dlt)
{
        const char *extra[16] = {"--max-attempts",     "2",   "--retry-base-ms",    "50",
                                 "--retry-max-ms",     "100", "--poll-interval-ms", "100",
                                 "--reconnect-max-ms", "1000"};
        size_t n = 10;

        if (dlt != NULL) {
                extra[n++] = "--dead-letter-topic";
                extra[n++] = dlt;
        }
        extra[n] = NULL;
        a->ci = fresh_db(db);
        a->c = fx_db_connect(a->ci);
        fh_result_init(&a->res, name, what);
        fx_apache_create_topic(ak, allowed, 2, NULL);
        for (size_t i = 0; others[i] != NULL; i++)
                fx_apache_create_topic(ak, others[i], 1, NULL);
        a->r = start_relay(a->ci, "PLAIN", RELAY_PASSWORD, ca_file, extra);
}

/* Stops the relay and checks `allowed`, notes in the report; with
 * read_back, first reads it back over SASL_SSL and adds to the notes how
 * many of its rows were sent again. */
static void acl_finish(struct acl_case *a, const char *allowed, long long dead, const char *notes,
                       int read_back)
{
        const char *const topics[] = {allowed, NULL};

        assert_no_secret(a->r);
        fh_relay_stop(a->r, 30000);
        fh_relay_free(a->r, a->res.name);
        if (read_back)
                snprintf(a->res.notes, sizeof(a->res.notes), "%s, %zu rows of %s sent again", notes,
                         read_back_secure(a->c, allowed), allowed);
        else
                snprintf(a->res.notes, sizeof(a->res.notes), "%s", notes);
        fh_check_topics(a->c, PLAIN, topics, &a->res);
        fh_report(&a->res, a->res.lost == 0 && a->res.phantoms == 0 &&
                               a->res.order_violations == 0 && a->res.key_mismatch == 0 &&
                               a->res.dead_letters == dead);
        ck_assert_int_eq(a->res.lost, 0);
        ck_assert_int_eq(a->res.phantoms, 0);
        ck_assert_int_eq(a->res.order_violations, 0);
        ck_assert_int_eq(a->res.key_mismatch, 0);
        ck_assert_int_eq(a->res.dead_letters, dead);
        PQfinish(a->c);
        free(a->ci);
}

/* The relay's user may not write sasl-denied (a DENY ACL) and has no ACL
 * at all on nope-topic: their rows are dead-lettered after --max-attempts
 * with a reason naming the topic and the authorization failure, while
 * rows of sasl-allowed (other keys, fetched around them) flow in order. */
START_TEST(acl_denied_topic_dead_lettered_others_flow)
{
        const char *const others[] = {"sasl-denied", "nope-topic", NULL};
        struct acl_case a;
        long long dead, allowed;
        char first_reason[200], notes[400];
        PGresult *q;

        acl_start(&a, "sasl_acl", "ak-acl-denied",
                  "ACLs (StandardAuthorizer): the relay's user may write sasl-*, but a DENY "
                  "ACL forbids sasl-denied and nope-topic has none; 400 rows, 40 of them for "
                  "the two forbidden topics; --max-attempts 2",
                  "sasl-allowed", others, NULL);
        fx_sql(a.c,
               "INSERT INTO outbox.events (topic, key, payload) "
               "SELECT CASE WHEN g %% 20 = 0 THEN 'sasl-denied'"
               "            WHEN g %% 20 = 10 THEN 'nope-topic' ELSE 'sasl-allowed' END,"
               "       CASE WHEN g %% 10 = 0 THEN 'forbidden-' || g %% 3 ELSE 'a' || g %% 7 END,"
               "       jsonb_build_object('n', g)"
               " FROM generate_series(1, 400) g");
        allowed =
            fx_sql_int(a.c, "SELECT count(*) FROM outbox.events WHERE topic = 'sasl-allowed'");
        dead = fx_wait_sql(a.c, 40, 120000, "SELECT count(*) FROM outbox.dead_letters");
        if (dead != 40 || fh_wait_sent(a.c, allowed, 60000) != allowed) {
                char *tail = fh_relay_log_tail(a.r);
                PGresult *w = PQexec(a.c, "SELECT id, topic, key, status, attempts, last_error"
                                          " FROM outbox.events WHERE status <> 'sent'");

                for (int i = 0; i < PQntuples(w); i++)
                        fprintf(stderr,
                                "waiting: id %s topic %s key %s status %s attempts %s: %s\n",
                                PQgetvalue(w, i, 0), PQgetvalue(w, i, 1), PQgetvalue(w, i, 2),
                                PQgetvalue(w, i, 3), PQgetvalue(w, i, 4), PQgetvalue(w, i, 5));
                PQclear(w);
                {
                        char *all = fx_relay_log(a.r);
                        size_t len = strlen(all);

                        fprintf(stderr, "relay log (end):\n%s\n",
                                all + (len > 12000 ? len - 12000 : 0));
                        free(all);
                }
                ck_abort_msg("%lld dead letters (of 40), %lld sent (of %lld); log: %s", dead,
                             fx_sql_int(a.c, "SELECT count(*) FROM outbox.events"
                                             " WHERE status = 'sent'"),
                             allowed, tail);
        }
        /* Every dead letter: a forbidden topic, both attempts spent, the
         * reason naming the topic and the authorization failure. */
        q = PQexec(a.c, "SELECT topic, attempts, reason FROM outbox.dead_letters ORDER BY id");
        ck_assert_int_eq(PQntuples(q), 40);
        for (int i = 0; i < PQntuples(q); i++) {
                const char *topic = PQgetvalue(q, i, 0), *reason = PQgetvalue(q, i, 2);

                ck_assert_msg(strcmp(topic, "sasl-denied") == 0 || strcmp(topic, "nope-topic") == 0,
                              "dead letter of topic %s", topic);
                ck_assert_int_eq(atoi(PQgetvalue(q, i, 1)), 2);
                ck_assert_msg(strstr(reason, "uthorization") != NULL && strstr(reason, topic),
                              "reason \"%s\" does not name the authorization failure and %s",
                              reason, topic);
        }
        snprintf(first_reason, sizeof(first_reason), "%s", PQgetvalue(q, 0, 2));
        PQclear(q);
        /* No allowed row paid for sharing a batch with a forbidden one. */
        ck_assert_int_eq(fx_sql_int(a.c, "SELECT count(*) FROM outbox.events WHERE attempts > 0"),
                         0);
        snprintf(notes, sizeof(notes),
                 "reason: %.160s; %d producer restarts (a refused produce request is a gap)",
                 first_reason, fh_relay_log_count(a.r, "rebuilding the Kafka producer"));
        acl_finish(&a, "sasl-allowed", 40, notes, 1);
}
END_TEST

/* --dead-letter-topic sasl-dlq-denied, which a DENY ACL forbids the relay's
 * user to write (it may describe it): 10 rows without a route die at once,
 * each dead letter's record (a pending row of the dead-letter topic) is
 * refused by the broker, retried, and dead-lettered itself, its reason and
 * one error line each naming the topic and the authorization failure, and
 * not announced again (no loop). Every row is sent or in dead_letters;
 * rows of sasl-dlt-ok flow in order meanwhile, spending no attempt. */
START_TEST(dead_letter_topic_refused_by_acl)
{
        const char *const others[] = {"sasl-dlq-denied", NULL};
        struct acl_case a;
        long long dead, ok;
        char reason[200], notes[300];
        int errors;
        PGresult *q;

        acl_start(&a, "sasl_dlt", "ak-dlq-topic-acl",
                  "--dead-letter-topic that a DENY ACL forbids the relay's user to write "
                  "(StandardAuthorizer): 10 rows without a route dead-lettered, their 10 "
                  "records refused, beside 200 rows of an allowed topic; --max-attempts 2",
                  "sasl-dlt-ok", others, "sasl-dlq-denied");
        fx_sql(a.c, "INSERT INTO outbox.events (topic, key, event_type, payload) "
                    "SELECT CASE WHEN g %% 21 = 0 THEN NULL ELSE 'sasl-dlt-ok' END,"
                    "       CASE WHEN g %% 21 = 0 THEN 'dead-' || g ELSE 'k' || g %% 7 END,"
                    "       CASE WHEN g %% 21 = 0 THEN 'no.route' ELSE 'ok' END,"
                    "       jsonb_build_object('n', g)"
                    " FROM generate_series(1, 210) g");
        ok = fx_sql_int(a.c, "SELECT count(*) FROM outbox.events WHERE topic = 'sasl-dlt-ok'");
        ck_assert_int_eq(ok, 200);
        /* 10 dead letters of the rows, then 10 of their records. */
        dead = fx_wait_sql(a.c, 20, 120000, "SELECT count(*) FROM outbox.dead_letters");
        if (dead != 20 || fh_wait_sent(a.c, ok, 60000) != ok) {
                char *tail = fh_relay_log_tail(a.r);

                ck_abort_msg("%lld dead letters (of 20), %lld sent (of %lld); log: %s", dead,
                             fx_sql_int(a.c, "SELECT count(*) FROM outbox.events"
                                             " WHERE status = 'sent'"),
                             ok, tail);
        }
        /* The records: each refused twice, its reason naming the topic and
         * the refusal; the rows: dead at once, no route. */
        q = PQexec(a.c, "SELECT topic, attempts, reason, event_type FROM outbox.dead_letters"
                        " WHERE topic = 'sasl-dlq-denied' ORDER BY id");
        ck_assert_int_eq(PQntuples(q), 10);
        for (int i = 0; i < PQntuples(q); i++) {
                const char *why = PQgetvalue(q, i, 2);

                ck_assert_str_eq(PQgetvalue(q, i, 3), "outbox.dead_letter");
                ck_assert_int_eq(atoi(PQgetvalue(q, i, 1)), 2);
                ck_assert_msg(strstr(why, "uthorization") != NULL &&
                                  strstr(why, "sasl-dlq-denied") != NULL,
                              "reason \"%s\" does not name the authorization failure and the "
                              "dead-letter topic",
                              why);
        }
        snprintf(reason, sizeof(reason), "%s", PQgetvalue(q, 0, 2));
        PQclear(q);
        ck_assert_int_eq(fx_sql_int(a.c, "SELECT count(*) FROM outbox.dead_letters"
                                         " WHERE topic IS NULL AND event_type = 'no.route'"),
                         10);
        /* No loop: nothing pending, no record of a record. */
        ck_assert_int_eq(fx_wait_sql(a.c, 0, 10000,
                                     "SELECT count(*) FROM outbox.events"
                                     " WHERE status <> 'sent'"),
                         0);
        ck_assert_int_eq(fx_sql_int(a.c, "SELECT count(*) FROM outbox.events"
                                         " WHERE topic = 'sasl-dlq-denied'"),
                         0);
        ck_assert_int_eq(fx_sql_int(a.c, "SELECT count(*) FROM outbox.events WHERE attempts > 0"),
                         0);
        /* One error line per record, naming the topic and the refusal. */
        errors = log_lines(a.r, "\"msg\":\"row dead-lettered\"");
        ck_assert_int_eq(errors, 20);
        ck_assert_int_eq(log_lines(a.r, "\"level\":\"error\",\"msg\":\"row dead-lettered\""), 20);
        {
                char *log = fx_relay_log(a.r), *line, *save = NULL;
                int named = 0;

                for (line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
                        named += strstr(line, "\"msg\":\"row dead-lettered\"") != NULL &&
                                 strstr(line, "sasl-dlq-denied") != NULL &&
                                 strstr(line, "uthorization") != NULL;
                free(log);
                ck_assert_int_eq(named, 10);
        }
        snprintf(notes, sizeof(notes), "record's reason: %.160s", reason);
        acl_finish(&a, "sasl-dlt-ok", 20, notes, 0);
}
END_TEST

/* Each test a test case of its own (CK_RUN_CASE=<test>), the broker started
 * once for them all; the tag "sanitize" marks the cases the ASan build runs
 * (the refusal path and a denied topic, the code the sanitizers guard). */
static const struct runner_servers servers = {suite_setup, suite_teardown};

Suite *test_suite(void)
{
        Suite *s = suite_create("apache_security");

        runner_add(s, sasl_ssl_publishes_through_settings_alone, NULL, &servers, 300);
        runner_add(s, wrong_password_spends_no_attempt, NULL, &servers, 300);
        runner_add(s, wrong_ca_spends_no_attempt, "sanitize", &servers, 300);
        runner_add(s, scram_sha_512, NULL, &servers, 300);
        runner_add(s, acl_denied_topic_dead_lettered_others_flow, "sanitize", &servers, 300);
        runner_add(s, dead_letter_topic_refused_by_acl, NULL, &servers, 300);
        return s;
}
