/*
 * Child slots and the reaper: one pthread that waits on every live child's pidfd with
 * epoll and collects its status the moment it exits, so no zombie lingers whether or not
 * its owner waits. It runs no Python and blocks every signal.
 *
 * One mutex guards every slot's state, the epoll set and the watch table. An epoll event
 * names a table entry and its generation, not a slot: an event that epoll_wait returned
 * before another thread unwatched the slot is recognised as stale, never followed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spawn.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define REAPER_STACK_SIZE (64 * 1024)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int epoll_fd = -1;
static pid_t reaper_pid; /* the process whose reaper thread runs, 0: none */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* The watched slots; free entries are chained through ``next_free``. */
struct entry {
    struct pyslirp_slot *slot; /* NULL: free */
    uint32_t generation;       /* bumped at every unwatch */
    int next_free;
};
static struct entry *table;
static int table_size, first_free = -1;

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void restore_locked(struct pyslirp_slot *s)
{
    if (s->sysctl_fd < 0)
        return;
    if (s->sysctl_old[0] != '\0')
        pwrite(s->sysctl_fd, s->sysctl_old, strlen(s->sysctl_old), 0);
    close_fd(&s->sysctl_fd);
}

static void close_owned_fds(struct pyslirp_slot *s)
{
    restore_locked(s);
    close_fd(&s->ready_fd);
    close_fd(&s->log_fd);
    close_fd(&s->out_fd);
    close_fd(&s->lock_fd);
    for (int i = 0; i < PYSLIRP_MAX_EXTRA_PIDFDS; i++)
        close_fd(&s->extra_pidfds[i]);
}

static void release(struct pyslirp_slot *s)
{
    if (--s->refs == 0) {
        close_fd(&s->pidfd);
        free(s);
    }
}

static uint64_t event_data(int index) { return (uint64_t)index << 32 | table[index].generation; }

/* Take the slot off the epoll set and the table, dropping the reaper's reference. */
static void unwatch_locked(struct pyslirp_slot *s)
{
    struct entry *e = &table[s->watched - 1];

    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, s->pidfd, NULL);
    e->slot = NULL;
    e->generation++;
    e->next_free = first_free;
    first_free = s->watched - 1;
    s->watched = 0;
    release(s);
}

/* Collect the status if the child exited; the caller holds the lock. */
static int reap_locked(struct pyslirp_slot *s)
{
    siginfo_t info = {0};

    if (s->exited)
        return 1;
    if (s->pidfd < 0)
        return 0;
    if (waitid((idtype_t)P_PIDFD, (id_t)s->pidfd, &info, WEXITED | WNOHANG) != 0) {
        if (errno != ECHILD)
            return 0;
        /* Someone else (an application's waitpid(-1)) took it: as subprocess does. */
        s->status = 0;
        s->exited = 1;
        return 1;
    }
    if (info.si_pid == 0)
        return 0;
    if (info.si_code == CLD_EXITED)
        s->status = (info.si_status & 0xff) << 8;
    else
        s->status = (info.si_status & 0x7f) | (info.si_code == CLD_DUMPED ? 0x80 : 0);
    s->exited = 1;
    return 1;
}

static void *reaper_main(void *arg)
{
    struct epoll_event events[64];
    int epfd = (int)(long)arg;

    for (;;) {
        int n = epoll_wait(epfd, events, 64, -1);

        if (n < 0)
            continue; /* EINTR: every signal is blocked here, but a debugger may stop us */
        pthread_mutex_lock(&lock);
        for (int i = 0; i < n; i++) {
            int index = (int)(events[i].data.u64 >> 32);
            struct pyslirp_slot *s = table[index].slot;

            if (s == NULL || (uint32_t)events[i].data.u64 != table[index].generation)
                continue; /* unwatched meanwhile */
            if (reap_locked(s)) {
                unwatch_locked(s);
            } else {
                struct epoll_event again = {.events = EPOLLIN | EPOLLONESHOT,
                                            .data.u64 = event_data(index)};

                epoll_ctl(epfd, EPOLL_CTL_MOD, s->pidfd, &again);
            }
        }
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

static void before_fork(void) { pthread_mutex_lock(&lock); }
static void after_fork_parent(void) { pthread_mutex_unlock(&lock); }

static void after_fork_child(void)
{
    /* The parent's helpers exit at EOF on the owner pipe: a forked child must not hold
     * it open (they would outlive their owner by as long as its pre-fork workers). */
    pyslirp_forget_owner_pipe();
    /* The reaper thread and its children stay with the parent; the epoll set is the
     * parent's too (one open file description): never touch it from here. */
    pthread_mutex_init(&lock, NULL);
    if (epoll_fd >= 0)
        close(epoll_fd);
    epoll_fd = -1;
    reaper_pid = 0;
    free(table);
    table = NULL;
    table_size = 0;
    first_free = -1;
}

static void install_atfork(void) { pthread_atfork(before_fork, after_fork_parent, after_fork_child); }

int pyslirp_reaper_start(void)
{
    pthread_attr_t attr;
    sigset_t all, saved;
    pthread_t thread;
    int epfd, err = 0;

    pthread_once(&atfork_once, install_atfork);
    pthread_mutex_lock(&lock);
    if (reaper_pid == getpid())
        goto out;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        err = errno;
        goto out;
    }
    /* Long-lived: up with the others, while the caller may still be single-threaded
     * (growing the fd table of a process with threads waits for RCU). */
    pyslirp_move_high(&epfd);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, REAPER_STACK_SIZE);
    /* The thread inherits a full mask: no signal is ever delivered to it. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    err = pthread_create(&thread, &attr, reaper_main, (void *)(long)epfd);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    pthread_attr_destroy(&attr);
    if (err != 0) {
        close(epfd);
        goto out;
    }
    epoll_fd = epfd;
    reaper_pid = getpid();
out:
    pthread_mutex_unlock(&lock);
    return err;
}

/* A free table entry's index, growing the table if needed; -1 with errno. */
static int take_entry(void)
{
    int index = first_free;

    if (index < 0) {
        int size = table_size ? table_size * 2 : 64;
        struct entry *grown = realloc(table, (size_t)size * sizeof *grown);

        if (grown == NULL)
            return -1;
        for (int i = size - 1; i >= table_size; i--) {
            grown[i] = (struct entry){.slot = NULL, .generation = 0, .next_free = first_free};
            first_free = i;
        }
        table = grown;
        table_size = size;
        index = first_free;
    }
    first_free = table[index].next_free;
    return index;
}

int pyslirp_watch(struct pyslirp_slot *s)
{
    struct epoll_event event = {.events = EPOLLIN | EPOLLONESHOT};
    int err = 0, index;

    pthread_mutex_lock(&lock);
    if (epoll_fd < 0) {
        err = ESRCH;
    } else if ((index = take_entry()) < 0) {
        err = errno;
    } else {
        event.data.u64 = event_data(index);
        table[index].slot = s;
        if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, s->pidfd, &event) != 0) {
            err = errno;
            table[index].slot = NULL;
            table[index].next_free = first_free;
            first_free = index;
        } else {
            s->watched = index + 1;
            s->refs++;
        }
    }
    pthread_mutex_unlock(&lock);
    if (err != 0) {
        /* Nobody would collect it (out of memory): it must not run unowned. */
        siginfo_t info;

        syscall(SYS_pidfd_send_signal, s->pidfd, SIGKILL, NULL, 0);
        while (waitid((idtype_t)P_PIDFD, (id_t)s->pidfd, &info, WEXITED | WNOWAIT) != 0 &&
               errno == EINTR)
            ;
        pyslirp_reap(s);
    }
    return err;
}

struct pyslirp_slot *pyslirp_slot_new(void)
{
    struct pyslirp_slot *s = calloc(1, sizeof *s);

    if (s == NULL)
        return NULL;
    s->pidfd = s->ready_fd = s->log_fd = s->out_fd = s->lock_fd = -1;
    s->sysctl_fd = -1;
    for (int i = 0; i < PYSLIRP_MAX_EXTRA_PIDFDS; i++)
        s->extra_pidfds[i] = -1;
    s->refs = 1;
    return s;
}

void pyslirp_slot_drop(struct pyslirp_slot *s)
{
    pthread_mutex_lock(&lock);
    if (s->owner != getpid()) {
        /* Never spawned, or inherited through fork: the child is not ours to signal,
         * and the reaper holding a reference is the parent's. */
        close_owned_fds(s);
        close_fd(&s->pidfd);
        pthread_mutex_unlock(&lock);
        free(s);
        return;
    }
    if (!s->detached) {
        for (int i = 0; i < PYSLIRP_MAX_EXTRA_PIDFDS; i++)
            if (s->extra_pidfds[i] >= 0)
                syscall(SYS_pidfd_send_signal, s->extra_pidfds[i], SIGKILL, NULL, 0);
        if (!reap_locked(s)) {
            syscall(SYS_pidfd_send_signal, s->pidfd, SIGKILL, NULL, 0);
            if (s->leads_group)
                kill(-s->pid, SIGKILL);
        }
    }
    close_owned_fds(s);
    release(s);
    pthread_mutex_unlock(&lock);
}

void pyslirp_slot_restore(struct pyslirp_slot *s)
{
    pthread_mutex_lock(&lock);
    restore_locked(s);
    pthread_mutex_unlock(&lock);
}

/* Close the pidfd once the child is reaped here: it has nothing more to tell. */
static void close_reaped_pidfd_locked(struct pyslirp_slot *s)
{
    if (!s->exited || s->owner != getpid())
        return;
    if (s->watched)
        unwatch_locked(s);
    close_fd(&s->pidfd);
}

void pyslirp_slot_close(struct pyslirp_slot *s, int *fd)
{
    pthread_mutex_lock(&lock);
    if (fd == &s->pidfd)
        close_reaped_pidfd_locked(s);
    else
        close_fd(fd);
    pthread_mutex_unlock(&lock);
}

void pyslirp_slot_release(struct pyslirp_slot *s)
{
    pthread_mutex_lock(&lock);
    close_owned_fds(s);
    close_reaped_pidfd_locked(s);
    pthread_mutex_unlock(&lock);
}

int pyslirp_slot_add_pidfd(struct pyslirp_slot *s, pid_t pid)
{
    int result = -1;

    pthread_mutex_lock(&lock);
    for (int i = 0; i < PYSLIRP_MAX_EXTRA_PIDFDS; i++) {
        if (s->extra_pidfds[i] < 0) {
            result = s->extra_pidfds[i] = (int)syscall(SYS_pidfd_open, pid, 0);
            break;
        }
        if (i == PYSLIRP_MAX_EXTRA_PIDFDS - 1)
            errno = ENOSPC;
    }
    pthread_mutex_unlock(&lock);
    return result;
}

int pyslirp_slot_lock(struct pyslirp_slot *s, const char *path)
{
    struct stat held, named;
    int fd, err = 0;

    for (;;) {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            return errno;
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            err = errno;
            close(fd);
            return err;
        }
        /* The holder before us may have unlinked the file it held: lock the one named. */
        if (fstat(fd, &held) == 0 && stat(path, &named) == 0 && held.st_dev == named.st_dev &&
            held.st_ino == named.st_ino)
            break;
        close(fd);
    }
    pthread_mutex_lock(&lock);
    close_fd(&s->lock_fd);
    s->lock_fd = fd;
    pthread_mutex_unlock(&lock);
    return 0;
}

int pyslirp_reap(struct pyslirp_slot *s)
{
    int reaped;

    pthread_mutex_lock(&lock);
    reaped = s->owner == getpid() && reap_locked(s);
    pthread_mutex_unlock(&lock);
    return reaped;
}

/* The waiter reaps it: the reaper thread need not wake for this exit (and race the
 * waiter for it). 0, or -1 with errno when it is not ours to wait for. */
static int take_from_reaper(struct pyslirp_slot *s)
{
    if (s->owner != getpid() || s->pidfd < 0) {
        errno = ECHILD;
        return -1;
    }
    pthread_mutex_lock(&lock);
    if (s->watched)
        unwatch_locked(s);
    pthread_mutex_unlock(&lock);
    return 0;
}

/* Back to the reaper after a wait that did not reap it (errno kept). */
static void give_to_reaper(struct pyslirp_slot *s)
{
    int err = errno;

    if (!s->exited)
        pyslirp_watch(s);
    errno = err;
}

int pyslirp_wait(struct pyslirp_slot *s, int timeout_ms)
{
    struct pollfd pfd = {.fd = s->pidfd, .events = POLLIN};
    int n;

    if (!s->exited) {
        if (take_from_reaper(s) != 0)
            return -1;
        /* EINTR goes back to the caller, so that Python can run its signal handlers. */
        n = poll(&pfd, 1, timeout_ms);
        if (n <= 0 || !pyslirp_reap(s)) {
            give_to_reaper(s);
            return n < 0 ? -1 : 0;
        }
    }
    pyslirp_slot_close(s, &s->pidfd);
    return 1;
}

long long pyslirp_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* After the ready pipe's EOF: wait up to grace_ms, within the call's timeout (-1: none)
 * that began at ``start``, for the exit that usually follows at once. A signal does not
 * end this short wait early: its handler runs once the call returns. */
static void wait_exit_grace(struct pollfd *pidfd, long long start, int timeout_ms, int grace_ms)
{
    long long end = pyslirp_now_ms() + grace_ms, left;

    if (timeout_ms >= 0 && start + timeout_ms < end)
        end = start + timeout_ms;
    while ((left = end - pyslirp_now_ms()) > 0 && poll(pidfd, 1, (int)left) < 0 && errno == EINTR)
        ;
}

int pyslirp_ready(struct pyslirp_slot *s, int timeout_ms, int grace_ms)
{
    struct pollfd pfd[2] = {{.fd = s->ready_fd, .events = POLLIN},
                            {.fd = s->pidfd, .events = POLLIN}};
    long long start = timeout_ms >= 0 && grace_ms > 0 ? pyslirp_now_ms() : 0;
    int state = PYSLIRP_READY_PENDING;
    char byte;

    if (s->ready_state != PYSLIRP_READY_PENDING)
        return s->ready_state;
    if (s->ready_fd < 0) {
        errno = EBADF;
        return -1;
    }
    if (!s->exited && take_from_reaper(s) != 0)
        return -1;
    /* Reaped already (its pidfd closed): the pipe is at EOF or holds the byte. */
    if (poll(pfd, s->pidfd >= 0 ? 2 : 1, timeout_ms) < 0) {
        give_to_reaper(s);
        return -1;
    }
    if (pfd[0].revents) {
        ssize_t n = read(s->ready_fd, &byte, 1);

        if (n < 0) {
            give_to_reaper(s);
            return -1;
        }
        state = n == 1 ? PYSLIRP_READY_OK : PYSLIRP_READY_CLOSED;
        if (state == PYSLIRP_READY_CLOSED && !pfd[1].revents && s->pidfd >= 0 && grace_ms > 0)
            wait_exit_grace(&pfd[1], start, timeout_ms, grace_ms);
    }
    if (state != PYSLIRP_READY_OK && (pfd[1].revents || state == PYSLIRP_READY_CLOSED) &&
        pyslirp_reap(s))
        state = PYSLIRP_READY_EXITED;
    give_to_reaper(s);
    if (state != PYSLIRP_READY_PENDING) {
        pthread_mutex_lock(&lock);
        s->ready_state = state;
        close_fd(&s->ready_fd);
        restore_locked(s);
        if (state == PYSLIRP_READY_OK)
            close_fd(&s->out_fd);
        pthread_mutex_unlock(&lock);
    }
    return state;
}

int pyslirp_signal(struct pyslirp_slot *s, int sig, int group)
{
    int err = 0;

    pthread_mutex_lock(&lock);
    /* Unreaped, its pid (and group id) cannot have been reused. */
    if (s->owner == getpid() && s->pid > 0 && !reap_locked(s)) {
        if (syscall(SYS_pidfd_send_signal, s->pidfd, sig, NULL, 0) != 0 && errno != ESRCH)
            err = errno;
        if (group && kill(-s->pid, sig) != 0 && errno != ESRCH && err == 0)
            err = errno;
    }
    pthread_mutex_unlock(&lock);
    return err;
}
