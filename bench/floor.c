/*
 * The floor pyslirp is measured against: the fewest syscalls that do the same job.
 *
 *   floor [-m MiB] spawn N [full]
 *       N x clone(CLONE_VM|CLONE_VFORK) + execve /bin/true + waitpid. "full" also does
 *       what pyslirp.spawn does for setup(): fds 3/4, setpgid, pdeathsig, private mounts.
 *   floor [-m MiB] [-6] [-x] [-a [-T]] [-k] [-R BIN -J JSON -P PORTS] ready NETNS,... -- ARGV...
 *       For each netns: slirp4netns ARGV (@NETNS@ replaced) in a private mount namespace,
 *       ready pipe at fd 3, exit pipe at fd 4; time until the ready byte.
 *       -6: accept_dad=0 in the netns first (restored after), and also wait until tap0 has
 *           a global, non-tentative IPv6 address (netlink event, subscribed untimed).
 *       -x: the netns is not one: time until EOF on the ready pipe or the pidfd is readable.
 *       -a: start all at once, then wait for every ready byte (latency from the common
 *           start); a last line "wall NS" is the time until the last was ready.
 *       -T: with -a, time the teardown instead: SIGTERM to all, then reap all (one line).
 *       -R/-J/-P: then rootlessport BIN with JSON (@NETNS@, @PORT@ replaced) on stdin, exit
 *           pipe at fd 3, ready pipe at fd 4; time until its ready byte too.
 *       -k: the helper has no exit pipe (pasta: its pid file is /dev/fd/3, the ready pipe):
 *           stop it with SIGTERM.
 *
 *   floor [-m MiB] serve
 *       Runs such commands read from stdin, one a line, each answered by "end STATUS".
 *
 * Prints one line per iteration: nanoseconds. -m touches that much memory first (once), so
 * the parent's size matches the Python process it is compared with.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

#define STACK_SIZE (64 * 1024)
#define MAX_ARGS 64
#define ACCEPT_DAD "/proc/sys/net/ipv6/conf/default/accept_dad"

extern char **environ;

struct child {
    const char *path;  /* what to exec; argv[0] is what the child is told it is */
    char *const *argv;
    int fds[5];        /* fds[i]: the parent fd that becomes child fd i; -1: leave alone */
    int full;          /* setpgid + pdeathsig */
    int private_mounts;
    volatile int err;  /* CLONE_VM: the child reports exec failure through memory */
};

static char stack[STACK_SIZE] __attribute__((aligned(16)));
static int devnull;  /* the helpers' stdin/stdout/stderr, as little as a log can cost */

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* CPU time of this process (every thread), for the "cpu" lines of setup samples. */
static int64_t cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int child_main(void *arg)
{
    struct child *c = arg;
    if (c->full && (setpgid(0, 0) != 0 || prctl(PR_SET_PDEATHSIG, SIGKILL) != 0))
        goto fail;
    if (c->private_mounts &&
        (unshare(CLONE_NEWNS) != 0 || mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0))
        goto fail;
    /* Sources are all above 4 (see main), so no dup2 clobbers another source. */
    for (int i = 0; i < 5; i++)
        if (c->fds[i] >= 0 && dup2(c->fds[i], i) < 0)
            goto fail;
    execve(c->path, c->argv, environ);
fail:
    c->err = errno;
    _exit(127);
}

/* Start c->argv; return its pid (the pidfd in *pidfd), or exit on failure. */
static pid_t start(struct child *c, int *pidfd)
{
    pid_t pid;

    c->err = 0;
    pid = clone(child_main, stack + sizeof stack, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD,
                c, pidfd);
    if (pid < 0)
        die("clone");
    if (c->err) {
        errno = c->err;
        die(c->path);
    }
    return pid;
}

static void reap(pid_t pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* Touch mib MiB in 4 KiB pages (no THP), as a big Python heap would be. */
static void touch(long mib)
{
    size_t size = (size_t)mib << 20;
    char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (mem == MAP_FAILED || madvise(mem, size, MADV_NOHUGEPAGE) != 0)
        die("mmap");
    for (size_t off = 0; off < size; off += 4096)
        mem[off] = 1;
}

/* -F: flush every sample as it is taken, waking the reader between iterations (the
 * floor before issue 14, kept to show what buffering changed). */
static int flush_each;

static void sample(int64_t ns)
{
    printf("%lld\n", (long long)ns);
    if (flush_each)
        fflush(stdout);
}

static void spawn_loop(long n, int full)
{
    char *argv[] = {"/bin/true", NULL};
    struct child c = {
        .path = argv[0], .argv = argv, .fds = {-1, -1, -1, -1, -1}, .full = full, .private_mounts = full,
    };
    int p[2], pidfd;

    /* A pipe (above fd 4, see main) stands in for setup's ready and exit pipes. */
    if (pipe2(p, O_CLOEXEC) != 0)
        die("pipe");
    if (full) {
        c.fds[3] = p[0];
        c.fds[4] = p[1];
    }
    for (long i = 0; i < n; i++) {
        int64_t t0 = now_ns();
        pid_t pid = start(&c, &pidfd);

        reap(pid);
        sample(now_ns() - t0);
        close(pidfd);
    }
}

/* Run f(arg) with this (single-threaded) process in the network namespace nsfd. */
static void in_netns(int nsfd, int self, void (*f)(void *), void *arg)
{
    if (setns(nsfd, CLONE_NEWNET) != 0)
        die("setns");
    f(arg);
    if (setns(self, CLONE_NEWNET) != 0)
        die("setns back");
}

static void open_netlink(void *arg)
{
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_IPV6_IFADDR};
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);

    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        die("netlink");
    *(int *)arg = fd;
}

struct dad {
    char old[16];
    const char *value;
};

static void swap_dad(void *arg)
{
    struct dad *d = arg;
    int fd = open(ACCEPT_DAD, O_RDWR | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        die(ACCEPT_DAD);
    n = read(fd, d->old, sizeof d->old - 1);
    d->old[n > 0 ? n : 0] = 0;
    if (pwrite(fd, d->value, strlen(d->value), 0) < 0)
        die(ACCEPT_DAD);
    close(fd);
}

/* Block until netlink reports a global IPv6 address that is not tentative. */
static void wait_global_v6(int nl)
{
    char buf[16384] __attribute__((aligned(NLMSG_ALIGNTO)));

    for (;;) {
        ssize_t n = recv(nl, buf, sizeof buf, 0);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("netlink recv");
        }
        for (struct nlmsghdr *h = (void *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            struct ifaddrmsg *ifa = NLMSG_DATA(h);
            uint32_t flags;
            int len;

            if (h->nlmsg_type != RTM_NEWADDR || ifa->ifa_family != AF_INET6 ||
                ifa->ifa_scope != RT_SCOPE_UNIVERSE)
                continue;
            flags = ifa->ifa_flags;
            len = IFA_PAYLOAD(h);
            for (struct rtattr *a = IFA_RTA(ifa); RTA_OK(a, len); a = RTA_NEXT(a, len))
                if (a->rta_type == IFA_FLAGS)
                    flags = *(uint32_t *)RTA_DATA(a);
            if (!(flags & IFA_F_TENTATIVE))
                return;
        }
    }
}

/* A malloc'd copy of tmpl with its first key replaced by value. */
static char *subst(const char *tmpl, const char *key, const char *value)
{
    const char *at = strstr(tmpl, key);
    char *out;

    if (at == NULL)
        return strdup(tmpl);
    if (asprintf(&out, "%.*s%s%s", (int)(at - tmpl), tmpl, value, at + strlen(key)) < 0)
        die("asprintf");
    return out;
}

struct ready_opts {
    int ipv6, expect_fail, all_at_once, sigterm, teardown;
    const char *rlk_bin, *rlk_json;
    char *ports;
    char **argv;
    int argc;
};

/* Wait until fd is readable or the child's pidfd is; return the fd's byte count (0: EOF). */
static ssize_t wait_byte(int fd, int pidfd)
{
    struct pollfd pfd[2] = {{.fd = fd, .events = POLLIN}, {.fd = pidfd, .events = POLLIN}};
    char byte;

    while (poll(pfd, 2, -1) < 0)
        if (errno != EINTR)
            die("poll");
    if (!pfd[0].revents)
        return 0;
    return read(fd, &byte, 1);
}

static void ready_one(const struct ready_opts *o, const char *netns, const char *port)
{
    char *argv[MAX_ARGS + 1];
    int ready[2], exit_p[2], pidfd, nl = -1, nsfd = -1, self = -1;
    struct dad dad = {.value = "0"};
    struct child c = {.argv = argv, .private_mounts = 1};
    pid_t pid, rlk = -1;
    int rlk_exit = -1;
    int64_t t0, c0;
    ssize_t got;

    for (int i = 0; i < o->argc; i++)
        argv[i] = subst(o->argv[i], "@NETNS@", netns);
    argv[o->argc] = NULL;
    c.path = argv[0];
    if (o->ipv6) {
        nsfd = open(netns, O_RDONLY | O_CLOEXEC);
        self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (nsfd < 0 || self < 0)
            die(netns);
        in_netns(nsfd, self, open_netlink, &nl);
    }
    /* Both pipes land above fd 4, so the child's dup2s cannot clobber them. */
    if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(exit_p, O_CLOEXEC) != 0)
        die("pipe");

    c0 = cpu_ns();
    t0 = now_ns();
    if (o->ipv6)
        in_netns(nsfd, self, swap_dad, &dad);
    c.fds[0] = c.fds[1] = c.fds[2] = devnull;
    c.fds[3] = ready[1];
    c.fds[4] = exit_p[0];
    pid = start(&c, &pidfd);
    close(ready[1]);
    got = wait_byte(ready[0], pidfd);
    if (o->expect_fail) {
        if (got > 0) {
            fprintf(stderr, "floor: %s became ready, expected a failure\n", netns);
            exit(1);
        }
    } else if (got != 1) {
        fprintf(stderr, "floor: slirp4netns for %s failed before ready\n", netns);
        exit(1);
    }
    if (o->ipv6) {
        dad.value = strdup(dad.old);
        in_netns(nsfd, self, swap_dad, &dad);
        wait_global_v6(nl);
    }
    if (o->rlk_bin) {
        char *json = subst(o->rlk_json, "@NETNS@", netns);
        char *rargv[] = {"rootlessport", NULL};
        struct child r = {.path = o->rlk_bin, .argv = rargv};
        int rready[2], rexit[2], rpidfd;
        int in = memfd_create("rootlessport-config", MFD_CLOEXEC);
        char *full = subst(json, "@PORT@", port);

        if (in < 0 || write(in, full, strlen(full)) < 0 || lseek(in, 0, SEEK_SET) != 0 ||
            pipe2(rready, O_CLOEXEC) != 0 || pipe2(rexit, O_CLOEXEC) != 0)
            die("rootlessport setup");
        r.fds[0] = in;
        r.fds[1] = r.fds[2] = devnull;
        r.fds[3] = rexit[0];
        r.fds[4] = rready[1];
        rlk = start(&r, &rpidfd);
        close(in);
        close(rready[1]);
        close(rexit[0]);
        if (wait_byte(rready[0], rpidfd) != 1) {
            fprintf(stderr, "floor: rootlessport for %s failed before ready\n", netns);
            exit(1);
        }
        close(rready[0]);
        close(rpidfd);
        rlk_exit = rexit[1];
        free(full);
        free(json);
    }
    sample(now_ns() - t0);
    printf("cpu %lld\n", (long long)(cpu_ns() - c0));

    /* Untimed teardown: EOF on the exit pipes stops both helpers. */
    if (rlk_exit >= 0) {
        close(rlk_exit);
        reap(rlk);
    }
    close(exit_p[1]);
    if (o->sigterm)
        kill(pid, SIGTERM);
    reap(pid);
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) /* orphans, e.g. rootlessport-child */
        ;
    close(exit_p[0]);
    close(ready[0]);
    close(pidfd);
    if (o->ipv6) {
        close(nl);
        close(nsfd);
        close(self);
    }
    for (int i = 0; i < o->argc; i++)
        free(argv[i]);
}

/* Signal every helper, then reap every one (and orphans); print how long it took. */
static void teardown_all(const pid_t *pids, int n)
{
    int64_t t0 = now_ns();

    for (int i = 0; i < n; i++)
        kill(pids[i], SIGTERM);
    for (int i = 0; i < n; i++)
        reap(pids[i]);
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    sample(now_ns() - t0);
}

/* Start slirp4netns for every netns at once, then wait for all ready bytes. Prints each
 * one's latency from the common start, then "wall NS" for the whole batch (-T: only the
 * teardown's time). */
static void ready_all(const struct ready_opts *o, char *netns_list)
{
    enum { MAX_NETNS = 1024 };
    struct pollfd pfd[MAX_NETNS];
    int exit_w[MAX_NETNS], exit_r[MAX_NETNS], pidfds[MAX_NETNS], pending, n = 0;
    pid_t pids[MAX_NETNS];
    int64_t done[MAX_NETNS], t0;
    char *netns[MAX_NETNS], *save = NULL;

    for (char *ns = strtok_r(netns_list, ",", &save); ns && n < MAX_NETNS;
         ns = strtok_r(NULL, ",", &save))
        netns[n++] = ns;
    t0 = now_ns();
    for (int i = 0; i < n; i++) {
        char *argv[MAX_ARGS + 1];
        int ready[2], ex[2];
        struct child c = {.argv = argv, .private_mounts = 1};

        for (int a = 0; a < o->argc; a++)
            argv[a] = subst(o->argv[a], "@NETNS@", netns[i]);
        argv[o->argc] = NULL;
        c.path = argv[0];
        if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(ex, O_CLOEXEC) != 0)
            die("pipe");
        c.fds[0] = c.fds[1] = c.fds[2] = devnull;
        c.fds[3] = ready[1];
        c.fds[4] = ex[0];
        pids[i] = start(&c, &pidfds[i]);
        close(ready[1]);
        pfd[i] = (struct pollfd){.fd = ready[0], .events = POLLIN};
        exit_r[i] = ex[0];
        exit_w[i] = ex[1];
        for (int a = 0; a < o->argc; a++)
            free(argv[a]);
    }
    for (pending = n; pending > 0;) {
        if (poll(pfd, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        for (int i = 0; i < n; i++) {
            char byte;

            if (pfd[i].fd < 0 || !pfd[i].revents)
                continue;
            if (read(pfd[i].fd, &byte, 1) != 1) {
                fprintf(stderr, "floor: slirp4netns for %s failed before ready\n", netns[i]);
                exit(1);
            }
            done[i] = now_ns();
            close(pfd[i].fd);
            pfd[i].fd = -1;
            pending--;
        }
    }
    if (o->teardown) {
        teardown_all(pids, n);
    } else {
        int64_t last = t0;

        for (int i = 0; i < n; i++) {
            sample(done[i] - t0);
            last = done[i] > last ? done[i] : last;
        }
        printf("wall %lld\n", (long long)(last - t0));
    }
    for (int i = 0; i < n; i++)
        close(exit_w[i]);
    for (int i = 0; i < n; i++) {
        if (!o->teardown)
            reap(pids[i]);
        close(exit_r[i]);
        close(pidfds[i]);
    }
}

static void ready_loop(struct ready_opts *o, char *netns_list)
{
    char *save_ns = NULL, *save_port = NULL;
    char *port = o->ports ? strtok_r(o->ports, ",", &save_port) : NULL;

    for (char *ns = strtok_r(netns_list, ",", &save_ns); ns; ns = strtok_r(NULL, ",", &save_ns)) {
        if (o->rlk_bin && port == NULL) {
            fprintf(stderr, "floor: fewer ports than namespaces\n");
            exit(1);
        }
        ready_one(o, ns, port);
        if (port)
            port = strtok_r(NULL, ",", &save_port);
    }
}

static int usage(void)
{
    fprintf(stderr, "usage: floor [-m MiB] spawn N [full]\n"
                    "       floor [-m MiB] [-6] [-x] [-a [-T]] [-k] [-R BIN -J JSON -P PORTS] ready NETNS,..."
                    " -- ARGV...\n"
                    "       floor [-m MiB] serve  (then one such command a line on stdin)\n");
    return 2;
}

/* One command (argv without the program name); 0 on success. */
static int run(int argc, char **argv, long *mib)
{
    struct ready_opts o = {0};
    int opt;

    optind = 0; /* glibc: start over, a new argv each call */
    while ((opt = getopt(argc, argv, "+m:6xakTFR:J:P:")) != -1) {
        switch (opt) {
        case 'm': *mib = strtol(optarg, NULL, 10); break;
        case '6': o.ipv6 = 1; break;
        case 'x': o.expect_fail = 1; break;
        case 'a': o.all_at_once = 1; break;
        case 'k': o.sigterm = 1; break;
        case 'T': o.teardown = 1; break;
        case 'R': o.rlk_bin = optarg; break;
        case 'J': o.rlk_json = optarg; break;
        case 'P': o.ports = optarg; break;
        case 'F': flush_each = 1; break;
        default: return usage();
        }
    }
    if (optind >= argc)
        return usage();
    if (*mib > 0) {
        touch(*mib);
        *mib = 0;
    }
    if (strcmp(argv[optind], "spawn") == 0 && optind + 1 < argc) {
        spawn_loop(strtol(argv[optind + 1], NULL, 10),
                   optind + 2 < argc && strcmp(argv[optind + 2], "full") == 0);
        return 0;
    }
    if (strcmp(argv[optind], "ready") == 0 && optind + 2 < argc &&
        strcmp(argv[optind + 2], "--") == 0) {
        o.argv = argv + optind + 3;
        o.argc = argc - optind - 3;
        if (o.argc < 1 || o.argc > MAX_ARGS || (o.rlk_bin && !o.rlk_json))
            return usage();
        if (o.all_at_once)
            ready_all(&o, argv[optind + 1]);
        else
            ready_loop(&o, argv[optind + 1]);
        return 0;
    }
    if (strcmp(argv[optind], "serve") == 0)
        return -1;
    return usage();
}

/* Commands from stdin, one a line, words split on blanks; each answered by "end". */
static int serve(long *mib)
{
    char line[65536];

    while (fgets(line, sizeof line, stdin)) {
        char *args[MAX_ARGS * 2 + 2] = {"floor"}, *save = NULL;
        int n = 1, status;

        for (char *w = strtok_r(line, " \t\n", &save); w && n < MAX_ARGS * 2 + 1;
             w = strtok_r(NULL, " \t\n", &save))
            args[n++] = w;
        args[n] = NULL;
        flush_each = 0;
        status = run(n, args, mib);
        printf("end %d\n", status);
        fflush(stdout); /* samples are buffered until the command ends */
    }
    return 0;
}

int main(int argc, char **argv)
{
    long mib = 0;
    int status;

    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    /* Keep fds 0-4 taken so every pipe lands above the child's targets. */
    for (int fd = 3; fd <= 4; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDONLY | O_CLOEXEC) != fd)
            die("reserve fds");
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0)
        die("/dev/null");
    /* Orphaned grandchildren (rootlessport-child) come back to us to be reaped. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        die("PR_SET_CHILD_SUBREAPER");
    status = run(argc, argv, &mib);
    return status < 0 ? serve(&mib) : status;
}
