/* log: JSON lines built with jansson, one object per line. Each line goes
 * out in a single fwrite followed by fflush, so lines from librdkafka's
 * threads and ours never interleave and nothing is lost on a crash.
 * Failure paths log through a rate limit (log_limited): an error that
 * repeats is written about once a second, with a count of the lines held
 * back, so a statement failing in a loop cannot flood the log.
 * Also the escaping of row text for an operator's terminal (rows are
 * written by any writer, and their text reaches logs, `status` and
 * `dlq list`), and the cleaning of text sent back to PostgreSQL, which
 * refuses a statement whose text is not valid UTF-8. */
#include "log.h"

#include <pthread.h>
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

/* Whether the n bytes at s (n < the length the lead byte asks for) could
 * begin a valid sequence: the text was cut inside a character. */
static int utf8_prefix(const unsigned char *s, size_t n)
{
        unsigned char buf[4] = {0};
        size_t len;

        if (n == 0 || n >= 4 || s[0] < 0xc2 || s[0] > 0xf4)
                return 0;
        /* Complete it with the smallest continuation bytes the lead allows
         * and see whether that decodes: the checks on the second byte
         * (overlong, surrogate, beyond U+10FFFF) then apply as they are. */
        memcpy(buf, s, n);
        for (size_t i = n; i < 4; i++)
                buf[i] = 0x80;
        if (n == 1 && s[0] == 0xe0)
                buf[1] = 0xa0;
        if (n == 1 && s[0] == 0xf0)
                buf[1] = 0x90;
        return utf8_decode(buf, 4, &len) >= 0 && len > n;
}

char *log_clean_text(const char *s, size_t max, int ascii)
{
        const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
        size_t n = strlen((const char *)p), o = 0;
        char *out;

        /* A bad byte (1) becomes U+FFFD (3): at most 3 times as long. */
        if (n > (SIZE_MAX - 1) / 3)
                return NULL;
        out = malloc((3 * n < max ? 3 * n : max) + 1);
        if (out == NULL)
                return NULL;
        while (n > 0) {
                size_t len = 1, add;
                long cp = utf8_decode(p, n, &len);
                const char *put = (const char *)p;

                if (cp < 0 && utf8_prefix(p, n))
                        break; /* the text was cut inside its last character */
                if (ascii && (cp < 0x20 || cp > 0x7e)) {
                        put = "?"; /* a whole character, or one bad byte */
                        add = 1;
                } else if (cp < 0) {
                        put = "\xef\xbf\xbd"; /* U+FFFD REPLACEMENT CHARACTER */
                        add = 3;
                } else {
                        add = len;
                }
                if (o + add > max)
                        break; /* never half a character */
                memcpy(out + o, put, add);
                o += add;
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

/* One message whose repeats are being held back (log_limited): the same
 * level, message and error text, told apart by a hash of the three. */
struct repeat {
        uint64_t hash;
        int used;
        enum log_level level;
        char *msg, *error;
        int64_t last_ms;        /* when it was last written */
        unsigned long withheld; /* repeats not written since */
};

/* Distinct errors repeating at once: a handful in practice (fetch, mark,
 * record_failure, ...). Past that the oldest is written out and replaced. */
#define REPEAT_SLOTS 32

struct log {
        FILE *out;
        enum log_level level;
        pthread_mutex_t lock; /* the repeats: librdkafka's threads may log too */
        struct repeat repeats[REPEAT_SLOTS];
        int withheld; /* slots with repeats not yet written */
        int64_t (*clock_ms)(void *arg);
        void *clock_arg;
        char *outbox; /* --outboxes-file: the outbox this log is of; NULL: none */
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static int64_t monotonic_ms(void *arg)
{
        struct timespec ts;

        (void)arg;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct log *log_new(FILE *out, enum log_level level)
{
        struct log *lg = calloc(1, sizeof(*lg));

        if (lg == NULL)
                return NULL;
        if (pthread_mutex_init(&lg->lock, NULL) != 0) {
                free(lg);
                return NULL;
        }
        lg->out = out;
        lg->level = level;
        lg->clock_ms = monotonic_ms;
        return lg;
}

static void repeat_clear(struct repeat *rp)
{
        free(rp->msg);
        free(rp->error);
        memset(rp, 0, sizeof(*rp));
}

void log_free(struct log *lg)
{
        if (lg == NULL)
                return;
        /* Repeats still held back are written: the count is worth having. */
        log_flush_repeats(lg, 1);
        for (int i = 0; i < REPEAT_SLOTS; i++)
                repeat_clear(&lg->repeats[i]);
        pthread_mutex_destroy(&lg->lock);
        free(lg->outbox);
        free(lg);
}

int log_set_outbox(struct log *lg, const char *name)
{
        char *copy = strdup(name);

        if (copy == NULL)
                return -1;
        free(lg->outbox);
        lg->outbox = copy;
        return 0;
}

void log_set_clock(struct log *lg, int64_t (*clock_ms)(void *arg), void *arg)
{
        pthread_mutex_lock(&lg->lock);
        lg->clock_ms = clock_ms != NULL ? clock_ms : monotonic_ms;
        lg->clock_arg = arg;
        pthread_mutex_unlock(&lg->lock);
}

int log_enabled(const struct log *lg, enum log_level level)
{
        return lg != NULL && lg->out != NULL && level >= lg->level && level <= LOG_LEVEL_ERROR;
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

/* Writes one line: ts, level, msg, then error and repeated when given,
 * then the caller's fields (fields_fmt NULL: none). */
static void write_line(struct log *lg, enum log_level level, const char *msg, const char *error,
                       unsigned long repeated, const char *fields_fmt, va_list ap)
{
        char ts[64];
        json_t *obj = json_object();

        if (obj == NULL)
                return;
        format_ts(ts, sizeof(ts));
        json_object_set_new(obj, "ts", json_string(ts));
        json_object_set_new(obj, "level", json_string(level_names[level]));
        json_object_set_new(obj, "msg", string_or_ascii(msg != NULL ? msg : ""));
        if (lg->outbox != NULL)
                json_object_set_new(obj, "outbox", json_string(lg->outbox));
        if (error != NULL)
                json_object_set_new(obj, "error", string_or_ascii(error));
        if (repeated > 0)
                json_object_set_new(obj, "repeated", json_integer((json_int_t)repeated));
        if (fields_fmt != NULL)
                add_fields(obj, fields_fmt, ap);
        emit(lg->out, obj);
        json_decref(obj);
}

/* write_line without caller's fields (a va_list cannot be made empty). */
static void write_plain(struct log *lg, enum log_level level, const char *msg, const char *error,
                        unsigned long repeated, ...)
{
        va_list ap;

        va_start(ap, repeated);
        write_line(lg, level, msg, error, repeated, NULL, ap);
        va_end(ap);
}

void log_write(struct log *lg, enum log_level level, const char *msg, const char *fields_fmt, ...)
{
        va_list ap;

        if (!log_enabled(lg, level))
                return;
        va_start(ap, fields_fmt);
        write_line(lg, level, msg, NULL, 0, fields_fmt, ap);
        va_end(ap);
}

/* FNV-1a over level, message and error, with separators that neither
 * contains (a NUL), so "ab"+"c" and "a"+"bc" differ. */
static uint64_t repeat_hash(enum log_level level, const char *msg, const char *error)
{
        uint64_t h = 0xcbf29ce484222325ULL;
        const char *parts[2] = {msg, error};

        h = (h ^ (uint64_t)level) * 0x100000001b3ULL;
        for (int i = 0; i < 2; i++) {
                for (const unsigned char *p = (const unsigned char *)parts[i]; *p != '\0'; p++)
                        h = (h ^ *p) * 0x100000001b3ULL;
                h = (h ^ 0xffu) * 0x100000001b3ULL;
        }
        return h;
}

/* Writes what a slot holds back and empties its count. Lock held. */
static void repeat_write(struct log *lg, struct repeat *rp, int64_t now)
{
        write_plain(lg, rp->level, rp->msg, rp->error, rp->withheld);
        rp->withheld = 0;
        rp->last_ms = now;
        lg->withheld--;
}

/* The slot for hash: its own, else a free one (never used, or written
 * over a second ago with nothing held back), else the one written longest
 * ago, whose held-back count is written out first. Lock held. */
static struct repeat *repeat_slot(struct log *lg, uint64_t hash, int64_t now, int *found)
{
        struct repeat *free_slot = NULL, *oldest = NULL, *rp;

        *found = 0;
        for (int i = 0; i < REPEAT_SLOTS; i++) {
                rp = &lg->repeats[i];
                if (rp->used && rp->hash == hash) {
                        *found = 1;
                        return rp;
                }
                if (!rp->used || (rp->withheld == 0 && now - rp->last_ms >= LOG_REPEAT_MS)) {
                        if (free_slot == NULL)
                                free_slot = rp;
                } else if (oldest == NULL || rp->last_ms < oldest->last_ms) {
                        oldest = rp;
                }
        }
        rp = free_slot != NULL ? free_slot : oldest;
        if (rp->used && rp->withheld > 0)
                repeat_write(lg, rp, now);
        repeat_clear(rp);
        return rp;
}

void log_limited(struct log *lg, enum log_level level, const char *msg, const char *error,
                 const char *fields_fmt, ...)
{
        uint64_t hash;
        unsigned long repeated = 0;
        struct repeat *rp;
        int64_t now;
        int found;
        va_list ap;

        if (!log_enabled(lg, level))
                return;
        msg = msg != NULL ? msg : "";
        error = error != NULL ? error : "";
        hash = repeat_hash(level, msg, error);
        pthread_mutex_lock(&lg->lock);
        now = lg->clock_ms(lg->clock_arg);
        rp = repeat_slot(lg, hash, now, &found);
        if (found && now - rp->last_ms < LOG_REPEAT_MS) {
                if (rp->withheld++ == 0)
                        lg->withheld++;
                pthread_mutex_unlock(&lg->lock);
                return;
        }
        if (found) {
                repeated = rp->withheld;
                if (rp->withheld > 0)
                        lg->withheld--;
                rp->withheld = 0;
        } else {
                /* Without copies the count is still kept, only not flushed
                 * on its own (repeat_write needs the text). */
                rp->msg = strdup(msg);
                rp->error = strdup(error);
                rp->hash = hash;
                rp->level = level;
                rp->used = rp->msg != NULL && rp->error != NULL;
        }
        rp->last_ms = now;
        va_start(ap, fields_fmt);
        write_line(lg, level, msg, error, repeated, fields_fmt, ap);
        va_end(ap);
        pthread_mutex_unlock(&lg->lock);
}

void log_flush_repeats(struct log *lg, int all)
{
        int64_t now;

        if (lg == NULL)
                return;
        pthread_mutex_lock(&lg->lock);
        if (lg->withheld > 0) {
                now = lg->clock_ms(lg->clock_arg);
                for (int i = 0; i < REPEAT_SLOTS; i++) {
                        struct repeat *rp = &lg->repeats[i];

                        if (rp->used && rp->withheld > 0 &&
                            (all || now - rp->last_ms >= LOG_REPEAT_MS))
                                repeat_write(lg, rp, now);
                }
        }
        pthread_mutex_unlock(&lg->lock);
}
