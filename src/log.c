/* log: JSON lines built with jansson, one object per line. Each line goes
 * out in a single fwrite followed by fflush, so lines from librdkafka's
 * threads and ours never interleave and nothing is lost on a crash.
 * Also the escaping of row text for an operator's terminal: rows are
 * written by any writer, and their text reaches logs, `status` and
 * `dlq list`. */
#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

/* Decodes the UTF-8 sequence at s (n bytes left): returns its code point
 * and sets *len, or returns -1 when the bytes are not valid UTF-8 (cut
 * short, overlong, a surrogate, beyond U+10FFFF). */
static long utf8_decode(const unsigned char *s, size_t n, size_t *len)
{
        static const long min[] = {0, 0, 0x80, 0x800, 0x10000};
        size_t want;
        long cp;

        if (s[0] < 0x80) {
                *len = 1;
                return s[0];
        }
        if (s[0] >= 0xc2 && s[0] <= 0xdf) {
                want = 2;
                cp = s[0] & 0x1f;
        } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
                want = 3;
                cp = s[0] & 0x0f;
        } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
                want = 4;
                cp = s[0] & 0x07;
        } else {
                return -1;
        }
        if (n < want)
                return -1;
        for (size_t i = 1; i < want; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return -1;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        if (cp < min[want] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return -1;
        *len = want;
        return cp;
}

/* Code points a terminal acts on or that change what a line appears to
 * say: C0 controls (ESC starts escape sequences, CR overwrites), DEL, C1
 * controls (U+009B is a CSI of its own), the line and paragraph separators
 * and the bidirectional overrides and isolates (text shown reordered). */
static int unsafe(long cp)
{
        return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
               (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

char *log_escape(const char *s)
{
        const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
        size_t n = strlen((const char *)p), o = 0;
        char *out;

        /* The longest escape, \xNN, takes 4 characters for 1 byte. */
        if (n > (SIZE_MAX - 1) / 4)
                return NULL;
        out = malloc(4 * n + 1);
        if (out == NULL)
                return NULL;
        while (n > 0) {
                size_t len = 1;
                long cp = utf8_decode(p, n, &len);

                if (cp == '\\') {
                        memcpy(out + o, "\\\\", 2); /* so that an escape is never ambiguous */
                        o += 2;
                } else if (cp == '\n' || cp == '\r' || cp == '\t') {
                        out[o++] = '\\';
                        out[o++] = cp == '\n' ? 'n' : cp == '\r' ? 'r' : 't';
                } else if (cp < 0x20 || cp == 0x7f) { /* a bad byte (-1), C0, DEL */
                        o += (size_t)sprintf(out + o, "\\x%02x", p[0]);
                } else if (unsafe(cp)) {
                        o += (size_t)sprintf(out + o, "\\u%04lx", (unsigned long)cp);
                } else {
                        memcpy(out + o, p, len);
                        o += len;
                }
                p += len;
                n -= len;
        }
        out[o] = '\0';
        return out;
}

/* jansson escapes C0 controls in strings but writes DEL, C1 controls and
 * the separators and bidirectional controls as they are. Rewrites them as
 * \u escapes (the same string to a JSON reader; outside strings a JSON
 * text has only ASCII). Writes to out when not NULL; returns the length. */
static size_t guard_json(const char *in, size_t n, char *out)
{
        const unsigned char *p = (const unsigned char *)in;
        size_t o = 0;

        while (n > 0) {
                size_t len = 1;
                long cp = utf8_decode(p, n, &len);

                if (cp >= 0x20 && unsafe(cp)) {
                        if (out != NULL)
                                sprintf(out + o, "\\u%04lX", (unsigned long)cp);
                        o += 6;
                } else {
                        if (out != NULL)
                                memcpy(out + o, p, len);
                        o += len;
                }
                p += len;
                n -= len;
        }
        return o;
}

char *log_json_dumps(const json_t *v, size_t flags)
{
        char *text = json_dumps(v, flags), *out;
        size_t n, guarded;

        if (text == NULL)
                return NULL;
        n = strlen(text);
        guarded = guard_json(text, n, NULL);
        if (guarded == n)
                return text;
        out = malloc(guarded + 1);
        if (out != NULL) {
                guard_json(text, n, out);
                out[guarded] = '\0';
        }
        free(text);
        return out;
}

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
        if (guard_json(buf, n, NULL) != n) {
                size_t guarded = guard_json(buf, n, NULL);
                char *safe = malloc(guarded + 1);

                if (safe == NULL)
                        goto out;
                guard_json(buf, n, safe);
                if (buf != stackbuf)
                        free(buf);
                buf = safe;
                n = guarded;
        }
        buf[n] = '\n';
        fwrite(buf, 1, n + 1, out);
        fflush(out);
out:
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
