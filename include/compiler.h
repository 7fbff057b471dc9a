/* compiler: the one spelling of the attributes the headers share, so that
 * every fallible call is marked the same way and the compiler checks that
 * its result is read. */
#ifndef OUTBOX_COMPILER_H
#define OUTBOX_COMPILER_H

/* On every call that returns 0 / a negative error (or NULL on failure):
 * ignoring the result is a bug, and -Werror makes it a build failure. */
#define OUTBOX_MUST_CHECK __attribute__((warn_unused_result))

#endif
