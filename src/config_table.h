/* config_table: the settings table (config_table.c) and what the files of
 * the config module share: config.c (environment, setting, validation),
 * config_args.c (the command line), config_value.c (typed values),
 * config_file.c (values read from files) and config_doc.c (--help and the
 * README table). Internal to the module; not installed under include/. */
#ifndef OUTBOX_CONFIG_TABLE_H
#define OUTBOX_CONFIG_TABLE_H

#include <stddef.h>

#include "config.h"

enum setting_type {
        T_STR,    /* string; NULL when unset */
        T_SECRET, /* string that is never echoed */
        T_INT,    /* int within [min, max] */
        T_ID,     /* long long within [min, max] */
        T_LEVEL,  /* enum log_level */
        T_ROUTE,  /* repeatable pattern=topic -> cfg->routes */
        T_KPROP,  /* repeatable name=value -> cfg->kafka_props */
        T_BOOL,   /* flag without a value */
        T_SECS,   /* int seconds, written with a unit: 90s, 15m, 12h, 7d */
        T_FILE,   /* path of a file holding the value of the setting before it */
        T_KFILE,  /* repeatable name=path -> cfg->kafka_props, value read from path */
};

/* Which commands read a setting: only for --help and the README. */
enum {
        C_RUN = CONFIG_CMD_RUN,
        C_MIGRATE = CONFIG_CMD_MIGRATE,
        C_REPLAY = CONFIG_CMD_REPLAY,
        C_STATUS = CONFIG_CMD_STATUS,
        C_DLQ = CONFIG_CMD_DLQ,
        C_ALL = CONFIG_CMD_ALL
};

#define KPROP_ENV_PREFIX "OUTBOX_RDKAFKA_"
/* OUTBOX_RDKAFKA_<NAME>_FILE: no librdkafka property name ends in "file"
 * (test_config checks librdkafka's own list), so the suffix is unambiguous. */
#define KPROP_FILE_SUFFIX "_FILE"
/* Largest file a setting is read from: a URL or a credential, not a bundle. */
#define CONFIG_FILE_MAX   (64 * 1024)
#define F_DYNAMIC_DEFAULT 1 /* default computed by config_new, def is for display */
#define F_PER_OUTBOX      2 /* may be given per outbox in --outboxes-file */
#define OFF(field)        offsetof(struct config, field)

struct setting {
        const char *flag; /* without the leading "--" */
        char short_flag;  /* 0 or the letter of "-X" */
        const char *env;  /* NULL: command line only */
        enum setting_type type;
        size_t off;
        long long min, max;
        const char *def; /* as it would be typed; NULL: none */
        int flags;
        unsigned cmds;
        int need; /* CONFIG_NEED_* bits that make it required */
        const char *metavar;
        const char *help;
};

extern const struct setting config_settings[];

extern const size_t config_n_settings;

/* Sets s from value as an outbox of --outboxes-file gives it, over what the
 * process's environment and flags set (config.c): route replaces the
 * inherited list at its first item (first != 0), a Kafka property replaces
 * the inherited one of its name, a database URL in either form replaces
 * both inherited forms. src names the key for the one-line error. */
int config_set_outbox_value(struct config *cfg, const struct setting *s, const char *value,
                            const char *src, int first, char *errbuf,
                            size_t errsz) OUTBOX_MUST_CHECK;

/* --envelope and --cloudevents-source (config_envelope.c). Returns 0, or
 * -1 with one line in errbuf naming the setting. */
int config_check_envelope(const struct config *cfg, char *errbuf, size_t errsz) OUTBOX_MUST_CHECK;

/* Reads a setting's value from path (config_file.c): the whole file less one
 * trailing "\n" or "\r\n"; empty, larger than CONFIG_FILE_MAX or holding a
 * NUL byte is an error. *out is malloc'ed. Errors name src and the path,
 * never the content. */
int config_read_file(const char *path, const char *src, char **out, char *errbuf,
                     size_t errsz) OUTBOX_MUST_CHECK;

/* Text to typed values (config_value.c). src names where the text came
 * from, for the one-line error. Each returns 0, or -1 with errbuf. */
void config_range_text(const struct setting *s, char *buf, size_t sz);
int config_value_int(const struct setting *s, const char *value, const char *src, long long *out,
                     char *errbuf, size_t errsz) OUTBOX_MUST_CHECK;
/* "0", "90s", "15m", "12h" or "7d" into seconds, at most s->max. */
int config_value_secs(const struct setting *s, const char *value, const char *src, int *out,
                      char *errbuf, size_t errsz) OUTBOX_MUST_CHECK;
int config_value_level(const char *value, const char *src, enum log_level *out, char *errbuf,
                       size_t errsz) OUTBOX_MUST_CHECK;
/* NULL (a flag without a value) is true; a variable says true/1 or false/0. */
int config_value_bool(const char *value, const char *src, int *out, char *errbuf,
                      size_t errsz) OUTBOX_MUST_CHECK;

/* The command line, one item at a time (config_args.c). */
enum config_arg {
        CONFIG_ARG_END,
        CONFIG_ARG_SETTING,    /* *s, and *value (NULL for a flag without one) */
        CONFIG_ARG_POSITIONAL, /* *value: not an option, or after "--" */
        CONFIG_ARG_HELP,       /* --help or -h */
        CONFIG_ARG_ERROR       /* errbuf names the option */
};
struct config_args;

/* argv[0] is the first flag, as for config_parse; argv is not copied, only
 * the array of its pointers. Resets getopt_long's global state. */
struct config_args *config_args_new(int argc, char **argv, char *errbuf,
                                    size_t errsz) OUTBOX_MUST_CHECK;
void config_args_free(struct config_args *a);
/* The next item; src receives the option as typed, without its value, for
 * messages. */
enum config_arg config_args_next(struct config_args *a, const struct setting **s, char **value,
                                 char *src, size_t srcsz, char *errbuf, size_t errsz);

#endif
