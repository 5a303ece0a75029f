/*
 * test_hastore.c - the identity file (hastore.h): node id text form, a
 * missing file gives a fresh identity (random v4 id for a primary, zero
 * for a backup), save/load round trips, saving over an old file, every
 * kind of corrupt file refused with -EBADMSG and a message naming it, and
 * the libfiu point repl/persist (enabled in-process: -EIO, old file kept).
 * Each test works in its own mkdtemp directory, removed afterwards.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
/* The real libfiu calls, not fiu.h's no-op macros (fiu_init() would be
 * "0" and fiu_enable() would then use a table never created). */
#define FIU_ENABLE 1
#include <fiu-control.h>
#include <fiu.h>

#include "hastore.h"

typedef struct fixture {
	char dir[256];
} fixture;

static void rm_in(const char *dir, const char *name)
{
	char p[1024];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	unlink(p);
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	const char *t = getenv("TMPDIR");
	snprintf(f->dir, sizeof(f->dir), "%s/keel-hastore-XXXXXX", t && *t ? t : "/tmp");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	static const char *const sub[] = { "sub", "sub2", "a", "b" };
	for (size_t i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
		char d[512];
		snprintf(d, sizeof(d), "%s/%s", f->dir, sub[i]);
		rm_in(d, KEEL_HASTORE_FILE);
		rm_in(d, KEEL_HASTORE_FILE ".tmp");
		rmdir(d);
	}
	rm_in(f->dir, KEEL_HASTORE_FILE);
	rm_in(f->dir, KEEL_HASTORE_FILE ".tmp");
	rm_in(f->dir, "plain-file");
	int rc = rmdir(f->dir); /* fails if a test left something unexpected */
	free(f);
	return rc;
}

static void write_file(const char *dir, const char *name, const char *text, size_t len)
{
	char p[1024];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *fp = fopen(p, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

/* The identity file's bytes into buf (NUL-terminated); its length. */
static size_t read_identity(const char *dir, char *buf, size_t cap)
{
	char p[1024];
	snprintf(p, sizeof(p), "%s/%s", dir, KEEL_HASTORE_FILE);
	FILE *fp = fopen(p, "rb");
	assert_non_null(fp);
	size_t n = fread(buf, 1, cap - 1, fp);
	assert_true(n < cap - 1);
	buf[n] = '\0';
	fclose(fp);
	return n;
}

static bool exists_in(const char *dir, const char *name)
{
	char p[1024];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return stat(p, &st) == 0;
}

static keel_ha_persist sample(uint8_t seed)
{
	keel_ha_persist p;
	memset(&p, 0, sizeof(p));
	for (int i = 0; i < 16; i++)
		p.node_id.b[i] = (uint8_t)(seed * 17 + i * 31);
	p.activation_seq = 7 + seed;
	p.journal_valid = seed & 1;
	p.peer_may_be_live = !(seed & 1);
	p.incarnation = ((uint64_t)1 << 40) + seed;
	return p;
}

static void assert_persist_equal(const keel_ha_persist *a, const keel_ha_persist *b)
{
	assert_memory_equal(a->node_id.b, b->node_id.b, 16);
	assert_int_equal(a->activation_seq, b->activation_seq);
	assert_int_equal(a->journal_valid, b->journal_valid);
	assert_int_equal(a->peer_may_be_live, b->peer_may_be_live);
	assert_int_equal(a->incarnation, b->incarnation);
}

/* ---- node ids ---------------------------------------------------------- */

static void test_node_id(void **state)
{
	(void)state;
	keel_ha_node_id id, back;
	char s[KEEL_HA_NODE_ID_STRLEN + 1];
	for (int i = 0; i < 16; i++)
		id.b[i] = (uint8_t)(0x01 + i * 0x11);
	keel_ha_node_id_format(&id, s);
	assert_string_equal(s, "01122334-4556-6778-899a-abbccddeef00");
	assert_int_equal(keel_ha_node_id_parse(s, &back), 0);
	assert_memory_equal(id.b, back.b, 16);
	/* Upper case is read too; the output is lower case. */
	assert_int_equal(keel_ha_node_id_parse("01122334-4556-6778-899A-ABBCCDDEEF00", &back), 0);
	assert_memory_equal(id.b, back.b, 16);
	/* Every byte value survives. */
	for (int v = 0; v < 256; v += 15) {
		memset(id.b, v, 16);
		keel_ha_node_id_format(&id, s);
		assert_int_equal(strlen(s), KEEL_HA_NODE_ID_STRLEN);
		assert_int_equal(keel_ha_node_id_parse(s, &back), 0);
		assert_memory_equal(id.b, back.b, 16);
	}

	static const char *const rejects[] = {
		"",
		"0112233445566778899aabbccddeef00",      /* no dashes */
		"0112-2334-4556-6778-899aabbccddeef00",  /* dash misplaced */
		"0112233-44556-6778-899a-abbccddeef00",  /* dash misplaced */
		"0112233g-4556-6778-899a-abbccddeef00",  /* not hex */
		"0112233 -4556-6778-899a-abbccddeef00",
		"0112233-4556-6778-899a-abbccddeef00",   /* one short */
		"01122334-4556-6778-899a-abbccddeeff00", /* one long */
		"01122334-4556-6778-899a-abbccddeeff0 ",
		"{0112233-4556-6778-899a-abbccddeeff0}",
	};
	memset(back.b, 0xA5, 16);
	for (size_t i = 0; i < sizeof(rejects) / sizeof(rejects[0]); i++) {
		if (keel_ha_node_id_parse(rejects[i], &back) != -EINVAL)
			fail_msg("accepted \"%s\"", rejects[i]);
		for (int b = 0; b < 16; b++)
			assert_int_equal(back.b[b], 0xA5); /* untouched */
	}
	assert_int_equal(keel_ha_node_id_parse(NULL, &back), -EINVAL);
}

/* ---- missing file ------------------------------------------------------ */

static void test_missing_is_fresh(void **state)
{
	fixture *f = *state;
	char a[512], b[512], err[256];
	keel_ha_persist p1, p2, pb;
	bool fresh = false;
	snprintf(a, sizeof(a), "%s/a", f->dir);
	snprintf(b, sizeof(b), "%s/b", f->dir);
	assert_int_equal(mkdir(a, 0755), 0);
	/* b does not exist at all: still a fresh identity. */
	assert_int_equal(keel_hastore_load(a, KEEL_HA_ROLE_PRIMARY, &p1, &fresh, err,
					   sizeof(err)), 0);
	assert_true(fresh);
	fresh = false;
	assert_int_equal(keel_hastore_load(b, KEEL_HA_ROLE_PRIMARY, &p2, &fresh, err,
					   sizeof(err)), 0);
	assert_true(fresh);
	assert_false(keel_ha_node_id_is_zero(&p1.node_id));
	assert_false(keel_ha_node_id_is_zero(&p2.node_id));
	assert_false(keel_ha_node_id_equal(&p1.node_id, &p2.node_id));
	/* Version-4 UUIDs. */
	assert_int_equal(p1.node_id.b[6] >> 4, 4);
	assert_int_equal(p1.node_id.b[8] >> 6, 2);
	/* keel_ha_persist_fresh for a primary: complete empty journal. */
	assert_true(p1.journal_valid);
	assert_false(p1.peer_may_be_live);
	assert_int_equal(p1.activation_seq, 0);
	assert_int_equal(p1.incarnation, 0);
	/* Nothing was written. */
	assert_false(exists_in(a, KEEL_HASTORE_FILE));
	assert_false(exists_in(f->dir, "b"));

	fresh = false;
	memset(&pb, 0xA5, sizeof(pb));
	assert_int_equal(keel_hastore_load(a, KEEL_HA_ROLE_BACKUP, &pb, &fresh, err,
					   sizeof(err)), 0);
	assert_true(fresh);
	assert_true(keel_ha_node_id_is_zero(&pb.node_id));
	assert_false(pb.journal_valid);
	assert_false(pb.peer_may_be_live);
	assert_int_equal(pb.activation_seq, 0);
	assert_int_equal(pb.incarnation, 0);
}

/* ---- save / load ------------------------------------------------------- */

static void test_round_trip(void **state)
{
	fixture *f = *state;
	char err[256], text[4096], sub[512];
	for (uint8_t seed = 0; seed < 4; seed++) {
		keel_ha_persist p = sample(seed), back;
		bool fresh = true;
		if (seed == 3) { /* extremes */
			p.activation_seq = INT64_MAX;
			p.incarnation = 0;
			memset(p.node_id.b, 0, 16);
		}
		assert_int_equal(keel_hastore_save(f->dir, &p), 0);
		assert_false(exists_in(f->dir, KEEL_HASTORE_FILE ".tmp"));
		memset(&back, 0, sizeof(back));
		int rc = keel_hastore_load(f->dir, KEEL_HA_ROLE_PRIMARY, &back, &fresh, err,
					   sizeof(err));
		if (rc != 0)
			fail_msg("seed %u: %d %s", seed, rc, err);
		assert_false(fresh);
		assert_persist_equal(&p, &back);
	}
	/* Human-readable: one key per line, the id in UUID form. */
	keel_ha_persist p = sample(1);
	assert_int_equal(keel_hastore_save(f->dir, &p), 0);
	read_identity(f->dir, text, sizeof(text));
	char id[KEEL_HA_NODE_ID_STRLEN + 1];
	keel_ha_node_id_format(&p.node_id, id);
	char want[128];
	snprintf(want, sizeof(want), "\n  \"node-id\": \"%s\",\n", id);
	assert_non_null(strstr(text, want));
	assert_non_null(strstr(text, "\n  \"version\": 1,\n"));
	assert_non_null(strstr(text, "\n  \"activation-seq\": 8,\n"));
	assert_non_null(strstr(text, "\n  \"journal-valid\": true,\n"));
	assert_non_null(strstr(text, "\n  \"crc32c\": "));

	/* A missing data directory is created (one level). */
	snprintf(sub, sizeof(sub), "%s/sub", f->dir);
	assert_int_equal(keel_hastore_save(sub, &p), 0);
	keel_ha_persist back;
	bool fresh = true;
	assert_int_equal(keel_hastore_load(sub, KEEL_HA_ROLE_BACKUP, &back, &fresh, err,
					   sizeof(err)), 0);
	assert_false(fresh);
	assert_persist_equal(&p, &back);
	/* ...but not two. */
	snprintf(sub, sizeof(sub), "%s/sub2/deeper", f->dir);
	assert_int_equal(keel_hastore_save(sub, &p), -ENOENT);
	/* Values jansson cannot hold are refused, not truncated. */
	p.incarnation = (uint64_t)INT64_MAX + 1;
	assert_int_equal(keel_hastore_save(f->dir, &p), -ERANGE);
}

static void test_save_over(void **state)
{
	fixture *f = *state;
	char err[256];
	keel_ha_persist a = sample(1), b = sample(2), back;
	bool fresh;
	assert_int_equal(keel_hastore_save(f->dir, &a), 0);
	assert_int_equal(keel_hastore_save(f->dir, &b), 0);
	assert_int_equal(keel_hastore_load(f->dir, KEEL_HA_ROLE_PRIMARY, &back, &fresh, err,
					   sizeof(err)), 0);
	assert_persist_equal(&b, &back);
	/* A stale .tmp from a crash mid-save does not matter. */
	write_file(f->dir, KEEL_HASTORE_FILE ".tmp", "{\"torn", 6);
	assert_int_equal(keel_hastore_save(f->dir, &a), 0);
	assert_false(exists_in(f->dir, KEEL_HASTORE_FILE ".tmp"));
	assert_int_equal(keel_hastore_load(f->dir, KEEL_HA_ROLE_PRIMARY, &back, &fresh, err,
					   sizeof(err)), 0);
	assert_persist_equal(&a, &back);
}

/* ---- corrupt files ----------------------------------------------------- */

/* Replace the first `from` in s by `to` (s has room). */
static void replace(char *s, size_t cap, const char *from, const char *to)
{
	char *at = strstr(s, from);
	if (at == NULL)
		fail_msg("\"%s\" not in %s", from, s);
	size_t fl = strlen(from), tl = strlen(to), rest = strlen(at + fl);
	assert_true(strlen(s) - fl + tl < cap);
	memmove(at + tl, at + fl, rest + 1);
	memcpy(at, to, tl);
}

/* Loading f->dir must give -EBADMSG, a message with the path and `words`,
 * and leave *out untouched. */
static void expect_bad(const fixture *f, const char *text, const char *words)
{
	char err[512], path[512];
	keel_ha_persist out;
	bool fresh = false;
	write_file(f->dir, KEEL_HASTORE_FILE, text, strlen(text));
	memset(&out, 0x5A, sizeof(out));
	int rc = keel_hastore_load(f->dir, KEEL_HA_ROLE_PRIMARY, &out, &fresh, err, sizeof(err));
	if (rc != -EBADMSG || strstr(err, words) == NULL)
		fail_msg("file:\n%s\nrc=%d err=\"%s\", want -EBADMSG and \"%s\"", text, rc, err,
			 words);
	snprintf(path, sizeof(path), "%s/%s: ", f->dir, KEEL_HASTORE_FILE);
	assert_true(strncmp(err, path, strlen(path)) == 0);
	const unsigned char *b = (const unsigned char *)&out;
	for (size_t i = 0; i < sizeof(out); i++)
		assert_int_equal(b[i], 0x5A);
	assert_false(fresh);
}

static void test_corrupt(void **state)
{
	fixture *f = *state;
	char good[4096], t[4096];
	keel_ha_persist p = sample(1);
	assert_int_equal(keel_hastore_save(f->dir, &p), 0);
	read_identity(f->dir, good, sizeof(good));

	expect_bad(f, "", "not JSON");
	expect_bad(f, "{\"version\": 1, \"node-id\"", "not JSON");
	expect_bad(f, "[1, 2]", "not a JSON object");
	/* Torn: the first half of a good file. */
	snprintf(t, sizeof(t), "%.*s", (int)(strlen(good) / 2), good);
	expect_bad(f, t, "not JSON");
	/* Edited by hand: any value changed without the checksum. */
	snprintf(t, sizeof(t), "%s", good);
	replace(t, sizeof(t), "\"activation-seq\": 8", "\"activation-seq\": 9");
	expect_bad(f, t, "checksum mismatch");
	snprintf(t, sizeof(t), "%s", good);
	replace(t, sizeof(t), "\"journal-valid\": true", "\"journal-valid\": false");
	expect_bad(f, t, "checksum mismatch");
	snprintf(t, sizeof(t), "%s", good);
	replace(t, sizeof(t), "\"crc32c\": ", "\"crc32c\": 1");
	expect_bad(f, t, "checksum mismatch");
	snprintf(t, sizeof(t), "%s", good);
	replace(t, sizeof(t), "\"crc32c\": ", "\"crc32c\": -");
	expect_bad(f, t, "\"crc32c\" missing");
	/* Missing fields. */
	snprintf(t, sizeof(t), "%s", good);
	replace(t, sizeof(t), "\"incarnation\"", "\"incarnatio\"");
	expect_bad(f, t, "unknown key \"incarnatio\"");
	expect_bad(f, "{\"version\": 1}", "\"node-id\" missing");
	snprintf(t, sizeof(t), "%s", good);
	replace(t, sizeof(t), "  \"peer-may-be-live\": false,\n", "");
	expect_bad(f, t, "\"peer-may-be-live\" missing");
	snprintf(t, sizeof(t), "%s", good);
	replace(t, sizeof(t), "  \"version\": 1,\n", "");
	expect_bad(f, t, "\"version\" missing");
	/* Wrong types and values. */
	snprintf(t, sizeof(t), "%s", good);
	replace(t, sizeof(t), "\"version\": 1", "\"version\": 2");
	expect_bad(f, t, "version 2, this broker reads 1");
	snprintf(t, sizeof(t), "%s", good);
	replace(t, sizeof(t), "\"activation-seq\": 8", "\"activation-seq\": \"8\"");
	expect_bad(f, t, "\"activation-seq\" or \"incarnation\" missing");
	snprintf(t, sizeof(t), "%s", good);
	replace(t, sizeof(t), "\"activation-seq\": 8", "\"activation-seq\": -8");
	expect_bad(f, t, "not a non-negative integer");
	snprintf(t, sizeof(t), "%s", good);
	replace(t, sizeof(t), "\"journal-valid\": true", "\"journal-valid\": 1");
	expect_bad(f, t, "\"journal-valid\" or \"peer-may-be-live\"");
	/* Bad UUIDs. */
	char id[KEEL_HA_NODE_ID_STRLEN + 1];
	keel_ha_node_id_format(&p.node_id, id);
	snprintf(t, sizeof(t), "%s", good);
	char badid[64];
	snprintf(badid, sizeof(badid), "\"%.35sx\"", id);
	char quoted[64];
	snprintf(quoted, sizeof(quoted), "\"%s\"", id);
	replace(t, sizeof(t), quoted, badid);
	expect_bad(f, t, "\"node-id\" missing or not a UUID");
	snprintf(t, sizeof(t), "%s", good);
	replace(t, sizeof(t), quoted, "42");
	expect_bad(f, t, "not a UUID");
	/* Duplicate keys are not silently resolved. */
	snprintf(t, sizeof(t), "%s", good);
	replace(t, sizeof(t), "{\n", "{\n  \"version\": 1,\n");
	expect_bad(f, t, "not JSON");
	/* Too large to be an identity file. */
	static char big[KEEL_HA_IDENTITY_MAX_BYTES + 64];
	memset(big, ' ', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	expect_bad(f, big, "larger than");
	/* ... and the good file still loads after all that (the test's own check). */
	write_file(f->dir, KEEL_HASTORE_FILE, good, strlen(good));
	keel_ha_persist back;
	bool fresh;
	char err[256];
	assert_int_equal(keel_hastore_load(f->dir, KEEL_HA_ROLE_PRIMARY, &back, &fresh, err,
					   sizeof(err)), 0);
	assert_persist_equal(&p, &back);
}

/* Errors other than a bad file: -errno with words. */
static void test_other_errors(void **state)
{
	fixture *f = *state;
	char dir[512], err[512];
	keel_ha_persist out;
	bool fresh;
	write_file(f->dir, "plain-file", "x", 1);
	snprintf(dir, sizeof(dir), "%s/plain-file", f->dir);
	assert_int_equal(keel_hastore_load(dir, KEEL_HA_ROLE_PRIMARY, &out, &fresh, err,
					   sizeof(err)), -ENOTDIR);
	assert_non_null(strstr(err, "plain-file/" KEEL_HASTORE_FILE ": cannot open"));
	keel_ha_persist p = sample(0);
	assert_int_equal(keel_hastore_save(dir, &p), -ENOTDIR);
	/* err may be NULL. */
	assert_int_equal(keel_hastore_load(dir, KEEL_HA_ROLE_PRIMARY, &out, &fresh, NULL, 0),
			 -ENOTDIR);
}

/* ---- fault point ------------------------------------------------------- */

static void test_fiu_persist(void **state)
{
	fixture *f = *state;
	char before[4096], after[4096], err[256];
	keel_ha_persist a = sample(1), b = sample(2), back;
	bool fresh;
	assert_int_equal(fiu_init(0), 0);
	assert_int_equal(keel_hastore_save(f->dir, &a), 0);
	read_identity(f->dir, before, sizeof(before));

	assert_int_equal(fiu_enable(KEEL_FIU_REPL_PERSIST, 1, NULL, 0), 0);
	assert_int_equal(keel_hastore_save(f->dir, &b), -EIO);
	assert_int_equal(keel_hastore_save(f->dir, &b), -EIO);
	/* Fresh directory: not even created. */
	char sub[512];
	snprintf(sub, sizeof(sub), "%s/sub", f->dir);
	assert_int_equal(keel_hastore_save(sub, &b), -EIO);
	assert_false(exists_in(f->dir, "sub"));
	assert_int_equal(fiu_disable(KEEL_FIU_REPL_PERSIST), 0);

	read_identity(f->dir, after, sizeof(after));
	assert_string_equal(before, after);
	assert_false(exists_in(f->dir, KEEL_HASTORE_FILE ".tmp"));
	assert_int_equal(keel_hastore_load(f->dir, KEEL_HA_ROLE_PRIMARY, &back, &fresh, err,
					   sizeof(err)), 0);
	assert_persist_equal(&a, &back);
	/* Disabled again: saving works. */
	assert_int_equal(keel_hastore_save(f->dir, &b), 0);
	assert_int_equal(keel_hastore_load(f->dir, KEEL_HA_ROLE_PRIMARY, &back, &fresh, err,
					   sizeof(err)), 0);
	assert_persist_equal(&b, &back);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_node_id),
		cmocka_unit_test_setup_teardown(test_missing_is_fresh, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_over, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fiu_persist, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
