/*
 * saved.h - saved replicated journals: the data a node had before it
 * synced from a peer, moved aside instead of deleted (Artemis'
 * max-saved-replicated-journals-size), so that what it alone had
 * receipted (a split brain) can be found and sent again.
 *
 * A copy is <data-dir>/saved/<NNN>-seq<S>-<yyyymmddThhmmss> (NNN counts
 * copies, S is the activation sequence the node had, the time is UTC)
 * holding journal/ and large-messages/ as they were, moved there by
 * rename, and, once compared with the journal the node synced,
 * saved.json (how many messages it holds, how many of them the new live
 * lacked, and their ids).  saved.c: preparing a replica (save, rotate,
 * the incomplete mark), listing, results.  saved_compare.c: message
 * identity by content, the comparison, the hard-linked snapshot of a
 * replica's journal it reads.  No shared state: any thread, one call at a
 * time per data directory (the backup's loop prepares; a libuv pool
 * thread compares; keelctl reads).
 */
#ifndef KEEL_SAVED_H
#define KEEL_SAVED_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal.h"
#include "limits.h"

#define KEEL_SAVED_DIR "saved"          /* under data-dir */
#define KEEL_SAVED_RESULT "saved.json"  /* in a copy, once compared */
#define KEEL_SAVED_RESENT_HEADER "keel-resent-from" /* not part of a message's identity */

typedef struct keel_saved_prepare_opts {
	const char *data_dir;     /* copies go to <data_dir>/saved */
	const char *journal_dir;  /* the replica's journal directory */
	const char *large_dir;    /* its large-message directory */
	const char *paging_dir;   /* its page files (paging.h); NULL: none */
	uint64_t activation_seq;  /* the node's, before the sync: names the copy */
	int32_t keep;             /* copies kept: -1 all, 0 none (nothing is saved) */
	int64_t now_s;            /* wall clock (s since the epoch): names the copy */
} keel_saved_prepare_opts;

/*
 * PREPARE_REPLICA.  When the journal or large-message directory holds
 * anything and is not a partial replica (KEEL_JOURNAL_INCOMPLETE_MARK),
 * both are renamed into a new copy (directories fsynced), the paging
 * directory with them; otherwise (or with keep 0) they are emptied and
 * the paging directory removed (a replica's page files come from its
 * live).  Then both exist, empty, and the
 * journal directory holds the incomplete mark; copies beyond `keep` are
 * removed, oldest first (a failure there is logged, not returned).
 * Returns 1 with the copy's path in `copy` when one was made, 0 when
 * nothing was saved, or -errno with err (nothing may have been deleted
 * that was not saved: the sync must not go on).
 */
int keel_saved_prepare(const keel_saved_prepare_opts *o, char *copy, size_t copylen, char *err,
		       size_t errlen);

/* The sync completed (everything flushed): the journal directory is a
 * complete replica; the incomplete mark goes (durably).  0 or -errno. */
int keel_saved_replica_complete(const char *journal_dir);

typedef struct keel_saved_copy {
	char name[64];
	char path[KEEL_MAX_PATH_BYTES];
	uint64_t number;          /* NNN */
	uint64_t activation_seq;  /* S */
	int64_t when_s;           /* from the name (UTC) */
	uint64_t bytes;           /* sizes of its files */
	bool compared;            /* saved.json is there */
} keel_saved_copy;

/* The copies of <data_dir>/saved, oldest (lowest NNN) first; names that
 * are not a copy's are ignored.  No saved directory: 0 copies.  0 and
 * *out (keel_free it; NULL when none), or -errno with err. */
int keel_saved_list(const char *data_dir, keel_saved_copy **out, size_t *n, char *err,
		    size_t errlen);

/* Is there a copy without saved.json (not compared yet)?  Cheap: names
 * and one access(2) per copy. */
bool keel_saved_pending(const char *data_dir);

/* Remove a directory tree (a copy, a snapshot).  Missing: 0.  0 or -errno. */
int keel_saved_remove_tree(const char *path);

/* What a comparison found (saved.json). */
typedef struct keel_saved_result {
	int64_t messages;         /* live messages in the copy; -1 unknown */
	int64_t lacking;          /* of them, not in the live's journal; -1 unknown */
	uint64_t *lacking_ids;    /* the copy's ids of those (keel_saved_result_free) */
	size_t nlacking;
	int64_t compared_s;       /* when */
	char error[256];          /* not empty: the comparison failed, why */
} keel_saved_result;

void keel_saved_result_free(keel_saved_result *r);
/* Write <copy>/saved.json durably (tmp, fsync, rename, fsync).  0 or -errno. */
int keel_saved_write_result(const char *copy_path, const keel_saved_result *r);
/* Read it: 0, -ENOENT (not compared yet) or -EBADMSG / -errno with err. */
int keel_saved_read_result(const char *copy_path, keel_saved_result *r, char *err,
			   size_t errlen);

/* ---- saved_compare.c ------------------------------------------------------- */

/*
 * A message's identity by content (ids are per node: two nodes that were
 * both live give the same ids to different messages): a 64-bit hash of
 * the address, priority, expiry, user headers (as a set: order does not
 * matter; KEEL_SAVED_RESENT_HEADER left out, so a message sent again by
 * keelctl is the same message) and the body (a large one read from
 * <large_dir>/<id>.msg).  0, or -errno when a large body cannot be read.
 */
int keel_saved_msg_hash(const keel_journal_msgview *m, const char *large_dir, uint64_t *out);

/*
 * Compare the copy at copy_path with the journal in live_journal_dir
 * (large bodies in live_large_dir; read KEEL_JOURNAL_READ_TOLERANT: it
 * may be a replica still receiving operations) as multisets of
 * identities: r->messages, r->lacking (and their ids).  A large body of
 * the live that cannot be read counts as absent (lacking errs on the side
 * of too many).  `cancel` (may be NULL) is polled: -ECANCELED.  0, or
 * -errno with r->error.  Both journals are only read.
 */
int keel_saved_compare(const char *copy_path, const char *live_journal_dir,
		       const char *live_large_dir, const atomic_bool *cancel,
		       keel_saved_result *r);

/* Hard-link every segment file of journal_dir into dst (removed first,
 * then created): a snapshot of a replica that later operations only append
 * to (segments are append-only, their deletes unlink other names).  The
 * caller removes dst.  0 or -errno. */
int keel_saved_link_journal(const char *journal_dir, const char *dst);

#endif
