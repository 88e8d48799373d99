/* PID 1 of `pyslirp run`: the sandbox's namespaces, its view of the host, and a tiny init. */
#ifndef PYSLIRP_INIT_H
#define PYSLIRP_INIT_H

#include <stddef.h>

#include "spawn.h"

/* What the init child reports on its error pipe: {step, errno} records. */
#define PYSLIRP_INIT_PREPARED 0  /* namespaces and view ready for slirp4netns (errno 0) */
#define PYSLIRP_INIT_STEP_SIGNALS 1
#define PYSLIRP_INIT_STEP_FDS 2
#define PYSLIRP_INIT_STEP_ACCEPT_DAD 3
#define PYSLIRP_INIT_STEP_MOUNT_SLAVE 4
#define PYSLIRP_INIT_STEP_MOUNT_SCRATCH 5
#define PYSLIRP_INIT_STEP_RESOLV_CONF 6
#define PYSLIRP_INIT_STEP_HOSTS 7
#define PYSLIRP_INIT_STEP_MOUNT_PROC 8
#define PYSLIRP_INIT_STEP_MOUNT_SYS 9
#define PYSLIRP_INIT_STEP_IPV6 10
#define PYSLIRP_INIT_STEP_FORK 11
#define PYSLIRP_INIT_STEP_CAPS 12
#define PYSLIRP_INIT_STEP_EXEC 13
#define PYSLIRP_INIT_STEP_CLONE 14
#define PYSLIRP_INIT_STEP_PIPE 15
#define PYSLIRP_INIT_STEP_REAPER 16

struct pyslirp_init_args {
    int clone_flags;          /* CLONE_NEW* for the init child (CLONE_NEWPID among them) */
    const char *path;         /* CMD's executable, already looked up */
    char *const *argv;
    char *const *envp;        /* NULL: the parent's environ */
    int gate_fd;              /* read end: a byte once the id maps are written, another
                                 once the network is up; EOF: give up */
    int stop_fd;              /* write end: a byte each time CMD is stopped */
    int host_mounts_locked;   /* rootless: the host's /proc and /sys cannot be detached */
    const char *resolv_conf;  /* contents bind-mounted over /etc/resolv.conf, or NULL */
    size_t resolv_conf_len;
    const char *hosts;        /* contents bind-mounted over /etc/hosts, or NULL */
    size_t hosts_len;
    long long ipv6_deadline_ms; /* > 0: wait until then (CLOCK_MONOTONIC) for a usable
                                   global IPv6 address before CMD starts */
    int fd_limit;             /* highest fd + 1 to scan where close_range is missing */
};

/* Clone the init child into ``slot`` (its ready_fd: the error pipe's read end, which gives
 * {step, errno} records, then EOF once CMD runs); 0, or -1 with slot->step/err set. The
 * child runs in C until it exits with CMD's status (128+N: signal N). */
int pyslirp_init_start(const struct pyslirp_init_args *args, struct pyslirp_slot *slot);

/* Relay ``sig`` to the init child, which forwards to CMD only signals relayed this way. */
int pyslirp_init_relay(int pidfd, int sig);

#endif
