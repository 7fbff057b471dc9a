/* message: maps an outbox row's headers column to Kafka headers. The
 * header object is parsed with jansson; the relay's own headers come last
 * and win over row headers of the same name. With the CloudEvents envelope
 * the event's attributes follow (docs/headers.md). */
#include "message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

struct message_envelope {
        int cloudevents;
        char *source;
};

/* What the row set of the headers the envelope would add (content-type
 * and ce_subject are added only when the row has none). */
struct row_has {
        int content_type, subject;
};

static int reserved_name(const struct message_envelope *env, const char *name)
{
        if (strcmp(name, MESSAGE_HDR_EVENT_ID) == 0 || strcmp(name, MESSAGE_HDR_EVENT_TYPE) == 0 ||
            strcmp(name, MESSAGE_HDR_OUTBOX_ID) == 0)
                return 1;
        return env != NULL && env->cloudevents &&
               (strcmp(name, MESSAGE_CE_SPECVERSION) == 0 || strcmp(name, MESSAGE_CE_ID) == 0 ||
                strcmp(name, MESSAGE_CE_SOURCE) == 0 || strcmp(name, MESSAGE_CE_TYPE) == 0 ||
                strcmp(name, MESSAGE_CE_TIME) == 0);
}

/* Adds the row's own headers; "{}" (the column default) is skipped without parsing. */
static int add_row_headers(const struct message_row *row, const struct message_envelope *env,
                           struct row_has *has, rd_kafka_headers_t *hdrs, char *errbuf,
                           size_t errsz)
{
        json_error_t jerr;
        json_t *obj = NULL, *val;
        const char *name;
        int rc = -1;

        if (row->headers == NULL || (row->headers_len == 2 && memcmp(row->headers, "{}", 2) == 0))
                return 0;
        obj = json_loadb(row->headers, row->headers_len, JSON_REJECT_DUPLICATES, &jerr);
        if (obj == NULL) {
                snprintf(errbuf, errsz, "headers are not valid JSON: %s", jerr.text);
                goto out;
        }
        if (!json_is_object(obj)) {
                snprintf(errbuf, errsz, "headers must be a JSON object of strings");
                goto out;
        }
        json_object_foreach(obj, name, val)
        {
                if (!json_is_string(val)) {
                        snprintf(errbuf, errsz, "header \"%s\" must be a JSON string", name);
                        goto out;
                }
                if (reserved_name(env, name))
                        continue;
                has->content_type |= strcmp(name, MESSAGE_CE_CONTENT_TYPE) == 0;
                has->subject |= strcmp(name, MESSAGE_CE_SUBJECT) == 0;
                if (rd_kafka_header_add(hdrs, name, -1, json_string_value(val),
                                        (ssize_t)json_string_length(val)) != 0) {
                        snprintf(errbuf, errsz, "header \"%s\" could not be added", name);
                        goto out;
                }
        }
        rc = 0;
out:
        json_decref(obj);
        return rc;
}

struct message_envelope *message_envelope_new(int cloudevents, const char *source)
{
        struct message_envelope *env = calloc(1, sizeof(*env));

        if (env == NULL)
                return NULL;
        env->cloudevents = cloudevents;
        if (source != NULL && (env->source = strdup(source)) == NULL) {
                free(env);
                return NULL;
        }
        return env;
}

void message_envelope_free(struct message_envelope *env)
{
        if (env == NULL)
                return;
        free(env->source);
        free(env);
}

int message_rfc3339(int64_t us, char *buf, size_t size)
{
        /* Floor division: a time before 1970 has a positive fraction. */
        int64_t sec = us / 1000000 - (us % 1000000 < 0), frac = us % 1000000;
        time_t t = (time_t)sec;
        struct tm tm;
        size_t n;

        /* Years 0000 to 9999: -62167219200 to 253402300799 seconds. */
        if (sec < -62167219200LL || sec > 253402300799LL || gmtime_r(&t, &tm) == NULL ||
            size < MESSAGE_RFC3339_SIZE)
                return -1;
        n = (size_t)snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        if (frac < 0)
                frac += 1000000;
        if (frac != 0) {
                n += (size_t)snprintf(buf + n, size - n, ".%06lld", (long long)frac);
                while (buf[n - 1] == '0')
                        buf[--n] = '\0';
        }
        snprintf(buf + n, size - n, "Z");
        return 0;
}

/* The CloudEvents attributes, after the relay's own headers. */
static int add_cloudevents(const struct message_row *row, const struct message_envelope *env,
                           const char *topic, const struct row_has *has, rd_kafka_headers_t *hdrs,
                           char *errbuf, size_t errsz)
{
        const char *type = row->event_type != NULL ? row->event_type : topic;
        char when[MESSAGE_RFC3339_SIZE];

        if (message_rfc3339(row->created_at_us, when, sizeof(when)) != 0) {
                snprintf(errbuf, errsz,
                         "created_at is outside the years 0000 to 9999: no CloudEvents time "
                         "(RFC 3339) for it");
                return -1;
        }
        if (type == NULL || type[0] == '\0') {
                snprintf(errbuf, errsz, "no CloudEvents type: event_type and topic are empty");
                return -1;
        }
        rd_kafka_header_add(hdrs, MESSAGE_CE_SPECVERSION, -1, MESSAGE_CE_SPEC, -1);
        rd_kafka_header_add(hdrs, MESSAGE_CE_ID, -1, row->event_id, -1);
        rd_kafka_header_add(hdrs, MESSAGE_CE_SOURCE, -1, env->source, -1);
        rd_kafka_header_add(hdrs, MESSAGE_CE_TYPE, -1, type, -1);
        rd_kafka_header_add(hdrs, MESSAGE_CE_TIME, -1, when, -1);
        /* The spec forbids empty attribute values: an empty key is no subject. */
        if (row->key != NULL && row->key_len > 0 && !has->subject)
                rd_kafka_header_add(hdrs, MESSAGE_CE_SUBJECT, -1, row->key, (ssize_t)row->key_len);
        /* A tombstone has no data, so no content type. */
        if (row->value != NULL && !has->content_type)
                rd_kafka_header_add(hdrs, MESSAGE_CE_CONTENT_TYPE, -1,
                                    row->value_is_bytes ? MESSAGE_CE_OCTETS : MESSAGE_CE_JSON, -1);
        return 0;
}

int message_headers_env(const struct message_row *row, const struct message_envelope *env,
                        const char *topic, rd_kafka_headers_t **out, char *errbuf, size_t errsz)
{
        rd_kafka_headers_t *hdrs = rd_kafka_headers_new(env != NULL && env->cloudevents ? 16 : 8);
        struct row_has has = {0, 0};
        char idbuf[24];

        if (add_row_headers(row, env, &has, hdrs, errbuf, errsz) != 0)
                goto fail;
        rd_kafka_header_add(hdrs, MESSAGE_HDR_EVENT_ID, -1, row->event_id, -1);
        if (row->event_type != NULL)
                rd_kafka_header_add(hdrs, MESSAGE_HDR_EVENT_TYPE, -1, row->event_type, -1);
        snprintf(idbuf, sizeof(idbuf), "%lld", (long long)row->id);
        rd_kafka_header_add(hdrs, MESSAGE_HDR_OUTBOX_ID, -1, idbuf, -1);
        if (env != NULL && env->cloudevents &&
            add_cloudevents(row, env, topic, &has, hdrs, errbuf, errsz) != 0)
                goto fail;
        *out = hdrs;
        return 0;
fail:
        rd_kafka_headers_destroy(hdrs);
        return -1;
}

int message_headers(const struct message_row *row, rd_kafka_headers_t **out, char *errbuf,
                    size_t errsz)
{
        return message_headers_env(row, NULL, NULL, out, errbuf, errsz);
}

char *message_row_header(const struct message_row *row, const char *name)
{
        json_t *obj, *val;
        char *out = NULL;

        if (row->headers == NULL || (row->headers_len == 2 && memcmp(row->headers, "{}", 2) == 0))
                return NULL;
        obj = json_loadb(row->headers, row->headers_len, JSON_REJECT_DUPLICATES, NULL);
        val = json_is_object(obj) ? json_object_get(obj, name) : NULL;
        /* A header is a JSON string: anything else the row could not publish. */
        if (json_is_string(val) &&
            memchr(json_string_value(val), '\0', json_string_length(val)) == NULL)
                out = strdup(json_string_value(val));
        json_decref(obj);
        return out;
}
