/* fixture_int: what the fixture's source files share (child processes);
 * not for tests, which use fixture.h. */
#ifndef OUTBOX_TEST_FIXTURE_INT_H
#define OUTBOX_TEST_FIXTURE_INT_H

#include <stddef.h>
#include <sys/types.h>

#define FX_POLL_MS    20
#define FX_TAIL_BYTES 1500 /* of a log, in an abort message (Check caps messages) */

struct fx_spawn_opts {
        int in, out, err;  /* the child's fds 0, 1, 2; -1 means /dev/null */
        char *const *envp; /* NULL: this process's environment */
        int as_user;       /* drop to uid/gid before exec */
        uid_t uid;
        gid_t gid;
        int pdeathsig;   /* sent to the child when this thread exits; 0: none */
        int new_session; /* setsid(), else only a new process group */
};

/* fork + exec argv (argv[0] a path); returns the pid, or -1 with errbuf. */
pid_t fx_spawn(const char *const argv[], const struct fx_spawn_opts *o, char *errbuf, size_t errsz);
/* waitpid with a deadline: 1 and *status once pid exited, 0 on timeout, -1
 * when pid is not our child. */
int fx_wait_pid(pid_t pid, int timeout_ms, int *status);

/* Runs argv to completion with a deadline, stdout and stderr into *output
 * (malloc'ed; NULL discards); the exit code, or -1 when killed or late. */
int fx_run_capture(const char *const argv[], const struct fx_spawn_opts *base, char **output,
                   int timeout_ms);
/* The last max bytes of a file, and the whole file (malloc'ed, never NULL). */
char *fx_file_tail(const char *path, size_t max);
char *fx_file_read(const char *path);
/* rm -rf dir, saying on stderr what could not be removed. */
void fx_rm_rf(const char *dir);

/* fixture_tls.c: a self-signed CA dir/name.{crt,key}, and dir/name.{key,crt}
 * for 127.0.0.1 and localhost signed by dir/ca, made with openssl run as o
 * says (as the server's user, say). */
void fx_tls_make_ca(const struct fx_spawn_opts *o, const char *dir, const char *name);
void fx_tls_server_cert(const struct fx_spawn_opts *o, const char *dir, const char *name);

#endif
