/*
 * journal_compact.c - keeping the journal's size to its live data, and
 * the replication view of its files: compaction moves the live records of
 * the oldest segment to the end, reclaim deletes the oldest segments that
 * hold nothing live; the tap hands each batch's file operations to a
 * replica, and a snapshot lists the segments and holds reclaim meanwhile.
 *
 * Owns tap_ops and reclaim_hold.  Loop thread only.
 */
#include "journal_int.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

/* ---- compaction and reclaim (loop) -------------------------------------- */

/* Delete the oldest segments while they hold nothing live. */
int journal__reclaim(keel_journal *j)
{
	int n = 0;
	/* never the newest either (active or not): journal.head names it */
	while (!j->reclaim_hold && j->segs && j->segs != j->active && j->segs != j->segs_tail &&
	       j->segs->live_count == 0) {
		jseg *s = j->segs;
		jop *op = journal__batch_op(j->open);
		if (op == NULL) {
			journal__note_oom(j);
			break;
		}
		*op = (jop){ .kind = OP_DELETE, .seg = s->id };
		j->segs = s->next;
		if (j->segs_tail == s)
			j->segs_tail = NULL;
		j->seg_count--;
		j->used_total -= s->used;
		keel_free(s);
		n++;
	}
	j->st.compacted_segments += (uint64_t)n;
	return n;
}

/* Move the live records of the oldest segment to the end (then it is
 * reclaimed).  `force`: whatever the ratio. */
int journal__compact_step(keel_journal *j, bool force)
{
	jseg *s = j->segs;
	if (s == NULL || s == j->active)
		return 0;
	if (!force && (j->seg_count <= j->compact_min || j->live_total * 2 >= j->used_total))
		return 0;
	if (j->reclaim_hold)
		return 0;
	j->compacting = true;
	while (s->ents) {
		if (journal__ent_write(j, s->ents, true)) {
			j->compacting = false;
			return -ENOMEM;
		}
	}
	j->compacting = false;
	return 1;
}

/* ---- replication (replman.c) -------------------------------------------- */

/* Hand the batch's file operations to the tap (a replica mirrors them). */
void journal__tap_batch(keel_journal *j, const jbatch *b)
{
	if (b->nops > j->tap_cap) {
		size_t cap = b->nops * 2;
		keel_journal_fileop *n = keel_realloc(j->tap_ops, cap * sizeof(*n));
		if (n == NULL) {
			/* the replica would miss records: tell the tap */
			j->tap(j->tap_ud, NULL, 0, b->last_seq, NULL, 0);
			return;
		}
		j->tap_ops = n;
		j->tap_cap = cap;
	}
	size_t n = 0;
	/* the journal's operations, then the other files' (the writer runs
	 * them in that order: w_exec) */
	for (size_t i = 0; i < b->nops; i++) {
		const jop *op = &b->ops[i];
		if (op->kind == OP_EXT_WRITE || op->kind == OP_EXT_UNLINK)
			continue;
		keel_journal_fileop *f = &j->tap_ops[n++];
		static const uint8_t kinds[] = {
			[OP_CREATE] = KEEL_JOURNAL_FOP_CREATE, [OP_WRITE] = KEEL_JOURNAL_FOP_WRITE,
			[OP_DELETE] = KEEL_JOURNAL_FOP_DELETE, [OP_DROP] = KEEL_JOURNAL_FOP_DROP,
			[OP_TRUNC] = KEEL_JOURNAL_FOP_TRUNCATE,
		};
		bool bytes = op->kind == OP_CREATE || op->kind == OP_WRITE;
		f->kind = kinds[op->kind];
		f->seg = op->seg;
		f->off = op->kind == OP_WRITE || op->kind == OP_TRUNC || op->kind == OP_DROP ? op->off
											       : 0;
		f->size = op->kind == OP_CREATE || op->kind == OP_TRUNC ? op->size : 0;
		f->data = bytes ? b->buf + op->buf_off : NULL;
		f->len = bytes ? op->len : 0;
		f->path = NULL;
	}
	for (size_t i = 0; i < b->nops; i++) {
		const jop *op = &b->ops[i];
		if (op->kind != OP_EXT_WRITE && op->kind != OP_EXT_UNLINK)
			continue;
		keel_journal_fileop *f = &j->tap_ops[n++];
		bool w = op->kind == OP_EXT_WRITE;
		*f = (keel_journal_fileop){
			.kind = w ? KEEL_JOURNAL_FOP_EXT_WRITE : KEEL_JOURNAL_FOP_EXT_UNLINK,
			.off = w ? op->off : 0,
			.data = w ? b->buf + op->buf_off + op->size : NULL,
			.len = w ? op->len : 0,
			.path = (const char *)b->buf + op->buf_off,
		};
	}
	j->tap(j->tap_ud, j->tap_ops, n, b->last_seq, b->large, b->nlarge);
}

void keel_journal_set_tap(keel_journal *j, keel_journal_tap_fn fn, void *ud)
{
	j->tap = fn;
	j->tap_ud = ud;
}

int keel_journal_snapshot_begin(keel_journal *j, keel_journal_snapshot *out)
{
	memset(out, 0, sizeof(*out));
	size_t n = 0;
	for (jseg *s = j->segs; s; s = s->next)
		n++;
	if (n) {
		out->files = keel_calloc(n, sizeof(*out->files));
		if (out->files == NULL)
			return -ENOMEM;
	}
	for (jseg *s = j->segs; s; s = s->next) {
		keel_journal_snapfile *f = &out->files[out->count++];
		f->seg = s->id;
		f->used = s->used;
		f->size = s->size;
		journal__seg_name(f->name, sizeof(f->name), s->id);
		out->bytes += s->used;
	}
	out->ticket = j->appended;
	j->reclaim_hold++;
	return 0;
}

void keel_journal_snapshot_end(keel_journal *j, keel_journal_snapshot *snap)
{
	if (snap->files == NULL && snap->count == 0 && snap->ticket == 0 && snap->bytes == 0)
		return; /* never begun, or ended */
	assert(j->reclaim_hold > 0);
	j->reclaim_hold--;
	keel_free(snap->files);
	memset(snap, 0, sizeof(*snap));
}

void keel_journal_segment_name(uint64_t seg, char *buf, size_t len)
{
	journal__seg_name(buf, len, seg);
}

bool keel_journal_segment_id(const char *name, uint64_t *seg)
{
	return journal__seg_name_parse(name, seg);
}

const char *keel_journal_dir(const keel_journal *j)
{
	return j->dir;
}
