/*
 * paging_int.h - the page files' internals (paging.h), shared by the
 * files of the pager, bottom to top: paging_sets.c (queue sets),
 * paging_format.c (names, the format, an address's state),
 * paging_recovery.c (the files found at open), paging.c (append, read
 * back, purge, a failed batch, the entry points).  Each calls only the
 * files below it.  The format and the invariants: paging_format.c.
 * Loop thread only.
 */
#ifndef KEEL_PAGING_INT_H
#define KEEL_PAGING_INT_H

#include "paging.h"

#include <stdbool.h>
#include <stdint.h>

#include "keel/alloc.h"
#include "paging_sets.h"

#define HASH_NONFATAL_OOM 1
#define uthash_malloc(sz) keel_malloc(sz)
#define uthash_free(ptr, sz) keel_free(ptr)
#include <uthash.h>

#define P_VERSION 2
#define P_HDR 32
#define P_REC_HDR 8
#define P_MAGIC "KEELPAG"
#define P_CMAGIC "KEELPCU"
#define P_PERSISTENT 1
#define P_PURGE 2

/* A purge mark: records before (seq, off) lose queue q when read back. */
typedef struct ppurge {
	struct ppurge *next;
	uint64_t seq, off;
	char q[];
} ppurge;

/* A page write not yet durable (ticket > synced): what a failed batch
 * lost.  A record (set) or a purge mark (mark). */
typedef struct pend {
	uint64_t ticket;
	uint64_t seq, off;      /* where it starts */
	keel_pgset *set;
	ppurge *mark;
} pend;

/* A failed batch's loss: file seq ends at off, files seq+1..hi hold
 * nothing (their records were lost). */
typedef struct pcut {
	uint64_t seq, off, hi;
} pcut;

typedef struct paddr {
	UT_hash_handle hh;
	keel_paging *pg;
	char *name;
	char dir[4096];
	uint64_t first_seq;     /* oldest file (0: none) */
	uint64_t last_seq;      /* the file written */
	uint64_t w_off;         /* its end */
	bool new_file;          /* the next record opens a new file */
	uint64_t werrs;         /* the journal's write errors when last_seq opened */
	uint64_t t1, o1, t2, o2; /* tickets of writes to last_seq and their ends */
	uint64_t readable;      /* of last_seq: written by the writer */
	uint64_t prev_t;        /* ticket of the last write to the files before
				   last_seq: they are whole once it is synced */
	uint64_t old_last;      /* files <= it were there at open */
	bool old_pending;       /* records of those files are still to be read */
	uint64_t r_seq, r_off;  /* the next record to read */
	int r_fd;
	uint64_t r_fd_seq;
	uint8_t *rbuf;
	size_t rbuf_cap;
	size_t rbuf_len;
	uint64_t rbuf_off;      /* file offset of rbuf[0] */
	uint64_t count;         /* records to read back */
	const char **qnames;
	size_t qcap;
	char *qstore;
	size_t qstore_cap;
	keel_sync_waiter kick;
	keel_pgsets sets;       /* the queue sets of the records to read back */
	ppurge *purges;         /* purge marks not yet passed, in order */
	ppurge *purges_tail;
	pend *pend;             /* ring: writes not known durable, in order */
	size_t pend_cap, pend_head, pend_len;
	pcut *cuts;             /* losses the reader has not passed, in order */
	size_t ncuts, cuts_cap;
	uint64_t unl_lo, unl_t; /* unlinks of files unl_lo..first_seq-1 asked,
				   durable once unl_t is synced */
	uint64_t cur_t;         /* ticket of the last cursor write */
	uint64_t rm_t;          /* ticket of the last cursor unlink */
	uint64_t rm_seq;        /* last_seq when its directory's removal was
				   asked (rm_w: once the drain is on disk) */
	keel_sync_waiter rm_w;
	bool gone;              /* deleted: on pg->gone until its unlinks are
				   on disk (a failed batch asks them again) */
	uint64_t gone_t;
	struct paddr *gone_next;
} paddr;

struct keel_paging {
	keel_core *core;
	keel_journal *j;
	const keel_sync *sync;
	keel_events *events;
	char *dir;
	uint64_t file_size;
	paddr *addrs;
	uint8_t *enc;
	size_t enc_cap;
	keel_paging_stats st;
	bool started;
	size_t old_pending;     /* addresses with old_pending: the journal keeps
				   what its open saw until none is left */
	uint64_t max_seq;       /* the largest file seq used: a new address's
				   files follow it (never a seq whose unlink
				   may still be on its way) */
	paddr *gone;            /* deleted addresses (paddr.gone) */
};

typedef struct rd {
	const uint8_t *p;
	size_t left;
	bool bad;
} rd;

/* ---- paging_format.c: names, the format, an address's state ---------- */

void paging__file_path(const paddr *pa, uint64_t seq, char *out, size_t len);
bool paging__unhex(const char *h, char *out, size_t len);
bool paging__seq_parse(const char *name, uint64_t *seq);
void paging__file_header(uint8_t *h, uint64_t seq);
/* 0, -EBADMSG, -EPROTONOSUPPORT */
int paging__file_header_check(const uint8_t *h);
void paging__cursor_encode(uint8_t *c, uint64_t seq, uint64_t off);
/* Length of the whole, valid record at buf[0..avail) (0: none). */
uint32_t paging__rec_valid(const uint8_t *buf, size_t avail);
/* Lay out m's record / a purge mark of q in pg->enc; its length or -errno. */
int64_t paging__rec_encode(keel_paging *pg, const keel_msg *m, keel_queue *const *qs, size_t n);
int64_t paging__mark_encode(keel_paging *pg, const char *q);
/* A record's flags and message id. */
bool paging__rec_peek(const uint8_t *rec, uint32_t len, uint8_t *flags, uint64_t *id);
int paging__qnames_reserve(paddr *pa, size_t n);
/* A record's flags and queue names (in pa->qnames[0..*nq)); r is left at
 * the message id.  0, -EBADMSG, -ENOMEM. */
int paging__rec_head(paddr *pa, const uint8_t *rec, uint32_t len, rd *r, uint8_t *flags,
		     uint16_t *nq, char **qs_end);
/* A record into a message and its queue names.  0, -EBADMSG, -ENOMEM. */
int paging__rec_decode(paddr *pa, const uint8_t *rec, uint32_t len, keel_paged_msg *out);
/* An address's state, made when missing (create); freed. */
paddr *paging__paddr_get(keel_paging *pg, const char *name, bool create);
void paging__paddr_free(keel_paging *pg, paddr *pa);
void paging__purges_clear(paddr *pa);

/* ---- paging_recovery.c: the files found at open ----------------------- */

/* <dir>/<hex>: its files read, torn tails cut, the records to read back
 * counted (the core's paged count set).  0 or -errno with err. */
int paging__recover_address(keel_paging *pg, const char *hex, uint64_t *max_id, char *err,
			    size_t errlen);

#endif
