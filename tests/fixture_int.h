/* fixture_int: what the fixture's source files share (child processes);
 * not for tests, which use fixture.h. */
#ifndef OUTBOX_TEST_FIXTURE_INT_H
#define OUTBOX_TEST_FIXTURE_INT_H

#include <stddef.h>
#include <sys/types.h>

#define FX_POLL_MS 20

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

#endif
