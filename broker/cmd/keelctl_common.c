/*
 * keelctl_common.c - what every keelctl subcommand shares: number parsing,
 * the global options (--host, --port, --user, --password, --timeout,
 * --url), the client options they make, and connecting through the --url
 * list.  Owns nothing: the URL list lives in the caller's keelctl_global.
 * Calls only the client library, never another keelctl file.
 * Single-threaded.
 */
#include "keelctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool keelctl_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	if (s == NULL || *s == '\0' || *s == '-')
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end != '\0')
		return false;
	*out = v;
	return true;
}

bool keelctl_ack_valid(const char *ack)
{
	return strcmp(ack, "auto") == 0 || strcmp(ack, "client") == 0 ||
	       strcmp(ack, "client-individual") == 0;
}

int keelctl_global_opt(keelctl_global *g, int ch, const char *arg)
{
	uint64_t v;
	switch (ch) {
	case KEELCTL_OPT_HOST:
		g->host = arg;
		return 0;
	case KEELCTL_OPT_PORT:
		if (!keelctl_parse_u64(arg, &v) || v == 0 || v > 65535) {
			fprintf(stderr, "keelctl: bad --port '%s'\n", arg);
			return 2;
		}
		g->port = (uint16_t)v;
		return 0;
	case KEELCTL_OPT_USER:
		g->user = arg;
		return 0;
	case KEELCTL_OPT_PASSWORD:
		g->password = arg;
		return 0;
	case KEELCTL_OPT_TIMEOUT:
		if (!keelctl_parse_u64(arg, &v) || v == 0 || v > UINT32_MAX) {
			fprintf(stderr, "keelctl: bad --timeout '%s'\n", arg);
			return 2;
		}
		g->timeout_ms = (uint32_t)v;
		return 0;
	case KEELCTL_OPT_URL:
		return keelctl_parse_url(g, arg);
	default:
		return 2;
	}
}

void keelctl_client_options(const keelctl_global *g, keel_client_options *o)
{
	memset(o, 0, sizeof(*o));
	o->host = g->host;
	o->port = g->port;
	o->login = g->user;
	o->passcode = g->password ? g->password : getenv("KEEL_PASSWORD");
	o->connect_timeout_ms = g->timeout_ms;
	/* offered, none asked for: see KEELCTL_HEARTBEAT_MS */
	o->heartbeat_send_ms = KEELCTL_HEARTBEAT_MS;
}

/* ---- URLs and connecting ------------------------------------------------- */

int keelctl_parse_url(keelctl_global *g, const char *url)
{
	const char *p = url;
	if (strncmp(p, "tcp://", 6) == 0)
		p += 6;
	else if (strncmp(p, "stomp://", 8) == 0)
		p += 8;
	const char *colon = strrchr(p, ':');
	uint64_t port;
	size_t hlen = colon ? (size_t)(colon - p) : 0;
	if (hlen >= 2 && p[0] == '[' && p[hlen - 1] == ']') {
		p++;
		hlen -= 2;
	}
	if (colon == NULL || hlen == 0 || hlen >= sizeof(g->urls[0].host) ||
	    !keelctl_parse_u64(colon + 1, &port) || port == 0 || port > 65535) {
		fprintf(stderr, "keelctl: bad --url '%s' (tcp://HOST:PORT or stomp://HOST:PORT)\n",
			url);
		return 2;
	}
	if (g->url_count == KEELCTL_MAX_URLS) {
		fprintf(stderr, "keelctl: at most %d --url\n", KEELCTL_MAX_URLS);
		return 2;
	}
	keelctl_url *u = &g->urls[g->url_count++];
	memcpy(u->host, p, hlen);
	u->host[hlen] = '\0';
	u->port = (uint16_t)port;
	if (g->url_count == 1) {
		g->host = u->host;
		g->port = u->port;
	}
	return 0;
}

int keelctl_connect(const keelctl_global *g, keel_bclient **out, char *err, size_t errlen)
{
	keel_client_options o;
	keelctl_client_options(g, &o);
	if (g->url_count == 0)
		return keel_bclient_connect(out, &o, g->timeout_ms, err, errlen);
	int rc = -EINVAL;
	char one[256];
	err[0] = '\0';
	for (size_t i = 0; i < g->url_count; i++) {
		o.host = g->urls[i].host;
		o.port = g->urls[i].port;
		rc = keel_bclient_connect(out, &o, g->timeout_ms, one, sizeof(one));
		if (rc == 0)
			return 0;
		size_t used = strlen(err);
		snprintf(err + used, errlen - used, "%stcp://%s:%u: %s", i ? "; " : "", o.host,
			 (unsigned)o.port, one);
	}
	return rc;
}

int keelctl_connect_or_fail(const keelctl_global *g, const char *cmd, keel_bclient **out)
{
	char err[512];
	int rc = keelctl_connect(g, out, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "keelctl %s: cannot connect to %s:%u: %s\n", cmd, g->host,
			(unsigned)g->port, err);
		return 1;
	}
	return 0;
}
