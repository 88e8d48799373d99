/*
 * What the two children pyslirp clones share: spawn.c's (exec at once) and init.c's (PID 1
 * of `pyslirp run`). Both run only async-signal-safe code and report a failed step to the
 * parent as a fixed {step, errno} record: spawn.c's in the memory it shares with the
 * parent until it execs, init.c's (which never execs itself) on a close-on-exec pipe.
 */
#ifndef PYSLIRP_CHILD_H
#define PYSLIRP_CHILD_H

#include <errno.h>
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

/* In the parent: say in ``slot`` which step failed, with its errno; returns -1. */
static inline int fail_parent(struct pyslirp_slot *slot, int step, int err)
{
    slot->step = step;
    slot->err = err;
    return -1;
}

#endif
