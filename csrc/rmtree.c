/*
 * Remove a directory tree, in C so that no Python signal handler can run between an
 * open and its close: interrupted Python cleanup code would leak the fd it had opened.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "spawn.h"

#define MAX_DEPTH 16 /* a helper's private directory is two levels deep */

static int remove_at(int parent, const char *name, int depth)
{
    struct dirent *entry;
    DIR *dir;
    int fd, err = 0;

    if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
        return 0;
    if ((errno != EISDIR && errno != EPERM) || depth > MAX_DEPTH)
        return errno;
    fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : errno;
    dir = fdopendir(fd);
    if (dir == NULL) {
        err = errno;
        close(fd);
        return err;
    }
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        int sub = remove_at(fd, entry->d_name, depth + 1);

        if (sub != 0 && err == 0)
            err = sub;
    }
    closedir(dir);
    if (unlinkat(parent, name, AT_REMOVEDIR) != 0 && errno != ENOENT && err == 0)
        err = errno;
    return err;
}

int pyslirp_remove_tree(const char *path)
{
    return remove_at(AT_FDCWD, path, 0);
}
