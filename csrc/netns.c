/*
 * Open a file as seen from another network namespace (a sysctl of it, say), or a socket
 * of it (rtnetlink, to read its addresses), without moving the calling thread for longer
 * than the open: the fd stays bound to that namespace and can be used from any thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spawn.h"

/* Join ``netns`` on the calling thread; ``*own`` gets the way back. 0, or -errno. */
static int enter_netns(const char *netns, int *own)
{
    int target, err;

    *own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (*own < 0)
        return -errno;
    /* O_NONBLOCK: a FIFO at the path would block this open (and setup) forever. */
    target = open(netns, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (target < 0) {
        err = errno;
        close(*own);
        return -err;
    }
    err = setns(target, CLONE_NEWNET) != 0 ? errno : 0;
    close(target);
    if (err)
        close(*own);
    return -err;
}

static void leave_netns(int own)
{
    /* A thread left in another namespace would run the caller's code there: never. */
    if (setns(own, CLONE_NEWNET) != 0)
        abort();
    close(own);
}

int pyslirp_open_in_netns(const char *netns, const char *path, int flags)
{
    int own, fd, err = enter_netns(netns, &own);

    if (err)
        return err;
    fd = open(path, flags | O_CLOEXEC);
    err = fd < 0 ? errno : 0;
    leave_netns(own);
    return fd >= 0 ? fd : -err;
}

int pyslirp_socket_in_netns(const char *netns, int domain, int type, int protocol)
{
    int own, fd, err = enter_netns(netns, &own);

    if (err)
        return err;
    fd = socket(domain, type | SOCK_CLOEXEC, protocol);
    err = fd < 0 ? errno : 0;
    leave_netns(own);
    return fd >= 0 ? fd : -err;
}
