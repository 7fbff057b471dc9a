/* route: compiles "pattern=topic" rules once (exact patterns and prefixes
 * each sorted for binary search) so route_topic, called for every row with
 * a NULL topic, needs no allocation and only O(dots * log n) comparisons. */
#include "route.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* pattern is the exact event type, or for a prefix rule the text before the
 * '*' ("user." for "user.*", "" for "*"). */
struct route_rule {
        char *pattern;
        size_t len;
        char *topic;
};

struct route {
        struct route_rule *exact; /* sorted by strcmp on pattern */
        size_t n_exact;
        struct route_rule *prefix; /* sorted by strcmp on pattern */
        size_t n_prefix;
        char *default_topic; /* NULL when there is none */
        char **allowed;      /* --allowed-topics patterns; NULL: every topic */
        size_t n_allowed;
        char *reserved; /* the progress topic, or NULL */
};

int route_topic_name_ok(const char *topic)
{
        size_t len;

        if (topic == NULL)
                return 0;
        len = strlen(topic);
        if (len == 0 || len > ROUTE_TOPIC_MAX || strcmp(topic, ".") == 0 ||
            strcmp(topic, "..") == 0)
                return 0;
        return strspn(topic, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
               len;
}

/* A '*' may only stand alone or end the pattern right after a '.'. */
static int check_pattern(const char *pattern, char *errbuf, size_t errsz)
{
        const char *star = strchr(pattern, '*');
        size_t len = strlen(pattern);

        if (len == 0) {
                snprintf(errbuf, errsz, "route has an empty event_type pattern");
                return -1;
        }
        if (star == NULL)
                return 0;
        if (len == 1 || (star == pattern + len - 1 && len >= 2 && pattern[len - 2] == '.'))
                return 0;
        snprintf(errbuf, errsz,
                 "route pattern \"%s\": '*' is only allowed alone or at the end after a '.' "
                 "(\"user.*\")",
                 pattern);
        return -1;
}

static int check_rule(const char *pattern, const char *topic, char *errbuf, size_t errsz)
{
        if (check_pattern(pattern, errbuf, errsz) != 0)
                return -1;
        if (!route_topic_name_ok(topic)) {
                snprintf(errbuf, errsz,
                         "route \"%s\": \"%s\" is not a legal Kafka topic name ([A-Za-z0-9._-], "
                         "1 to %d characters, not \".\" or \"..\")",
                         pattern, topic == NULL ? "" : topic, ROUTE_TOPIC_MAX);
                return -1;
        }
        return 0;
}

static char *dup_trimmed(const char *s, size_t len)
{
        char *out;

        while (len > 0 && (*s == ' ' || *s == '\t')) {
                s++;
                len--;
        }
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
                len--;
        out = malloc(len + 1);
        if (out != NULL) {
                memcpy(out, s, len);
                out[len] = '\0';
        }
        return out;
}

int route_parse_rule(const char *text, struct config_kv *out, char *errbuf, size_t errsz)
{
        /* Topic names cannot contain '=', so the last '=' is the separator. */
        const char *eq = strrchr(text, '=');
        char *pattern = NULL, *topic = NULL;

        out->name = out->value = NULL;
        if (eq == NULL) {
                snprintf(errbuf, errsz, "route \"%s\" is not of the form pattern=topic", text);
                return -1;
        }
        pattern = dup_trimmed(text, (size_t)(eq - text));
        topic = dup_trimmed(eq + 1, strlen(eq + 1));
        if (pattern == NULL || topic == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                goto fail;
        }
        if (check_rule(pattern, topic, errbuf, errsz) != 0)
                goto fail;
        out->name = pattern;
        out->value = topic;
        return 0;
fail:
        free(pattern);
        free(topic);
        return -1;
}

static int rule_cmp(const void *a, const void *b)
{
        return strcmp(((const struct route_rule *)a)->pattern,
                      ((const struct route_rule *)b)->pattern);
}

/* Compares the first len bytes of key (which has no NUL among them) with a
 * NUL-terminated pattern, as strcmp would compare the two strings. */
static int cmp_bounded(const char *key, size_t len, const struct route_rule *r)
{
        size_t n = len < r->len ? len : r->len;
        int c = memcmp(key, r->pattern, n);

        if (c != 0)
                return c;
        return len < r->len ? -1 : len > r->len ? 1 : 0;
}

static const struct route_rule *find(const struct route_rule *rules, size_t n, const char *key,
                                     size_t len)
{
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = cmp_bounded(key, len, &rules[mid]);

                if (c == 0)
                        return &rules[mid];
                if (c < 0)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        return NULL;
}

static void free_rules(struct route_rule *rules, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(rules[i].pattern);
                free(rules[i].topic);
        }
        free(rules);
}

void route_free(struct route *rt)
{
        if (rt == NULL)
                return;
        free_rules(rt->exact, rt->n_exact);
        free_rules(rt->prefix, rt->n_prefix);
        free(rt->default_topic);
        for (size_t i = 0; i < rt->n_allowed; i++)
                free(rt->allowed[i]);
        free(rt->allowed);
        free(rt->reserved);
        free(rt);
}

/* Sorts rules and rejects two rules with the same pattern: which one would
 * win is not obvious to the person who wrote them. */
static int sort_unique(struct route_rule *rules, size_t n, const char *kind, char *errbuf,
                       size_t errsz)
{
        if (n > 1)
                qsort(rules, n, sizeof(*rules), rule_cmp);
        for (size_t i = 1; i < n; i++) {
                if (strcmp(rules[i - 1].pattern, rules[i].pattern) == 0) {
                        snprintf(errbuf, errsz, "duplicate %s route pattern \"%s%s\"", kind,
                                 rules[i].pattern, strcmp(kind, "prefix") == 0 ? "*" : "");
                        return -1;
                }
        }
        return 0;
}

struct route *route_new(const struct config_kv *rules, size_t n, const char *default_topic,
                        char *errbuf, size_t errsz)
{
        struct route *rt = calloc(1, sizeof(*rt));

        if (rt == NULL || (n > 0 && ((rt->exact = calloc(n, sizeof(*rt->exact))) == NULL ||
                                     (rt->prefix = calloc(n, sizeof(*rt->prefix))) == NULL))) {
                snprintf(errbuf, errsz, "out of memory");
                goto fail;
        }
        for (size_t i = 0; i < n; i++) {
                const char *pat = rules[i].name;
                size_t len;
                int is_prefix;
                struct route_rule *r;

                if (pat == NULL || rules[i].value == NULL) {
                        snprintf(errbuf, errsz, "route %zu is incomplete", i + 1);
                        goto fail;
                }
                if (check_rule(pat, rules[i].value, errbuf, errsz) != 0)
                        goto fail;
                len = strlen(pat);
                is_prefix = pat[len - 1] == '*';
                /* Counted before copying so free_rules releases a half-made rule. */
                r = is_prefix ? &rt->prefix[rt->n_prefix++] : &rt->exact[rt->n_exact++];
                if (is_prefix)
                        len--;
                r->pattern = strndup(pat, len);
                r->len = len;
                r->topic = strdup(rules[i].value);
                if (r->pattern == NULL || r->topic == NULL) {
                        snprintf(errbuf, errsz, "out of memory");
                        goto fail;
                }
        }
        if (sort_unique(rt->exact, rt->n_exact, "exact", errbuf, errsz) != 0 ||
            sort_unique(rt->prefix, rt->n_prefix, "prefix", errbuf, errsz) != 0)
                goto fail;
        if (default_topic != NULL && default_topic[0] != '\0') {
                if (!route_topic_name_ok(default_topic)) {
                        snprintf(errbuf, errsz,
                                 "default topic \"%s\" is not a legal Kafka topic name",
                                 default_topic);
                        goto fail;
                }
                rt->default_topic = strdup(default_topic);
                if (rt->default_topic == NULL) {
                        snprintf(errbuf, errsz, "out of memory");
                        goto fail;
                }
        }
        return rt;
fail:
        route_free(rt);
        return NULL;
}

/* Longest prefix first: every prefix pattern ends in '.' (or is "" for
 * "*"), so the only candidates are event_type cut after each of its dots,
 * tried from the last dot back, then "". */
static const struct route_rule *match_prefix(const struct route *rt, const char *event_type)
{
        size_t len = strlen(event_type);

        if (rt->n_prefix == 0)
                return NULL;
        while (len > 0) {
                const struct route_rule *r;

                if (event_type[len - 1] == '.') {
                        r = find(rt->prefix, rt->n_prefix, event_type, len);
                        if (r != NULL)
                                return r;
                }
                len--;
        }
        return find(rt->prefix, rt->n_prefix, event_type, 0);
}

const char *route_topic(const struct route *rt, const char *topic, const char *event_type,
                        char *errbuf, size_t errsz)
{
        const struct route_rule *r;

        if (topic != NULL && topic[0] != '\0')
                return topic;
        if (event_type == NULL || event_type[0] == '\0') {
                if (rt->default_topic != NULL)
                        return rt->default_topic;
                snprintf(errbuf, errsz,
                         "row has neither topic nor event_type and no --default-topic");
                return NULL;
        }
        r = find(rt->exact, rt->n_exact, event_type, strlen(event_type));
        if (r == NULL)
                r = match_prefix(rt, event_type);
        if (r != NULL)
                return r->topic;
        if (rt->default_topic != NULL)
                return rt->default_topic;
        snprintf(errbuf, errsz, "no route for event_type \"%s\" and no --default-topic",
                 event_type);
        return NULL;
}

/* ---- topics a row may not reach ---- */

int route_refused(const struct route *rt, const char *topic, char *errbuf, size_t errsz)
{
        size_t i;

        if (strncmp(topic, "__", 2) == 0) {
                snprintf(errbuf, errsz,
                         "topic \"%s\" is refused: names starting with \"__\" are Kafka's "
                         "internal topics",
                         topic);
                return -1;
        }
        if (rt->reserved != NULL && strcmp(topic, rt->reserved) == 0) {
                snprintf(errbuf, errsz,
                         "topic \"%s\" is refused: it is the relay's progress topic "
                         "(--progress-topic)",
                         topic);
                return -1;
        }
        if (rt->allowed == NULL)
                return 0;
        for (i = 0; i < rt->n_allowed; i++)
                if (fnmatch(rt->allowed[i], topic, 0) == 0)
                        return 0;
        snprintf(errbuf, errsz,
                 "topic \"%s\" is refused: it matches no pattern of --allowed-topics", topic);
        return -1;
}

/* A pattern is a topic name that may hold '*' and '?'; '[' and '\\' are
 * not topic characters, so fnmatch sees nothing else special. */
static int pattern_ok(const char *p)
{
        size_t len = strlen(p);

        return len >= 1 && len <= ROUTE_TOPIC_MAX &&
               strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-*?") ==
                   len;
}

static int add_allowed(struct route *rt, const char *item, size_t len, char *errbuf, size_t errsz)
{
        char *p = dup_trimmed(item, len), **grown;

        if (p == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                return -1;
        }
        if (p[0] == '\0') { /* "a,,b" or a trailing comma */
                free(p);
                return 0;
        }
        if (!pattern_ok(p)) {
                snprintf(errbuf, errsz,
                         "invalid --allowed-topics pattern \"%.64s\": expected a topic name that "
                         "may hold * and ? ([A-Za-z0-9._-*?], 1 to %d characters)",
                         p, ROUTE_TOPIC_MAX);
                free(p);
                return -1;
        }
        grown = realloc(rt->allowed, (rt->n_allowed + 1) * sizeof(*grown));
        if (grown == NULL) {
                free(p);
                snprintf(errbuf, errsz, "out of memory");
                return -1;
        }
        rt->allowed = grown;
        rt->allowed[rt->n_allowed++] = p;
        return 0;
}

/* A configured target that rows would be refused on is a mistake in the
 * configuration: say so at startup instead of dead-lettering every row. */
static int check_target(const struct route *rt, const char *what, const char *topic, char *errbuf,
                        size_t errsz)
{
        char why[512];

        if (route_refused(rt, topic, why, sizeof(why)) == 0)
                return 0;
        snprintf(errbuf, errsz, "%s: %s", what, why);
        return -1;
}

int route_guard(struct route *rt, const char *allowed_csv, const char *reserved, char *errbuf,
                size_t errsz)
{
        char what[300];

        if (reserved != NULL && (rt->reserved = strdup(reserved)) == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                return -1;
        }
        for (const char *p = allowed_csv; p != NULL && *p != '\0';) {
                size_t n = strcspn(p, ",");

                if (add_allowed(rt, p, n, errbuf, errsz) != 0)
                        return -1;
                p += n + (p[n] == ',');
        }
        if (allowed_csv != NULL && rt->allowed == NULL) {
                snprintf(errbuf, errsz, "--allowed-topics names no pattern");
                return -1;
        }
        for (size_t i = 0; i < rt->n_exact + rt->n_prefix; i++) {
                const struct route_rule *r =
                    i < rt->n_exact ? &rt->exact[i] : &rt->prefix[i - rt->n_exact];

                snprintf(what, sizeof(what), "route \"%s%s\"", r->pattern,
                         i < rt->n_exact ? "" : "*");
                if (check_target(rt, what, r->topic, errbuf, errsz) != 0)
                        return -1;
        }
        if (rt->default_topic != NULL &&
            check_target(rt, "--default-topic", rt->default_topic, errbuf, errsz) != 0)
                return -1;
        return 0;
}
