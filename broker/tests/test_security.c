/*
 * test_security.c - keel_security: open mode without users, logins against
 * crypt(3) hashes, permissions per address pattern (most specific wins),
 * hash_password round trips.  Every test checks that it leaves no
 * allocation behind (keel_alloc_live).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "keel/alloc.h"
#include "config.h"
#include "security.h"

/* Hashes of "admin-secret" and "app-secret" (yescrypt), as in the sample
 * configuration. */
#define HASH_ADMIN "$y$j9T$knv6RvOMdeTojCcgf51qs.$yutJUXBm9rYGKLjy6H2oL6lHsLhaLKSAJl7KkC6Wgn9"
#define HASH_APP "$y$j9T$EnPeNLWyN9kEC4kEz6G.r.$b6iShO3qdv5EBak.9bkWgl5kUsEiFcuWm2kCifAbog8"

static const char users_yaml[] =
	"users:\n"
	"  - name: admin\n"
	"    password-hash: \"" HASH_ADMIN "\"\n"
	"    roles: [admin]\n"
	"  - name: app\n"
	"    password-hash: \"" HASH_APP "\"\n"
	"    roles: [app]\n"
	"  - name: eu\n"
	"    password-hash: \"" HASH_APP "\"\n"
	"    roles: [eu-team]\n"
	"security-settings:\n"
	"  - match: \"#\"\n"
	"    send: [admin]\n"
	"    consume: [admin]\n"
	"    manage: [admin]\n"
	"  - match: orders.#\n"
	"    send: [app]\n"
	"    consume: [app, admin]\n"
	"  - match: orders.eu\n"
	"    send: [eu-team]\n"
	"    consume: [eu-team]\n"
	"    manage: [eu-team]\n"
	"  - match: \"audit.*\"\n"
	"    consume: [admin]\n";

static int setup(void **state)
{
	static int64_t live;
	live = keel_alloc_live();
	*state = &live;
	return 0;
}

static int teardown(void **state)
{
	int64_t start = *(int64_t *)*state;
	assert_int_equal(keel_alloc_live(), start);
	return 0;
}

static keel_security *make(const char *yaml)
{
	keel_config *cfg = NULL;
	keel_security *sec = NULL;
	char err[512] = "";
	int rc = keel_config_load_data("s.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err));
	if (rc != 0)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
	rc = keel_security_create(&sec, cfg, err, sizeof(err));
	if (rc != 0)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
	keel_config_free(cfg); /* sec keeps its own copies */
	return sec;
}

static const keel_principal *login(const keel_security *sec, const char *user,
				   const char *pass)
{
	const keel_principal *p = NULL;
	assert_int_equal(keel_security_authenticate(sec, user, pass, &p), 0);
	assert_non_null(p);
	return p;
}

static void test_no_users_is_open(void **state)
{
	(void)state;
	keel_security *sec = make("name: open\n");
	assert_false(keel_security_enabled(sec));
	const keel_principal *p = NULL;
	assert_int_equal(keel_security_authenticate(sec, NULL, NULL, &p), 0);
	assert_non_null(p);
	assert_string_equal(keel_principal_name(p), "anonymous");
	p = login(sec, "whoever", "whatever");
	assert_true(keel_security_allowed(sec, p, KEEL_PERM_SEND, "any.thing"));
	assert_true(keel_security_allowed(sec, p, KEEL_PERM_CONSUME, "x"));
	assert_true(keel_security_allowed(sec, p, KEEL_PERM_MANAGE, "x"));
	keel_security_free(sec);
	keel_security_free(NULL);
}

static void test_user_ok(void **state)
{
	(void)state;
	keel_security *sec = make(users_yaml);
	assert_true(keel_security_enabled(sec));
	const keel_principal *p = login(sec, "admin", "admin-secret");
	assert_string_equal(keel_principal_name(p), "admin");
	p = login(sec, "app", "app-secret");
	assert_string_equal(keel_principal_name(p), "app");
	keel_security_free(sec);
}

static void test_refused_logins(void **state)
{
	(void)state;
	keel_security *sec = make(users_yaml);
	const keel_principal *p = (const keel_principal *)&sec; /* sentinel */
	const keel_principal *before = p;
	/* wrong password */
	assert_int_equal(keel_security_authenticate(sec, "admin", "app-secret", &p), -EACCES);
	assert_int_equal(keel_security_authenticate(sec, "admin", "", &p), -EACCES);
	assert_int_equal(keel_security_authenticate(sec, "admin", "admin-secreT", &p), -EACCES);
	/* unknown user, even with a password some user has */
	assert_int_equal(keel_security_authenticate(sec, "root", "admin-secret", &p), -EACCES);
	/* missing headers */
	assert_int_equal(keel_security_authenticate(sec, NULL, "admin-secret", &p), -EACCES);
	assert_int_equal(keel_security_authenticate(sec, "admin", NULL, &p), -EACCES);
	assert_int_equal(keel_security_authenticate(sec, NULL, NULL, &p), -EACCES);
	assert_ptr_equal(p, before); /* *out untouched on failure */
	keel_security_free(sec);
}

static void test_most_specific_wins(void **state)
{
	(void)state;
	keel_security *sec = make(users_yaml);
	const keel_principal *admin = login(sec, "admin", "admin-secret");
	const keel_principal *app = login(sec, "app", "app-secret");
	const keel_principal *eu = login(sec, "eu", "app-secret");

	/* "#" decides for everything else: admin only. */
	assert_true(keel_security_allowed(sec, admin, KEEL_PERM_SEND, "misc"));
	assert_false(keel_security_allowed(sec, app, KEEL_PERM_SEND, "misc"));
	assert_false(keel_security_allowed(sec, eu, KEEL_PERM_CONSUME, "misc"));

	/* "orders.#" beats "#": app may send, admin may not (the less specific
	 * "#" that lets admin send does not count). */
	assert_true(keel_security_allowed(sec, app, KEEL_PERM_SEND, "orders.us"));
	assert_true(keel_security_allowed(sec, app, KEEL_PERM_SEND, "orders"));
	assert_false(keel_security_allowed(sec, admin, KEEL_PERM_SEND, "orders.us"));
	assert_true(keel_security_allowed(sec, admin, KEEL_PERM_CONSUME, "orders.us"));
	assert_false(keel_security_allowed(sec, eu, KEEL_PERM_SEND, "orders.us"));

	/* "orders.eu" beats both: only eu-team. */
	assert_true(keel_security_allowed(sec, eu, KEEL_PERM_SEND, "orders.eu"));
	assert_true(keel_security_allowed(sec, eu, KEEL_PERM_CONSUME, "orders.eu"));
	assert_false(keel_security_allowed(sec, app, KEEL_PERM_SEND, "orders.eu"));
	assert_false(keel_security_allowed(sec, admin, KEEL_PERM_CONSUME, "orders.eu"));
	/* ... but not deeper names, which fall back to "orders.#". */
	assert_false(keel_security_allowed(sec, eu, KEEL_PERM_SEND, "orders.eu.x"));
	assert_true(keel_security_allowed(sec, app, KEEL_PERM_SEND, "orders.eu.x"));

	/* "audit.*" beats "#": consume for admin, nothing else for anyone. */
	assert_true(keel_security_allowed(sec, admin, KEEL_PERM_CONSUME, "audit.log"));
	assert_false(keel_security_allowed(sec, admin, KEEL_PERM_SEND, "audit.log"));
	assert_false(keel_security_allowed(sec, admin, KEEL_PERM_MANAGE, "audit.log"));
	keel_security_free(sec);
}

static void test_manage_permission(void **state)
{
	(void)state;
	keel_security *sec = make(users_yaml);
	const keel_principal *admin = login(sec, "admin", "admin-secret");
	const keel_principal *app = login(sec, "app", "app-secret");
	const keel_principal *eu = login(sec, "eu", "app-secret");
	assert_true(keel_security_allowed(sec, admin, KEEL_PERM_MANAGE, "misc"));
	assert_false(keel_security_allowed(sec, app, KEEL_PERM_MANAGE, "misc"));
	/* orders.# lists no manage role: nobody, admin included. */
	assert_false(keel_security_allowed(sec, admin, KEEL_PERM_MANAGE, "orders.us"));
	assert_false(keel_security_allowed(sec, app, KEEL_PERM_MANAGE, "orders.us"));
	assert_true(keel_security_allowed(sec, eu, KEEL_PERM_MANAGE, "orders.eu"));
	assert_false(keel_security_allowed(sec, NULL, KEEL_PERM_MANAGE, "misc"));
	keel_security_free(sec);
}

static void test_no_matching_setting_denies(void **state)
{
	(void)state;
	keel_security *sec = make("users:\n"
				  "  - name: app\n"
				  "    password-hash: \"" HASH_APP "\"\n"
				  "    roles: [app]\n"
				  "security-settings:\n"
				  "  - match: orders.#\n"
				  "    send: [app]\n");
	const keel_principal *app = login(sec, "app", "app-secret");
	assert_true(keel_security_allowed(sec, app, KEEL_PERM_SEND, "orders.x"));
	assert_false(keel_security_allowed(sec, app, KEEL_PERM_SEND, "invoices"));
	assert_false(keel_security_allowed(sec, app, KEEL_PERM_CONSUME, "orders.x"));
	keel_security_free(sec);
}

static void test_hash_password_round_trip(void **state)
{
	(void)state;
	char hash[256];
	assert_int_equal(keel_security_hash_password("s3cr3t pass", hash, sizeof(hash)), 0);
	assert_memory_equal(hash, "$y$", 3);
	char hash2[256];
	assert_int_equal(keel_security_hash_password("s3cr3t pass", hash2, sizeof(hash2)), 0);
	assert_string_not_equal(hash, hash2); /* fresh salt each time */

	char yaml[512];
	snprintf(yaml, sizeof(yaml),
		 "users:\n  - name: carol\n    password-hash: \"%s\"\n", hash);
	keel_security *sec = make(yaml);
	const keel_principal *p = login(sec, "carol", "s3cr3t pass");
	assert_string_equal(keel_principal_name(p), "carol");
	assert_int_equal(keel_security_authenticate(sec, "carol", "s3cr3t", &p), -EACCES);
	keel_security_free(sec);

	char tiny[8];
	assert_int_equal(keel_security_hash_password("x", tiny, sizeof(tiny)), -ENOSPC);
}

/* A config built in code is checked too (no file to catch mistakes). */
static void test_create_rejects_bad_config(void **state)
{
	(void)state;
	keel_config *cfg = NULL;
	keel_security *sec = NULL;
	char err[256] = "";
	assert_int_equal(keel_config_default(&cfg), 0);
	keel_user_cfg user = { .name = "u", .password_hash = "plain" };
	cfg->users = &user;
	cfg->users_count = 1;
	assert_int_equal(keel_security_create(&sec, cfg, err, sizeof(err)), -EINVAL);
	assert_null(sec);
	assert_string_equal(err, "users[0]: password-hash of \"u\" is not a crypt(3) hash");

	user.password_hash = HASH_APP;
	keel_security_setting_cfg bad = { .match = "a.#b" };
	cfg->security_settings = &bad;
	cfg->security_settings_count = 1;
	assert_int_equal(keel_security_create(&sec, cfg, err, sizeof(err)), -EINVAL);
	assert_null(sec);
	assert_string_equal(err, "security-settings[0]: invalid match pattern \"a.#b\"");
	cfg->users = NULL;
	cfg->users_count = 0;
	cfg->security_settings = NULL;
	cfg->security_settings_count = 0;
	keel_config_free(cfg);
}

static void alloc_failures(const char *yaml)
{
	keel_config *cfg = NULL;
	char err[512] = "";
	assert_int_equal(keel_config_load_data("s.yaml", yaml, strlen(yaml), &cfg, err,
					       sizeof(err)),
			 0);
	uint64_t n;
	for (n = 1; n < 10000; n++) {
		keel_security *sec = NULL;
		int64_t before = keel_alloc_live();
		keel_alloc_fail_after(n);
		int rc = keel_security_create(&sec, cfg, err, sizeof(err));
		keel_alloc_fail_after(0);
		if (rc == 0) {
			keel_security_free(sec);
			assert_int_equal(keel_alloc_live(), before);
			break;
		}
		assert_int_equal(rc, -ENOMEM);
		assert_null(sec);
		assert_int_equal(keel_alloc_live(), before);
	}
	assert_true(n > 5 && n < 10000);
	keel_config_free(cfg);
}

static void test_alloc_failures(void **state)
{
	(void)state;
	alloc_failures(users_yaml);
	char yaml[2048];
	snprintf(yaml, sizeof(yaml), "%sha:\n  role: backup\n  listen: \"127.0.0.1:0\"\n"
		 "  peer: \"127.0.0.1:1\"\n  cluster-user: c\n  cluster-password: p\n",
		 users_yaml);
	alloc_failures(yaml);
}

/* Cluster credentials (issue 19 defect 4): the password is kept only as a
 * hash (a verifier derived at create), checked in constant time; without
 * a cluster user only empty credentials pass. */
static void test_cluster_credentials(void **state)
{
	(void)state;
	const char *ha = "ha:\n  role: primary\n  listen: \"127.0.0.1:0\"\n"
			 "  peer: \"127.0.0.1:1\"\n";
	char yaml[512];
	snprintf(yaml, sizeof(yaml), "%s  cluster-user: keel-cluster\n"
		 "  cluster-password: \"s3cret pass\"\n", ha);
	keel_security *sec = make(yaml);
	assert_true(keel_security_cluster_creds(sec));
	assert_int_equal(keel_security_cluster_check(sec, "keel-cluster", "s3cret pass"), 0);
	assert_int_equal(keel_security_cluster_check(sec, "keel-cluster", "s3cret pasS"), -EACCES);
	assert_int_equal(keel_security_cluster_check(sec, "keel-cluster", "s3cret pass "),
			 -EACCES);
	assert_int_equal(keel_security_cluster_check(sec, "keel-cluster", ""), -EACCES);
	assert_int_equal(keel_security_cluster_check(sec, "keel-cluster", NULL), -EACCES);
	assert_int_equal(keel_security_cluster_check(sec, "other", "s3cret pass"), -EACCES);
	assert_int_equal(keel_security_cluster_check(sec, NULL, NULL), -EACCES);
	/* users and the cluster are apart: no user logs in with it */
	assert_false(keel_security_enabled(sec));
	keel_security_free(sec);

	/* a user without a password: that user and an empty password only */
	snprintf(yaml, sizeof(yaml), "%s  cluster-user: keel-cluster\n", ha);
	sec = make(yaml);
	assert_int_equal(keel_security_cluster_check(sec, "keel-cluster", NULL), 0);
	assert_int_equal(keel_security_cluster_check(sec, "keel-cluster", "x"), -EACCES);
	keel_security_free(sec);

	/* no cluster credentials: a REGISTER must carry none */
	sec = make(ha);
	assert_false(keel_security_cluster_creds(sec));
	assert_int_equal(keel_security_cluster_check(sec, NULL, NULL), 0);
	assert_int_equal(keel_security_cluster_check(sec, "", ""), 0);
	assert_int_equal(keel_security_cluster_check(sec, "u", NULL), -EACCES);
	assert_int_equal(keel_security_cluster_check(sec, NULL, "p"), -EACCES);
	keel_security_free(sec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_no_users_is_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_user_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_logins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_most_specific_wins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_manage_permission, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_matching_setting_denies, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_hash_password_round_trip, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_create_rejects_bad_config, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cluster_credentials, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
