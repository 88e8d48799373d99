"""cffi build script for pyslirp's private C module ``pyslirp._spawn``: the spawner,
its reaper, and the init of ``pyslirp run``."""

from cffi import FFI

ffibuilder = FFI()

ffibuilder.cdef(
    """
    #define PYSLIRP_STEP_NONE ...
    #define PYSLIRP_STEP_SIGNALS ...
    #define PYSLIRP_STEP_SETPGID ...
    #define PYSLIRP_STEP_SETNS_USER ...
    #define PYSLIRP_STEP_SETNS_NET ...
    #define PYSLIRP_STEP_UNSHARE_MOUNTS ...
    #define PYSLIRP_STEP_PRIVATE_MOUNTS ...
    #define PYSLIRP_STEP_PDEATHSIG ...
    #define PYSLIRP_STEP_FDS ...
    #define PYSLIRP_STEP_CLOSE_FDS ...
    #define PYSLIRP_STEP_SIGMASK ...
    #define PYSLIRP_STEP_EXEC ...
    #define PYSLIRP_STEP_CLONE ...
    #define PYSLIRP_STEP_PIPE ...
    #define PYSLIRP_STEP_NEW_NAMESPACES ...
    #define PYSLIRP_STEP_REAPER ...
    #define PYSLIRP_STEP_STACK ...
    #define PYSLIRP_STEP_MEMFD ...
    #define PYSLIRP_STEP_EXIT_PIPE ...
    #define PYSLIRP_STEP_SETNS_MOUNTS ...
    #define PYSLIRP_STEP_STALE_EXE ...
    #define PYSLIRP_STEP_STALE_MOUNTS ...
    #define PYSLIRP_MAX_EXTRA_PIDFDS ...
    #define PYSLIRP_READY_PENDING ...
    #define PYSLIRP_READY_OK ...
    #define PYSLIRP_READY_EXITED ...
    #define PYSLIRP_READY_CLOSED ...
    #define PYSLIRP_DEVNULL ...
    #define CLONE_NEWNET ...
    #define CLONE_NEWUSER ...

    struct pyslirp_spawn_args {
        const char *path;
        char *const *argv;
        char *const *envp;
        const int *fd_src;
        const int *fd_dst;
        int nfds;
        int ready_fd;
        int exit_fd;
        int check_exit_fd;
        int log_fds;
        int capture_stdout;
        const char *stdin_data;
        size_t stdin_len;
        int setpgid;
        int new_namespaces;
        int pdeathsig;
        int private_mounts;
        int umask;
        int netns_fd;
        int userns_fd;
        int mntns_fd;
        int netns_to_fd;
        int userns_to_fd;
        const char *netns_path;
        const char *userns_path;
        const char *sysctl_netns;
        const char *sysctl_path;
        const char *sysctl_value;
        char *const *template_paths;
    };

    struct pyslirp_file_id {
        unsigned long long dev, ino, mtime_ns;
    };

    struct pyslirp_slot {
        int pid;
        int owner;
        int pidfd;
        int status;
        int exited;
        int detached;
        int leads_group;
        int ready_fd;
        int log_fd;
        int out_fd;
        int lock_fd;
        int sysctl_fd;
        int extra_pidfds[...];
        int step;
        int err;
        ...;
    };

    struct pyslirp_slot *pyslirp_slot_new(void);
    void pyslirp_slot_drop(struct pyslirp_slot *slot);
    void pyslirp_slot_restore(struct pyslirp_slot *slot);
    void pyslirp_slot_close(struct pyslirp_slot *slot, int *fd);
    void pyslirp_slot_release(struct pyslirp_slot *slot);
    int pyslirp_slot_add_pidfd(struct pyslirp_slot *slot, int pid);
    int pyslirp_slot_lock(struct pyslirp_slot *slot, const char *path);
    struct pyslirp_template;
    int pyslirp_spawn_each(const struct pyslirp_spawn_args *plan, struct pyslirp_slot *slot,
                           const char *netns, const int *later_src, const char *sysctl_netns,
                           const struct pyslirp_template *template,
                           const struct pyslirp_file_id *exe_id);
    int pyslirp_file_id(const char *path, struct pyslirp_file_id *id);
    int pyslirp_same_file(const char *path, const struct pyslirp_file_id *id);
    int pyslirp_reap(struct pyslirp_slot *slot);
    int pyslirp_wait(struct pyslirp_slot *slot, int timeout_ms);
    int pyslirp_ready(struct pyslirp_slot *slot, int timeout_ms, int grace_ms);
    int pyslirp_signal(struct pyslirp_slot *slot, int sig, int group);
    int pyslirp_reaper_start(void);
    int pyslirp_adopts_orphans(void);
    int pyslirp_remove_tree(const char *path);
    int pyslirp_socket_in_netns(const char *netns, int domain, int type, int protocol);

    #define PYSLIRP_TEMPLATE_STEP_CLONE ...
    #define PYSLIRP_TEMPLATE_STEP_UNSHARE ...
    #define PYSLIRP_TEMPLATE_STEP_SLAVE ...
    #define PYSLIRP_TEMPLATE_STEP_DETACH ...
    #define PYSLIRP_TEMPLATE_STEP_MOUNT_ID ...
    #define PYSLIRP_TEMPLATE_STEP_OPEN ...

    struct pyslirp_template {
        int fd;
        unsigned long long first_mount_id;
        int step;
        int err;
    };

    int pyslirp_template_make(char *const *detach, struct pyslirp_template *out);
    int pyslirp_mounts_before(char *const *paths, unsigned long long first_id);

    #define PYSLIRP_INIT_PREPARED ...
    #define PYSLIRP_INIT_STEP_SIGNALS ...
    #define PYSLIRP_INIT_STEP_FDS ...
    #define PYSLIRP_INIT_STEP_ACCEPT_DAD ...
    #define PYSLIRP_INIT_STEP_MOUNT_SLAVE ...
    #define PYSLIRP_INIT_STEP_MOUNT_SCRATCH ...
    #define PYSLIRP_INIT_STEP_RESOLV_CONF ...
    #define PYSLIRP_INIT_STEP_HOSTS ...
    #define PYSLIRP_INIT_STEP_MOUNT_PROC ...
    #define PYSLIRP_INIT_STEP_MOUNT_SYS ...
    #define PYSLIRP_INIT_STEP_IPV6 ...
    #define PYSLIRP_INIT_STEP_FORK ...
    #define PYSLIRP_INIT_STEP_CAPS ...
    #define PYSLIRP_INIT_STEP_EXEC ...
    #define PYSLIRP_INIT_STEP_CLONE ...
    #define PYSLIRP_INIT_STEP_PIPE ...
    #define PYSLIRP_INIT_STEP_REAPER ...
    #define CLONE_NEWNS ...
    #define CLONE_NEWPID ...

    struct pyslirp_init_args {
        int clone_flags;
        const char *path;
        char *const *argv;
        char *const *envp;
        int gate_fd;
        int stop_fd;
        int host_mounts_locked;
        const char *resolv_conf;
        size_t resolv_conf_len;
        const char *hosts;
        size_t hosts_len;
        long long ipv6_deadline_ms;
        int fd_limit;
    };

    int pyslirp_init_start(const struct pyslirp_init_args *args, struct pyslirp_slot *slot);
    int pyslirp_init_relay(int pidfd, int sig);
    """
)

ffibuilder.set_source(
    "pyslirp._spawn",
    """
    #ifndef _GNU_SOURCE
    #define _GNU_SOURCE
    #endif
    #include <sched.h>
    #include "spawn.h"
    #include "init.h"
    #include "mntns.h"
    """,
    sources=[
        "csrc/spawn.c",
        "csrc/reaper.c",
        "csrc/netns.c",
        "csrc/rmtree.c",
        "csrc/init.c",
        "csrc/mntns.c",
    ],
    include_dirs=["csrc"],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
