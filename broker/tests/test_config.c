/*
 * test_config.c - keel_config_load*: the sample file, every key, defaults,
 * and one test per kind of error, each checking the exact
 * "file:line: key: message" text.  Every test checks that it leaves no
 * allocation behind (keel_alloc_live).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "keel/alloc.h"
#include "config.h"
#include "limits.h"

/* The sample configuration, next to this file in the source tree. */
static char sample_path[4096];

static const char *const hash_admin =
	"$y$j9T$knv6RvOMdeTojCcgf51qs.$yutJUXBm9rYGKLjy6H2oL6lHsLhaLKSAJl7KkC6Wgn9";

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

static int load_str(const char *yaml, keel_config **out, char *err, size_t errlen)
{
	return keel_config_load_data("t.yaml", yaml, strlen(yaml), out, err, errlen);
}

/* Loading must fail with -EINVAL and exactly `want` as the message. */
static void expect_error(const char *yaml, const char *want)
{
	keel_config *cfg = NULL;
	char err[512] = "untouched";
	int rc = load_str(yaml, &cfg, err, sizeof(err));
	if (rc != -EINVAL || strcmp(err, want) != 0)
		print_error("yaml:\n%s\nrc=%d err=\"%s\"\nwant \"%s\"\n", yaml, rc, err,
			    want);
	assert_int_equal(rc, -EINVAL);
	assert_null(cfg);
	assert_string_equal(err, want);
}

static void assert_defaults(const keel_config *cfg)
{
	assert_string_equal(cfg->name, "keel");
	assert_string_equal(cfg->listen, "127.0.0.1:61613");
	assert_string_equal(cfg->data_dir, "./keel-data");
	assert_string_equal(cfg->log_level, "info");
	assert_null(cfg->events);
	assert_int_equal(cfg->connection_ttl, 60000);
	assert_int_equal(cfg->check_period, 30000);
	assert_int_equal(cfg->handshake_timeout, 10000);
	assert_int_equal(cfg->max_auto_created_addresses, 10000);
	assert_int_equal(cfg->users_count, 0);
	assert_int_equal(cfg->security_settings_count, 0);
	assert_int_equal(cfg->address_settings_count, 0);
	assert_int_equal(cfg->addresses_count, 0);
}

static void test_sample_file(void **state)
{
	(void)state;
	keel_config *cfg = NULL;
	char err[512] = "";
	int rc = keel_config_load(sample_path, &cfg, err, sizeof(err));
	if (rc != 0)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
	assert_string_equal(cfg->name, "keel");
	assert_string_equal(cfg->listen, "127.0.0.1:61613");
	assert_null(cfg->events);
	assert_int_equal(cfg->users_count, 2);
	assert_string_equal(cfg->users[0].name, "admin");
	assert_string_equal(cfg->users[0].password_hash, hash_admin);
	assert_int_equal(cfg->users[0].roles_count, 2);
	assert_string_equal(cfg->users[0].roles[1], "app");
	assert_int_equal(cfg->security_settings_count, 2);
	assert_string_equal(cfg->security_settings[1].match, "orders.#");
	assert_int_equal(cfg->security_settings[1].send_count, 2);
	assert_int_equal(cfg->address_settings_count, 1);
	assert_int_equal(*cfg->address_settings[0].max_delivery_attempts, 10);
	assert_string_equal(cfg->address_settings[0].dead_letter_address, "DLQ");
	assert_int_equal(cfg->addresses_count, 3);
	/* DLQ's queue sets nothing: defaults. */
	assert_string_equal(cfg->addresses[0].queues[0].name, "DLQ");
	assert_true(cfg->addresses[0].queues[0].durable);
	assert_int_equal(cfg->addresses[0].queues[0].max_consumers, -1);
	assert_null(cfg->addresses[0].queues[0].routing_type);
	assert_string_equal(cfg->addresses[1].routing_type, "ANYCAST");
	assert_string_equal(cfg->addresses[2].routing_type, "MULTICAST");
	keel_config_free(cfg);
}

static const char every_key_yaml[] =
	"name: node-a\n"
	"listen: broker.example:7000\n"
	"data-dir: /var/lib/keel\n"
	"log-level: trace\n"
	"events: \"3\"\n"
	"connection-ttl: 1500\n"
	"check-period: 0\n"
	"handshake-timeout: 2500\n"
	"max-auto-created-addresses: -1\n"
	"users:\n"
	"  - name: alice\n"
	"    password-hash: \"$y$j9T$knv6RvOMdeTojCcgf51qs.$yutJUXBm9rYGKLjy6H2oL6lHsLhaLKSAJl7KkC6Wgn9\"\n"
	"    roles: [r1, r2]\n"
	"  - name: bob\n"
	"    password-hash: \"$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/\"\n"
	"security-settings:\n"
	"  - match: a.*\n"
	"    send: [r1]\n"
	"    consume: [r1, r2]\n"
	"    manage: [r2]\n"
	"address-settings:\n"
	"  - match: a.#\n"
	"    auto-create-addresses: false\n"
	"    auto-create-queues: yes\n"
	"    auto-delete-queues: on\n"
	"    max-delivery-attempts: 4\n"
	"    dead-letter-address: \"\"\n"
	"    expiry-address: exp\n"
	"addresses:\n"
	"  - name: a.b\n"
	"    routing-type: MULTICAST\n"
	"    queues:\n"
	"      - name: q1\n"
	"        routing-type: ANYCAST\n"
	"        durable: false\n"
	"        max-consumers: 0\n"
	"        purge-on-no-consumers: true\n"
	"      - name: q2\n"
	"        max-consumers: 7\n";

static void test_every_key(void **state)
{
	(void)state;
	keel_config *cfg = NULL;
	char err[512] = "";
	int rc = load_str(every_key_yaml, &cfg, err, sizeof(err));
	if (rc != 0)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
	assert_string_equal(cfg->name, "node-a");
	assert_string_equal(cfg->listen, "broker.example:7000");
	assert_string_equal(cfg->data_dir, "/var/lib/keel");
	assert_string_equal(cfg->log_level, "trace");
	assert_string_equal(cfg->events, "3");
	assert_int_equal(cfg->connection_ttl, 1500);
	assert_int_equal(cfg->check_period, 0); /* set to 0, not defaulted */
	assert_int_equal(cfg->handshake_timeout, 2500);
	assert_int_equal(cfg->max_auto_created_addresses, -1);

	assert_int_equal(cfg->users_count, 2);
	assert_string_equal(cfg->users[0].name, "alice");
	assert_string_equal(cfg->users[0].password_hash, hash_admin);
	assert_int_equal(cfg->users[0].roles_count, 2);
	assert_string_equal(cfg->users[0].roles[0], "r1");
	assert_string_equal(cfg->users[0].roles[1], "r2");
	assert_string_equal(cfg->users[1].name, "bob");
	assert_int_equal(cfg->users[1].roles_count, 0);

	assert_int_equal(cfg->security_settings_count, 1);
	const keel_security_setting_cfg *ss = &cfg->security_settings[0];
	assert_string_equal(ss->match, "a.*");
	assert_int_equal(ss->send_count, 1);
	assert_string_equal(ss->send[0], "r1");
	assert_int_equal(ss->consume_count, 2);
	assert_string_equal(ss->consume[1], "r2");
	assert_int_equal(ss->manage_count, 1);
	assert_string_equal(ss->manage[0], "r2");

	assert_int_equal(cfg->address_settings_count, 1);
	const keel_address_setting_cfg *as = &cfg->address_settings[0];
	assert_string_equal(as->match, "a.#");
	assert_non_null(as->auto_create_addresses);
	assert_false(*as->auto_create_addresses);
	assert_true(*as->auto_create_queues);
	assert_true(*as->auto_delete_queues);
	assert_int_equal(*as->max_delivery_attempts, 4);
	assert_string_equal(as->dead_letter_address, "");
	assert_string_equal(as->expiry_address, "exp");

	assert_int_equal(cfg->addresses_count, 1);
	const keel_address_cfg *a = &cfg->addresses[0];
	assert_string_equal(a->name, "a.b");
	assert_string_equal(a->routing_type, "MULTICAST");
	assert_int_equal(a->queues_count, 2);
	assert_string_equal(a->queues[0].name, "q1");
	assert_string_equal(a->queues[0].routing_type, "ANYCAST");
	assert_false(a->queues[0].durable);
	assert_int_equal(a->queues[0].max_consumers, 0);
	assert_true(a->queues[0].purge_on_no_consumers);
	assert_string_equal(a->queues[1].name, "q2");
	assert_null(a->queues[1].routing_type);
	assert_true(a->queues[1].durable);
	assert_int_equal(a->queues[1].max_consumers, 7);
	assert_false(a->queues[1].purge_on_no_consumers);
	keel_config_free(cfg);
}

static void test_defaults(void **state)
{
	(void)state;
	keel_config *cfg = NULL;
	assert_int_equal(keel_config_default(&cfg), 0);
	assert_defaults(cfg);
	keel_config_free(cfg);

	/* Unset keys of a partial file get the defaults; unset optional
	 * address settings stay NULL. */
	char err[256] = "";
	assert_int_equal(load_str("name: x\n"
				  "address-settings:\n"
				  "  - match: \"#\"\n"
				  "addresses:\n"
				  "  - name: a\n"
				  "    queues:\n"
				  "      - name: q\n",
				  &cfg, err, sizeof(err)),
			 0);
	assert_string_equal(cfg->name, "x");
	assert_string_equal(cfg->listen, "127.0.0.1:61613");
	assert_int_equal(cfg->connection_ttl, 60000);
	assert_null(cfg->address_settings[0].auto_create_queues);
	assert_null(cfg->address_settings[0].max_delivery_attempts);
	assert_null(cfg->address_settings[0].dead_letter_address);
	assert_string_equal(cfg->addresses[0].routing_type, "ANYCAST");
	assert_true(cfg->addresses[0].queues[0].durable);
	assert_int_equal(cfg->addresses[0].queues[0].max_consumers, -1);
	keel_config_free(cfg);
	keel_config_free(NULL);
}

static void test_empty_file(void **state)
{
	(void)state;
	static const char *const empties[] = { "", "# nothing but a comment\n", "\n\n" };
	for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
		keel_config *cfg = NULL;
		char err[256] = "";
		assert_int_equal(load_str(empties[i], &cfg, err, sizeof(err)), 0);
		assert_defaults(cfg);
		keel_config_free(cfg);
	}
}

static void test_unknown_key(void **state)
{
	(void)state;
	expect_error("name: x\nbogus: 1\n", "t.yaml:2: bogus: unknown key");
	expect_error("addresses:\n"
		     "  - name: a\n"
		     "    queues:\n"
		     "      - name: q\n"
		     "        durable: true\n"
		     "        bogus: 1\n",
		     "t.yaml:6: addresses[0].queues[0].bogus: unknown key");
	expect_error("users:\n"
		     "  - name: u\n"
		     "    password: secret\n",
		     "t.yaml:3: users[0].password: unknown key");
}

static void test_wrong_type(void **state)
{
	(void)state;
	/* The example of config.h, on line 12. */
	expect_error("name: x\n"
		     "listen: 127.0.0.1:1\n"
		     "data-dir: d\n"
		     "log-level: info\n"
		     "connection-ttl: 1\n"
		     "check-period: 1\n"
		     "address-settings:\n"
		     "  - match: a\n"
		     "    auto-create-queues: true\n"
		     "  - match: b\n"
		     "    auto-create-queues: false\n"
		     "    max-delivery-attempts: ten\n",
		     "t.yaml:12: address-settings[1].max-delivery-attempts: "
		     "invalid unsigned integer \"ten\"");
	expect_error("connection-ttl: -5\n",
		     "t.yaml:1: connection-ttl: invalid unsigned integer \"-5\"");
	expect_error("connection-ttl: 99999999999\n",
		     "t.yaml:1: connection-ttl: invalid unsigned integer \"99999999999\"");
	expect_error("addresses:\n  - name: a\n    queues:\n      - name: q\n"
		     "        max-consumers: lots\n",
		     "t.yaml:5: addresses[0].queues[0].max-consumers: "
		     "invalid integer \"lots\"");
	expect_error("name: [a, b]\n", "t.yaml:1: name: expected a string, got a list");
	expect_error("users: alice\n", "t.yaml:1: users: expected a list, got a single value");
	expect_error("addresses:\n  - a\n",
		     "t.yaml:2: addresses[0]: expected a mapping, got a single value");
	expect_error("users:\n  - name: u\n    password-hash: \"$y$x\"\n"
		     "    roles: [a, [b]]\n",
		     "t.yaml:4: users[0].roles[1]: expected a string, got a list");
	expect_error("addresses:\n  - name: a\n    queues:\n      - name: q\n"
		     "        durable: maybe\n",
		     "t.yaml:5: addresses[0].queues[0].durable: invalid boolean \"maybe\"");
	expect_error("- 1\n", "t.yaml:1: expected a mapping, got a list");
	expect_error("handshake-timeout: 0\n",
		     "t.yaml:1: handshake-timeout: must be at least 1 ms");
	expect_error("name: x\nmax-auto-created-addresses: 0\n",
		     "t.yaml:2: max-auto-created-addresses: must be -1 (unlimited) or at least 1, "
		     "not 0 (auto-create-addresses: false in address-settings turns "
		     "auto-creation off)");
	expect_error("max-auto-created-addresses: -2\n",
		     "t.yaml:1: max-auto-created-addresses: must be -1 (unlimited) or at least 1, "
		     "not -2 (auto-create-addresses: false in address-settings turns "
		     "auto-creation off)");
}

static void test_bad_routing_type(void **state)
{
	(void)state;
	expect_error("addresses:\n  - name: a\n    routing-type: BROADCAST\n",
		     "t.yaml:3: addresses[0].routing-type: must be ANYCAST or "
		     "MULTICAST, not \"BROADCAST\"");
	expect_error("addresses:\n  - name: a\n    queues:\n      - name: q\n"
		     "        routing-type: anycast\n",
		     "t.yaml:5: addresses[0].queues[0].routing-type: must be ANYCAST "
		     "or MULTICAST, not \"anycast\"");
}

static void test_bad_pattern(void **state)
{
	(void)state;
	expect_error("address-settings:\n  - match: a.b#\n",
		     "t.yaml:2: address-settings[0].match: invalid pattern \"a.b#\"");
	expect_error("users:\n  - name: u\n    password-hash: \"" /* */
		     "$y$j9T$knv6RvOMdeTojCcgf51qs.$yutJUXBm9rYGKLjy6H2oL6lHsLhaLKSAJl7KkC6Wgn9"
		     "\"\n    roles: [r]\n"
		     "security-settings:\n  - match: a..b\n    send: [r]\n",
		     "t.yaml:6: security-settings[0].match: invalid pattern \"a..b\"");
	expect_error("address-settings:\n  - match: a\n  - match: a\n",
		     "t.yaml:3: address-settings[1].match: pattern \"a\" is given twice");
}

static void test_bad_listen(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"localhost", "localhost:", ":61613", "host:99999", "host:12x",
		"300.1.2.3:80", "bad_host:80", "-a:1", "[::1:80", "[zz]:80",
		"1.2.3.4:-1", "a..b:1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char yaml[128], want[256];
		snprintf(yaml, sizeof(yaml), "name: x\nlisten: \"%s\"\n", bad[i]);
		snprintf(want, sizeof(want),
			 "t.yaml:2: listen: expected HOST:PORT (port 0..65535), got \"%s\"",
			 bad[i]);
		expect_error(yaml, want);
	}
}

static void test_parse_hostport(void **state)
{
	(void)state;
	char host[256];
	uint16_t port = 1;
	assert_int_equal(keel_parse_hostport("127.0.0.1:61613", host, sizeof(host), &port), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 61613);
	assert_int_equal(keel_parse_hostport("broker-1.example.org:0", host, sizeof(host),
					     &port), 0);
	assert_string_equal(host, "broker-1.example.org");
	assert_int_equal(port, 0);
	assert_int_equal(keel_parse_hostport("localhost:65535", host, sizeof(host), &port), 0);
	assert_int_equal(port, 65535);
	assert_int_equal(keel_parse_hostport("[::1]:80", host, sizeof(host), &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 80);
	assert_int_equal(keel_parse_hostport("localhost:65536", host, sizeof(host), &port),
			 -EINVAL);
	assert_int_equal(keel_parse_hostport("127.0.0.1", host, sizeof(host), &port), -EINVAL);
	/* host buffer too small for the name */
	char small[4];
	assert_int_equal(keel_parse_hostport("localhost:1", small, sizeof(small), &port),
			 -EINVAL);
}

static void test_bad_log_level(void **state)
{
	(void)state;
	expect_error("log-level: verbose\n",
		     "t.yaml:1: log-level: must be error, warn, info, debug or trace, "
		     "not \"verbose\"");
}

static void test_bad_hash(void **state)
{
	(void)state;
	expect_error("users:\n  - name: u\n    password-hash: secret\n",
		     "t.yaml:3: users[0].password-hash: not a crypt(3) hash (generate "
		     "one with yescrypt, \"$y$...\")");
	expect_error("users:\n  - name: u\n    password-hash: \"$nonsense$abc\"\n",
		     "t.yaml:3: users[0].password-hash: not a crypt(3) hash (generate "
		     "one with yescrypt, \"$y$...\")");
}

static void test_missing_required_key(void **state)
{
	(void)state;
	expect_error("name: x\nusers:\n  - name: u\n    roles: [r]\n",
		     "t.yaml:3: users[0].password-hash: missing required key");
	expect_error("addresses:\n  - name: a\n    queues:\n      - {}\n",
		     "t.yaml:4: addresses[0].queues[0].name: missing required key");
	expect_error("address-settings:\n  - max-delivery-attempts: 3\n",
		     "t.yaml:2: address-settings[0].match: missing required key");
	expect_error("addresses:\n  - name: \"\"\n",
		     "t.yaml:2: addresses[0].name: must not be empty");
}

static void test_semantic_errors(void **state)
{
	(void)state;
	const char *user = "  - name: u\n    password-hash: \"" /* */
			   "$y$j9T$knv6RvOMdeTojCcgf51qs.$yutJUXBm9rYGKLjy6H2oL6lHsLhaLKSAJl7KkC6Wgn9"
			   "\"\n    roles: [r]\n";
	char yaml[1024];
	snprintf(yaml, sizeof(yaml), "users:\n%s%s", user, user);
	expect_error(yaml, "t.yaml:5: users[1].name: user \"u\" is defined twice");
	snprintf(yaml, sizeof(yaml),
		 "users:\n%ssecurity-settings:\n  - match: \"#\"\n    send: [r]\n"
		 "    manage: [r, boss]\n",
		 user);
	expect_error(yaml, "t.yaml:8: security-settings[0].manage[1]: role \"boss\" "
			   "is not given to any user");
	expect_error("addresses:\n  - name: a\n  - name: b\n  - name: a\n",
		     "t.yaml:4: addresses[2].name: address \"a\" is defined twice");
	expect_error("addresses:\n  - name: a\n    queues: [{name: q}]\n"
		     "  - name: b\n    queues: [{name: q}]\n",
		     "t.yaml:5: addresses[1].queues[0].name: queue \"q\" is defined twice");
	expect_error("addresses:\n  - name: a\n    queues: [{name: q, max-consumers: -2}]\n",
		     "t.yaml:3: addresses[0].queues[0].max-consumers: must be -1 "
		     "(unlimited) or more");
	expect_error("name: x\nname: y\n", "t.yaml:2: name: key given twice");
}

static void test_syntax_errors(void **state)
{
	(void)state;
	expect_error("name: x\nlisten: [a\n", "t.yaml:3: listen: syntax error: did not "
						"find expected ',' or ']'");
	expect_error("name: x\n---\nname: y\n",
		     "t.yaml:2: only one YAML document is allowed");
	expect_error("name: &n x\ndata-dir: *n\n",
		     "t.yaml:2: data-dir: aliases are not supported");
	char deep[256] = "a:";
	for (int i = 0; i < 20; i++)
		strcat(deep, " [");
	expect_error(deep, "t.yaml:1: a[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: "
			   "nested deeper than 16 levels (KEEL_MAX_CONFIG_DEPTH)");
}

static void test_missing_file(void **state)
{
	(void)state;
	keel_config *cfg = NULL;
	char err[256] = "";
	assert_int_equal(keel_config_load("/nonexistent/keel.yaml", &cfg, err, sizeof(err)),
			 -ENOENT);
	assert_null(cfg);
	assert_string_equal(err, "/nonexistent/keel.yaml: cannot open: No such file or "
				 "directory");
}

/* Write `len` bytes of `text` repeated into a new temporary file. */
static void write_tmp(char *path, size_t pathlen, const char *text, size_t len)
{
	snprintf(path, pathlen, "/tmp/keel-test-config-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	assert_non_null(f);
	size_t tl = strlen(text);
	for (size_t done = 0; done < len; done += tl)
		assert_int_equal(fwrite(text, 1, len - done < tl ? len - done : tl, f) > 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void test_file_errors(void **state)
{
	(void)state;
	char path[64], err[256] = "", want[256];
	keel_config *cfg = NULL;
	const char *bad = "name: x\nlog-level: loud\n";
	write_tmp(path, sizeof(path), bad, strlen(bad));
	assert_int_equal(keel_config_load(path, &cfg, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:2: log-level: must be error, warn, info, "
		 "debug or trace, not \"loud\"", path);
	assert_string_equal(err, want);
	assert_int_equal(unlink(path), 0);

	write_tmp(path, sizeof(path), "# padding\n", KEEL_MAX_CONFIG_BYTES + 1);
	assert_int_equal(keel_config_load(path, &cfg, err, sizeof(err)), -EFBIG);
	assert_null(cfg);
	snprintf(want, sizeof(want), "%s: larger than %d bytes (KEEL_MAX_CONFIG_BYTES)",
		 path, KEEL_MAX_CONFIG_BYTES);
	assert_string_equal(err, want);
	assert_int_equal(unlink(path), 0);

	/* Exactly at the limit is fine. */
	write_tmp(path, sizeof(path), "#\n", KEEL_MAX_CONFIG_BYTES);
	assert_int_equal(keel_config_load(path, &cfg, err, sizeof(err)), 0);
	assert_defaults(cfg);
	keel_config_free(cfg);
	assert_int_equal(unlink(path), 0);
}

/* bridges: defaults, every key, and errors naming file:line:key. */
static void test_bridges(void **state)
{
	(void)state;
	keel_config *cfg = NULL;
	char err[512];
	const char *yaml = "bridges:\n"
			   "  - name: b1\n"
			   "    queue: orders\n"
			   "    connectors: [\"127.0.0.1:61614\"]\n"
			   "  - name: b2\n"
			   "    queue: q2\n"
			   "    forwarding-address: /queue/x\n"
			   "    connectors: [\"h1:1\", \"[::1]:2\"]\n"
			   "    user: u\n"
			   "    password: p\n"
			   "    virtual-host: /\n"
			   "    retry-interval: 50\n"
			   "    retry-interval-multiplier: 2.5\n"
			   "    max-retry-interval: 500\n"
			   "    reconnect-attempts: 3\n"
			   "    confirmation-window: 4\n"
			   "    duplicate-detection: false\n"
			   "    shared-locator: no\n"
			   "    heartbeat: 1000\n";
	assert_int_equal(load_str(yaml, &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg->bridges_count, 2);
	const keel_bridge_cfg *a = &cfg->bridges[0], *b = &cfg->bridges[1];
	assert_string_equal(a->name, "b1");
	assert_null(a->forwarding_address);
	assert_int_equal(a->retry_interval, 2000);
	assert_true(a->retry_interval_multiplier == 1.0);
	assert_int_equal(a->max_retry_interval, 2000);
	assert_int_equal(a->reconnect_attempts, -1);
	assert_int_equal(a->confirmation_window, 16);
	assert_true(a->duplicate_detection);
	assert_true(a->shared_locator);
	assert_int_equal(a->heartbeat, 30000); /* beats: a target's connection-ttl */
	assert_int_equal(b->connectors_count, 2);
	assert_string_equal(b->connectors[1], "[::1]:2");
	assert_string_equal(b->virtual_host, "/");
	assert_true(b->retry_interval_multiplier == 2.5);
	assert_int_equal(b->max_retry_interval, 500);
	assert_int_equal(b->reconnect_attempts, 3);
	assert_int_equal(b->confirmation_window, 4);
	assert_false(b->duplicate_detection);
	assert_false(b->shared_locator);
	assert_int_equal(b->heartbeat, 1000);
	keel_config_free(cfg);

	expect_error("bridges:\n  - name: b\n    queue: q\n    connectors: [\"nohost\"]\n",
		     "t.yaml:4: bridges[0].connectors[0]: expected HOST:PORT (port 1..65535), "
		     "got \"nohost\"");
	expect_error("bridges:\n  - name: b\n    queue: q\n    connectors: [\"h:1\"]\n"
		     "    confirmation-window: 0\n",
		     "t.yaml:5: bridges[0].confirmation-window: must be 1..1024");
	expect_error("bridges:\n  - name: b\n    queue: q\n    connectors: [\"h:1\"]\n"
		     "    retry-interval-multiplier: 0.5\n",
		     "t.yaml:5: bridges[0].retry-interval-multiplier: must be 1.0..100.0");
	expect_error("bridges:\n  - name: b\n    queue: q\n    connectors: [\"h:1\"]\n"
		     "  - name: b\n    queue: r\n    connectors: [\"h:1\"]\n",
		     "t.yaml:5: bridges[1].name: bridge \"b\" is given twice");
}

/* ha: every key, defaults (ttl / check period from the top level), and
 * errors naming file:line:key. */
static void test_ha(void **state)
{
	(void)state;
	keel_config *cfg = NULL;
	char err[512];
	const char *full = "name: n\n"
			   "ha:\n"
			   "  role: backup\n"
			   "  listen: \"127.0.0.1:0\"\n"
			   "  peer: \"[::1]:5673\"\n"
			   "  cluster-user: cu\n"
			   "  cluster-password: cp\n"
			   "  initial-replication-sync-timeout: 1500\n"
			   "  failback-wait: 2500\n"
			   "  connection-ttl: 4000\n"
			   "  check-period: 0\n"
			   "  retry-interval: 100\n"
			   "  allow-failback: false\n"
			   "  check-for-live-server: no\n"
			   "  restart-backup: false\n"
			   "  failover-may-lose-data: true\n"
			   "  max-saved-replicated-journals-size: 5\n";
	assert_int_equal(load_str(full, &cfg, err, sizeof(err)), 0);
	assert_non_null(cfg->ha);
	const keel_ha_cfg *h = cfg->ha;
	assert_string_equal(h->role, "backup");
	assert_string_equal(h->listen, "127.0.0.1:0");
	assert_string_equal(h->peer, "[::1]:5673");
	assert_string_equal(h->cluster_user, "cu");
	assert_string_equal(h->cluster_password, "cp");
	assert_int_equal(h->initial_replication_sync_timeout, 1500);
	assert_int_equal(h->failback_wait, 2500);
	assert_int_equal(h->connection_ttl, 4000);
	assert_int_equal(h->check_period, 0);
	assert_int_equal(h->retry_interval, 100);
	assert_false(h->allow_failback);
	assert_false(h->check_for_live_server);
	assert_false(h->restart_backup);
	assert_true(h->failover_may_lose_data);
	assert_int_equal(h->max_saved_replicated_journals_size, 5);
	keel_config_free(cfg);

	/* Defaults; connection-ttl and check-period from the top level. */
	cfg = NULL;
	assert_int_equal(load_str("connection-ttl: 9000\ncheck-period: 3000\nha:\n"
				  "  role: primary\n  listen: \"0.0.0.0:5672\"\n"
				  "  peer: \"b.example:5672\"\n",
				  &cfg, err, sizeof(err)), 0);
	h = cfg->ha;
	assert_non_null(h);
	assert_string_equal(h->role, "primary");
	assert_null(h->cluster_user);
	assert_null(h->cluster_password);
	assert_int_equal(h->initial_replication_sync_timeout, 30000);
	assert_int_equal(h->failback_wait, 60000);
	assert_int_equal(h->connection_ttl, 9000);
	assert_int_equal(h->check_period, 3000);
	assert_int_equal(h->retry_interval, 2000);
	assert_true(h->allow_failback);
	assert_true(h->check_for_live_server);
	assert_true(h->restart_backup);
	assert_false(h->failover_may_lose_data);
	assert_int_equal(h->max_saved_replicated_journals_size, 2);
	keel_config_free(cfg);
	/* 0 keeps none (the old data is deleted), -1 keeps every copy */
	cfg = NULL;
	assert_int_equal(load_str("ha: {role: backup, listen: \"h:1\", peer: \"h:2\", "
				  "max-saved-replicated-journals-size: 0}\n", &cfg, err,
				  sizeof(err)), 0);
	assert_int_equal(cfg->ha->max_saved_replicated_journals_size, 0);
	keel_config_free(cfg);
	cfg = NULL;
	assert_int_equal(load_str("ha: {role: backup, listen: \"h:1\", peer: \"h:2\", "
				  "max-saved-replicated-journals-size: -1}\n", &cfg, err,
				  sizeof(err)), 0);
	assert_int_equal(cfg->ha->max_saved_replicated_journals_size, -1);
	keel_config_free(cfg);
	/* ... and the top-level defaults when neither level says. */
	cfg = NULL;
	assert_int_equal(load_str("ha: {role: backup, listen: \"h:1\", peer: \"h:2\"}\n", &cfg,
				  err, sizeof(err)), 0);
	assert_int_equal(cfg->ha->connection_ttl, 60000);
	assert_int_equal(cfg->ha->check_period, 30000);
	keel_config_free(cfg);
	/* No ha: no replication. */
	cfg = NULL;
	assert_int_equal(load_str("name: x\n", &cfg, err, sizeof(err)), 0);
	assert_null(cfg->ha);
	keel_config_free(cfg);
	assert_int_equal(keel_config_default(&cfg), 0);
	assert_null(cfg->ha);
	keel_config_free(cfg);

#define HA_OK "  listen: \"h:1\"\n  peer: \"h:2\"\n"
	expect_error("name: x\nha:\n  role: live\n" HA_OK,
		     "t.yaml:3: ha.role: must be primary or backup, not \"live\"");
	expect_error("name: x\nha:\n  role: primary\n  peer: \"h:2\"\n",
		     "t.yaml:2: ha.listen: missing required key");
	expect_error("ha:\n  role: primary\n  listen: \"h:1\"\n  peer: \"nohost\"\n",
		     "t.yaml:4: ha.peer: expected HOST:PORT (port 1..65535), got \"nohost\"");
	expect_error("ha:\n  role: primary\n  listen: \"h:1\"\n  peer: \"h:0\"\n",
		     "t.yaml:4: ha.peer: expected HOST:PORT (port 1..65535), got \"h:0\"");
	expect_error("ha:\n  role: primary\n  listen: \"bad host:1\"\n  peer: \"h:2\"\n",
		     "t.yaml:3: ha.listen: expected HOST:PORT (port 0..65535), got "
		     "\"bad host:1\"");
	expect_error("ha:\n  role: primary\n" HA_OK "  cluster-password: p\n",
		     "t.yaml:5: ha.cluster-password: given without cluster-user");
	expect_error("ha:\n  role: primary\n" HA_OK "  check-period: 500\n"
		     "  connection-ttl: 500\n",
		     "t.yaml:6: ha.connection-ttl: ha connection-ttl (500 ms) must be greater "
		     "than ha check-period (500 ms) when pings are on (check-period > 0)");
	expect_error("check-period: 70000\nha:\n  role: primary\n" HA_OK,
		     "t.yaml:1: check-period: ha connection-ttl (60000 ms) must be greater "
		     "than ha check-period (70000 ms) when pings are on (check-period > 0)");
	expect_error("ha:\n  role: primary\n" HA_OK "  failback-wait: 0\n",
		     "t.yaml:5: ha.failback-wait: must be at least 1 ms");
	expect_error("ha:\n  role: primary\n" HA_OK "  initial-replication-sync-timeout: 0\n",
		     "t.yaml:5: ha.initial-replication-sync-timeout: must be at least 1 ms");
	expect_error("ha:\n  role: primary\n" HA_OK "  retry-interval: 0\n",
		     "t.yaml:5: ha.retry-interval: must be at least 1 ms");
	expect_error("ha:\n  role: primary\n" HA_OK "  connection-ttl: 0\n  check-period: 0\n",
		     "t.yaml:5: ha.connection-ttl: must be at least 1 ms");
	expect_error("ha:\n  role: primary\n" HA_OK "  check-period: 0\n",
		     "t.yaml:5: ha.check-period: ha check-period 0 turns pings off, and pings "
		     "renew the backup's lease: set it > 0 (or failover-may-lose-data: true)");
	expect_error("check-period: 0\nha:\n  role: primary\n" HA_OK,
		     "t.yaml:1: check-period: ha check-period 0 turns pings off, and pings "
		     "renew the backup's lease: set it > 0 (or failover-may-lose-data: true)");
	expect_error("ha:\n  role: primary\n" HA_OK "  failover-may-lose-data: perhaps\n",
		     "t.yaml:5: ha.failover-may-lose-data: invalid boolean \"perhaps\"");
	expect_error("ha:\n  role: primary\n" HA_OK "  max-saved-replicated-journals-size: -2\n",
		     "t.yaml:5: ha.max-saved-replicated-journals-size: must be -1 (keep all), 0 "
		     "(keep none) or up to 1000, not -2");
	expect_error("ha:\n  role: primary\n" HA_OK "  max-saved-replicated-journals-size: 1001\n",
		     "t.yaml:5: ha.max-saved-replicated-journals-size: must be -1 (keep all), 0 "
		     "(keep none) or up to 1000, not 1001");
	expect_error("ha:\n  role: primary\n" HA_OK "  max-saved-replicated-journals-size: two\n",
		     "t.yaml:5: ha.max-saved-replicated-journals-size: invalid integer \"two\"");
	expect_error("ha:\n  role: primary\n" HA_OK "  restart-backup: maybe\n",
		     "t.yaml:5: ha.restart-backup: invalid boolean \"maybe\"");
	expect_error("ha:\n  role: primary\n" HA_OK "  ha-policy: x\n",
		     "t.yaml:5: ha.ha-policy: unknown key");
#undef HA_OK

	/* The commented-out example in the sample file is valid once
	 * uncommented (it is the file's last block). */
	static char text[64 * 1024];
	FILE *fp = fopen(sample_path, "rb");
	assert_non_null(fp);
	size_t n = fread(text, 1, sizeof(text) - 1, fp);
	fclose(fp);
	text[n] = '\0';
	char *blk = strstr(text, "\n# ha:\n");
	assert_non_null(blk);
	char *w = blk + 1;
	for (const char *r = blk + 1; *r;) { /* drop "# " at each line start */
		if ((r == blk + 1 || r[-1] == '\n') && r[0] == '#' && r[1] == ' ')
			r += 2;
		*w++ = *r++;
	}
	*w = '\0';
	cfg = NULL;
	if (load_str(text, &cfg, err, sizeof(err)) != 0)
		fail_msg("sample with ha uncommented: %s", err);
	assert_string_equal(cfg->ha->role, "primary");
	assert_string_equal(cfg->ha->peer, "10.0.0.2:61700");
	assert_string_equal(cfg->ha->cluster_user, "keel-cluster");
	assert_int_equal(cfg->ha->check_period, 30000);
	assert_null(cfg->ha->manager);
	keel_config_free(cfg);
	/* ... and so is its manager block, uncommented too */
	w = text;
	for (const char *r = text; *r;) { /* "  # " at a line start: "  " */
		if ((r == text || r[-1] == '\n') && strncmp(r, "  # ", 4) == 0) {
			*w++ = ' ';
			*w++ = ' ';
			r += 4;
			continue;
		}
		*w++ = *r++;
	}
	*w = '\0';
	cfg = NULL;
	if (load_str(text, &cfg, err, sizeof(err)) != 0)
		fail_msg("sample with ha.manager uncommented: %s", err);
	assert_non_null(cfg->ha->manager);
	assert_string_equal(cfg->ha->manager->zookeeper->pair_id, "orders");
	assert_int_equal(cfg->ha->manager->zookeeper->session_timeout, 18000);
	keel_config_free(cfg);
}

/* ha.manager.zookeeper: every key, defaults, and each error with
 * file:line:key; absent, the pair alone (NULL). */
static void test_ha_manager(void **state)
{
	(void)state;
	keel_config *cfg = NULL;
	char err[512];
#define HA "ha:\n  role: primary\n  listen: \"h:1\"\n  peer: \"h:2\"\n"
	const char *full = HA "  manager:\n"
			   "    zookeeper:\n"
			   "      connect: \"zk1:2181,10.0.0.3:2182,[::1]:2183\"\n"
			   "      session-timeout: 9000\n"
			   "      root: /brokers/keel\n"
			   "      pair-id: orders-1\n";
	assert_int_equal(load_str(full, &cfg, err, sizeof(err)), 0);
	assert_non_null(cfg->ha->manager);
	const keel_ha_zk_cfg *z = cfg->ha->manager->zookeeper;
	assert_non_null(z);
	assert_string_equal(z->connect, "zk1:2181,10.0.0.3:2182,[::1]:2183");
	assert_int_equal(z->session_timeout, 9000);
	assert_string_equal(z->root, "/brokers/keel");
	assert_string_equal(z->pair_id, "orders-1");
	keel_config_free(cfg);
	/* defaults */
	cfg = NULL;
	assert_int_equal(load_str(HA "  manager: {zookeeper: {connect: \"zk:2181\", "
				  "pair-id: p}}\n", &cfg, err, sizeof(err)), 0);
	z = cfg->ha->manager->zookeeper;
	assert_int_equal(z->session_timeout, 18000);
	assert_string_equal(z->root, "/keel");
	keel_config_free(cfg);
	/* absent: the pair alone, as before */
	cfg = NULL;
	assert_int_equal(load_str(HA, &cfg, err, sizeof(err)), 0);
	assert_null(cfg->ha->manager);
	keel_config_free(cfg);

#define ZK HA "  manager:\n    zookeeper:\n"
	expect_error(HA "  manager: {}\n",
		     "t.yaml:5: ha.manager: expected zookeeper: {connect, pair-id, ...} (the only "
		     "kind of manager)");
	expect_error(HA "  manager:\n    etcd: {}\n", "t.yaml:6: ha.manager.etcd: unknown key");
	expect_error(ZK "      pair-id: p\n",
		     "t.yaml:6: ha.manager.zookeeper.connect: missing required key");
	expect_error(ZK "      connect: \"zk:2181\"\n",
		     "t.yaml:6: ha.manager.zookeeper.pair-id: missing required key");
	expect_error(ZK "      connect: \"zk:2181,\"\n      pair-id: p\n",
		     "t.yaml:7: ha.manager.zookeeper.connect: expected HOST:PORT[,HOST:PORT...], "
		     "got \"zk:2181,\"");
	expect_error(ZK "      connect: \"zk:2181,zk2\"\n      pair-id: p\n",
		     "t.yaml:7: ha.manager.zookeeper.connect: expected HOST:PORT (port 1..65535), "
		     "got \"zk2\"");
	expect_error(ZK "      connect: \"zk:0\"\n      pair-id: p\n",
		     "t.yaml:7: ha.manager.zookeeper.connect: expected HOST:PORT (port 1..65535), "
		     "got \"zk:0\"");
	expect_error(ZK "      connect: \"zk:2181/keel\"\n      pair-id: p\n",
		     "t.yaml:7: ha.manager.zookeeper.connect: \"zk:2181/keel\": no path here (a "
		     "chroot): give it as root");
	expect_error(ZK "      connect: \"a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8,a:9,a:10,a:11,a:12,"
		     "a:13,a:14,a:15,a:16,a:17\"\n      pair-id: p\n",
		     "t.yaml:7: ha.manager.zookeeper.connect: more than 16 servers "
		     "(KEEL_HA_ZK_MAX_SERVERS)");
	expect_error(ZK "      connect: \"zk:1\"\n      pair-id: p\n      session-timeout: 299\n",
		     "t.yaml:9: ha.manager.zookeeper.session-timeout: must be 300..600000 ms, not "
		     "299");
	expect_error(ZK "      connect: \"zk:1\"\n      pair-id: p\n      session-timeout: 600001\n",
		     "t.yaml:9: ha.manager.zookeeper.session-timeout: must be 300..600000 ms, not "
		     "600001");
	expect_error(ZK "      connect: \"zk:1\"\n      pair-id: p\n      session-timeout: -1\n",
		     "t.yaml:9: ha.manager.zookeeper.session-timeout: invalid unsigned integer "
		     "\"-1\"");
	static const char *const roots[] = { "keel", "/", "/keel/", "//keel", "/a/../b", "/a b" };
	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		char yaml[512], want[512];
		snprintf(yaml, sizeof(yaml), ZK "      connect: \"zk:1\"\n      pair-id: p\n"
			 "      root: \"%s\"\n", roots[i]);
		snprintf(want, sizeof(want), "t.yaml:9: ha.manager.zookeeper.root: expected an "
			 "absolute path such as /keel (no empty, . or .. name, no trailing /), got "
			 "\"%s\"", roots[i]);
		expect_error(yaml, want);
	}
	static const char *const ids[] = { "a/b", "..", ".", "a b" };
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		char yaml[512], want[512];
		snprintf(yaml, sizeof(yaml), ZK "      connect: \"zk:1\"\n      pair-id: \"%s\"\n",
			 ids[i]);
		snprintf(want, sizeof(want), "t.yaml:8: ha.manager.zookeeper.pair-id: expected one "
			 "name (no /, not . or .., printable, no space), got \"%s\"", ids[i]);
		expect_error(yaml, want);
	}
	/* the rules the manager replaces cannot be asked for beside it */
	expect_error(HA "  failover-may-lose-data: true\n  manager:\n    zookeeper:\n"
		     "      connect: \"zk:1\"\n      pair-id: p\n",
		     "t.yaml:5: ha.failover-may-lose-data: cannot be true with a manager: the "
		     "manager's lock and coordinated sequence replace those rules");
	expect_error(HA "  check-period: 0\n  manager:\n    zookeeper:\n"
		     "      connect: \"zk:1\"\n      pair-id: p\n",
		     "t.yaml:5: ha.check-period: ha check-period 0 turns pings off, and with a "
		     "manager pings are how a node notices a silent peer: set it > 0");
	expect_error(ZK "      connect: \"zk:1\"\n      pair-id: p\n      chroot: /x\n",
		     "t.yaml:9: ha.manager.zookeeper.chroot: unknown key");
#undef ZK
#undef HA
}

static void test_set_str(void **state)
{
	(void)state;
	keel_config *cfg = NULL;
	assert_int_equal(keel_config_default(&cfg), 0);
	assert_int_equal(keel_config_set_str(&cfg->listen, "0.0.0.0:1"), 0);
	assert_string_equal(cfg->listen, "0.0.0.0:1");
	assert_int_equal(keel_config_set_str(&cfg->events, "ev.jsonl"), 0);
	assert_string_equal(cfg->events, "ev.jsonl");
	assert_int_equal(keel_config_set_str(&cfg->events, NULL), 0);
	assert_null(cfg->events);
	keel_alloc_fail_after(1);
	assert_int_equal(keel_config_set_str(&cfg->name, "y"), -ENOMEM);
	keel_alloc_fail_after(0);
	assert_string_equal(cfg->name, "keel"); /* untouched on failure */
	keel_config_free(cfg);
}

/* Fail each allocation of a full load in turn: each run fails cleanly with
 * -ENOMEM and frees everything, until one succeeds. */
static void test_alloc_failures(void **state)
{
	(void)state;
	uint64_t n;
	for (n = 1; n < 100000; n++) {
		keel_config *cfg = NULL;
		char err[256] = "";
		int64_t before = keel_alloc_live();
		keel_alloc_fail_after(n);
		int rc = keel_config_load(sample_path, &cfg, err, sizeof(err));
		keel_alloc_fail_after(0);
		if (rc == 0) {
			keel_config_free(cfg);
			assert_int_equal(keel_alloc_live(), before);
			break;
		}
		if (rc != -ENOMEM)
			print_error("n=%llu rc=%d %s\n", (unsigned long long)n, rc, err);
		assert_int_equal(rc, -ENOMEM);
		assert_null(cfg);
		assert_int_equal(keel_alloc_live(), before);
	}
	assert_true(n > 10); /* the load did allocate, and every failure was seen */
	assert_true(n < 100000);
}

int main(void)
{
	const char *here = __FILE__;
	const char *slash = strrchr(here, '/');
	snprintf(sample_path, sizeof(sample_path), "%.*s/../etc/keel-broker.yaml",
		 slash ? (int)(slash - here) : 1, slash ? here : ".");

	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sample_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_type, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_routing_type, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_pattern, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_listen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parse_hostport, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_log_level, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_hash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_required_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_semantic_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_syntax_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ha, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ha_manager, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_str, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
