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
void http_free(struct http *h);
/* Readable when a request or connection needs attention. */
int http_fd(const struct http *h);
/* Milliseconds until http_serve must run again even without activity, or -1. */
int http_timeout_ms(const struct http *h);
/* Accepts, reads and answers what is ready, without blocking. */
void http_serve(struct http *h);

#endif
