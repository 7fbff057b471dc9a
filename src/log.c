/* log: JSON lines built with jansson, one object per line. Each line goes
 * out in a single fwrite followed by fflush, so lines from librdkafka's
 * threads and ours never interleave and nothing is lost on a crash. */
#include "log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

struct log {
        FILE *out;
        enum config_log_level level;
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

struct log *log_new(FILE *out, enum config_log_level level)
{
        struct log *lg = calloc(1, sizeof(*lg));

        if (lg == NULL)
                return NULL;
        lg->out = out;
        lg->level = level;
        return lg;
}

void log_free(struct log *lg)
{
        free(lg);
}

int log_enabled(const struct log *lg, enum config_log_level level)
{
        return lg != NULL && lg->out != NULL && level >= lg->level && level <= CONFIG_LOG_ERROR;
}

/* UTC with milliseconds: "2026-11-23T12:00:00.123Z". */
static void format_ts(char *buf, size_t sz)
{
        struct timespec now;
        struct tm tm;
        char sec[32];

        clock_gettime(CLOCK_REALTIME, &now);
        gmtime_r(&now.tv_sec, &tm);
        strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf, sz, "%s.%03ldZ", sec, now.tv_nsec / 1000000L);
}

/* A message that is not valid UTF-8 (say, a server error in another
 * encoding) is still logged, with its non-ASCII bytes replaced. */
static json_t *string_or_ascii(const char *s)
{
        json_t *j = json_string(s);
        char *copy;

        if (j != NULL)
                return j;
        copy = strdup(s);
        if (copy == NULL)
                return NULL;
        for (char *p = copy; *p != '\0'; p++)
                if ((unsigned char)*p >= 0x80)
                        *p = '?';
        j = json_string(copy);
        free(copy);
        return j;
}

/* Adds the caller's fields after ts/level/msg (which they cannot replace).
 * A bad format or value must not cost the message, so it becomes a
 * "log_error" field instead. */
static void add_fields(json_t *obj, const char *fields_fmt, va_list ap)
{
        json_error_t jerr;
        json_t *fields = json_vpack_ex(&jerr, 0, fields_fmt, ap);

        if (fields == NULL) {
                json_object_set_new(obj, "log_error", string_or_ascii(jerr.text));
                return;
        }
        if (!json_is_object(fields))
                json_object_set_new(obj, "log_error",
                                    json_string("log fields format is not an object"));
        else
                json_object_update_missing(obj, fields);
        json_decref(fields);
}

static void emit(FILE *out, const json_t *obj)
{
        char stackbuf[1024];
        char *buf = stackbuf;
        size_t n = json_dumpb(obj, stackbuf, sizeof(stackbuf) - 1, JSON_COMPACT);

        if (n == 0)
                return;
        if (n >= sizeof(stackbuf)) {
                buf = malloc(n + 1);
                if (buf == NULL)
                        return;
                if (json_dumpb(obj, buf, n, JSON_COMPACT) != n) {
                        free(buf);
                        return;
                }
        }
        buf[n] = '\n';
        fwrite(buf, 1, n + 1, out);
        fflush(out);
        if (buf != stackbuf)
                free(buf);
}

void log_write(struct log *lg, enum config_log_level level, const char *msg, const char *fields_fmt,
               ...)
{
        char ts[64];
        json_t *obj;

        if (!log_enabled(lg, level))
                return;
        obj = json_object();
        if (obj == NULL)
                return;
        format_ts(ts, sizeof(ts));
        json_object_set_new(obj, "ts", json_string(ts));
        json_object_set_new(obj, "level", json_string(level_names[level]));
        json_object_set_new(obj, "msg", string_or_ascii(msg != NULL ? msg : ""));
        if (fields_fmt != NULL) {
                va_list ap;

                va_start(ap, fields_fmt);
                add_fields(obj, fields_fmt, ap);
                va_end(ap);
        }
        emit(lg->out, obj);
        json_decref(obj);
}
