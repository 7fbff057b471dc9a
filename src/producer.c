/* producer: wraps the idempotent librdkafka producer. Success is decided in
 * the delivery report only; librdkafka's own logs and errors are forwarded
 * to the main queue so that everything runs in the relay's thread. */
#include "producer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "kafka_conf.h"
#include "log.h"
#include "message.h"
#include "metrics.h"

struct producer {
        rd_kafka_t *rk;
        struct log *lg;
        struct metrics *metrics;
        producer_dr_cb cb;
        void *cb_arg;
        int pipe_fd[2]; /* librdkafka writes to [1] when its queue fills */
        int outstanding;
        int fatal;
        char fatal_reason[512];
        rd_kafka_resp_err_t refused; /* see refusal(); 0 when none */
        char refused_reason[512];
        int committing; /* a commit call returned "retry": its EndTxn may be in flight */
};

/* Connection failures of the relay's setup, not of any row: credentials
 * or a CA the brokers refuse. No message fails with these (messages wait,
 * or time out as __MSG_TIMED_OUT, which is not the row's fault either),
 * so rows spend no attempts; librdkafka keeps reconnecting. What to check,
 * or NULL for other errors. */
static const char *refusal(rd_kafka_resp_err_t *err, const char *reason)
{
        /* librdkafka 2.0.2 reports a failed certificate check as a
         * transport error when OpenSSL notices it while reading. */
        if (*err == RD_KAFKA_RESP_ERR__TRANSPORT && strstr(reason, "certificate verify failed"))
                *err = RD_KAFKA_RESP_ERR__SSL;
        switch (*err) {
        case RD_KAFKA_RESP_ERR__AUTHENTICATION:
                return "authentication failed (check sasl.mechanisms, sasl.username and "
                       "sasl.password)";
        case RD_KAFKA_RESP_ERR__SSL:
                return "TLS failed (check ssl.ca.location and the brokers' certificates)";
        default:
                return NULL;
        }
}

/* A broker is up, or a message was delivered: the refusal is over. */
static void refusal_over(struct producer *p)
{
        if (p->refused == RD_KAFKA_RESP_ERR_NO_ERROR)
                return;
        log_info(p->lg, "kafka: connected again", "{s:s}", "after", rd_kafka_err2name(p->refused));
        p->refused = RD_KAFKA_RESP_ERR_NO_ERROR;
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        struct producer *p = opaque;

        (void)rk;
        p->outstanding--;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
                refusal_over(p);
        /* A progress record's failure shows in the commit, not per row. */
        if (m->_private != p)
                p->cb(p->cb_arg, m->_private, m->err, m->partition, m->offset);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
        struct producer *p = opaque;
        rd_kafka_resp_err_t code = (rd_kafka_resp_err_t)err;
        const char *what = refusal(&code, reason);

        if (what != NULL) {
                /* Said once per change of cause, not at every reconnect:
                 * /readyz and the log line say what to fix. librdkafka's
                 * reason names the broker and the failure, never the
                 * credential. */
                snprintf(p->refused_reason, sizeof(p->refused_reason), "%s: %s", what, reason);
                if (p->refused != code)
                        log_error(p->lg,
                                  "kafka refuses the connection: rows wait, spending no "
                                  "attempts",
                                  "{s:s,s:s}", "code", rd_kafka_err2name(code), "error",
                                  p->refused_reason);
                p->refused = code;
                return;
        }
        if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && p->refused) {
                /* The refusal said it already. */
                log_debug(p->lg, "kafka error", "{s:s,s:s}", "code",
                          rd_kafka_err2name((rd_kafka_resp_err_t)err), "error", reason);
                return;
        }

        if (err == RD_KAFKA_RESP_ERR__FATAL) {
                char why[400];
                rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof(why));

                p->fatal = 1;
                snprintf(p->fatal_reason, sizeof(p->fatal_reason), "%s: %s",
                         rd_kafka_err2name(orig), why);
                log_error(p->lg, "kafka producer fatal error", "{s:s}", "error", p->fatal_reason);
                return;
        }
        log_warn(p->lg, "kafka error", "{s:s,s:s}", "code",
                 rd_kafka_err2name((rd_kafka_resp_err_t)err), "error", reason);
}

/* librdkafka's statistics (JSON): the queue depth, and per broker whether
 * it is up and its average round-trip time. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
        struct producer *p = opaque;
        json_t *root = json_loadb(json, len, 0, NULL), *brokers, *b;
        const char *name;
        int up = 0;

        (void)rk;
        if (root == NULL)
                return 0;
        metrics_set(p->metrics, METRICS_KAFKA_QUEUE,
                    (double)json_integer_value(json_object_get(root, "msg_cnt")));
        brokers = json_object_get(root, "brokers");
        json_object_foreach(brokers, name, b)
        {
                const char *state = json_string_value(json_object_get(b, "state"));

                if (json_integer_value(json_object_get(b, "nodeid")) < 0)
                        continue; /* bootstrap placeholders */
                up |= state != NULL && strcmp(state, "UP") == 0;
                metrics_broker_rtt(
                    p->metrics, name,
                    (double)json_integer_value(json_object_get(json_object_get(b, "rtt"), "avg")) /
                        1e6);
        }
        metrics_set(p->metrics, METRICS_KAFKA_CONNECTED, up);
        if (up)
                refusal_over(p);
        json_decref(root);
        return 0; /* librdkafka frees json */
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
        struct producer *p = rd_kafka_opaque(rk);
        enum log_level lvl = level <= 3   ? LOG_LEVEL_ERROR
                             : level <= 4 ? LOG_LEVEL_WARN
                             : level <= 6 ? LOG_LEVEL_INFO
                                          : LOG_LEVEL_DEBUG;

        /* librdkafka warns at every start that enable.gapless.guarantee is
         * experimental, however it is set; the relay sets it on purpose (see
         * kafka_conf.c) and cannot do without it, so that is no warning. A
         * broker's failure (FAIL) also comes as an error event, which
         * error_cb logs (once per cause for a refusal): not twice. */
        if ((strcmp(fac, "CONFWARN") == 0 &&
             strstr(buf, "property enable.gapless.guarantee is experimental") != NULL) ||
            strcmp(fac, "FAIL") == 0)
                lvl = LOG_LEVEL_DEBUG;
        log_write(p->lg, lvl, "librdkafka", "{s:s,s:s}", "facility", fac, "detail", buf);
}

struct producer *producer_new(const struct config *cfg, struct log *lg, struct metrics *metrics,
                              producer_dr_cb cb, void *arg, char *errbuf, size_t errsz)
{
        struct producer *p = calloc(1, sizeof(*p));
        rd_kafka_conf_t *conf = NULL;
        rd_kafka_queue_t *mainq;
        char err[512];

        if (p == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                return NULL;
        }
        p->lg = lg;
        p->metrics = metrics;
        p->cb = cb;
        p->cb_arg = arg;
        p->pipe_fd[0] = p->pipe_fd[1] = -1;
        if (pipe2(p->pipe_fd, O_NONBLOCK | O_CLOEXEC) != 0) {
                snprintf(errbuf, errsz, "pipe: %s", strerror(errno));
                goto fail;
        }
        conf = kafka_conf_producer(cfg, errbuf, errsz);
        if (conf == NULL)
                goto fail;
        rd_kafka_conf_set_opaque(conf, p);
        rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
        rd_kafka_conf_set_error_cb(conf, error_cb);
        rd_kafka_conf_set_log_cb(conf, log_cb);
        rd_kafka_conf_set_stats_cb(conf, stats_cb);
        p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (p->rk == NULL) {
                snprintf(errbuf, errsz, "cannot create the Kafka producer: %s", err);
                goto fail; /* conf is still ours when rd_kafka_new fails */
        }
        conf = NULL;
        rd_kafka_set_log_queue(p->rk, NULL); /* logs to the main queue, served by poll */
        mainq = rd_kafka_queue_get_main(p->rk);
        rd_kafka_queue_io_event_enable(mainq, p->pipe_fd[1], "1", 1);
        rd_kafka_queue_destroy(mainq);
        return p;
fail:
        if (conf != NULL)
                rd_kafka_conf_destroy(conf);
        producer_free(p);
        return NULL;
}

void producer_purge(struct producer *p)
{
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
}

void producer_free(struct producer *p)
{
        if (p == NULL)
                return;
        if (p->rk != NULL) {
                producer_purge(p);
                /* Purged messages are reported at once; flush serves those
                 * reports so the relay sees every message end. */
                rd_kafka_flush(p->rk, 5000);
                rd_kafka_destroy(p->rk);
        }
        if (p->pipe_fd[0] >= 0)
                close(p->pipe_fd[0]);
        if (p->pipe_fd[1] >= 0)
                close(p->pipe_fd[1]);
        free(p);
}

rd_kafka_resp_err_t producer_send(struct producer *p, const char *topic,
                                  const struct message_row *row, rd_kafka_headers_t *hdrs,
                                  void *msg_opaque)
{
        /* Never waits: a full queue (QUEUE_FULL) is the caller's to wait
         * out in its loop, which serves the reports that make room. */
        rd_kafka_resp_err_t err = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY((void *)row->key, row->key_len),
            RD_KAFKA_V_VALUE((void *)row->value, row->value_len), RD_KAFKA_V_HEADERS(hdrs),
            RD_KAFKA_V_TIMESTAMP(row->created_at_ms), RD_KAFKA_V_OPAQUE(msg_opaque),
            RD_KAFKA_V_END);

        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                rd_kafka_headers_destroy(hdrs); /* not taken over on failure */
                return err;
        }
        p->outstanding++;
        return RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* ---- --exactly-once: transactions ---- */

/* Turns a transactional call's error into errbuf, and a fatal one into the
 * producer's fatal state (the relay rebuilds it). */
static enum producer_txn_result txn_error(struct producer *p, const char *what,
                                          rd_kafka_error_t *error, char *errbuf, size_t errsz)
{
        snprintf(errbuf, errsz, "%s: %s: %s", what, rd_kafka_error_name(error),
                 rd_kafka_error_string(error));
        if (rd_kafka_error_is_fatal(error) && !p->fatal) {
                p->fatal = 1;
                snprintf(p->fatal_reason, sizeof(p->fatal_reason), "%s", errbuf);
        }
        rd_kafka_error_destroy(error);
        return PRODUCER_TXN_FAILED;
}

enum producer_txn_result producer_txn_init(struct producer *p, int timeout_ms, char *errbuf,
                                           size_t errsz)
{
        rd_kafka_error_t *error = rd_kafka_init_transactions(p->rk, timeout_ms);

        if (error == NULL)
                return PRODUCER_TXN_DONE;
        if (rd_kafka_error_is_retriable(error)) {
                snprintf(errbuf, errsz, "initialising transactions: %s",
                         rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
                return PRODUCER_TXN_RETRY;
        }
        return txn_error(p, "initialising transactions", error, errbuf, errsz);
}

enum producer_txn_result producer_txn_begin(struct producer *p, char *errbuf, size_t errsz)
{
        rd_kafka_error_t *error = rd_kafka_begin_transaction(p->rk);

        return error == NULL ? 0 : txn_error(p, "beginning a transaction", error, errbuf, errsz);
}

rd_kafka_resp_err_t producer_send_progress(struct producer *p, const char *topic, const char *key,
                                           const char *value)
{
        rd_kafka_resp_err_t err = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
            RD_KAFKA_V_KEY((void *)key, strlen(key)),
            RD_KAFKA_V_VALUE((void *)value, strlen(value)),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(p), RD_KAFKA_V_END);

        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
                p->outstanding++;
        return err;
}

/* An error that leaves the transaction's outcome unsettled: only a new
 * producer (whose init_transactions fences this one and aborts what it
 * left open) gets past it. */
static enum producer_txn_result txn_unsettled(struct producer *p, const char *what,
                                              rd_kafka_error_t *error, char *errbuf, size_t errsz)
{
        if (!rd_kafka_error_is_fatal(error) && !p->fatal) {
                p->fatal = 1;
                snprintf(p->fatal_reason, sizeof(p->fatal_reason), "%s: %s", what,
                         rd_kafka_error_string(error));
        }
        return txn_error(p, what, error, errbuf, errsz);
}

/* A resumed commit call waits at least this long. librdkafka 2.0.2 (and
 * 2.8.0) starts each commit call with a "begin commit" step handled by its
 * own thread; when that step times out the call returns a retriable
 * TIMED_OUT but forgets that a commit is the current call, and the step's
 * late answer is later taken for another step's. Once the EndTxn request
 * is in flight, its answer then finds no commit call, is taken for an
 * abort's, and librdkafka asserts (CommittingTransaction -> AbortNotAcked).
 * A step answered within its first few ms keeps that from happening; this
 * margin is for a loaded machine. It holds the loop only while Kafka is
 * slow to answer a commit. */
#define TXN_RESUME_MS 100
/* The stale answer above shows as ERR__STATE "Operation not valid in state
 * CommittingTransaction" (or BeginCommit); calling again at once makes the
 * commit the current call again before the EndTxn's answer can arrive. */
#define TXN_STATE_RECALLS 3

/* The commit is still under way in librdkafka: see TXN_STATE_RECALLS. */
static int txn_commit_state_error(const struct producer *p, const rd_kafka_error_t *error)
{
        return p->committing && rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR__STATE &&
               !rd_kafka_error_is_fatal(error) && !rd_kafka_error_txn_requires_abort(error);
}

/* commit and abort are resumable: a retriable error (their own timeout
 * among them) leaves the operation going on in librdkafka, and calling
 * again picks it up, so each call waits at most timeout_ms (TXN_RESUME_MS
 * once the commit is under way). */
enum producer_txn_result producer_txn_commit(struct producer *p, int timeout_ms, char *errbuf,
                                             size_t errsz)
{
        int tmo = p->committing && timeout_ms >= 0 && timeout_ms < TXN_RESUME_MS ? TXN_RESUME_MS
                                                                                 : timeout_ms;
        rd_kafka_error_t *error = rd_kafka_commit_transaction(p->rk, tmo);

        for (int i = 0; error != NULL && i < TXN_STATE_RECALLS && txn_commit_state_error(p, error);
             i++) {
                rd_kafka_error_destroy(error);
                error = rd_kafka_commit_transaction(p->rk, tmo);
        }
        if (error == NULL) {
                p->committing = 0;
                return PRODUCER_TXN_DONE;
        }
        if (rd_kafka_error_txn_requires_abort(error)) {
                p->committing = 0;
                snprintf(errbuf, errsz, "committing a transaction: %s",
                         rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
                return PRODUCER_TXN_MUST_ABORT;
        }
        if (rd_kafka_error_is_retriable(error)) {
                p->committing = 1;
                snprintf(errbuf, errsz, "committing a transaction: %s",
                         rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
                return PRODUCER_TXN_RETRY;
        }
        p->committing = 0;
        return txn_unsettled(p, "committing a transaction", error, errbuf, errsz);
}

enum producer_txn_result producer_txn_abort(struct producer *p, int timeout_ms, char *errbuf,
                                            size_t errsz)
{
        rd_kafka_error_t *error = rd_kafka_abort_transaction(p->rk, timeout_ms);

        if (error == NULL)
                return PRODUCER_TXN_DONE;
        if (rd_kafka_error_is_retriable(error)) {
                snprintf(errbuf, errsz, "aborting a transaction: %s", rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
                return PRODUCER_TXN_RETRY;
        }
        return txn_unsettled(p, "aborting a transaction", error, errbuf, errsz);
}

void producer_txn_give_up(struct producer *p, const char *why)
{
        if (p->fatal)
                return;
        p->fatal = 1;
        snprintf(p->fatal_reason, sizeof(p->fatal_reason), "%s", why);
}

int producer_fenced(const struct producer *p)
{
        rd_kafka_resp_err_t err;

        if (!p->fatal)
                return 0;
        err = rd_kafka_fatal_error(p->rk, NULL, 0);
        return err == RD_KAFKA_RESP_ERR__FENCED || err == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
               err == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

void producer_poll(struct producer *p)
{
        char buf[64];

        while (read(p->pipe_fd[0], buf, sizeof(buf)) > 0)
                ;
        while (rd_kafka_poll(p->rk, 0) > 0)
                ;
}

int producer_fd(const struct producer *p)
{
        return p->pipe_fd[0];
}

int producer_fatal(const struct producer *p, char *errbuf, size_t errsz)
{
        if (p->fatal)
                snprintf(errbuf, errsz, "%s", p->fatal_reason);
        return p->fatal;
}

int producer_refused(const struct producer *p, char *errbuf, size_t errsz)
{
        if (p->refused && errbuf != NULL)
                snprintf(errbuf, errsz, "%s", p->refused_reason);
        return p->refused != RD_KAFKA_RESP_ERR_NO_ERROR;
}

int producer_outstanding(const struct producer *p)
{
        return p->outstanding;
}

int producer_err_is_permanent(rd_kafka_resp_err_t err)
{
        switch (err) {
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        case RD_KAFKA_RESP_ERR_INVALID_MSG:
        case RD_KAFKA_RESP_ERR_INVALID_RECORD:
        case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
        case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
        case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
        case RD_KAFKA_RESP_ERR__INVALID_ARG:
        case RD_KAFKA_RESP_ERR__BAD_MSG:
        case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
                return 1;
        default:
                return 0;
        }
}
