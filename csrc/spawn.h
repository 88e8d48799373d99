/* pyslirp's process spawner: clone(CLONE_VM|CLONE_VFORK) + exec with exact process state. */
#ifndef PYSLIRP_SPAWN_H
#define PYSLIRP_SPAWN_H

/* The step of the child's set-up that failed, reported with its errno. */
#define PYSLIRP_STEP_NONE 0
#define PYSLIRP_STEP_SIGNALS 1
#define PYSLIRP_STEP_SETPGID 2
#define PYSLIRP_STEP_SETNS_USER 3
#define PYSLIRP_STEP_SETNS_NET 4
#define PYSLIRP_STEP_UNSHARE_MOUNTS 5
#define PYSLIRP_STEP_PRIVATE_MOUNTS 6
#define PYSLIRP_STEP_PDEATHSIG 7
#define PYSLIRP_STEP_FDS 8
#define PYSLIRP_STEP_CLOSE_FDS 9
#define PYSLIRP_STEP_SIGMASK 10
#define PYSLIRP_STEP_EXEC 11
#define PYSLIRP_STEP_CLONE 12
#define PYSLIRP_STEP_PIPE 13
#define PYSLIRP_STEP_NEW_NAMESPACES 14

struct pyslirp_spawn_args {
    const char *const *paths; /* executables to try in order, as execvp would */
    int npaths;
    char *const *argv;
    char *const *envp;        /* NULL: the parent's environ */
    const int *fd_src;        /* parent fds ...                        */
    const int *fd_dst;        /* ... onto these child fds, sorted, unique */
    int nfds;
    int setpgid;
    int new_namespaces;       /* CLONE_NEWUSER and/or CLONE_NEWNET to unshare, or 0 */
    int pdeathsig;            /* 0: none */
    int private_mounts;
    int netns_fd;             /* -1: stay */
    int userns_fd;            /* -1: stay */
    int fd_limit;             /* highest fd + 1 to scan where close_range is missing */
};

struct pyslirp_spawn_result {
    int pid;
    int pidfd;  /* -1 where the kernel has no pidfds */
    int step;   /* PYSLIRP_STEP_NONE on success */
    int err;    /* errno of the failed step */
};

/* Start a child; on failure it has been reaped and nothing it used is left open. */
int pyslirp_spawn(const struct pyslirp_spawn_args *args, struct pyslirp_spawn_result *result);

#endif
