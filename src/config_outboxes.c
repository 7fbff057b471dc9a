/* config_outboxes: --outboxes-file, the outboxes one process serves. A JSON
 * array of {"name": NAME, <setting>: <value>, ...}; each outbox starts from
 * the process's environment and flags and its keys are set over them by the
 * same code as flags, then validated like the process's own settings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "config_table.h"

/* Each outbox runs a thread, a producer and two or three database sessions. */
#define OUTBOXES_MAX    64
#define OUTBOX_NAME_MAX 63

static const struct setting *find_setting(const char *key)
{
        for (size_t i = 0; i < config_n_settings; i++)
                if (strcmp(config_settings[i].flag, key) == 0)
                        return &config_settings[i];
        return NULL;
}

/* A name goes into metric labels, log lines, thread names and the default
 * transactional id: kept to what needs no escaping anywhere. */
static int name_ok(const char *name)
{
        size_t len = strlen(name);

        return len >= 1 && len <= OUTBOX_NAME_MAX &&
               strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") == len;
}

/* A JSON scalar as the text a flag would carry; NULL for any other type. */
static const char *scalar_text(const json_t *v, char *buf, size_t sz)
{
        if (json_is_string(v))
                return json_string_value(v);
        if (json_is_integer(v)) {
                snprintf(buf, sz, "%lld", (long long)json_integer_value(v));
                return buf;
        }
        if (json_is_boolean(v))
                return json_is_true(v) ? "true" : "false";
        return NULL;
}

static int set_key(struct config *c, const struct setting *s, const json_t *v, const char *where,
                   char *errbuf, size_t errsz)
{
        int list = s->type == T_ROUTE || s->type == T_KPROP || s->type == T_KFILE;
        const char *text;
        char num[32];

        if (list && json_is_array(v)) {
                size_t i;
                const json_t *item;

                if (json_array_size(v) == 0) {
                        snprintf(errbuf, errsz, "%s: expected at least one item", where);
                        return -1;
                }
                json_array_foreach(v, i, item)
                {
                        if (!json_is_string(item)) {
                                snprintf(errbuf, errsz, "%s: expected a list of strings", where);
                                return -1;
                        }
                        if (config_set_outbox_value(c, s, json_string_value(item), where, i == 0,
                                                    errbuf, errsz) != 0)
                                return -1;
                }
                return 0;
        }
        if ((text = scalar_text(v, num, sizeof(num))) == NULL) {
                snprintf(errbuf, errsz, "%s: expected a string, an integer or a boolean%s", where,
                         list ? " (or a list of strings)" : "");
                return -1;
        }
        if (text[0] == '\0') {
                snprintf(errbuf, errsz, "%s: must not be empty", where);
                return -1;
        }
        return config_set_outbox_value(c, s, text, where, 1, errbuf, errsz);
}

/* The keys of one outbox over a fresh parse of the process's settings. */
static int load_one(int argc, char **argv, int need, const char *file, const char *name,
                    const json_t *obj, struct config *c, char *errbuf, size_t errsz)
{
        const char *key;
        const json_t *v;
        char where[400], msg[512];

        if (config_parse(c, argc, argv, msg, sizeof(msg)) != 0) {
                snprintf(errbuf, errsz, "%s", msg);
                return -1;
        }
        json_object_foreach((json_t *)obj, key, v)
        {
                const struct setting *s = find_setting(key);

                if (strcmp(key, "name") == 0)
                        continue;
                snprintf(where, sizeof(where), "%.200s: outbox \"%s\": key \"%.64s\"", file, name,
                         key);
                if (s == NULL) {
                        snprintf(errbuf, errsz, "%s: unknown setting (see --help)", where);
                        return -1;
                }
                if (!(s->flags & F_PER_OUTBOX)) {
                        snprintf(errbuf, errsz,
                                 "%s: a setting of the whole process, not of an outbox: give it "
                                 "as --%s",
                                 where, s->flag);
                        return -1;
                }
                if (set_key(c, s, v, where, errbuf, errsz) != 0)
                        return -1;
        }
        /* One HTTP server for the process, not one per outbox. */
        free(c->http_listen);
        c->http_listen = NULL;
        /* Two outboxes must never share a transactional id: each would
         * fence the other. The name is unique; the schema need not be. */
        if (c->transactional_id == NULL) {
                size_t len = strlen(name) + sizeof("outbox-relay.");

                if ((c->transactional_id = malloc(len)) == NULL) {
                        snprintf(errbuf, errsz, "out of memory");
                        return -1;
                }
                snprintf(c->transactional_id, len, "outbox-relay.%s", name);
        }
        if (config_validate(c, need, msg, sizeof(msg)) != 0) {
                snprintf(errbuf, errsz, "%.200s: outbox \"%s\": %s", file, name, msg);
                return -1;
        }
        return 0;
}

/* Where a database URL leads, as far as can be told without connecting:
 * the server (hostaddr, else host, with the loopback names made one),
 * the port and the database, each with libpq's default where the URL
 * gives none, and the service file entry if one is named. */
struct db_place {
        char host[256], port[32], dbname[128], service[128];
};

/* libpq's value for keyword in opts, else env's, else dflt. */
static const char *opt_or(const PQconninfoOption *opts, const char *keyword, const char *env,
                          const char *dflt)
{
        const char *v = NULL;

        for (const PQconninfoOption *o = opts; o->keyword != NULL; o++)
                if (strcmp(o->keyword, keyword) == 0 && o->val != NULL && o->val[0] != '\0')
                        v = o->val;
        if (v == NULL && env != NULL)
                v = getenv(env);
        return v != NULL && v[0] != '\0' ? v : dflt;
}

/* 127.0.0.1, ::1 and localhost are one server to a process: the outboxes
 * share its network namespace. Each host of a list is folded alike. */
static void fold_hosts(const char *hosts, char *out, size_t outsz)
{
        size_t used = 0;
        const char *p = hosts;

        out[0] = '\0';
        while (*p != '\0' && used + 1 < outsz) {
                size_t len = strcspn(p, ",");
                const char *h = p;
                int n;

                if ((len == 9 && strncmp(h, "localhost", 9) == 0) ||
                    (len == 9 && strncmp(h, "127.0.0.1", 9) == 0) ||
                    (len == 3 && strncmp(h, "::1", 3) == 0))
                        h = "loopback", len = 8;
                n = snprintf(out + used, outsz - used, "%s%.*s", used ? "," : "", (int)len, h);
                if (n < 0 || (size_t)n >= outsz - used)
                        break;
                used += (size_t)n;
                p += strcspn(p, ",");
                if (*p == ',')
                        p++;
        }
}

/* 0 and *place filled, or -1 when url does not parse (it was validated
 * before: then the URLs are compared as they are written). */
static int db_place_of(const char *url, struct db_place *place)
{
        PQconninfoOption *opts = PQconninfoParse(url, NULL);
        const char *user;

        if (opts == NULL)
                return -1;
        fold_hosts(opt_or(opts, "hostaddr", "PGHOSTADDR", opt_or(opts, "host", "PGHOST", "")),
                   place->host, sizeof(place->host));
        snprintf(place->port, sizeof(place->port), "%s", opt_or(opts, "port", "PGPORT", "5432"));
        /* libpq's dbname defaults to the user name. */
        user = opt_or(opts, "user", "PGUSER", "");
        snprintf(place->dbname, sizeof(place->dbname), "%s",
                 opt_or(opts, "dbname", "PGDATABASE", user));
        snprintf(place->service, sizeof(place->service), "%s",
                 opt_or(opts, "service", "PGSERVICE", ""));
        PQconninfoFree(opts);
        return 0;
}

/* Whether two URLs lead to one database: written alike, or the same
 * server, port, database and service once parsed. URLs that differ in a
 * way this cannot see (two names of one host, a service file's entry)
 * are told apart at startup, where the second outbox stays a standby of
 * the first's leader lock (docs/outboxes.md). */
static int same_database(const char *a, const char *b)
{
        struct db_place pa, pb;

        if (strcmp(a, b) == 0)
                return 1;
        if (db_place_of(a, &pa) != 0 || db_place_of(b, &pb) != 0)
                return 0;
        return strcmp(pa.host, pb.host) == 0 && strcmp(pa.port, pb.port) == 0 &&
               strcmp(pa.dbname, pb.dbname) == 0 && strcmp(pa.service, pb.service) == 0;
}

/* What two outboxes must not share. */
static int check_pair(const char *file, const struct config_outbox *a,
                      const struct config_outbox *b, char *errbuf, size_t errsz)
{
        if (strcmp(a->name, b->name) == 0) {
                snprintf(errbuf, errsz, "%.200s: two outboxes are named \"%s\"", file, a->name);
                return -1;
        }
        if (a->cfg->exactly_once && b->cfg->exactly_once &&
            strcmp(a->cfg->transactional_id, b->cfg->transactional_id) == 0) {
                snprintf(errbuf, errsz,
                         "%.200s: outboxes \"%s\" and \"%s\": key \"transactional-id\": both use "
                         "\"%.64s\": each outbox needs its own (one would fence the other)",
                         file, a->name, b->name, a->cfg->transactional_id);
                return -1;
        }
        /* The URL is not shown: it may hold a password. */
        if (a->cfg->database_url != NULL && b->cfg->database_url != NULL &&
            strcmp(a->cfg->schema, b->cfg->schema) == 0 &&
            same_database(a->cfg->database_url, b->cfg->database_url)) {
                snprintf(errbuf, errsz,
                         "%.200s: outboxes \"%s\" and \"%s\": key \"schema\": both serve schema "
                         "\"%s\" of one database: each outbox needs its own",
                         file, a->name, b->name, a->cfg->schema);
                return -1;
        }
        return 0;
}

/* Outbox i of the file (item) as list[*count], checked against the ones
 * before it; *count counts it as soon as it holds anything to free. */
static int add_outbox(const char *file, int argc, char **argv, int need, struct config_outbox *list,
                      size_t *count, size_t i, const json_t *item, char *errbuf, size_t errsz)
{
        const json_t *name = json_object_get(item, "name");
        struct config_outbox *o = &list[*count];

        if (!json_is_object(item) || !json_is_string(name) || !name_ok(json_string_value(name))) {
                snprintf(errbuf, errsz,
                         "%.200s: outbox %zu: key \"name\": expected a string of 1 to %d "
                         "characters [a-z0-9_-]",
                         file, i + 1, OUTBOX_NAME_MAX);
                return -1;
        }
        o->name = strdup(json_string_value(name));
        o->cfg = config_new();
        (*count)++;
        if (o->name == NULL || o->cfg == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                return -1;
        }
        for (size_t k = 0; k + 1 < *count; k++)
                if (strcmp(list[k].name, o->name) == 0) {
                        snprintf(errbuf, errsz, "%.200s: two outboxes are named \"%s\"", file,
                                 o->name);
                        return -1;
                }
        if (load_one(argc, argv, need, file, o->name, item, o->cfg, errbuf, errsz) != 0)
                return -1;
        for (size_t k = 0; k + 1 < *count; k++)
                if (check_pair(file, &list[k], o, errbuf, errsz) != 0)
                        return -1;
        return 0;
}

int config_outboxes_load(const struct config *cfg, int argc, char **argv, int need,
                         struct config_outbox **out, size_t *n, char *errbuf, size_t errsz)
{
        const char *file = cfg->outboxes_file;
        struct config_outbox *list = NULL;
        json_error_t jerr;
        json_t *root, *item;
        size_t i, count = 0;
        int rc = -1;

        *out = NULL;
        *n = 0;
        /* jansson's message quotes the text near the error, which may be a
         * password: only the position is said. */
        root = json_load_file(file, JSON_REJECT_DUPLICATES, &jerr);
        if (root == NULL) {
                if (jerr.line < 0)
                        snprintf(errbuf, errsz, "--outboxes-file: cannot read %.200s", file);
                else
                        snprintf(errbuf, errsz,
                                 "%.200s: not valid JSON or a key given twice (line %d, column "
                                 "%d; the text is not shown)",
                                 file, jerr.line, jerr.column);
                return -1;
        }
        if (!json_is_array(root) || json_array_size(root) == 0 ||
            json_array_size(root) > OUTBOXES_MAX) {
                snprintf(errbuf, errsz,
                         "%.200s: expected a JSON array of 1 to %d outboxes, each "
                         "{\"name\": \"NAME\", ...}",
                         file, OUTBOXES_MAX);
                goto out;
        }
        list = calloc(json_array_size(root), sizeof(*list));
        if (list == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                goto out;
        }
        json_array_foreach(root, i, item)
        {
                if (add_outbox(file, argc, argv, need, list, &count, i, item, errbuf, errsz) != 0)
                        goto out;
        }
        *out = list;
        *n = count;
        list = NULL;
        rc = 0;
out:
        config_outboxes_free(list, count);
        json_decref(root);
        return rc;
}

void config_outboxes_free(struct config_outbox *o, size_t n)
{
        if (o == NULL)
                return;
        for (size_t i = 0; i < n; i++) {
                free(o[i].name);
                config_free(o[i].cfg);
        }
        free(o);
}
