/*
 * hastore.c - the identity file <data-dir>/ha-identity.json (hastore.h):
 * a JSON object of the keel_ha_persist fields plus "crc32c", the CRC32C of
 * the canonical form (those fields, compact, keys sorted), so a torn or
 * hand-edited file is refused instead of trusted.  Saving is atomic and
 * durable: .tmp, fdatasync, rename, fsync of the directory.  Owns nothing
 * between calls; any thread.
 */
#include "hastore.h"

#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fiu-local.h>
#include <jansson.h>

#include "crc32c.h"
#include "limits.h"

#define HASTORE_VERSION 1

/* The keys of the file, in the order written; "crc32c" comes last. */
static const char *const hastore_keys[] = {
	"version", "node-id", "activation-seq", "journal-valid", "peer-may-be-live",
	"incarnation", "crc32c",
};

/* ---- node ids ---------------------------------------------------------- */

void keel_ha_node_id_format(const keel_ha_node_id *id, char *out)
{
	static const char hex[] = "0123456789abcdef";
	char *o = out;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = hex[id->b[i] >> 4];
		*o++ = hex[id->b[i] & 0xf];
	}
	*o = '\0';
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int keel_ha_node_id_parse(const char *s, keel_ha_node_id *id)
{
	keel_ha_node_id v;
	if (s == NULL || strlen(s) != KEEL_HA_NODE_ID_STRLEN)
		return -EINVAL;
	const char *p = s;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10) {
			if (*p++ != '-')
				return -EINVAL;
		}
		int hi = hex_val(p[0]), lo = hex_val(p[1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		v.b[i] = (uint8_t)(hi << 4 | lo);
		p += 2;
	}
	*id = v;
	return 0;
}

/* ---- the canonical form ------------------------------------------------ */

/* The fields without the checksum.  NULL on allocation failure. */
static json_t *persist_json(const keel_ha_persist *p)
{
	char id[KEEL_HA_NODE_ID_STRLEN + 1];
	keel_ha_node_id_format(&p->node_id, id);
	return json_pack("{s:i, s:s, s:I, s:b, s:b, s:I}", "version", HASTORE_VERSION,
			 "node-id", id, "activation-seq", (json_int_t)p->activation_seq,
			 "journal-valid", p->journal_valid, "peer-may-be-live",
			 p->peer_may_be_live, "incarnation", (json_int_t)p->incarnation);
}

/* CRC32C of the compact, key-sorted dump of persist_json(p).  0 or -ENOMEM. */
static int persist_crc(const keel_ha_persist *p, uint32_t *crc)
{
	json_t *o = persist_json(p);
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(o);
	if (s == NULL)
		return -ENOMEM;
	*crc = keel_crc32c(0, s, strlen(s));
	free(s); /* jansson's allocator */
	return 0;
}

static int path_of(char *out, size_t outlen, const char *dir, const char *name)
{
	int n = snprintf(out, outlen, "%s/%s", dir, name);
	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

/* ---- load -------------------------------------------------------------- */

static int bad(char *err, size_t errlen, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int bad(char *err, size_t errlen, const char *path, const char *fmt, ...)
{
	char what[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "%s: %s", path, what);
	return -EBADMSG;
}

static bool get_u64(json_t *o, const char *key, uint64_t *v)
{
	json_t *j = json_object_get(o, key);
	if (!json_is_integer(j) || json_integer_value(j) < 0)
		return false;
	*v = (uint64_t)json_integer_value(j);
	return true;
}

static bool get_bool(json_t *o, const char *key, bool *v)
{
	json_t *j = json_object_get(o, key);
	if (!json_is_boolean(j))
		return false;
	*v = json_is_true(j);
	return true;
}

/* Parse and check the file's bytes into *p: 0, -EBADMSG (err), -ENOMEM. */
static int decode(const char *path, const char *text, size_t len, keel_ha_persist *p,
		  char *err, size_t errlen)
{
	json_error_t jerr;
	keel_ha_persist v;
	uint64_t version, crc;
	int rc;
	json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	memset(&v, 0, sizeof(v));
	if (o == NULL) {
		rc = bad(err, errlen, path, "not JSON (line %d: %s)", jerr.line, jerr.text);
		goto out;
	}
	if (!json_is_object(o)) {
		rc = bad(err, errlen, path, "not a JSON object");
		goto out;
	}
	const char *key;
	json_t *val;
	json_object_foreach(o, key, val) {
		size_t k = 0, n = sizeof(hastore_keys) / sizeof(hastore_keys[0]);
		while (k < n && strcmp(key, hastore_keys[k]) != 0)
			k++;
		if (k == n) {
			rc = bad(err, errlen, path, "unknown key \"%s\"", key);
			goto out;
		}
	}
	if (!get_u64(o, "version", &version)) {
		rc = bad(err, errlen, path, "\"version\" missing or not a number");
		goto out;
	}
	if (version != HASTORE_VERSION) {
		rc = bad(err, errlen, path, "version %llu, this broker reads %d",
			 (unsigned long long)version, HASTORE_VERSION);
		goto out;
	}
	json_t *id = json_object_get(o, "node-id");
	if (!json_is_string(id) || keel_ha_node_id_parse(json_string_value(id), &v.node_id)) {
		rc = bad(err, errlen, path, "\"node-id\" missing or not a UUID "
			 "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
		goto out;
	}
	if (!get_u64(o, "activation-seq", &v.activation_seq) ||
	    !get_u64(o, "incarnation", &v.incarnation)) {
		rc = bad(err, errlen, path, "\"activation-seq\" or \"incarnation\" missing or "
			 "not a non-negative integer");
		goto out;
	}
	if (!get_bool(o, "journal-valid", &v.journal_valid) ||
	    !get_bool(o, "peer-may-be-live", &v.peer_may_be_live)) {
		rc = bad(err, errlen, path, "\"journal-valid\" or \"peer-may-be-live\" missing "
			 "or not true/false");
		goto out;
	}
	if (!get_u64(o, "crc32c", &crc) || crc > UINT32_MAX) {
		rc = bad(err, errlen, path, "\"crc32c\" missing or not a 32-bit number");
		goto out;
	}
	uint32_t want;
	rc = persist_crc(&v, &want);
	if (rc != 0) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	if (want != crc) {
		rc = bad(err, errlen, path, "checksum mismatch (crc32c %llu in the file, %lu "
			 "computed): torn or edited by hand", (unsigned long long)crc,
			 (unsigned long)want);
		goto out;
	}
	*p = v;
	rc = 0;
out:
	json_decref(o);
	return rc;
}

static int fresh_identity(keel_ha_role role, keel_ha_persist *out, char *err, size_t errlen)
{
	keel_ha_node_id id;
	memset(&id, 0, sizeof(id));
	if (role == KEEL_HA_ROLE_PRIMARY) {
		size_t got = 0;
		while (got < sizeof(id.b)) {
			ssize_t n = getrandom(id.b + got, sizeof(id.b) - got, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				int rc = -errno;
				snprintf(err, errlen, "getrandom: %s", strerror(errno));
				return rc;
			}
			got += (size_t)n;
		}
		/* A version-4 UUID: never all zero (zero means "no id"). */
		id.b[6] = (uint8_t)((id.b[6] & 0x0f) | 0x40);
		id.b[8] = (uint8_t)((id.b[8] & 0x3f) | 0x80);
	}
	keel_ha_persist_fresh(out, role, &id);
	return 0;
}

int keel_hastore_load(const char *data_dir, keel_ha_role role, keel_ha_persist *out,
		      bool *fresh, char *err, size_t errlen)
{
	char path[KEEL_MAX_PATH_BYTES], dummy[1];
	char buf[KEEL_HA_IDENTITY_MAX_BYTES + 1];
	keel_ha_persist v;
	size_t len = 0;
	int fd = -1, rc;

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	rc = path_of(path, sizeof(path), data_dir, KEEL_HASTORE_FILE);
	if (rc != 0) {
		snprintf(err, errlen, "%s: data directory path too long", data_dir);
		return rc;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		rc = fresh_identity(role, &v, err, errlen);
		if (rc == 0) {
			*out = v;
			*fresh = true;
		}
		return rc;
	}
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return rc;
	}
	while (len < sizeof(buf)) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > KEEL_HA_IDENTITY_MAX_BYTES) {
		rc = bad(err, errlen, path, "larger than %d bytes (KEEL_HA_IDENTITY_MAX_BYTES)",
			 KEEL_HA_IDENTITY_MAX_BYTES);
		goto out;
	}
	rc = decode(path, buf, len, &v, err, errlen);
	if (rc == 0) {
		*out = v;
		*fresh = false;
	}
out:
	close(fd);
	return rc;
}

/* ---- save -------------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}


/* mkdir data_dir (one level); when created, make its entry durable too. */
static int ensure_dir(const char *dir)
{
	if (mkdir(dir, 0755) < 0)
		return errno == EEXIST ? 0 : -errno;
	char parent[KEEL_MAX_PATH_BYTES];
	size_t n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	while (n > 0 && dir[n - 1] != '/')
		n--;
	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (n == 0)
		snprintf(parent, sizeof(parent), ".");
	else
		snprintf(parent, sizeof(parent), "%.*s", (int)n, dir);
	return keel_fsync_dir(parent);
}

int keel_hastore_save(const char *data_dir, const keel_ha_persist *p)
{
	char path[KEEL_MAX_PATH_BYTES], tmp[KEEL_MAX_PATH_BYTES];
	json_t *o = NULL;
	char *text = NULL;
	int fd = -1, rc;

	fiu_return_on(KEEL_FIU_REPL_PERSIST, -EIO);
	if (p->activation_seq > INT64_MAX || p->incarnation > INT64_MAX)
		return -ERANGE;
	if ((rc = path_of(path, sizeof(path), data_dir, KEEL_HASTORE_FILE)) != 0 ||
	    (rc = path_of(tmp, sizeof(tmp), data_dir, KEEL_HASTORE_FILE ".tmp")) != 0)
		return rc;
	uint32_t crc;
	if ((rc = persist_crc(p, &crc)) != 0)
		return rc;
	o = persist_json(p);
	if (o == NULL || json_object_set_new(o, "crc32c", json_integer(crc)) != 0) {
		rc = -ENOMEM;
		goto out;
	}
	text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (text == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = ensure_dir(data_dir)) != 0)
		goto out;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if ((rc = write_all(fd, text, strlen(text))) != 0 || (rc = write_all(fd, "\n", 1)) != 0)
		goto out_unlink;
	if (fdatasync(fd) < 0) {
		rc = -errno;
		goto out_unlink;
	}
	rc = close(fd) < 0 ? -errno : 0;
	fd = -1;
	if (rc != 0)
		goto out_unlink;
	if (rename(tmp, path) < 0) {
		rc = -errno;
		goto out_unlink;
	}
	rc = keel_fsync_dir(data_dir);
	goto out;

out_unlink:
	if (fd >= 0)
		close(fd);
	fd = -1;
	unlink(tmp);
out:
	if (fd >= 0)
		close(fd);
	free(text); /* jansson's allocator */
	json_decref(o);
	return rc;
}
