/*
 * security.h - users, password hashes and per-address permissions.
 *
 * Built from the config.  With no users configured every login is accepted
 * and every permission granted (and keel-broker refuses to listen on a
 * non-loopback address).  With users, a login must match a user whose
 * crypt(3) hash verifies the passcode; permissions are granted to roles per
 * address pattern (security-settings; the most specific matching pattern
 * decides, as in address settings).  Pure data; any thread may read it.
 */
#ifndef KEEL_SECURITY_H
#define KEEL_SECURITY_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

typedef struct keel_security keel_security;
typedef struct keel_principal keel_principal;

typedef enum keel_perm {
	KEEL_PERM_SEND = 1,
	KEEL_PERM_CONSUME = 2,
	KEEL_PERM_MANAGE = 4,
} keel_perm;

/* Copies what it needs from cfg.  -EINVAL with a message in err. */
int keel_security_create(keel_security **out, const keel_config *cfg, char *err,
			 size_t errlen);
void keel_security_free(keel_security *sec);
bool keel_security_enabled(const keel_security *sec);

/* 0 and *out (owned by sec, valid until keel_security_free), or -EACCES.
 * login/passcode may be NULL (missing headers). */
int keel_security_authenticate(const keel_security *sec, const char *login,
			       const char *passcode, const keel_principal **out);
bool keel_security_allowed(const keel_security *sec, const keel_principal *p,
			   keel_perm perm, const char *address);
const char *keel_principal_name(const keel_principal *p);

/*
 * Cluster credentials (ha.cluster-user, ha.cluster-password): does the
 * config name a cluster user?  And do `user`/`password` (NULL = empty)
 * match them: 0 or -EACCES (-ENOMEM).  With no cluster user configured,
 * only empty credentials match.  The password is checked against a
 * yescrypt hash derived at create (one crypt(): tens of ms; call it off
 * the loop thread, see auth.h) and compared in constant time.
 */
bool keel_security_cluster_creds(const keel_security *sec);
int keel_security_cluster_check(const keel_security *sec, const char *user,
				const char *password);

/* Hash a password with crypt_gensalt (yescrypt, "$y$") + crypt.  0 or
 * -errno; out gets the hash string. */
int keel_security_hash_password(const char *password, char *out, size_t outlen);

#endif
