/* log: one JSON object per line on stderr, built with jansson.
 * Callers pass extra fields as a json_pack format; secrets never go in. */
#ifndef OUTBOX_LOG_H
#define OUTBOX_LOG_H

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

#define log_debug(lg, ...) log_write((lg), CONFIG_LOG_DEBUG, __VA_ARGS__)
#define log_info(lg, ...)  log_write((lg), CONFIG_LOG_INFO, __VA_ARGS__)
#define log_warn(lg, ...)  log_write((lg), CONFIG_LOG_WARN, __VA_ARGS__)
#define log_error(lg, ...) log_write((lg), CONFIG_LOG_ERROR, __VA_ARGS__)

#endif
