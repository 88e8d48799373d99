/*
 * The child side of pyslirp.spawn: one straight sequence of set-up steps between
 * clone(CLONE_VM|CLONE_VFORK) and execve. The child shares the parent's memory, so it
 * runs only async-signal-safe code: syscalls and their thin libc wrappers, no malloc,
 * no stdio. A failing step leaves through a close-on-exec pipe as a {step, errno} record.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spawn.h"

/* Old headers lack these; the kernel ABI values are fixed. */
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define CHILD_STACK_SIZE (64 * 1024)

extern char **environ;

struct child_context {
    const struct pyslirp_spawn_args *args;
    int errfd;
    pid_t parent_pid;
};

struct error_record {
    int step;
    int err;
};

static void __attribute__((noreturn)) fail(int errfd, int step, int err)
{
    struct error_record record = {step, err};
    ssize_t n;

    do
        n = write(errfd, &record, sizeof record);
    while (n < 0 && errno == EINTR);
    _exit(127);
}

static int is_target(const struct pyslirp_spawn_args *a, int fd)
{
    for (int i = 0; i < a->nfds; i++)
        if (a->fd_dst[i] == fd)
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

static int child_main(void *arg)
{
    const struct child_context *ctx = arg;
    const struct pyslirp_spawn_args *a = ctx->args;
    int errfd = ctx->errfd;
    int top = a->nfds ? a->fd_dst[a->nfds - 1] : 2;
    int src[a->nfds > 0 ? a->nfds : 1];
    static const struct sigaction default_action = {.sa_handler = SIG_DFL};
    sigset_t empty;

    if (top < 2)
        top = 2;
    /* The error pipe must outlive every dup2 below: keep it above all targets. */
    if (errfd <= top) {
        errfd = fcntl(errfd, F_DUPFD_CLOEXEC, top + 1);
        if (errfd < 0)
            fail(ctx->errfd, PYSLIRP_STEP_FDS, errno);
    }

    /* Handlers the parent caught would run parent code; ignored ones would be inherited. */
    for (int sig = 1; sig < _NSIG; sig++) {
        struct sigaction current;

        if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &current) != 0)
            continue;
        if (current.sa_handler != SIG_DFL && sigaction(sig, &default_action, NULL) != 0)
            fail(errfd, PYSLIRP_STEP_SIGNALS, errno);
    }

    if (a->setpgid && setpgid(0, 0) != 0)
        fail(errfd, PYSLIRP_STEP_SETPGID, errno);
    if (a->new_namespaces && unshare(a->new_namespaces) != 0)
        fail(errfd, PYSLIRP_STEP_NEW_NAMESPACES, errno);
    /* The user namespace first: it grants the capabilities the next steps need. */
    if (a->userns_fd >= 0 && setns(a->userns_fd, CLONE_NEWUSER) != 0)
        fail(errfd, PYSLIRP_STEP_SETNS_USER, errno);
    if (a->netns_fd >= 0 && setns(a->netns_fd, CLONE_NEWNET) != 0)
        fail(errfd, PYSLIRP_STEP_SETNS_NET, errno);
    if (a->private_mounts) {
        if (unshare(CLONE_NEWNS) != 0)
            fail(errfd, PYSLIRP_STEP_UNSHARE_MOUNTS, errno);
        /* Without this, unmounts in the new namespace propagate back to the host's. */
        if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
            fail(errfd, PYSLIRP_STEP_PRIVATE_MOUNTS, errno);
    }
    if (a->pdeathsig) {
        if (prctl(PR_SET_PDEATHSIG, a->pdeathsig, 0, 0, 0) != 0)
            fail(errfd, PYSLIRP_STEP_PDEATHSIG, errno);
        /* The parent may have died before prctl: deliver the signal now (it stays
         * pending, blocked, until the mask is emptied before exec). */
        if (getppid() != ctx->parent_pid)
            kill(getpid(), a->pdeathsig);
    }

    /* Pass 1: move every source a dup2 could clobber above all targets. */
    for (int i = 0; i < a->nfds; i++) {
        src[i] = a->fd_src[i];
        if (src[i] != a->fd_dst[i] && src[i] <= top) {
            src[i] = fcntl(src[i], F_DUPFD_CLOEXEC, top + 1);
            if (src[i] < 0)
                fail(errfd, PYSLIRP_STEP_FDS, errno);
        }
    }
    /* Pass 2: put each in place; an fd already in place only loses close-on-exec. */
    for (int i = 0; i < a->nfds; i++) {
        if (src[i] == a->fd_dst[i]) {
            int flags = fcntl(src[i], F_GETFD);

            if (flags < 0 || fcntl(src[i], F_SETFD, flags & ~FD_CLOEXEC) != 0)
                fail(errfd, PYSLIRP_STEP_FDS, errno);
        } else if (dup2(src[i], a->fd_dst[i]) < 0) {
            fail(errfd, PYSLIRP_STEP_FDS, errno);
        }
    }

    /* Only 0-2 and the targets survive exec: close the gaps, mark the rest close-on-exec
     * (the error pipe must stay open until execve succeeds). */
    for (int fd = 3, gap = 3; fd <= top + 1; fd++) {
        if (fd <= top && !is_target(a, fd))
            continue;
        if (close_fds(gap, fd - 1, a->fd_limit, 0) != 0)
            fail(errfd, PYSLIRP_STEP_CLOSE_FDS, errno);
        gap = fd + 1;
    }
    if (close_fds(top + 1, ~0U >> 1, a->fd_limit, CLOSE_RANGE_CLOEXEC) != 0)
        fail(errfd, PYSLIRP_STEP_CLOSE_FDS, errno);

    sigemptyset(&empty);
    if (sigprocmask(SIG_SETMASK, &empty, NULL) != 0)
        fail(errfd, PYSLIRP_STEP_SIGMASK, errno);

    /* Like execvp: report the first error other than "not there", else the last one. */
    int saved = 0;
    for (int i = 0; i < a->npaths; i++) {
        execve(a->paths[i], a->argv, a->envp ? a->envp : environ);
        if (errno != ENOENT && errno != ENOTDIR && saved == 0)
            saved = errno;
    }
    fail(errfd, PYSLIRP_STEP_EXEC, saved ? saved : errno);
}

int pyslirp_spawn(const struct pyslirp_spawn_args *args, struct pyslirp_spawn_result *result)
{
    /* The child runs on this buffer while CLONE_VFORK keeps this frame alive. */
    char stack[CHILD_STACK_SIZE] __attribute__((aligned(16)));
    void *stack_top = stack + sizeof stack;
    struct child_context ctx = {.args = args, .parent_pid = getpid()};
    struct error_record record;
    sigset_t all, saved_mask;
    int pipefd[2], pidfd = -1, clone_errno = 0;
    pid_t pid;
    ssize_t n;

    result->pid = -1;
    result->pidfd = -1;
    result->step = PYSLIRP_STEP_NONE;
    result->err = 0;
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        result->step = PYSLIRP_STEP_PIPE;
        result->err = errno;
        return -1;
    }
    ctx.errfd = pipefd[1];

    /* No parent handler may run on the child's stack before it resets them. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved_mask);
    pid = clone(child_main, stack_top, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &ctx,
                &pidfd);
    if (pid < 0 && errno == EINVAL) {
        pidfd = -1;
        pid = clone(child_main, stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, &ctx);
    }
    if (pid < 0 && (errno == EINVAL || errno == ENOSYS))
        pid = clone(child_main, stack_top, SIGCHLD, &ctx);
    /* A vfork child shares errno with this thread: read it only when no child ran. */
    if (pid < 0)
        clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &saved_mask, NULL);
    close(pipefd[1]);

    if (pid < 0) {
        close(pipefd[0]);
        result->step = PYSLIRP_STEP_CLONE;
        result->err = clone_errno;
        return -1;
    }
    if (pidfd < 0)
        pidfd = (int)syscall(SYS_pidfd_open, pid, 0);

    do
        n = read(pipefd[0], &record, sizeof record);
    while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    if (n != 0) {
        int status;

        if (n != (ssize_t)sizeof record) {
            record.step = PYSLIRP_STEP_PIPE;
            record.err = n < 0 ? errno : EIO;
        }
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        if (pidfd >= 0)
            close(pidfd);
        result->step = record.step;
        result->err = record.err;
        return -1;
    }
    result->pid = pid;
    result->pidfd = pidfd;
    return 0;
}
