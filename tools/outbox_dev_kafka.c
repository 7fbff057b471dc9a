/* outbox-dev-kafka: librdkafka's mock Kafka cluster in its own process on
 * 127.0.0.1, to develop and test the relay without a real Kafka. It prints the
 * bootstrap list as its first stdout line, then answers control lines on stdin. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define DEVK_MAX_BROKERS  64
#define DEVK_MAX_PARTS    10000
#define DEVK_MAX_ERRORS   1000
#define DEVK_LINE_MAX     4096
#define DEVK_MOCK_DEFAULT 4 /* librdkafka's hard-coded auto-create partition count */

struct devk {
        rd_kafka_t *rk;
        rd_kafka_mock_cluster_t *mc;
        int brokers;
        int replication; /* what the mock uses for auto-created topics */
        uint16_t ports[DEVK_MAX_BROKERS];
        int n_ports;
};

static const char usage_text[] =
    "usage: outbox-dev-kafka [--brokers N] [--partitions N] [--topic NAME[:PARTITIONS]]...\n"
    "                        [--exit-on-eof] [--help]\n"
    "Runs librdkafka's mock Kafka cluster on 127.0.0.1. The first stdout line is the\n"
    "bootstrap list; it then runs until SIGTERM/SIGINT (or stdin EOF with --exit-on-eof).\n"
    "  --brokers N        number of brokers, ids 1..N (default 1)\n"
    "  --partitions N     partitions of topics created by --topic without a count\n"
    "                     (default 4; auto-created topics always get librdkafka's 4)\n"
    "  --topic NAME[:P]   create a topic up front (P defaults to --partitions); repeatable\n"
    "  --exit-on-eof      exit cleanly when stdin reaches EOF (default: ignore EOF)\n"
    "Control commands on stdin, one per line, each answered `ok` or `error <reason>`:\n"
    "  down <broker>                 close the broker's listener and connections (-1 = all)\n"
    "  up <broker>                   restart it on the same port (-1 = all)\n"
    "  rtt <broker> <ms>             simulated round-trip time (-1 = all)\n"
    "  errors <ApiKey> <err>[,<err>...]  fail the next requests of ApiKey with these errors\n"
    "                                (numbers or names such as NOT_LEADER_FOR_PARTITION)\n"
    "  broker-errors <broker> <ApiKey> <err>[@<ms>][,...]  the same on one broker, each\n"
    "                                answered after ms (0@ms: append, answer late)\n"
    "  clear <ApiKey>                drop the pending cluster-wide errors of ApiKey\n"
    "  topic-error <topic> <err>     Metadata reports err for the topic (0 clears)\n"
    "  topic <name> <partitions>     create a topic\n"
    "  leader <topic> <partition> <broker>  move a partition's leader (-1 = none)\n"
    "  ping                          no-op, answers ok\n";

/* Strict decimal parse of the whole string into [min, max]. */
static int parse_long(const char *s, long min, long max, long *out)
{
        char *end;
        long v;

        if (!s || !*s || isspace((unsigned char)*s))
                return -1;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || *end || v < min || v > max)
                return -1;
        *out = v;
        return 0;
}

/* Kafka's own topic name rule; the mock itself accepts any name. */
static int valid_topic(const char *name)
{
        size_t n = strlen(name);

        if (n == 0 || n > 249 || !strcmp(name, ".") || !strcmp(name, ".."))
                return 0;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)name[i];
                if (!isalnum(c) && c != '.' && c != '_' && c != '-')
                        return 0;
        }
        return 1;
}

/* An error code given as a number or as a name ("NOT_LEADER_FOR_PARTITION").
 * Broker codes only, plus _TRANSPORT, which makes the mock close the
 * connection when the request arrives. */
static int parse_err(const char *s, rd_kafka_resp_err_t *out)
{
        const struct rd_kafka_err_desc *descs;
        size_t n;
        long v;

        if (parse_long(s, RD_KAFKA_RESP_ERR__TRANSPORT, INT16_MAX, &v) == 0 &&
            (v >= -1 || v == RD_KAFKA_RESP_ERR__TRANSPORT)) {
                *out = (rd_kafka_resp_err_t)v;
                return 0;
        }
        rd_kafka_get_err_descs(&descs, &n);
        for (size_t i = 0; i < n; i++) {
                if (descs[i].name && !strcmp(descs[i].name, s) &&
                    (descs[i].code >= -1 || descs[i].code == RD_KAFKA_RESP_ERR__TRANSPORT)) {
                        *out = descs[i].code;
                        return 0;
                }
        }
        return -1;
}

/* The mock cluster never sets TCP_NODELAY on its sockets, so with two
 * requests in flight on one connection the second response waits for the
 * client's delayed ACK (~40 ms). librdkafka gives no handle on the listening
 * sockets, so find them in /proc/self/fd by their 127.0.0.1:<broker port>
 * address; accepted sockets inherit the option. Sockets that are bound but
 * not listening (a broker that is down) get it too, ready for `up`.
 * Returns how many listening sockets now have it, or -1. */
static int set_nodelay(const struct devk *dk, char *errbuf, size_t errsz)
{
        DIR *dir = opendir("/proc/self/fd");
        struct dirent *de;
        int listening = 0;

        if (!dir) {
                snprintf(errbuf, errsz, "/proc/self/fd: %s", strerror(errno));
                return -1;
        }
        while ((de = readdir(dir))) {
                struct sockaddr_in sin;
                socklen_t len = sizeof(sin);
                struct stat st;
                int v, on = 1, match = 0;
                socklen_t vlen = sizeof(v);
                long fd;

                if (parse_long(de->d_name, 0, INT_MAX, &fd) || fd == dirfd(dir))
                        continue;
                if (fstat((int)fd, &st) || !S_ISSOCK(st.st_mode))
                        continue;
                if (getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &v, &vlen) || v != SOCK_STREAM)
                        continue;
                if (getsockname((int)fd, (struct sockaddr *)&sin, &len) ||
                    sin.sin_family != AF_INET || sin.sin_addr.s_addr != htonl(INADDR_LOOPBACK))
                        continue;
                for (int i = 0; i < dk->n_ports; i++)
                        match |= ntohs(sin.sin_port) == dk->ports[i];
                if (!match)
                        continue;
                if (setsockopt((int)fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on))) {
                        /* The mock thread may have closed it meanwhile. */
                        continue;
                }
                vlen = sizeof(v);
                if (!getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &vlen) && v)
                        listening++;
        }
        closedir(dir);
        return listening;
}

/* Fills dk->ports from "127.0.0.1:p1,127.0.0.1:p2,...". */
static int parse_ports(struct devk *dk, const char *bootstraps, char *errbuf, size_t errsz)
{
        const char *p = bootstraps;

        dk->n_ports = 0;
        while (*p) {
                const char *colon = strchr(p, ':');
                char *end;
                long port;

                if (!colon || dk->n_ports == DEVK_MAX_BROKERS)
                        break;
                errno = 0;
                port = strtol(colon + 1, &end, 10);
                if (errno || port <= 0 || port > 65535 || (*end && *end != ','))
                        break;
                dk->ports[dk->n_ports++] = (uint16_t)port;
                p = *end ? end + 1 : end;
        }
        if (*p || dk->n_ports != dk->brokers) {
                snprintf(errbuf, errsz, "unexpected bootstrap list \"%s\"", bootstraps);
                return -1;
        }
        return 0;
}

static int create_topic(struct devk *dk, const char *name, long partitions, char *errbuf,
                        size_t errsz)
{
        rd_kafka_resp_err_t err;

        if (!valid_topic(name)) {
                snprintf(errbuf, errsz, "invalid topic name");
                return -1;
        }
        err = rd_kafka_mock_topic_create(dk->mc, name, (int)partitions, dk->replication);
        if (err) {
                snprintf(errbuf, errsz, "%s", rd_kafka_err2name(err));
                return -1;
        }
        return 0;
}

static int mock_result(rd_kafka_resp_err_t err, char *errbuf, size_t errsz)
{
        if (!err)
                return 0;
        snprintf(errbuf, errsz, "%s", rd_kafka_err2name(err));
        return -1;
}

/* An ApiKey whose handler in the mock consumes injected errors (2.0.2's
 * rdkafka_mock_handlers.c). Others, notably Metadata (3), ignore them, and
 * the errors would just pile up; topic-error covers metadata instead. */
static int parse_api_key(const char *s, int16_t *out, char *errbuf, size_t errsz)
{
        static const int16_t keys[] = {0, 1, 2, 8, 9, 10, 11, 12, 13, 14, 18, 22, 24, 25, 26, 28};
        long v;

        if (parse_long(s, 0, INT16_MAX, &v)) {
                snprintf(errbuf, errsz, "bad ApiKey");
                return -1;
        }
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
                if (keys[i] == v) {
                        *out = (int16_t)v;
                        return 0;
                }
        }
        snprintf(errbuf, errsz, "the mock never injects errors into ApiKey %ld responses", v);
        return -1;
}

/* "<err>[@<ms>],..." into errs and (when rtts is given) delays. */
static int parse_err_list(char *list, rd_kafka_resp_err_t *errs, long *rtts, size_t *n,
                          char *errbuf, size_t errsz)
{
        char *save = NULL;

        *n = 0;
        for (char *e = strtok_r(list, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
                char *at = rtts ? strchr(e, '@') : NULL;

                if (*n == DEVK_MAX_ERRORS) {
                        snprintf(errbuf, errsz, "more than %d errors", DEVK_MAX_ERRORS);
                        return -1;
                }
                if (at)
                        *at = '\0';
                if (rtts)
                        rtts[*n] = 0;
                if (parse_err(e, &errs[*n]) || (at && parse_long(at + 1, 0, 3600000, &rtts[*n]))) {
                        snprintf(errbuf, errsz, "bad error \"%.64s\"", e);
                        return -1;
                }
                (*n)++;
        }
        if (*n == 0) {
                snprintf(errbuf, errsz, "no error codes");
                return -1;
        }
        return 0;
}

/* `errors <ApiKey> <err>,...`: the next requests of ApiKey, on any broker,
 * fail with these errors in turn (a failed Produce appends nothing). */
static int cluster_errors(struct devk *dk, const char *apikey, char *list, char *errbuf,
                          size_t errsz)
{
        rd_kafka_resp_err_t errs[DEVK_MAX_ERRORS];
        int16_t key;
        size_t n;

        if (parse_api_key(apikey, &key, errbuf, errsz) ||
            parse_err_list(list, errs, NULL, &n, errbuf, errsz))
                return -1;
        rd_kafka_mock_push_request_errors_array(dk->mc, key, n, errs);
        return 0;
}

/* `broker-errors <broker> <ApiKey> <err>[@<ms>],...`: per-broker errors, each
 * answered after ms. Error 0 with a delay appends the records but answers
 * late, which lets a test time out a produce that did land. */
static int broker_errors(struct devk *dk, const char *broker, const char *apikey, char *list,
                         char *errbuf, size_t errsz)
{
        rd_kafka_resp_err_t errs[DEVK_MAX_ERRORS];
        long rtts[DEVK_MAX_ERRORS];
        int16_t key;
        size_t n;
        long id;

        if (parse_long(broker, 1, INT32_MAX, &id)) {
                snprintf(errbuf, errsz, "bad broker id");
                return -1;
        }
        if (parse_api_key(apikey, &key, errbuf, errsz) ||
            parse_err_list(list, errs, rtts, &n, errbuf, errsz))
                return -1;
        /* Only a variadic form exists; pushing one at a time keeps the order. */
        for (size_t i = 0; i < n; i++) {
                rd_kafka_resp_err_t err = rd_kafka_mock_broker_push_request_error_rtts(
                    dk->mc, (int32_t)id, key, 1, errs[i], (int)rtts[i]);
                if (err)
                        return mock_result(err, errbuf, errsz);
        }
        return 0;
}

/* Runs one control line; 0 or -1 with the reason in errbuf. */
static int run_command(struct devk *dk, char *line, char *errbuf, size_t errsz)
{
        char *argv[5];
        int argc = 0;
        char *save = NULL;
        long a, b;

        for (char *tok = strtok_r(line, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
                if (argc == 5) {
                        snprintf(errbuf, errsz, "too many arguments");
                        return -1;
                }
                argv[argc++] = tok;
        }
        if (argc == 0) {
                snprintf(errbuf, errsz, "empty command");
                return -1;
        }

        if (!strcmp(argv[0], "ping") && argc == 1)
                return 0;
        if ((!strcmp(argv[0], "down") || !strcmp(argv[0], "up")) && argc == 2) {
                int up = argv[0][0] == 'u';
                rd_kafka_resp_err_t err;

                if (parse_long(argv[1], -1, INT32_MAX, &a) || a == 0) {
                        snprintf(errbuf, errsz, "bad broker id");
                        return -1;
                }
                err = up ? rd_kafka_mock_broker_set_up(dk->mc, (int32_t)a)
                         : rd_kafka_mock_broker_set_down(dk->mc, (int32_t)a);
                if (mock_result(err, errbuf, errsz))
                        return -1;
                /* `down` replaces the listening socket with a fresh one. */
                if (set_nodelay(dk, errbuf, errsz) < 0)
                        return -1;
                return 0;
        }
        if (!strcmp(argv[0], "rtt") && argc == 3) {
                if (parse_long(argv[1], -1, INT32_MAX, &a) || a == 0 ||
                    parse_long(argv[2], 0, 3600000, &b)) {
                        snprintf(errbuf, errsz, "usage: rtt <broker> <ms>");
                        return -1;
                }
                return mock_result(rd_kafka_mock_broker_set_rtt(dk->mc, (int32_t)a, (int)b), errbuf,
                                   errsz);
        }
        if (!strcmp(argv[0], "errors") && argc == 3)
                return cluster_errors(dk, argv[1], argv[2], errbuf, errsz);
        if (!strcmp(argv[0], "broker-errors") && argc == 4)
                return broker_errors(dk, argv[1], argv[2], argv[3], errbuf, errsz);
        if (!strcmp(argv[0], "clear") && argc == 2) {
                int16_t key;

                if (parse_api_key(argv[1], &key, errbuf, errsz))
                        return -1;
                rd_kafka_mock_clear_request_errors(dk->mc, key);
                return 0;
        }
        if (!strcmp(argv[0], "topic-error") && argc == 3) {
                rd_kafka_resp_err_t err;

                /* Metadata then reports err for the topic (0 clears it);
                 * the mock creates the topic first if it is missing. */
                if (!valid_topic(argv[1]) || parse_err(argv[2], &err)) {
                        snprintf(errbuf, errsz, "usage: topic-error <topic> <err>");
                        return -1;
                }
                rd_kafka_mock_topic_set_error(dk->mc, argv[1], err);
                return 0;
        }
        if (!strcmp(argv[0], "topic") && argc == 3) {
                if (parse_long(argv[2], 1, DEVK_MAX_PARTS, &a)) {
                        snprintf(errbuf, errsz, "bad partition count");
                        return -1;
                }
                return create_topic(dk, argv[1], a, errbuf, errsz);
        }
        if (!strcmp(argv[0], "leader") && argc == 4) {
                long broker;

                if (parse_long(argv[2], 0, DEVK_MAX_PARTS - 1, &a) ||
                    parse_long(argv[3], -1, INT32_MAX, &broker) || broker == 0) {
                        snprintf(errbuf, errsz, "usage: leader <topic> <partition> <broker>");
                        return -1;
                }
                /* Beware: the mock creates a missing topic here, with
                 * partition+1 partitions. */
                if (!valid_topic(argv[1])) {
                        snprintf(errbuf, errsz, "invalid topic name");
                        return -1;
                }
                return mock_result(rd_kafka_mock_partition_set_leader(dk->mc, argv[1], (int32_t)a,
                                                                      (int32_t)broker),
                                   errbuf, errsz);
        }
        snprintf(errbuf, errsz, "unknown command or wrong arguments");
        return -1;
}

/* Writes one line to stdout and flushes; -1 when stdout is gone. */
static int reply(const char *status, const char *reason)
{
        if (reason)
                printf("%s %s\n", status, reason);
        else
                printf("%s\n", status);
        return fflush(stdout) == 0 && !ferror(stdout) ? 0 : -1;
}

/* Feeds stdin bytes to the line splitter; answers each complete line.
 * Returns -1 when stdout is gone. */
static int handle_input(struct devk *dk, char *buf, size_t *len, int *overflow)
{
        char *start = buf;
        char *nl;

        while ((nl = memchr(start, '\n', *len - (size_t)(start - buf)))) {
                char errbuf[256];

                *nl = '\0';
                if (nl > start && nl[-1] == '\r')
                        nl[-1] = '\0';
                if (*overflow) {
                        *overflow = 0;
                        if (reply("error", "line too long"))
                                return -1;
                } else if (run_command(dk, start, errbuf, sizeof(errbuf))) {
                        if (reply("error", errbuf))
                                return -1;
                } else if (reply("ok", NULL)) {
                        return -1;
                }
                start = nl + 1;
        }
        *len -= (size_t)(start - buf);
        memmove(buf, start, *len);
        if (*len == DEVK_LINE_MAX) { /* no newline in a full buffer: drop it */
                *overflow = 1;
                *len = 0;
        }
        return 0;
}

/* Serves stdin and signals until SIGTERM/SIGINT, or EOF with exit_on_eof.
 * Returns the exit status. */
static int serve(struct devk *dk, int sfd, int exit_on_eof)
{
        char buf[DEVK_LINE_MAX];
        size_t len = 0;
        int overflow = 0;
        int stdin_open = 1;

        for (;;) {
                struct pollfd pfd[2] = {{.fd = sfd, .events = POLLIN},
                                        {.fd = STDIN_FILENO, .events = POLLIN}};
                ssize_t r;

                if (poll(pfd, stdin_open ? 2 : 1, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        fprintf(stderr, "outbox-dev-kafka: poll: %s\n", strerror(errno));
                        return 1;
                }
                if (pfd[0].revents) {
                        struct signalfd_siginfo si;

                        if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                                return 0;
                }
                if (!stdin_open || !pfd[1].revents)
                        continue;
                r = read(STDIN_FILENO, buf + len, sizeof(buf) - len);
                if (r < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (r <= 0) {
                        if (exit_on_eof)
                                return 0;
                        stdin_open = 0;
                        continue;
                }
                len += (size_t)r;
                if (handle_input(dk, buf, &len, &overflow)) {
                        fprintf(stderr, "outbox-dev-kafka: stdout closed, exiting\n");
                        return 1;
                }
        }
}

/* Creates the --topic NAME[:P] topics. */
static int create_initial_topics(struct devk *dk, char **topics, int n, long partitions,
                                 char *errbuf, size_t errsz)
{
        for (int i = 0; i < n; i++) {
                char *colon = strrchr(topics[i], ':');
                long parts = partitions;
                char why[128];

                if (colon) {
                        *colon = '\0';
                        if (parse_long(colon + 1, 1, DEVK_MAX_PARTS, &parts)) {
                                snprintf(errbuf, errsz, "--topic %s: bad partition count",
                                         topics[i]);
                                return -1;
                        }
                }
                if (create_topic(dk, topics[i], parts, why, sizeof(why))) {
                        snprintf(errbuf, errsz, "--topic %.128s: %s", topics[i], why);
                        return -1;
                }
        }
        return 0;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
            {"brokers", required_argument, NULL, 'b'}, {"partitions", required_argument, NULL, 'p'},
            {"topic", required_argument, NULL, 't'},   {"exit-on-eof", no_argument, NULL, 'e'},
            {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
        struct devk dk = {.brokers = 1};
        char **topics = calloc((size_t)argc, sizeof(*topics));
        long brokers = 1, partitions = DEVK_MOCK_DEFAULT;
        int n_topics = 0, exit_on_eof = 0, status = 1, sfd = -1, c;
        char errbuf[512];
        rd_kafka_conf_t *conf;
        sigset_t mask;

        if (!topics)
                return 1;
        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                switch (c) {
                case 'b':
                        if (parse_long(optarg, 1, DEVK_MAX_BROKERS, &brokers))
                                goto bad_usage;
                        break;
                case 'p':
                        if (parse_long(optarg, 1, DEVK_MAX_PARTS, &partitions))
                                goto bad_usage;
                        break;
                case 't':
                        topics[n_topics++] = optarg;
                        break;
                case 'e':
                        exit_on_eof = 1;
                        break;
                case 'h':
                        fputs(usage_text, stdout);
                        free(topics);
                        return 0;
                default:
                        goto bad_usage;
                }
        }
        if (optind != argc)
                goto bad_usage;
        dk.brokers = (int)brokers;
        dk.replication = dk.brokers < 3 ? dk.brokers : 3;

        /* Signals are taken through a signalfd; blocking them before any
         * librdkafka thread starts keeps them all off those threads. A dead
         * reader on stdout must not kill us with SIGPIPE mid-shutdown. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        signal(SIGPIPE, SIG_IGN);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) ||
            (sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
                fprintf(stderr, "outbox-dev-kafka: signalfd: %s\n", strerror(errno));
                goto cleanup;
        }

        conf = rd_kafka_conf_new();
        /* log_level 4 hides the notice that this handle has no bootstrap.servers. */
        if (rd_kafka_conf_set(conf, "client.id", "outbox-dev-kafka", errbuf, sizeof(errbuf)) ||
            rd_kafka_conf_set(conf, "log_level", "4", errbuf, sizeof(errbuf))) {
                rd_kafka_conf_destroy(conf);
                fprintf(stderr, "outbox-dev-kafka: %s\n", errbuf);
                goto cleanup;
        }
        /* The handle only hosts the mock cluster; it never connects anywhere. */
        dk.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, sizeof(errbuf));
        if (!dk.rk) {
                rd_kafka_conf_destroy(conf);
                fprintf(stderr, "outbox-dev-kafka: rd_kafka_new: %s\n", errbuf);
                goto cleanup;
        }
        dk.mc = rd_kafka_mock_cluster_new(dk.rk, dk.brokers);
        if (!dk.mc) {
                fprintf(stderr, "outbox-dev-kafka: could not create the mock cluster\n");
                goto cleanup;
        }
        if (parse_ports(&dk, rd_kafka_mock_cluster_bootstraps(dk.mc), errbuf, sizeof(errbuf)))
                goto fail;
        c = set_nodelay(&dk, errbuf, sizeof(errbuf));
        if (c < 0)
                goto fail;
        if (c != dk.brokers) {
                snprintf(errbuf, sizeof(errbuf), "set TCP_NODELAY on %d of %d listeners", c,
                         dk.brokers);
                goto fail;
        }
        if (create_initial_topics(&dk, topics, n_topics, partitions, errbuf, sizeof(errbuf)))
                goto fail;

        if (reply(rd_kafka_mock_cluster_bootstraps(dk.mc), NULL))
                goto cleanup;
        status = serve(&dk, sfd, exit_on_eof);
        goto cleanup;

bad_usage:
        fputs(usage_text, stderr);
        free(topics);
        return 2;
fail:
        fprintf(stderr, "outbox-dev-kafka: %s\n", errbuf);
cleanup:
        if (dk.mc)
                rd_kafka_mock_cluster_destroy(dk.mc);
        if (dk.rk)
                rd_kafka_destroy(dk.rk);
        if (sfd >= 0)
                close(sfd);
        free(topics);
        return status;
}
