/*
 * cmd_opts.c - command-line pieces shared by run, replay and shrink
 * (cmd_opts.h).
 */
#include "cmd_opts.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kh_limits.h"

/* `name` in the build tree beside this keel-harness (../DIR/name) or in
 * its own directory (an install), resolved into buf (PATH_MAX). */
static bool next_to_self(const char *self_exe, const char *dir_in_build, const char *name,
			 char *buf)
{
	char dir[PATH_MAX], p[2 * PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", self_exe);
	char *slash = strrchr(dir, '/');
	if (slash == NULL)
		return false;
	*slash = '\0';
	snprintf(p, sizeof(p), "%s/../%s/%s", dir, dir_in_build, name);
	if (access(p, X_OK) == 0 && realpath(p, buf) != NULL)
		return true;
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return access(p, X_OK) == 0 && realpath(p, buf) != NULL;
}

bool kh_default_broker(const char *self_exe, char *buf, size_t len)
{
	(void)len; /* PATH_MAX: realpath's */
	return next_to_self(self_exe, "broker", "keel-broker", buf);
}

bool kh_default_keel_leaks(const char *self_exe, char *buf, size_t len)
{
	(void)len;
	return next_to_self(self_exe, "leakcheck", "keel-leaks", buf);
}

int kh_opt_multiplier(const char *arg, double *out)
{
	char *end;
	double m = strtod(arg, &end);
	if (end == arg || *end || !(m > 0) || m > KH_MAX_TIMEOUT_MULTIPLIER) {
		fprintf(stderr, "keel-harness: --timeout-multiplier: 0 < F <= %g, got '%s'\n",
			KH_MAX_TIMEOUT_MULTIPLIER, arg);
		return -1;
	}
	*out = m;
	return 0;
}

int kh_opt_broker(const char *broker_opt, char *self, char *broker)
{
	ssize_t n = readlink("/proc/self/exe", self, PATH_MAX - 1);
	if (n < 0) {
		fprintf(stderr, "keel-harness: cannot find myself (/proc/self/exe): %s\n",
			strerror(errno));
		return -1;
	}
	self[n] = '\0';
	if (broker_opt) {
		if (realpath(broker_opt, broker) == NULL || access(broker, X_OK) != 0) {
			fprintf(stderr, "keel-harness: --broker %s: not an executable\n",
				broker_opt);
			return -1;
		}
	} else if (!kh_default_broker(self, broker, PATH_MAX)) {
		fprintf(stderr, "keel-harness: no keel-broker next to %s; use --broker PATH\n",
			self);
		return -1;
	}
	return 0;
}

int kh_open_recording(const char *path, sqlite3 **db)
{
	*db = NULL;
	if (access(path, R_OK) != 0) {
		fprintf(stderr, "keel-harness: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		fprintf(stderr, "keel-harness: %s: %s\n", path,
			*db ? sqlite3_errmsg(*db) : "cannot open");
		return -1;
	}
	sqlite3_busy_timeout(*db, 60000);
	return 0;
}

int kh_default_db(const char *kind, char *buf, size_t len)
{
	char stamp[64];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
	if (mkdir("runs", 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "keel-harness: runs/: %s\n", strerror(errno));
		return -1;
	}
	snprintf(buf, len, "runs/%s%s%s-%d.db", kind ? kind : "", kind ? "-" : "", stamp,
		 (int)getpid());
	return 0;
}
