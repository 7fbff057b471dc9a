/* http: the relay's HTTP endpoints (/metrics, /healthz, /readyz) with
 * libmicrohttpd, driven from the relay's own poll() loop through one epoll
 * descriptor, so that answering a probe proves the loop is alive. */
#ifndef OUTBOX_HTTP_H
#define OUTBOX_HTTP_H

#include <stddef.h>

#include "compiler.h"

struct metrics;

struct http;

/* Returns 1 when ready to serve (database connected, producer usable);
 * otherwise 0 with why filled. */
typedef int (*http_ready_fn)(void *arg, char *why, size_t whysz);

/* listen is "IPV4:PORT" or "[IPV6]:PORT" (see config_listen_addr). Returns
 * NULL with errbuf. */
struct http *http_new(const char *listen, struct metrics *m, http_ready_fn ready, void *arg,
                      char *errbuf, size_t errsz) OUTBOX_MUST_CHECK;

/* What the endpoints answer, all called with one arg in the thread that
 * runs http_serve. metrics: the /metrics body, malloc'ed (NULL: out of
 * memory); ready: /readyz; live: /healthz, 1 or 0 with why (NULL: always
 * alive, as the loop that serves is the one that works). */
struct http_handlers {
        char *(*metrics)(void *arg, size_t *len);
        http_ready_fn ready;
        http_ready_fn live;
};
struct http *http_new_with(const char *listen, const struct http_handlers *hd, void *arg,
                           char *errbuf, size_t errsz) OUTBOX_MUST_CHECK;
void http_free(struct http *h);
/* Readable when a request or connection needs attention. */
int http_fd(const struct http *h);
/* Milliseconds until http_serve must run again even without activity, or -1. */
int http_timeout_ms(const struct http *h);
/* Accepts, reads and answers what is ready, without blocking. */
void http_serve(struct http *h);

#endif
