/*
 * paging.h - page files: the messages of a PAGE address past its limit
 * (max-size-bytes or global-max-size) kept on disk in order and read back
 * as its consumers catch up, so that memory stays bounded at any backlog.
 *
 * The pager of the core (keel_core_set_pager, core.h).  Its files are
 * written through the journal's batches (keel_journal_ext_write): after
 * the batch's journal records are durable, synced with them, receipts
 * wait for them as for journal records.  Format and rules: the opening
 * comment of paging.c and broker/README.md ("Paging").
 *
 * Lifecycle: open (after keel_journal_open: recovery of the page files,
 * the core's paged counts) -> start (after keel_journal_start: the core's
 * pager is set) -> stop (before keel_journal_stop) -> free.  Loop thread
 * only.
 */
#ifndef KEEL_PAGING_H
#define KEEL_PAGING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "events.h"
#include "journal.h"

typedef struct keel_paging keel_paging;

typedef struct keel_paging_options {
	const char *dir;          /* <data-dir>/paging; created when missing */
	uint64_t file_size;       /* a page file is closed past this; 0 = default */
	keel_events *events;      /* address.paging/depaged, paging.truncated; may be NULL */
} keel_paging_options;

typedef struct keel_paging_stats {
	uint64_t paged;           /* messages written to page files since open */
	uint64_t depaged;         /* read back */
	uint64_t recovered;       /* found at open, to be read back */
	uint64_t skipped;         /* found at open and not read back: non-persistent,
				     or already in the journal (depaged before the crash) */
	uint64_t truncated;       /* torn tails cut at open */
	uint64_t files;           /* page files now */
} keel_paging_stats;

/*
 * Read <dir>'s page files into the core (which the journal has restored):
 * each address's count of messages to read back, the message ids reserved
 * above the paged ones.  A file's torn tail (a crash mid-write) is cut
 * after its last whole record (paging.truncated).  -errno with err (I/O,
 * a page file of an unknown version or a damaged header that is not the
 * newest file).
 */
int keel_paging_open(keel_paging **out, const keel_paging_options *opt, keel_core *core,
		     keel_journal *j, char *err, size_t errlen);
void keel_paging_start(keel_paging *p);
void keel_paging_stop(keel_paging *p);
void keel_paging_free(keel_paging *p);
void keel_paging_get_stats(const keel_paging *p, keel_paging_stats *out);

/*
 * ---- the format, for tests and offline tools -------------------------
 * A page file: a 32-byte header then records back to back.  Scan one:
 * the whole records (count) and where they end (end: the valid length).
 * 0, -EBADMSG (no valid header), -EPROTONOSUPPORT (unknown version),
 * -errno.
 */
int keel_paging_scan_file(const char *path, uint64_t *count, uint64_t *end);
/* The directory of an address's page files under `dir` (hex of its name). */
int keel_paging_address_dir(const char *dir, const char *address, char *out, size_t len);

#endif
