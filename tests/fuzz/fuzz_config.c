/* fuzz_config: libFuzzer target for the configuration parser. The input is
 * split on newlines into an argv (what follows `outbox-relay run`), parsed
 * and, when that succeeds, validated as for `run` and for `migrate`. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define FUZZ_MAX_ARGS 64

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The environment is read too; keep the host's OUTBOX_* settings out. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        (void)argc;
        (void)argv;
        for (size_t i = 0; environ[i];) {
                if (strncmp(environ[i], "OUTBOX_", 7) == 0) {
                        char name[256];
                        size_t n = strcspn(environ[i], "=");

                        if (n >= sizeof(name))
                                n = sizeof(name) - 1;
                        memcpy(name, environ[i], n);
                        name[n] = '\0';
                        unsetenv(name);
                        continue;
                }
                i++;
        }
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *copy = malloc(size + 1), *argv[FUZZ_MAX_ARGS + 1], err[512];
        struct config *cfg;
        int argc = 0;

        if (!copy)
                return 0;
        memcpy(copy, data, size);
        copy[size] = '\0';
        for (char *p = copy; argc < FUZZ_MAX_ARGS;) {
                char *nl = strchr(p, '\n');

                argv[argc++] = p;
                if (!nl)
                        break;
                *nl = '\0';
                p = nl + 1;
        }
        argv[argc] = NULL;
        cfg = config_new();
        if (cfg && config_parse(cfg, argc, argv, err, sizeof(err)) == 0) {
                if (config_validate(cfg, CONFIG_NEED_DB | CONFIG_NEED_KAFKA, err, sizeof(err)))
                        err[0] = '\0';
                if (config_validate(cfg, CONFIG_NEED_DB, err, sizeof(err)))
                        err[0] = '\0';
        }
        config_free(cfg); /* cfg->args points into copy */
        free(copy);
        return 0;
}
