/* config_value: the text of a setting (a flag's or a variable's value)
 * made into its type: integers within the table's range, ages with a unit,
 * log levels and booleans, each refused with one line naming the source. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_table.h"

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void config_range_text(const struct setting *s, char *buf, size_t sz)
{
        if (s->max == LLONG_MAX)
                snprintf(buf, sz, "an integer >= %lld", s->min);
        else
                snprintf(buf, sz, "an integer from %lld to %lld", s->min, s->max);
}

int config_value_int(const struct setting *s, const char *value, const char *src, long long *out,
                     char *errbuf, size_t errsz)
{
        char *end;
        long long v;
        char range[96];

        /* strtoll alone would accept blanks, '+', trailing junk and clamp overflow. */
        errno = 0;
        v = strtoll(value, &end, 10);
        if ((isdigit((unsigned char)value[0]) ||
             (value[0] == '-' && isdigit((unsigned char)value[1]))) &&
            *end == '\0' && errno == 0 && v >= s->min && v <= s->max) {
                *out = v;
                return 0;
        }
        config_range_text(s, range, sizeof(range));
        snprintf(errbuf, errsz, "invalid value \"%.64s\" for %s: expected %s", value, src, range);
        return -1;
}

/* "0", "90s", "15m", "12h" or "7d" into seconds. */
int config_value_secs(const struct setting *s, const char *value, const char *src, int *out,
                      char *errbuf, size_t errsz)
{
        static const struct {
                char unit;
                long long mult;
        } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
        char *end;
        long long v;

        errno = 0;
        v = strtoll(value, &end, 10);
        if (isdigit((unsigned char)value[0]) && errno == 0) {
                if (*end == '\0' && v == 0) {
                        *out = 0;
                        return 0;
                }
                for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
                        if (end[0] != units[i].unit || end[1] != '\0' || v > s->max / units[i].mult)
                                continue;
                        *out = (int)(v * units[i].mult);
                        return 0;
                }
        }
        snprintf(errbuf, errsz,
                 "invalid value \"%.64s\" for %s: expected 0 or a number with a unit s, m, h or d "
                 "(e.g. 7d), at most 3650d",
                 value, src);
        return -1;
}

int config_value_level(const char *value, const char *src, enum log_level *out, char *errbuf,
                       size_t errsz)
{
        for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
                if (strcasecmp(value, level_names[i]) == 0) {
                        *out = (enum log_level)i;
                        return 0;
                }
        }
        snprintf(errbuf, errsz,
                 "invalid value \"%.64s\" for %s: expected debug, info, warn or error", value, src);
        return -1;
}

/* A flag on the command line has no value (NULL); a variable says which. */
int config_value_bool(const char *value, const char *src, int *out, char *errbuf, size_t errsz)
{
        if (value == NULL || strcmp(value, "true") == 0 || strcmp(value, "1") == 0) {
                *out = 1;
        } else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0) {
                *out = 0;
        } else {
                snprintf(errbuf, errsz, "%s must be true or false, not \"%.32s\"", src, value);
                return -1;
        }
        return 0;
}
