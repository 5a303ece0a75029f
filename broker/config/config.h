/*
 * config.h - the broker's YAML configuration (libcyaml, schema-driven).
 *
 * keel_config_load() parses a file into this struct; unknown keys, wrong
 * types and bad values are errors whose message names the file, the line
 * and the key ("broker.yaml:12: address-settings[0].max-delivery-attempts:
 * expected an unsigned integer").  Command-line flags override the file
 * afterwards (keel-broker's main).  Optional scalars that must be told
 * apart from "unset" are pointers (NULL = unset).
 *
 * Keys (documented in broker/README.md):
 *   name, listen, data-dir, log-level, events,
 *   connection-ttl, check-period, handshake-timeout (ms),
 *   max-auto-created-addresses,
 *   users: [{name, password-hash, roles: [..]}],
 *   security-settings: [{match, send: [roles], consume: [..], manage: [..]}],
 *   global-max-size, min-large-message-size, write-high-watermark,
 *   write-low-watermark (sizes: bytes, or with a KiB/MiB/GiB, KB/MB/GB suffix),
 *   address-settings: [{match, auto-create-addresses, auto-create-queues,
 *       auto-delete-queues, max-delivery-attempts, dead-letter-address,
 *       expiry-address, max-size-bytes, address-full-policy}],
 *   addresses: [{name, routing-type: ANYCAST|MULTICAST,
 *       queues: [{name, routing-type, durable, max-consumers,
 *                 purge-on-no-consumers}]}],
 *   bridges: [{name, queue, forwarding-address, connectors: [..], user,
 *       password, virtual-host, retry-interval, retry-interval-multiplier,
 *       max-retry-interval, reconnect-attempts, confirmation-window,
 *       duplicate-detection, shared-locator, heartbeat}],
 *   ha: {role, listen, peer, cluster-user, cluster-password,
 *       initial-replication-sync-timeout, failback-wait, connection-ttl,
 *       check-period, retry-interval, allow-failback, check-for-live-server,
 *       restart-backup, failover-may-lose-data,
 *       max-saved-replicated-journals-size,
 *       manager: {zookeeper: {connect, session-timeout, root, pair-id}}}
 */
#ifndef KEEL_CONFIG_H
#define KEEL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/config.h"

typedef struct keel_user_cfg {
	char *name;
	char *password_hash;     /* crypt(3) hash, never plain text */
	char **roles;
	unsigned roles_count;
} keel_user_cfg;

typedef struct keel_security_setting_cfg {
	char *match;             /* address pattern (match.h) */
	char **send;             /* roles */
	unsigned send_count;
	char **consume;
	unsigned consume_count;
	char **manage;
	unsigned manage_count;
} keel_security_setting_cfg;

typedef struct keel_address_setting_cfg {
	char *match;
	bool *auto_create_addresses;   /* NULL = unset */
	bool *auto_create_queues;
	bool *auto_delete_queues;
	uint32_t *max_delivery_attempts;
	char *dead_letter_address;     /* NULL = unset, "" = none */
	char *expiry_address;
	char *max_size_bytes;          /* NULL = unset; a size or -1 (unlimited) */
	char *address_full_policy;     /* NULL = unset; BLOCK | FAIL | DROP */
	int64_t max_size_bytes_value;  /* parsed by the load (-1 when unset) */
} keel_address_setting_cfg;

typedef struct keel_queue_cfg {
	char *name;
	char *routing_type;            /* NULL: the address's */
	bool durable;                  /* default true */
	int32_t max_consumers;         /* default -1 */
	bool purge_on_no_consumers;
} keel_queue_cfg;

typedef struct keel_address_cfg {
	char *name;
	char *routing_type;            /* "ANYCAST" (default) | "MULTICAST" */
	keel_queue_cfg *queues;
	unsigned queues_count;
} keel_address_cfg;

/* A core bridge (bridge.h): forwards a local queue to another broker. */
typedef struct keel_bridge_cfg {
	char *name;
	char *queue;                   /* source queue (created when missing) */
	char *forwarding_address;      /* NULL: "/queue/<queue>" */
	char **connectors;             /* "host:port", at least one */
	unsigned connectors_count;
	char *user;                    /* credentials on the target; NULL = none */
	char *password;
	char *virtual_host;            /* CONNECT `host` header; NULL = the
					  connector's host (RabbitMQ: "/") */
	uint32_t retry_interval;       /* ms, default 2000 */
	double retry_interval_multiplier; /* default 1.0, at least 1.0 */
	uint32_t max_retry_interval;   /* ms, default 2000 (at least retry-interval) */
	int32_t reconnect_attempts;    /* default -1 = forever */
	uint32_t confirmation_window;  /* messages unconfirmed at once, default 16 */
	bool duplicate_detection;      /* default true: add the header */
	bool shared_locator;           /* default true: share the connection */
	uint32_t heartbeat;            /* ms both ways, default
					  KEEL_BRIDGE_DEFAULT_HEARTBEAT_MS; 0 = none */
} keel_bridge_cfg;

/* ha.manager.zookeeper (README.md "With a manager"): the ZooKeeper that
 * coordinates the pair.  The load checks every value and fills defaults. */
typedef struct keel_ha_zk_cfg {
	char *connect;            /* required: "HOST:PORT[,HOST:PORT...]", the ensemble */
	uint32_t session_timeout; /* ms, default KEEL_HA_ZK_DEFAULT_SESSION_MS */
	char *root;               /* absolute znode path of the pairs, default "/keel" */
	char *pair_id;            /* required: this pair's znode under root (both nodes alike) */
} keel_ha_zk_cfg;

/* ha.manager: what coordinates the pair; absent: the pair alone. */
typedef struct keel_ha_manager_cfg {
	keel_ha_zk_cfg *zookeeper; /* the only kind; required */
} keel_ha_manager_cfg;

/* Replication (ha:, README.md "Replication (HA)"): this node's half of a
 * live/backup pair.  Times in ms; the load fills every default. */
typedef struct keel_ha_cfg {
	char *role;              /* required: "primary" | "backup" */
	char *listen;            /* required: this node's replication acceptor, host:port (port may be 0 only in tests) */
	char *peer;              /* required: the peer's replication acceptor, host:port */
	char *cluster_user;      /* cluster-user: NULL = none (then no password either) */
	char *cluster_password;  /* cluster-password: sent in our REGISTERs; verified against
				  * a hash security.c derives at load.  Without user and
				  * password, listen must be loopback (broker.c) */
	uint32_t initial_replication_sync_timeout; /* ms, default 30000 */
	uint32_t failback_wait;  /* ms, default 60000 */
	uint32_t connection_ttl; /* ms, default: the top-level connection-ttl */
	uint32_t check_period;   /* ms, default: the top-level check-period; 0 = no pings */
	uint32_t retry_interval; /* ms, default 2000 */
	bool allow_failback;     /* default true */
	bool check_for_live_server; /* default true */
	bool restart_backup;     /* default true */
	bool failover_may_lose_data; /* default false: leases and the fence (ha.h) */
	int32_t max_saved_replicated_journals_size; /* copies of the old data a sync moves
						      * aside (store/saved.h): default 2, 0 none,
						      * -1 all; at most KEEL_HA_MAX_SAVED_JOURNALS */
	keel_ha_manager_cfg *manager; /* ha.manager; NULL: the pair alone (leases, fence) */
} keel_ha_cfg;

struct keel_config {
	char *name;                    /* default "keel" */
	char *listen;                  /* default "127.0.0.1:61613" */
	char *data_dir;                /* default "./keel-data" */
	char *log_level;               /* default "info" */
	char *events;                  /* default NULL (none) */
	uint32_t connection_ttl;       /* ms, default 60000; 0 = none */
	uint32_t check_period;         /* ms, default 30000 */
	uint32_t handshake_timeout;    /* ms to CONNECT, default 10000, at least 1 */
	int32_t max_auto_created_addresses; /* default 10000; -1 = unlimited; not 0 */
	keel_user_cfg *users;
	unsigned users_count;
	keel_security_setting_cfg *security_settings;
	unsigned security_settings_count;
	keel_address_setting_cfg *address_settings;
	unsigned address_settings_count;
	keel_address_cfg *addresses;
	unsigned addresses_count;
	/* Flow control and large messages: the strings as written (NULL =
	 * unset), the values parsed by the load (defaults when unset). */
	char *global_max_size;
	char *min_large_message_size;
	char *write_high_watermark;
	char *write_low_watermark;
	int64_t global_max_size_bytes;       /* default -1 = unlimited */
	uint64_t min_large_message_size_bytes; /* default 100 KiB */
	uint64_t write_high_watermark_bytes;   /* default 128 KiB */
	uint64_t write_low_watermark_bytes;    /* default 32 KiB */
	/* The journal (journal.h).  journal-file-size: the string as written
	 * (NULL = unset) and its value in bytes (default 10 MiB). */
	char *journal_file_size;
	uint64_t journal_file_size_bytes;
	bool journal_sync;                     /* default true: fdatasync per batch */
	/* page-file-size: as written (NULL = unset) and in bytes (a page file
	 * is closed past it; default 64 MiB, paging.h) */
	char *page_file_size;
	uint64_t page_file_size_bytes;
	uint32_t journal_compact_min_files;    /* default 4 */
	keel_bridge_cfg *bridges;              /* bridges: [...] */
	unsigned bridges_count;
	keel_ha_cfg *ha;                       /* ha: {...}; NULL = no replication */
};

/*
 * Load `path`.  On success writes *out (free with keel_config_free) and
 * returns 0.  On failure returns -errno (-ENOENT...) or -EINVAL and writes
 * a message naming file, line and key into err (always NUL-terminated).
 * Defaults are applied to unset keys; semantic checks (routing types,
 * patterns, host:port, log level, password hashes that crypt understands)
 * are done here too.
 */
int keel_config_load(const char *path, keel_config **out, char *err, size_t errlen);
/* keel_config_load_data() (the same from a string) and keel_config_free()
 * are declared in the public <keel/config.h>. */
/* A config with every default (no file). */
int keel_config_default(keel_config **out);

/* Replace a string field (flags override the file). 0 or -ENOMEM. */
int keel_config_set_str(char **field, const char *value);

/*
 * A size: decimal bytes, optionally followed by a unit: KiB, MiB, GiB
 * (1024-based; K, M, G and k, m, g alone mean the same) or KB, MB, GB
 * (1000-based); "-1" when allow_unlimited.  -EINVAL when malformed,
 * -ERANGE above INT64_MAX.
 */
int keel_parse_size(const char *s, bool allow_unlimited, int64_t *out);

/* "HOST:PORT" -> parts; -EINVAL when malformed.  host must hold 256. */
int keel_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);

/* global-max-size when the file does not set it: physical RAM /
 * KEEL_GLOBAL_MAX_SIZE_RAM_DIVISOR, between the floor and the cap of
 * util/limits.h (16 MiB on any machine with 256 MiB or more). */
int64_t keel_default_global_max_size(void);

#endif
