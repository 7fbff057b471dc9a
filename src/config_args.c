/* config_args: the command line, read by libc's getopt_long from an option
 * table made from the settings table (the convention of kcat and PgBouncer),
 * one item at a time; config_parse sets what it reads. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_table.h"

/* A long option's val is OPT_SETTING + the setting's index: above every
 * short option's letter, so the two cannot be confused. */
enum { OPT_HELP = 'h', OPT_SETTING = 256 };

/* getopt_long's view of argv: its option table, made from the settings
 * table, and argv with a program name in front (getopt starts at 1). */
struct config_args {
        struct option *opts;
        char optstring[32];
        int argc;
        char **argv;
        int rest; /* after "--": the index of the next positional argument */
};

struct config_args *config_args_new(int argc, char **argv, char *errbuf, size_t errsz)
{
        struct config_args *a = calloc(1, sizeof(*a));
        size_t n = 0, k = 0;

        if (a == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                return NULL;
        }

        /* '-': positional arguments come back in order (code 1) whatever
         * POSIXLY_CORRECT says; ':': a missing value is ':', not '?'. */
        a->optstring[k++] = '-';
        a->optstring[k++] = ':';
        a->optstring[k++] = OPT_HELP;
        a->rest = -1;
        a->opts = calloc(config_n_settings + 2, sizeof(*a->opts));
        a->argv = calloc((size_t)argc + 2, sizeof(*a->argv));
        if (a->opts == NULL || a->argv == NULL) {
                config_args_free(a);
                snprintf(errbuf, errsz, "out of memory");
                return NULL;
        }
        for (size_t i = 0; i < config_n_settings; i++) {
                const struct setting *s = &config_settings[i];

                a->opts[n++] =
                    (struct option){s->flag, s->type == T_BOOL ? no_argument : required_argument,
                                    NULL, OPT_SETTING + (int)i};
                if (s->short_flag != 0 && k + 3 < sizeof(a->optstring)) {
                        a->optstring[k++] = s->short_flag;
                        if (s->type != T_BOOL)
                                a->optstring[k++] = ':';
                }
        }
        a->opts[n] = (struct option){"help", no_argument, NULL, OPT_HELP};
        a->optstring[k] = '\0';
        a->argv[0] = "outbox-relay";
        if (argc > 0)
                memcpy(a->argv + 1, argv, (size_t)argc * sizeof(*argv));
        a->argc = argc + 1;
        optind = 0; /* glibc: start over, whatever an earlier scan left */
        opterr = 0; /* errors go to errbuf as one line, not to stderr */
        return a;
}

void config_args_free(struct config_args *a)
{
        if (a == NULL)
                return;
        free(a->opts);
        free(a->argv);
        free(a);
}

static const struct setting *short_setting(int c)
{
        for (size_t i = 0; i < config_n_settings; i++)
                if (config_settings[i].short_flag == c)
                        return &config_settings[i];
        return NULL;
}

/* Names the option getopt_long returned c for in src (as typed, without
 * its value) and refuses what is not a known option given as it takes it.
 * at: the index of its argv element; idx: its long option's, or -1.
 * Returns 0, or -1 with errbuf. */
static int check_option(const struct config_args *a, int c, int at, int idx, char *src,
                        size_t srcsz, char *errbuf, size_t errsz)
{
        const char *elem;
        size_t len = 0;
        int is_long;

        /* A long option's element is argv[at]; a short one may sit inside
         * a cluster ("-Xname=v"), which getopt has already stepped past. */
        elem = at < a->argc ? a->argv[at] : NULL;
        is_long = elem != NULL && strncmp(elem, "--", 2) == 0;
        if (is_long) {
                len = strcspn(elem + 2, "=");
                snprintf(src, srcsz, "--%.*s", (int)(len < 60 ? len : 60), elem + 2);
        } else {
                snprintf(src, srcsz, "-%c", c == '?' || c == ':' ? optopt : c);
        }
        if (c == '?' && optopt >= OPT_SETTING) {
                snprintf(errbuf, errsz, "option %s takes no value", src);
                return -1;
        }
        if (c == '?' && optopt == OPT_HELP && is_long) {
                snprintf(errbuf, errsz, "option --help takes no value");
                return -1;
        }
        /* getopt_long also takes a unique prefix ("--dry" for --dry-run);
         * we do not: "--max 300000" meant for --retry-max-ms would set
         * --max-attempts, and a prefix that works today breaks (or changes
         * meaning) when a setting is added. */
        if (c == '?' || (idx >= 0 && strlen(a->opts[idx].name) != len)) {
                snprintf(errbuf, errsz, "unknown option %s (see --help)", src);
                return -1;
        }
        return 0;
}

enum config_arg config_args_next(struct config_args *a, const struct setting **s, char **value,
                                 char *src, size_t srcsz, char *errbuf, size_t errsz)
{
        int at = optind > 0 ? optind : 1, idx = -1, c;

        if (a->rest >= 0) {
                if (a->rest >= a->argc)
                        return CONFIG_ARG_END;
                *value = a->argv[a->rest++];
                return CONFIG_ARG_POSITIONAL;
        }
        c = getopt_long(a->argc, a->argv, a->optstring, a->opts, &idx);
        if (c == -1) {
                a->rest = optind; /* after "--", or the end */
                return config_args_next(a, s, value, src, srcsz, errbuf, errsz);
        }
        if (c == 1) {
                *value = optarg;
                return CONFIG_ARG_POSITIONAL;
        }
        if (check_option(a, c, at, idx, src, srcsz, errbuf, errsz) != 0)
                return CONFIG_ARG_ERROR;
        if (c == OPT_HELP)
                return CONFIG_ARG_HELP;
        *value = c == ':' ? NULL : optarg;
        if (c == ':') /* the value is missing: optopt is the option */
                c = optopt;
        *s = c >= OPT_SETTING ? &config_settings[c - OPT_SETTING] : short_setting(c);
        if (*s == NULL) { /* a letter in optstring without a setting: none today */
                snprintf(errbuf, errsz, "unknown option %s (see --help)", src);
                return CONFIG_ARG_ERROR;
        }
        if ((*s)->type == T_BOOL)
                return CONFIG_ARG_SETTING;
        /* "--a --b": a flag is never taken as the value of another. */
        if (*value != NULL && optind == at + 2 && strncmp(*value, "--", 2) == 0) {
                optind--;
                *value = NULL;
        }
        if (*value == NULL || (*value)[0] == '\0') {
                snprintf(errbuf, errsz, "option %s needs a value (%s %s)", src, src, (*s)->metavar);
                return CONFIG_ARG_ERROR;
        }
        return CONFIG_ARG_SETTING;
}

int config_wants_help(int argc, char **argv)
{
        struct config_args *a = config_args_new(argc, argv, NULL, 0);
        const struct setting *s;
        char *value, src[64], err[256];
        enum config_arg it;
        int help = 0;

        if (a == NULL)
                return 0;
        /* An error does not hide a --help that follows: whoever added it
         * to a failing command line wants the help. */
        while ((it = config_args_next(a, &s, &value, src, sizeof(src), err, sizeof(err))) !=
               CONFIG_ARG_END)
                if (it == CONFIG_ARG_HELP)
                        help = 1;
        config_args_free(a);
        return help;
}
