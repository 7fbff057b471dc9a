/* fuzz_headers: libFuzzer target for header decoding: the input is an
 * outbox row's headers column as the relay reads it (jsonb text), turned
 * into Kafka headers by message_headers(). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* An exact-size copy, so reading past the column shows up. */
        char *headers = malloc(size ? size : 1), err[512];
        struct message_row row;
        rd_kafka_headers_t *hdrs = NULL;

        if (!headers)
                return 0;
        memcpy(headers, data, size);
        memset(&row, 0, sizeof(row));
        row.id = 42;
        row.event_id = "6f1c1a52-9f57-4c7e-9f3e-1d2b3c4d5e6f";
        row.event_type = size % 2 ? "fuzz.type" : NULL;
        row.headers = headers;
        row.headers_len = size;
        if (message_headers(&row, &hdrs, err, sizeof(err)) == 0)
                rd_kafka_headers_destroy(hdrs);
        free(headers);
        return 0;
}
