/* message: maps an outbox row's headers column to Kafka headers. The
 * header object is parsed with jansson; the relay's own headers come last
 * and win over row headers of the same name. */
#include "message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static int reserved_name(const char *name)
{
        return strcmp(name, MESSAGE_HDR_EVENT_ID) == 0 ||
               strcmp(name, MESSAGE_HDR_EVENT_TYPE) == 0 ||
               strcmp(name, MESSAGE_HDR_OUTBOX_ID) == 0;
}

/* Adds the row's own headers; "{}" (the column default) is skipped without parsing. */
static int add_row_headers(const struct message_row *row, rd_kafka_headers_t *hdrs, char *errbuf,
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
                if (reserved_name(name))
                        continue;
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

int message_headers(const struct message_row *row, rd_kafka_headers_t **out, char *errbuf,
                    size_t errsz)
{
        rd_kafka_headers_t *hdrs = rd_kafka_headers_new(8);
        char idbuf[24];

        if (add_row_headers(row, hdrs, errbuf, errsz) != 0)
                goto fail;
        rd_kafka_header_add(hdrs, MESSAGE_HDR_EVENT_ID, -1, row->event_id, -1);
        if (row->event_type != NULL)
                rd_kafka_header_add(hdrs, MESSAGE_HDR_EVENT_TYPE, -1, row->event_type, -1);
        snprintf(idbuf, sizeof(idbuf), "%lld", (long long)row->id);
        rd_kafka_header_add(hdrs, MESSAGE_HDR_OUTBOX_ID, -1, idbuf, -1);
        *out = hdrs;
        return 0;
fail:
        rd_kafka_headers_destroy(hdrs);
        return -1;
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
