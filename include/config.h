/* config: every setting of outbox-relay, read from one table that drives
 * flag and environment parsing, validation, --help and the README table.
 * Defaults, then parse (env, then flags override), then validate: nothing is
 * contacted before config_validate() passes. */
#ifndef OUTBOX_CONFIG_H
#define OUTBOX_CONFIG_H

#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>

#include "compiler.h"
#include "log.h"

/* Rows one Kafka transaction carries at most with --exactly-once: its
 * progress record names each row (about 60 bytes) and must stay well under
 * Kafka's 1 MB message limit, so --batch-size is bounded by it too. */
#define CONFIG_TXN_MAX_ROWS 8000

/* A "name=value" pair kept in order (routing rules, librdkafka properties). */
struct config_kv {
        char *name;
        char *value;
        int from_file; /* value read from a file: a secret, never echoed */
};

struct config {
        char *database_url;         /* libpq conninfo or postgres:// URL; holds secrets */
        char *database_url_file;    /* where database_url was read from; NULL: not a file */
        char *kafka_brokers;        /* bootstrap.servers */
        char *schema;               /* schema holding the outbox tables */
        char *default_topic;        /* topic for rows with NULL topic and no matching route */
        char *allowed_topics;       /* comma-separated topic patterns rows may use; NULL: any */
        char *instance_id;          /* shown in status and logs; default hostname:pid */
        int batch_size;             /* rows per fetch */
        int pipeline_depth;         /* batches in flight at once */
        long long memory_budget;    /* bytes of fetched rows held at once (about) */
        int poll_interval_ms;       /* safety-net poll when no notification arrives */
        int retry_base_ms;          /* first retry delay */
        int retry_max_ms;           /* cap on the retry delay */
        int max_attempts;           /* failed attempts before a row is dead-lettered */
        int shutdown_timeout_ms;    /* grace for in-flight deliveries on SIGTERM */
        int reconnect_max_ms;       /* cap on database reconnect backoff */
        int statement_timeout_ms;   /* statement_timeout of the relay's sessions */
        int lock_timeout_ms;        /* lock_timeout of the relay's sessions */
        char *http_listen;          /* HOST:PORT of /metrics, /healthz, /readyz; NULL: off */
        int busy_poll_ms;           /* fetch interval while events keep coming */
        int mark_delay_ms;          /* longest wait to mark batches sent together */
        int idle_after_ms;          /* quiet time before waiting for notifications again */
        int busy_min_rate;          /* events/s that start polling (0: the first rows) */
        int leader_poll_ms;         /* how often a standby tries to take the leader lock */
        int retention_s;            /* delete sent rows older than this; 0: keep */
        int exactly_once;           /* publish in Kafka transactions with progress records */
        char *transactional_id;     /* NULL: outbox-relay.<schema> (kafka_conf_transactional_id) */
        char *progress_topic;       /* compacted topic of progress records */
        int progress_no_create;     /* never create a missing progress topic */
        int progress_replication;   /* its replication factor if created; -1: brokers' */
        int transaction_timeout_ms; /* Kafka transaction.timeout.ms */
        char *envelope;             /* "plain" or "cloudevents" (config_cloudevents) */
        char *cloudevents_source;   /* NULL: /outbox-relay/<database>/<schema> */
        char *dead_letter_topic;    /* also announce dead letters there; NULL: no */
        char *grant_writer;         /* migrate: role to grant INSERT on events; NULL: none */
        char *grant_relay;          /* migrate: role to grant the relay's DML; NULL: none */
        char *outboxes_file;        /* JSON list of outboxes (config_outboxes_load); NULL: one */
        enum log_level log_level;
        struct config_kv *routes; /* event_type pattern -> topic, in given order */
        size_t n_routes;
        struct config_kv *kafka_props; /* passed to rd_kafka_conf_set unchanged */
        size_t n_kafka_props;

        /* Filters of the `replay` and `dlq` commands (0 / NULL when unset). */
        long long replay_from_id, replay_to_id;
        char *replay_since, *replay_until; /* timestamps, as PostgreSQL reads them */
        char *replay_topic, *replay_key;   /* --topic also filters dlq */
        int dry_run;
        long long id; /* dlq requeue --id */
        int all;      /* dlq requeue --all */
        int limit;    /* dlq list --limit */
        int json;     /* status / dlq list --json */
        /* Remaining positional arguments after the command, not owned. */
        int n_args;
        char **args;
};

/* What a command needs; config_validate checks the matching required settings. */
enum config_need { CONFIG_NEED_DB = 1, CONFIG_NEED_KAFKA = 2 };

/* The commands, as bits: which settings a command reads (for its --help). */
enum config_command {
        CONFIG_CMD_RUN = 1,
        CONFIG_CMD_MIGRATE = 2,
        CONFIG_CMD_REPLAY = 4,
        CONFIG_CMD_STATUS = 8,
        CONFIG_CMD_DLQ = 16,
        CONFIG_CMD_ALL = 31,
        /* The commands that take --outboxes-file. */
        CONFIG_CMD_OUTBOXES = CONFIG_CMD_RUN | CONFIG_CMD_MIGRATE | CONFIG_CMD_STATUS
};

struct config *config_new(void) OUTBOX_MUST_CHECK;
void config_free(struct config *cfg);

/* Reads OUTBOX_* environment variables, then argv flags (which win), with
 * getopt_long: --name=VALUE, --name VALUE, -X VALUE, -XVALUE; exact names
 * only; "--" ends the options. argv[0] is the first flag (the command has
 * been taken off already); arguments that are not options go to cfg->args
 * in order. --help and -h are passed over (see config_wants_help).
 * Not thread-safe: getopt_long keeps its state in globals.
 * Returns 0, or -1 with errbuf naming the setting that was wrong. */
int config_parse(struct config *cfg, int argc, char **argv, char *errbuf,
                 size_t errsz) OUTBOX_MUST_CHECK;

/* Checks ranges and cross-field rules, parses the database URL and every
 * librdkafka property offline. Returns 0, or -1 with one line in errbuf. */
int config_validate(const struct config *cfg, int need, char *errbuf,
                    size_t errsz) OUTBOX_MUST_CHECK;

/* One outbox of --outboxes-file: its name and its whole configuration. */
struct config_outbox {
        char *name;
        struct config *cfg;
};

/* Reads cfg->outboxes_file (cfg already parsed and validated for the
 * process): for each outbox, the environment and argc/argv (as given to
 * config_parse) again, then the outbox's keys over them, then
 * config_validate with need. Refuses an unknown key, a process-wide one,
 * a bad, empty or duplicate name, a bad value, two outboxes on one
 * database and schema, and two with one transactional id; each outbox's
 * transactional id defaults to outbox-relay.<name>. The outboxes' configs
 * have no --http-listen: the process serves HTTP once. Not thread-safe
 * (config_parse). Returns 0 with *out (free with config_outboxes_free),
 * or -1 with one line in errbuf naming the file, the outbox and the key,
 * never a value that may be secret. */
int config_outboxes_load(const struct config *cfg, int argc, char **argv, int need,
                         struct config_outbox **out, size_t *n, char *errbuf,
                         size_t errsz) OUTBOX_MUST_CHECK;
void config_outboxes_free(struct config_outbox *o, size_t n);

/* Whether --envelope is cloudevents. */
int config_cloudevents(const struct config *cfg);
/* The ce_source of --envelope cloudevents: --cloudevents-source, or
 * /outbox-relay/<database>/<schema> (the database percent-encoded). Writes
 * it to buf, cut at bufsz. */
const char *config_cloudevents_source(const struct config *cfg, char *buf, size_t bufsz);

/* Parses an --http-listen value, IPV4:PORT or [IPV6]:PORT, into addr (a
 * sockaddr_in or sockaddr_in6) and *len. Returns 0, or -1 with errbuf
 * naming --http-listen. */
int config_listen_addr(const char *v, struct sockaddr_storage *addr, socklen_t *len, char *errbuf,
                       size_t errsz) OUTBOX_MUST_CHECK;

/* 1 when argv (as for config_parse) holds --help or -h as an option, not
 * as the value of another and not after "--": even where config_parse
 * would fail, so that the help of a command is always reachable. */
int config_wants_help(int argc, char **argv);

/* The options read by any of the commands (CONFIG_CMD_* bits). */
void config_print_help(FILE *out, unsigned commands);
/* The README's configuration table, generated from the same table. */
void config_print_markdown(FILE *out);

#endif
