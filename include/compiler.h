/* compiler: the one spelling of the attributes the code relies on. */
#ifndef OUTBOX_COMPILER_H
#define OUTBOX_COMPILER_H

#define OUTBOX_MUST_CHECK __attribute__((warn_unused_result))

#endif
