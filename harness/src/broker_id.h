/*
 * broker_id.h - which keel-broker a run used: its `--version` line and
 * the GNU build id of its ELF file, recorded with the run (runs.
 * broker_version, runs.broker_build_id) and compared by replay.  Main
 * thread (it runs the broker once and waits for it, bounded).
 */
#ifndef KH_BROKER_ID_H
#define KH_BROKER_ID_H

#include <stddef.h>

/* The first line `BROKER --version` prints into version ("" when it says
 * nothing within KH_BROKER_VERSION_TIMEOUT_MS; the process group is
 * killed either way), and the hex of the file's NT_GNU_BUILD_ID note into
 * build_id ("" when it has none: not ELF, stripped of the note, a
 * script).  Never fails: what cannot be found is "". */
void kh_broker_identify(const char *broker, char *version, size_t vlen, char *build_id,
			size_t blen);

/* The build id of ELF file `path` (hex) into buf; 0, or -ENOENT (no
 * note), -EINVAL (not a 64-bit little-endian ELF file), -errno. */
int kh_elf_build_id(const char *path, char *buf, size_t len);

#endif
