/*
 * pyslirp's C surface: a child slot owned by its caller, the spawn call that fills it, and
 * the reaper thread that collects exit statuses through pidfds.
 *
 * Ownership by construction: the caller allocates a slot *before* spawning; the spawn call
 * writes the pid, the pidfd and every fd it makes for the child into the slot before it
 * returns, so no Python bytecode runs between a clone and its owner. A slot dropped by its
 * owner kills a child it still owns and leaves the exit status to the reaper.
 */
#ifndef PYSLIRP_SPAWN_H
#define PYSLIRP_SPAWN_H

#include <sys/types.h>

/* The step of the child's set-up (or of the parent's preparation) that failed. */
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
#define PYSLIRP_STEP_REAPER 15
#define PYSLIRP_STEP_STACK 16
#define PYSLIRP_STEP_MEMFD 17
#define PYSLIRP_STEP_EXIT_PIPE 18
#define PYSLIRP_STEP_SETNS_MOUNTS 19
#define PYSLIRP_STEP_STALE_EXE 20    /* ESTALE: the executable is not the file it was */
#define PYSLIRP_STEP_STALE_MOUNTS 21 /* ESTALE: the template lacks a mount the child needs */

/* Child fd numbers are at most this; the slot holds at most this many extra pidfds. */
#define PYSLIRP_MAX_EXTRA_PIDFDS 4

struct pyslirp_spawn_args {
    const char *path;         /* the executable */
    char *const *argv;
    char *const *envp;        /* NULL: the parent's environ */
    const int *fd_src;        /* parent fds (PYSLIRP_DEVNULL: /dev/null) ... */
    const int *fd_dst;        /* ... onto these child fds, sorted, unique */
    int nfds;
    int ready_fd;             /* child fd of a new ready pipe's write end, or -1 */
    int exit_fd;              /* child fd of the owner pipe's read end (see spawn.c), or -1 */
    /* A child fd of fd_dst whose parent fd must be a pipe's read end with its write end
     * open (the caller's exit pipe), or -1: else step EXIT_PIPE, EBADF (not open) or
     * EPIPE (the write end is closed: the child would exit at once). */
    int check_exit_fd;
    int log_fds;              /* bit 0: stdout, bit 1: stderr go to a new log memfd */
    int capture_stdout;       /* stdout goes to a new memfd of its own (slot->out_fd) */
    const char *stdin_data;   /* stdin reads these bytes from a memfd, or NULL */
    size_t stdin_len;
    int setpgid;
    int new_namespaces;       /* CLONE_NEWUSER and/or CLONE_NEWNET to unshare, or 0 */
    int pdeathsig;            /* 0: none */
    int private_mounts;
    int umask;                /* -1: inherit */
    int netns_fd;             /* -1: stay (or netns_path) */
    int userns_fd;            /* -1: stay (or userns_path) */
    int mntns_fd;             /* a mount namespace to join (the cwd kept), or -1 */
    int netns_to_fd;          /* -1, or the child fd that gets the netns instead of joining */
    int userns_to_fd;         /* the same for the user namespace */
    const char *netns_path;   /* a namespace to join by path (the child opens it), or NULL */
    const char *userns_path;
    /* A sysctl of ``sysctl_netns`` to hold at ``sysctl_value`` while the child starts:
     * opened (best effort) before the clone, restored by pyslirp_slot_restore. */
    const char *sysctl_netns;
    const char *sysctl_path;
    const char *sysctl_value;
    /* Paths (NULL-terminated) on mounts a template joined with pyslirp_spawn_each must
     * have (see pyslirp_mounts_before), or NULL. */
    char *const *template_paths;
};

/* A file as pyslirp_file_id found it: a plan made with it can tell it was replaced. */
struct pyslirp_file_id {
    unsigned long long dev, ino, mtime_ns;
};

/* Fill ``id`` with the file at ``path``; 0, or -errno (``id`` left as it was). */
int pyslirp_file_id(const char *path, struct pyslirp_file_id *id);
/* 1 if the file at ``path`` is still ``id`` (the same inode, not modified since), else 0. */
int pyslirp_same_file(const char *path, const struct pyslirp_file_id *id);

#define PYSLIRP_DEVNULL (-2)

/* One child and what was made for it; allocated by pyslirp_slot_new, owned by the caller. */
struct pyslirp_slot {
    pid_t pid;        /* 0 until spawned */
    pid_t owner;      /* the process that spawned it; elsewhere the slot only closes fds */
    int pidfd;        /* -1 until spawned; closed when the slot is freed */
    int status;       /* wait status, valid once exited */
    int exited;       /* 1 once reaped */
    int detached;     /* 1: dropping the slot does not kill the child */
    int leads_group;  /* the child leads a process group of its own */
    int ready_fd;     /* read end of the ready pipe, or -1 */
    int log_fd;       /* the child's log memfd, or -1 */
    int out_fd;       /* the child's captured stdout, or -1 */
    int lock_fd;      /* a lock file the owner holds, or -1 */
    int sysctl_fd;    /* the sysctl held for the child's start, or -1 */
    char sysctl_old[16]; /* its value before, written back on restore */
    int extra_pidfds[PYSLIRP_MAX_EXTRA_PIDFDS]; /* processes the child started, or -1 */
    int ready_state;  /* PYSLIRP_READY_*: what pyslirp_ready found */
    int step;         /* PYSLIRP_STEP_NONE, or the step a failed spawn stopped at */
    int err;          /* errno of that step */
    int refs;         /* the owner's reference and, while it watches, the reaper's */
    int watched;      /* 1 + its index in the reaper's table while watched, else 0 */
};

struct pyslirp_slot *pyslirp_slot_new(void);
/* The owner lets go: a live child it still owns is killed; fds are closed; the reaper
 * reaps what is left and frees the slot when it is done with it. */
void pyslirp_slot_drop(struct pyslirp_slot *slot);
/* Put the held sysctl back and close it (a no-op without one). */
void pyslirp_slot_restore(struct pyslirp_slot *slot);
/* Close one of the slot's fds (by its address in the slot) and mark it -1; the pidfd
 * only once the child has been reaped. */
void pyslirp_slot_close(struct pyslirp_slot *slot, int *fd);
/* Close every fd of the slot (put the held sysctl back first); the pidfd only once the
 * child has been reaped. */
void pyslirp_slot_release(struct pyslirp_slot *slot);
/* Open ``pid``'s pidfd into the first free extra slot; -1 with errno on failure. */
int pyslirp_slot_add_pidfd(struct pyslirp_slot *slot, pid_t pid);
/* Open (creating) and flock ``path`` exclusively without blocking into slot->lock_fd.
 * Returns 0, or an errno (EWOULDBLOCK: someone else holds it). */
int pyslirp_slot_lock(struct pyslirp_slot *slot, const char *path);

/* Start a child of ``plan`` into ``slot``, with one spawn's own values in place of the
 * plan's: ``netns`` (a path to join or hand over), ``later_src`` (the parent fds, in child
 * fd order, for the child fds whose plan fd_src is -1), ``sysctl_netns``; NULL for the
 * plan's own. ``template``: a template mount namespace to join, which must have the
 * mounts of the plan's template_paths (else step STALE_MOUNTS), or NULL for the plan's.
 * ``exe_id``: what the executable must still be (else step STALE_EXE), or NULL. Both
 * are checked before the clone. 0, or -1 with slot->step/err set and nothing left open. */
struct pyslirp_template;
int pyslirp_spawn_each(const struct pyslirp_spawn_args *plan, struct pyslirp_slot *slot,
                       const char *netns, const int *later_src, const char *sysctl_netns,
                       const struct pyslirp_template *template,
                       const struct pyslirp_file_id *exe_id);

/* Collect the child's status if it has exited; 1 once it has. */
int pyslirp_reap(struct pyslirp_slot *slot);
/* Wait up to timeout_ms (-1: for ever) for the child to exit, then reap it: 1 if it has
 * (its pidfd closed then), 0 if not, -1 with errno (EINTR: a signal came; ECHILD: not
 * this process's child). */
int pyslirp_wait(struct pyslirp_slot *slot, int timeout_ms);
/* What pyslirp_ready found. */
#define PYSLIRP_READY_PENDING 0 /* nothing yet: the timeout passed */
#define PYSLIRP_READY_OK 1      /* the child wrote a byte to its ready pipe */
#define PYSLIRP_READY_EXITED 2  /* the child exited (and was reaped) without writing one */
#define PYSLIRP_READY_CLOSED 3  /* the ready pipe is at EOF and the child not yet reaped */
/* Wait up to timeout_ms (-1: for ever) for the child's ready byte or its exit; a byte
 * written just before the exit wins. At EOF without a byte, the exit that follows is
 * waited for up to grace_ms more (within timeout_ms), and the child reaped: EXITED. The
 * first answer other than PENDING is kept (later calls return it at once), and with it
 * the ready pipe is closed, the held sysctl put back and a captured stdout (read only
 * for errors before ready) closed. -1 with errno (EINTR: a signal came; ECHILD: not
 * this process's child; EBADF: no ready pipe). While it waits, the reaper does not
 * watch the child: this caller reaps a child that died. */
int pyslirp_ready(struct pyslirp_slot *slot, int timeout_ms, int grace_ms);
/* Send ``sig`` to the child (and its process group, when ``group``) unless it was reaped. */
int pyslirp_signal(struct pyslirp_slot *slot, int sig, int group);
/* Hand a spawned child to the reaper; 0, or the errno why it could not (out of memory):
 * then the child, which nobody would collect, is SIGKILLed and reaped here. */
int pyslirp_watch(struct pyslirp_slot *slot);
/* Open ``path`` (with ``flags``) as the network namespace ``netns`` sees it, from the
 * calling thread, which is back in its own namespace on return; the fd or -errno. */
int pyslirp_open_in_netns(const char *netns, const char *path, int flags);
/* A socket (close-on-exec) of the network namespace ``netns``, made the same way. */
int pyslirp_socket_in_netns(const char *netns, int domain, int type, int protocol);

/* Remove the directory tree at ``path`` (a missing one too); 0 or the first errno. */
int pyslirp_remove_tree(const char *path);

/* 1 if orphans are re-parented to this process (it is PID 1 or a child subreaper). */
int pyslirp_adopts_orphans(void);

/* In a forked child: close this process's copy of the owner pipe (see spawn.c). */
void pyslirp_forget_owner_pipe(void);

/* Move ``*fd`` (closing the old one) up to where long-lived fds are kept (see spawn.c).
 * The first such move grows the kernel's fd table, which in a process with more than one
 * thread waits for an RCU grace period (~15 ms): the reaper's start does it first. */
void pyslirp_move_high(int *fd);

/* CLOCK_MONOTONIC in milliseconds (Python's time.monotonic() * 1000); async-signal-safe. */
long long pyslirp_now_ms(void);

/* Start this process's reaper thread if it is not running; 0 or an errno. */
int pyslirp_reaper_start(void);

#endif
