/*
 * keelctl.h - keelctl's internal header: the global options (--host,
 * --port, --user, --password, --timeout, --url), number parsing and
 * connecting (keelctl_common.c), and the subcommands of keelctl_perf.c,
 * keelctl_mgmt.c and keelctl_journal.c that main (keelctl.c) dispatches to.  Each subcommand is
 * `int keelctl_<name>(keelctl_global *g, int argc, char **argv)` returning
 * the exit code (0 ok, 1 failure, 2 usage), with argv[0] the subcommand's
 * name.  Calls go keelctl.c -> perf, mgmt, journal -> common.
 * Single-threaded.
 */
#ifndef KEELCTL_H
#define KEELCTL_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "keel/client.h"
#include "limits.h" /* KEELCTL_* */

typedef struct keelctl_url {
	char host[256];
	uint16_t port;
} keelctl_url;

typedef struct keelctl_global {
	const char *host;
	uint16_t port;
	const char *user;
	const char *password;
	uint32_t timeout_ms; /* per blocking operation */
	keelctl_url urls[KEELCTL_MAX_URLS]; /* --url, tried in order; the first
					       also sets host/port */
	size_t url_count;
} keelctl_global;

enum {
	KEELCTL_OPT_HOST = 1000,
	KEELCTL_OPT_PORT,
	KEELCTL_OPT_USER,
	KEELCTL_OPT_PASSWORD,
	KEELCTL_OPT_TIMEOUT,
	KEELCTL_OPT_URL,
};

/* Entries for a getopt_long table; every subcommand accepts them. */
#define KEELCTL_GLOBAL_OPTIONS                                    \
	{ "host", required_argument, NULL, KEELCTL_OPT_HOST },       \
	{ "port", required_argument, NULL, KEELCTL_OPT_PORT },       \
	{ "user", required_argument, NULL, KEELCTL_OPT_USER },       \
	{ "password", required_argument, NULL, KEELCTL_OPT_PASSWORD }, \
	{ "timeout", required_argument, NULL, KEELCTL_OPT_TIMEOUT }, \
	{ "url", required_argument, NULL, KEELCTL_OPT_URL }

#define KEELCTL_GLOBAL_USAGE \
	"global options: --host H (127.0.0.1) --port P (61613) --user U --password P\n" \
	"                --timeout MS (10000, per operation)\n" \
	"                --url tcp://HOST:PORT or stomp://HOST:PORT (repeatable: tried in\n" \
	"                order until one connects)\n" \
	"                KEEL_PASSWORD in the environment stands in for --password\n"

/* ---- keelctl_common.c ---------------------------------------------------- */

/* Decimal, no sign; false on anything else (*out untouched). */
bool keelctl_parse_u64(const char *s, uint64_t *out);
/* An --ack value: auto, client or client-individual. */
bool keelctl_ack_valid(const char *ack);
/* 0: handled; 2: bad value or not a global option (usage error). */
int keelctl_global_opt(keelctl_global *g, int ch, const char *arg);
void keelctl_client_options(const keelctl_global *g, keel_client_options *o);
/* One --url (tcp://HOST:PORT, [v6]:PORT): 0, or 2 after printing why. */
int keelctl_parse_url(keelctl_global *g, const char *url);
/* Tries --url entries in order (or host/port when none); 0 and *out, or
 * -errno with the last failure in err. */
int keelctl_connect(const keelctl_global *g, keel_bclient **out, char *err, size_t errlen);
/* keelctl_connect, then 0 and *out, or 1 after printing
 * "keelctl <cmd>: cannot connect to ...". */
int keelctl_connect_or_fail(const keelctl_global *g, const char *cmd, keel_bclient **out);

/* ---- keelctl_perf.c ------------------------------------------------------ */

int keelctl_perf(keelctl_global *g, int argc, char **argv);

/* ---- keelctl_mgmt.c: the management subcommands -------------------------- */

int keelctl_queue(keelctl_global *g, int argc, char **argv);
int keelctl_address(keelctl_global *g, int argc, char **argv);
int keelctl_broker(keelctl_global *g, int argc, char **argv);
int keelctl_bridge(keelctl_global *g, int argc, char **argv);

/* ---- keelctl_journal.c: saved copies of a node's old data (offline) ------ */

int keelctl_journal(keelctl_global *g, int argc, char **argv);

/* ---- keelctl_jcheck.c: journal check|salvage (offline) ------------------- */

/* argv[0] is "check" or "salvage". */
int keelctl_journal_check(keelctl_global *g, int argc, char **argv);

#endif
