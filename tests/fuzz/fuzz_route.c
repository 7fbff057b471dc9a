/* fuzz_route: libFuzzer target for routing rules. Each input line is a
 * rule ("pattern=topic") for route_parse_rule, except "!topic" (the default
 * topic) and "?event_type" (looked up once the rules compile). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "route.h"

#define FUZZ_MAX_LINES 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *copy = malloc(size + 1), *lines[FUZZ_MAX_LINES], err[512];
        struct config_kv rules[FUZZ_MAX_LINES];
        const char *def = NULL;
        size_t n_lines = 0, n_rules = 0;
        struct route *rt;

        if (!copy)
                return 0;
        memcpy(copy, data, size);
        copy[size] = '\0';
        for (char *p = copy; n_lines < FUZZ_MAX_LINES;) {
                char *nl = strchr(p, '\n');

                lines[n_lines++] = p;
                if (!nl)
                        break;
                *nl = '\0';
                p = nl + 1;
        }
        for (size_t i = 0; i < n_lines; i++) {
                if (lines[i][0] == '!')
                        def = lines[i] + 1;
                else if (lines[i][0] != '?' &&
                         route_parse_rule(lines[i], &rules[n_rules], err, sizeof(err)) == 0)
                        n_rules++;
        }
        rt = route_new(rules, n_rules, def, err, sizeof(err));
        for (size_t i = 0; rt && i < n_lines; i++) {
                if (lines[i][0] != '?')
                        continue;
                route_topic(rt, NULL, lines[i] + 1, err, sizeof(err));
                route_topic(rt, "", lines[i] + 1, err, sizeof(err));
                route_topic(rt, lines[i] + 1, NULL, err, sizeof(err));
        }
        route_free(rt);
        for (size_t i = 0; i < n_rules; i++) {
                free(rules[i].name);
                free(rules[i].value);
        }
        free(copy);
        return 0;
}
