/* config: reads the settings of config_table.c from the environment and
 * the command line (getopt_long; flags win) and validates them, so that a
 * bad setting is one error line before anything is contacted. */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <libpq-fe.h>

#include "kafka_conf.h"
#include "route.h"

#include "config_table.h"

/* While parsing: how many list entries came from the environment, so a flag
 * with the same name replaces the environment's entry instead of adding. */
struct parse_state {
        size_t env_routes, env_props;
        int url_flag, url_file_flag; /* --database-url(-file) given as a flag */
};

static void *field(const struct config *cfg, const struct setting *s)
{
        return (char *)cfg + s->off;
}

static void kv_free(struct config_kv *kv, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(kv[i].name);
                free(kv[i].value);
        }
        free(kv);
}

/* Appends kv (taking its strings); an entry of the same name among the
 * first *n_env ones (from the environment) is removed first. */
static int kv_put(struct config_kv **list, size_t *n, size_t *n_env, struct config_kv kv,
                  char *errbuf, size_t errsz)
{
        struct config_kv *grown;

        for (size_t i = 0; n_env != NULL && i < *n_env; i++) {
                if (strcmp((*list)[i].name, kv.name) != 0)
                        continue;
                free((*list)[i].name);
                free((*list)[i].value);
                memmove(&(*list)[i], &(*list)[i + 1], (*n - i - 1) * sizeof(**list));
                (*n)--;
                (*n_env)--;
                break;
        }
        grown = realloc(*list, (*n + 1) * sizeof(**list));
        if (grown == NULL) {
                free(kv.name);
                free(kv.value);
                snprintf(errbuf, errsz, "out of memory");
                return -1;
        }
        *list = grown;
        grown[(*n)++] = kv;
        return 0;
}

static int parse_kprop(const char *text, struct config_kv *out, const char *src, char *errbuf,
                       size_t errsz)
{
        const char *eq = strchr(text, '=');

        out->from_file = 0;
        if (eq == NULL || eq == text) {
                /* After a '=' may be a value; only a lone name is quoted. */
                if (eq == NULL && !kafka_conf_is_secret(text))
                        snprintf(errbuf, errsz, "%s needs NAME=VALUE, got \"%.64s\"", src, text);
                else
                        snprintf(errbuf, errsz, "%s needs NAME=VALUE", src);
                return -1;
        }
        out->name = strndup(text, (size_t)(eq - text));
        out->value = strdup(eq + 1);
        if (out->name == NULL || out->value == NULL) {
                free(out->name);
                free(out->value);
                snprintf(errbuf, errsz, "out of memory");
                return -1;
        }
        return 0;
}

/* kv->value is a path: replaces it with the file's content. */
static int kprop_from_file(struct config_kv *kv, const char *src, char *errbuf, size_t errsz)
{
        char *content;

        if (config_read_file(kv->value, src, &content, errbuf, errsz) != 0) {
                free(kv->name);
                free(kv->value);
                return -1;
        }
        free(kv->value);
        kv->value = content;
        kv->from_file = 1;
        return 0;
}

/* Sets one setting from text; src names where the text came from. */
static int set_value(struct config *cfg, struct parse_state *ps, const struct setting *s,
                     const char *value, const char *src, int from_flag, char *errbuf, size_t errsz)
{
        struct config_kv kv = {NULL, NULL, 0};
        char msg[256];
        char *copy;
        long long v;

        switch (s->type) {
        case T_STR:
        case T_SECRET:
        case T_FILE:
                if ((copy = strdup(value)) == NULL) {
                        snprintf(errbuf, errsz, "out of memory");
                        return -1;
                }
                free(*(char **)field(cfg, s));
                *(char **)field(cfg, s) = copy;
                if (from_flag && s->type == T_FILE)
                        ps->url_file_flag = 1;
                else if (from_flag && s->type == T_SECRET)
                        ps->url_flag = 1;
                return 0;
        case T_INT:
                if (config_value_int(s, value, src, &v, errbuf, errsz) != 0)
                        return -1;
                *(int *)field(cfg, s) = (int)v;
                return 0;
        case T_ID:
                return config_value_int(s, value, src, field(cfg, s), errbuf, errsz);
        case T_LEVEL:
                return config_value_level(value, src, field(cfg, s), errbuf, errsz);
        case T_ROUTE:
                if (route_parse_rule(value, &kv, msg, sizeof(msg)) != 0) {
                        snprintf(errbuf, errsz, "invalid %s: %s", src, msg);
                        return -1;
                }
                return kv_put(&cfg->routes, &cfg->n_routes, from_flag ? &ps->env_routes : NULL, kv,
                              errbuf, errsz);
        case T_KPROP:
        case T_KFILE:
                if (parse_kprop(value, &kv, src, errbuf, errsz) != 0)
                        return -1;
                if (s->type == T_KFILE && kprop_from_file(&kv, src, errbuf, errsz) != 0)
                        return -1;
                return kv_put(&cfg->kafka_props, &cfg->n_kafka_props,
                              from_flag ? &ps->env_props : NULL, kv, errbuf, errsz);
        case T_BOOL:
                return config_value_bool(value, src, field(cfg, s), errbuf, errsz);
        case T_SECS:
                return config_value_secs(s, value, src, field(cfg, s), errbuf, errsz);
        }
        return -1;
}

struct config *config_new(void)
{
        struct config *cfg = calloc(1, sizeof(*cfg));
        struct parse_state ps = {0, 0, 0, 0};
        char host[256], errbuf[512];
        size_t len;

        if (cfg == NULL)
                return NULL;
        for (size_t i = 0; i < config_n_settings; i++) {
                const struct setting *s = &config_settings[i];

                if (s->def != NULL && !(s->flags & F_DYNAMIC_DEFAULT) &&
                    set_value(cfg, &ps, s, s->def, s->flag, 0, errbuf, sizeof(errbuf)) != 0)
                        goto fail;
        }
        if (gethostname(host, sizeof(host)) != 0)
                snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        len = strlen(host) + 24;
        cfg->instance_id = malloc(len);
        if (cfg->instance_id == NULL)
                goto fail;
        snprintf(cfg->instance_id, len, "%s:%ld", host, (long)getpid());
        return cfg;
fail:
        config_free(cfg);
        return NULL;
}

void config_free(struct config *cfg)
{
        if (cfg == NULL)
                return;
        for (size_t i = 0; i < config_n_settings; i++)
                if (config_settings[i].type == T_STR || config_settings[i].type == T_SECRET ||
                    config_settings[i].type == T_FILE)
                        free(*(char **)field(cfg, &config_settings[i]));
        kv_free(cfg->routes, cfg->n_routes);
        kv_free(cfg->kafka_props, cfg->n_kafka_props);
        free(cfg->args);
        free(cfg);
}

/* OUTBOX_RDKAFKA_SECURITY_PROTOCOL=SASL_SSL -> security.protocol=SASL_SSL, and
 * OUTBOX_RDKAFKA_SASL_PASSWORD_FILE=/run/secrets/pw -> sasl.password=<its content>. */
static int parse_kprop_env(struct config *cfg, struct parse_state *ps, char *errbuf, size_t errsz)
{
        const size_t plen = strlen(KPROP_ENV_PREFIX), slen = strlen(KPROP_FILE_SUFFIX);

        for (char **e = environ; *e != NULL; e++) {
                const char *eq = strchr(*e, '=');
                struct config_kv kv;
                char var[128];
                size_t nlen;
                int is_file;

                if (eq == NULL || strncmp(*e, KPROP_ENV_PREFIX, plen) != 0 || eq[1] == '\0')
                        continue;
                if (parse_kprop(*e + plen, &kv, KPROP_ENV_PREFIX "<NAME>", errbuf, errsz) != 0)
                        return -1;
                nlen = strlen(kv.name);
                is_file = nlen > slen && strcmp(kv.name + nlen - slen, KPROP_FILE_SUFFIX) == 0;
                snprintf(var, sizeof(var), "%.*s", (int)(eq - *e), *e);
                if (is_file) {
                        kv.name[nlen - slen] = '\0';
                        if (kprop_from_file(&kv, var, errbuf, errsz) != 0)
                                return -1;
                }
                for (char *p = kv.name; *p != '\0'; p++)
                        *p = *p == '_' ? '.' : (char)tolower((unsigned char)*p);
                /* The environment has no order: two variables for one
                 * property (NAME and NAME_FILE) would be a silent choice. */
                for (size_t i = 0; i < cfg->n_kafka_props; i++) {
                        if (strcmp(cfg->kafka_props[i].name, kv.name) != 0)
                                continue;
                        snprintf(errbuf, errsz,
                                 "%.100s and another " KPROP_ENV_PREFIX
                                 " variable both set librdkafka property %.100s: set one",
                                 var, kv.name);
                        free(kv.name);
                        free(kv.value);
                        return -1;
                }
                if (kv_put(&cfg->kafka_props, &cfg->n_kafka_props, NULL, kv, errbuf, errsz) != 0)
                        return -1;
        }
        ps->env_props = cfg->n_kafka_props;
        return 0;
}

/* An empty variable counts as unset, as container tooling often leaves them. */
static int parse_env(struct config *cfg, struct parse_state *ps, char *errbuf, size_t errsz)
{
        for (size_t i = 0; i < config_n_settings; i++) {
                const struct setting *s = &config_settings[i];
                const char *v;

                if (s->type == T_KPROP) {
                        if (parse_kprop_env(cfg, ps, errbuf, errsz) != 0)
                                return -1;
                        continue;
                }
                if (s->type == T_KFILE)
                        continue; /* parse_kprop_env reads both forms */
                if (s->env == NULL || (v = getenv(s->env)) == NULL || v[0] == '\0')
                        continue;
                if (s->type != T_ROUTE) {
                        if (set_value(cfg, ps, s, v, s->env, 0, errbuf, errsz) != 0)
                                return -1;
                        continue;
                }
                /* A comma-separated list of rules; blank items are skipped. */
                for (const char *p = v; *p != '\0';) {
                        size_t n = strcspn(p, ",");
                        char *item = strndup(p, n);
                        int rc;

                        if (item == NULL) {
                                snprintf(errbuf, errsz, "out of memory");
                                return -1;
                        }
                        rc = strspn(item, " \t") == n
                                 ? 0
                                 : set_value(cfg, ps, s, item, s->env, 0, errbuf, errsz);
                        free(item);
                        if (rc != 0)
                                return -1;
                        p += n + (p[n] == ',');
                }
                ps->env_routes = cfg->n_routes;
        }
        return 0;
}

/* --database-url and --database-url-file: one source may give only one of
 * them, a flag of either form overrides the environment's, and then the URL
 * is read from the file. */
static int resolve_url_file(struct config *cfg, const struct parse_state *ps, char *errbuf,
                            size_t errsz)
{
        char **url = &cfg->database_url, **path = &cfg->database_url_file;
        const char *src = ps->url_file_flag ? "--database-url-file" : "OUTBOX_DATABASE_URL_FILE";

        if (ps->url_flag && ps->url_file_flag) {
                snprintf(errbuf, errsz,
                         "--database-url and --database-url-file are both given: give one");
                return -1;
        }
        if (ps->url_flag || ps->url_file_flag) {
                /* The other form, if set, came from the environment. */
                free(ps->url_flag ? *path : *url);
                *(ps->url_flag ? path : url) = NULL;
        } else if (*url != NULL && *path != NULL) {
                snprintf(errbuf, errsz,
                         "OUTBOX_DATABASE_URL and OUTBOX_DATABASE_URL_FILE are both set: set one");
                return -1;
        }
        if (*path == NULL)
                return 0;
        return config_read_file(*path, src, url, errbuf, errsz);
}

int config_set_outbox_value(struct config *cfg, const struct setting *s, const char *value,
                            const char *src, int first, char *errbuf, size_t errsz)
{
        /* Every inherited Kafka property counts as the environment's, so
         * that the outbox's one of the same name replaces it. */
        struct parse_state ps = {0, cfg->n_kafka_props, 0, 0};

        if (s->type == T_ROUTE && first) {
                kv_free(cfg->routes, cfg->n_routes);
                cfg->routes = NULL;
                cfg->n_routes = 0;
        }
        if (s->off == OFF(database_url) || s->off == OFF(database_url_file)) {
                free(cfg->database_url);
                free(cfg->database_url_file);
                cfg->database_url = cfg->database_url_file = NULL;
        }
        if (set_value(cfg, &ps, s, value, src, 1, errbuf, errsz) != 0)
                return -1;
        if (s->off == OFF(database_url_file))
                return config_read_file(cfg->database_url_file, src, &cfg->database_url, errbuf,
                                        errsz);
        return 0;
}

static int add_arg(struct config *cfg, int argc, char *arg, char *errbuf, size_t errsz)
{
        if (cfg->args == NULL && (cfg->args = calloc((size_t)argc, sizeof(char *))) == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                return -1;
        }
        cfg->args[cfg->n_args++] = arg;
        return 0;
}

int config_parse(struct config *cfg, int argc, char **argv, char *errbuf, size_t errsz)
{
        struct parse_state ps = {0, 0, 0, 0};
        const struct setting *s = NULL;
        struct config_args *args;
        char *value = NULL, src[64];
        enum config_arg it;
        int rc = -1;

        if (parse_env(cfg, &ps, errbuf, errsz) != 0 ||
            (args = config_args_new(argc, argv, errbuf, errsz)) == NULL)
                return -1;
        /* CONFIG_ARG_HELP is passed over: main answers --help before parsing
         * (config_wants_help), so that a bad setting cannot hide it. */
        while ((it = config_args_next(args, &s, &value, src, sizeof(src), errbuf, errsz)) !=
               CONFIG_ARG_END) {
                if (it == CONFIG_ARG_ERROR ||
                    (it == CONFIG_ARG_POSITIONAL &&
                     add_arg(cfg, argc, value, errbuf, errsz) != 0) ||
                    (it == CONFIG_ARG_SETTING &&
                     set_value(cfg, &ps, s, value, src, 1, errbuf, errsz) != 0))
                        goto out;
        }
        rc = resolve_url_file(cfg, &ps, errbuf, errsz);
out:
        config_args_free(args);
        return rc;
}

/* ---- validation ---- */

static int check_schema(const char *schema)
{
        size_t len = schema != NULL ? strlen(schema) : 0;

        return len >= 1 && len <= 56 && (islower((unsigned char)schema[0]) || schema[0] == '_') &&
               strspn(schema, "abcdefghijklmnopqrstuvwxyz0123456789_") == len;
}

/* libpq only rejects a bad port when connecting; every listed port must be
 * a number (or empty, for the default). */
static int ports_ok(const char *ports)
{
        while (ports != NULL && *ports != '\0') {
                size_t n = strcspn(ports, ",");
                long port = 0;

                for (size_t k = 0; k < n; k++) {
                        if (!isdigit((unsigned char)ports[k]) || port > 65535)
                                return 0;
                        port = port * 10 + (ports[k] - '0');
                }
                if (n > 0 && (port < 1 || port > 65535))
                        return 0;
                ports += n + (ports[n] == ',');
        }
        return 1;
}

/* Nothing of the URL goes into errbuf: any part of it may be the password,
 * and libpq's own message quotes the text it could not parse. */
static int check_database_url(const char *url, const char *file, char *errbuf, size_t errsz)
{
        char *pqerr = NULL;
        PQconninfoOption *opts = PQconninfoParse(url, &pqerr);
        int ok = opts != NULL;

        for (PQconninfoOption *o = opts; ok && o->keyword != NULL; o++)
                if (strcmp(o->keyword, "port") == 0)
                        ok = ports_ok(o->val);
        PQconninfoFree(opts);
        PQfreemem(pqerr);
        if (ok)
                return 0;
        if (file != NULL)
                snprintf(errbuf, errsz,
                         "the database URL read from %.200s (--database-url-file) could not be "
                         "parsed as a libpq connection string or postgres:// URL (value not shown)",
                         file);
        else
                snprintf(errbuf, errsz,
                         "--database-url (OUTBOX_DATABASE_URL) could not be parsed as a libpq "
                         "connection string or postgres:// URL (value not shown)");
        return -1;
}

/* HOST:PORT: an IPv4 address, or an IPv6 address in brackets ([::] is every
 * interface, IPv4 too). Names are refused: what a name resolves to can
 * change, and the probes and the scraper need one fixed address. */
int config_listen_addr(const char *v, struct sockaddr_storage *addr, socklen_t *len, char *errbuf,
                       size_t errsz)
{
        const char *colon = strrchr(v, ':'), *host = v;
        size_t hostlen = colon != NULL ? (size_t)(colon - v) : 0;
        char buf[INET6_ADDRSTRLEN];
        char *end = NULL;
        long port = colon != NULL ? strtol(colon + 1, &end, 10) : 0;

        memset(addr, 0, sizeof(*addr));
        if (colon == NULL || colon[1] == '\0' || !isdigit((unsigned char)colon[1]) ||
            *end != '\0' || port < 1 || port > 65535)
                goto bad;
        if (hostlen >= 2 && host[0] == '[' && host[hostlen - 1] == ']') {
                struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)addr;

                host++;
                hostlen -= 2;
                if (hostlen == 0 || hostlen >= sizeof(buf))
                        goto bad;
                memcpy(buf, host, hostlen);
                buf[hostlen] = '\0';
                if (inet_pton(AF_INET6, buf, &a6->sin6_addr) != 1)
                        goto bad;
                a6->sin6_family = AF_INET6;
                a6->sin6_port = htons((uint16_t)port);
                *len = sizeof(*a6);
        } else {
                struct sockaddr_in *a4 = (struct sockaddr_in *)addr;

                if (hostlen == 0 || hostlen >= sizeof(buf))
                        goto bad;
                memcpy(buf, host, hostlen);
                buf[hostlen] = '\0';
                if (inet_pton(AF_INET, buf, &a4->sin_addr) != 1)
                        goto bad;
                a4->sin_family = AF_INET;
                a4->sin_port = htons((uint16_t)port);
                *len = sizeof(*a4);
        }
        return 0;
bad:
        snprintf(errbuf, errsz,
                 "invalid --http-listen \"%.64s\": expected IPV4-ADDRESS:PORT or "
                 "[IPV6-ADDRESS]:PORT, e.g. 0.0.0.0:9400 or [::]:9400",
                 v);
        return -1;
}

static int check_ints(const struct config *cfg, char *errbuf, size_t errsz)
{
        for (size_t i = 0; i < config_n_settings; i++) {
                const struct setting *s = &config_settings[i];
                long long v;
                char range[96];

                if (s->type == T_INT)
                        v = *(const int *)field(cfg, s);
                else if (s->type == T_ID)
                        v = *(const long long *)field(cfg, s);
                else
                        continue;
                if (s->type == T_ID && v == 0) /* unset */
                        continue;
                if (v < s->min || v > s->max) {
                        config_range_text(s, range, sizeof(range));
                        snprintf(errbuf, errsz, "--%s is %lld: expected %s", s->flag, v, range);
                        return -1;
                }
        }
        if (cfg->retry_max_ms < cfg->retry_base_ms) {
                snprintf(errbuf, errsz, "--retry-max-ms (%d) must be at least --retry-base-ms (%d)",
                         cfg->retry_max_ms, cfg->retry_base_ms);
                return -1;
        }
        if (cfg->replay_from_id != 0 && cfg->replay_to_id != 0 &&
            cfg->replay_from_id > cfg->replay_to_id) {
                snprintf(errbuf, errsz, "--from-id (%lld) must not be greater than --to-id (%lld)",
                         cfg->replay_from_id, cfg->replay_to_id);
                return -1;
        }
        if (cfg->progress_replication == 0) {
                snprintf(errbuf, errsz,
                         "--progress-topic-replication-factor is 0: expected -1 (the brokers' "
                         "default) or 1 to 32767");
                return -1;
        }
        return 0;
}

static int check_topic(const char *topic, const char *what, char *errbuf, size_t errsz)
{
        if (topic == NULL || route_topic_name_ok(topic))
                return 0;
        snprintf(errbuf, errsz,
                 "%s \"%.64s\" is not a legal Kafka topic name ([A-Za-z0-9._-], 1 to %d "
                 "characters, not \".\" or \"..\")",
                 what, topic, ROUTE_TOPIC_MAX);
        return -1;
}

/* A role name is quoted wherever it is used; PostgreSQL truncates names to
 * 63 bytes, which would grant to another role than the one named. */
static int check_role(const char *role, const char *what, char *errbuf, size_t errsz)
{
        if (role == NULL || strlen(role) <= 63)
                return 0;
        snprintf(errbuf, errsz, "%s \"%.64s...\" is longer than a PostgreSQL role name (63 bytes)",
                 what, role);
        return -1;
}

/* Required strings are set, and no string is empty. */
static int check_strings(const struct config *cfg, int need, char *errbuf, size_t errsz)
{
        for (size_t i = 0; i < config_n_settings; i++) {
                const struct setting *s = &config_settings[i];
                const char *v;

                if (s->type != T_STR && s->type != T_SECRET)
                        continue;
                v = *(char *const *)field(cfg, s);
                if ((s->need & need) && v == NULL) {
                        snprintf(errbuf, errsz, "missing required setting --%s (%s)%s", s->flag,
                                 s->env,
                                 s->off == OFF(database_url)
                                     ? " or --database-url-file (OUTBOX_DATABASE_URL_FILE)"
                                     : "");
                        return -1;
                }
                if (v != NULL && v[0] == '\0') {
                        snprintf(errbuf, errsz, "--%s must not be empty", s->flag);
                        return -1;
                }
        }
        return 0;
}

/* The relay's names for itself, and what exactly-once bounds. */
static int check_ids(const struct config *cfg, char *errbuf, size_t errsz)
{
        if (cfg->instance_id == NULL || strlen(cfg->instance_id) > 255) {
                snprintf(errbuf, errsz, "--instance-id must be 1 to 255 characters");
                return -1;
        }
        if (cfg->transactional_id != NULL && strlen(cfg->transactional_id) > 255) {
                snprintf(errbuf, errsz, "--transactional-id must be 1 to 255 characters");
                return -1;
        }
        if (cfg->exactly_once && cfg->batch_size > CONFIG_TXN_MAX_ROWS) {
                /* A larger batch's progress record would pass Kafka's 1 MB
                 * message limit: refused, aborted and fetched again, forever. */
                snprintf(errbuf, errsz,
                         "--batch-size %d is too large for --exactly-once: at most %d rows, "
                         "so that a transaction's progress record fits one Kafka message",
                         cfg->batch_size, CONFIG_TXN_MAX_ROWS);
                return -1;
        }
        return 0;
}

int config_validate(const struct config *cfg, int need, char *errbuf, size_t errsz)
{
        struct sockaddr_storage listen_addr;
        socklen_t listen_len;
        struct route *rt;
        char msg[256];
        int rc;

        if (check_strings(cfg, need, errbuf, errsz) != 0 || check_ints(cfg, errbuf, errsz) != 0)
                return -1;
        if ((unsigned)cfg->log_level > LOG_LEVEL_ERROR) {
                snprintf(errbuf, errsz, "--log-level is out of range");
                return -1;
        }
        if (!check_schema(cfg->schema)) {
                snprintf(errbuf, errsz,
                         "invalid --schema \"%.64s\": expected a lowercase SQL identifier "
                         "([a-z_][a-z0-9_]*, at most 56 characters so that the "
                         "notification channel <schema>.events fits PostgreSQL's 63)",
                         cfg->schema != NULL ? cfg->schema : "");
                return -1;
        }
        if (check_ids(cfg, errbuf, errsz) != 0)
                return -1;
        if (check_role(cfg->grant_writer, "--grant-writer", errbuf, errsz) != 0 ||
            check_role(cfg->grant_relay, "--grant-relay", errbuf, errsz) != 0)
                return -1;
        if (check_topic(cfg->progress_topic, "--progress-topic", errbuf, errsz) != 0 ||
            check_topic(cfg->default_topic, "--default-topic", errbuf, errsz) != 0 ||
            check_topic(cfg->dead_letter_topic, "--dead-letter-topic", errbuf, errsz) != 0 ||
            check_topic(cfg->replay_topic, "--topic", errbuf, errsz) != 0)
                return -1;
        if (cfg->database_url != NULL &&
            check_database_url(cfg->database_url, cfg->database_url_file, errbuf, errsz) != 0)
                return -1;
        if (cfg->http_listen != NULL &&
            config_listen_addr(cfg->http_listen, &listen_addr, &listen_len, errbuf, errsz) != 0)
                return -1;
        if (kafka_conf_validate(cfg, errbuf, errsz) != 0 ||
            config_check_envelope(cfg, errbuf, errsz) != 0)
                return -1;
        /* Duplicate patterns are only visible once all rules are compiled. */
        rt = route_new(cfg->routes, cfg->n_routes, cfg->default_topic, errbuf, errsz);
        if (rt == NULL)
                return -1;
        rc = route_guard(rt, cfg->allowed_topics, cfg->progress_topic, errbuf, errsz);
        /* Its records would be refused as they come, each a dead letter. */
        if (rc == 0 && cfg->dead_letter_topic != NULL &&
            route_refused(rt, cfg->dead_letter_topic, msg, sizeof(msg)) != 0) {
                snprintf(errbuf, errsz, "invalid --dead-letter-topic: %s", msg);
                rc = -1;
        }
        route_free(rt);
        return rc;
}
