/* fixture_apache_kafka: real Apache Kafka brokers for the tests. The jars
 * come from Maven Central (tests/kafka/pom.xml names the version;
 * scripts/kafka-fetch.sh keeps them in a cache directory); each node is a
 * JVM running kafka.Kafka on 127.0.0.1, a combined broker and controller
 * in KRaft mode, its storage formatted with Kafka's own storage tool.
 *
 * Brokers outlive the Check child that restarts one, so they are not tied
 * to any process: each writes its pid to node<N>/pid before it becomes the
 * JVM, and a watchdog (as for PostgreSQL) kills those pids and removes the
 * directory once every copy of the guard pipe is closed, i.e. when the test
 * process and its children are gone, however they ended. Topics and
 * reading back are in fixture_apache_admin.c. */
#include "fixture.h"
#include "fixture_apache_int.h"
#include "fixture_int.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#ifndef OUTBOX_APACHE_KAFKA_VERSION
#error "OUTBOX_APACHE_KAFKA_VERSION must be defined (see tests/CMakeLists.txt)"
#endif
#ifndef OUTBOX_APACHE_KAFKA_LIBS
#define OUTBOX_APACHE_KAFKA_LIBS "" /* then OUTBOX_TEST_KAFKA_LIBS must say */
#endif
#ifndef OUTBOX_JAVA
#define OUTBOX_JAVA "/usr/bin/java"
#endif
#ifndef OUTBOX_SOURCE_DIR
#error "OUTBOX_SOURCE_DIR must be defined (see tests/CMakeLists.txt)"
#endif

const char *fx_apache_version(void)
{
        return OUTBOX_APACHE_KAFKA_VERSION;
}

/* ---- small helpers ---- */

static char *xstrdup(const char *s)
{
        char *c = strdup(s);

        ck_assert_msg(c != NULL, "out of memory");
        return c;
}

static void write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");

        ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
        fputs(text, f);
        ck_assert_msg(fclose(f) == 0, "%s: %s", path, strerror(errno));
}

static int keep_dirs(void)
{
        const char *v = getenv("OUTBOX_TEST_KAFKA_KEEP");

        return v != NULL && strcmp(v, "1") == 0;
}

/* A cluster id as Kafka prints them: 16 random bytes in unpadded base64url,
 * not starting with '-' (the tools would take it for an option). */
static void random_cluster_id(char *out, size_t size)
{
        static const char b64[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        unsigned char raw[16];
        FILE *f = fopen("/dev/urandom", "r");
        size_t o = 0;

        ck_assert_msg(f != NULL && fread(raw, 1, sizeof(raw), f) == sizeof(raw), "/dev/urandom: %s",
                      strerror(errno));
        fclose(f);
        raw[0] &= 0xf7; /* the first character's 6 bits never make '-' (62) */
        for (int i = 0; i < 16; i += 3) {
                unsigned v = (unsigned)raw[i] << 16;

                if (i + 1 < 16)
                        v |= (unsigned)raw[i + 1] << 8;
                if (i + 2 < 16)
                        v |= raw[i + 2];
                out[o++] = b64[(v >> 18) & 63];
                out[o++] = b64[(v >> 12) & 63];
                if (i + 1 < 16)
                        out[o++] = b64[(v >> 6) & 63];
                if (i + 2 < 16)
                        out[o++] = b64[v & 63];
        }
        ck_assert(o < size);
        out[o] = '\0';
}

/* Splits a space-separated option string into argv (words point into a
 * copy the caller frees). Returns the count. */
static size_t split_words(const char *s, char **copy, const char **argv, size_t max)
{
        char *save = NULL;
        size_t n = 0;

        *copy = xstrdup(s);
        for (char *w = strtok_r(*copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
                ck_assert_msg(n < max, "too many JVM options");
                argv[n++] = w;
        }
        return n;
}

/* ---- processes ---- */

/* The pid in a node's pidfile, or 0. */
pid_t ak_node_pid(const struct ak_node *nd)
{
        FILE *f = fopen(nd->pidfile, "r");
        long pid = 0;

        if (!f)
                return 0;
        if (fscanf(f, "%ld", &pid) != 1)
                pid = 0;
        fclose(f);
        return (pid_t)pid;
}

/* Whether pid is a live (not zombie) process started for this node: its
 * command line names the node's directory, so a reused pid is not ours. */
int ak_node_alive(const struct ak_node *nd, pid_t pid)
{
        char path[64], buf[4096], state = 0;
        size_t n;
        FILE *f;
        int ours = 0;

        if (pid <= 0)
                return 0;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        f = fopen(path, "r");
        if (!f)
                return 0;
        /* "pid (comm) S ...": the state follows the last ')'. */
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        {
                char *rp = strrchr(buf, ')');

                if (rp && rp[1] == ' ')
                        state = rp[2];
        }
        if (state == 0 || state == 'Z' || state == 'X')
                return 0;
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
        f = fopen(path, "r");
        if (!f)
                return 0;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        for (size_t i = 0; i < n; i++) /* NUL-separated words */
                if (buf[i] == '\0')
                        buf[i] = ' ';
        buf[n] = '\0';
        ours = strstr(buf, nd->dir) != NULL;
        return ours;
}

/* Reaps pid if it is our child; otherwise its parent (init, for a broker
 * a finished test child started) does. */
static void reap(pid_t pid)
{
        int status;

        while (waitpid(pid, &status, WNOHANG) < 0 && errno == EINTR)
                ;
}

/* SIGKILL and wait until it is gone. */
static void node_kill(const struct ak_node *nd)
{
        pid_t pid = ak_node_pid(nd);
        int64_t deadline = fx_now_ms() + 30000;

        if (!ak_node_alive(nd, pid))
                return;
        kill(pid, SIGKILL);
        while (ak_node_alive(nd, pid)) {
                reap(pid);
                ck_assert_msg(fx_now_ms() < deadline, "broker %d (pid %d) survived SIGKILL", nd->id,
                              (int)pid);
                poll(NULL, 0, 10);
        }
        reap(pid);
}

/* The tails of a node's logs, for an abort message (malloc'ed). */
static char *node_logs(const struct ak_node *nd)
{
        char path[192], *out = NULL, *server, *std;

        snprintf(path, sizeof(path), "%s/server.log", nd->dir);
        server = fx_file_tail(path, AK_TAIL_BYTES);
        std = fx_file_tail(nd->stdout_log, AK_TAIL_BYTES / 2);
        ck_assert_msg(
            asprintf(&out, "-- broker %d stdout:\n%s\n-- server.log:\n%s", nd->id, std, server) > 0,
            "out of memory");
        free(server);
        free(std);
        return out;
}

static void java_path(char *out, size_t size)
{
        const char *env = getenv("OUTBOX_TEST_JAVA");

        snprintf(out, size, "%s", env && *env ? env : OUTBOX_JAVA);
}

/* The jars' directory: OUTBOX_TEST_KAFKA_LIBS, else the one CMake chose. */
static void libs_dir(struct fx_apache *k)
{
        const char *env = getenv("OUTBOX_TEST_KAFKA_LIBS");
        char jar[640];

        snprintf(k->libs, sizeof(k->libs), "%s", env && *env ? env : OUTBOX_APACHE_KAFKA_LIBS);
        snprintf(jar, sizeof(jar), "%s/kafka_2.13-%s.jar", k->libs, OUTBOX_APACHE_KAFKA_VERSION);
        ck_assert_msg(access(jar, R_OK) == 0,
                      "Apache Kafka %s is not in \"%s\": fetch it with scripts/kafka-fetch.sh "
                      "(ctest runs it as apache_kafka_fetch) or set OUTBOX_TEST_KAFKA_LIBS",
                      OUTBOX_APACHE_KAFKA_VERSION, k->libs);
        snprintf(k->classpath, sizeof(k->classpath), "%s/*", k->libs);
}

/* Runs a Kafka tool class (java -cp jars class args...) to completion;
 * returns its exit code, output in *out. */
int ak_run_tool(const struct fx_apache *k, const char *cls, const char *const args[], char **out,
                int timeout_ms)
{
        const char *argv[AK_MAX_ARGS];
        char log4j[600], *opts_copy = NULL;
        const char *opts = getenv("OUTBOX_TEST_KAFKA_TOOL_JVM_OPTS");
        size_t n = 0;
        int rc;

        snprintf(log4j, sizeof(log4j),
                 "-Dlog4j2.configurationFile=%s/tests/kafka/log4j2-tools.properties",
                 OUTBOX_SOURCE_DIR);
        argv[n++] = k->java;
        n += split_words(opts && *opts ? opts : AK_TOOL_JVM_OPTS, &opts_copy, argv + n, 16);
        argv[n++] = log4j;
        argv[n++] = "-cp";
        argv[n++] = k->classpath;
        argv[n++] = cls;
        for (size_t i = 0; args[i]; i++) {
                ck_assert_msg(n < AK_MAX_ARGS - 1, "too many tool arguments");
                argv[n++] = args[i];
        }
        argv[n] = NULL;
        rc = fx_run(argv, NULL, out, timeout_ms);
        free(opts_copy);
        return rc;
}

/* The watchdog: once every copy of the pipe's write end is closed, kill
 * the brokers the pidfiles name (if they still run from this directory)
 * and remove it. Its own session, so a terminal ^C does not kill it. */
static void start_guard(struct fx_apache *k)
{
        static const char script[] = "cat >/dev/null\n"
                                     "for f in \"$1\"/node*/pid; do\n"
                                     "  [ -f \"$f\" ] || continue\n"
                                     "  p=$(cat \"$f\")\n"
                                     "  [ -n \"$p\" ] && grep -qsF -- \"$1/\" \"/proc/$p/cmdline\" "
                                     "&& kill -9 \"$p\"\n"
                                     "done\n"
                                     "[ \"$2\" = 1 ] || rm -rf \"$1\"\n";
        const char *argv[] = {
            "/bin/sh", "-c", script, "fx-kafka-guard", k->dir, keep_dirs() ? "1" : "0", NULL};
        struct fx_spawn_opts o = {.in = -1, .out = -1, .err = -1, .new_session = 1};
        char errbuf[256];
        int p[2];

        ck_assert_msg(pipe2(p, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
        o.in = p[0];
        k->guard_pid = fx_spawn(argv, &o, errbuf, sizeof(errbuf));
        close(p[0]);
        k->guard_fd = p[1];
        ck_assert_msg(k->guard_pid > 0, "%s", errbuf);
}

/* ---- configuration ---- */

static void append(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t size, const char *fmt, ...)
{
        size_t len = strlen(buf);
        va_list ap;
        int w;

        va_start(ap, fmt);
        w = vsnprintf(buf + len, size - len, fmt, ap);
        va_end(ap);
        ck_assert_msg(w >= 0 && (size_t)w < size - len, "broker configuration too long");
}

/* server.properties of one node: the fixture's settings, then the test's
 * (a later line wins in a Java properties file). */
static void write_props(const struct fx_apache *k, const struct ak_node *nd,
                        const char *const *extra)
{
        char *p = calloc(1, 16384);
        const size_t sz = 16384;
        int rf = k->n, min_isr = k->n > 1 ? 2 : 1;

        ck_assert_msg(p != NULL, "out of memory");
        append(p, sz,
               "# written by tests/fixture_apache_kafka.c\n"
               "process.roles=broker,controller\n"
               "node.id=%d\n"
               "controller.listener.names=CONTROLLER\n"
               "inter.broker.listener.name=PLAINTEXT\n"
               "controller.quorum.voters=",
               nd->id);
        for (int i = 0; i < k->n; i++)
                append(p, sz, "%s%d@127.0.0.1:%d", i ? "," : "", k->nodes[i].id,
                       k->nodes[i].ctl_port);
        append(p, sz, "\nlisteners=PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d", nd->port,
               nd->ctl_port);
        for (int i = 0; i < k->n_listeners; i++)
                append(p, sz, ",%s://127.0.0.1:%d", k->listener_name[i], nd->extra_port[i]);
        append(p, sz, "\nadvertised.listeners=PLAINTEXT://127.0.0.1:%d", nd->port);
        for (int i = 0; i < k->n_listeners; i++)
                append(p, sz, ",%s://127.0.0.1:%d", k->listener_name[i], nd->extra_port[i]);
        append(p, sz, "\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT");
        for (int i = 0; i < k->n_listeners; i++)
                append(p, sz, ",%s:%s", k->listener_name[i], k->listener_proto[i]);
        append(p, sz,
               "\nlog.dirs=%s/data\n"
               /* Tests create their topics, as the relay cannot (it sets
                * allow.auto.create.topics=false); a case that wants the
                * broker to create them says so in its properties. */
               "auto.create.topics.enable=false\n"
               "num.partitions=1\n"
               "default.replication.factor=%d\n"
               "min.insync.replicas=%d\n"
               "offsets.topic.replication.factor=%d\n"
               "offsets.topic.num.partitions=4\n"
               "transaction.state.log.replication.factor=%d\n"
               "transaction.state.log.min.isr=%d\n"
               "transaction.state.log.num.partitions=4\n"
               "group.initial.rebalance.delay.ms=0\n"
               "unclean.leader.election.enable=false\n"
               /* A killed broker is fenced, and its partitions get new
                * leaders, after 4 s instead of 9 s. */
               "broker.session.timeout.ms=4000\n"
               "broker.heartbeat.interval.ms=1000\n",
               nd->dir, rf, min_isr, rf, rf, min_isr);
        for (size_t i = 0; extra && extra[i]; i++)
                append(p, sz, "%s\n", extra[i]);
        write_file(nd->props, p);
        free(p);
}

/* Kafka's storage tool, as bin/kafka-storage.sh runs it: format the node's
 * log directory for the cluster (a static quorum: the voters are in
 * controller.quorum.voters). */
static void format_node(const struct fx_apache *k, const struct ak_node *nd,
                        const char *const *format_args)
{
        const char *args[AK_MAX_ARGS] = {"format", "-t", k->cluster_id, "-c", nd->props};
        size_t n = 5;
        char *out = NULL;
        int rc;

        for (size_t i = 0; format_args && format_args[i]; i++) {
                ck_assert_msg(n < AK_MAX_ARGS - 1, "too many format arguments");
                args[n++] = format_args[i];
        }
        args[n] = NULL;
        rc = ak_run_tool(k, "kafka.tools.StorageTool", args, &out, AK_TOOL_TIMEOUT_MS);
        ck_assert_msg(rc == 0, "kafka-storage format of broker %d exited %d: %.1500s", nd->id, rc,
                      out ? out : "");
        free(out);
}

/* ---- metadata ---- */

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
        (void)rk;
        (void)level;
        (void)fac;
        (void)buf;
}

/* A librdkafka handle (a producer: it only sends admin and metadata
 * requests here) for the given bootstrap list. */
rd_kafka_t *ak_client(const char *bootstraps)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char errstr[256];
        rd_kafka_t *rk;

        rd_kafka_conf_set_log_cb(conf, quiet_log);
        if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, errstr, sizeof(errstr)) ||
            rd_kafka_conf_set(conf, "allow.auto.create.topics", "false", errstr, sizeof(errstr)) ||
            rd_kafka_conf_set(conf, "reconnect.backoff.max.ms", "200", errstr, sizeof(errstr))) {
                rd_kafka_conf_destroy(conf);
                ck_abort_msg("kafka client: %s", errstr);
        }
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk) {
                rd_kafka_conf_destroy(conf);
                ck_abort_msg("kafka client: %s", errstr);
        }
        return rk;
}

/* Whether the node answers metadata itself, sees every broker, and every
 * partition it knows of has a leader. */
static int node_ready(const struct fx_apache *k, rd_kafka_t *rk, const struct ak_node *nd)
{
        const struct rd_kafka_metadata *md = NULL;
        int ok;

        if (rd_kafka_metadata(rk, 1, NULL, &md, AK_MD_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
                return 0;
        ok = md->orig_broker_id == nd->id && md->broker_cnt == k->n;
        for (int t = 0; ok && t < md->topic_cnt; t++)
                for (int p = 0; ok && p < md->topics[t].partition_cnt; p++)
                        ok = md->topics[t].partitions[p].leader >= 0;
        rd_kafka_metadata_destroy(md);
        return ok;
}

/* Enough of a node's logs to hold its whole start. */
#define AK_START_LOG_BYTES (4 << 20)

/* Whether a node exited because it could not bind one of its ports:
 * another process took it between fx_free_port and the broker's bind. A
 * quorum waits for every voter, so any node of the cluster counts. */
static int port_taken_by_other(const struct fx_apache *k)
{
        for (int i = 0; i < k->n; i++) {
                const struct ak_node *nd = &k->nodes[i];
                char path[192], *logs;
                int taken;

                if (ak_node_alive(nd, ak_node_pid(nd)))
                        continue;
                /* The whole start, not node_logs' tails: the shutdown
                 * that follows the failed bind logs pages after it. */
                snprintf(path, sizeof(path), "%s/server.log", nd->dir);
                for (int f = 0; f < 2; f++) {
                        logs = fx_file_tail(f == 0 ? path : nd->stdout_log, AK_START_LOG_BYTES);
                        taken = logs != NULL && strstr(logs, "Address already in use") != NULL;
                        free(logs);
                        if (taken)
                                return 1;
                }
        }
        return 0;
}

/* Waits until each node in `which` (NULL: all) is ready; aborts with its
 * logs if one dies or the deadline passes, except that with port_taken a
 * node that exited for want of a port returns -1 (and sets it) instead. */
static int wait_ready_or_port(const struct fx_apache *k, const struct ak_node *only,
                              int *port_taken);

static void wait_ready(const struct fx_apache *k, const struct ak_node *only)
{
        (void)wait_ready_or_port(k, only, NULL);
}

static int wait_ready_or_port(const struct fx_apache *k, const struct ak_node *only,
                              int *port_taken)
{
        int64_t deadline = fx_now_ms() + AK_START_TIMEOUT_MS;

        for (int i = 0; i < k->n; i++) {
                const struct ak_node *nd = &k->nodes[i];
                char b[64];
                rd_kafka_t *rk;

                if (only && only != nd)
                        continue;
                snprintf(b, sizeof(b), "127.0.0.1:%d", nd->port);
                rk = ak_client(b);
                while (!node_ready(k, rk, nd)) {
                        if (port_taken != NULL && port_taken_by_other(k)) {
                                rd_kafka_destroy(rk);
                                *port_taken = 1;
                                return -1;
                        }
                        if (!ak_node_alive(nd, ak_node_pid(nd)) || fx_now_ms() >= deadline) {
                                char *logs = node_logs(nd);
                                int alive = ak_node_alive(nd, ak_node_pid(nd));

                                rd_kafka_destroy(rk);
                                ck_abort_msg("Apache Kafka broker %d %s\n%s", nd->id,
                                             alive ? "not ready in time" : "exited", logs);
                        }
                        poll(NULL, 0, 100);
                }
                rd_kafka_destroy(rk);
        }
        return 0;
}

/* ---- brokers ---- */

static void node_spawn(const struct fx_apache *k, const struct ak_node *nd)
{
        static const char wrapper[] = "echo $$ >\"$0\" && exec \"$@\"";
        const char *argv[AK_MAX_ARGS];
        const char *opts = getenv("OUTBOX_TEST_KAFKA_JVM_OPTS");
        char logs_dir[200], log4j[600], errbuf[256], *opts_copy = NULL;
        struct fx_spawn_opts o = {.in = -1, .new_session = 1};
        size_t n = 0;
        pid_t pid;
        int fd;

        snprintf(logs_dir, sizeof(logs_dir), "-Dkafka.logs.dir=%s", nd->dir);
        snprintf(log4j, sizeof(log4j),
                 "-Dlog4j2.configurationFile=%s/tests/kafka/log4j2.properties", OUTBOX_SOURCE_DIR);
        argv[n++] = "/bin/sh";
        argv[n++] = "-c";
        argv[n++] = wrapper;
        argv[n++] = nd->pidfile;
        argv[n++] = k->java;
        n += split_words(opts && *opts ? opts : AK_JVM_OPTS, &opts_copy, argv + n, 32);
        argv[n++] = "-Djava.awt.headless=true";
        argv[n++] = logs_dir;
        argv[n++] = log4j;
        for (size_t i = 0; k->jvm_options && k->jvm_options[i]; i++) {
                ck_assert_msg(n < AK_MAX_ARGS - 5, "too many JVM options");
                argv[n++] = k->jvm_options[i];
        }
        argv[n++] = "-cp";
        argv[n++] = k->classpath;
        argv[n++] = "kafka.Kafka";
        argv[n++] = nd->props;
        argv[n] = NULL;
        unlink(nd->pidfile);
        fd = open(nd->stdout_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        ck_assert_msg(fd >= 0, "%s: %s", nd->stdout_log, strerror(errno));
        o.out = o.err = fd;
        /* No parent-death signal: a broker restarted by a Check child must
         * outlive it; the watchdog and fx_apache_stop end it. */
        pid = fx_spawn(argv, &o, errbuf, sizeof(errbuf));
        close(fd);
        free(opts_copy);
        ck_assert_msg(pid > 0, "%s", errbuf);
        /* The wrapper writes the pid before it becomes the JVM. */
        for (int64_t deadline = fx_now_ms() + 10000; ak_node_pid(nd) != pid;) {
                ck_assert_msg(fx_now_ms() < deadline, "broker %d did not start", nd->id);
                poll(NULL, 0, 5);
        }
}

/* How many times a cluster is started on new ports when one was taken. */
#define AK_PORT_ATTEMPTS 3

/* New ports for every node, and the bootstrap lists that name them. */
static void pick_ports(struct fx_apache *k)
{
        size_t len = 0;

        k->bootstraps[0] = '\0';
        for (int l = 0; l < k->n_listeners; l++)
                k->listener_bootstraps[l][0] = '\0';
        for (int i = 0; i < k->n; i++) {
                struct ak_node *nd = &k->nodes[i];

                nd->port = fx_free_port();
                nd->ctl_port = fx_free_port();
                for (int l = 0; l < k->n_listeners; l++)
                        nd->extra_port[l] = fx_free_port();
                len += (size_t)snprintf(k->bootstraps + len, sizeof(k->bootstraps) - len,
                                        "%s127.0.0.1:%d", i ? "," : "", nd->port);
                for (int l = 0; l < k->n_listeners; l++) {
                        char *b = k->listener_bootstraps[l];

                        snprintf(b + strlen(b), sizeof(k->listener_bootstraps[l]) - strlen(b),
                                 "%s127.0.0.1:%d", i ? "," : "", nd->extra_port[l]);
                }
        }
}

struct fx_apache *fx_apache_start(int nodes)
{
        struct fx_apache_opts o = {.nodes = nodes};

        return fx_apache_start_opts(&o);
}

struct fx_apache *fx_apache_start_opts(const struct fx_apache_opts *o)
{
        struct fx_apache *k = calloc(1, sizeof(*k));
        size_t nj = 0;

        ck_assert_msg(k != NULL, "out of memory");
        k->n = o->nodes > 0 ? o->nodes : 1;
        ck_assert_msg(k->n == 1 || k->n == 3, "fx_apache_start: 1 or 3 nodes, not %d", k->n);
        k->guard_fd = -1;
        java_path(k->java, sizeof(k->java));
        libs_dir(k);
        random_cluster_id(k->cluster_id, sizeof(k->cluster_id));
        for (int i = 0; i < FX_APACHE_MAX_LISTENERS && o->listeners[i].name; i++) {
                ck_assert_msg(o->listeners[i].protocol != NULL, "listener %s: no protocol",
                              o->listeners[i].name);
                snprintf(k->listener_name[i], sizeof(k->listener_name[i]), "%s",
                         o->listeners[i].name);
                snprintf(k->listener_proto[i], sizeof(k->listener_proto[i]), "%s",
                         o->listeners[i].protocol);
                k->n_listeners++;
        }
        while (o->jvm_options && o->jvm_options[nj])
                nj++;
        k->jvm_options = calloc(nj + 1, sizeof(*k->jvm_options));
        ck_assert_msg(k->jvm_options != NULL, "out of memory");
        for (size_t i = 0; i < nj; i++)
                k->jvm_options[i] = xstrdup(o->jvm_options[i]);
        snprintf(k->dir, sizeof(k->dir), "/tmp/fxkafka-XXXXXX");
        ck_assert_msg(mkdtemp(k->dir) != NULL, "mkdtemp: %s", strerror(errno));
        /* From here on an abort leaves the cleanup to the watchdog. */
        start_guard(k);
        for (int i = 0; i < k->n; i++) {
                struct ak_node *nd = &k->nodes[i];
                char d[128];

                nd->id = i + 1;
                /* From a local copy: GCC's -Wrestrict takes nd->dir as
                 * overlapping nd->props (one struct). */
                snprintf(d, sizeof(d), "%s/node%d", k->dir, nd->id);
                snprintf(nd->dir, sizeof(nd->dir), "%s", d);
                snprintf(nd->props, sizeof(nd->props), "%s/server.properties", d);
                snprintf(nd->pidfile, sizeof(nd->pidfile), "%s/pid", d);
                snprintf(nd->stdout_log, sizeof(nd->stdout_log), "%s/stdout.log", d);
                ck_assert_msg(mkdir(nd->dir, 0755) == 0, "mkdir %s: %s", nd->dir, strerror(errno));
        }
        /* A port fx_free_port found free may be taken by another process
         * before the broker binds it (the CI runs tests side by side): the
         * cluster is then started again on new ports. */
        for (int attempt = 1;; attempt++) {
                int taken = 0;

                pick_ports(k);
                for (int i = 0; i < k->n; i++) {
                        write_props(k, &k->nodes[i], o->properties);
                        format_node(k, &k->nodes[i], o->format_args);
                }
                /* All at once: with three voters none is ready before a quorum. */
                for (int i = 0; i < k->n; i++)
                        node_spawn(k, &k->nodes[i]);
                if (wait_ready_or_port(k, NULL, attempt < AK_PORT_ATTEMPTS ? &taken : NULL) == 0)
                        return k;
                fprintf(stderr,
                        "Apache Kafka: a port was taken before a broker bound it; "
                        "starting again on new ports (attempt %d of %d)\n",
                        attempt + 1, AK_PORT_ATTEMPTS);
                for (int i = 0; i < k->n; i++) {
                        char data[200];

                        node_kill(&k->nodes[i]);
                        snprintf(data, sizeof(data), "%s/data", k->nodes[i].dir);
                        fx_tmpdir_remove(data);
                }
        }
}

void fx_apache_stop(struct fx_apache *k)
{
        int status;

        if (!k)
                return;
        for (int i = 0; i < k->n; i++)
                node_kill(&k->nodes[i]);
        if (!keep_dirs())
                fx_rm_rf(k->dir);
        else
                fprintf(stderr, "fixture: Apache Kafka directories kept in %s\n", k->dir);
        if (k->guard_fd >= 0)
                close(k->guard_fd);
        if (k->guard_pid > 0 && fx_wait_pid(k->guard_pid, 10000, &status) == 0) {
                kill(-k->guard_pid, SIGKILL); /* a forked test still holds the pipe */
                waitpid(k->guard_pid, NULL, 0);
        }
        for (size_t i = 0; k->jvm_options[i]; i++)
                free(k->jvm_options[i]);
        free(k->jvm_options);
        free(k);
}

const char *fx_apache_bootstraps(const struct fx_apache *k)
{
        return k->bootstraps;
}

const char *fx_apache_listener_bootstraps(const struct fx_apache *k, const char *listener)
{
        for (int i = 0; i < k->n_listeners; i++)
                if (strcmp(k->listener_name[i], listener) == 0)
                        return k->listener_bootstraps[i];
        ck_abort_msg("no listener %s", listener);
}

const char *fx_apache_dir(const struct fx_apache *k)
{
        return k->dir;
}

int fx_apache_nodes(const struct fx_apache *k)
{
        return k->n;
}

static struct ak_node *node_of(struct fx_apache *k, int node)
{
        ck_assert_msg(node >= 1 && node <= k->n, "no broker %d (1 to %d)", node, k->n);
        return &k->nodes[node - 1];
}

int fx_apache_alive(struct fx_apache *k, int node)
{
        struct ak_node *nd = node_of(k, node);

        return ak_node_alive(nd, ak_node_pid(nd));
}

void fx_apache_kill(struct fx_apache *k, int node)
{
        node_kill(node_of(k, node));
}

void fx_apache_restart(struct fx_apache *k, int node)
{
        struct ak_node *nd = node_of(k, node);

        node_kill(nd);
        node_spawn(k, nd);
        wait_ready(k, nd);
}

int fx_apache_ensure_up(struct fx_apache *k)
{
        int restarted = 0;

        /* All at once: a quorum of controllers may need more than one. */
        for (int i = 0; i < k->n; i++) {
                struct ak_node *nd = &k->nodes[i];

                if (!ak_node_alive(nd, ak_node_pid(nd))) {
                        node_spawn(k, nd);
                        restarted++;
                }
        }
        if (restarted)
                wait_ready(k, NULL);
        return restarted;
}
