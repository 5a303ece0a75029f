/*
 * config.c - the broker's YAML configuration: libcyaml schema, defaults and
 * semantic checks (see config.h).  A libyaml pass (yamlscan.c) first
 * records the line of every key under its path
 * ("addresses[0].queues[1].durable") so that every error names file:line:
 * key; then libcyaml fills the struct.  Everything in a keel_config comes
 * from one allocator (keel_yaml_mem: keel_realloc/keel_free), so cyaml_free
 * frees loaded values and defaults alike.  Any thread.
 */
#include "config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <crypt.h>
#include <ctype.h>
#include <cyaml/cyaml.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "keel/alloc.h"
#include "limits.h"
#include "log.h"
#include "match.h"
#include "keel/yamlscan.h"

/* Longest key path kept for messages ("addresses[12].queues[3].durable").
 * The schema is 5 levels deep; deeper junk is refused by the depth limit. */
#define CFG_PATH_MAX KEEL_YAML_PATH_MAX

/* ---- schema ------------------------------------------------------------ */

#define OPT CYAML_FLAG_OPTIONAL
#define STR_OPT(key, st, member, min)                                         \
	CYAML_FIELD_STRING_PTR(key, CYAML_FLAG_POINTER | OPT, st, member, min, \
			       CYAML_UNLIMITED)
#define NAME_REQ(key, st, member)                                             \
	CYAML_FIELD_STRING_PTR(key, CYAML_FLAG_POINTER, st, member, 1,        \
			       KEEL_MAX_NAME_LEN)
#define ROLES(key, st, member)                                                \
	CYAML_FIELD_SEQUENCE(key, CYAML_FLAG_POINTER | OPT, st, member,       \
			     &role_schema, 0, CYAML_UNLIMITED)

static const cyaml_schema_value_t role_schema = {
	CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 1, CYAML_UNLIMITED),
};

static const cyaml_schema_field_t user_fields[] = {
	CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_POINTER, keel_user_cfg, name, 1,
			       KEEL_MAX_NAME_LEN),
	CYAML_FIELD_STRING_PTR("password-hash", CYAML_FLAG_POINTER, keel_user_cfg,
			       password_hash, 1, CYAML_UNLIMITED),
	ROLES("roles", keel_user_cfg, roles),
	CYAML_FIELD_END,
};

static const cyaml_schema_value_t user_schema = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, keel_user_cfg, user_fields),
};

static const cyaml_schema_field_t secset_fields[] = {
	NAME_REQ("match", keel_security_setting_cfg, match),
	ROLES("send", keel_security_setting_cfg, send),
	ROLES("consume", keel_security_setting_cfg, consume),
	ROLES("manage", keel_security_setting_cfg, manage),
	CYAML_FIELD_END,
};

static const cyaml_schema_value_t secset_schema = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, keel_security_setting_cfg,
			    secset_fields),
};

static const cyaml_schema_field_t addrset_fields[] = {
	NAME_REQ("match", keel_address_setting_cfg, match),
	CYAML_FIELD_BOOL_PTR("auto-create-addresses", OPT, keel_address_setting_cfg,
			     auto_create_addresses),
	CYAML_FIELD_BOOL_PTR("auto-create-queues", OPT, keel_address_setting_cfg,
			     auto_create_queues),
	CYAML_FIELD_BOOL_PTR("auto-delete-queues", OPT, keel_address_setting_cfg,
			     auto_delete_queues),
	CYAML_FIELD_UINT_PTR("max-delivery-attempts", OPT, keel_address_setting_cfg,
			     max_delivery_attempts),
	CYAML_FIELD_STRING_PTR("dead-letter-address", CYAML_FLAG_POINTER | OPT,
			       keel_address_setting_cfg, dead_letter_address, 0,
			       KEEL_MAX_NAME_LEN),
	CYAML_FIELD_STRING_PTR("expiry-address", CYAML_FLAG_POINTER | OPT,
			       keel_address_setting_cfg, expiry_address, 0,
			       KEEL_MAX_NAME_LEN),
	STR_OPT("max-size-bytes", keel_address_setting_cfg, max_size_bytes, 1),
	STR_OPT("address-full-policy", keel_address_setting_cfg, address_full_policy, 1),
	CYAML_FIELD_END,
};

static const cyaml_schema_value_t addrset_schema = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, keel_address_setting_cfg,
			    addrset_fields),
};

static const cyaml_schema_field_t queue_fields[] = {
	NAME_REQ("name", keel_queue_cfg, name),
	STR_OPT("routing-type", keel_queue_cfg, routing_type, 1),
	CYAML_FIELD_BOOL("durable", OPT, keel_queue_cfg, durable),
	CYAML_FIELD_INT("max-consumers", OPT, keel_queue_cfg, max_consumers),
	CYAML_FIELD_BOOL("purge-on-no-consumers", OPT, keel_queue_cfg,
			 purge_on_no_consumers),
	CYAML_FIELD_END,
};

static const cyaml_schema_value_t queue_schema = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, keel_queue_cfg, queue_fields),
};

static const cyaml_schema_field_t address_fields[] = {
	NAME_REQ("name", keel_address_cfg, name),
	STR_OPT("routing-type", keel_address_cfg, routing_type, 1),
	CYAML_FIELD_SEQUENCE("queues", CYAML_FLAG_POINTER | OPT, keel_address_cfg,
			     queues, &queue_schema, 0, CYAML_UNLIMITED),
	CYAML_FIELD_END,
};

static const cyaml_schema_value_t address_schema = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, keel_address_cfg, address_fields),
};

static const cyaml_schema_value_t connector_schema = {
	CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 1, KEEL_MAX_CONNECTOR_LEN),
};

static const cyaml_schema_field_t bridge_fields[] = {
	NAME_REQ("name", keel_bridge_cfg, name),
	NAME_REQ("queue", keel_bridge_cfg, queue),
	STR_OPT("forwarding-address", keel_bridge_cfg, forwarding_address, 1),
	CYAML_FIELD_SEQUENCE("connectors", CYAML_FLAG_POINTER, keel_bridge_cfg, connectors,
			     &connector_schema, 1, KEEL_LOCATOR_MAX_CONNECTORS),
	STR_OPT("user", keel_bridge_cfg, user, 0),
	STR_OPT("password", keel_bridge_cfg, password, 0),
	STR_OPT("virtual-host", keel_bridge_cfg, virtual_host, 1),
	CYAML_FIELD_UINT("retry-interval", OPT, keel_bridge_cfg, retry_interval),
	CYAML_FIELD_FLOAT("retry-interval-multiplier", OPT, keel_bridge_cfg,
			  retry_interval_multiplier),
	CYAML_FIELD_UINT("max-retry-interval", OPT, keel_bridge_cfg, max_retry_interval),
	CYAML_FIELD_INT("reconnect-attempts", OPT, keel_bridge_cfg, reconnect_attempts),
	CYAML_FIELD_UINT("confirmation-window", OPT, keel_bridge_cfg, confirmation_window),
	CYAML_FIELD_BOOL("duplicate-detection", OPT, keel_bridge_cfg, duplicate_detection),
	CYAML_FIELD_BOOL("shared-locator", OPT, keel_bridge_cfg, shared_locator),
	CYAML_FIELD_UINT("heartbeat", OPT, keel_bridge_cfg, heartbeat),
	CYAML_FIELD_END,
};

static const cyaml_schema_value_t bridge_schema = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, keel_bridge_cfg, bridge_fields),
};

static const cyaml_schema_field_t zk_fields[] = {
	CYAML_FIELD_STRING_PTR("connect", CYAML_FLAG_POINTER, keel_ha_zk_cfg, connect, 1,
			       KEEL_HA_ZK_MAX_CONNECT_LEN),
	CYAML_FIELD_UINT("session-timeout", OPT, keel_ha_zk_cfg, session_timeout),
	CYAML_FIELD_STRING_PTR("root", CYAML_FLAG_POINTER | OPT, keel_ha_zk_cfg, root, 1,
			       KEEL_HA_ZK_MAX_PATH_LEN),
	CYAML_FIELD_STRING_PTR("pair-id", CYAML_FLAG_POINTER, keel_ha_zk_cfg, pair_id, 1,
			       KEEL_HA_ZK_MAX_PATH_LEN),
	CYAML_FIELD_END,
};

static const cyaml_schema_field_t manager_fields[] = {
	CYAML_FIELD_MAPPING_PTR("zookeeper", CYAML_FLAG_POINTER | OPT, keel_ha_manager_cfg,
				zookeeper, zk_fields),
	CYAML_FIELD_END,
};

static const cyaml_schema_field_t ha_fields[] = {
	CYAML_FIELD_STRING_PTR("role", CYAML_FLAG_POINTER, keel_ha_cfg, role, 1, 32),
	CYAML_FIELD_STRING_PTR("listen", CYAML_FLAG_POINTER, keel_ha_cfg, listen, 1,
			       KEEL_MAX_CONNECTOR_LEN),
	CYAML_FIELD_STRING_PTR("peer", CYAML_FLAG_POINTER, keel_ha_cfg, peer, 1,
			       KEEL_MAX_CONNECTOR_LEN),
	STR_OPT("cluster-user", keel_ha_cfg, cluster_user, 1),
	STR_OPT("cluster-password", keel_ha_cfg, cluster_password, 0),
	CYAML_FIELD_UINT("initial-replication-sync-timeout", OPT, keel_ha_cfg,
			 initial_replication_sync_timeout),
	CYAML_FIELD_UINT("failback-wait", OPT, keel_ha_cfg, failback_wait),
	CYAML_FIELD_UINT("connection-ttl", OPT, keel_ha_cfg, connection_ttl),
	CYAML_FIELD_UINT("check-period", OPT, keel_ha_cfg, check_period),
	CYAML_FIELD_UINT("retry-interval", OPT, keel_ha_cfg, retry_interval),
	CYAML_FIELD_BOOL("allow-failback", OPT, keel_ha_cfg, allow_failback),
	CYAML_FIELD_BOOL("check-for-live-server", OPT, keel_ha_cfg, check_for_live_server),
	CYAML_FIELD_BOOL("restart-backup", OPT, keel_ha_cfg, restart_backup),
	CYAML_FIELD_BOOL("failover-may-lose-data", OPT, keel_ha_cfg, failover_may_lose_data),
	CYAML_FIELD_INT("max-saved-replicated-journals-size", OPT, keel_ha_cfg,
			max_saved_replicated_journals_size),
	CYAML_FIELD_MAPPING_PTR("manager", CYAML_FLAG_POINTER | OPT, keel_ha_cfg, manager,
				manager_fields),
	CYAML_FIELD_END,
};

static const cyaml_schema_field_t config_fields[] = {
	STR_OPT("name", keel_config, name, 1),
	STR_OPT("listen", keel_config, listen, 1),
	STR_OPT("data-dir", keel_config, data_dir, 1),
	STR_OPT("log-level", keel_config, log_level, 1),
	STR_OPT("events", keel_config, events, 1),
	CYAML_FIELD_UINT("connection-ttl", OPT, keel_config, connection_ttl),
	CYAML_FIELD_UINT("check-period", OPT, keel_config, check_period),
	CYAML_FIELD_UINT("handshake-timeout", OPT, keel_config, handshake_timeout),
	CYAML_FIELD_INT("max-auto-created-addresses", OPT, keel_config,
			max_auto_created_addresses),
	STR_OPT("global-max-size", keel_config, global_max_size, 1),
	STR_OPT("min-large-message-size", keel_config, min_large_message_size, 1),
	STR_OPT("write-high-watermark", keel_config, write_high_watermark, 1),
	STR_OPT("write-low-watermark", keel_config, write_low_watermark, 1),
	STR_OPT("journal-file-size", keel_config, journal_file_size, 1),
	STR_OPT("page-file-size", keel_config, page_file_size, 1),
	CYAML_FIELD_BOOL("journal-sync", OPT, keel_config, journal_sync),
	CYAML_FIELD_UINT("journal-compact-min-files", OPT, keel_config,
			 journal_compact_min_files),
	CYAML_FIELD_SEQUENCE("users", CYAML_FLAG_POINTER | OPT, keel_config, users,
			     &user_schema, 0, CYAML_UNLIMITED),
	CYAML_FIELD_SEQUENCE("security-settings", CYAML_FLAG_POINTER | OPT,
			     keel_config, security_settings, &secset_schema, 0,
			     CYAML_UNLIMITED),
	CYAML_FIELD_SEQUENCE("address-settings", CYAML_FLAG_POINTER | OPT,
			     keel_config, address_settings, &addrset_schema, 0,
			     CYAML_UNLIMITED),
	CYAML_FIELD_SEQUENCE("addresses", CYAML_FLAG_POINTER | OPT, keel_config,
			     addresses, &address_schema, 0, CYAML_UNLIMITED),
	CYAML_FIELD_SEQUENCE("bridges", CYAML_FLAG_POINTER | OPT, keel_config,
			     bridges, &bridge_schema, 0, CYAML_UNLIMITED),
	CYAML_FIELD_MAPPING_PTR("ha", CYAML_FLAG_POINTER | OPT, keel_config, ha, ha_fields),
	CYAML_FIELD_END,
};

static const cyaml_schema_value_t config_schema = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, keel_config, config_fields),
};

/* Keys whose values libcyaml reads as booleans.  libcyaml 1.3 takes any
 * word that is not a "false" word as true ("maybe" -> true), so the scan
 * checks these values itself. */
static const char *const bool_keys[] = {
	"auto-create-addresses", "auto-create-queues", "auto-delete-queues",
	"durable", "purge-on-no-consumers", "journal-sync",
	"duplicate-detection", "shared-locator",
	"allow-failback", "check-for-live-server", "restart-backup", "failover-may-lose-data",
};

static const keel_yaml_opts cfg_yaml_opts = {
	.bool_keys = bool_keys,
	.nbool_keys = sizeof(bool_keys) / sizeof(bool_keys[0]),
	.max_depth = KEEL_MAX_CONFIG_DEPTH,
	.depth_name = "KEEL_MAX_CONFIG_DEPTH",
};

static bool scan_has(const keel_yaml_scan *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static bool scan_has(const keel_yaml_scan *s, const char *fmt, ...)
{
	char path[CFG_PATH_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	return keel_yaml_line(s, path) != 0;
}

/* ---- defaults ---------------------------------------------------------- */

static int set_default(char **field, const char *value)
{
	if (*field != NULL)
		return 0;
	*field = keel_strdup(value);
	return *field ? 0 : -ENOMEM;
}

static int apply_defaults(keel_config *cfg, const keel_yaml_scan *scan)
{
	if (set_default(&cfg->name, "keel") || set_default(&cfg->listen, "127.0.0.1:61613") ||
	    set_default(&cfg->data_dir, "./keel-data") ||
	    set_default(&cfg->log_level, "info"))
		return -ENOMEM;
	if (scan == NULL || !scan_has(scan, "connection-ttl"))
		cfg->connection_ttl = 60000;
	if (scan == NULL || !scan_has(scan, "check-period"))
		cfg->check_period = 30000;
	if (scan == NULL || !scan_has(scan, "handshake-timeout"))
		cfg->handshake_timeout = KEEL_DEFAULT_HANDSHAKE_TIMEOUT_MS;
	if (scan == NULL || !scan_has(scan, "max-auto-created-addresses"))
		cfg->max_auto_created_addresses = KEEL_DEFAULT_MAX_AUTO_CREATED_ADDRESSES;
	cfg->global_max_size_bytes = keel_default_global_max_size();
	cfg->min_large_message_size_bytes = KEEL_DEFAULT_MIN_LARGE_MESSAGE_SIZE;
	cfg->write_high_watermark_bytes = KEEL_WRITE_HIGH_WATERMARK;
	cfg->write_low_watermark_bytes = KEEL_WRITE_LOW_WATERMARK;
	cfg->journal_file_size_bytes = KEEL_JOURNAL_DEFAULT_FILE_SIZE;
	cfg->page_file_size_bytes = KEEL_PAGING_DEFAULT_FILE_SIZE;
	if (scan == NULL || !scan_has(scan, "journal-sync"))
		cfg->journal_sync = true;
	if (scan == NULL || !scan_has(scan, "journal-compact-min-files"))
		cfg->journal_compact_min_files = KEEL_JOURNAL_DEFAULT_COMPACT_MIN_FILES;
	for (unsigned i = 0; i < cfg->address_settings_count; i++)
		cfg->address_settings[i].max_size_bytes_value = -1;
	for (unsigned i = 0; i < cfg->bridges_count; i++) {
		keel_bridge_cfg *b = &cfg->bridges[i];
#define BRIDGE_UNSET(key) (scan == NULL || !scan_has(scan, "bridges[%u]." key, i))
		if (BRIDGE_UNSET("retry-interval"))
			b->retry_interval = KEEL_BRIDGE_DEFAULT_RETRY_MS;
		if (BRIDGE_UNSET("retry-interval-multiplier"))
			b->retry_interval_multiplier = 1.0;
		if (BRIDGE_UNSET("max-retry-interval"))
			b->max_retry_interval = b->retry_interval > KEEL_BRIDGE_DEFAULT_RETRY_MS
							? b->retry_interval
							: KEEL_BRIDGE_DEFAULT_RETRY_MS;
		if (BRIDGE_UNSET("reconnect-attempts"))
			b->reconnect_attempts = -1;
		if (BRIDGE_UNSET("confirmation-window"))
			b->confirmation_window = KEEL_BRIDGE_DEFAULT_WINDOW;
		if (BRIDGE_UNSET("duplicate-detection"))
			b->duplicate_detection = true;
		if (BRIDGE_UNSET("shared-locator"))
			b->shared_locator = true;
		if (BRIDGE_UNSET("heartbeat"))
			b->heartbeat = KEEL_BRIDGE_DEFAULT_HEARTBEAT_MS;
#undef BRIDGE_UNSET
	}
	if (cfg->ha != NULL) {
		keel_ha_cfg *h = cfg->ha;
#define HA_UNSET(key) (scan == NULL || !scan_has(scan, "ha." key))
		if (HA_UNSET("initial-replication-sync-timeout"))
			h->initial_replication_sync_timeout = 30000;
		if (HA_UNSET("failback-wait"))
			h->failback_wait = 60000;
		if (HA_UNSET("connection-ttl"))
			h->connection_ttl = cfg->connection_ttl;
		if (HA_UNSET("check-period"))
			h->check_period = cfg->check_period;
		if (HA_UNSET("retry-interval"))
			h->retry_interval = 2000;
		if (HA_UNSET("allow-failback"))
			h->allow_failback = true;
		if (HA_UNSET("check-for-live-server"))
			h->check_for_live_server = true;
		if (HA_UNSET("restart-backup"))
			h->restart_backup = true;
		if (HA_UNSET("max-saved-replicated-journals-size"))
			h->max_saved_replicated_journals_size = 2;
		keel_ha_zk_cfg *z = h->manager ? h->manager->zookeeper : NULL;
		if (z != NULL) {
			if (HA_UNSET("manager.zookeeper.session-timeout"))
				z->session_timeout = KEEL_HA_ZK_DEFAULT_SESSION_MS;
			if (set_default(&z->root, "/keel"))
				return -ENOMEM;
		}
#undef HA_UNSET
	}
	for (unsigned a = 0; a < cfg->addresses_count; a++) {
		keel_address_cfg *addr = &cfg->addresses[a];
		if (set_default(&addr->routing_type, "ANYCAST"))
			return -ENOMEM;
		for (unsigned q = 0; q < addr->queues_count; q++) {
			keel_queue_cfg *queue = &addr->queues[q];
			if (scan == NULL ||
			    !scan_has(scan, "addresses[%u].queues[%u].durable", a, q))
				queue->durable = true;
			if (scan == NULL ||
			    !scan_has(scan, "addresses[%u].queues[%u].max-consumers", a, q))
				queue->max_consumers = -1;
		}
	}
	return 0;
}

/* ---- semantic checks --------------------------------------------------- */

typedef struct cfg_check {
	const keel_yaml_scan *scan;
	const char *name;
	char *err;
	size_t errlen;
} cfg_check;

/* Write "file:line: path: message" where path is printf(pathfmt, ...) up
 * to the first '\t' and the message follows it.  Returns -EINVAL. */
static int check_fail(cfg_check *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int check_fail(cfg_check *c, const char *fmt, ...)
{
	char text[CFG_PATH_MAX + 256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	char *tab = strchr(text, '\t');
	assert(tab != NULL);
	*tab = '\0';
	/* The key itself, else its nearest enclosing entry that has a line. */
	unsigned line = keel_yaml_line_near(c->scan, text);
	snprintf(c->err, c->errlen, "%s:%u: %s: %s", c->name, line ? line : 1, text,
		 tab + 1);
	return -EINVAL;
}

static bool routing_type_valid(const char *t)
{
	return strcmp(t, "ANYCAST") == 0 || strcmp(t, "MULTICAST") == 0;
}

/* 0 when crypt(3) takes `hash` as a setting, -EINVAL if not, -ENOMEM. */
static int crypt_hash_check(const char *hash)
{
	if (hash[0] != '$')
		return -EINVAL;
	struct crypt_data *data = keel_calloc(1, sizeof(*data));
	if (data == NULL)
		return -ENOMEM;
	const char *h = crypt_rn("keel-config-check", hash, data, (int)sizeof(*data));
	int rc = h != NULL && h[0] != '*' ? 0 : -EINVAL;
	keel_free(data);
	return rc;
}

static bool user_has_role(const keel_config *cfg, const char *role)
{
	for (unsigned u = 0; u < cfg->users_count; u++) {
		for (unsigned r = 0; r < cfg->users[u].roles_count; r++) {
			if (strcmp(cfg->users[u].roles[r], role) == 0)
				return true;
		}
	}
	return false;
}

static int check_roles(cfg_check *c, const keel_config *cfg, unsigned i,
		       const char *key, char **roles, unsigned count)
{
	for (unsigned r = 0; r < count; r++) {
		if (!user_has_role(cfg, roles[r]))
			return check_fail(c,
					  "security-settings[%u].%s[%u]\trole \"%s\" "
					  "is not given to any user",
					  i, key, r, roles[r]);
	}
	return 0;
}

static int check_users(cfg_check *c, const keel_config *cfg)
{
	for (unsigned u = 0; u < cfg->users_count; u++) {
		const keel_user_cfg *user = &cfg->users[u];
		for (unsigned v = 0; v < u; v++) {
			if (strcmp(cfg->users[v].name, user->name) == 0)
				return check_fail(c, "users[%u].name\tuser \"%s\" "
						  "is defined twice", u, user->name);
		}
		int rc = crypt_hash_check(user->password_hash);
		if (rc == -ENOMEM)
			return rc;
		if (rc != 0)
			return check_fail(c, "users[%u].password-hash\tnot a crypt(3) "
					  "hash (generate one with yescrypt, "
					  "\"$y$...\")", u);
	}
	for (unsigned i = 0; i < cfg->security_settings_count; i++) {
		const keel_security_setting_cfg *s = &cfg->security_settings[i];
		int rc;
		if (!keel_match_valid(s->match))
			return check_fail(c, "security-settings[%u].match\tinvalid "
					  "pattern \"%s\"", i, s->match);
		for (unsigned j = 0; j < i; j++) {
			if (strcmp(cfg->security_settings[j].match, s->match) == 0)
				return check_fail(c, "security-settings[%u].match\t"
						  "pattern \"%s\" is given twice",
						  i, s->match);
		}
		if ((rc = check_roles(c, cfg, i, "send", s->send, s->send_count)) ||
		    (rc = check_roles(c, cfg, i, "consume", s->consume,
				      s->consume_count)) ||
		    (rc = check_roles(c, cfg, i, "manage", s->manage, s->manage_count)))
			return rc;
	}
	return 0;
}

static int check_addresses(cfg_check *c, const keel_config *cfg)
{
	for (unsigned i = 0; i < cfg->address_settings_count; i++) {
		const char *m = cfg->address_settings[i].match;
		if (!keel_match_valid(m))
			return check_fail(c, "address-settings[%u].match\tinvalid "
					  "pattern \"%s\"", i, m);
		for (unsigned j = 0; j < i; j++) {
			if (strcmp(cfg->address_settings[j].match, m) == 0)
				return check_fail(c, "address-settings[%u].match\t"
						  "pattern \"%s\" is given twice", i, m);
		}
	}
	for (unsigned a = 0; a < cfg->addresses_count; a++) {
		const keel_address_cfg *addr = &cfg->addresses[a];
		if (!routing_type_valid(addr->routing_type))
			return check_fail(c, "addresses[%u].routing-type\tmust be "
					  "ANYCAST or MULTICAST, not \"%s\"",
					  a, addr->routing_type);
		for (unsigned b = 0; b < a; b++) {
			if (strcmp(cfg->addresses[b].name, addr->name) == 0)
				return check_fail(c, "addresses[%u].name\taddress "
						  "\"%s\" is defined twice", a, addr->name);
		}
		for (unsigned q = 0; q < addr->queues_count; q++) {
			const keel_queue_cfg *queue = &addr->queues[q];
			if (queue->routing_type && !routing_type_valid(queue->routing_type))
				return check_fail(c, "addresses[%u].queues[%u].routing-type"
						  "\tmust be ANYCAST or MULTICAST, not "
						  "\"%s\"", a, q, queue->routing_type);
			if (queue->max_consumers < -1)
				return check_fail(c, "addresses[%u].queues[%u].max-consumers"
						  "\tmust be -1 (unlimited) or more", a, q);
			/* Queue names are one namespace across addresses. */
			for (unsigned b = 0; b <= a; b++) {
				const keel_address_cfg *other = &cfg->addresses[b];
				unsigned end = b == a ? q : other->queues_count;
				for (unsigned r = 0; r < end; r++) {
					if (strcmp(other->queues[r].name, queue->name) == 0)
						return check_fail(
							c, "addresses[%u].queues[%u].name\t"
							"queue \"%s\" is defined twice",
							a, q, queue->name);
				}
			}
		}
	}
	return 0;
}

int keel_parse_size(const char *s, bool allow_unlimited, int64_t *out)
{
	static const struct {
		const char *unit;
		int64_t mult;
	} units[] = {
		{ "", 1 },
		{ "K", 1024 }, { "KiB", 1024 }, { "k", 1024 }, { "KB", 1000 }, { "kB", 1000 },
		{ "M", 1024 * 1024 }, { "MiB", 1024 * 1024 }, { "m", 1024 * 1024 },
		{ "MB", 1000 * 1000 },
		{ "G", 1024 * 1024 * 1024 }, { "GiB", 1024 * 1024 * 1024 },
		{ "g", 1024 * 1024 * 1024 }, { "GB", 1000 * 1000 * 1000 },
	};
	if (s == NULL)
		return -EINVAL;
	if (strcmp(s, "-1") == 0) {
		if (!allow_unlimited)
			return -EINVAL;
		*out = -1;
		return 0;
	}
	size_t digits = strspn(s, "0123456789");
	if (digits == 0 || digits > 19)
		return -EINVAL;
	const char *unit = s + digits;
	while (*unit == ' ')
		unit++;
	uint64_t v = 0;
	for (size_t i = 0; i < digits; i++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(unit, units[i].unit) != 0)
			continue;
		if (v > (uint64_t)INT64_MAX / (uint64_t)units[i].mult)
			return -ERANGE;
		*out = (int64_t)(v * (uint64_t)units[i].mult);
		return 0;
	}
	return -EINVAL;
}

/* A size key: parse `text` (when set) into *out, naming `path` on error. */
int64_t keel_default_global_max_size(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	int64_t ram = pages > 0 && psize > 0 ? (int64_t)pages * psize : 0;
	int64_t v = ram / KEEL_GLOBAL_MAX_SIZE_RAM_DIVISOR;
	if (v <= 0 || v > KEEL_DEFAULT_GLOBAL_MAX_SIZE_CAP)
		v = KEEL_DEFAULT_GLOBAL_MAX_SIZE_CAP;
	if (v < KEEL_DEFAULT_GLOBAL_MAX_SIZE_FLOOR)
		v = KEEL_DEFAULT_GLOBAL_MAX_SIZE_FLOOR;
	return v;
}

static int check_size(cfg_check *c, const char *path, const char *text, bool unlimited,
		      int64_t min, int64_t max, int64_t *out)
{
	if (text == NULL)
		return 0;
	int64_t v;
	int rc = keel_parse_size(text, unlimited, &v);
	if (rc == -ERANGE)
		return check_fail(c, "%s\tsize \"%s\" is too large", path, text);
	if (rc != 0)
		return check_fail(c, "%s\texpected a size in bytes (e.g. 1048576, 512KiB, "
				  "10MiB%s), got \"%s\"", path, unlimited ? ", or -1" : "", text);
	if (v != -1 && (v < min || v > max))
		return check_fail(c, "%s\tmust be between %lld and %lld bytes, not %lld", path,
				  (long long)min, (long long)max, (long long)v);
	*out = v;
	return 0;
}

/* Flow control and large-message keys (parsed into their _bytes fields). */
static int check_sizes(cfg_check *c, keel_config *cfg)
{
	int64_t v;
	int rc;
	for (unsigned i = 0; i < cfg->address_settings_count; i++) {
		keel_address_setting_cfg *a = &cfg->address_settings[i];
		char path[64];
		snprintf(path, sizeof(path), "address-settings[%u].max-size-bytes", i);
		rc = check_size(c, path, a->max_size_bytes, true, 0, INT64_MAX,
				&a->max_size_bytes_value);
		if (rc)
			return rc;
		const char *p = a->address_full_policy;
		if (p && strcmp(p, "BLOCK") != 0 && strcmp(p, "FAIL") != 0 &&
		    strcmp(p, "DROP") != 0 && strcmp(p, "PAGE") != 0)
			return check_fail(c, "address-settings[%u].address-full-policy\tmust be "
					  "PAGE, BLOCK, FAIL or DROP, not \"%s\"", i,
					  a->address_full_policy);
	}
	rc = check_size(c, "global-max-size", cfg->global_max_size, true, 1, INT64_MAX,
			&cfg->global_max_size_bytes);
	if (rc)
		return rc;
	v = (int64_t)cfg->min_large_message_size_bytes;
	rc = check_size(c, "min-large-message-size", cfg->min_large_message_size, false,
			KEEL_MIN_LARGE_MESSAGE_SIZE_FLOOR, KEEL_MAX_FRAME_BODY, &v);
	if (rc)
		return rc;
	cfg->min_large_message_size_bytes = (uint64_t)v;
	v = (int64_t)cfg->write_high_watermark_bytes;
	rc = check_size(c, "write-high-watermark", cfg->write_high_watermark, false,
			KEEL_MIN_WRITE_WATERMARK, KEEL_MAX_WRITE_WATERMARK, &v);
	if (rc)
		return rc;
	cfg->write_high_watermark_bytes = (uint64_t)v;
	v = (int64_t)cfg->write_low_watermark_bytes;
	rc = check_size(c, "write-low-watermark", cfg->write_low_watermark, false,
			KEEL_MIN_WRITE_WATERMARK / 2, KEEL_MAX_WRITE_WATERMARK, &v);
	if (rc)
		return rc;
	cfg->write_low_watermark_bytes = (uint64_t)v;
	if (cfg->write_low_watermark_bytes >= cfg->write_high_watermark_bytes)
		return check_fail(c, "%s\tthe low watermark (%llu) must be below the high one "
				  "(%llu)", cfg->write_low_watermark ? "write-low-watermark"
								     : "write-high-watermark",
				  (unsigned long long)cfg->write_low_watermark_bytes,
				  (unsigned long long)cfg->write_high_watermark_bytes);
	return 0;
}

static int check_bridges(cfg_check *c, const keel_config *cfg)
{
	char host[256];
	uint16_t port;
	for (unsigned i = 0; i < cfg->bridges_count; i++) {
		const keel_bridge_cfg *b = &cfg->bridges[i];
		for (unsigned j = 0; j < i; j++)
			if (strcmp(cfg->bridges[j].name, b->name) == 0)
				return check_fail(c, "bridges[%u].name\tbridge \"%s\" is given "
						  "twice", i, b->name);
		for (unsigned j = 0; j < b->connectors_count; j++)
			if (keel_parse_hostport(b->connectors[j], host, sizeof(host), &port) ||
			    port == 0)
				return check_fail(c, "bridges[%u].connectors[%u]\texpected "
						  "HOST:PORT (port 1..65535), got \"%s\"", i, j,
						  b->connectors[j]);
		if (b->retry_interval == 0 || b->retry_interval > KEEL_BRIDGE_MAX_RETRY_MS)
			return check_fail(c, "bridges[%u].retry-interval\tmust be 1..%d ms", i,
					  KEEL_BRIDGE_MAX_RETRY_MS);
		if (!(b->retry_interval_multiplier >= 1.0 &&
		      b->retry_interval_multiplier <= KEEL_BRIDGE_MAX_RETRY_MULTIPLIER))
			return check_fail(c, "bridges[%u].retry-interval-multiplier\tmust be "
					  "1.0..%.1f", i, KEEL_BRIDGE_MAX_RETRY_MULTIPLIER);
		if (b->max_retry_interval < b->retry_interval ||
		    b->max_retry_interval > KEEL_BRIDGE_MAX_RETRY_MS)
			return check_fail(c, "bridges[%u].max-retry-interval\tmust be "
					  "retry-interval (%u)..%d ms", i, b->retry_interval,
					  KEEL_BRIDGE_MAX_RETRY_MS);
		if (b->reconnect_attempts < -1)
			return check_fail(c, "bridges[%u].reconnect-attempts\tmust be -1 "
					  "(forever) or more", i);
		if (b->confirmation_window == 0 || b->confirmation_window > KEEL_BRIDGE_MAX_WINDOW)
			return check_fail(c, "bridges[%u].confirmation-window\tmust be 1..%d", i,
					  KEEL_BRIDGE_MAX_WINDOW);
		if (b->heartbeat != 0 && b->heartbeat < KEEL_MIN_HEARTBEAT_MS)
			return check_fail(c, "bridges[%u].heartbeat\tmust be 0 or at least %d ms",
					  i, KEEL_MIN_HEARTBEAT_MS);
	}
	return 0;
}

/* A ZooKeeper path: "/" then names joined by "/", no empty, "." or ".."
 * name, no trailing "/", printable ASCII without spaces (what the C
 * client takes as is). */
static bool zk_path_valid(const char *p)
{
	size_t n = strlen(p);
	if (n < 2 || p[0] != '/' || p[n - 1] == '/')
		return false;
	for (const char *s = p + 1; *s;) {
		const char *e = strchr(s, '/');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		if (len == 0 || (len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
			return false;
		for (size_t i = 0; i < len; i++)
			if (s[i] <= ' ' || s[i] > '~')
				return false;
		s += len + (e ? 1 : 0);
	}
	return true;
}

/* ha.manager (README.md "With a manager"). */
static int check_manager(cfg_check *c, const keel_ha_cfg *h)
{
	char host[256], one[KEEL_MAX_CONNECTOR_LEN + 1], name[KEEL_HA_ZK_MAX_PATH_LEN + 2];
	uint16_t port;
	const keel_ha_zk_cfg *z = h->manager->zookeeper;
	if (z == NULL)
		return check_fail(c, "ha.manager	expected zookeeper: {connect, pair-id, ...} (the "
				  "only kind of manager)");
	unsigned servers = 0;
	for (const char *s = z->connect;; servers++) {
		const char *e = strchr(s, ',');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		if (len == 0 || len >= sizeof(one))
			return check_fail(c, "ha.manager.zookeeper.connect	expected HOST:PORT[,HOST:"
					  "PORT...], got \"%s\"", z->connect);
		memcpy(one, s, len);
		one[len] = '\0';
		if (strchr(one, '/') != NULL)
			return check_fail(c, "ha.manager.zookeeper.connect	\"%s\": no path here "
					  "(a chroot): give it as root", one);
		if (keel_parse_hostport(one, host, sizeof(host), &port) != 0 || port == 0)
			return check_fail(c, "ha.manager.zookeeper.connect	expected HOST:PORT (port "
					  "1..65535), got \"%s\"", one);
		if (servers + 1 > KEEL_HA_ZK_MAX_SERVERS)
			return check_fail(c, "ha.manager.zookeeper.connect	more than %d servers "
					  "(KEEL_HA_ZK_MAX_SERVERS)", KEEL_HA_ZK_MAX_SERVERS);
		if (e == NULL)
			break;
		s = e + 1;
	}
	if (z->session_timeout < KEEL_HA_ZK_MIN_SESSION_MS ||
	    z->session_timeout > KEEL_HA_ZK_MAX_SESSION_MS)
		return check_fail(c, "ha.manager.zookeeper.session-timeout	must be %d..%d ms, not %u",
				  KEEL_HA_ZK_MIN_SESSION_MS, KEEL_HA_ZK_MAX_SESSION_MS,
				  z->session_timeout);
	if (!zk_path_valid(z->root))
		return check_fail(c, "ha.manager.zookeeper.root	expected an absolute path such as "
				  "/keel (no empty, . or .. name, no trailing /), got \"%s\"",
				  z->root);
	snprintf(name, sizeof(name), "/%s", z->pair_id);
	if (strchr(z->pair_id, '/') != NULL || !zk_path_valid(name))
		return check_fail(c, "ha.manager.zookeeper.pair-id	expected one name (no /, not . "
				  "or .., printable, no space), got \"%s\"", z->pair_id);
	/* The manager replaces the leases and the fence (README): with the
	 * rules before them a backup would fail over on a timeout alone. */
	if (h->failover_may_lose_data)
		return check_fail(c, "ha.failover-may-lose-data	cannot be true with a manager: the "
				  "manager's lock and coordinated sequence replace those rules");
	/* A live may serve for 90 % (KEEL_HA_DRIFT_PERCENT) of the session
	 * timeout after it sent its last answered renewal; ZooKeeper gives the
	 * lock away no sooner than the whole timeout after it heard it.  The
	 * pair's own fence is not used, so connection-ttl only decides how
	 * soon each side notices the other is gone: a backup fails over after
	 * both that and the live's session expiry.  A session timeout the
	 * renewals cannot keep (three per timeout) is refused above. */
	return 0;
}

/* ha: (README.md "Replication (HA)"); the values keel_ha_init() takes. */
static int check_ha(cfg_check *c, const keel_config *cfg)
{
	const keel_ha_cfg *h = cfg->ha;
	char host[256];
	uint16_t port;
	if (h == NULL)
		return 0;
	if (strcmp(h->role, "primary") != 0 && strcmp(h->role, "backup") != 0)
		return check_fail(c, "ha.role\tmust be primary or backup, not \"%s\"", h->role);
	if (keel_parse_hostport(h->listen, host, sizeof(host), &port) != 0)
		return check_fail(c, "ha.listen\texpected HOST:PORT (port 0..65535), got \"%s\"",
				  h->listen);
	if (keel_parse_hostport(h->peer, host, sizeof(host), &port) != 0 || port == 0)
		return check_fail(c, "ha.peer\texpected HOST:PORT (port 1..65535), got \"%s\"",
				  h->peer);
	if (h->cluster_password != NULL && h->cluster_user == NULL)
		return check_fail(c, "ha.cluster-password\tgiven without cluster-user");
	if (h->initial_replication_sync_timeout == 0)
		return check_fail(c, "ha.initial-replication-sync-timeout\tmust be at least 1 ms");
	if (h->failback_wait == 0)
		return check_fail(c, "ha.failback-wait\tmust be at least 1 ms");
	if (h->retry_interval == 0)
		return check_fail(c, "ha.retry-interval\tmust be at least 1 ms");
	if (h->connection_ttl == 0)
		return check_fail(c, "ha.connection-ttl\tmust be at least 1 ms");
	if (h->max_saved_replicated_journals_size < -1 ||
	    h->max_saved_replicated_journals_size > KEEL_HA_MAX_SAVED_JOURNALS)
		return check_fail(c, "ha.max-saved-replicated-journals-size\tmust be -1 (keep "
				  "all), 0 (keep none) or up to %d, not %d",
				  KEEL_HA_MAX_SAVED_JOURNALS, (int)h->max_saved_replicated_journals_size);
	if (h->check_period > 0 && h->connection_ttl <= h->check_period) {
		/* Name the key the file gave (the ha one, else the inherited one). */
		const char *key = keel_yaml_line(c->scan, "ha.connection-ttl") ? "ha.connection-ttl"
				  : keel_yaml_line(c->scan, "ha.check-period") ? "ha.check-period"
				  : keel_yaml_line(c->scan, "connection-ttl") ? "connection-ttl"
				  : keel_yaml_line(c->scan, "check-period") ? "check-period"
									      : "ha";
		return check_fail(c, "%s\tha connection-ttl (%u ms) must be greater than ha "
				  "check-period (%u ms) when pings are on (check-period > 0)",
				  key, h->connection_ttl, h->check_period);
	}
	if (h->manager != NULL) {
		int rc = check_manager(c, h);
		if (rc != 0)
			return rc;
	}
	if (h->check_period == 0 && !h->failover_may_lose_data) {
		/* Pings renew the backup's lease (ha.h "Leases"): without them
		 * it could fail over only within connection-ttl of registering.
		 * With a manager they are how a node notices a silent peer. */
		const char *key = keel_yaml_line(c->scan, "ha.check-period") ? "ha.check-period"
				  : keel_yaml_line(c->scan, "check-period") ? "check-period"
									  : "ha";
		if (h->manager != NULL)
			return check_fail(c, "%s\tha check-period 0 turns pings off, and with a "
					  "manager pings are how a node notices a silent peer: set "
					  "it > 0", key);
		return check_fail(c, "%s\tha check-period 0 turns pings off, and pings renew "
				  "the backup's lease: set it > 0 (or failover-may-lose-data: true)",
				  key);
	}
	return 0;
}

static int check_config(cfg_check *c, keel_config *cfg)
{
	char host[256];
	uint16_t port;
	keel_log_level level;
	int rc;

	if (keel_parse_hostport(cfg->listen, host, sizeof(host), &port) != 0)
		return check_fail(c, "listen\texpected HOST:PORT (port 0..65535), "
				  "got \"%s\"", cfg->listen);
	if (keel_log_parse_level(cfg->log_level, &level) != 0)
		return check_fail(c, "log-level\tmust be error, warn, info, debug or "
				  "trace, not \"%s\"", cfg->log_level);
	if ((rc = check_users(c, cfg)) != 0)
		return rc;
	if ((rc = check_sizes(c, cfg)) != 0)
		return rc;
	int64_t jfs = (int64_t)cfg->journal_file_size_bytes;
	rc = check_size(c, "journal-file-size", cfg->journal_file_size, false,
			KEEL_JOURNAL_MIN_FILE_SIZE, KEEL_JOURNAL_MAX_FILE_SIZE, &jfs);
	if (rc)
		return rc;
	cfg->journal_file_size_bytes = (uint64_t)jfs;
	int64_t pfs = (int64_t)cfg->page_file_size_bytes;
	rc = check_size(c, "page-file-size", cfg->page_file_size, false,
			KEEL_PAGING_MIN_FILE_SIZE, KEEL_PAGING_MAX_FILE_SIZE, &pfs);
	if (rc)
		return rc;
	cfg->page_file_size_bytes = (uint64_t)pfs;
	if (cfg->journal_compact_min_files < 2)
		return check_fail(c, "journal-compact-min-files	must be at least 2, not %u",
				  cfg->journal_compact_min_files);
	if (cfg->handshake_timeout == 0)
		return check_fail(c, "handshake-timeout\tmust be at least 1 ms");
	if (cfg->max_auto_created_addresses < -1 || cfg->max_auto_created_addresses == 0)
		return check_fail(c, "max-auto-created-addresses\tmust be -1 (unlimited) or at "
				  "least 1, not %d (auto-create-addresses: false in "
				  "address-settings turns auto-creation off)",
				  cfg->max_auto_created_addresses);
	if ((rc = check_bridges(c, cfg)) != 0)
		return rc;
	if ((rc = check_ha(c, cfg)) != 0)
		return rc;
	return check_addresses(c, cfg);
}

/* ---- public ------------------------------------------------------------ */

static const cyaml_config_t cfg_cyaml_free_config = {
	.mem_fn = keel_yaml_mem,
	.log_level = CYAML_LOG_ERROR,
};

void keel_config_free(keel_config *cfg)
{
	if (cfg == NULL)
		return;
	cyaml_free(&cfg_cyaml_free_config, &config_schema, cfg, 0);
}

int keel_config_default(keel_config **out)
{
	keel_config *cfg = keel_calloc(1, sizeof(*cfg));
	if (cfg == NULL)
		return -ENOMEM;
	if (apply_defaults(cfg, NULL) != 0) {
		keel_config_free(cfg);
		return -ENOMEM;
	}
	*out = cfg;
	return 0;
}

int keel_config_load_data(const char *name, const char *yaml, size_t len,
			  keel_config **out, char *err, size_t errlen)
{
	keel_yaml_scan scan = { 0 };
	keel_yaml_log log = { 0 };
	keel_config *cfg = NULL;
	char dummy[1];
	int rc;

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	rc = keel_yaml_scan_run(&scan, &cfg_yaml_opts, name, yaml, len, err, errlen);
	if (rc == -ENOMEM)
		goto out_oom;
	if (rc != 0)
		goto out;

	if (len > 0) {
		cyaml_config_t cc = {
			.log_fn = keel_yaml_log_fn,
			.log_ctx = &log,
			.mem_fn = keel_yaml_mem,
			.log_level = CYAML_LOG_ERROR,
			.flags = CYAML_CFG_NO_ALIAS,
		};
		cyaml_err_t cerr = cyaml_load_data((const uint8_t *)yaml, len, &cc,
						   &config_schema,
						   (cyaml_data_t **)&cfg, NULL);
		if (cerr == CYAML_ERR_OOM) {
			snprintf(err, errlen, "%s: out of memory", name);
			rc = -ENOMEM;
			goto out;
		}
		if (cerr != CYAML_OK) {
			keel_yaml_cyaml_error(&log, &scan, &cfg_yaml_opts, name, cerr, err,
					      errlen);
			rc = -EINVAL;
			goto out;
		}
	}
	if (cfg == NULL) { /* empty file, or only comments */
		cfg = keel_calloc(1, sizeof(*cfg));
		if (cfg == NULL) {
			rc = -ENOMEM;
			goto out_oom;
		}
	}
	rc = apply_defaults(cfg, &scan);
	if (rc != 0)
		goto out_oom;
	cfg_check check = { .scan = &scan, .name = name, .err = err, .errlen = errlen };
	rc = check_config(&check, cfg);
	if (rc == -ENOMEM)
		goto out_oom;
	if (rc != 0)
		goto out;
	*out = cfg;
	cfg = NULL;
	goto out;

out_oom:
	snprintf(err, errlen, "%s: out of memory", name);
out:
	keel_config_free(cfg);
	keel_yaml_scan_free(&scan);
	return rc;
}

int keel_config_load(const char *path, keel_config **out, char *err, size_t errlen)
{
	char dummy[1];
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return rc;
	}
	/* A regular file is read at its size (one byte more shows growth past
	 * the limit); anything else (a pipe) up to the limit. */
	struct stat st;
	size_t want = KEEL_MAX_CONFIG_BYTES + 1;
	if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) &&
	    (uint64_t)st.st_size < (uint64_t)KEEL_MAX_CONFIG_BYTES)
		want = (size_t)st.st_size + 1;
	buf = keel_malloc(want);
	if (buf == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		rc = -ENOMEM;
		goto out;
	}
	len = fread(buf, 1, want, f);
	if (ferror(f)) {
		rc = -EIO;
		snprintf(err, errlen, "%s: read error", path);
		goto out;
	}
	if (len > KEEL_MAX_CONFIG_BYTES) {
		rc = -EFBIG;
		snprintf(err, errlen, "%s: larger than %d bytes (KEEL_MAX_CONFIG_BYTES)",
			 path, KEEL_MAX_CONFIG_BYTES);
		goto out;
	}
	rc = keel_config_load_data(path, buf, len, out, err, errlen);
out:
	keel_free(buf);
	fclose(f);
	return rc;
}

int keel_config_set_str(char **field, const char *value)
{
	char *copy = NULL;
	if (value != NULL) {
		copy = keel_strdup(value);
		if (copy == NULL)
			return -ENOMEM;
	}
	keel_free(*field);
	*field = copy;
	return 0;
}

static bool hostname_valid(const char *h)
{
	size_t len = strlen(h), label = 0;
	bool digits_only = true;
	if (len == 0 || len > 253)
		return false;
	for (const char *p = h;; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0 || label > 63 || p[-1] == '-')
				return false;
			label = 0;
			if (*p == '\0')
				break;
			continue;
		}
		if (!isalnum((unsigned char)*p) && *p != '-')
			return false;
		if (*p == '-' && label == 0)
			return false;
		if (!isdigit((unsigned char)*p))
			digits_only = false;
		label++;
	}
	/* "300.1.2.3" is neither a name nor an IPv4 address. */
	return !digits_only;
}

int keel_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon, *hstart = s;
	size_t hlen;
	unsigned char addr[16];
	char tmp[256];

	if (s == NULL)
		return -EINVAL;
	if (s[0] == '[') { /* [IPv6]:port */
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':')
			return -EINVAL;
		hstart = s + 1;
		hlen = (size_t)(close - hstart);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return -EINVAL;
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0 || hlen >= sizeof(tmp) || hlen >= hostlen)
		return -EINVAL;
	memcpy(tmp, hstart, hlen);
	tmp[hlen] = '\0';
	if (hstart != s) {
		if (inet_pton(AF_INET6, tmp, addr) != 1)
			return -EINVAL;
	} else if (inet_pton(AF_INET, tmp, addr) != 1 && !hostname_valid(tmp)) {
		return -EINVAL;
	}
	const char *p = colon + 1;
	size_t digits = strspn(p, "0123456789");
	if (digits == 0 || digits > 5 || p[digits] != '\0')
		return -EINVAL;
	unsigned long v = strtoul(p, NULL, 10);
	if (v > 65535)
		return -EINVAL;
	memcpy(host, tmp, hlen + 1);
	*port = (uint16_t)v;
	return 0;
}
