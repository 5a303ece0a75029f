/*
 * hastore.h - the identity file of an HA node: <data-dir>/ha-identity.json
 * holds its keel_ha_persist (ha.h), checksummed, written durably (temp
 * file, fdatasync, rename, directory fsync).  Format in README.md
 * "Replication (HA)" / "Identity file".  No state kept between calls;
 * any thread (the replication manager calls it from the loop thread).
 */
#ifndef KEEL_HASTORE_H
#define KEEL_HASTORE_H

#include <stdbool.h>
#include <stddef.h>

#include "ha.h"

#define KEEL_HASTORE_FILE "ha-identity.json"
#define KEEL_HA_NODE_ID_STRLEN 36 /* "0123abcd-0123-0123-0123-0123456789ab" */

/* Loads <data_dir>/ha-identity.json.  Missing file: *out =
 * keel_ha_persist_fresh(role, id) where id is 16 random bytes from
 * getrandom(2) (a version-4 UUID, never zero) for a primary and all-zero
 * for a backup, *fresh = true (nothing written yet).  A file that cannot be
 * parsed or fails its check: -EBADMSG with err naming the file and what is
 * wrong (the broker refuses to start).  Other errors -errno (err says
 * which).  err is always NUL-terminated (when errlen > 0); *out and *fresh
 * are written only on success. */
int keel_hastore_load(const char *data_dir, keel_ha_role role, keel_ha_persist *out,
		      bool *fresh, char *err, size_t errlen);

/* Writes it durably: data_dir created if missing (one level), write
 * <file>.tmp, fdatasync, rename over, fsync the directory.  0 or -errno;
 * the libfiu point KEEL_FIU_REPL_PERSIST gives -EIO with the old file
 * untouched. */
int keel_hastore_save(const char *data_dir, const keel_ha_persist *p);

/* "0123abcd-...": 36 chars + NUL into out (>= 37 bytes), lower case. */
void keel_ha_node_id_format(const keel_ha_node_id *id, char *out);
/* The form above (either case); 0 or -EINVAL. *id written only on success. */
int keel_ha_node_id_parse(const char *s, keel_ha_node_id *id);

#endif
