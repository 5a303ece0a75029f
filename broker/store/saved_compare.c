/*
 * saved_compare.c - what a saved copy holds that the new live lacks (see
 * saved.h): messages identified by content (a 64-bit FNV-1a hash of
 * address, priority, expiry, user headers as a set and body), both
 * journals read with keel_journal_read (read only), the two multisets of
 * identities sorted and merged.  Also the hard-linked snapshot of a
 * replica's journal the comparison reads while the replica goes on.
 *
 * Owns only what one call allocates.  Any thread (the backup's libuv pool
 * thread; tests; keelctl).
 */
#include "saved.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "keel/alloc.h"
#include "log.h"

/* ---- identity ---------------------------------------------------------------- */

#define FNV_OFFSET 14695981039346656037ull
#define FNV_PRIME 1099511628211ull

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= FNV_PRIME;
	}
	return h;
}

static uint64_t fnv_u64(uint64_t h, uint64_t v)
{
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	return fnv(h, b, sizeof(b));
}

/* A length-prefixed string, so that ("ab","c") and ("a","bc") differ. */
static uint64_t fnv_str(uint64_t h, const char *s, size_t n)
{
	return fnv(fnv_u64(h, n), s, n);
}

/* The body of a large message, streamed through the hash. */
static int hash_file(uint64_t *h, const char *large_dir, uint64_t id, uint64_t size)
{
	char path[KEEL_MAX_PATH_BYTES];
	if (snprintf(path, sizeof(path), "%s/%" PRIu64 ".msg", large_dir, id) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	uint8_t *buf = keel_malloc(KEEL_SAVED_HASH_CHUNK);
	int rc = buf ? 0 : -ENOMEM;
	uint64_t left = size;
	while (rc == 0 && left > 0) {
		size_t want = left < KEEL_SAVED_HASH_CHUNK ? (size_t)left : KEEL_SAVED_HASH_CHUNK;
		ssize_t k = read(fd, buf, want);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			rc = k < 0 ? -errno : -EIO; /* shorter than journaled */
			break;
		}
		*h = fnv(*h, buf, (size_t)k);
		left -= (uint64_t)k;
	}
	keel_free(buf);
	close(fd);
	return rc;
}

int keel_saved_msg_hash(const keel_journal_msgview *m, const char *large_dir, uint64_t *out)
{
	uint64_t h = fnv_str(FNV_OFFSET, m->address, m->address_len);
	h = fnv_u64(h, m->priority);
	h = fnv_u64(h, (uint64_t)m->expires_ms);
	/* headers as a set: each hashed alone, the hashes added */
	uint64_t hsum = 0;
	size_t rlen = strlen(KEEL_SAVED_RESENT_HEADER);
	for (size_t i = 0; i < m->header_count; i++) {
		const keel_kv *kv = &m->headers[i];
		if (kv->name_len == rlen && memcmp(kv->name, KEEL_SAVED_RESENT_HEADER, rlen) == 0)
			continue;
		hsum += fnv_str(fnv_str(FNV_OFFSET, kv->name, kv->name_len), kv->value,
				kv->value_len);
	}
	h = fnv_u64(h, hsum);
	h = fnv_u64(h, m->body_len);
	if (m->large) {
		int rc = hash_file(&h, large_dir, m->id, m->body_len);
		if (rc)
			return rc;
	} else {
		h = fnv(h, m->body, (size_t)m->body_len);
	}
	*out = h;
	return 0;
}

/* ---- the comparison ---------------------------------------------------------------- */

typedef struct ident {
	uint64_t hash;
	uint64_t id;
	bool unreadable;     /* a large body that could not be read */
} ident;

typedef struct collect {
	const char *large_dir;
	const atomic_bool *cancel;
	bool skip_unreadable; /* the live's: an unreadable body is not counted */
	ident *v;
	size_t n, cap;
} collect;

static int collect_one(void *ud, const keel_journal_msgview *m)
{
	collect *c = ud;
	if (c->cancel && atomic_load(c->cancel))
		return -ECANCELED;
	ident it = { .id = m->id };
	int rc = keel_saved_msg_hash(m, c->large_dir, &it.hash);
	if (rc == -ENOMEM)
		return rc;
	if (rc) {
		keel_log_warn("saved journals: body of message %" PRIu64 " in %s: %s", m->id,
			      c->large_dir, strerror(-rc));
		if (c->skip_unreadable)
			return 0;
		it.unreadable = true;
	}
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 256;
		ident *nv = keel_realloc(c->v, cap * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		c->v = nv;
		c->cap = cap;
	}
	c->v[c->n++] = it;
	return 0;
}

static int cmp_ident(const void *a, const void *b)
{
	const ident *x = a, *y = b;
	if (x->unreadable != y->unreadable)
		return x->unreadable ? 1 : -1; /* at the end: they match nothing */
	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Read `dir` (a missing journal directory holds nothing) into c. */
static int collect_dir(const char *dir, unsigned flags, collect *c, char *err, size_t errlen)
{
	struct stat st;
	if (stat(dir, &st) < 0 && errno == ENOENT)
		return 0;
	return keel_journal_read(dir, flags, collect_one, c, NULL, err, errlen);
}

/* Merge the sorted multisets: the copy's identities not matched by one of
 * the live's (each match used once) are lacking. */
static int merge(const collect *copy, const collect *live, keel_saved_result *r)
{
	r->lacking_ids = keel_malloc((copy->n ? copy->n : 1) * sizeof(uint64_t));
	if (r->lacking_ids == NULL)
		return -ENOMEM;
	size_t i = 0, k = 0;
	while (i < copy->n) {
		const ident *a = &copy->v[i];
		while (k < live->n && !a->unreadable && live->v[k].hash < a->hash)
			k++;
		if (!a->unreadable && k < live->n && live->v[k].hash == a->hash) {
			k++; /* matched: this live message is used up */
		} else {
			r->lacking_ids[r->nlacking++] = a->id;
		}
		i++;
	}
	if (r->nlacking > 1)
		qsort(r->lacking_ids, r->nlacking, sizeof(uint64_t), cmp_u64);
	r->lacking = (int64_t)r->nlacking;
	return 0;
}

int keel_saved_compare(const char *copy_path, const char *live_journal_dir,
		       const char *live_large_dir, const atomic_bool *cancel,
		       keel_saved_result *r)
{
	char jdir[KEEL_MAX_PATH_BYTES], ldir[KEEL_MAX_PATH_BYTES];
	memset(r, 0, sizeof(*r));
	r->messages = r->lacking = -1;
	r->compared_s = (int64_t)time(NULL);
	if (snprintf(jdir, sizeof(jdir), "%s/journal", copy_path) >= (int)sizeof(jdir) ||
	    snprintf(ldir, sizeof(ldir), "%s/large-messages", copy_path) >= (int)sizeof(ldir)) {
		snprintf(r->error, sizeof(r->error), "%s: path too long", copy_path);
		return -ENAMETOOLONG;
	}
	collect live = { .large_dir = live_large_dir, .cancel = cancel, .skip_unreadable = true };
	collect copy = { .large_dir = ldir, .cancel = cancel };
	char err[sizeof(r->error)] = "";
	int rc = collect_dir(live_journal_dir, KEEL_JOURNAL_READ_TOLERANT, &live, err,
			     sizeof(err));
	if (rc) {
		snprintf(r->error, sizeof(r->error), "the live's journal: %s",
			 err[0] ? err : strerror(-rc));
		goto out;
	}
	rc = collect_dir(jdir, 0, &copy, err, sizeof(err));
	if (rc) {
		snprintf(r->error, sizeof(r->error), "the saved journal: %s",
			 err[0] ? err : strerror(-rc));
		goto out;
	}
	if (copy.n > 1)
		qsort(copy.v, copy.n, sizeof(ident), cmp_ident);
	if (live.n > 1)
		qsort(live.v, live.n, sizeof(ident), cmp_ident);
	r->messages = (int64_t)copy.n;
	rc = merge(&copy, &live, r);
	if (rc) {
		snprintf(r->error, sizeof(r->error), "out of memory");
		r->messages = -1;
	}
out:
	keel_free(live.v);
	keel_free(copy.v);
	return rc;
}

/* ---- the snapshot of a replica's journal ---------------------------------------------- */

static bool segment_name(const char *name)
{
	size_t n = strlen(name);
	return n > 9 && strncmp(name, "keel-", 5) == 0 && strcmp(name + n - 4, ".jnl") == 0;
}

int keel_saved_link_journal(const char *journal_dir, const char *dst)
{
	int rc = keel_saved_remove_tree(dst);
	if (rc)
		return rc;
	if (mkdir(dst, 0755) < 0)
		return -errno;
	DIR *d = opendir(journal_dir);
	if (d == NULL)
		return errno == ENOENT ? 0 : -errno;
	int dfd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		rc = -errno;
		closedir(d);
		return rc;
	}
	struct dirent *e;
	while (rc == 0 && (e = readdir(d)) != NULL)
		if (segment_name(e->d_name) &&
		    linkat(dirfd(d), e->d_name, dfd, e->d_name, 0) < 0 && errno != ENOENT)
			rc = -errno;
	close(dfd);
	closedir(d);
	return rc;
}
