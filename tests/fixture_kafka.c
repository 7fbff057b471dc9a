/* fixture_kafka: the fixture's Kafka half. Drives the outbox-dev-kafka
 * process over its stdin/stdout protocol and reads topics back with a
 * group-less librdkafka consumer. */
#include "fixture.h"
#include "fixture_int.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#ifndef OUTBOX_DEV_KAFKA_BIN
#error "OUTBOX_DEV_KAFKA_BIN must be defined (see tests/CMakeLists.txt)"
#endif

#define FX_KAFKA_TIMEOUT_MS 15000
#define FX_CONSUME_GRACE_MS 10000

struct fx_kafka {
        pid_t pid;
        int in_fd;      /* its stdin */
        int out_fd;     /* its stdout */
        char buf[1024]; /* stdout read but not yet consumed */
        size_t len;
        char bootstraps[1024];
};

/* Next stdout line of the dev-kafka (without the newline) within timeout. */
static int kafka_read_line(struct fx_kafka *k, char *line, size_t size, int timeout_ms)
{
        int64_t deadline = fx_now_ms() + timeout_ms;

        for (;;) {
                char *nl = memchr(k->buf, '\n', k->len);
                struct pollfd pfd = {.fd = k->out_fd, .events = POLLIN};
                int64_t left;
                ssize_t r;

                if (nl) {
                        size_t n = (size_t)(nl - k->buf);

                        snprintf(line, size, "%.*s", (int)n, k->buf);
                        k->len -= n + 1;
                        memmove(k->buf, nl + 1, k->len);
                        return 0;
                }
                left = deadline - fx_now_ms();
                if (k->len == sizeof(k->buf) || left <= 0 || poll(&pfd, 1, (int)left) <= 0)
                        return -1;
                r = read(k->out_fd, k->buf + k->len, sizeof(k->buf) - k->len);
                if (r <= 0)
                        return -1;
                k->len += (size_t)r;
        }
}

static void kafka_reap(struct fx_kafka *k)
{
        int status = 0;

        if (k->in_fd >= 0)
                close(k->in_fd); /* it was started with --exit-on-eof */
        k->in_fd = -1;
        switch (fx_wait_pid(k->pid, 10000, &status)) {
        case 0:
                kill(k->pid, SIGKILL);
                waitpid(k->pid, &status, 0);
                break;
        case -1: /* not our child: started before this test process forked */
                kill(k->pid, SIGKILL);
                return;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fprintf(stderr, "fixture: outbox-dev-kafka ended with status 0x%x\n", status);
}

struct fx_kafka *fx_kafka_start(int brokers, int partitions)
{
        struct fx_kafka *k = calloc(1, sizeof(*k));
        struct fx_spawn_opts o = {.in = -1, .out = -1, .err = STDERR_FILENO, .pdeathsig = SIGKILL};
        char b[16], p[16], errbuf[256];
        const char *argv[] = {OUTBOX_DEV_KAFKA_BIN, "--brokers", b, "--partitions", p,
                              "--exit-on-eof",      NULL};
        int in[2], out[2];

        ck_assert_msg(k != NULL, "out of memory");
        snprintf(b, sizeof(b), "%d", brokers);
        snprintf(p, sizeof(p), "%d", partitions);
        ck_assert_msg(!pipe2(in, O_CLOEXEC) && !pipe2(out, O_CLOEXEC), "pipe: %s", strerror(errno));
        o.in = in[0];
        o.out = out[1];
        k->pid = fx_spawn(argv, &o, errbuf, sizeof(errbuf));
        close(in[0]);
        close(out[1]);
        k->in_fd = in[1];
        k->out_fd = out[0];
        ck_assert_msg(k->pid > 0, "%s", errbuf);
        if (kafka_read_line(k, k->bootstraps, sizeof(k->bootstraps), FX_KAFKA_TIMEOUT_MS) ||
            strncmp(k->bootstraps, "127.0.0.1:", 10)) {
                kafka_reap(k);
                ck_abort_msg("outbox-dev-kafka printed no bootstrap list (see stderr)");
        }
        return k;
}

const char *fx_kafka_bootstraps(const struct fx_kafka *k)
{
        return k->bootstraps;
}

int fx_kafka_command(struct fx_kafka *k, const char *line)
{
        char reply[512], *msg = NULL;
        sigset_t pipe_set, old;
        size_t len;
        ssize_t w;
        int wr_errno;

        ck_assert_msg(!strchr(line, '\n'), "one command per fx_kafka_command call");
        ck_assert_msg(asprintf(&msg, "%s\n", line) > 0, "out of memory");
        len = strlen(msg);
        /* A dead dev-kafka must fail the test, not kill it with SIGPIPE. */
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
        w = write(k->in_fd, msg, len);
        wr_errno = errno;
        if (w < 0 && wr_errno == EPIPE) {
                struct timespec zero = {0, 0};
                sigtimedwait(&pipe_set, NULL, &zero);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        free(msg);
        ck_assert_msg(w == (ssize_t)len, "outbox-dev-kafka: write \"%s\": %s", line,
                      strerror(wr_errno));
        ck_assert_msg(kafka_read_line(k, reply, sizeof(reply), FX_KAFKA_TIMEOUT_MS) == 0,
                      "outbox-dev-kafka did not answer \"%s\"", line);
        if (!strcmp(reply, "ok"))
                return 0;
        fprintf(stderr, "fixture: outbox-dev-kafka: \"%s\": %s\n", line, reply);
        return -1;
}

void fx_kafka_stop(struct fx_kafka *k)
{
        if (!k)
                return;
        kafka_reap(k);
        close(k->out_fd);
        free(k);
}

static int msg_cmp(const void *a, const void *b)
{
        const struct fx_msg *x = a, *y = b;

        if (x->partition != y->partition)
                return x->partition < y->partition ? -1 : 1;
        return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* A copy with a NUL after it, so text payloads can be compared as strings;
 * NULL stays NULL, empty stays a distinct non-NULL "". */
static char *dup_bytes(const void *p, size_t n)
{
        char *c;

        if (!p)
                return NULL;
        c = malloc(n + 1);
        ck_assert_msg(c != NULL, "out of memory");
        memcpy(c, p, n);
        c[n] = '\0';
        return c;
}

static void copy_msg(struct fx_msg *dst, const rd_kafka_message_t *m)
{
        rd_kafka_headers_t *hdrs = NULL;
        rd_kafka_timestamp_type_t tstype;

        memset(dst, 0, sizeof(*dst));
        dst->topic = strdup(rd_kafka_topic_name(m->rkt));
        dst->partition = m->partition;
        dst->offset = m->offset;
        dst->timestamp_ms = rd_kafka_message_timestamp(m, &tstype);
        dst->key = dup_bytes(m->key, m->key_len);
        dst->key_len = m->key ? m->key_len : 0;
        dst->value = dup_bytes(m->payload, m->len);
        dst->value_len = m->payload ? m->len : 0;
        if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                size_t n = rd_kafka_header_cnt(hdrs);

                dst->headers = calloc(n ? n : 1, sizeof(*dst->headers));
                ck_assert_msg(dst->headers != NULL, "out of memory");
                for (size_t i = 0; i < n; i++) {
                        const char *name;
                        const void *val;
                        size_t size;

                        if (rd_kafka_header_get_all(hdrs, i, &name, &val, &size))
                                break;
                        dst->headers[i].name = strdup(name);
                        dst->headers[i].value = dup_bytes(val, size);
                        dst->headers[i].value_len = val ? size : 0;
                        dst->n_headers++;
                }
        }
}

/* The partition ids of topic, waiting (until deadline) for it to exist. */
static rd_kafka_topic_partition_list_t *topic_partitions(rd_kafka_t *rk, const char *topic,
                                                         int64_t deadline)
{
        for (;;) {
                const struct rd_kafka_metadata *md = NULL;
                rd_kafka_topic_partition_list_t *list = NULL;
                rd_kafka_resp_err_t err;

                /* All topics: asking for one by name could auto-create it. */
                err = rd_kafka_metadata(rk, 1, NULL, &md, 2000);
                for (int i = 0; !err && i < md->topic_cnt; i++) {
                        const struct rd_kafka_metadata_topic *t = &md->topics[i];

                        if (strcmp(t->topic, topic) || t->err || t->partition_cnt == 0)
                                continue;
                        list = rd_kafka_topic_partition_list_new(t->partition_cnt);
                        for (int j = 0; j < t->partition_cnt; j++)
                                rd_kafka_topic_partition_list_add(list, topic, t->partitions[j].id)
                                    ->offset = RD_KAFKA_OFFSET_BEGINNING;
                }
                if (md)
                        rd_kafka_metadata_destroy(md);
                if (list || fx_now_ms() >= deadline)
                        return list;
                poll(NULL, 0, 50);
        }
}

static rd_kafka_t *new_consumer(const char *brokers, const char *isolation)
{
        static const char *const props[][2] = {{"enable.auto.commit", "false"},
                                               {"enable.auto.offset.store", "false"},
                                               {"enable.partition.eof", "true"},
                                               {"socket.nagle.disable", "true"},
                                               {"fetch.wait.max.ms", "50"},
                                               {"fetch.error.backoff.ms", "50"},
                                               {"log_level", "3"},
                                               /* assign() needs a group in librdkafka 2.0; it is
                                                * never joined and nothing is committed. */
                                               {"group.id", "outbox-test-fixture"}};
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char errstr[256];
        rd_kafka_t *rk;

        if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) ||
            rd_kafka_conf_set(conf, "isolation.level", isolation, errstr, sizeof(errstr)))
                goto fail;
        for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++) {
                if (rd_kafka_conf_set(conf, props[i][0], props[i][1], errstr, sizeof(errstr)))
                        goto fail;
        }
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
        if (rk)
                return rk;
fail:
        rd_kafka_conf_destroy(conf);
        ck_abort_msg("consumer: %s", errstr);
}

static size_t consume(const char *brokers, const char *isolation, const char *topic, size_t expect,
                      int timeout_ms, struct fx_msg **out)
{
        rd_kafka_t *rk = new_consumer(brokers, isolation);
        int64_t last_new = fx_now_ms();
        rd_kafka_topic_partition_list_t *parts;
        struct fx_msg *msgs = NULL;
        size_t n = 0, cap = 0;
        rd_kafka_resp_err_t err;
        int32_t n_ids = 0;
        char *at_end; /* per partition id: read up to its end */
        int behind;

        *out = NULL;
        parts = topic_partitions(rk, topic, last_new + timeout_ms);
        if (!parts) {
                rd_kafka_destroy(rk);
                return 0;
        }
        for (int i = 0; i < parts->cnt; i++)
                n_ids = parts->elems[i].partition >= n_ids ? parts->elems[i].partition + 1 : n_ids;
        at_end = calloc((size_t)n_ids, 1);
        behind = parts->cnt;
        err = rd_kafka_assign(rk, parts);
        rd_kafka_topic_partition_list_destroy(parts);
        if (err || !at_end) {
                rd_kafka_destroy(rk);
                ck_abort_msg("assign %s: %s", topic, rd_kafka_err2str(err));
        }
        for (;;) {
                int64_t idle = fx_now_ms() - last_new;
                rd_kafka_message_t *m;
                int32_t p;

                /* "Nothing new" counts only once every partition has been
                 * read to its end: librdkafka 2.0 may send the first Fetch
                 * ~0.5 s after assign(). A partition that never gets there
                 * (its leader is down) is given up after a grace period. */
                if (n >= expect || (idle >= timeout_ms &&
                                    (behind == 0 || idle >= timeout_ms + FX_CONSUME_GRACE_MS)))
                        break;
                if (!(m = rd_kafka_consumer_poll(rk, 50)))
                        continue;
                p = m->partition >= 0 && m->partition < n_ids ? m->partition : -1;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        if (p >= 0 && !at_end[p]) {
                                at_end[p] = 1;
                                behind--;
                        }
                } else if (m->err) {
                        /* Transient while a test has brokers down. */
                        fprintf(stderr, "fixture: consume %s: %s\n", topic,
                                rd_kafka_message_errstr(m));
                } else {
                        if (n == cap) {
                                struct fx_msg *nm;

                                cap = cap ? cap * 2 : 64;
                                nm = realloc(msgs, cap * sizeof(*msgs));
                                ck_assert_msg(nm != NULL, "out of memory");
                                msgs = nm;
                        }
                        copy_msg(&msgs[n++], m);
                        last_new = fx_now_ms();
                        if (p >= 0 && at_end[p]) {
                                at_end[p] = 0;
                                behind++;
                        }
                }
                rd_kafka_message_destroy(m);
        }
        free(at_end);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        if (n)
                qsort(msgs, n, sizeof(*msgs), msg_cmp);
        *out = msgs;
        return n;
}

size_t fx_consume(const char *brokers, const char *topic, size_t expect, int timeout_ms,
                  struct fx_msg **out)
{
        return consume(brokers, "read_committed", topic, expect, timeout_ms, out);
}

size_t fx_consume_uncommitted(const char *brokers, const char *topic, size_t expect, int timeout_ms,
                              struct fx_msg **out)
{
        return consume(brokers, "read_uncommitted", topic, expect, timeout_ms, out);
}

void fx_msgs_free(struct fx_msg *msgs, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(msgs[i].topic);
                free(msgs[i].key);
                free(msgs[i].value);
                for (size_t j = 0; j < msgs[i].n_headers; j++) {
                        free(msgs[i].headers[j].name);
                        free(msgs[i].headers[j].value);
                }
                free(msgs[i].headers);
        }
        free(msgs);
}

/* The first header called name (Kafka allows repeats). */
const struct fx_header *fx_msg_header(const struct fx_msg *m, const char *name)
{
        for (size_t i = 0; i < m->n_headers; i++) {
                if (!strcmp(m->headers[i].name, name))
                        return &m->headers[i];
        }
        return NULL;
}

char *fx_fresh_outbox(struct fx_pg *pg, struct fx_kafka *k, const char *db, const char *topic,
                      int partitions)
{
        char *ci = fx_pg_create_db(pg, db), cmd[160];

        fx_migrate(ci, NULL);
        snprintf(cmd, sizeof(cmd), "topic %s %d", topic, partitions);
        ck_assert_int_eq(fx_kafka_command(k, cmd), 0);
        return ci;
}
