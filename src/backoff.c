/* backoff: exponential delays with jitter drawn from a small seedable
 * xorshift64* generator, so tests can check the bounds deterministically and
 * the relay needs no shared random state. */
#include "backoff.h"

/* Any nonzero value works; xorshift would stay at zero forever. */
#define BACKOFF_DEFAULT_SEED 0x9E3779B97F4A7C15ULL

void backoff_init(struct backoff *b, int base_ms, int cap_ms, uint64_t seed)
{
        b->base_ms = base_ms;
        b->cap_ms = cap_ms;
        b->rng = seed != 0 ? seed : BACKOFF_DEFAULT_SEED;
}

static uint64_t next_random(struct backoff *b)
{
        uint64_t x = b->rng;

        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        b->rng = x;
        return x * 0x2545F4914F6CDD1DULL;
}

int backoff_ceiling_ms(const struct backoff *b, int attempt)
{
        long long c = b->base_ms;

        if (c <= 0 || b->cap_ms <= 0)
                return 0;
        /* Doubling stops at the cap, so this runs at most ~31 times and
         * base * 2^(n-1) never overflows however large attempt is. */
        for (int i = 1; i < attempt && c < b->cap_ms; i++)
                c *= 2;
        return c < b->cap_ms ? (int)c : b->cap_ms;
}

int backoff_delay_ms(struct backoff *b, int attempt)
{
        int ceiling = backoff_ceiling_ms(b, attempt);
        int lo = ceiling / 2;
        uint64_t span = (uint64_t)(ceiling - lo) + 1;

        return lo + (int)(next_random(b) % span);
}
