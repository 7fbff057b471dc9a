/* main: the outbox-relay command line. One table of commands, each with its
 * usage and handler; main picks the command, reads and validates the
 * configuration (exit 2 on a bad setting, before anything is contacted) and
 * hands over to the handler. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "admin.h"
#include "compiler.h"
#include "config.h"
#include "fleet.h"
#include "log.h"
#include "relay.h"

enum { EXIT_OK = 0, EXIT_FAILURE_RUNTIME = 1, EXIT_USAGE = 2 };

static int run(const struct config *cfg, struct log *lg) OUTBOX_MUST_CHECK;

static const struct command {
        const char *name;
        const char *args; /* after the name in the usage line */
        const char *summary;
        unsigned settings; /* CONFIG_CMD_*: the options its --help lists */
        int need;          /* CONFIG_NEED_*: the settings it requires */
        /* run stops by reading SIGTERM and SIGINT from a signalfd in its
         * loop; the one-shot commands are stopped by them at once. */
        int signalfd;
        int (*handler)(const struct config *cfg, struct log *lg);
} commands[] = {
    {"run", "[OPTIONS]", "publish outbox rows to Kafka until stopped", CONFIG_CMD_RUN,
     CONFIG_NEED_DB | CONFIG_NEED_KAFKA, 1, run},
    {"migrate", "[OPTIONS]", "create or upgrade the outbox schema", CONFIG_CMD_MIGRATE,
     CONFIG_NEED_DB, 0, admin_migrate},
    {"replay", "[OPTIONS]", "set sent rows back to pending (needs a filter)", CONFIG_CMD_REPLAY,
     CONFIG_NEED_DB, 0, admin_replay},
    {"status", "[OPTIONS]", "backlog, lag, dead letters and which relay leads", CONFIG_CMD_STATUS,
     CONFIG_NEED_DB, 0, admin_status},
    {"dlq", "list|requeue [OPTIONS]", "dlq list | dlq requeue: inspect or requeue dead letters",
     CONFIG_CMD_DLQ, CONFIG_NEED_DB, 0, admin_dlq},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
        fprintf(out, "usage: outbox-relay COMMAND [OPTIONS]\n\ncommands:\n");
        for (size_t i = 0; i < N_COMMANDS; i++)
                fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
        fprintf(out, "  --version  print the version and exit\n"
                     "  --help     print this help and exit\n"
                     "\n`outbox-relay COMMAND --help` shows one command's options.\n\n");
}

static void command_usage(FILE *out, const struct command *cmd)
{
        fprintf(out,
                "usage: outbox-relay %s %s\n\n%s\n\n  -h, --help  print this help and exit\n\n",
                cmd->name, cmd->args, cmd->summary);
        config_print_help(out, cmd->settings);
}

static int run(const struct config *cfg, struct log *lg)
{
        char err[512];
        struct relay *r = relay_new(cfg, lg, err, sizeof(err));
        int rc;

        if (r == NULL) {
                log_error(lg, "cannot start", "{s:s}", "error", err);
                return EXIT_FAILURE_RUNTIME;
        }
        log_info(lg, "outbox-relay starting", "{s:s,s:s,s:i,s:s,s:s,s:s}", "version",
                 OUTBOX_VERSION, "librdkafka", rd_kafka_version_str(), "libpq", PQlibVersion(),
                 "jansson", JANSSON_VERSION, "instance", cfg->instance_id, "schema", cfg->schema);
        rc = relay_run(r, err, sizeof(err));
        if (rc != 0)
                log_error(lg, "relay stopped on an error", "{s:s}", "error", err);
        relay_free(r);
        return rc == 0 ? EXIT_OK : EXIT_FAILURE_RUNTIME;
}

/* The outboxes of --outboxes-file: run runs them all in one process,
 * migrate and status go through each (every one, also after one that
 * fails). */
static int run_outboxes(const struct command *cmd, const struct config *cfg,
                        const struct config_outbox *o, size_t n, struct log *lg)
{
        char err[512];
        struct fleet *f;
        int rc = EXIT_OK;

        if (cmd->handler == admin_status)
                return admin_status_outboxes(o, n, cfg->json, lg);
        if (cmd->handler == admin_migrate)
                return admin_migrate_outboxes(o, n, lg) == 0 ? EXIT_OK : EXIT_FAILURE_RUNTIME;
        log_info(lg, "outbox-relay starting", "{s:s,s:s,s:i,s:s,s:i}", "version", OUTBOX_VERSION,
                 "librdkafka", rd_kafka_version_str(), "libpq", PQlibVersion(), "jansson",
                 JANSSON_VERSION, "outboxes", (int)n);
        if ((f = fleet_new(cfg, o, n, lg, err, sizeof(err))) == NULL) {
                log_error(lg, "cannot start", "{s:s}", "error", err);
                return EXIT_FAILURE_RUNTIME;
        }
        if (fleet_run(f, err, sizeof(err)) != 0) {
                log_error(lg, "stopped on an error", "{s:s}", "error", err);
                rc = EXIT_FAILURE_RUNTIME;
        } else {
                log_info(lg, "stopped", NULL);
        }
        fleet_free(f);
        return rc;
}

/* Answers what needs no command: --help, --version, --config-markdown.
 * Returns an exit code, or -1 when argv[1] is none of them. */
static int global_option(const char *arg)
{
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0 || strcmp(arg, "help") == 0) {
                usage(stdout);
                config_print_help(stdout, CONFIG_CMD_ALL);
                return EXIT_OK;
        }
        if (strcmp(arg, "--version") == 0) {
                printf("outbox-relay %s (librdkafka %s, libpq %d, jansson %s)\n", OUTBOX_VERSION,
                       rd_kafka_version_str(), PQlibVersion(), JANSSON_VERSION);
                return EXIT_OK;
        }
        if (strcmp(arg, "--config-markdown") == 0) { /* the README's table */
                config_print_markdown(stdout);
                return EXIT_OK;
        }
        return -1;
}

/* A setting's error names what it was given (a key or value of
 * --outboxes-file, a flag): kept to one line, with no control byte that a
 * terminal would act on. */
static void say_error(const char *err)
{
        char *safe = log_escape(err);

        fprintf(stderr, "outbox-relay: %s\n", safe != NULL ? safe : "out of memory");
        free(safe);
}

/* Parses and checks the command's settings and, with --outboxes-file, each
 * outbox's. Returns 0, or -1 once the reason is printed. */
static int load_config(const struct command *cmd, int argc, char **argv, struct config *cfg,
                       struct config_outbox **outboxes, size_t *n_outboxes)
{
        char err[512];

        if (config_parse(cfg, argc, argv, err, sizeof(err)) != 0)
                goto fail;
        if (cfg->outboxes_file != NULL && !(cmd->settings & CONFIG_CMD_OUTBOXES)) {
                fprintf(stderr,
                        "outbox-relay: %s works on one outbox: give its --database-url(-file) "
                        "and --schema, without --outboxes-file (OUTBOX_OUTBOXES_FILE)\n",
                        cmd->name);
                return -1;
        }
        /* With --outboxes-file, what the process needs is checked per outbox. */
        if (config_validate(cfg, cfg->outboxes_file != NULL ? 0 : cmd->need, err, sizeof(err)) != 0)
                goto fail;
        if (cfg->outboxes_file != NULL && config_outboxes_load(cfg, argc, argv, cmd->need, outboxes,
                                                               n_outboxes, err, sizeof(err)) != 0)
                goto fail;
        return 0;
fail:
        say_error(err);
        return -1;
}

static int block_stop_signals(void)
{
        sigset_t stop;

        sigemptyset(&stop);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGINT);
        if (sigprocmask(SIG_BLOCK, &stop, NULL) != 0) {
                perror("outbox-relay: sigprocmask");
                return -1;
        }
        return 0;
}

int main(int argc, char **argv)
{
        const struct command *cmd = NULL;
        struct config_outbox *outboxes = NULL;
        size_t n_outboxes = 0;
        struct config *cfg = NULL;
        struct log *lg = NULL;
        int rc = EXIT_USAGE;

        if (argc < 2) {
                usage(stderr);
                return EXIT_USAGE;
        }
        if ((rc = global_option(argv[1])) >= 0)
                return rc;
        for (size_t i = 0; i < N_COMMANDS && cmd == NULL; i++)
                if (strcmp(argv[1], commands[i].name) == 0)
                        cmd = &commands[i];
        if (cmd == NULL) {
                fprintf(stderr, "outbox-relay: unknown command \"%s\" (see --help)\n", argv[1]);
                return EXIT_USAGE;
        }
        /* The only place signals are blocked: before anything else, so a
         * SIGTERM during startup (a quick rollout) waits in the signalfd
         * of the loop instead of killing the process; and before any
         * thread starts, so librdkafka's threads inherit the mask. */
        if (cmd->signalfd && block_stop_signals() != 0)
                return EXIT_FAILURE_RUNTIME;
        if (config_wants_help(argc - 2, argv + 2)) {
                command_usage(stdout, cmd);
                return EXIT_OK;
        }
        rc = EXIT_USAGE;
        cfg = config_new();
        if (cfg == NULL) {
                fprintf(stderr, "outbox-relay: out of memory\n");
                return EXIT_FAILURE_RUNTIME;
        }
        if (load_config(cmd, argc - 2, argv + 2, cfg, &outboxes, &n_outboxes) != 0)
                goto out;
        lg = log_new(stderr, cfg->log_level);
        if (lg == NULL) {
                rc = EXIT_FAILURE_RUNTIME;
                goto out;
        }
        /* A closed socket must be an error return, not a dead process. */
        signal(SIGPIPE, SIG_IGN);
        rc = outboxes != NULL ? run_outboxes(cmd, cfg, outboxes, n_outboxes, lg)
                              : cmd->handler(cfg, lg);
out:
        config_outboxes_free(outboxes, n_outboxes);
        log_free(lg);
        config_free(cfg);
        return rc;
}
