/* fixture: the shared harness of the integration tests. It starts a real
 * throwaway PostgreSQL (initdb into a temp dir, a free port), the
 * outbox-dev-kafka process, and the real outbox-relay binary, and gives
 * helpers to run SQL, consume from Kafka and poll conditions with deadlines.
 * Every helper fails the current Check test (ck_abort_msg) on error. */
#ifndef OUTBOX_TEST_FIXTURE_H
#define OUTBOX_TEST_FIXTURE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libpq-fe.h>

/* ---- PostgreSQL ---- */
struct fx_pg;
/* initdb (as the postgres user when run as root) into a fresh temp dir and
 * start the server on a free 127.0.0.1 port. Aborts the test on failure. */
struct fx_pg *fx_pg_start(void);
/* The same with ssl = on: a CA and a server certificate for 127.0.0.1 and
 * localhost signed by it are made with openssl in the server's directory. */
struct fx_pg *fx_pg_start_tls(void);
/* The CA certificate of a server from fx_pg_start_tls (for sslrootcert). */
const char *fx_pg_ca_file(struct fx_pg *pg);
/* A self-signed CA made with openssl: dir/name.crt and dir/name.key. */
void fx_make_ca(const char *dir, const char *name);
/* A directory /tmp/<prefix>-XXXXXX (mkdtemp) into dir, for a test's
 * certificates and secret files; fx_tmpdir_remove removes it and all in it
 * (nothing when dir is empty). */
void fx_tmpdir_new(char *dir, size_t size, const char *prefix);
void fx_tmpdir_remove(const char *dir);
/* Writes text to dir/name, mode 0600 as a mounted secret would be; returns
 * the path (malloc'ed). */
char *fx_write_secret(const char *dir, const char *name, const char *text);
void fx_pg_stop(struct fx_pg *pg); /* stops the server, removes the dir */
int fx_pg_port(const struct fx_pg *pg);
/* The server's log file (pg_ctl -l): its errors, one "ERROR:" line each. */
const char *fx_pg_log_path(const struct fx_pg *pg);
/* pg_ctl restart -m immediate, or stop / start, for fault tests. */
void fx_pg_restart(struct fx_pg *pg);
void fx_pg_stop_server(struct fx_pg *pg);
void fx_pg_start_server(struct fx_pg *pg);
/* CREATE DATABASE name; returns a malloc'ed conninfo for it
 * ("host=127.0.0.1 port=N dbname=name user=postgres"). */
char *fx_pg_create_db(struct fx_pg *pg, const char *name);

PGconn *fx_db_connect(const char *conninfo);

/* Roles fx_pg_start creates (LOGIN, trust on 127.0.0.1) and fx_migrate
 * grants with `outbox-relay migrate --grant-writer/--grant-relay`: the
 * relay runs as FX_RELAY_ROLE, the writers insert as FX_WRITER_ROLE.
 * Operator work (replay, hand UPDATEs, schema changes) stays on the
 * superuser conninfo. */
#define FX_WRITER_ROLE "outbox_writer"
#define FX_RELAY_ROLE  "outbox_relay"
/* conninfo with user=role appended (libpq takes the last user=); a
 * postgres:// URL is returned unchanged. malloc'ed. */
char *fx_conninfo_as(const char *conninfo, const char *role);
/* fx_db_connect(fx_conninfo_as(conninfo, role)). */
PGconn *fx_db_connect_as(const char *conninfo, const char *role);
/* Runs SQL (printf-style), asserting success; the result is discarded. */
void fx_sql(PGconn *conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Runs a query returning one row, one column, as a long long (NULL -> -1). */
long long fx_sql_int(PGconn *conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Polls the scalar query every 20 ms until it equals expected or the deadline
 * passes; returns the last value seen. */
long long fx_wait_sql(PGconn *conn, long long expected, int timeout_ms, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- Kafka (the outbox-dev-kafka process) ---- */
struct fx_kafka;
/* Spawns outbox-dev-kafka with the given broker count and default
 * partitions for auto-created topics; waits for its bootstrap line. */
struct fx_kafka *fx_kafka_start(int brokers, int partitions);
const char *fx_kafka_bootstraps(const struct fx_kafka *k);
/* Sends one control line to its stdin (e.g. "down 1", "up 1") and waits for
 * its "ok" reply; returns 0 or -1. */
int fx_kafka_command(struct fx_kafka *k, const char *line);
/* A migrated database `db` of pg and a topic of the dev Kafka with that
 * many partitions; returns the superuser conninfo (malloc'ed). */
char *fx_fresh_outbox(struct fx_pg *pg, struct fx_kafka *k, const char *db, const char *topic,
                      int partitions);
void fx_kafka_stop(struct fx_kafka *k);

struct fx_header {
        char *name;
        char *value; /* NULL for a null header value */
        size_t value_len;
};

struct fx_msg {
        char *topic;
        int32_t partition;
        int64_t offset;
        int64_t timestamp_ms;
        char *key; /* NULL when the message has no key */
        size_t key_len;
        char *value; /* NULL for a tombstone */
        size_t value_len;
        struct fx_header *headers;
        size_t n_headers;
};

/* Reads every partition of topic from the beginning with a librdkafka
 * consumer (no group) until `expect` messages arrived or timeout_ms passed
 * with nothing new. Messages are returned per partition in offset order,
 * partitions in ascending order. Returns the count; *out is malloc'ed. */
size_t fx_consume(const char *brokers, const char *topic, size_t expect, int timeout_ms,
                  struct fx_msg **out);
/* fx_consume above reads as librdkafka's consumer does by default, with
 * isolation.level=read_committed (the dev Kafka ignores it: it has no
 * aborted transactions to hide); this one reads every message, those of
 * open and aborted transactions too. */
size_t fx_consume_uncommitted(const char *brokers, const char *topic, size_t expect, int timeout_ms,
                              struct fx_msg **out);
void fx_msgs_free(struct fx_msg *msgs, size_t n);
/* The value of header `name` in m, or NULL. */
const struct fx_header *fx_msg_header(const struct fx_msg *m, const char *name);

/* ---- Apache Kafka (fixture_apache_kafka.c) ----
 * Real brokers: Apache Kafka's jars (the version tests/kafka/pom.xml names,
 * fetched by scripts/kafka-fetch.sh into a cache directory; the test
 * `apache_kafka_fetch` runs it) started as JVMs on 127.0.0.1, each node a
 * combined KRaft broker and controller, formatted with Kafka's storage
 * tool. Brokers have auto.create.topics.enable=false: tests create their
 * topics. OUTBOX_TEST_KAFKA_KEEP=1 keeps their directories (server.log per
 * node) for diagnosis. */
struct fx_apache;

#define FX_APACHE_MAX_NODES     3
#define FX_APACHE_MAX_LISTENERS 4

struct fx_apache_listener {
        const char *name;     /* listener name, e.g. "SASL_SSL" (NULL ends the list) */
        const char *protocol; /* its security protocol, e.g. "SASL_SSL" */
};

struct fx_apache_opts {
        /* 1 (0 means 1): one node. 3: three nodes, replication factor 3,
         * min.insync.replicas=2, for failover cases. */
        int nodes;
        /* Listeners beside PLAINTEXT (which the brokers use among
         * themselves and the fixture's admin client uses): each gets a
         * port of its own on every node, is advertised and mapped to its
         * protocol. fx_apache_listener_bootstraps() gives its addresses. */
        struct fx_apache_listener listeners[FX_APACHE_MAX_LISTENERS];
        /* server.properties lines ("name=value", NULL-terminated, may be
         * NULL) for every node, after the fixture's: a later line wins, so
         * they may override any (SSL key stores, sasl.enabled.mechanisms,
         * listener.name.<l>.<mechanism>.sasl.jaas.config, authorizer.class.name,
         * super.users, message.max.bytes, auto.create.topics.enable...). */
        const char *const *properties;
        /* Extra arguments to `kafka-storage format` for every node, e.g.
         * "--add-scram", "SCRAM-SHA-512=[name=relay,password=...]". */
        const char *const *format_args;
        /* Extra JVM options for the brokers, e.g.
         * "-Djava.security.auth.login.config=FILE". */
        const char *const *jvm_options;
};

/* Formats and starts the nodes, waits until each answers metadata listing
 * all of them. Aborts the test (with the brokers' log tails) on failure. */
struct fx_apache *fx_apache_start(int nodes);
struct fx_apache *fx_apache_start_opts(const struct fx_apache_opts *o);
/* Kills the brokers and removes their directory. Accepts NULL. */
void fx_apache_stop(struct fx_apache *k);
/* The Apache Kafka version the tier runs, e.g. "4.4.0". */
const char *fx_apache_version(void);
/* The PLAINTEXT bootstrap list ("127.0.0.1:p1,127.0.0.1:p2,..."). */
const char *fx_apache_bootstraps(const struct fx_apache *k);
/* The bootstrap list of a listener given in fx_apache_opts. */
const char *fx_apache_listener_bootstraps(const struct fx_apache *k, const char *listener);
/* The cluster's directory (node<N>/ below it), for files a test adds. */
const char *fx_apache_dir(const struct fx_apache *k);
int fx_apache_nodes(const struct fx_apache *k);
/* Creates a topic (replication factor = the node count) with configs
 * ("name=value", NULL-terminated, may be NULL), then waits until every
 * live broker sees a leader for each partition. */
void fx_apache_create_topic(struct fx_apache *k, const char *topic, int partitions,
                            const char *const configs[]);
/* The same with `replicas` replicas a partition (1: no broker can take over
 * a partition whose leader is down). */
void fx_apache_create_topic_rf(struct fx_apache *k, const char *topic, int partitions, int replicas,
                               const char *const configs[]);
/* Replaces the topic's dynamic configuration with configs. */
void fx_apache_alter_topic(struct fx_apache *k, const char *topic, const char *const configs[]);
/* The node id leading the partition, -1 when there is none. */
int fx_apache_leader(struct fx_apache *k, const char *topic, int partition);
/* The topic's partition count (-1 when it does not exist), and the value
 * of one of its configs as the brokers report it (DescribeConfigs; malloc'ed,
 * NULL when the topic does not exist). */
int fx_apache_partitions(struct fx_apache *k, const char *topic);
char *fx_apache_topic_config(struct fx_apache *k, const char *topic, const char *name);
/* Waits until every replica of every partition of topic is in sync. */
void fx_apache_wait_in_sync(struct fx_apache *k, const char *topic, int timeout_ms);
/* Node 1..n: whether it runs; SIGKILL it (and wait until it is gone);
 * kill it if needed and start it again on its ports and directory, waiting
 * until it answers metadata listing every broker, with a leader for every
 * partition. */
int fx_apache_alive(struct fx_apache *k, int node);
void fx_apache_kill(struct fx_apache *k, int node);
void fx_apache_restart(struct fx_apache *k, int node);
/* Starts every node that is not running (all at once: with three, a
 * quorum may need two) and waits for them. Returns how many it started. */
int fx_apache_ensure_up(struct fx_apache *k);

struct fx_pos {
        int32_t partition;
        int64_t offset;
};
/* What a read_committed consumer sees of topic, read by Kafka's own Java
 * console consumer (an independent client: not librdkafka, which the relay
 * produces with): the (partition, offset) of every message, sorted. Reads
 * until nothing new came for 5 s. *out is malloc'ed. */
size_t fx_apache_read_committed(struct fx_apache *k, const char *topic, struct fx_pos **out);

/* ---- Apache Kafka security (fixture_apache_admin.c) ---- */
/* A CA (dir/ca.crt) and, signed by it, a certificate for 127.0.0.1 and
 * localhost with its key in one PEM file (dir/broker.pem), as a broker's
 * ssl.keystore.type=PEM takes it; made with openssl. */
void fx_apache_make_tls(const char *dir);
/* Adds one ACL on a topic (a prefix when `prefixed`) for principal
 * ("User:name"), from any host: operation as Kafka names it ("WRITE",
 * "DESCRIBE", "READ", "ALL"), allowed or denied. Sent over PLAINTEXT, whose
 * principal (User:ANONYMOUS) a test with an authorizer makes a super user. */
void fx_apache_add_acl(struct fx_apache *k, const char *principal, const char *topic, int prefixed,
                       const char *operation, int allow);
/* Reads topic from the beginning with Kafka's own console consumer over
 * `bootstraps` with the client properties in the file `client_config`
 * (security.protocol, sasl.*, ssl.* ...): every message's partition,
 * offset, key and value (printed as text: no tab or newline in them).
 * Reads until nothing new came for 5 s; *out is malloc'ed (fx_msgs_free). */
size_t fx_apache_read_over(struct fx_apache *k, const char *bootstraps, const char *client_config,
                           const char *topic, struct fx_msg **out);

/* ---- Processes ---- */
/* Runs argv (argv[0] a path) to completion with a deadline, capturing stdout
 * and stderr together into *output (malloc'ed, may be NULL to discard).
 * Extra environment entries ("NAME=value", NULL-terminated) may be given.
 * Returns the exit code, or -1 if it was killed by a signal or timed out. */
int fx_run(const char *const argv[], const char *const env[], char **output, int timeout_ms);

struct fx_relay;
/* Starts `outbox-relay run --database-url conninfo --kafka-brokers brokers`
 * as FX_RELAY_ROLE (a conninfo that names user= twice already is left as it
 * is: the test chose the user) plus extra args (NULL-terminated, may be
 * NULL; conninfo NULL leaves --database-url out, for the environment to
 * give); its stderr goes to a log
 * file that fx_relay_log() returns. OUTBOX_TEST_RELAY_WRAPPER (e.g.
 * "/usr/bin/valgrind --leak-check=full") runs it under that command. */
struct fx_relay *fx_relay_start(const char *conninfo, const char *brokers,
                                const char *const extra_args[]);
/* The same with env ("NAME=value", NULL-terminated) added to its environment. */
struct fx_relay *fx_relay_start_env(const char *conninfo, const char *brokers,
                                    const char *const extra_args[], const char *const env[]);
pid_t fx_relay_pid(const struct fx_relay *r);
void fx_relay_kill(struct fx_relay *r, int sig);
/* Waits up to timeout_ms for exit; returns the exit code, 128+signal when
 * killed, or -1 on timeout. */
int fx_relay_wait(struct fx_relay *r, int timeout_ms);
/* The relay's stderr so far (malloc'ed). */
char *fx_relay_log(const struct fx_relay *r);
/* Kills it (SIGKILL) if still running and frees; fails the test when its
 * log holds an ASan, UBSan or LeakSanitizer report (fx_sanitizer_report). */
void fx_relay_free(struct fx_relay *r);
/* Where text (a child's output) starts a sanitizer report: the line holding
 * "ERROR: AddressSanitizer", "runtime error:" or "LeakSanitizer"; NULL when
 * it holds none. */
const char *fx_sanitizer_report(const char *text);

/* Runs `outbox-relay migrate` against conninfo (schema "outbox" unless
 * schema is given), granting FX_WRITER_ROLE and FX_RELAY_ROLE, and asserts
 * exit 0. */
void fx_migrate(const char *conninfo, const char *schema);

/* ---- HTTP (the relay's endpoints) ---- */
/* A 127.0.0.1 port that was free a moment ago. */
int fx_free_port(void);
/* GETs http://127.0.0.1:port/path with curl; returns the HTTP status and
 * the body in *body (malloc'ed), or -1 (and *body NULL) when nothing
 * answered. */
int fx_http_get(int port, const char *path, char **body);
/* The value of one sample line ("name{labels} value") of a /metrics
 * scrape, or -1 when it is absent. */
double fx_metric(const char *scrape, const char *series);

/* Milliseconds on the monotonic clock. */
int64_t fx_now_ms(void);

/* The servers most integration tests share: one PostgreSQL (pg) and the
 * dev Kafka (kafka) with that many brokers and partitions a topic, as the
 * test file's statics, started by suite_setup and stopped by
 * suite_teardown (Check fixtures, or runner.h's servers). */
#define FX_DEV_SERVERS(brokers, partitions)                                                        \
        static struct fx_pg *pg;                                                                   \
        static struct fx_kafka *kafka;                                                             \
        static void suite_setup(void)                                                              \
        {                                                                                          \
                pg = fx_pg_start();                                                                \
                kafka = fx_kafka_start(brokers, partitions);                                       \
        }                                                                                          \
        static void suite_teardown(void)                                                           \
        {                                                                                          \
                fx_kafka_stop(kafka);                                                              \
                fx_pg_stop(pg);                                                                    \
        }                                                                                          \
        struct fx_dev_servers_unused_ /* a declaration, for the caller's ";" */

#endif
