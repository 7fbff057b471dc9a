/* http: Kubernetes probes and the Prometheus scrape endpoint. libmicrohttpd
 * parses HTTP; we only map paths to answers. It runs in "external select"
 * mode on an epoll descriptor that the relay polls with its other ones. */
#include "http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "config.h"
#include "metrics.h"

/* A neighbour must not starve the probes: one client address may hold a few
 * connections (a scraper and a probe or two need fewer), and the total is
 * far above what one address may take, so that a slow client holding its
 * share open (a partial request, a byte every few seconds, which resets the
 * idle timeout) leaves room for the kubelet and the scraper. Each connection
 * costs a descriptor and libmicrohttpd's 32 KiB buffer: 8 MiB at most. */
#define HTTP_MAX_CONNECTIONS 256
#define HTTP_MAX_PER_CLIENT  8
#define HTTP_IDLE_TIMEOUT_S  10 /* an idle or silent connection is closed after this */

struct http {
        struct MHD_Daemon *daemon;
        struct metrics *metrics;
        http_ready_fn ready;
        void *ready_arg;
        struct http_handlers handlers; /* http_new_with; else metrics and ready */
};

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, const char *type,
                              char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
        struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, mode);
        enum MHD_Result rc;

        if (resp == NULL) {
                if (mode == MHD_RESPMEM_MUST_FREE)
                        free(body);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        rc = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
        static const char text[] = "text/plain; charset=utf-8";
        struct http *h = cls;
        char why[256], msg[300];

        (void)version;
        (void)upload_data;
        (void)upload_data_size;
        (void)req_cls;
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
                return answer(conn, MHD_HTTP_METHOD_NOT_ALLOWED, text, "method not allowed\n", 19,
                              MHD_RESPMEM_PERSISTENT);
        if (strcmp(url, "/metrics") == 0) {
                size_t len = 0;
                char *body = h->handlers.metrics != NULL ? h->handlers.metrics(h->ready_arg, &len)
                                                         : metrics_render(h->metrics, &len);

                if (body == NULL)
                        return answer(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, text, "out of memory\n",
                                      14, MHD_RESPMEM_PERSISTENT);
                return answer(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body,
                              len, MHD_RESPMEM_MUST_FREE);
        }
        /* Answered by the loop itself: it is alive (with several outboxes,
         * the process asks whether each outbox's loop still turns). */
        if (strcmp(url, "/healthz") == 0 &&
            (h->handlers.live == NULL || h->handlers.live(h->ready_arg, why, sizeof(why))))
                return answer(conn, MHD_HTTP_OK, text, "ok\n", 3, MHD_RESPMEM_PERSISTENT);
        if (strcmp(url, "/healthz") == 0) {
                snprintf(msg, sizeof(msg), "not alive: %s\n", why);
                return answer(conn, MHD_HTTP_SERVICE_UNAVAILABLE, text, msg, strlen(msg),
                              MHD_RESPMEM_MUST_COPY);
        }
        if (strcmp(url, "/readyz") == 0) {
                if (h->ready(h->ready_arg, why, sizeof(why)))
                        return answer(conn, MHD_HTTP_OK, text, "ready\n", 6,
                                      MHD_RESPMEM_PERSISTENT);
                snprintf(msg, sizeof(msg), "not ready: %s\n", why);
                return answer(conn, MHD_HTTP_SERVICE_UNAVAILABLE, text, msg, strlen(msg),
                              MHD_RESPMEM_MUST_COPY);
        }
        return answer(conn, MHD_HTTP_NOT_FOUND, text, "not found\n", 10, MHD_RESPMEM_PERSISTENT);
}

struct http *http_new(const char *listen, struct metrics *m, http_ready_fn ready, void *arg,
                      char *errbuf, size_t errsz)
{
        struct http_handlers hd = {NULL, ready, NULL};
        struct http *h = http_new_with(listen, &hd, arg, errbuf, errsz);

        if (h != NULL)
                h->metrics = m;
        return h;
}

struct http *http_new_with(const char *listen, const struct http_handlers *hd, void *arg,
                           char *errbuf, size_t errsz)
{
        struct http *h = calloc(1, sizeof(*h));
        struct sockaddr_storage addr;
        socklen_t len;
        unsigned flags = MHD_USE_EPOLL;
        uint16_t port;

        if (h == NULL) {
                snprintf(errbuf, errsz, "cannot serve HTTP on %s: out of memory", listen);
                return NULL;
        }
        if (config_listen_addr(listen, &addr, &len, errbuf, errsz) != 0)
                goto fail;
        if (addr.ss_family == AF_INET6) {
                const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&addr;

                /* [::] takes IPv4 clients too (as ::ffff:a.b.c.d); any other
                 * IPv6 address is IPv6 only. */
                flags |=
                    IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
                port = ntohs(a6->sin6_port);
        } else {
                port = ntohs(((const struct sockaddr_in *)&addr)->sin_port);
        }
        h->handlers = *hd;
        h->ready = hd->ready;
        h->ready_arg = arg;
        h->daemon = MHD_start_daemon(
            flags, port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_IDLE_TIMEOUT_S,
            MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_MAX_CONNECTIONS,
            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)HTTP_MAX_PER_CLIENT, MHD_OPTION_END);
        if (h->daemon == NULL) {
                snprintf(errbuf, errsz,
                         "cannot serve HTTP on %s (address in use or not available?)", listen);
                goto fail;
        }
        return h;
fail:
        free(h);
        return NULL;
}

void http_free(struct http *h)
{
        if (h == NULL)
                return;
        MHD_stop_daemon(h->daemon);
        free(h);
}

int http_fd(const struct http *h)
{
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_EPOLL_FD);

        return info != NULL ? info->epoll_fd : -1;
}

int http_timeout_ms(const struct http *h)
{
        MHD_UNSIGNED_LONG_LONG t;

        if (MHD_get_timeout(h->daemon, &t) != MHD_YES)
                return -1;
        return t > 1000 ? 1000 : (int)t;
}

void http_serve(struct http *h)
{
        MHD_run(h->daemon);
}
