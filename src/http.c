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

struct http {
        struct MHD_Daemon *daemon;
        struct metrics *metrics;
        http_ready_fn ready;
        void *ready_arg;
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
                char *body = metrics_render(h->metrics, &len);

                if (body == NULL)
                        return answer(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, text, "out of memory\n",
                                      14, MHD_RESPMEM_PERSISTENT);
                return answer(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body,
                              len, MHD_RESPMEM_MUST_FREE);
        }
        if (strcmp(url, "/healthz") == 0) /* answered by the loop itself: it is alive */
                return answer(conn, MHD_HTTP_OK, text, "ok\n", 3, MHD_RESPMEM_PERSISTENT);
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
        struct http *h = calloc(1, sizeof(*h));
        struct sockaddr_in addr = {.sin_family = AF_INET};
        const char *colon = strrchr(listen, ':');
        char host[64];

        if (h == NULL || colon == NULL || (size_t)(colon - listen) >= sizeof(host)) {
                snprintf(errbuf, errsz, "cannot listen on %s", listen);
                free(h);
                return NULL;
        }
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
        inet_pton(AF_INET, host, &addr.sin_addr);
        addr.sin_port = htons((uint16_t)atoi(colon + 1));
        h->metrics = m;
        h->ready = ready;
        h->ready_arg = arg;
        h->daemon = MHD_start_daemon(MHD_USE_EPOLL, ntohs(addr.sin_port), NULL, NULL, on_request, h,
                                     MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                                     MHD_OPTION_CONNECTION_LIMIT, (unsigned)32, MHD_OPTION_END);
        if (h->daemon == NULL) {
                snprintf(errbuf, errsz,
                         "cannot serve HTTP on %s (address in use or not available?)", listen);
                free(h);
                return NULL;
        }
        return h;
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
