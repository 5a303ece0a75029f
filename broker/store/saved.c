/*
 * saved.c - saved replicated journals (see saved.h): PREPARE_REPLICA's
 * save (rename into a new copy, fsync), the rotation to `keep` copies,
 * the incomplete mark of a replica being synced, listing the copies and
 * their comparison results (saved.json).
 *
 * Owns nothing between calls.  Invariant: a directory is emptied only
 * when it holds nothing (or only a partial replica, or keep is 0); every
 * other one is renamed, and the new empty ones are made only after the
 * renames are durable.  Any thread, one call at a time per data dir.
 */
#include "saved.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "keel/alloc.h"
#include "fsutil.h"
#include "log.h"

/* ---- small helpers ---------------------------------------------------------- */

static int path_fmt(char *out, size_t len, const char *a, const char *b)
{
	int n = snprintf(out, len, "%s/%s", a, b);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* The directory holding `path` (its parent), for the fsync of a rename. */
static int parent_of(const char *path, char *out, size_t len)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		return snprintf(out, len, ".") < (int)len ? 0 : -ENAMETOOLONG;
	size_t n = slash == path ? 1 : (size_t)(slash - path);
	if (n >= len)
		return -ENAMETOOLONG;
	memcpy(out, path, n);
	out[n] = '\0';
	return 0;
}

/* Does a flat directory hold any file but `ignore` (may be NULL)?
 * Missing: no.  1, 0 or -errno. */
static int dir_has_files(const char *dir, const char *ignore)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return errno == ENOENT ? 0 : -errno;
	struct dirent *e;
	int found = 0;
	while (found == 0 && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (ignore && strcmp(e->d_name, ignore) == 0)
			continue;
		found = 1;
	}
	closedir(d);
	return found;
}

/* Empty a flat directory (create it when missing). */
static int empty_dir(const char *dir)
{
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	DIR *d = opendir(dir);
	if (d == NULL)
		return -errno;
	struct dirent *e;
	int rc = 0;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(d), e->d_name, 0) < 0 && errno != ENOENT)
			rc = -errno;
	}
	closedir(d);
	return rc;
}

static int mkdir_durable(const char *dir)
{
	if (mkdir(dir, 0755) == 0) {
		char parent[KEEL_MAX_PATH_BYTES];
		int rc = parent_of(dir, parent, sizeof(parent));
		return rc ? rc : keel_fsync_dir(parent);
	}
	return errno == EEXIST ? 0 : -errno;
}

/* Create `path` holding nothing, durably. */
static int touch_durable(const char *dir, const char *name)
{
	char path[KEEL_MAX_PATH_BYTES];
	int rc = path_fmt(path, sizeof(path), dir, name);
	if (rc)
		return rc;
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc ? rc : keel_fsync_dir(dir);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

int keel_saved_remove_tree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		return errno ? -errno : -EIO;
	return 0;
}

/* ---- copies' names ---------------------------------------------------------- */

static bool digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return n > 0;
}

/* <NNN>-seq<S>-<yyyymmdd>T<hhmmss>: false for anything else. */
static bool parse_name(const char *name, uint64_t *number, uint64_t *seq, int64_t *when_s)
{
	const char *d1 = strchr(name, '-');
	if (d1 == NULL || !digits(name, (size_t)(d1 - name)) || d1 - name > 18 ||
	    strncmp(d1, "-seq", 4) != 0)
		return false;
	const char *s = d1 + 4, *d2 = strchr(s, '-');
	if (d2 == NULL || !digits(s, (size_t)(d2 - s)) || d2 - s > 19)
		return false;
	const char *t = d2 + 1;
	if (strlen(t) != 15 || !digits(t, 8) || t[8] != 'T' || !digits(t + 9, 6))
		return false;
	struct tm tm = { 0 };
	if (sscanf(t, "%4d%2d%2dT%2d%2d%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
		   &tm.tm_min, &tm.tm_sec) != 6)
		return false;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	*number = strtoull(name, NULL, 10);
	*seq = strtoull(s, NULL, 10);
	*when_s = (int64_t)timegm(&tm);
	return true;
}

static uint64_t tree_bytes(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return 0;
	uint64_t sum = 0;
	struct dirent *e;
	struct stat st;
	while ((e = readdir(d)) != NULL)
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode))
			sum += (uint64_t)st.st_size;
	closedir(d);
	return sum;
}

static int cmp_copy(const void *a, const void *b)
{
	const keel_saved_copy *x = a, *y = b;
	return x->number < y->number ? -1 : x->number > y->number;
}

int keel_saved_list(const char *data_dir, keel_saved_copy **out, size_t *n, char *err,
		    size_t errlen)
{
	char dir[KEEL_MAX_PATH_BYTES];
	*out = NULL;
	*n = 0;
	int rc = path_fmt(dir, sizeof(dir), data_dir, KEEL_SAVED_DIR);
	if (rc) {
		snprintf(err, errlen, "%s: path too long", data_dir);
		return rc;
	}
	DIR *d = opendir(dir);
	if (d == NULL) {
		if (errno == ENOENT)
			return 0;
		rc = -errno;
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return rc;
	}
	keel_saved_copy *v = NULL;
	size_t cnt = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		keel_saved_copy c = { 0 };
		if (strlen(e->d_name) >= sizeof(c.name) ||
		    !parse_name(e->d_name, &c.number, &c.activation_seq, &c.when_s))
			continue;
		snprintf(c.name, sizeof(c.name), "%s", e->d_name);
		if (path_fmt(c.path, sizeof(c.path), dir, c.name))
			continue;
		char sub[KEEL_MAX_PATH_BYTES], res[KEEL_MAX_PATH_BYTES];
		if (path_fmt(sub, sizeof(sub), c.path, "journal") == 0)
			c.bytes += tree_bytes(sub);
		if (path_fmt(sub, sizeof(sub), c.path, "large-messages") == 0)
			c.bytes += tree_bytes(sub);
		if (path_fmt(sub, sizeof(sub), c.path, "paging") == 0)
			c.bytes += tree_bytes(sub);
		c.compared = path_fmt(res, sizeof(res), c.path, KEEL_SAVED_RESULT) == 0 &&
			     access(res, F_OK) == 0;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 8;
			keel_saved_copy *nv = keel_realloc(v, cap * sizeof(*nv));
			if (nv == NULL) {
				keel_free(v);
				closedir(d);
				snprintf(err, errlen, "out of memory");
				return -ENOMEM;
			}
			v = nv;
		}
		v[cnt++] = c;
	}
	closedir(d);
	if (cnt > 1)
		qsort(v, cnt, sizeof(*v), cmp_copy);
	*out = v;
	*n = cnt;
	return 0;
}

bool keel_saved_pending(const char *data_dir)
{
	char dir[KEEL_MAX_PATH_BYTES], res[KEEL_MAX_PATH_BYTES];
	if (path_fmt(dir, sizeof(dir), data_dir, KEEL_SAVED_DIR))
		return false;
	DIR *d = opendir(dir);
	if (d == NULL)
		return false;
	bool pending = false;
	struct dirent *e;
	while (!pending && (e = readdir(d)) != NULL) {
		uint64_t number, seq;
		int64_t when;
		if (!parse_name(e->d_name, &number, &seq, &when))
			continue;
		if (snprintf(res, sizeof(res), "%s/%s/%s", dir, e->d_name, KEEL_SAVED_RESULT) <
		    (int)sizeof(res))
			pending = access(res, F_OK) < 0;
	}
	closedir(d);
	return pending;
}

/* Remove the oldest copies until `keep` are left (keep < 0: all stay). */
static void rotate(const char *data_dir, int32_t keep)
{
	keel_saved_copy *v;
	size_t n;
	char err[256];
	if (keep < 0 || keel_saved_list(data_dir, &v, &n, err, sizeof(err)) < 0)
		return;
	for (size_t i = 0; i + (size_t)keep < n; i++) {
		int rc = keel_saved_remove_tree(v[i].path);
		if (rc)
			keel_log_warn("saved journals: cannot remove %s: %s", v[i].path,
				      strerror(-rc));
		else
			keel_log_info("saved journals: removed %s (keeping %d)", v[i].path,
				      (int)keep);
	}
	keel_free(v);
}

/* ---- PREPARE_REPLICA ------------------------------------------------------------ */

/* Rename `from` to <copy>/<as> when it exists. */
static int move_into(const char *from, const char *copy, const char *as)
{
	char to[KEEL_MAX_PATH_BYTES], parent[KEEL_MAX_PATH_BYTES];
	int rc = path_fmt(to, sizeof(to), copy, as);
	if (rc == 0)
		rc = parent_of(from, parent, sizeof(parent));
	if (rc)
		return rc;
	if (rename(from, to) < 0)
		return errno == ENOENT ? 0 : -errno;
	return keel_fsync_dir(parent);
}

/* A new, empty copy directory named after o; its path in `copy`. */
static int new_copy(const keel_saved_prepare_opts *o, char *copy, size_t len)
{
	char dir[KEEL_MAX_PATH_BYTES], name[64];
	int rc = path_fmt(dir, sizeof(dir), o->data_dir, KEEL_SAVED_DIR);
	if (rc == 0)
		rc = mkdir_durable(dir);
	if (rc)
		return rc;
	keel_saved_copy *v;
	size_t n;
	char err[256];
	rc = keel_saved_list(o->data_dir, &v, &n, err, sizeof(err));
	if (rc)
		return rc;
	uint64_t next = n ? v[n - 1].number + 1 : 1;
	keel_free(v);
	time_t t = (time_t)o->now_s;
	struct tm tm;
	gmtime_r(&t, &tm);
	char when[32];
	strftime(when, sizeof(when), "%Y%m%dT%H%M%S", &tm);
	snprintf(name, sizeof(name), "%03" PRIu64 "-seq%" PRIu64 "-%s", next, o->activation_seq,
		 when);
	rc = path_fmt(copy, len, dir, name);
	if (rc)
		return rc;
	if (mkdir(copy, 0755) < 0)
		return -errno;
	return keel_fsync_dir(dir);
}

int keel_saved_prepare(const keel_saved_prepare_opts *o, char *copy, size_t copylen, char *err,
		       size_t errlen)
{
	char mark[KEEL_MAX_PATH_BYTES];
	int rc = path_fmt(mark, sizeof(mark), o->journal_dir, KEEL_JOURNAL_INCOMPLETE_MARK);
	if (rc) {
		snprintf(err, errlen, "%s: path too long", o->journal_dir);
		return rc;
	}
	bool partial = access(mark, F_OK) == 0;
	int jfiles = dir_has_files(o->journal_dir, KEEL_JOURNAL_INCOMPLETE_MARK);
	int lfiles = dir_has_files(o->large_dir, NULL);
	if (jfiles < 0 || lfiles < 0) {
		rc = jfiles < 0 ? jfiles : lfiles;
		snprintf(err, errlen, "cannot read %s: %s",
			 jfiles < 0 ? o->journal_dir : o->large_dir, strerror(-rc));
		return rc;
	}
	int saved = 0;
	if ((jfiles || lfiles) && !partial && o->keep != 0) {
		rc = new_copy(o, copy, copylen);
		if (rc == 0)
			rc = move_into(o->journal_dir, copy, "journal");
		if (rc == 0)
			rc = move_into(o->large_dir, copy, "large-messages");
		if (rc == 0 && o->paging_dir)
			rc = move_into(o->paging_dir, copy, "paging");
		if (rc == 0)
			rc = keel_fsync_dir(copy);
		if (rc) {
			snprintf(err, errlen, "cannot save %s and %s into %s: %s", o->journal_dir,
				 o->large_dir, KEEL_SAVED_DIR, strerror(-rc));
			return rc;
		}
		saved = 1;
	} else if (partial && (jfiles || lfiles)) {
		keel_log_info("saved journals: %s holds a partial replica (a sync that did not "
			      "complete): not saved", o->journal_dir);
	}
	/* the renamed directories are gone; the others are emptied */
	rc = o->paging_dir ? keel_saved_remove_tree(o->paging_dir) : 0;
	if (rc == 0)
		rc = empty_dir(o->journal_dir);
	if (rc == 0)
		rc = empty_dir(o->large_dir);
	if (rc == 0)
		rc = touch_durable(o->journal_dir, KEEL_JOURNAL_INCOMPLETE_MARK);
	if (rc == 0)
		rc = keel_fsync_dir(o->large_dir);
	if (rc == 0 && parent_of(o->journal_dir, mark, sizeof(mark)) == 0)
		rc = keel_fsync_dir(mark);
	if (rc == 0 && parent_of(o->large_dir, mark, sizeof(mark)) == 0)
		rc = keel_fsync_dir(mark);
	if (rc) {
		snprintf(err, errlen, "cannot prepare %s and %s: %s", o->journal_dir, o->large_dir,
			 strerror(-rc));
		return rc;
	}
	rotate(o->data_dir, o->keep);
	return saved;
}

int keel_saved_replica_complete(const char *journal_dir)
{
	char mark[KEEL_MAX_PATH_BYTES];
	int rc = path_fmt(mark, sizeof(mark), journal_dir, KEEL_JOURNAL_INCOMPLETE_MARK);
	if (rc)
		return rc;
	if (unlink(mark) < 0)
		return errno == ENOENT ? 0 : -errno;
	return keel_fsync_dir(journal_dir);
}

/* ---- results (saved.json) ---------------------------------------------------------- */

void keel_saved_result_free(keel_saved_result *r)
{
	if (r == NULL)
		return;
	keel_free(r->lacking_ids);
	r->lacking_ids = NULL;
	r->nlacking = 0;
}

int keel_saved_write_result(const char *copy_path, const keel_saved_result *r)
{
	char path[KEEL_MAX_PATH_BYTES], tmp[KEEL_MAX_PATH_BYTES];
	int rc = path_fmt(path, sizeof(path), copy_path, KEEL_SAVED_RESULT);
	if (rc == 0)
		rc = path_fmt(tmp, sizeof(tmp), copy_path, KEEL_SAVED_RESULT ".tmp");
	if (rc)
		return rc;
	json_t *ids = json_array();
	json_t *o = json_pack("{s:i, s:I, s:I, s:I, s:o}", "version", 1, "messages",
			      (json_int_t)r->messages, "lacking", (json_int_t)r->lacking,
			      "compared", (json_int_t)r->compared_s, "lacking-ids", ids);
	if (o == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < r->nlacking; i++)
		if (json_array_append_new(ids, json_integer((json_int_t)r->lacking_ids[i])) < 0) {
			json_decref(o);
			return -ENOMEM;
		}
	if (r->error[0] && json_object_set_new(o, "error", json_string(r->error)) < 0) {
		json_decref(o);
		return -ENOMEM;
	}
	char *text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (text == NULL)
		return -ENOMEM;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		free(text);
		return rc;
	}
	rc = keel_pwrite_all(fd, text, strlen(text), 0);
	free(text);
	if (rc == 0 && fdatasync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc == 0)
		rc = keel_fsync_dir(copy_path);
	if (rc)
		unlink(tmp);
	return rc;
}

int keel_saved_read_result(const char *copy_path, keel_saved_result *r, char *err,
			   size_t errlen)
{
	char path[KEEL_MAX_PATH_BYTES];
	memset(r, 0, sizeof(*r));
	r->messages = r->lacking = -1;
	int rc = path_fmt(path, sizeof(path), copy_path, KEEL_SAVED_RESULT);
	if (rc)
		return rc;
	if (access(path, F_OK) < 0)
		return -errno;
	json_error_t je;
	json_t *o = json_load_file(path, 0, &je);
	json_t *ids = o ? json_object_get(o, "lacking-ids") : NULL;
	json_t *m = o ? json_object_get(o, "messages") : NULL;
	json_t *l = o ? json_object_get(o, "lacking") : NULL;
	if (o == NULL || !json_is_array(ids) || !json_is_integer(m) || !json_is_integer(l)) {
		snprintf(err, errlen, "%s: %s", path, o ? "not a comparison result" : je.text);
		json_decref(o);
		return -EBADMSG;
	}
	r->messages = json_integer_value(m);
	r->lacking = json_integer_value(l);
	r->compared_s = json_integer_value(json_object_get(o, "compared"));
	const char *e = json_string_value(json_object_get(o, "error"));
	snprintf(r->error, sizeof(r->error), "%s", e ? e : "");
	size_t n = json_array_size(ids);
	r->lacking_ids = keel_malloc((n ? n : 1) * sizeof(uint64_t));
	if (r->lacking_ids == NULL) {
		json_decref(o);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		r->lacking_ids[i] = (uint64_t)json_integer_value(json_array_get(ids, i));
	r->nlacking = n;
	json_decref(o);
	return 0;
}
