/*
 * security.c - users, crypt(3) password checks and per-address permissions
 * (see security.h).
 *
 * keel_security owns copies of the users (name, hash, roles), of the
 * security settings and of the cluster credentials (ha.cluster-user, and a
 * yescrypt hash of ha.cluster-password derived at create: the password
 * itself is not kept here); nothing points back into the config.  It is
 * immutable after create, so any thread may authenticate or check
 * permissions.  Invariant: enabled == (users_count > 0); cluster_hash only
 * with cluster_user.
 */
#include "security.h"

#include <assert.h>
#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "keel/alloc.h"
#include "match.h"

struct keel_principal {
	const char *name;
	char **roles;
	unsigned roles_count;
};

typedef struct sec_user {
	keel_principal principal;   /* name points at name_buf */
	char *name_buf;
	char *hash;
} sec_user;

/* Index of a permission's role list in sec_setting.roles. */
enum { PERM_SEND, PERM_CONSUME, PERM_MANAGE, PERM_COUNT };

typedef struct sec_setting {
	char *match;
	int specificity;            /* keel_match_specificity(match) */
	char **roles[PERM_COUNT];
	unsigned roles_count[PERM_COUNT];
} sec_setting;

struct keel_security {
	bool enabled;
	sec_user *users;
	unsigned users_count;
	sec_setting *settings;
	unsigned settings_count;
	char *cluster_user;         /* ha.cluster-user; NULL = none */
	char *cluster_hash;         /* crypt(3) of ha.cluster-password; NULL = none */
};

static const keel_principal anonymous = { .name = "anonymous" };

static void free_strv(char **v, unsigned n)
{
	if (v == NULL)
		return;
	for (unsigned i = 0; i < n; i++)
		keel_free(v[i]);
	keel_free(v);
}

/* Copy n strings into *out (NULL when n == 0).  0 or -ENOMEM. */
static int dup_strv(char ***out, char *const *v, unsigned n)
{
	*out = NULL;
	if (n == 0)
		return 0;
	char **copy = keel_calloc(n, sizeof(*copy));
	if (copy == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		copy[i] = keel_strdup(v[i]);
		if (copy[i] == NULL) {
			free_strv(copy, n);
			return -ENOMEM;
		}
	}
	*out = copy;
	return 0;
}

void keel_security_free(keel_security *sec)
{
	if (sec == NULL)
		return;
	for (unsigned i = 0; i < sec->users_count; i++) {
		sec_user *u = &sec->users[i];
		keel_free(u->name_buf);
		keel_free(u->hash);
		free_strv(u->principal.roles, u->principal.roles_count);
	}
	keel_free(sec->users);
	for (unsigned i = 0; i < sec->settings_count; i++) {
		sec_setting *s = &sec->settings[i];
		keel_free(s->match);
		for (int p = 0; p < PERM_COUNT; p++)
			free_strv(s->roles[p], s->roles_count[p]);
	}
	keel_free(sec->settings);
	keel_free(sec->cluster_user);
	keel_free(sec->cluster_hash);
	keel_free(sec);
}

/* crypt() of `key` with `setting` into data, or NULL when crypt refuses
 * the setting (libxcrypt returns NULL or a "*" failure token). */
static const char *crypt_checked(const char *key, const char *setting,
				 struct crypt_data *data)
{
	const char *h = crypt_rn(key, setting, data, (int)sizeof(*data));
	if (h == NULL || h[0] == '*')
		return NULL;
	return h;
}

static int copy_users(keel_security *sec, const keel_config *cfg,
		      struct crypt_data *data, char *err, size_t errlen)
{
	sec->users = keel_calloc(cfg->users_count, sizeof(*sec->users));
	if (sec->users == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < cfg->users_count; i++) {
		const keel_user_cfg *uc = &cfg->users[i];
		sec_user *u = &sec->users[i];
		if (uc->name == NULL || uc->password_hash == NULL) {
			snprintf(err, errlen, "users[%u]: name and password-hash are "
				 "required", i);
			return -EINVAL;
		}
		for (unsigned j = 0; j < i; j++) {
			if (strcmp(sec->users[j].name_buf, uc->name) == 0) {
				snprintf(err, errlen, "users[%u]: user \"%s\" is "
					 "defined twice", i, uc->name);
				return -EINVAL;
			}
		}
		if (uc->password_hash[0] != '$' ||
		    crypt_checked("keel-check", uc->password_hash, data) == NULL) {
			snprintf(err, errlen, "users[%u]: password-hash of \"%s\" is "
				 "not a crypt(3) hash", i, uc->name);
			return -EINVAL;
		}
		sec->users_count = i + 1; /* from here, free frees this one */
		u->name_buf = keel_strdup(uc->name);
		u->hash = keel_strdup(uc->password_hash);
		if (u->name_buf == NULL || u->hash == NULL)
			return -ENOMEM;
		u->principal.name = u->name_buf;
		if (dup_strv(&u->principal.roles, uc->roles, uc->roles_count))
			return -ENOMEM;
		u->principal.roles_count = uc->roles_count;
	}
	return 0;
}

static int copy_settings(keel_security *sec, const keel_config *cfg, char *err,
			 size_t errlen)
{
	if (cfg->security_settings_count == 0)
		return 0;
	sec->settings = keel_calloc(cfg->security_settings_count,
				    sizeof(*sec->settings));
	if (sec->settings == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < cfg->security_settings_count; i++) {
		const keel_security_setting_cfg *sc = &cfg->security_settings[i];
		sec_setting *s = &sec->settings[i];
		if (sc->match == NULL || !keel_match_valid(sc->match)) {
			snprintf(err, errlen, "security-settings[%u]: invalid match "
				 "pattern \"%s\"", i, sc->match ? sc->match : "");
			return -EINVAL;
		}
		sec->settings_count = i + 1;
		s->match = keel_strdup(sc->match);
		if (s->match == NULL)
			return -ENOMEM;
		s->specificity = keel_match_specificity(sc->match);
		if (dup_strv(&s->roles[PERM_SEND], sc->send, sc->send_count))
			return -ENOMEM;
		s->roles_count[PERM_SEND] = sc->send_count;
		if (dup_strv(&s->roles[PERM_CONSUME], sc->consume, sc->consume_count))
			return -ENOMEM;
		s->roles_count[PERM_CONSUME] = sc->consume_count;
		if (dup_strv(&s->roles[PERM_MANAGE], sc->manage, sc->manage_count))
			return -ENOMEM;
		s->roles_count[PERM_MANAGE] = sc->manage_count;
	}
	return 0;
}

/* The cluster credentials: the user, and the password only as a hash
 * (a verifier with a random salt; the plain text stays in the config,
 * where the manager takes it to send in its own REGISTERs). */
static int copy_cluster(keel_security *sec, const keel_config *cfg, char *err, size_t errlen)
{
	const keel_ha_cfg *h = cfg->ha;
	char hash[CRYPT_OUTPUT_SIZE];
	if (h == NULL || h->cluster_user == NULL)
		return 0;
	sec->cluster_user = keel_strdup(h->cluster_user);
	if (sec->cluster_user == NULL)
		return -ENOMEM;
	if (h->cluster_password == NULL)
		return 0;
	int rc = keel_security_hash_password(h->cluster_password, hash, sizeof(hash));
	if (rc == 0) {
		sec->cluster_hash = keel_strdup(hash);
		rc = sec->cluster_hash ? 0 : -ENOMEM;
	} else if (rc != -ENOMEM) {
		snprintf(err, errlen, "ha.cluster-password: cannot hash it: %s", strerror(-rc));
		rc = -EINVAL;
	}
	explicit_bzero(hash, sizeof(hash));
	return rc;
}

int keel_security_create(keel_security **out, const keel_config *cfg, char *err,
			 size_t errlen)
{
	char dummy[1];
	struct crypt_data *data = NULL;
	int rc;

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	keel_security *sec = keel_calloc(1, sizeof(*sec));
	if (sec == NULL) {
		rc = -ENOMEM;
		goto out_err;
	}
	sec->enabled = cfg->users_count > 0;
	if (sec->enabled) {
		data = keel_calloc(1, sizeof(*data));
		if (data == NULL) {
			rc = -ENOMEM;
			goto out_err;
		}
		rc = copy_users(sec, cfg, data, err, errlen);
		if (rc != 0)
			goto out_err;
	}
	rc = copy_settings(sec, cfg, err, errlen);
	if (rc != 0)
		goto out_err;
	rc = copy_cluster(sec, cfg, err, errlen);
	if (rc != 0)
		goto out_err;
	keel_free(data);
	*out = sec;
	return 0;

out_err:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	keel_free(data);
	keel_security_free(sec);
	return rc;
}

bool keel_security_enabled(const keel_security *sec)
{
	return sec->enabled;
}

/* Equal strings, in time that depends on the lengths only. */
static bool const_time_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t n = la > lb ? la : lb;
	unsigned char diff = la != lb;
	for (size_t i = 0; i < n; i++) {
		unsigned char ca = i < la ? (unsigned char)a[i] : 0;
		unsigned char cb = i < lb ? (unsigned char)b[i] : 0;
		diff |= ca ^ cb;
	}
	return diff == 0;
}

int keel_security_authenticate(const keel_security *sec, const char *login,
			       const char *passcode, const keel_principal **out)
{
	if (!sec->enabled) {
		*out = &anonymous;
		return 0;
	}
	assert(sec->users_count > 0);
	const sec_user *user = NULL;
	for (unsigned i = 0; login != NULL && i < sec->users_count; i++) {
		if (strcmp(sec->users[i].name_buf, login) == 0)
			user = &sec->users[i];
	}
	/* Unknown users (and missing passcodes) pay for one crypt() too, with
	 * a real user's hash as the setting, so a refusal takes the same time
	 * whether or not the login exists. */
	const sec_user *check = user ? user : &sec->users[0];
	struct crypt_data *data = keel_calloc(1, sizeof(*data));
	if (data == NULL)
		return -ENOMEM;
	const char *h = crypt_checked(passcode ? passcode : "", check->hash, data);
	bool ok = h != NULL && const_time_equal(h, check->hash);
	keel_free(data);
	if (!ok || user == NULL || passcode == NULL)
		return -EACCES;
	*out = &user->principal;
	return 0;
}

bool keel_security_cluster_creds(const keel_security *sec)
{
	return sec->cluster_user != NULL;
}

int keel_security_cluster_check(const keel_security *sec, const char *user,
				const char *password)
{
	if (user == NULL)
		user = "";
	if (password == NULL)
		password = "";
	if (sec->cluster_user == NULL) /* no credentials: none may be offered */
		return user[0] == '\0' && password[0] == '\0' ? 0 : -EACCES;
	bool ok = const_time_equal(user, sec->cluster_user);
	if (sec->cluster_hash == NULL) {
		ok &= password[0] == '\0';
	} else {
		struct crypt_data *data = keel_calloc(1, sizeof(*data));
		if (data == NULL)
			return -ENOMEM;
		const char *h = crypt_checked(password, sec->cluster_hash, data);
		ok &= h != NULL && const_time_equal(h, sec->cluster_hash);
		explicit_bzero(data, sizeof(*data));
		keel_free(data);
	}
	return ok ? 0 : -EACCES;
}

static int perm_index(keel_perm perm)
{
	switch (perm) {
	case KEEL_PERM_SEND:
		return PERM_SEND;
	case KEEL_PERM_CONSUME:
		return PERM_CONSUME;
	case KEEL_PERM_MANAGE:
		return PERM_MANAGE;
	}
	assert(!"one permission at a time");
	return -1;
}

bool keel_security_allowed(const keel_security *sec, const keel_principal *p,
			   keel_perm perm, const char *address)
{
	if (!sec->enabled)
		return true;
	int pi = perm_index(perm);
	if (p == NULL || address == NULL || pi < 0)
		return false;
	const sec_setting *best = NULL;
	for (unsigned i = 0; i < sec->settings_count; i++) {
		const sec_setting *s = &sec->settings[i];
		if (keel_match(s->match, address) &&
		    (best == NULL || s->specificity > best->specificity))
			best = s;
	}
	if (best == NULL)
		return false;
	for (unsigned i = 0; i < best->roles_count[pi]; i++) {
		for (unsigned r = 0; r < p->roles_count; r++) {
			if (strcmp(best->roles[pi][i], p->roles[r]) == 0)
				return true;
		}
	}
	return false;
}

const char *keel_principal_name(const keel_principal *p)
{
	return p->name;
}

int keel_security_hash_password(const char *password, char *out, size_t outlen)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	int rc = 0;

	if (password == NULL || out == NULL)
		return -EINVAL;
	errno = 0;
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting, (int)sizeof(setting)) == NULL)
		return errno ? -errno : -EINVAL;
	struct crypt_data *data = keel_calloc(1, sizeof(*data));
	if (data == NULL)
		return -ENOMEM;
	errno = 0;
	const char *h = crypt_checked(password, setting, data);
	if (h == NULL) {
		rc = errno ? -errno : -EINVAL;
		goto out;
	}
	if (strlen(h) >= outlen) {
		rc = -ENOSPC;
		goto out;
	}
	memcpy(out, h, strlen(h) + 1);
out:
	keel_free(data);
	return rc;
}
