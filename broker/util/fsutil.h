/*
 * fsutil.h - small file-system helpers shared by the durable parts (the
 * identity file, the replica).  Stateless; any thread.
 */
#ifndef KEEL_FSUTIL_H
#define KEEL_FSUTIL_H

#include <stddef.h>
#include <stdint.h>

/* fsync(2) the directory itself (its entries: created, renamed, removed
 * files).  0 or -errno. */
int keel_fsync_dir(const char *dir);

/* Write all n bytes at off (retrying short writes and EINTR).  0 or -errno. */
int keel_pwrite_all(int fd, const void *p, size_t n, uint64_t off);

#endif
