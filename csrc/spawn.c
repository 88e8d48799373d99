/*
 * The child side of pyslirp.spawn: one straight sequence of set-up steps between
 * clone(CLONE_VM|CLONE_VFORK) and execve. The child shares the parent's memory, so it
 * runs only async-signal-safe code: syscalls and their thin libc wrappers, no malloc,
 * no stdio. A failing step writes a {step, errno} record into the parent's memory and
 * exits; the parent, resumed once the child has exec'd or exited (CLONE_VFORK), reads it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "mntns.h"
#include "spawn.h"

#define CHILD_STACK_SIZE (64 * 1024)
#define HIGH_FDS 4096 /* where move_high puts long-lived fds, at most */
#define LOW_FDS 64    /* a long-lived fd below this stays where it is */
#define MADE_FDS 7 /* ready, exit, stdin, stdout, stderr, netns, userns */
/* Mapped sources the child opens itself (see open_paths), beside PYSLIRP_DEVNULL. */
#define HANDED_NETNS (-3)
#define HANDED_USERNS (-4)
#ifndef CLONE_CLEAR_SIGHAND
#define CLONE_CLEAR_SIGHAND 0x100000000ULL
#endif

extern char **environ;

struct child_context {
    const struct pyslirp_spawn_args *args;
    const int *fd_src; /* the caller's fds and the ones made for the child, by target */
    const int *fd_dst;
    int nfds;
    volatile struct error_record *record; /* the parent's: written before a failed exit */
    int fd_limit;
    pid_t parent_pid;
    int fd_cut; /* every fd the child needs is below this */
    int caught_cleared; /* cloned with CLONE_CLEAR_SIGHAND: no handler of the parent's here */
};

/* Signals a spawned program starts with at their default even when its caller ignores
 * them: those its owner stops it with, and those that change how it runs (Python ignores
 * SIGPIPE and SIGXFSZ; an ignored SIGCHLD would reap its children for it). Any other
 * signal the caller ignores stays ignored, as exec keeps it (posix_spawn and
 * subprocess do the same). */
static const int default_signals[] = {SIGHUP, SIGINT,  SIGQUIT, SIGPIPE,
                                      SIGTERM, SIGCHLD, SIGXFSZ};

/* Put every caught signal (unless the clone already did) and default_signals back to
 * their default; 0, or the errno of the sigaction that failed. */
static int reset_signals(int caught_cleared)
{
    static const struct sigaction default_action = {.sa_handler = SIG_DFL};
    int err;

    if (!caught_cleared && (err = reset_handlers(0)) != 0)
        return err;
    for (size_t i = 0; i < sizeof default_signals / sizeof default_signals[0]; i++)
        if (sigaction(default_signals[i], &default_action, NULL) != 0)
            return errno;
    return 0;
}

static void __attribute__((noreturn)) fail(const struct child_context *ctx, int step, int err)
{
    ctx->record->step = step;
    ctx->record->err = err;
    _exit(127);
}

static int is_target(const struct child_context *c, int fd)
{
    for (int i = 0; i < c->nfds; i++)
        if (c->fd_dst[i] == fd)
            return 1;
    return 0;
}

/* Close (or mark close-on-exec) fds first..last; close_range where the kernel has it. */
static int close_fds(int first, int last, int limit, unsigned int flags)
{
    if (first > last)
        return 0;
    if (syscall(SYS_close_range, (unsigned int)first, (unsigned int)last, flags) == 0)
        return 0;
    if (errno != ENOSYS && errno != EINVAL)
        return -1;
    for (int fd = first; fd <= last && fd < limit; fd++) {
        if (flags & CLOSE_RANGE_CLOEXEC)
            fcntl(fd, F_SETFD, FD_CLOEXEC);
        else
            close(fd);
    }
    return 0;
}

/* The fds the child opens by path itself, in the caller's mount namespace and with its
 * credentials (before any setns), so that the caller does not open and close them around
 * the clone. */
struct opened {
    int devnull, netns, userns, cwd;
};

/* Open what ``a`` names by path and the cwd (to come back to after joining a mount
 * namespace); exits through fail() with the step that needed it. A namespace path is
 * opened O_NONBLOCK: a FIFO there must not hang the spawn, whose caller waits in vfork
 * where no signal reaches it (setns then refuses it; a program handed it, opening it
 * again as /proc/self/fd/N, waits as it would have). */
static void open_paths(const struct child_context *ctx, struct opened *o)
{
    const struct pyslirp_spawn_args *a = ctx->args;
    const int ns_flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;

    for (int i = 0; i < ctx->nfds && o->devnull < 0; i++)
        if (ctx->fd_src[i] == PYSLIRP_DEVNULL &&
            (o->devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
            fail(ctx, PYSLIRP_STEP_FDS, errno);
    if (a->userns_path && (o->userns = open(a->userns_path, ns_flags)) < 0)
        fail(ctx, PYSLIRP_STEP_SETNS_USER, errno);
    if (a->netns_path && (o->netns = open(a->netns_path, ns_flags)) < 0)
        fail(ctx, PYSLIRP_STEP_SETNS_NET, errno);
    if (a->mntns_fd >= 0 && (o->cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
        fail(ctx, PYSLIRP_STEP_SETNS_MOUNTS, errno);
}

/* The fd a mapped source stands for in the child. */
static int source_fd(const struct opened *o, int src)
{
    switch (src) {
    case PYSLIRP_DEVNULL:
        return o->devnull;
    case HANDED_NETNS:
        return o->netns;
    case HANDED_USERNS:
        return o->userns;
    default:
        return src;
    }
}

static int child_main(void *arg)
{
    const struct child_context *ctx = arg;
    const struct pyslirp_spawn_args *a = ctx->args;
    int nfds = ctx->nfds;
    int top = nfds ? ctx->fd_dst[nfds - 1] : 2;
    int src[nfds > 0 ? nfds : 1];
    struct opened o = {-1, a->netns_fd, a->userns_fd, -1};
    sigset_t empty;
    int err;

    if (top < 2)
        top = 2;
    /* The fd table is still the parent's (CLONE_FILES: nothing copied at clone). Take a
     * copy of only the fds below fd_cut, all this child needs, before touching any: the
     * parent's long-lived fds (kept high, see move_high) are neither copied nor, at exec,
     * closed one by one. Before Linux 5.9, a copy of the whole table. */
    if (syscall(SYS_close_range, (unsigned int)ctx->fd_cut, ~0U, CLOSE_RANGE_UNSHARE) != 0 &&
        unshare(CLONE_FILES) != 0)
        fail(ctx, PYSLIRP_STEP_FDS, errno);

    if ((err = reset_signals(ctx->caught_cleared)) != 0)
        fail(ctx, PYSLIRP_STEP_SIGNALS, err);
    open_paths(ctx, &o);

    if (a->setpgid && setpgid(0, 0) != 0)
        fail(ctx, PYSLIRP_STEP_SETPGID, errno);
    if (a->new_namespaces && unshare(a->new_namespaces) != 0)
        fail(ctx, PYSLIRP_STEP_NEW_NAMESPACES, errno);
    /* The user namespace first: it grants the capabilities the next steps need. A
     * namespace handed over (mapped onto its child fd) is not joined. */
    if (a->userns_to_fd < 0 && o.userns >= 0 && setns(o.userns, CLONE_NEWUSER) != 0)
        fail(ctx, PYSLIRP_STEP_SETNS_USER, errno);
    if (a->netns_to_fd < 0 && o.netns >= 0 && setns(o.netns, CLONE_NEWNET) != 0)
        fail(ctx, PYSLIRP_STEP_SETNS_NET, errno);
    /* setns to a mount namespace moves the cwd to its root: come back to the caller's. */
    if (a->mntns_fd >= 0 && (setns(a->mntns_fd, CLONE_NEWNS) != 0 || fchdir(o.cwd) != 0))
        fail(ctx, PYSLIRP_STEP_SETNS_MOUNTS, errno);
    if (a->private_mounts) {
        if (unshare(CLONE_NEWNS) != 0)
            fail(ctx, PYSLIRP_STEP_UNSHARE_MOUNTS, errno);
        /* Without this, unmounts in the new namespace propagate back to the host's. */
        if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
            fail(ctx, PYSLIRP_STEP_PRIVATE_MOUNTS, errno);
    }
    if (a->umask >= 0)
        umask((mode_t)a->umask);
    if (a->pdeathsig) {
        if (prctl(PR_SET_PDEATHSIG, a->pdeathsig, 0, 0, 0) != 0)
            fail(ctx, PYSLIRP_STEP_PDEATHSIG, errno);
        /* The parent may have died before prctl: deliver the signal now (it stays
         * pending, blocked, until the mask is emptied before exec). */
        if (getppid() != ctx->parent_pid)
            kill(getpid(), a->pdeathsig);
    }

    /* Pass 1: move every source a dup2 could clobber above all targets. */
    for (int i = 0; i < nfds; i++) {
        src[i] = source_fd(&o, ctx->fd_src[i]);
        if (src[i] != ctx->fd_dst[i] && src[i] <= top) {
            src[i] = fcntl(src[i], F_DUPFD_CLOEXEC, top + 1);
            if (src[i] < 0)
                fail(ctx, PYSLIRP_STEP_FDS, errno);
        }
    }
    /* Pass 2: put each in place; an fd already in place only loses close-on-exec. */
    for (int i = 0; i < nfds; i++) {
        if (src[i] == ctx->fd_dst[i]) {
            int flags = fcntl(src[i], F_GETFD);

            if (flags < 0 || fcntl(src[i], F_SETFD, flags & ~FD_CLOEXEC) != 0)
                fail(ctx, PYSLIRP_STEP_FDS, errno);
        } else if (dup2(src[i], ctx->fd_dst[i]) < 0) {
            fail(ctx, PYSLIRP_STEP_FDS, errno);
        }
    }

    /* Only 0-2 and the targets survive exec: close the gaps, mark the rest close-on-exec. */
    for (int fd = 3, gap = 3; fd <= top + 1; fd++) {
        if (fd <= top && !is_target(ctx, fd))
            continue;
        if (close_fds(gap, fd - 1, ctx->fd_limit, 0) != 0)
            fail(ctx, PYSLIRP_STEP_CLOSE_FDS, errno);
        gap = fd + 1;
    }
    if (close_fds(top + 1, ~0U >> 1, ctx->fd_limit, CLOSE_RANGE_CLOEXEC) != 0)
        fail(ctx, PYSLIRP_STEP_CLOSE_FDS, errno);

    sigemptyset(&empty);
    if (sigprocmask(SIG_SETMASK, &empty, NULL) != 0)
        fail(ctx, PYSLIRP_STEP_SIGMASK, errno);

    execve(a->path, a->argv, a->envp ? a->envp : environ);
    fail(ctx, PYSLIRP_STEP_EXEC, errno);
}

#define CLONE_FLAGS (CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_PIDFD)

#if defined(__x86_64__)
struct clone_args_v0 {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

/* clone3(ca) with fn(arg) run in the child on ca's stack, then exit(its result) (it
 * execs or _exits first). glibc exports no clone3 wrapper: the child must never return
 * through this frame, whose stack it does not own. The pid, or -errno. */
static long clone3_run(const struct clone_args_v0 *ca, int (*fn)(void *), void *arg)
{
    register int (*r12)(void *) __asm__("r12") = fn;
    register void *r13 __asm__("r13") = arg;
    long ret;

    __asm__ volatile("syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "xor %%ebp, %%ebp\n\t" /* the child: the outermost frame */
                     "mov %%r13, %%rdi\n\t"
                     "call *%%r12\n\t"
                     "mov %%eax, %%edi\n\t"
                     "mov %[exit], %%eax\n\t"
                     "syscall\n\t"
                     "hlt\n"
                     "1:"
                     : "=a"(ret)
                     : "a"((long)SYS_clone3), "D"(ca), "S"(sizeof *ca), "r"(r12), "r"(r13),
                       [exit] "i"(SYS_exit)
                     : "rcx", "r11", "memory");
    return ret;
}
#endif

/* Clone child_main(ctx) on ``stack``. Where the kernel can (Linux 5.5, x86-64, clone3
 * not filtered out), with CLONE_CLEAR_SIGHAND: the child starts with no handler of ours,
 * which saves it a sigaction query per signal (64 syscalls). */
static pid_t clone_child(void *stack, struct child_context *ctx, int *pidfd)
{
#if defined(__x86_64__)
    static int no_clone3; /* a race only makes a second thread find out too */

    if (!no_clone3) {
        struct clone_args_v0 ca = {
            .flags = CLONE_FLAGS | CLONE_CLEAR_SIGHAND,
            .pidfd = (uint64_t)(uintptr_t)pidfd,
            .exit_signal = SIGCHLD,
            .stack = (uint64_t)(uintptr_t)stack,
            .stack_size = CHILD_STACK_SIZE,
        };
        long pid;

        ctx->caught_cleared = 1;
        pid = clone3_run(&ca, child_main, ctx);
        if (pid >= 0)
            return (pid_t)pid;
        /* Before 5.3 / before 5.5 / a seccomp filter (container runtimes') refusing it. */
        if (pid != -ENOSYS && pid != -EINVAL && pid != -EPERM) {
            errno = (int)-pid;
            return -1;
        }
        no_clone3 = 1;
    }
#endif
    ctx->caught_cleared = 0;
    return clone(child_main, (char *)stack + CHILD_STACK_SIZE, CLONE_FLAGS | SIGCHLD, ctx, pidfd);
}

/* The child's stack: one mmap'd region per spawning thread, kept for its next spawn and
 * unmapped when the thread exits, so the child's stack never depends on the caller's. */
static pthread_key_t stack_key;
static pthread_once_t stack_once = PTHREAD_ONCE_INIT;
static int stack_key_err;

static void unmap_stack(void *stack) { munmap(stack, CHILD_STACK_SIZE); }
static void make_stack_key(void) { stack_key_err = pthread_key_create(&stack_key, unmap_stack); }

static void *thread_stack(void)
{
    void *stack;

    pthread_once(&stack_once, make_stack_key);
    if (stack_key_err != 0) {
        errno = stack_key_err;
        return NULL;
    }
    stack = pthread_getspecific(stack_key);
    if (stack != NULL)
        return stack;
    stack = mmap(NULL, CHILD_STACK_SIZE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED)
        return NULL;
    if ((errno = pthread_setspecific(stack_key, stack)) != 0) {
        munmap(stack, CHILD_STACK_SIZE);
        return NULL;
    }
    return stack;
}

/* The fds a spawn makes: the parent keeps one end in the slot, the child gets the other;
 * the rest are closed once the child runs. */
struct made_fds {
    int ready[2], stdin_fd;
};

/* The owner pipe: one exit pipe for the whole process. Every child spawned with an
 * exit_fd gets its read end there; the write end stays open here until this process
 * dies, however it dies, and the children see EOF and exit then (two fds in all, not
 * one per helper). A forked child closes both: it owns none of its parent's helpers. */
static int owner_pipe[2] = {-1, -1};
static pthread_mutex_t owner_lock = PTHREAD_MUTEX_INITIALIZER;

static int owner_pipe_read_end(void)
{
    int fd;

    pthread_mutex_lock(&owner_lock);
    if (owner_pipe[0] < 0 && pipe2(owner_pipe, O_CLOEXEC) != 0)
        owner_pipe[0] = owner_pipe[1] = -1;
    fd = owner_pipe[0];
    pthread_mutex_unlock(&owner_lock);
    return fd;
}

void pyslirp_forget_owner_pipe(void)
{
    pthread_mutex_init(&owner_lock, NULL);
    for (int i = 0; i < 2; i++) {
        if (owner_pipe[i] >= 0)
            close(owner_pipe[i]);
        owner_pipe[i] = -1;
    }
}

/* Close what was made (the slot's memfds too, unless slot is NULL). */
static void close_made(struct made_fds *m, struct pyslirp_slot *slot)
{
    int none = -1;
    int *fds[] = {&m->ready[0], &m->ready[1], &m->stdin_fd, slot ? &slot->log_fd : &none,
                  slot ? &slot->out_fd : &none};

    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
}

static int memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

/* Make the pipes and memfds the args ask for; 0 or the failed step (errno set). */
static int make_fds(const struct pyslirp_spawn_args *a, struct made_fds *m,
                    struct pyslirp_slot *slot)
{
    if (a->ready_fd >= 0 && pipe2(m->ready, O_CLOEXEC) != 0)
        return PYSLIRP_STEP_PIPE;
    if (a->exit_fd >= 0 && owner_pipe_read_end() < 0)
        return PYSLIRP_STEP_PIPE;
    if (a->log_fds && (slot->log_fd = memfd("pyslirp-log")) < 0)
        return PYSLIRP_STEP_MEMFD;
    if (a->capture_stdout && (slot->out_fd = memfd("pyslirp-stdout")) < 0)
        return PYSLIRP_STEP_MEMFD;
    if (a->stdin_data != NULL) {
        size_t done = 0;

        if ((m->stdin_fd = memfd("pyslirp-stdin")) < 0)
            return PYSLIRP_STEP_MEMFD;
        while (done < a->stdin_len) {
            ssize_t n = write(m->stdin_fd, a->stdin_data + done, a->stdin_len - done);

            if (n < 0 && errno != EINTR)
                return PYSLIRP_STEP_MEMFD;
            done += n > 0 ? (size_t)n : 0;
        }
        if (lseek(m->stdin_fd, 0, SEEK_SET) != 0)
            return PYSLIRP_STEP_MEMFD;
    }
    return PYSLIRP_STEP_NONE;
}

/* Open the sysctl the args name in their namespace and set it for the child's start,
 * keeping the old value in the slot. Best effort: without it the child still starts
 * (and reports a namespace it cannot use better than we could). */
static void hold_sysctl(const struct pyslirp_spawn_args *a, struct pyslirp_slot *slot)
{
    ssize_t n;
    int fd;

    if (a->sysctl_path == NULL)
        return;
    fd = pyslirp_open_in_netns(a->sysctl_netns, a->sysctl_path, O_RDWR);
    if (fd < 0)
        return;
    n = pread(fd, slot->sysctl_old, sizeof slot->sysctl_old - 1, 0);
    slot->sysctl_old[n > 0 ? n : 0] = '\0';
    while (n > 0 && slot->sysctl_old[n - 1] == '\n')
        slot->sysctl_old[--n] = '\0';
    if (strcmp(slot->sysctl_old, a->sysctl_value) == 0) {
        close(fd); /* already so: nothing to put back */
        return;
    }
    if (pwrite(fd, a->sysctl_value, strlen(a->sysctl_value), 0) < 0) {
        close(fd);
        return;
    }
    slot->sysctl_fd = fd;
}

/* Move ``*fd`` to the upper half of this process's fd range, or above fd HIGH_FDS (best
 * effort): there the fds a slot holds for a helper's life stay out of the way of the ones
 * the next spawn makes for a moment, and its child copies only those (see child_main). */
void pyslirp_move_high(int *fd)
{
    struct rlimit limit;
    int high;

    if (*fd < 0 || getrlimit(RLIMIT_NOFILE, &limit) != 0)
        return;
    /* Not higher: the kernel's fd table grows to the highest fd (1M limits exist). */
    high = limit.rlim_cur / 2 > HIGH_FDS ? HIGH_FDS : (int)(limit.rlim_cur / 2);
    if (*fd >= high)
        return;
    high = fcntl(*fd, F_DUPFD_CLOEXEC, high);
    if (high < 0)
        return; /* no free fd up there: it stays where it is */
    close(*fd);
    *fd = high;
}

/* The lowest fd number above every fd the child needs. */
static int fd_cut(const int *src, int n, const int *more, int n_more)
{
    int cut = 2;

    for (int i = 0; i < n; i++)
        cut = src[i] > cut ? src[i] : cut;
    for (int i = 0; i < n_more; i++)
        cut = more[i] > cut ? more[i] : cut;
    return cut + 1;
}

/* 0 if ``fd`` is open and not hung up (see check_exit_fd), else the errno to report. */
static int check_exit_pipe(const struct pyslirp_spawn_args *a)
{
    struct pollfd pfd = {.fd = -1, .events = POLLIN};

    for (int i = 0; i < a->nfds; i++)
        if (a->fd_dst[i] == a->check_exit_fd)
            pfd.fd = a->fd_src[i];
    if (pfd.fd < 0)
        return EBADF;
    if (poll(&pfd, 1, 0) < 0)
        return errno;
    if (pfd.revents & POLLNVAL)
        return EBADF;
    return pfd.revents & POLLHUP ? EPIPE : 0;
}

/* Insert (src -> dst) into the mapping kept sorted by dst; -1 if dst is taken. */
static int map_fd(int *src, int *dst, int *n, int from, int to)
{
    int i = *n;

    while (i > 0 && dst[i - 1] > to) {
        src[i] = src[i - 1];
        dst[i] = dst[i - 1];
        i--;
    }
    if (i > 0 && dst[i - 1] == to)
        return -1;
    src[i] = from;
    dst[i] = to;
    (*n)++;
    return 0;
}

/* Start a child into ``slot``; 0, or -1 with slot->step/err set and nothing left open. */
static int spawn_into(const struct pyslirp_spawn_args *args, struct pyslirp_slot *slot)
{
    static int fd_limit;
    struct made_fds m = {{-1, -1}, -1};
    int fd_src[args->nfds + MADE_FDS], fd_dst[args->nfds + MADE_FDS], nfds = 0;
    struct child_context ctx = {.args = args, .fd_src = fd_src, .fd_dst = fd_dst,
                                .parent_pid = getpid()};
    volatile struct error_record record = {PYSLIRP_STEP_NONE, 0};
    sigset_t all, saved_mask;
    int pidfd = -1, step, err;
    /* A namespace handed over is mapped onto its child fd (the child does not join it):
     * the caller's fd, or the one the child opens at its path. */
    int handed_netns = args->netns_path ? HANDED_NETNS : args->netns_fd;
    int handed_userns = args->userns_path ? HANDED_USERNS : args->userns_fd;
    void *stack;
    pid_t pid;

    slot->step = PYSLIRP_STEP_NONE;
    slot->err = 0;
    if (slot->pid != 0)
        return fail_parent(slot, PYSLIRP_STEP_CLONE, EBUSY);
    if (args->check_exit_fd >= 0 && (err = check_exit_pipe(args)) != 0)
        return fail_parent(slot, PYSLIRP_STEP_EXIT_PIPE, err);
    /* What must exist for the child to be owned is made before it exists. */
    if ((err = pyslirp_reaper_start()) != 0)
        return fail_parent(slot, PYSLIRP_STEP_REAPER, err);
    if ((stack = thread_stack()) == NULL)
        return fail_parent(slot, PYSLIRP_STEP_STACK, errno);
    if (fd_limit == 0)
        fd_limit = (int)sysconf(_SC_OPEN_MAX);
    ctx.fd_limit = fd_limit;

    if ((step = make_fds(args, &m, slot)) != PYSLIRP_STEP_NONE) {
        err = errno;
        close_made(&m, slot);
        return fail_parent(slot, step, err);
    }
    hold_sysctl(args, slot);
    for (int i = 0; i < args->nfds; i++)
        map_fd(fd_src, fd_dst, &nfds, args->fd_src[i], args->fd_dst[i]);
    if ((args->ready_fd >= 0 && map_fd(fd_src, fd_dst, &nfds, m.ready[1], args->ready_fd)) ||
        (args->exit_fd >= 0 && map_fd(fd_src, fd_dst, &nfds, owner_pipe[0], args->exit_fd)) ||
        (m.stdin_fd >= 0 && map_fd(fd_src, fd_dst, &nfds, m.stdin_fd, 0)) ||
        (args->capture_stdout && map_fd(fd_src, fd_dst, &nfds, slot->out_fd, 1)) ||
        ((args->log_fds & 1) && map_fd(fd_src, fd_dst, &nfds, slot->log_fd, 1)) ||
        ((args->log_fds & 2) && map_fd(fd_src, fd_dst, &nfds, slot->log_fd, 2)) ||
        (args->netns_to_fd >= 0 && handed_netns != -1 &&
         map_fd(fd_src, fd_dst, &nfds, handed_netns, args->netns_to_fd)) ||
        (args->userns_to_fd >= 0 && handed_userns != -1 &&
         map_fd(fd_src, fd_dst, &nfds, handed_userns, args->userns_to_fd))) {
        close_made(&m, slot);
        pyslirp_slot_restore(slot);
        return fail_parent(slot, PYSLIRP_STEP_FDS, EINVAL);
    }
    ctx.nfds = nfds;
    ctx.record = &record;
    {
        int more[] = {args->mntns_fd, args->netns_fd, args->userns_fd};

        ctx.fd_cut = fd_cut(fd_src, nfds, more, sizeof more / sizeof more[0]);
    }

    /* No parent handler may run on the child's stack before it resets them. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved_mask);
    pid = clone_child(stack, &ctx, &pidfd);
    /* A vfork child shares errno with this thread: read it only when no child ran. */
    err = pid < 0 ? errno : 0;
    pthread_sigmask(SIG_SETMASK, &saved_mask, NULL);
    if (pid < 0) {
        close_made(&m, slot);
        pyslirp_slot_restore(slot);
        return fail_parent(slot, PYSLIRP_STEP_CLONE, err);
    }
    if (record.step != PYSLIRP_STEP_NONE) {
        int status;

        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        close(pidfd);
        close_made(&m, slot);
        pyslirp_slot_restore(slot);
        return fail_parent(slot, record.step, record.err);
    }

    /* The child runs: the slot owns it, and the parent's ends of what was made for it. */
    /* Below LOW_FDS they are in the way of nothing: the child copies a few dozen more. */
    if (pidfd >= LOW_FDS)
        pyslirp_move_high(&pidfd);
    if (slot->log_fd >= LOW_FDS)
        pyslirp_move_high(&slot->log_fd);
    if (slot->out_fd >= LOW_FDS)
        pyslirp_move_high(&slot->out_fd);
    slot->pid = pid;
    slot->pidfd = pidfd;
    slot->owner = ctx.parent_pid;
    slot->leads_group = args->setpgid;
    slot->ready_fd = m.ready[0];
    m.ready[0] = -1;
    close_made(&m, NULL); /* the child's ends */
    if ((err = pyslirp_watch(slot)) != 0)
        return fail_parent(slot, PYSLIRP_STEP_REAPER, err);
    return 0;
}

int pyslirp_file_id(const char *path, struct pyslirp_file_id *id)
{
    struct stat st;

    if (stat(path, &st) != 0)
        return -errno;
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    id->mtime_ns = (unsigned long long)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    return 0;
}

int pyslirp_same_file(const char *path, const struct pyslirp_file_id *id)
{
    struct pyslirp_file_id now;

    return pyslirp_file_id(path, &now) == 0 && now.dev == id->dev && now.ino == id->ino &&
           now.mtime_ns == id->mtime_ns;
}

int pyslirp_spawn_each(const struct pyslirp_spawn_args *plan, struct pyslirp_slot *slot,
                       const char *netns, const int *later_src, const char *sysctl_netns,
                       const struct pyslirp_template *template,
                       const struct pyslirp_file_id *exe_id)
{
    struct pyslirp_spawn_args a = *plan;
    int fd_src[plan->nfds > 0 ? plan->nfds : 1];

    if (later_src != NULL) {
        for (int i = 0, k = 0; i < plan->nfds; i++)
            fd_src[i] = plan->fd_src[i] == -1 ? later_src[k++] : plan->fd_src[i];
        a.fd_src = fd_src;
    }
    if (netns != NULL) {
        a.netns_path = netns;
        a.netns_fd = -1;
    }
    if (sysctl_netns != NULL)
        a.sysctl_netns = sysctl_netns;
    /* A plan made earlier must still be right: checked before anything is made. */
    if (exe_id != NULL && !pyslirp_same_file(a.path, exe_id))
        return fail_parent(slot, PYSLIRP_STEP_STALE_EXE, ESTALE);
    if (template != NULL) {
        if (a.template_paths != NULL &&
            !pyslirp_mounts_before(a.template_paths, template->first_mount_id))
            return fail_parent(slot, PYSLIRP_STEP_STALE_MOUNTS, ESTALE);
        a.mntns_fd = template->fd;
    }
    return spawn_into(&a, slot);
}

int pyslirp_adopts_orphans(void)
{
    int subreaper = 0;

    return getpid() == 1 || (prctl(PR_GET_CHILD_SUBREAPER, &subreaper, 0, 0, 0) == 0 && subreaper);
}
