/*
 * What the two children pyslirp clones share: spawn.c's (exec at once) and init.c's (PID 1
 * of `pyslirp run`). Both run only async-signal-safe code and report a failed step to the
 * parent as a fixed {step, errno} record: spawn.c's in the memory it shares with the
 * parent until it execs, init.c's (which never execs itself) on a close-on-exec pipe.
 */
#ifndef PYSLIRP_CHILD_H
#define PYSLIRP_CHILD_H

#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include "spawn.h"

/* Old headers lack these; the kernel ABI values are fixed. */
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

struct error_record {
    int step;
    int err;
};

/* Write a {step, err} record to ``fd`` (the parent reads it as the child's fate; init.c). */
static inline void write_record(int fd, int step, int err)
{
    struct error_record record = {step, err};
    ssize_t n;

    do
        n = write(fd, &record, sizeof record);
    while (n < 0 && errno == EINTR);
}

/* Put every signal the parent catches back to its default (with ``ignored_too``, every
 * ignored one as well): a handler the parent caught with would run the parent's
 * (Python's) code here. 0, or the errno of the sigaction that failed. */
static inline int reset_handlers(int ignored_too)
{
    static const struct sigaction default_action = {.sa_handler = SIG_DFL};

    for (int sig = 1; sig < _NSIG; sig++) {
        struct sigaction current;

        if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &current) != 0)
            continue;
        if (current.sa_handler != SIG_DFL && (ignored_too || current.sa_handler != SIG_IGN) &&
            sigaction(sig, &default_action, NULL) != 0)
            return errno;
    }
    return 0;
}

/* In the parent: say in ``slot`` which step failed, with its errno; returns -1. */
static inline int fail_parent(struct pyslirp_slot *slot, int step, int err)
{
    slot->step = step;
    slot->err = err;
    return -1;
}

#endif
