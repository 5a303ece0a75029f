/*
 * test_journal_damage.c - damage of every kind in every place of a real
 * journal (issue "Integrity and hardening", defect 1).  One journal of
 * 1000 receipted messages in several 64 KiB segments is written once; each
 * case copies it, damages one segment (the first, a middle one, the
 * newest): a flipped bit in every field of its header and of its first,
 * middle and last record, a zeroed header, record header or 4 KiB page,
 * the file cut mid-record, to a header or to nothing, deleted, zeroed
 * whole.  Then:
 *  - recovery either loads all 1000 or refuses to start naming the damage;
 *    it may deliver fewer only with a journal.truncated report, and only
 *    for the newest segment's tail;
 *  - keel_journal_check refuses exactly when recovery does;
 *  - after keel_journal_salvage the broker's recovery starts and holds
 *    exactly the messages whose records were not touched, and salvage
 *    reported every other one as lost.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keel/alloc.h"
#include "bytes.h"
#include "jtest.h"
#include "journal.h"

#define N_MSGS 1000
#define MAX_SEGS 32
#define MAX_RECS 4096

/* A record of the pristine journal, as the test reads the format. */
typedef struct trec {
	int seg;          /* index into segs */
	uint64_t off;
	uint32_t len;
	uint8_t type;
	uint64_t a, b;    /* payload ids: MESSAGE {id}, REF_ADD {queue, message}, QUEUE_ADD {id} */
} trec;

static struct world {
	int64_t live0;
	char root[256];
	char pristine[300];
	uint64_t seg_id[MAX_SEGS];
	uint64_t seg_size[MAX_SEGS];
	int nsegs;
	trec recs[MAX_RECS];
	int nrecs;
	uint64_t queue_id;
	env e;
	int cases, refused, cut, salvaged;
} w;

static void seg_path(char *out, size_t n, const char *dir, int seg)
{
	char name[64];
	keel_journal_segment_name(w.seg_id[seg], name, sizeof(name));
	snprintf(out, n, "%s/%s", dir, name);
}

/* The pristine journal's files (segments and journal.head) into `to`. */
static void copy_dir(const char *to)
{
	rm_rf(to);
	assert_int_equal(mkdir(to, 0755), 0);
	DIR *d = opendir(w.pristine);
	assert_non_null(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char a[1024], b[1024];
		snprintf(a, sizeof(a), "%s/%s", w.pristine, de->d_name);
		snprintf(b, sizeof(b), "%s/%s", to, de->d_name);
		uint8_t *buf;
		size_t len;
		assert_int_equal(read_whole(a, &buf, &len), 0);
		write_whole(b, buf, len);
		free(buf);
	}
	closedir(d);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The pristine journal's segments and records, read with the format of
 * journal_int.h (header 64 bytes; record: crc, len, type, flags, reserved,
 * txid, payload). */
static void map_pristine(void)
{
	DIR *d = opendir(w.pristine);
	assert_non_null(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		unsigned long long id;
		if (sscanf(de->d_name, "keel-%12llu.jnl", &id) == 1 && strlen(de->d_name) == 21) {
			assert_true(w.nsegs < MAX_SEGS);
			w.seg_id[w.nsegs++] = id;
		}
	}
	closedir(d);
	qsort(w.seg_id, (size_t)w.nsegs, sizeof(uint64_t), cmp_u64);
	for (int i = 0; i < w.nsegs; i++) {
		char p[512];
		seg_path(p, sizeof(p), w.pristine, i);
		uint8_t *buf;
		size_t len;
		assert_int_equal(read_whole(p, &buf, &len), 0);
		w.seg_size[i] = len;
		uint64_t off = 64;
		while (off + 20 <= len) {
			uint32_t plen = keel_get_le32(buf + off + 4);
			uint8_t type = buf[off + 8];
			if (type == 0)
				break;
			assert_true(w.nrecs < MAX_RECS);
			trec *r = &w.recs[w.nrecs++];
			*r = (trec){ .seg = i, .off = off, .len = 20 + plen, .type = type };
			if (plen >= 8)
				r->a = keel_get_le64(buf + off + 20);
			if (plen >= 16)
				r->b = keel_get_le64(buf + off + 28);
			if (type == 3) /* QUEUE_ADD */
				w.queue_id = r->a;
			off += 20 + plen;
		}
		free(buf);
	}
}

static int setup_world(void **state)
{
	(void)state;
	memset(&w, 0, sizeof(w));
	w.live0 = keel_alloc_live();
	snprintf(w.root, sizeof(w.root), "/tmp/test_journal_damage.XXXXXX");
	if (mkdtemp(w.root) == NULL)
		return -1;
	snprintf(w.pristine, sizeof(w.pristine), "%s/pristine", w.root);
	keel_journal_options o = default_opts(w.pristine);
	if (env_open(&w.e, w.pristine, &o, NULL, 0) != 0)
		return -1;
	mkqueue(&w.e, "q", KEEL_ANYCAST, true);
	char body[160];
	for (int i = 0; i < N_MSGS; i++) {
		snprintf(body, sizeof(body), "m%04d-%0120d", i, i);
		send_to(&w.e, "q", body, true, NULL);
	}
	if (keel_journal_flush(w.e.j) != 0)
		return -1;
	env_close(&w.e);
	map_pristine();
	return w.nsegs >= 4 ? 0 : -1;
}

static int teardown_world(void **state)
{
	(void)state;
	rm_rf(w.root);
	assert_int_equal(keel_alloc_live(), w.live0);
	return 0;
}

/* ---- damage ---------------------------------------------------------------- */

enum dkind { D_FLIP = 1, D_ZERO, D_TRUNC, D_DELETE };

typedef struct dcase {
	char name[96];
	int seg;
	int kind;
	uint64_t off;     /* FLIP: byte; ZERO: first byte; TRUNC: new size */
	uint64_t len;     /* ZERO: bytes */
} dcase;

static void apply(const dcase *c, const char *dir)
{
	char p[512];
	seg_path(p, sizeof(p), dir, c->seg);
	if (c->kind == D_DELETE) {
		assert_int_equal(unlink(p), 0);
		return;
	}
	if (c->kind == D_TRUNC) {
		assert_int_equal(truncate(p, (off_t)c->off), 0);
		return;
	}
	int fd = open(p, O_RDWR);
	assert_true(fd >= 0);
	if (c->kind == D_FLIP) {
		uint8_t b;
		assert_int_equal(pread(fd, &b, 1, (off_t)c->off), 1);
		b ^= 0x08;
		assert_int_equal(pwrite(fd, &b, 1, (off_t)c->off), 1);
	} else {
		uint8_t *z = calloc(1, c->len);
		assert_non_null(z);
		assert_int_equal(pwrite(fd, z, c->len, (off_t)c->off), (ssize_t)c->len);
		free(z);
	}
	close(fd);
}

/* The damaged byte range [lo, hi) of segment c->seg. */
static void damaged_range(const dcase *c, uint64_t *lo, uint64_t *hi)
{
	switch (c->kind) {
	case D_FLIP:
		*lo = c->off;
		*hi = c->off + 1;
		break;
	case D_ZERO:
		*lo = c->off;
		*hi = c->off + c->len;
		break;
	case D_TRUNC:
		*lo = c->off;
		*hi = w.seg_size[c->seg];
		break;
	default:
		*lo = 0;
		*hi = w.seg_size[c->seg];
	}
}

static bool rec_hit(const dcase *c, const trec *r)
{
	uint64_t lo, hi;
	damaged_range(c, &lo, &hi);
	return r->seg == c->seg && r->off < hi && lo < r->off + r->len;
}

static const trec *find_rec(uint8_t type, uint64_t a, uint64_t b)
{
	for (int i = 0; i < w.nrecs; i++)
		if (w.recs[i].type == type && w.recs[i].a == a && (type != 6 || w.recs[i].b == b))
			return &w.recs[i];
	return NULL;
}

/* Messages whose MESSAGE and REF_ADD records (and the queue's) are intact;
 * and refs salvage must report lost (intact REF_ADD, message or queue gone). */
static void expected(const dcase *c, uint64_t *intact, uint64_t *lost_refs)
{
	const trec *qr = find_rec(3, w.queue_id, 0);
	assert_non_null(qr);
	bool queue_ok = !rec_hit(c, qr);
	*intact = *lost_refs = 0;
	for (int i = 0; i < w.nrecs; i++) {
		const trec *r = &w.recs[i];
		if (r->type != 6) /* REF_ADD */
			continue;
		if (rec_hit(c, r))
			continue; /* no ref: the message is in no queue, nothing to report */
		const trec *m = find_rec(5, r->b, 0);
		assert_non_null(m);
		if (queue_ok && !rec_hit(c, m))
			(*intact)++;
		else
			(*lost_refs)++;
	}
}

static uint64_t held(env *e)
{
	uint64_t n = pending(e, "q");
	return n == UINT64_MAX ? 0 : n;
}

static void run_case(const dcase *c)
{
	char dir[400], err[1024], seg_name[64];
	snprintf(dir, sizeof(dir), "%s/case", w.root);
	keel_journal_segment_name(w.seg_id[c->seg], seg_name, sizeof(seg_name));
	bool newest = c->seg == w.nsegs - 1;
	keel_journal_options o = default_opts(dir);
	w.cases++;

	/* recovery */
	copy_dir(dir);
	apply(c, dir);
	keel_journal_check_stats cs;
	assert_int_equal(keel_journal_check(dir, NULL, NULL, &cs, err, sizeof(err)), 0);
	int rc = env_open(&w.e, dir, &o, err, sizeof(err));
	if (rc) {
		w.refused++;
		if (rc != -EBADMSG)
			fail_msg("%s: recovery failed with %d (%s), not -EBADMSG", c->name, rc, err);
		if (strstr(err, "keel-") == NULL && strstr(err, "lost their records") == NULL)
			fail_msg("%s: the refusal names no file and no loss: %s", c->name, err);
		if (!cs.refuses)
			fail_msg("%s: recovery refused (%s) but check says it starts", c->name, err);
	} else {
		keel_journal_stats st;
		keel_journal_get_stats(w.e.j, &st);
		uint64_t n = held(&w.e);
		env_close(&w.e);
		if (n > N_MSGS)
			fail_msg("%s: %" PRIu64 " messages out of %d sent", c->name, n, N_MSGS);
		if (n < N_MSGS) {
			w.cut++;
			/* fewer only when said, and only for the newest's tail */
			if (st.truncated == 0)
				fail_msg("%s: %" PRIu64 " of %d messages and no journal.truncated",
					 c->name, n, N_MSGS);
			if (!newest)
				fail_msg("%s: an older segment cut as torn (%" PRIu64 " of %d)",
					 c->name, n, N_MSGS);
		}
		if (cs.refuses)
			fail_msg("%s: check says the broker refuses, but it started", c->name);
	}

	/* salvage of the damaged journal */
	copy_dir(dir);
	apply(c, dir);
	keel_journal_check_stats ss;
	rc = keel_journal_salvage(dir, 0, NULL, NULL, &ss, err, sizeof(err));
	if (rc)
		fail_msg("%s: salvage failed: %s", c->name, err);
	uint64_t want, lost;
	expected(c, &want, &lost);
	rc = env_open(&w.e, dir, &o, err, sizeof(err));
	if (rc)
		fail_msg("%s: recovery after salvage refused: %s", c->name, err);
	uint64_t n = held(&w.e);
	env_close(&w.e);
	if (n != want)
		fail_msg("%s: after salvage %" PRIu64 " messages, %" PRIu64 " intact", c->name, n,
			 want);
	if (ss.aside[0] && ss.lost_refs != lost)
		fail_msg("%s: salvage reported %" PRIu64 " lost, %" PRIu64 " were", c->name,
			 ss.lost_refs, lost);
	if (ss.aside[0] == '\0' && want != N_MSGS)
		fail_msg("%s: salvage found nothing, but %" PRIu64 " of %d are intact", c->name,
			 want, N_MSGS);
	w.salvaged += ss.aside[0] != '\0';
	/* salvaged once, clean: a second salvage changes nothing */
	keel_journal_check_stats again;
	assert_int_equal(keel_journal_check(dir, NULL, NULL, &again, err, sizeof(err)), 0);
	if (again.damages)
		fail_msg("%s: the salvaged journal still has %" PRIu64 " damage(s)", c->name,
			 again.damages);
}

/* The records of segment `seg`: first, middle, last. */
static int seg_recs(int seg, const trec *out[3])
{
	int first = -1, last = -1;
	for (int i = 0; i < w.nrecs; i++)
		if (w.recs[i].seg == seg) {
			if (first < 0)
				first = i;
			last = i;
		}
	assert_true(first >= 0);
	out[0] = &w.recs[first];
	out[1] = &w.recs[(first + last) / 2];
	out[2] = &w.recs[last];
	return 3;
}

static void every_damage_in(int seg, const char *where)
{
	static const struct {
		uint64_t off;
		const char *field;
	} hdr[] = { { 0, "magic" }, { 8, "version" }, { 12, "header size" }, { 16, "id" },
		    { 24, "size" }, { 32, "message-id floor" }, { 40, "object-id floor" },
		    { 48, "created" }, { 56, "previous used" }, { 60, "CRC" } };
	static const struct {
		uint64_t off;
		const char *field;
	} rf[] = { { 0, "CRC" }, { 4, "length" }, { 5, "length (2nd byte)" }, { 8, "type" },
		   { 9, "flags" }, { 10, "reserved" }, { 12, "transaction id" },
		   { 20, "payload (first byte)" } };
	dcase c;
	for (size_t i = 0; i < sizeof(hdr) / sizeof(hdr[0]); i++) {
		c = (dcase){ .seg = seg, .kind = D_FLIP, .off = hdr[i].off };
		snprintf(c.name, sizeof(c.name), "%s segment: header %s flipped", where, hdr[i].field);
		run_case(&c);
	}
	c = (dcase){ .seg = seg, .kind = D_ZERO, .off = 0, .len = 64 };
	snprintf(c.name, sizeof(c.name), "%s segment: header zeroed", where);
	run_case(&c);
	const trec *r[3];
	static const char *which[3] = { "first", "middle", "last" };
	seg_recs(seg, r);
	for (int k = 0; k < 3; k++) {
		for (size_t i = 0; i < sizeof(rf) / sizeof(rf[0]); i++) {
			c = (dcase){ .seg = seg, .kind = D_FLIP, .off = r[k]->off + rf[i].off };
			snprintf(c.name, sizeof(c.name), "%s segment: %s record's %s flipped", where,
				 which[k], rf[i].field);
			run_case(&c);
		}
		c = (dcase){ .seg = seg, .kind = D_FLIP, .off = r[k]->off + r[k]->len - 1 };
		snprintf(c.name, sizeof(c.name), "%s segment: %s record's last byte flipped", where,
			 which[k]);
		run_case(&c);
		c = (dcase){ .seg = seg, .kind = D_ZERO, .off = r[k]->off, .len = 20 };
		snprintf(c.name, sizeof(c.name), "%s segment: %s record's header zeroed", where,
			 which[k]);
		run_case(&c);
	}
	c = (dcase){ .seg = seg, .kind = D_ZERO, .off = 8192, .len = 4096 };
	snprintf(c.name, sizeof(c.name), "%s segment: a 4 KiB page zeroed", where);
	run_case(&c);
	c = (dcase){ .seg = seg, .kind = D_TRUNC, .off = r[1]->off + r[1]->len / 2 };
	snprintf(c.name, sizeof(c.name), "%s segment: cut in its middle record", where);
	run_case(&c);
	c = (dcase){ .seg = seg, .kind = D_TRUNC, .off = 64 };
	snprintf(c.name, sizeof(c.name), "%s segment: cut to its header", where);
	run_case(&c);
	c = (dcase){ .seg = seg, .kind = D_TRUNC, .off = 0 };
	snprintf(c.name, sizeof(c.name), "%s segment: cut to nothing", where);
	run_case(&c);
	c = (dcase){ .seg = seg, .kind = D_ZERO, .off = 0, .len = w.seg_size[seg] };
	snprintf(c.name, sizeof(c.name), "%s segment: zeroed whole", where);
	run_case(&c);
	c = (dcase){ .seg = seg, .kind = D_DELETE };
	snprintf(c.name, sizeof(c.name), "%s segment: deleted", where);
	run_case(&c);
}

static void damage_in_the_first_segment(void **state)
{
	(void)state;
	every_damage_in(0, "first");
}

static void damage_in_a_middle_segment(void **state)
{
	(void)state;
	every_damage_in(w.nsegs / 2, "middle");
}

static void damage_in_the_newest_segment(void **state)
{
	(void)state;
	every_damage_in(w.nsegs - 1, "newest");
}

/* A clean journal: check finds nothing, salvage changes nothing. */
static void clean_journal_is_left_alone(void **state)
{
	(void)state;
	char dir[400], err[512];
	snprintf(dir, sizeof(dir), "%s/clean", w.root);
	copy_dir(dir);
	keel_journal_check_stats st;
	assert_int_equal(keel_journal_check(dir, NULL, NULL, &st, err, sizeof(err)), 0);
	assert_int_equal(st.damages, 0);
	assert_int_equal(st.segments, (uint64_t)w.nsegs);
	assert_int_equal(st.records, (uint64_t)w.nrecs);
	assert_false(st.refuses);
	assert_int_equal(keel_journal_salvage(dir, 0, NULL, NULL, &st, err, sizeof(err)), 0);
	assert_string_equal(st.aside, "");
	char p[512];
	seg_path(p, sizeof(p), dir, 0);
	assert_int_equal(access(p, F_OK), 0);
	/* a missing directory is an error, named */
	snprintf(dir, sizeof(dir), "%s/nothing", w.root);
	assert_int_equal(keel_journal_check(dir, NULL, NULL, &st, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, dir));
}

static void summary(void **state)
{
	(void)state;
	printf("# %d segments, %d records; %d cases: %d refused at start, %d cut as a torn "
	       "tail (reported), %d salvaged\n",
	       w.nsegs, w.nrecs, w.cases, w.refused, w.cut, w.salvaged);
	assert_true(w.cases > 100);
	assert_true(w.refused > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(clean_journal_is_left_alone),
		cmocka_unit_test(damage_in_the_first_segment),
		cmocka_unit_test(damage_in_a_middle_segment),
		cmocka_unit_test(damage_in_the_newest_segment),
		cmocka_unit_test(summary),
	};
	return cmocka_run_group_tests(tests, setup_world, teardown_world);
}
