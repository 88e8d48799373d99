/*
 * The template mount namespace that spawned children join instead of copying the host's
 * mount table (see mntns.c).
 */
#ifndef PYSLIRP_MNTNS_H
#define PYSLIRP_MNTNS_H

/* The step of making the template that failed. */
#define PYSLIRP_TEMPLATE_STEP_NONE 0
#define PYSLIRP_TEMPLATE_STEP_CLONE 1
#define PYSLIRP_TEMPLATE_STEP_UNSHARE 2
#define PYSLIRP_TEMPLATE_STEP_SLAVE 3
#define PYSLIRP_TEMPLATE_STEP_DETACH 4
#define PYSLIRP_TEMPLATE_STEP_MOUNT_ID 5
#define PYSLIRP_TEMPLATE_STEP_OPEN 6

struct pyslirp_template {
    int fd;                              /* the namespace (close-on-exec), or -1 */
    unsigned long long first_mount_id;   /* mounts with a smaller unique id were copied */
    int step;                            /* PYSLIRP_TEMPLATE_STEP_NONE, or the failed one */
    int err;                             /* its errno */
};

/* Make a new mount namespace: a recursive slave of ours, without the mounts at the paths
 * in ``detach`` (NULL-terminated). 0, or -1 with out->step and out->err set. */
int pyslirp_template_make(char *const *detach, struct pyslirp_template *out);

/* The unique id (statx STATX_MNT_ID_UNIQUE, Linux 6.8+) of the mount ``path`` is on, or
 * -errno. Unique ids only grow: a mount made after another has a larger one. */
long long pyslirp_mount_id(const char *path);

/* 1 if every path in ``paths`` (NULL-terminated, absolute) is on a mount whose unique id
 * is below ``first_id``: a template made at ``first_id`` has it. A missing path counts as
 * its nearest existing parent (where it would be made); one whose mount id cannot be
 * told, as there. 0 if one is on a newer mount. */
int pyslirp_mounts_before(char *const *paths, unsigned long long first_id);

#endif
