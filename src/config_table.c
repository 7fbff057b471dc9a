/* config_table: every setting of outbox-relay, once (like PgBouncer's
 * bouncer_params[]): its flag, variable, type, range, default and help.
 * Parsing, validation, --help, getopt_long's options and the README table
 * are all made from it, so a setting cannot be documented one way and
 * parsed another. */
#include <limits.h>

#include "config_table.h"

const struct setting config_settings[] = {
    {"database-url", 0, "OUTBOX_DATABASE_URL", T_SECRET, OFF(database_url), 0, 0, NULL,
     F_PER_OUTBOX, C_ALL, CONFIG_NEED_DB, "URL",
     "PostgreSQL connection: a libpq conninfo string (\"host=db dbname=app\") or a "
     "postgres:// URL. It may hold a password, so it is never logged or echoed."},
    {"database-url-file", 0, "OUTBOX_DATABASE_URL_FILE", T_FILE, OFF(database_url_file), 0, 0, NULL,
     F_PER_OUTBOX, C_ALL, 0, "PATH",
     "Read --database-url from this file instead (a mounted secret, kept out of the "
     "environment and argv): its content less one trailing newline, at most 64 KiB. Giving "
     "both forms in the environment, or both as flags, is an error; a flag of either form "
     "overrides the environment's."},
    {"schema", 0, "OUTBOX_SCHEMA", T_STR, OFF(schema), 0, 0, "outbox", F_PER_OUTBOX, C_ALL, 0,
     "NAME", "Schema holding the outbox tables: a lowercase SQL identifier."},
    {"outboxes-file", 0, "OUTBOX_OUTBOXES_FILE", T_STR, OFF(outboxes_file), 0, 0, NULL, 0,
     C_RUN | C_MIGRATE | C_STATUS, 0, "PATH",
     "Serve several outboxes from one process: a JSON file holding an array of objects, each "
     "{\"name\": \"NAME\", ...} with any setting marked \"Per outbox\" by its long name "
     "(\"schema\", \"database-url-file\", \"default-topic\", ...) as a JSON string, number "
     "or boolean (a list of strings for route and kafka-property). A setting an outbox does not "
     "give is the process's (flag or variable). Each outbox has its own database sessions, "
     "leader lock, pipeline, retries, dead letters and Kafka producer; metrics carry "
     "outbox=\"NAME\". run publishes all of them, migrate and status go through each. "
     "See docs/outboxes.md."},
    {"log-level", 0, "OUTBOX_LOG_LEVEL", T_LEVEL, OFF(log_level), 0, 0, "info", 0, C_ALL, 0,
     "LEVEL", "Lowest level logged as JSON lines on stderr: debug, info, warn or error."},
    {"kafka-brokers", 0, "OUTBOX_KAFKA_BROKERS", T_STR, OFF(kafka_brokers), 0, 0, NULL,
     F_PER_OUTBOX, C_RUN, CONFIG_NEED_KAFKA, "HOST:PORT,...", "Kafka bootstrap servers."},
    {"kafka-property", 'X', KPROP_ENV_PREFIX "<NAME>", T_KPROP, OFF(kafka_props), 0, 0, NULL,
     F_PER_OUTBOX, C_RUN, 0, "NAME=VALUE",
     "librdkafka producer property (e.g. security.protocol=SASL_SSL); repeatable, and wins over "
     "the environment. The relay itself keeps enable.idempotence=true and acks=all and sets "
     "bootstrap.servers from --kafka-brokers. It sets allow.auto.create.topics=false, so that "
     "a row cannot create a topic; -X allow.auto.create.topics=true gives that back where "
     "brokers allow it."},
    {"kafka-property-file", 0, KPROP_ENV_PREFIX "<NAME>" KPROP_FILE_SUFFIX, T_KFILE,
     OFF(kafka_props), 0, 0, NULL, F_PER_OUTBOX, C_RUN, 0, "NAME=PATH",
     "librdkafka producer property read from a file (e.g. sasl.password=/run/secrets/kafka): "
     "its content less one trailing newline, never shown in errors. Repeatable; the variable "
     "form is OUTBOX_RDKAFKA_SASL_PASSWORD_FILE=PATH (no librdkafka property ends in \"file\"). "
     "Setting one property by two variables is an error; a flag of either form overrides the "
     "environment's."},
    {"route", 0, "OUTBOX_ROUTES", T_ROUTE, OFF(routes), 0, 0, NULL, F_PER_OUTBOX, C_RUN, 0,
     "PATTERN=TOPIC",
     "Topic for rows whose topic column is NULL, chosen by event_type: an exact type "
     "(order.created=orders), a prefix (user.*=users) or * for all. An exact rule wins, then "
     "the longest prefix. Repeatable; the variable takes a comma-separated list."},
    {"default-topic", 0, "OUTBOX_DEFAULT_TOPIC", T_STR, OFF(default_topic), 0, 0, NULL,
     F_PER_OUTBOX, C_RUN, 0, "TOPIC",
     "Topic for rows with a NULL topic that no route matches; without it such rows fail "
     "permanently."},
    {"allowed-topics", 0, "OUTBOX_ALLOWED_TOPICS", T_STR, OFF(allowed_topics), 0, 0, NULL,
     F_PER_OUTBOX, C_RUN, 0, "PATTERN,...",
     "Topics rows may be published to, as comma-separated patterns with * and ? (e.g. "
     "orders,billing.*); a row naming another topic is dead-lettered at once with the reason. "
     "Whatever this says, names starting with __ (Kafka's internal topics) and the "
     "--progress-topic are always refused. Unset: any other topic."},
    {"batch-size", 0, "OUTBOX_BATCH_SIZE", T_INT, OFF(batch_size), 1, 100000, "1000", F_PER_OUTBOX,
     C_RUN, 0, "N",
     "Rows fetched from the outbox per batch; at most 8000 with --exactly-once (a transaction's "
     "progress record names each row and must fit one Kafka message)."},
    {"pipeline-depth", 0, "OUTBOX_PIPELINE_DEPTH", T_INT, OFF(pipeline_depth), 1, 64, "4",
     F_PER_OUTBOX, C_RUN, 0, "N", "Batches being published to Kafka at once."},
    {"memory-budget-bytes", 0, "OUTBOX_MEMORY_BUDGET_BYTES", T_ID, OFF(memory_budget), 1048576,
     1099511627776LL, "67108864", F_PER_OUTBOX, C_RUN, 0, "BYTES",
     "Bytes of rows the relay holds in memory at once, from their fetch until they are marked "
     "sent: fetches ask for no more rows than fit (by the rows' sizes, estimated in the query) "
     "and wait while the budget is spent. At least one row is always fetched, so a single row "
     "larger than the budget still goes out. The default, 64 MiB, leaves room in the Helm "
     "chart's 256Mi memory limit: count about 48 MB for the process besides."},
    {"poll-interval-ms", 0, "OUTBOX_POLL_INTERVAL_MS", T_INT, OFF(poll_interval_ms), 10, 3600000,
     "1000", F_PER_OUTBOX, C_RUN, 0, "MS",
     "Look for due rows this often even when no notification arrives."},
    {"retry-base-ms", 0, "OUTBOX_RETRY_BASE_MS", T_INT, OFF(retry_base_ms), 1, 86400000, "1000",
     F_PER_OUTBOX, C_RUN, 0, "MS",
     "Delay before the first retry of a row that failed to publish; it doubles with each "
     "attempt, with jitter."},
    {"retry-max-ms", 0, "OUTBOX_RETRY_MAX_MS", T_INT, OFF(retry_max_ms), 1, 86400000, "300000",
     F_PER_OUTBOX, C_RUN, 0, "MS", "Longest retry delay; at least --retry-base-ms."},
    {"max-attempts", 0, "OUTBOX_MAX_ATTEMPTS", T_INT, OFF(max_attempts), 1, 1000000, "10",
     F_PER_OUTBOX, C_RUN, 0, "N",
     "Failed attempts after which a row is moved to the dead letters."},
    {"shutdown-timeout-ms", 0, "OUTBOX_SHUTDOWN_TIMEOUT_MS", T_INT, OFF(shutdown_timeout_ms), 0,
     3600000, "10000", 0, C_RUN, 0, "MS",
     "On SIGTERM or SIGINT, how long to wait for deliveries in flight."},
    {"reconnect-max-ms", 0, "OUTBOX_RECONNECT_MAX_MS", T_INT, OFF(reconnect_max_ms), 100, 3600000,
     "30000", F_PER_OUTBOX, C_RUN, 0, "MS", "Longest wait between database reconnect attempts."},
    {"statement-timeout-ms", 0, "OUTBOX_STATEMENT_TIMEOUT_MS", T_INT, OFF(statement_timeout_ms),
     100, 86400000, "30000", F_PER_OUTBOX, C_RUN | C_STATUS, 0, "MS",
     "PostgreSQL's statement_timeout for the relay's sessions: any statement of the relay, "
     "setup included, that runs longer fails and is retried. Keep it above the slowest "
     "fetch, mark and count of pending rows. status's counts stop there too."},
    {"lock-timeout-ms", 0, "OUTBOX_LOCK_TIMEOUT_MS", T_INT, OFF(lock_timeout_ms), 100, 86400000,
     "5000", F_PER_OUTBOX, C_RUN | C_MIGRATE | C_STATUS, 0, "MS",
     "PostgreSQL's lock_timeout for the relay's sessions: a statement that waits longer for a "
     "lock (an ALTER TABLE or LOCK TABLE on the outbox, a row an operator's open transaction "
     "has updated) fails and is retried, so the relay says what it waits for. status says "
     "so rather than wait, and migrate's changes wait no longer for the outbox's tables "
     "(writers would queue behind them): the file is rolled back and the holders named."},
    {"http-listen", 0, "OUTBOX_HTTP_LISTEN", T_STR, OFF(http_listen), 0, 0, NULL, 0, C_RUN, 0,
     "HOST:PORT",
     "Serve /metrics, /healthz and /readyz on this address: IPv4 (0.0.0.0:9400) or IPv6 in "
     "brackets ([::1]:9400; [::]:9400 listens on IPv6 and IPv4); off when unset. At most 8 "
     "connections from one client address and 256 in all."},
    {"busy-poll-ms", 0, "OUTBOX_BUSY_POLL_MS", T_INT, OFF(busy_poll_ms), 1, 1000, "2", F_PER_OUTBOX,
     C_RUN, 0, "MS",
     "While events keep coming, look for new rows this often instead of asking writers to "
     "notify (a notifying commit takes a global lock in PostgreSQL)."},
    {"mark-delay-ms", 0, "OUTBOX_MARK_DELAY_MS", T_INT, OFF(mark_delay_ms), 0, 60000, "50",
     F_PER_OUTBOX, C_RUN, 0, "MS",
     "How long a published batch may wait to be marked sent in one statement with the batches "
     "published after it: fewer, larger UPDATEs while events trickle in. A batch's worth of "
     "rows, a full pipeline or shutdown marks at once; 0 marks without waiting. With "
     "--exactly-once a transaction's batches are marked together at its commit, without "
     "waiting."},
    {"idle-after-ms", 0, "OUTBOX_IDLE_AFTER_MS", T_INT, OFF(idle_after_ms), 0, 3600000, "1000",
     F_PER_OUTBOX, C_RUN, 0, "MS",
     "After this long without new rows, stop polling and wait for notifications again; 0 always "
     "waits for notifications."},
    {"busy-poll-min-rate", 0, "OUTBOX_BUSY_POLL_MIN_RATE", T_INT, OFF(busy_min_rate), 0, 10000000,
     "300", F_PER_OUTBOX, C_RUN, 0, "EVENTS_PER_S",
     "Poll every --busy-poll-ms only once this many rows arrive within a second, and go back to "
     "waiting for notifications after a second with fewer than half as many. Below it each "
     "notification brings one fetch: polling would mostly find nothing, and a notifying commit "
     "costs the writers little while commits are sparse. 0 polls from the first rows, as before."},
    {"leader-poll-ms", 0, "OUTBOX_LEADER_POLL_MS", T_INT, OFF(leader_poll_ms), 100, 60000, "1000",
     F_PER_OUTBOX, C_RUN, 0, "MS",
     "How often a standby tries to take the leader lock; with several replicas only the lock "
     "holder publishes."},
    {"retention", 0, "OUTBOX_RETENTION", T_SECS, OFF(retention_s), 0, 315360000, "0", F_PER_OUTBOX,
     C_RUN, 0, "AGE",
     "Delete sent rows older than AGE (e.g. 7d, 12h, 30m; 0 keeps them), in small batches that "
     "never block writers."},
    {"instance-id", 0, "OUTBOX_INSTANCE_ID", T_STR, OFF(instance_id), 0, 0, "<hostname>:<pid>",
     F_DYNAMIC_DEFAULT | F_PER_OUTBOX, C_RUN, 0, "ID", "Name of this relay in its logs."},
    {"exactly-once", 0, "OUTBOX_EXACTLY_ONCE", T_BOOL, OFF(exactly_once), 0, 0, NULL, F_PER_OUTBOX,
     C_RUN, 0, NULL,
     "Publish each batch in a Kafka transaction together with a progress record, so that "
     "consumers reading with isolation.level=read_committed see every row exactly once, even "
     "when the relay dies between Kafka's ack and marking the rows sent. Creates "
     "--progress-topic when it is missing. The variable takes true or false."},
    {"transactional-id", 0, "OUTBOX_TRANSACTIONAL_ID", T_STR, OFF(transactional_id), 0, 0,
     "outbox-relay.<schema>", F_DYNAMIC_DEFAULT | F_PER_OUTBOX, C_RUN, 0, "ID",
     "Kafka transactional.id with --exactly-once: the same for every replica of one outbox, so "
     "a new leader fences the old one, and different for each outbox."},
    {"progress-topic", 0, "OUTBOX_PROGRESS_TOPIC", T_STR, OFF(progress_topic), 0, 0,
     "outbox-relay-progress", F_PER_OUTBOX, C_RUN, 0, "TOPIC",
     "With --exactly-once, the topic for progress records (which rows each transaction "
     "carried); outboxes may share it. Created by the relay when missing, as Kafka Connect "
     "creates its internal topics: one partition, cleanup.policy=compact."},
    {"progress-topic-no-create", 0, "OUTBOX_PROGRESS_TOPIC_NO_CREATE", T_BOOL,
     OFF(progress_no_create), 0, 0, NULL, F_PER_OUTBOX, C_RUN, 0, NULL,
     "With --exactly-once, never create --progress-topic: while it is missing the relay says "
     "so, publishes nothing and is not ready (for a principal without the CREATE permission, "
     "or topics made by the platform). The variable takes true or false."},
    {"progress-topic-replication-factor", 0, "OUTBOX_PROGRESS_TOPIC_REPLICATION_FACTOR", T_INT,
     OFF(progress_replication), -1, 32767, "-1", F_PER_OUTBOX, C_RUN, 0, "N",
     "Replication factor of the progress topic the relay creates; -1 takes the brokers' "
     "default.replication.factor. min.insync.replicas is left to the brokers."},
    {"transaction-timeout-ms", 0, "OUTBOX_TRANSACTION_TIMEOUT_MS", T_INT,
     OFF(transaction_timeout_ms), 1000, 900000, "10000", F_PER_OUTBOX, C_RUN, 0, "MS",
     "With --exactly-once, Kafka's transaction.timeout.ms: an open transaction is aborted after "
     "this long, and a commit or abort Kafka has not ended this long after it began is left to "
     "a new producer (the relay's loop never waits for it)."},
    {"envelope", 0, "OUTBOX_ENVELOPE", T_STR, OFF(envelope), 0, 0, "plain", F_PER_OUTBOX, C_RUN, 0,
     "plain|cloudevents",
     "plain: each message carries the row's headers and the relay's event_id, event_type and "
     "outbox_id. cloudevents: besides these, the CloudEvents 1.0 attributes in binary content "
     "mode (Kafka binding): ce_specversion, ce_id (event_id), ce_source, ce_type (event_type, "
     "else the topic), ce_time (created_at, RFC 3339 UTC), ce_subject (the key, when set) and "
     "content-type (application/json for payload, application/octet-stream for payload_bytes, "
     "none for a tombstone). A row's own content-type or ce_subject header wins; a row header "
     "named like another of these is dropped. The message value is unchanged."},
    {"cloudevents-source", 0, "OUTBOX_CLOUDEVENTS_SOURCE", T_STR, OFF(cloudevents_source), 0, 0,
     "/outbox-relay/<database>/<schema>", F_DYNAMIC_DEFAULT | F_PER_OUTBOX, C_RUN, 0,
     "URI-REFERENCE",
     "With --envelope cloudevents, the ce_source of every message: a URI-reference (RFC 3986) "
     "of at most 1024 characters. The default names the database of --database-url (as libpq "
     "defaults it when the URL names none: PGDATABASE, then the user name), percent-encoded, "
     "and --schema, so that each outbox is a source of its own."},
    {"dead-letter-topic", 0, "OUTBOX_DEAD_LETTER_TOPIC", T_STR, OFF(dead_letter_topic), 0, 0, NULL,
     F_PER_OUTBOX, C_RUN, 0, "TOPIC",
     "Also announce every dead-lettered row on this Kafka topic, as one JSON record (the "
     "event with its key and headers, its topic, the reason, the attempts, the first and last "
     "attempt), keyed by the row's key, like Kafka Connect's errors.deadletterqueue.topic.name. "
     "The record is an outbox row written in the transaction that moves the row to "
     "dead_letters, so it is published like any event, also after Kafka was down. Unset: "
     "none."},
    {"grant-writer", 0, "OUTBOX_GRANT_WRITER", T_STR, OFF(grant_writer), 0, 0, NULL, F_PER_OUTBOX,
     C_MIGRATE, 0, "ROLE",
     "After migrating, grant this existing role what a service writing events needs and nothing "
     "more: USAGE on the schema and INSERT on its events table."},
    {"grant-relay", 0, "OUTBOX_GRANT_RELAY", T_STR, OFF(grant_relay), 0, 0, NULL, F_PER_OUTBOX,
     C_MIGRATE, 0, "ROLE",
     "After migrating, grant this existing role what outbox-relay run, status, replay and dlq "
     "need: reading and changing the outbox's rows and calling its functions, no DDL."},
    {"from-id", 0, NULL, T_ID, OFF(replay_from_id), 1, LLONG_MAX, NULL, 0, C_REPLAY, 0, "ID",
     "Replay rows with id >= ID."},
    {"to-id", 0, NULL, T_ID, OFF(replay_to_id), 1, LLONG_MAX, NULL, 0, C_REPLAY, 0, "ID",
     "Replay rows with id <= ID."},
    {"since", 0, NULL, T_STR, OFF(replay_since), 0, 0, NULL, 0, C_REPLAY, 0, "TIME",
     "Replay rows created at or after TIME (any timestamp PostgreSQL accepts)."},
    {"until", 0, NULL, T_STR, OFF(replay_until), 0, 0, NULL, 0, C_REPLAY, 0, "TIME",
     "Replay rows created before TIME."},
    {"key", 0, NULL, T_STR, OFF(replay_key), 0, 0, NULL, 0, C_REPLAY, 0, "KEY",
     "Replay rows with this key."},
    {"dry-run", 0, NULL, T_BOOL, OFF(dry_run), 0, 0, NULL, 0, C_REPLAY, 0, NULL,
     "Only count the rows that would be replayed."},
    {"topic", 0, NULL, T_STR, OFF(replay_topic), 0, 0, NULL, 0, C_REPLAY | C_DLQ, 0, "TOPIC",
     "Replay rows, or list or requeue dead letters, whose topic column is TOPIC."},
    {"json", 0, NULL, T_BOOL, OFF(json), 0, 0, NULL, 0, C_STATUS | C_DLQ, 0, NULL,
     "Print JSON instead of text."},
    {"id", 0, NULL, T_ID, OFF(id), 1, LLONG_MAX, NULL, 0, C_DLQ, 0, "ID",
     "dlq requeue: the dead letter with this id."},
    {"all", 0, NULL, T_BOOL, OFF(all), 0, 0, NULL, 0, C_DLQ, 0, NULL,
     "dlq requeue: every dead letter."},
    {"limit", 0, NULL, T_INT, OFF(limit), 1, 100000, "50", 0, C_DLQ, 0, "N",
     "dlq list: show at most N dead letters, newest first."},
};

const size_t config_n_settings = sizeof(config_settings) / sizeof(config_settings[0]);
