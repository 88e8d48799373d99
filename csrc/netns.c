/*
 * Open a file as seen from another network namespace (a sysctl of it, say) without
 * moving the calling thread for longer than the open: the fd stays bound to that
 * namespace and can be read and written from any thread afterwards.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "spawn.h"

int pyslirp_open_in_netns(const char *netns, const char *path, int flags)
{
    int own, target, fd, err = 0;

    own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (own < 0)
        return -errno;
    /* O_NONBLOCK: a FIFO at the path would block this open (and setup) forever. */
    target = open(netns, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (target < 0) {
        err = errno;
        close(own);
        return -err;
    }
    if (setns(target, CLONE_NEWNET) != 0) {
        err = errno;
        close(target);
        close(own);
        return -err;
    }
    fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        err = errno;
    /* A thread left in another namespace would run the caller's code there: never. */
    if (setns(own, CLONE_NEWNET) != 0)
        abort();
    close(target);
    close(own);
    return fd >= 0 ? fd : -err;
}
