/*
 * fuzz_journal.c - libFuzzer target for the journal's readers: the offline
 * recovery scan (keel_journal_read), the check and the salvage
 * (keel_journal_check, keel_journal_salvage) over a directory of segment
 * files made from the input.
 *
 * Input: byte 0 flags (bit 0: give each segment a valid header, the rest
 * being records; bit 1: size each file to its header's size, as the writer
 * does; bit 2: also salvage; bit 3: chain the headers' previous-used
 * words), then up to 4 segments, each a u16 little-endian length and that
 * many bytes.  Checks the readers' contract: no crash, leak or undefined
 * behaviour (ASan, UBSan); check and the reader agree (a journal check
 * finds clean reads without error); after a salvage the journal checks
 * clean and reads without error.  Single-threaded; files in a private
 * directory under /dev/shm (or $TMPDIR), emptied on every run.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytes.h"
#include "journal_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                              \
	do {                                                                  \
		if (!(c)) {                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #c);                                \
			abort();                                              \
		}                                                             \
	} while (0)

#define SEG_SIZE (64 * 1024)

static char root[256];

static void empty_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char p[1024];
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		struct stat st;
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
			empty_dir(p);
			rmdir(p);
		} else {
			unlink(p);
		}
	}
	closedir(d);
}

static void remove_root(void)
{
	empty_dir(root);
	rmdir(root);
}

static int visit(void *ud, const keel_journal_msgview *m)
{
	(void)m;
	(*(int *)ud)++;
	return 0;
}

static void write_seg(const char *dir, uint64_t id, const uint8_t *p, size_t n, unsigned flags,
		      uint32_t prev_used)
{
	char name[64], path[512];
	journal__seg_name(name, sizeof(name), id);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	uint64_t cap = SEG_SIZE;
	if (flags & 1) {
		uint8_t h[J_SEG_HDR];
		if (n + J_SEG_HDR > cap)
			cap = n + J_SEG_HDR;
		journal__seg_header(h, id, cap, 0, 0, prev_used);
		CHECK(write(fd, h, sizeof(h)) == (ssize_t)sizeof(h));
	}
	if (n)
		CHECK(write(fd, p, n) == (ssize_t)n);
	if (flags & 2) {
		uint64_t want = cap;
		if (!(flags & 1) && n >= 32)
			want = keel_get_le64(p + 24); /* whatever the header says */
		if (want > (1u << 20))
			want = 1u << 20;
		struct stat st;
		if (fstat(fd, &st) == 0 && (uint64_t)st.st_size < want)
			CHECK(ftruncate(fd, (off_t)want) == 0);
	}
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (root[0] == '\0') {
		const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
		snprintf(root, sizeof(root), "%s/fuzz_journal.%d", base ? base : "/tmp", (int)getpid());
		mkdir(root, 0755);
		atexit(remove_root);
	}
	if (size < 1)
		return 0;
	unsigned flags = data[0];
	empty_dir(root);
	size_t off = 1;
	uint32_t prev_end = 0;
	for (uint64_t id = 1; id <= 4 && off + 2 <= size; id++) {
		size_t n = keel_get_le16(data + off);
		off += 2;
		if (n > size - off)
			n = size - off;
		write_seg(root, id, data + off, n, flags, (flags & 8) ? prev_end : 0);
		prev_end = (uint32_t)(J_SEG_HDR + n);
		off += n;
	}
	char err[1024];
	keel_journal_check_stats cs;
	int rc = keel_journal_check(root, NULL, NULL, &cs, err, sizeof(err));
	CHECK(rc == 0 || rc == -ENOMEM);
	int n = 0;
	int rr = keel_journal_read(root, 0, visit, &n, NULL, err, sizeof(err));
	if (rc == 0 && cs.damages == 0)
		CHECK(rr == 0 || rr == -ENOMEM); /* check says clean: it reads */
	if (rc == 0 && (flags & 4)) {
		keel_journal_check_stats ss;
		rc = keel_journal_salvage(root, 0, NULL, NULL, &ss, err, sizeof(err));
		CHECK(rc == 0 || rc == -ENOMEM || rc == -ENOSPC);
		if (rc == 0) {
			char jdir[300];
			snprintf(jdir, sizeof(jdir), "%s", root);
			CHECK(keel_journal_check(jdir, NULL, NULL, &cs, err, sizeof(err)) == 0);
			if (cs.damages)
				fprintf(stderr, "after salvage: %s\n", err);
			CHECK(cs.damages == 0);
			n = 0;
			CHECK(keel_journal_read(jdir, 0, visit, &n, NULL, err, sizeof(err)) == 0);
		}
	}
	return 0;
}
