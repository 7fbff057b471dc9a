/* log: one JSON object per line on stderr, built with jansson.
 * Callers pass extra fields as a json_pack format; secrets never go in. */
#ifndef OUTBOX_LOG_H
#define OUTBOX_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "compiler.h"

/* Not LOG_DEBUG and friends: <syslog.h> defines those. */
enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };
struct log;

/* out is usually stderr; the log does not own it. */
struct log *log_new(FILE *out, enum log_level level) OUTBOX_MUST_CHECK;
void log_free(struct log *lg);
int log_enabled(const struct log *lg, enum log_level level);
/* Every line after msg carries "outbox": name (one log per outbox of
 * --outboxes-file, all writing to one stream). Call before the log is
 * shared between threads. Returns 0, or -1 when out of memory. */
int log_set_outbox(struct log *lg, const char *name) OUTBOX_MUST_CHECK;

/* Writes {"ts":..., "level":..., "msg": msg, ...fields}. fields_fmt is a
 * json_pack format for an object ("{s:s, s:i}") or NULL for no fields. */
void log_write(struct log *lg, enum log_level level, const char *msg, const char *fields_fmt, ...);

/* Rate-limited logging for failure paths, where the same statement can
 * fail many times a second: the same level, msg and error text is written
 * at most once per LOG_REPEAT_MS. The line carries "error" and, when
 * repeats were held back since the last one, "repeated": their count;
 * fields_fmt as for log_write (its fields are those of the call that is
 * written). Held-back repeats of an error that stopped are written by
 * log_flush_repeats. error NULL is taken as "". */
#define LOG_REPEAT_MS 1000
void log_limited(struct log *lg, enum log_level level, const char *msg, const char *error,
                 const char *fields_fmt, ...);
/* Writes one line ("repeated": N) for each error whose repeats were held
 * back and that was last written LOG_REPEAT_MS or more ago (all: however
 * recently). Cheap when nothing is held back: call it from a loop. */
void log_flush_repeats(struct log *lg, int all);
/* For tests: the clock the rate limit reads, in milliseconds (NULL: the
 * monotonic clock). */
void log_set_clock(struct log *lg, int64_t (*clock_ms)(void *arg), void *arg);

/* Text sent to PostgreSQL, which refuses a statement whose text is not
 * valid UTF-8 (and so never records the failure it carries): a copy of s
 * that is valid UTF-8 and at most max bytes long, cut only between
 * characters. A byte that is not part of a valid sequence becomes U+FFFD;
 * a character cut short at the very end (s was cut at a byte limit) is
 * dropped. With ascii, every character but printable ASCII becomes '?',
 * which any server encoding accepts. malloc'ed, NULL when out of memory;
 * s NULL is taken as "". */
char *log_clean_text(const char *s, size_t max, int ascii) OUTBOX_MUST_CHECK;

/* Row text (which any writer can fill) made safe for an operator's
 * terminal: C0 controls, DEL, C1 controls, line separators and
 * bidirectional overrides become visible escapes (\n, \r, \t, \x1b,
 * \u009b, \u202e), bytes that are not UTF-8 become \xNN and a backslash is
 * doubled; other UTF-8 is kept. Returns a malloc'ed string, NULL when out
 * of memory; s NULL is taken as "". */
char *log_escape(const char *s) OUTBOX_MUST_CHECK;

/* json_dumps(v, flags) with DEL, C1 controls, separators and bidirectional
 * controls written as \u escapes too (jansson escapes only C0): JSON that
 * is safe to print. Free with free(); NULL when out of memory. */
struct json_t;
char *log_json_dumps(const struct json_t *v, size_t flags) OUTBOX_MUST_CHECK;

#define log_debug(lg, ...) log_write((lg), LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(lg, ...)  log_write((lg), LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(lg, ...)  log_write((lg), LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(lg, ...) log_write((lg), LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
