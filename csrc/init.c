/*
 * PID 1 of `pyslirp run`, after tini and catatonit. pyslirp_init_start clones a child
 * (fork-like: its own copy of memory) into new user (rootless), network, PID and mount
 * namespaces. The child never returns into Python and runs only async-signal-safe code,
 * as the parent may have other threads. In order, it:
 *   1. resets signal handlers, keeps only its pipes, dies with its parent, leaves the
 *      caller's process group (signals for CMD come through the parent, see below);
 *   2. waits until the parent has written its id maps, turns IPv6 DAD off in the new
 *      netns (tap0 does not exist yet), and builds CMD's view: generated
 *      /etc/resolv.conf and /etc/hosts, a /proc of the new PID namespace and a /sys of
 *      the new network namespace; then reports "prepared": slirp4netns may start;
 *   3. waits until the network is up (and IPv6 usable), forks CMD and execs it;
 *   4. as init: forwards the signals the parent relays, reaps every child, tells the
 *      parent when CMD stops (Ctrl-Z), and exits with CMD's status the moment CMD exits,
 *      which kills what is left in the namespace.
 * Failures leave through a close-on-exec pipe as {step, errno} records.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "init.h"

/* Marks a signal as relayed by pyslirp (si_value), not sent to the init child directly. */
#define RELAY_COOKIE 0x70796e69
#define SCRATCH "/proc"  /* where the generated files are written before /proc is mounted */
#define ACCEPT_DAD "/proc/sys/net/ipv6/conf/default/accept_dad"

extern char **environ;

struct clone_args_v0 {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

/* What a terminal, a supervisor or `timeout` sends, and SIGCONT once the parent's job is
 * continued after a Ctrl-Z: forwarded to CMD when the parent relays them. */
static const int forwarded[] = {SIGINT,  SIGTERM,  SIGHUP,   SIGQUIT,
                                SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT};

static void __attribute__((noreturn)) fail(int fd, int step, int err)
{
    write_record(fd, step, err);
    _exit(125);
}

/* fork() without glibc's atfork handlers, which are not async-signal-safe. */
static pid_t raw_clone(uint64_t flags, int *pidfd)
{
    struct clone_args_v0 ca;

    memset(&ca, 0, sizeof ca);
    ca.flags = flags;
    ca.pidfd = (uint64_t)(uintptr_t)pidfd;
    ca.exit_signal = SIGCHLD;
    return (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
}

static int read_byte(int fd)
{
    char c;
    ssize_t n;

    do
        n = read(fd, &c, 1);
    while (n < 0 && errno == EINTR);
    return n == 1 ? 0 : -1;
}

static int write_file(const char *path, const char *data, size_t len, int flags)
{
    int fd = open(path, flags | O_WRONLY | O_CLOEXEC, 0644);

    if (fd < 0)
        return -1;
    while (len > 0) {
        ssize_t n = write(fd, data, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int saved = errno;

            close(fd);
            errno = saved;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return close(fd);
}

/* Close every fd from 3 up except the ``n`` given, which are sorted. */
static int keep_only(const int *keep, int n, int limit)
{
    int first = 3;

    for (int i = 0; i <= n; i++) {
        int last = i < n ? keep[i] - 1 : (int)(~0U >> 1);

        if (first <= last &&
            syscall(SYS_close_range, (unsigned int)first, (unsigned int)last, 0) != 0) {
            if (errno != ENOSYS)
                return -1;
            for (int fd = first; fd <= last && fd < limit; fd++)
                close(fd);
        }
        if (i < n)
            first = keep[i] + 1;
    }
    return 0;
}

/* Bind-mount ``data`` over ``target`` (through its symlink, if it is one) from a file on
 * the scratch tmpfs; the mount keeps the file alive once the tmpfs is detached. */
static int mount_generated(const char *scratch_file, const char *target, const char *data,
                           size_t len)
{
    if (write_file(scratch_file, data, len, O_CREAT | O_EXCL) != 0)
        return -1;
    return mount(scratch_file, target, NULL, MS_BIND, NULL);
}

static void build_view(const struct pyslirp_init_args *a, int errfd)
{
    const unsigned long hidden = MS_NOSUID | MS_NODEV | MS_NOEXEC;

    /* Mounts made here never reach the host; the host's later mounts still show here. */
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0)
        fail(errfd, PYSLIRP_INIT_STEP_MOUNT_SLAVE, errno);
    /* As root the host's /proc and /sys can go; rootless they are locked in place and the
     * new ones go on top (CMD then lacks CAP_SYS_ADMIN to uncover them). */
    if (!a->host_mounts_locked) {
        umount2("/proc", MNT_DETACH);
        umount2("/sys", MNT_DETACH);
    }
    if (a->resolv_conf || a->hosts) {
        if (mount("tmpfs", SCRATCH, "tmpfs", hidden, "mode=0755,size=1m") != 0)
            fail(errfd, PYSLIRP_INIT_STEP_MOUNT_SCRATCH, errno);
        if (a->resolv_conf &&
            mount_generated(SCRATCH "/resolv.conf", "/etc/resolv.conf", a->resolv_conf,
                            a->resolv_conf_len) != 0)
            fail(errfd, PYSLIRP_INIT_STEP_RESOLV_CONF, errno);
        if (a->hosts && mount_generated(SCRATCH "/hosts", "/etc/hosts", a->hosts, a->hosts_len) != 0)
            fail(errfd, PYSLIRP_INIT_STEP_HOSTS, errno);
        if (umount2(SCRATCH, MNT_DETACH) != 0)
            fail(errfd, PYSLIRP_INIT_STEP_MOUNT_SCRATCH, errno);
    }
    /* A proc of the new PID namespace (this process is its PID 1): no helper is in it. */
    if (mount("proc", "/proc", "proc", hidden, NULL) != 0)
        fail(errfd, PYSLIRP_INIT_STEP_MOUNT_PROC, errno);
    /* A sysfs mounted from the new netns shows its interfaces: lo and tap0. */
    if (mount("sysfs", "/sys", "sysfs", hidden, NULL) != 0)
        fail(errfd, PYSLIRP_INIT_STEP_MOUNT_SYS, errno);
}

/* Whether the netlink messages in buf announce a global, non-tentative IPv6 address. */
static int usable_ipv6(const char *buf, ssize_t len)
{
    for (const struct nlmsghdr *nh = (const void *)buf; NLMSG_OK(nh, len);
         nh = NLMSG_NEXT(nh, len)) {
        const struct ifaddrmsg *ifa = NLMSG_DATA(nh);
        unsigned int flags;
        int rtlen;

        if (nh->nlmsg_type != RTM_NEWADDR || ifa->ifa_family != AF_INET6 ||
            ifa->ifa_scope != RT_SCOPE_UNIVERSE)
            continue;
        flags = ifa->ifa_flags;
        rtlen = (int)IFA_PAYLOAD(nh);
        for (const struct rtattr *rta = IFA_RTA(ifa); RTA_OK(rta, rtlen);
             rta = RTA_NEXT(rta, rtlen))
            if (rta->rta_type == IFA_FLAGS)
                memcpy(&flags, RTA_DATA(rta), sizeof flags);
        if (!(flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)))
            return 1;
    }
    return 0;
}

/* Wait until the netns has a global IPv6 address that is no longer tentative. */
static int wait_ipv6(long long deadline)
{
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_IPV6_IFADDR};
    struct {
        struct nlmsghdr nh;
        struct ifaddrmsg ifa;
    } req;
    char buf[8192] __attribute__((aligned(NLMSG_ALIGNTO)));
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);

    if (fd < 0)
        return -1;
    memset(&req, 0, sizeof req);
    req.nh.nlmsg_len = sizeof req;
    req.nh.nlmsg_type = RTM_GETADDR;
    req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.ifa.ifa_family = AF_INET6;
    /* Subscribe first, then dump: an address added in between is seen either way. */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || send(fd, &req, sizeof req, 0) < 0)
        goto fail;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        long long left = deadline - pyslirp_now_ms();
        ssize_t n;

        if (left <= 0) {
            errno = ETIMEDOUT;
            goto fail;
        }
        if (poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left) < 0 && errno != EINTR)
            goto fail;
        n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            goto fail;
        if (n > 0 && usable_ipv6(buf, n))
            break;
    }
    close(fd);
    return 0;
fail: {
    int saved = errno;

    close(fd);
    errno = saved;
    return -1;
}
}

static void __attribute__((noreturn)) exec_cmd(const struct pyslirp_init_args *a, int errfd,
                                               const sigset_t *empty)
{
    close(a->gate_fd);
    close(a->stop_fd);
    /* Rootless, the new /proc and /sys only cover the host's: without CAP_SYS_ADMIN CMD
     * cannot unmount them (a nested user namespace sees them locked). */
    if (a->host_mounts_locked && prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) != 0)
        fail(errfd, PYSLIRP_INIT_STEP_CAPS, errno);
    sigprocmask(SIG_SETMASK, empty, NULL);
    execve(a->path, a->argv, a->envp ? a->envp : environ);
    write_record(errfd, PYSLIRP_INIT_STEP_EXEC, errno);
    _exit(127);
}

static int exit_status(int status)
{
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

static void __attribute__((noreturn)) init_main(const struct pyslirp_init_args *a, int errfd)
{
    sigset_t watched, empty;
    int kept[3], err;
    pid_t cmd;

    /* Ignored signals too: CMD starts as in a fresh container (spawn.c resets fewer). */
    if ((err = reset_handlers(1)) != 0)
        fail(errfd, PYSLIRP_INIT_STEP_SIGNALS, err);
    sigemptyset(&empty);
    sigemptyset(&watched);
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        sigaddset(&watched, forwarded[i]);
    sigaddset(&watched, SIGCHLD);
    /* Blocked signals queue even for a PID 1; sigwaitinfo takes them in order. */
    if (sigprocmask(SIG_SETMASK, &watched, NULL) != 0)
        fail(errfd, PYSLIRP_INIT_STEP_SIGNALS, errno);
    /* If the parent is already gone, the gate reads EOF below. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
        fail(errfd, PYSLIRP_INIT_STEP_SIGNALS, errno);
    kept[0] = a->gate_fd;
    kept[1] = a->stop_fd;
    kept[2] = errfd;
    for (int i = 1; i < 3; i++)  /* sort three */
        for (int j = i; j > 0 && kept[j - 1] > kept[j]; j--) {
            int t = kept[j];

            kept[j] = kept[j - 1];
            kept[j - 1] = t;
        }
    if (keep_only(kept, 3, a->fd_limit) != 0)
        fail(errfd, PYSLIRP_INIT_STEP_FDS, errno);
    /* A group signal for `pyslirp run` must reach CMD once, through the parent's relay. */
    setpgid(0, 0);

    if (read_byte(a->gate_fd) != 0)  /* the id maps are written */
        _exit(125);
    prctl(PR_SET_NAME, "pyslirp-init", 0, 0, 0);
    if (write_file(ACCEPT_DAD, "0", 1, 0) != 0 && errno != ENOENT)
        fail(errfd, PYSLIRP_INIT_STEP_ACCEPT_DAD, errno);
    build_view(a, errfd);
    write_record(errfd, PYSLIRP_INIT_PREPARED, 0);

    if (read_byte(a->gate_fd) != 0)  /* the network is up */
        _exit(125);
    /* Not ptrace-able by CMD, root in the same user namespace. Only now: it makes /proc/PID
     * root's, and the helpers have opened our namespaces through it. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (a->ipv6_deadline_ms > 0 && access("/proc/sys/net/ipv6", F_OK) == 0 &&
        wait_ipv6(a->ipv6_deadline_ms) != 0)
        fail(errfd, PYSLIRP_INIT_STEP_IPV6, errno);

    cmd = raw_clone(0, NULL);
    if (cmd < 0)
        fail(errfd, PYSLIRP_INIT_STEP_FORK, errno);
    if (cmd == 0)
        exec_cmd(a, errfd, &empty);
    close(errfd);  /* CMD's copy closes at exec: EOF tells the parent CMD runs */
    close(a->gate_fd);

    for (;;) {
        siginfo_t info;
        int status;
        pid_t pid;

        if (sigwaitinfo(&watched, &info) < 0)
            continue;
        if (info.si_signo != SIGCHLD) {
            /* Only relayed signals: what reached us directly (a terminal's or a group's
             * signal) reached CMD, in our process group, directly too. */
            if (info.si_code != SI_QUEUE || info.si_value.sival_int != RELAY_COOKIE)
                continue;
            if (info.si_signo == SIGCONT)  /* its whole job was stopped, not CMD alone */
                kill(0, SIGCONT);
            kill(cmd, info.si_signo);
            continue;
        }
        while ((pid = waitpid(-1, &status, WNOHANG | WUNTRACED)) > 0) {
            if (pid != cmd)
                continue;
            if (WIFSTOPPED(status))  /* Ctrl-Z: the parent stops its own job in turn */
                write(a->stop_fd, "s", 1);
            else
                _exit(exit_status(status));
        }
    }
}

int pyslirp_init_start(const struct pyslirp_init_args *args, struct pyslirp_slot *slot)
{
    sigset_t all, saved_mask;
    int errpipe[2], pidfd = -1, err;
    int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    pid_t pid;

    slot->step = PYSLIRP_INIT_PREPARED;
    slot->err = 0;
    if (slot->pid != 0)
        return fail_parent(slot, PYSLIRP_INIT_STEP_CLONE, EBUSY);
    /* What must exist for the child to be owned is made before it exists. */
    if ((err = pyslirp_reaper_start()) != 0)
        return fail_parent(slot, PYSLIRP_INIT_STEP_REAPER, err);
    if (pipe2(errpipe, O_CLOEXEC) != 0)
        return fail_parent(slot, PYSLIRP_INIT_STEP_PIPE, errno);
    /* No parent handler may run in the child before it resets them. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved_mask);
    /* We write the child's id maps through /proc/PID, which is root's unless the child is
     * dumpable; it inherits our flag, off in a process that changed its uid. */
    if (dumpable == 0)
        prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    pid = raw_clone((uint64_t)args->clone_flags | CLONE_PIDFD, &pidfd);
    if (pid == 0) {
        close(errpipe[0]);
        init_main(args, errpipe[1]);
    }
    err = pid < 0 ? errno : 0;
    if (dumpable == 0)
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    pthread_sigmask(SIG_SETMASK, &saved_mask, NULL);
    close(errpipe[1]);
    if (pid < 0) {
        close(errpipe[0]);
        return fail_parent(slot, PYSLIRP_INIT_STEP_CLONE, err);
    }
    /* The child runs: the slot owns it and the read end of its error pipe. */
    slot->pid = pid;
    slot->pidfd = pidfd;
    slot->owner = getpid();
    slot->ready_fd = errpipe[0];
    if ((err = pyslirp_watch(slot)) != 0)
        return fail_parent(slot, PYSLIRP_INIT_STEP_REAPER, err);
    return 0;
}

int pyslirp_init_relay(int pidfd, int sig)
{
    siginfo_t info;

    memset(&info, 0, sizeof info);
    info.si_signo = sig;
    info.si_code = SI_QUEUE;
    info.si_pid = getpid();
    info.si_uid = getuid();
    info.si_value.sival_int = RELAY_COOKIE;
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, &info, 0);
}
