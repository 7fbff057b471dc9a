/* fuzz_headers: libFuzzer target for header decoding: the input is an
 * outbox row's headers column as the relay reads it (jsonb text), turned
 * into Kafka headers by message_headers(), and with the CloudEvents
 * envelope by message_headers_env(). */
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
        static struct message_envelope *env;

        if (!headers)
                return 0;
        if (env == NULL) /* kept for the process's life, as the relay does */
                env = message_envelope_new(1, "/outbox-relay/fuzz/outbox");
        memcpy(headers, data, size);
        memset(&row, 0, sizeof(row));
        row.id = 42;
        row.event_id = "6f1c1a52-9f57-4c7e-9f3e-1d2b3c4d5e6f";
        row.event_type = size % 2 ? "fuzz.type" : NULL;
        row.headers = headers;
        row.headers_len = size;
        if (message_headers(&row, &hdrs, err, sizeof(err)) == 0)
                rd_kafka_headers_destroy(hdrs);
        /* Again with the CloudEvents envelope, whose names a row may set;
         * the created_at taken from the input's length, in and out of range. */
        if (env != NULL) {
                row.created_at_us =
                    (int64_t)((uint64_t)size * 977ULL * 1000000007ULL - 62167219200000000ULL);
                row.key = size % 3 ? "k" : NULL;
                row.key_len = row.key != NULL ? 1 : 0;
                hdrs = NULL;
                if (message_headers_env(&row, env, "fuzz-topic", &hdrs, err, sizeof(err)) == 0)
                        rd_kafka_headers_destroy(hdrs);
        }
        free(headers);
        return 0;
}
