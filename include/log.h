/* log: one JSON object per line on stderr, built with jansson.
 * Callers pass extra fields as a json_pack format; secrets never go in. */
#ifndef OUTBOX_LOG_H
#define OUTBOX_LOG_H

#include <stddef.h>
#include <stdio.h>

#include "config.h"

struct log;

/* out is usually stderr; the log does not own it. */
struct log *log_new(FILE *out, enum config_log_level level);
void log_free(struct log *lg);
int log_enabled(const struct log *lg, enum config_log_level level);

/* Writes {"ts":..., "level":..., "msg": msg, ...fields}. fields_fmt is a
 * json_pack format for an object ("{s:s, s:i}") or NULL for no fields. */
void log_write(struct log *lg, enum config_log_level level, const char *msg, const char *fields_fmt,
               ...);

/* Row text (which any writer can fill) made safe for an operator's
 * terminal: C0 controls, DEL, C1 controls, line separators and
 * bidirectional overrides become visible escapes (\n, \r, \t, \x1b,
 * \u009b, \u202e), bytes that are not UTF-8 become \xNN and a backslash is
 * doubled; other UTF-8 is kept. Returns a malloc'ed string, NULL when out
 * of memory; s NULL is taken as "". */
char *log_escape(const char *s);

/* json_dumps(v, flags) with DEL, C1 controls, separators and bidirectional
 * controls written as \u escapes too (jansson escapes only C0): JSON that
 * is safe to print. Free with free(); NULL when out of memory. */
struct json_t;
char *log_json_dumps(const struct json_t *v, size_t flags);

#define log_debug(lg, ...) log_write((lg), CONFIG_LOG_DEBUG, __VA_ARGS__)
#define log_info(lg, ...)  log_write((lg), CONFIG_LOG_INFO, __VA_ARGS__)
#define log_warn(lg, ...)  log_write((lg), CONFIG_LOG_WARN, __VA_ARGS__)
#define log_error(lg, ...) log_write((lg), CONFIG_LOG_ERROR, __VA_ARGS__)

#endif
