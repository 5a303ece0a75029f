/*
 * keelctl.h - what keelctl's subcommand files share: the global options
 * (--host, --port, --user, --password, --timeout) and number parsing.
 * Each subcommand is `int keelctl_<name>(keelctl_global *g, int argc,
 * char **argv)` returning the exit code (0 ok, 1 failure, 2 usage), with
 * argv[0] the subcommand's name.  Single-threaded program.
 */
#ifndef KEELCTL_H
#define KEELCTL_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "keel/client.h"

typedef struct keelctl_global {
	const char *host;
	uint16_t port;
	const char *user;
	const char *password;
	uint32_t timeout_ms; /* per blocking operation */
} keelctl_global;

enum {
	KEELCTL_OPT_HOST = 1000,
	KEELCTL_OPT_PORT,
	KEELCTL_OPT_USER,
	KEELCTL_OPT_PASSWORD,
	KEELCTL_OPT_TIMEOUT,
};

/* Entries for a getopt_long table; every subcommand accepts them. */
#define KEELCTL_GLOBAL_OPTIONS                                    \
	{ "host", required_argument, NULL, KEELCTL_OPT_HOST },       \
	{ "port", required_argument, NULL, KEELCTL_OPT_PORT },       \
	{ "user", required_argument, NULL, KEELCTL_OPT_USER },       \
	{ "password", required_argument, NULL, KEELCTL_OPT_PASSWORD }, \
	{ "timeout", required_argument, NULL, KEELCTL_OPT_TIMEOUT }

#define KEELCTL_GLOBAL_USAGE \
	"global options: --host H (127.0.0.1) --port P (61613) --user U --password P\n" \
	"                --timeout MS (10000, per operation)\n"

/* 0: handled; 2: bad value or not a global option (usage error). */
int keelctl_global_opt(keelctl_global *g, int ch, const char *arg);
void keelctl_client_options(const keelctl_global *g, keel_client_options *o);
bool keelctl_parse_u64(const char *s, uint64_t *out);

int keelctl_perf(keelctl_global *g, int argc, char **argv);

#endif
