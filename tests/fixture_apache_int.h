/* fixture_apache_int: what the Apache Kafka fixture's two files share
 * (fixture_apache_kafka.c: the brokers; fixture_apache_admin.c: topics and
 * reads); tests use fixture.h. */
#ifndef OUTBOX_TEST_FIXTURE_APACHE_INT_H
#define OUTBOX_TEST_FIXTURE_APACHE_INT_H

#include <sys/types.h>

#include <librdkafka/rdkafka.h>

#include "fixture.h"

#define AK_START_TIMEOUT_MS 120000 /* JVMs on two busy cores */
#define AK_TOOL_TIMEOUT_MS  120000
#define AK_MD_TIMEOUT_MS    2000
#define AK_TAIL_BYTES       1200
/* Small heaps and the serial collector: a test broker holds little, and
 * the machine has two cores for everything. OUTBOX_TEST_KAFKA_JVM_OPTS
 * replaces these (space-separated). */
#define AK_JVM_OPTS      "-Xms256m -Xmx512m -XX:+UseSerialGC"
#define AK_TOOL_JVM_OPTS "-Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"
#define AK_MAX_ARGS      96

struct ak_node {
        int id;       /* node.id, 1..n */
        int port;     /* PLAINTEXT listener: the tests and the brokers among themselves */
        int ctl_port; /* CONTROLLER listener */
        int extra_port[FX_APACHE_MAX_LISTENERS];
        char dir[128];
        char props[160];
        char pidfile[160];
        char stdout_log[160];
};

struct fx_apache {
        int n;
        char dir[64];
        char libs[512];
        char classpath[520];
        char java[256];
        char cluster_id[32];
        struct ak_node nodes[FX_APACHE_MAX_NODES];
        char bootstraps[256];
        int n_listeners;
        char listener_name[FX_APACHE_MAX_LISTENERS][32];
        char listener_proto[FX_APACHE_MAX_LISTENERS][32];
        char listener_bootstraps[FX_APACHE_MAX_LISTENERS][256];
        char **jvm_options; /* NULL-terminated copy of the options */
        int guard_fd;
        pid_t guard_pid;
};

/* The pid in a node's pidfile, or 0. */
pid_t ak_node_pid(const struct ak_node *nd);
/* Whether pid runs (not a zombie) from this node's directory. */
int ak_node_alive(const struct ak_node *nd, pid_t pid);
/* A quiet librdkafka handle for admin and metadata requests. */
rd_kafka_t *ak_client(const char *bootstraps);
/* java -cp <jars> cls args... to completion; exit code, output in *out. */
int ak_run_tool(const struct fx_apache *k, const char *cls, const char *const args[], char **out,
                int timeout_ms);

#endif
