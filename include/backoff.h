/* backoff: exponential delays with jitter (drawn from [ceiling/2, ceiling]),
 * for failed rows and for database reconnects. The random source is a
 * seedable xorshift so tests can check the bounds deterministically. */
#ifndef OUTBOX_BACKOFF_H
#define OUTBOX_BACKOFF_H

#include <stdint.h>

struct backoff {
        int base_ms;
        int cap_ms;
        uint64_t rng;
};

void backoff_init(struct backoff *b, int base_ms, int cap_ms, uint64_t seed);

/* Upper bound for attempt n (1-based): min(cap, base * 2^(n-1)). */
int backoff_ceiling_ms(const struct backoff *b, int attempt);

/* Delay for attempt n: uniformly random in [ceiling/2, ceiling], so a
 * retry storm spreads out but never retries sooner than half the ceiling. */
int backoff_delay_ms(struct backoff *b, int attempt);

#endif
