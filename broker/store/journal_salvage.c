/*
 * journal_salvage.c - the offline check and salvage of a journal directory
 * (keel_journal_check, keel_journal_salvage; keelctl journal check|salvage).
 * Unlike recovery, which stops at the first damage, the scan goes on past
 * each piece of damage to the next valid record, so it can say all that is
 * damaged and keep every record that is intact.
 *
 * Owns the scan's per-file tables and the salvage's output files.  Uses
 * the record check and the replay by identity of journal_format.c and
 * journal_recovery.c.  Any one thread; the broker must not run on the
 * directory meanwhile.
 */
#include "journal_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bytes.h"
#include "crc32c.h"
#include "fsutil.h"
#include "limits.h"

/* One segment file as the scan saw it. */
typedef struct sfile {
	uint64_t id;
	uint64_t size;           /* of the file */
	uint64_t hdr_size;       /* capacity its header says (0: no header) */
	bool hdr_ok;
	uint32_t prev_used;
	uint64_t end;            /* end of the last intact record */
	uint64_t *recs;          /* intact records: offset << 32 is not enough, so */
	uint32_t *lens;          /* offsets and lengths in two arrays */
	size_t nrecs, cap;
} sfile;

typedef struct scan {
	const char *dir;
	sfile *files;
	size_t n;
	replay *rp;
	uint64_t mid_floor, oid_floor;
	keel_journal_damage_fn fn;
	void *ud;
	keel_journal_check_stats *st;
	/* orphans: (queue, message) pairs whose REF_ADD salvage leaves out */
	uint64_t (*orphans)[2];
	size_t norphans, orphcap;
	bool orphan_oom;
} scan;

static void report(scan *sc, int kind, uint64_t seg, uint64_t off, uint64_t bytes,
		   const char *queue, uint64_t qid, uint64_t mid, const char *fmt, ...)
	__attribute__((format(printf, 9, 10)));

static void report(scan *sc, int kind, uint64_t seg, uint64_t off, uint64_t bytes,
		   const char *queue, uint64_t qid, uint64_t mid, const char *fmt, ...)
{
	keel_journal_damage d = { .kind = kind, .seg = seg, .offset = off, .bytes = bytes,
				  .queue = queue, .queue_id = qid, .message = mid };
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d.what, sizeof(d.what), fmt, ap);
	va_end(ap);
	sc->st->damages++;
	sc->st->damaged_bytes += bytes;
	if (kind != KEEL_JDAMAGE_TAIL)
		sc->st->refuses = true;
	if (kind == KEEL_JDAMAGE_ORPHAN)
		sc->st->lost_refs++;
	if (sc->fn)
		sc->fn(sc->ud, &d);
}

static int read_file(const char *dir, const char *name, uint8_t **out, uint64_t *size)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	uint8_t *buf = keel_malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		close(fd);
		return -ENOMEM;
	}
	uint64_t have = 0;
	while (have < (uint64_t)st.st_size) {
		ssize_t k = pread(fd, buf + have, (size_t)((uint64_t)st.st_size - have), (off_t)have);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			int rc = k < 0 ? -errno : -EIO;
			keel_free(buf);
			close(fd);
			return rc;
		}
		have += (uint64_t)k;
	}
	close(fd);
	*out = buf;
	*size = have;
	return 0;
}

static uint64_t nonzero_end(const uint8_t *buf, uint64_t from, uint64_t size)
{
	while (size > from && buf[size - 1] == 0)
		size--;
	return size;
}

static uint64_t next_valid(const uint8_t *buf, uint64_t from, uint64_t end)
{
	for (uint64_t q = from; q < end && end - q >= J_REC_HDR; q++)
		if (journal__rec_valid(buf, q, end))
			return q;
	return 0;
}

static int add_rec(sfile *f, uint64_t off, uint32_t len)
{
	if (f->nrecs == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 256;
		uint64_t *r = keel_realloc(f->recs, cap * sizeof(*r));
		if (r == NULL)
			return -ENOMEM;
		f->recs = r;
		uint32_t *l = keel_realloc(f->lens, cap * sizeof(*l));
		if (l == NULL)
			return -ENOMEM;
		f->lens = l;
		f->cap = cap;
	}
	f->recs[f->nrecs] = off;
	f->lens[f->nrecs++] = len;
	return 0;
}

/* Scan one file (read whole): its header, then records, resyncing past
 * damage to the next valid record. */
static int scan_file(scan *sc, sfile *f, bool newest)
{
	char name[64];
	journal__seg_name(name, sizeof(name), f->id);
	uint8_t *buf;
	int rc = read_file(sc->dir, name, &buf, &f->size);
	if (rc)
		return rc;
	sc->st->segments++;
	f->hdr_ok = f->size >= J_SEG_HDR && journal__seg_header_ok(buf) &&
		    keel_get_le64(buf + 16) == f->id;
	if (f->hdr_ok) {
		f->hdr_size = keel_get_le64(buf + 24);
		f->prev_used = keel_get_le32(buf + 56);
		if (keel_get_le64(buf + 32) > sc->mid_floor)
			sc->mid_floor = keel_get_le64(buf + 32);
		if (keel_get_le64(buf + 40) > sc->oid_floor)
			sc->oid_floor = keel_get_le64(buf + 40);
	} else {
		/* the records after a damaged header may be intact: read on */
		report(sc, KEEL_JDAMAGE_HEADER, f->id, 0, f->size < J_SEG_HDR ? f->size : J_SEG_HDR,
		       NULL, 0, 0, "%s: segment header damaged%s", name,
		       f->size < J_SEG_HDR ? " (file shorter than a header)" : "");
	}
	uint64_t off = J_SEG_HDR;
	while (off < f->size) {
		uint32_t len = journal__rec_valid(buf, off, f->size);
		if (len) {
			int r = journal__replay_rec(sc->rp, buf + off, len);
			if (r == -ENOMEM) {
				keel_free(buf);
				return r;
			}
			if (r == 0) {
				if (add_rec(f, off, len)) {
					keel_free(buf);
					return -ENOMEM;
				}
				sc->st->records++;
				f->end = off + len;
				off += len;
				continue;
			}
			/* a record whose CRC holds but whose payload does not
			 * parse: damage like any other */
		}
		uint64_t nz = nonzero_end(buf, off, f->size);
		if (nz == off)
			break; /* zeros to the end */
		uint64_t q = next_valid(buf, off + 1, f->size);
		if (q) {
			report(sc, KEEL_JDAMAGE_RECORDS, f->id, off, q - off, NULL, 0, 0,
			       "%s: %" PRIu64 " bytes at offset %" PRIu64
			       " are no valid record (valid records follow at offset %" PRIu64 ")",
			       name, q - off, off, q);
			off = q;
			continue;
		}
		report(sc, newest ? KEEL_JDAMAGE_TAIL : KEEL_JDAMAGE_RECORDS, f->id, off, nz - off,
		       NULL, 0, 0, "%s: %" PRIu64 " bytes at offset %" PRIu64 " are no valid record%s",
		       name, nz - off, off,
		       newest ? " (the newest segment's torn tail: recovery cuts it)"
			      : " (up to the end of the records; the segment is not the newest)");
		break;
	}
	if (f->end == 0)
		f->end = J_SEG_HDR;
	if (newest && f->hdr_ok && f->size < f->hdr_size)
		report(sc, KEEL_JDAMAGE_END, f->id, f->size, 0, NULL, 0, 0,
		       "%s: the newest segment is %" PRIu64 " bytes, its header says %" PRIu64
		       ": cut short (records after offset %" PRIu64 " may be lost)",
		       name, f->size, f->hdr_size, f->end);
	keel_free(buf);
	return 0;
}

static void note_orphan(void *ud, const char *queue, uint64_t qid, uint64_t mid,
			bool queue_lost)
{
	scan *sc = ud;
	if (queue_lost)
		report(sc, KEEL_JDAMAGE_ORPHAN, 0, 0, 0, NULL, qid, mid,
		       "message %" PRIu64 " is in queue id %" PRIu64 ", whose record is gone",
		       mid, qid);
	else
		report(sc, KEEL_JDAMAGE_ORPHAN, 0, 0, 0, queue, qid, mid,
		       "message %" PRIu64 " of queue '%s' lost its record", mid, queue);
	if (sc->norphans == sc->orphcap) {
		size_t cap = sc->orphcap ? sc->orphcap * 2 : 64;
		uint64_t (*o)[2] = keel_realloc(sc->orphans, cap * sizeof(*o));
		if (o == NULL) {
			sc->orphan_oom = true;
			return;
		}
		sc->orphans = o;
		sc->orphcap = cap;
	}
	sc->orphans[sc->norphans][0] = qid;
	sc->orphans[sc->norphans][1] = mid;
	sc->norphans++;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_pair(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;
	return x[0] != y[0] ? (x[0] < y[0] ? -1 : 1) : (x[1] < y[1] ? -1 : x[1] > y[1]);
}

static void scan_free(scan *sc)
{
	for (size_t i = 0; i < sc->n; i++) {
		keel_free(sc->files[i].recs);
		keel_free(sc->files[i].lens);
	}
	keel_free(sc->files);
	keel_free(sc->orphans);
	journal__replay_free(sc->rp);
}

/* List, scan and check the whole directory. */
static int scan_all(scan *sc, char *err, size_t errlen)
{
	DIR *d = opendir(sc->dir);
	if (d == NULL) {
		int rc = -errno;
		snprintf(err, errlen, "journal %s: %s", sc->dir, strerror(errno));
		return rc;
	}
	uint64_t *ids = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		uint64_t id;
		if (!journal__seg_name_parse(de->d_name, &id))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			uint64_t *v = keel_realloc(ids, cap * sizeof(*v));
			if (v == NULL) {
				rc = -ENOMEM;
				break;
			}
			ids = v;
		}
		ids[n++] = id;
	}
	closedir(d);
	sc->rp = journal__replay_new();
	if (rc == 0 && sc->rp == NULL)
		rc = -ENOMEM;
	if (rc == 0 && n) {
		qsort(ids, n, sizeof(*ids), cmp_u64);
		sc->files = keel_calloc(n, sizeof(*sc->files));
		if (sc->files == NULL)
			rc = -ENOMEM;
	}
	for (size_t i = 0; rc == 0 && i < n; i++) {
		sc->files[i].id = ids[i];
		sc->n++;
	}
	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = scan_file(sc, &sc->files[i], i + 1 == n);
		if (rc) {
			char name[64];
			journal__seg_name(name, sizeof(name), ids[i]);
			snprintf(err, errlen, "journal %s/%s: %s", sc->dir, name, strerror(-rc));
		}
	}
	keel_free(ids);
	if (rc) {
		if (err[0] == '\0')
			snprintf(err, errlen, "journal %s: %s", sc->dir, strerror(-rc));
		return rc;
	}
	/* across files: missing segments, ends that do not match */
	const sfile *prev = NULL;
	for (size_t i = 0; i < sc->n; i++) {
		const sfile *f = &sc->files[i];
		if (prev && f->hdr_ok && f->prev_used) {
			if (prev->id + 1 != f->id)
				report(sc, KEEL_JDAMAGE_MISSING, prev->id + 1, 0, 0, NULL, 0, 0,
				       "segments keel-%012" PRIu64 ".jnl to keel-%012" PRIu64
				       ".jnl are missing", prev->id + 1, f->id - 1);
			else if (prev->end != f->prev_used)
				report(sc, KEEL_JDAMAGE_END, prev->id, prev->end,
				       prev->end < f->prev_used ? f->prev_used - prev->end : 0,
				       NULL, 0, 0,
				       "keel-%012" PRIu64 ".jnl: its records end at offset %" PRIu64
				       ", but keel-%012" PRIu64 ".jnl says they ended at %u",
				       prev->id, prev->end, f->id, f->prev_used);
		}
		prev = f;
	}
	/* the head: the newest segment it names must be there */
	int dfd = open(sc->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		uint64_t head = 0;
		int hr = journal__head_read(dfd, &head);
		close(dfd);
		uint64_t newest = sc->n ? sc->files[sc->n - 1].id : 0;
		if (hr == -EBADMSG)
			report(sc, KEEL_JDAMAGE_HEADER, 0, 0, 0, NULL, 0, 0, "%s: damaged",
			       KEEL_JOURNAL_HEAD_NAME);
		else if (hr == 0 && newest < head)
			report(sc, KEEL_JDAMAGE_MISSING, newest + 1, 0, 0, NULL, 0, 0,
			       "segments keel-%012" PRIu64 ".jnl to keel-%012" PRIu64
			       ".jnl are missing (%s names the latter as the newest)",
			       newest + 1, head, KEEL_JOURNAL_HEAD_NAME);
	}
	journal__replay_orphans(sc->rp, note_orphan, sc);
	if (sc->orphan_oom) {
		snprintf(err, errlen, "journal %s: out of memory", sc->dir);
		return -ENOMEM;
	}
	if (sc->norphans > 1)
		qsort(sc->orphans, sc->norphans, sizeof(*sc->orphans), cmp_pair);
	uint64_t mid, oid;
	journal__replay_ids(sc->rp, &mid, &oid);
	if (mid > sc->mid_floor)
		sc->mid_floor = mid;
	if (oid > sc->oid_floor)
		sc->oid_floor = oid;
	return 0;
}

int keel_journal_check(const char *dir, keel_journal_damage_fn fn, void *ud,
		       keel_journal_check_stats *st, char *err, size_t errlen)
{
	keel_journal_check_stats local;
	if (st == NULL)
		st = &local;
	memset(st, 0, sizeof(*st));
	err[0] = '\0';
	scan sc = { .dir = dir, .fn = fn, .ud = ud, .st = st };
	int rc = scan_all(&sc, err, errlen);
	scan_free(&sc);
	return rc;
}

/* ---- salvage ------------------------------------------------------------- */

typedef struct out {
	char dir[4096];
	int fd;
	uint64_t id;
	uint64_t used;
	uint64_t size;
	uint64_t file_size;
	uint64_t mid_floor, oid_floor;
} out;

static int out_close(out *o)
{
	if (o->fd < 0)
		return 0;
	int rc = fdatasync(o->fd) < 0 ? -errno : 0;
	close(o->fd);
	o->fd = -1;
	return rc;
}

static int out_roll(out *o, uint64_t need)
{
	uint32_t prev_used = o->fd >= 0 && o->used <= UINT32_MAX ? (uint32_t)o->used : 0;
	int rc = out_close(o);
	if (rc)
		return rc;
	o->id++;
	o->size = o->file_size;
	if (need > o->size - J_SEG_HDR)
		o->size = J_SEG_HDR + need;
	char name[64], path[4200];
	journal__seg_name(name, sizeof(name), o->id);
	snprintf(path, sizeof(path), "%s/%s", o->dir, name);
	o->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (o->fd < 0)
		return -errno;
	if (ftruncate(o->fd, (off_t)o->size) < 0)
		return -errno;
	uint8_t h[J_SEG_HDR];
	journal__seg_header(h, o->id, o->size, o->mid_floor, o->oid_floor, prev_used);
	rc = keel_pwrite_all(o->fd, h, J_SEG_HDR, 0);
	o->used = J_SEG_HDR;
	return rc;
}

static bool orphan_ref(const scan *sc, const uint8_t *rec)
{
	if (rec[8] != JR_REF_ADD || sc->norphans == 0)
		return false;
	uint64_t key[2] = { keel_get_le64(rec + J_REC_HDR), keel_get_le64(rec + J_REC_HDR + 8) };
	return bsearch(key, sc->orphans, sc->norphans, sizeof(*sc->orphans), cmp_pair) != NULL;
}

/* Every intact record of every file, in order, into new segments in
 * o->dir (ids after the old ones). */
static int write_salvaged(scan *sc, out *o)
{
	int rc = 0;
	for (size_t i = 0; i < sc->n && rc == 0; i++) {
		sfile *f = &sc->files[i];
		if (f->nrecs == 0)
			continue;
		char name[64];
		journal__seg_name(name, sizeof(name), f->id);
		uint8_t *buf = NULL;
		uint64_t size;
		rc = read_file(sc->dir, name, &buf, &size);
		if (rc)
			break;
		for (size_t k = 0; rc == 0 && k < f->nrecs; k++) {
			const uint8_t *rec = buf + f->recs[k];
			uint32_t len = f->lens[k];
			if (f->recs[k] + len > size || orphan_ref(sc, rec))
				continue;
			if (o->fd < 0 || o->used + len > o->size)
				rc = out_roll(o, len);
			if (rc == 0)
				rc = keel_pwrite_all(o->fd, rec, len, o->used);
			o->used += len;
			sc->st->written_records++;
		}
		keel_free(buf);
	}
	/* nothing intact: still one (empty) segment, for the head to name */
	if (rc == 0 && o->fd < 0 && o->used == 0)
		rc = out_roll(o, 0);
	if (rc == 0)
		rc = out_close(o);
	return rc;
}

static int move_file(const char *from_dir, const char *to_dir, const char *name)
{
	char a[4200], b[4200];
	snprintf(a, sizeof(a), "%s/%s", from_dir, name);
	snprintf(b, sizeof(b), "%s/%s", to_dir, name);
	return rename(a, b) < 0 ? -errno : 0;
}

typedef struct report_file {
	FILE *f;
	keel_journal_damage_fn fn;
	void *ud;
} report_file;

static void report_both(void *ud, const keel_journal_damage *d)
{
	report_file *r = ud;
	if (r->f)
		fprintf(r->f, "%s\n", d->what);
	if (r->fn)
		r->fn(r->ud, d);
}

int keel_journal_salvage(const char *dir, uint64_t file_size, keel_journal_damage_fn fn,
			 void *ud, keel_journal_check_stats *st, char *err, size_t errlen)
{
	keel_journal_check_stats local;
	if (st == NULL)
		st = &local;
	memset(st, 0, sizeof(*st));
	err[0] = '\0';
	/* the report goes to the caller and, once there is an aside
	 * directory, to its damage.txt: written to memory first */
	char *text = NULL;
	size_t textlen = 0;
	report_file rf = { .f = open_memstream(&text, &textlen), .fn = fn, .ud = ud };
	scan sc = { .dir = dir, .fn = report_both, .ud = &rf, .st = st };
	out o = { .fd = -1 };
	int rc = scan_all(&sc, err, errlen);
	if (rf.f)
		fclose(rf.f);
	if (rc || !st->damages)
		goto done; /* nothing to salvage */

	uint64_t max_id = 0, max_size = 0;
	for (size_t i = 0; i < sc.n; i++) {
		if (sc.files[i].id > max_id)
			max_id = sc.files[i].id;
		if (sc.files[i].hdr_size > max_size && sc.files[i].hdr_size <= KEEL_JOURNAL_MAX_FILE_SIZE)
			max_size = sc.files[i].hdr_size;
	}
	o.file_size = file_size ? file_size : max_size ? max_size : KEEL_JOURNAL_DEFAULT_FILE_SIZE;
	if (o.file_size < KEEL_JOURNAL_MIN_FILE_SIZE)
		o.file_size = KEEL_JOURNAL_MIN_FILE_SIZE;
	o.id = max_id;
	o.mid_floor = sc.mid_floor + KEEL_JOURNAL_SALVAGE_ID_GAP;
	o.oid_floor = sc.oid_floor + KEEL_JOURNAL_SALVAGE_ID_GAP;
	/* 1. the new segments in a scratch directory */
	snprintf(o.dir, sizeof(o.dir), "%s/.salvage-new", dir);
	char aside[4096];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	char stamp[32];
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(aside, sizeof(aside), "%s/damaged-%s", dir, stamp);
	if (mkdir(o.dir, 0755) < 0 && errno != EEXIST) {
		rc = -errno;
		snprintf(err, errlen, "salvage: %s: %s", o.dir, strerror(errno));
		goto done;
	}
	rc = write_salvaged(&sc, &o);
	if (rc == 0)
		rc = keel_fsync_dir(o.dir);
	if (rc) {
		snprintf(err, errlen, "salvage: writing %s: %s", o.dir, strerror(-rc));
		goto done;
	}
	st->first_seg = max_id + 1;
	st->last_seg = o.id;
	/* 2. the new segments into the directory (ids after the old ones: a
	 * crash here leaves both, and a salvage again gives the same) */
	for (uint64_t id = st->first_seg; id <= st->last_seg && rc == 0; id++) {
		char name[64];
		journal__seg_name(name, sizeof(name), id);
		rc = move_file(o.dir, dir, name);
	}
	if (rc == 0)
		rc = keel_fsync_dir(dir);
	if (rc == 0)
		rc = keel_journal_head_write(dir, st->last_seg, true);
	if (rc) {
		snprintf(err, errlen, "salvage: moving the new segments into %s: %s", dir,
			 strerror(-rc));
		goto done;
	}
	rmdir(o.dir);
	/* 3. the old files and the report aside */
	if (mkdir(aside, 0755) < 0) {
		rc = -errno;
		snprintf(err, errlen, "salvage: %s: %s", aside, strerror(errno));
		goto done;
	}
	for (size_t i = 0; i < sc.n && rc == 0; i++) {
		char name[64];
		journal__seg_name(name, sizeof(name), sc.files[i].id);
		rc = move_file(dir, aside, name);
	}
	if (rc == 0) {
		char path[4200];
		snprintf(path, sizeof(path), "%s/damage.txt", aside);
		FILE *df = fopen(path, "w");
		if (df == NULL) {
			rc = -errno;
		} else {
			fprintf(df, "keel journal salvage of %s at %s\n%s"
				"intact records: %" PRIu64 " (written again: %" PRIu64
				", into keel-%012" PRIu64 ".jnl to keel-%012" PRIu64 ".jnl)\n"
				"lost message references: %" PRIu64 "\n"
				"damaged bytes: %" PRIu64 " (the old segment files here hold them)\n",
				dir, stamp, text ? text : "", st->records, st->written_records,
				st->first_seg, st->last_seg, st->lost_refs, st->damaged_bytes);
			if (fclose(df) != 0)
				rc = -errno;
		}
	}
	if (rc == 0)
		rc = keel_fsync_dir(aside);
	if (rc == 0)
		rc = keel_fsync_dir(dir);
	if (rc) {
		snprintf(err, errlen, "salvage: moving the old segments to %s: %s", aside,
			 strerror(-rc));
		goto done;
	}
	snprintf(st->aside, sizeof(st->aside), "%s", aside);
done:
	if (o.fd >= 0)
		close(o.fd);
	free(text);
	scan_free(&sc);
	return rc;
}
