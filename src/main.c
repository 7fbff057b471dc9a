/* main: the outbox-relay command line. Picks the command, reads and
 * validates the configuration (exit 2 on a bad setting, before anything is
 * contacted) and hands over to the relay or an admin command. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "admin.h"
#include "config.h"
#include "log.h"
#include "relay.h"

enum { EXIT_OK = 0, EXIT_FAILURE_RUNTIME = 1, EXIT_USAGE = 2 };

static const struct command {
        const char *name;
        int need;
        const char *help;
} commands[] = {
    {"run", CONFIG_NEED_DB | CONFIG_NEED_KAFKA, "publish outbox rows to Kafka until stopped"},
    {"migrate", CONFIG_NEED_DB, "create or upgrade the outbox schema"},
    {"replay", CONFIG_NEED_DB, "set sent rows back to pending (needs a filter)"},
    {"status", CONFIG_NEED_DB, "backlog, lag, dead letters and which relay leads"},
    {"dlq", CONFIG_NEED_DB, "dlq list | dlq requeue: inspect or requeue dead letters"},
};

static void usage(FILE *out)
{
        fprintf(out, "usage: outbox-relay COMMAND [OPTIONS]\n\ncommands:\n");
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
        fprintf(out, "  --version  print the version and exit\n"
                     "  --help     print this help and exit\n\n");
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

int main(int argc, char **argv)
{
        const struct command *cmd = NULL;
        struct config *cfg = NULL;
        struct log *lg = NULL;
        char err[512];
        int rc = EXIT_USAGE;
        sigset_t stop;

        /* `run` reads SIGTERM and SIGINT from a signalfd; block them before
         * anything else so one sent during startup (a quick rollout) is
         * handled as a clean stop instead of killing the process. */
        sigemptyset(&stop);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGINT);
        sigprocmask(SIG_BLOCK, &stop, NULL);

        if (argc < 2) {
                usage(stderr);
                return EXIT_USAGE;
        }
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
            strcmp(argv[1], "help") == 0) {
                usage(stdout);
                config_print_help(stdout);
                return EXIT_OK;
        }
        if (strcmp(argv[1], "--version") == 0) {
                printf("outbox-relay %s (librdkafka %s, libpq %d, jansson %s)\n", OUTBOX_VERSION,
                       rd_kafka_version_str(), PQlibVersion(), JANSSON_VERSION);
                return EXIT_OK;
        }
        if (strcmp(argv[1], "--config-markdown") == 0) { /* the README's table */
                config_print_markdown(stdout);
                return EXIT_OK;
        }
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (strcmp(argv[1], commands[i].name) == 0)
                        cmd = &commands[i];
        if (cmd == NULL) {
                fprintf(stderr, "outbox-relay: unknown command \"%s\" (see --help)\n", argv[1]);
                return EXIT_USAGE;
        }
        cfg = config_new();
        if (cfg == NULL) {
                fprintf(stderr, "outbox-relay: out of memory\n");
                return EXIT_FAILURE_RUNTIME;
        }
        if (config_parse(cfg, argc - 2, argv + 2, err, sizeof(err)) != 0 ||
            config_validate(cfg, cmd->need, err, sizeof(err)) != 0) {
                fprintf(stderr, "outbox-relay: %s\n", err);
                goto out;
        }
        lg = log_new(stderr, cfg->log_level);
        if (lg == NULL) {
                rc = EXIT_FAILURE_RUNTIME;
                goto out;
        }
        /* A closed socket must be an error return, not a dead process. */
        signal(SIGPIPE, SIG_IGN);
        if (strcmp(cmd->name, "run") != 0)
                sigprocmask(SIG_UNBLOCK, &stop, NULL); /* one-shot commands stop at once */
        if (strcmp(cmd->name, "run") == 0)
                rc = run(cfg, lg);
        else if (strcmp(cmd->name, "migrate") == 0)
                rc = admin_migrate(cfg, lg);
        else if (strcmp(cmd->name, "replay") == 0)
                rc = admin_replay(cfg, lg);
        else if (strcmp(cmd->name, "status") == 0)
                rc = admin_status(cfg, lg);
        else
                rc = admin_dlq(cfg, lg);
out:
        log_free(lg);
        config_free(cfg);
        return rc;
}
