/*
 * The template mount namespace (see pyslirp/mounttemplate.py): one small mount namespace
 * made once per process, which spawned children join (setns) instead of copying the
 * host's whole mount table each time.
 *
 * It is made by a child cloned CLONE_VM|CLONE_VFORK|CLONE_FILES: it shares our memory and
 * fd table, so the fd of the namespace it opens is ours when it exits, and the namespace
 * lives on through that fd. Like spawn.c's child it runs only async-signal-safe code.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mntns.h"

#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x00004000U
#endif

#define MAKER_STACK_SIZE (32 * 1024)

struct maker {
    char *const *detach;
    struct pyslirp_template *out;
};

static void __attribute__((noreturn)) maker_fail(struct pyslirp_template *out, int step)
{
    out->step = step;
    out->err = errno;
    _exit(1);
}

static int maker_main(void *arg)
{
    const struct maker *m = arg;
    struct pyslirp_template *out = m->out;
    long long first_id;

    if (unshare(CLONE_NEWNS) != 0)
        maker_fail(out, PYSLIRP_TEMPLATE_STEP_UNSHARE);
    /* A slave gets the host's later mounts, and its unmounts never reach the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0)
        maker_fail(out, PYSLIRP_TEMPLATE_STEP_SLAVE);
    /* Gone from here, the netns mounts (and the mounts later made under them) are not
     * copied again by every sandbox started in the template. EINVAL/ENOENT: detached
     * already with a mount above it. */
    for (char *const *path = m->detach; *path != NULL; path++)
        if (umount2(*path, MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)
            maker_fail(out, PYSLIRP_TEMPLATE_STEP_DETACH);
    /* The copies were made just now: every mount older than the copy of / is in here.
     * EOPNOTSUPP before Linux 6.8: no mount id tells a mount's age. */
    if ((first_id = pyslirp_mount_id("/")) < 0) {
        errno = (int)-first_id;
        maker_fail(out, PYSLIRP_TEMPLATE_STEP_MOUNT_ID);
    }
    out->first_mount_id = (unsigned long long)first_id;
    out->fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
    if (out->fd < 0)
        maker_fail(out, PYSLIRP_TEMPLATE_STEP_OPEN);
    _exit(0);
}

int pyslirp_template_make(char *const *detach, struct pyslirp_template *out)
{
    struct maker m = {detach, out};
    sigset_t all, saved_mask;
    void *stack;
    pid_t pid;
    int status, err;

    out->fd = -1;
    out->first_mount_id = 0;
    out->step = PYSLIRP_TEMPLATE_STEP_NONE;
    out->err = 0;
    stack = mmap(NULL, MAKER_STACK_SIZE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        out->step = PYSLIRP_TEMPLATE_STEP_CLONE;
        out->err = errno;
        return -1;
    }
    /* No parent handler may run on the child's stack. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved_mask);
    pid = clone(maker_main, (char *)stack + MAKER_STACK_SIZE,
                CLONE_VM | CLONE_VFORK | CLONE_FILES | SIGCHLD, &m);
    err = pid < 0 ? errno : 0;
    pthread_sigmask(SIG_SETMASK, &saved_mask, NULL);
    if (pid < 0) {
        munmap(stack, MAKER_STACK_SIZE);
        out->step = PYSLIRP_TEMPLATE_STEP_CLONE;
        out->err = err;
        return -1;
    }
    /* CLONE_VFORK: it has exited by now; collect it (the reaper waits by pidfd only). */
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    munmap(stack, MAKER_STACK_SIZE);
    if (out->step != PYSLIRP_TEMPLATE_STEP_NONE) {
        if (out->fd >= 0)
            close(out->fd);
        out->fd = -1;
        return -1;
    }
    return 0;
}

long long pyslirp_mount_id(const char *path)
{
    struct statx stx;

    if (statx(AT_FDCWD, path, 0, STATX_MNT_ID_UNIQUE, &stx) != 0)
        return -errno;
    if (!(stx.stx_mask & STATX_MNT_ID_UNIQUE))
        return -EOPNOTSUPP;
    return (long long)stx.stx_mnt_id;
}

/* pyslirp_mount_id of ``path`` (absolute) or, while it is missing, of its nearest
 * existing parent: where it would be made. */
static long long existing_mount_id(const char *path)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);
    long long id;

    if (len >= sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, path, len + 1);
    while ((id = pyslirp_mount_id(buf)) == -ENOENT && strcmp(buf, "/") != 0) {
        char *slash = strrchr(buf, '/');

        if (slash == NULL)
            break;
        slash[slash == buf ? 1 : 0] = '\0';
    }
    return id;
}

int pyslirp_mounts_before(char *const *paths, unsigned long long first_id)
{
    for (; *paths != NULL; paths++) {
        long long id = existing_mount_id(*paths);

        /* An error tells nothing of the mount's age: no reason for a new template. */
        if (id >= 0 && (unsigned long long)id >= first_id)
            return 0;
    }
    return 1;
}
