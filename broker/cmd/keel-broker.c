/*
 * main.c - keel-broker: command line, config loading, then the broker.
 *
 * Flags override the config file.  Exit codes: 0 after a clean stop (or
 * a good --check-config), 1 for runtime failures (cannot listen...), 2
 * for usage and configuration errors, 3 when the stop found leaked
 * threads (leakcheck/README.md).  The main thread runs the loop; other
 * threads are started through lc_thread_start and joined on stop.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <fiu.h>
#include <fiu-control.h>

#include "broker.h"
#include "config.h"
#include "keel/exit.h"
#include "lc.h"
#include "lc_check.h"
#include "lc_stack.h"
#include "lc_uv.h"
#include "log.h"

#define PROG "keel-broker"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " [OPTION]...\n"
		"Run the Keel STOMP broker until SIGTERM or SIGINT.\n"
		"\n"
		"  -c, --config FILE      YAML configuration file (default: none, built-in defaults)\n"
		"  -l, --listen HOST:PORT STOMP acceptor address; port 0 = ephemeral\n"
		"                         (default: 127.0.0.1:61613)\n"
		"  -d, --data-dir DIR     data directory, created if missing (default: ./keel-data)\n"
		"  -n, --name NAME        node name for logs and events (default: keel)\n"
		"  -e, --events PATH|fd:N JSON Lines events: append to PATH or write to an\n"
		"                         inherited descriptor (default: none)\n"
		"  -L, --log-level LEVEL  error, warn, info, debug or trace (default: info)\n"
		"      --check-config     validate the configuration (and flags), print\n"
		"                         \"config OK\" and exit 0, or the error and exit 2\n"
		"  -h, --help             show this help and exit\n"
		"  -V, --version          show the version and exit\n"
		"\n"
		"Flags override the same keys of the config file.  With no users\n"
		"configured the broker only listens on a loopback address.\n"
		"Exit status: 0 clean stop, 1 runtime failure, 2 usage or config error,\n"
		"3 threads leaked at stop (a report on standard output).\n");
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, PROG ": ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nTry '" PROG " --help' for more information.\n");
	va_end(ap);
	return 2;
}

/* mkdir -p: 0 or -errno. */
static int mkdir_p(const char *path)
{
	char buf[4096];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0755) < 0 && errno != EEXIST)
		return -errno;
	struct stat st;
	if (stat(buf, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

enum { OPT_CHECK_CONFIG = 256 };

/* KEEL_TEST_LEAK_THREAD=1: a thread that is never joined, so that tests
 * can see the leak report and exit status 3.  Blocks every signal but the
 * leak check's (which asks it for its current stack, lc_stack.h) and
 * waits until the process exits. */
static void *leak_on_purpose(void *arg)
{
	sigset_t all;
	(void)arg;
	sigfillset(&all);
	sigdelset(&all, lc_stack_signal());
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;)
		pause();
	return NULL;
}

/*
 * KEEL_FIU_ENABLE="NAME[=FAILINFO][@once],...": libfiu fault points enabled
 * from the start (scenarios need some before the first event: a dropped
 * announcement, a delayed SYNC_DONE_ACK).  FAILINFO is a number (an errno,
 * a delay in ms); @once fails the first time only.  Points at run time:
 * fiu-ctrl.  0, or -EINVAL with the bad entry in err.
 */
static int enable_faults(const char *spec, char *err, size_t errlen)
{
	char buf[1024];
	if (strlen(spec) >= sizeof(buf)) {
		snprintf(err, errlen, "KEEL_FIU_ENABLE: too long");
		return -EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", spec);
	if (fiu_init(0) != 0) {
		snprintf(err, errlen, "KEEL_FIU_ENABLE: libfiu cannot start");
		return -EINVAL;
	}
	char *save = NULL;
	for (char *e = strtok_r(buf, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
		unsigned flags = 0;
		unsigned long info = 0;
		char *at = strchr(e, '@');
		if (at) {
			if (strcmp(at, "@once") != 0) {
				snprintf(err, errlen, "KEEL_FIU_ENABLE: '%s': expected @once", e);
				return -EINVAL;
			}
			*at = '\0';
			flags = FIU_ONETIME;
		}
		char *eq = strchr(e, '=');
		if (eq) {
			char *end;
			*eq = '\0';
			errno = 0;
			info = strtoul(eq + 1, &end, 10);
			if (errno || end == eq + 1 || *end) {
				snprintf(err, errlen, "KEEL_FIU_ENABLE: '%s': FAILINFO must be a number",
					 e);
				return -EINVAL;
			}
		}
		if (*e == '\0' || fiu_enable(e, 1, (void *)(uintptr_t)info, flags) != 0) {
			snprintf(err, errlen, "KEEL_FIU_ENABLE: cannot enable '%s'", e);
			return -EINVAL;
		}
		keel_log_warn("fault point %s enabled%s", e, flags ? " (once)" : "");
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "data-dir", required_argument, NULL, 'd' },
		{ "name", required_argument, NULL, 'n' },
		{ "events", required_argument, NULL, 'e' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "check-config", no_argument, NULL, OPT_CHECK_CONFIG },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = NULL, *listen_arg = NULL, *data_dir = NULL, *name = NULL;
	const char *events = NULL, *log_level = NULL;
	int check_only = 0;
	int opt;

	/* One write per log line, even when stderr is a pipe. */
	setvbuf(stderr, NULL, _IOLBF, 0);
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":c:l:d:n:e:L:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 'l': listen_arg = optarg; break;
		case 'd': data_dir = optarg; break;
		case 'n': name = optarg; break;
		case 'e': events = optarg; break;
		case 'L': log_level = optarg; break;
		case OPT_CHECK_CONFIG: check_only = 1; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf(PROG " " KEEL_VERSION "\n"); return 0;
		case ':': return usage_error("option '%s' needs an argument", argv[optind - 1]);
		default: return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);

	/* Validate flags before anything else, as usage errors. */
	char host[256];
	uint16_t port;
	if (listen_arg && keel_parse_hostport(listen_arg, host, sizeof(host), &port) < 0)
		return usage_error("--listen: expected HOST:PORT, got '%s'", listen_arg);
	keel_log_level level;
	if (log_level && keel_log_parse_level(log_level, &level) < 0)
		return usage_error("--log-level: expected error, warn, info, debug or trace, "
				   "got '%s'", log_level);
	if (name && name[0] == '\0')
		return usage_error("--name: must not be empty");
	if (data_dir && data_dir[0] == '\0')
		return usage_error("--data-dir: must not be empty");

	keel_config *cfg = NULL;
	char err[1024] = "";
	int rc = config_path ? keel_config_load(config_path, &cfg, err, sizeof(err))
			     : keel_config_default(&cfg);
	if (rc < 0) {
		if (err[0])
			fprintf(stderr, PROG ": %s\n", err);
		else
			fprintf(stderr, PROG ": %s: %s\n", config_path ? config_path : "config",
				strerror(-rc));
		return 2;
	}
	rc = 0;
	if (listen_arg)
		rc = rc ? rc : keel_config_set_str(&cfg->listen, listen_arg);
	if (data_dir)
		rc = rc ? rc : keel_config_set_str(&cfg->data_dir, data_dir);
	if (name)
		rc = rc ? rc : keel_config_set_str(&cfg->name, name);
	if (events)
		rc = rc ? rc : keel_config_set_str(&cfg->events, events);
	if (log_level)
		rc = rc ? rc : keel_config_set_str(&cfg->log_level, log_level);
	if (rc < 0) {
		fprintf(stderr, PROG ": %s\n", strerror(-rc));
		keel_config_free(cfg);
		return 1;
	}
	if (keel_log_parse_level(cfg->log_level, &level) == 0)
		keel_log_set_level(level);

	int status = 0;
	lc_snapshot *threads_before = NULL;
	if (check_only) {
		rc = keel_broker_check_config(cfg, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, PROG ": %s\n", err);
			status = 2;
		} else {
			printf("config OK\n");
		}
		goto out;
	}

	rc = mkdir_p(cfg->data_dir);
	if (rc < 0) {
		fprintf(stderr, PROG ": data-dir %s: %s\n", cfg->data_dir, strerror(-rc));
		status = 2;
		goto out;
	}
	/* A peer that goes away mid-write is an error code, not a signal. */
	signal(SIGPIPE, SIG_IGN);

	const char *faults = getenv("KEEL_FIU_ENABLE");
	if (faults != NULL && *faults) {
		rc = enable_faults(faults, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, PROG ": %s\n", err);
			status = 2;
			goto out;
		}
	}

	/* The threads there before the broker: this one and libuv's pool
	 * (started and named now, see lc_uv.h).  What is more at the stop
	 * leaked. */
	lc_uv_pool_warm();
	rc = lc_snapshot_take(&threads_before);
	if (rc < 0)
		keel_log_warn("leak check off: cannot snapshot threads: %s", strerror(-rc));

	keel_broker *b = NULL;
	rc = keel_broker_create(&b, cfg, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		status = (rc == -EINVAL || rc == -EPERM) ? 2 : 1;
		goto out;
	}
	const char *leak = getenv("KEEL_TEST_LEAK_THREAD");
	if (leak != NULL && strcmp(leak, "1") == 0) {
		lc_thread *t;
		if (lc_thread_start(&t, "keel-leaktest", "broker-test", leak_on_purpose, NULL) == 0)
			keel_log_warn("KEEL_TEST_LEAK_THREAD=1: thread keel-leaktest will leak");
	}
	rc = keel_broker_run(b);
	status = rc < 0 ? KEEL_EXIT_FAIL : KEEL_EXIT_OK;
	/* Every broker thread is joined now: anything more is a leak. */
	if (threads_before != NULL && keel_broker_check_leaks(b, threads_before, rc == 0) > 0 &&
	    status == 0)
		status = KEEL_EXIT_LEAKED;
	keel_broker_free(b);
out:
	lc_snapshot_free(threads_before);
	keel_config_free(cfg);
	return status;
}
