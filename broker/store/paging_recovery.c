/*
 * paging_recovery.c - page files found at open (paging_int.h): each
 * address's files read from its cursor, torn tails cut (paging.truncated),
 * a creation that wrote nothing removed, the records to read back counted
 * in their queue sets with the purge marks after them, the core's paged
 * counts set; an address with nothing to read back loses its files and
 * directory.  Synchronous I/O, at open, on the loop thread.
 */
#include "paging_int.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "bytes.h"
#include "crc32c.h"
#include "fsutil.h"
#include "keel/alloc.h"
#include "limits.h"
#include "log.h"

/* ---- recovery ---------------------------------------------------------------- */

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

/* A record to read back, counted in its queue set. */
static int recover_record(keel_paging *pg, paddr *pa, const uint8_t *rec, uint32_t len)
{
	rd r;
	uint8_t flags;
	uint16_t n;
	char *qs;
	int rc = paging__rec_head(pa, rec, len, &r, &flags, &n, &qs);
	if (rc == -EBADMSG || n == 0) {
		pg->st.skipped++; /* the reader skips it too */
		return 0;
	}
	if (rc)
		return rc;
	if (keel_pgsets_add(&pa->sets, pa->qnames, n) == NULL)
		return -ENOMEM;
	pa->count++;
	pg->st.recovered++;
	return 0;
}

/* A purge mark: the records counted before it lose its queue (as when
 * it was written), and the reader filters them. */
static int recover_mark(keel_paging *pg, paddr *pa, uint64_t seq, uint64_t off,
			const uint8_t *rec, uint32_t len)
{
	rd r;
	uint8_t flags;
	uint16_t n;
	char *qs;
	int rc = paging__rec_head(pa, rec, len, &r, &flags, &n, &qs);
	if (rc == -EBADMSG || n != 1)
		return 0; /* not a mark this reader knows: nothing purged */
	if (rc)
		return rc;
	size_t k = strlen(pa->qnames[0]);
	ppurge *p = keel_malloc(sizeof(*p) + k + 1);
	if (p == NULL)
		return -ENOMEM;
	uint64_t dead = 0;
	rc = keel_pgsets_purge(&pa->sets, pa->qnames[0], &dead);
	if (rc) {
		keel_free(p);
		return rc;
	}
	memcpy(p->q, pa->qnames[0], k + 1);
	p->seq = seq;
	p->off = off;
	p->next = NULL;
	if (pa->purges_tail)
		pa->purges_tail->next = p;
	else
		pa->purges = p;
	pa->purges_tail = p;
	assert(dead <= pa->count);
	pa->count -= dead;
	pg->st.recovered -= dead;
	pg->st.skipped += dead;
	return 0;
}

/* One file at open: cut its torn tail, count what is to be read back. */
static int recover_file(keel_paging *pg, paddr *pa, uint64_t seq, uint64_t from, bool newest,
			uint64_t *max_id, char *err, size_t errlen)
{
	char path[4200];
	paging__file_path(pa, seq, path, sizeof(path));
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "paging: %s: %s", path, strerror(errno));
		return -errno;
	}
	struct stat stt;
	uint8_t *buf = NULL;
	int rc = 0;
	if (fstat(fd, &stt) < 0) {
		rc = -errno;
		goto out;
	}
	size_t size = (size_t)stt.st_size;
	buf = keel_malloc(size > P_HDR ? size : P_HDR);
	if (buf == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (size && pread(fd, buf, size, 0) != (ssize_t)size) {
		rc = -EIO;
		goto out;
	}
	rc = size < P_HDR ? -EBADMSG : paging__file_header_check(buf);
	bool unwritten = size < P_HDR;
	for (size_t i = 0; i < P_HDR && !unwritten && buf[i] == 0; i++)
		unwritten = i + 1 == P_HDR;
	if (rc == -EBADMSG && (newest || unwritten)) {
		/* its creation was torn (the header is its first write), or a
		 * failed batch (a full disk) created it and wrote nothing: it
		 * held nothing that was receipted */
		close(fd);
		fd = -1;
		keel_free(buf);
		if (unlink(path) < 0)
			return -errno;
		return 1;
	}
	if (rc) {
		snprintf(err, errlen, "paging: %s: %s", path,
			 rc == -EPROTONOSUPPORT ? "unknown page file version"
						: "damaged page file header");
		goto out;
	}
	uint64_t off = P_HDR;
	uint32_t len;
	while ((len = paging__rec_valid(buf + off, size - off)) != 0) {
		uint8_t flags;
		uint64_t id;
		if (paging__rec_peek(buf + off, len, &flags, &id)) {
			if (id > *max_id)
				*max_id = id;
			/* a message the journal saw was read back before the
			 * crash, though the cursor may say otherwise (it is
			 * written after the journal's records) */
			if (off < from)
				;
			else if (flags & P_PURGE)
				rc = recover_mark(pg, pa, seq, off, buf + off, len);
			else if ((flags & P_PERSISTENT) && !keel_journal_saw_message(pg->j, id))
				rc = recover_record(pg, pa, buf + off, len);
			else
				pg->st.skipped++;
			if (rc)
				goto out;
		}
		off += len;
	}
	if (off < size) {
		if (ftruncate(fd, (off_t)off) < 0 || fdatasync(fd) < 0) {
			rc = -errno;
			goto out;
		}
		pg->st.truncated++;
		keel_log_warn("paging: %s: torn tail cut at %" PRIu64 " (%zu bytes)", path, off,
			      size - (size_t)off);
		if (pg->events)
			keel_events_emit(pg->events, "paging.truncated", "{s:s, s:I, s:I}", "file",
					 path, "offset", (json_int_t)off, "bytes",
					 (json_int_t)(size - off));
	}
	pg->st.files++;
out:
	keel_free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

int paging__recover_address(keel_paging *pg, const char *hex, uint64_t *max_id, char *err,
			   size_t errlen)
{
	char name[KEEL_CORE_NAME_BUF];
	if (!paging__unhex(hex, name, sizeof(name)))
		return 0; /* not ours */
	paddr *pa = paging__paddr_get(pg, name, true);
	if (pa == NULL)
		return -ENOMEM;
	uint64_t *seqs = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	DIR *d = opendir(pa->dir);
	if (d == NULL)
		return -errno;
	struct dirent *de;
	uint64_t cseq = 0, coff = 0;
	while ((de = readdir(d)) != NULL) {
		uint64_t s;
		if (!paging__seq_parse(de->d_name, &s))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			uint64_t *ns = keel_realloc(seqs, cap * sizeof(*ns));
			if (ns == NULL) {
				rc = -ENOMEM;
				goto out;
			}
			seqs = ns;
		}
		seqs[n++] = s;
	}
	if (n)
		qsort(seqs, n, sizeof(*seqs), cmp_u64);
	char path[4200];
	snprintf(path, sizeof(path), "%s/cursor", pa->dir);
	int cfd = open(path, O_RDONLY | O_CLOEXEC);
	if (cfd >= 0) {
		uint8_t c[P_HDR];
		if (pread(cfd, c, P_HDR, 0) == P_HDR && memcmp(c, P_CMAGIC, 8) == 0 &&
		    keel_get_le32(c + 28) == keel_crc32c(0, c, 28)) {
			cseq = keel_get_le64(c + 8);
			coff = keel_get_le64(c + 16);
		}
		close(cfd);
	}
	uint64_t last = 0, files = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (seqs[i] > pg->max_seq)
			pg->max_seq = seqs[i];
		if (seqs[i] < cseq) {
			/* read back before the crash; its unlink was not done */
			paging__file_path(pa, seqs[i], path, sizeof(path));
			(void)unlink(path);
			continue;
		}
		uint64_t from = seqs[i] == cseq && coff > P_HDR ? coff : P_HDR;
		rc = recover_file(pg, pa, seqs[i], from, i + 1 == n, max_id, err, errlen);
		if (rc == 1) {
			rc = 0;
			continue;
		}
		if (rc)
			break;
		files++;
		if (pa->first_seq == 0) {
			pa->first_seq = seqs[i];
			pa->r_seq = seqs[i];
			pa->r_off = from;
		}
		last = seqs[i];
	}
	if (rc)
		goto out;
	pa->last_seq = last;
	pa->old_last = last;
	pa->new_file = true;
	pa->readable = UINT64_MAX;
	if (last) {
		paging__file_path(pa, last, path, sizeof(path));
		struct stat stt;
		if (stat(path, &stt) == 0)
			pa->w_off = (uint64_t)stt.st_size;
		pa->o1 = pa->o2 = pa->w_off;
	}
	if (pa->count == 0) {
		/* nothing to read back: the files go now, the cursor and the
		 * directory too, and the address is forgotten */
		for (uint64_t s = pa->first_seq; s && s <= last; s++) {
			paging__file_path(pa, s, path, sizeof(path));
			(void)unlink(path);
		}
		pg->st.files -= files;
		snprintf(path, sizeof(path), "%s/cursor", pa->dir);
		(void)unlink(path);
		if (rmdir(pa->dir) == 0)
			(void)keel_fsync_dir(pg->dir);
		closedir(d);
		keel_free(seqs);
		paging__paddr_free(pg, pa);
		return 0;
	}
	keel_address *a = keel_address_find(pg->core, name);
	if (a == NULL) {
		rc = keel_address_create(pg->core, name, KEEL_ANYCAST, true, &a);
		if (rc) {
			snprintf(err, errlen, "paging: cannot create address '%s': %s", name,
				 strerror(-rc));
			goto out;
		}
	}
	keel_address_set_paged_count(a, pa->count);
	pa->old_pending = true;
	pg->old_pending++;
	keel_log_info("paging: %s: %" PRIu64 " messages to read back", name, pa->count);
out:
	closedir(d);
	keel_free(seqs);
	return rc;
}

