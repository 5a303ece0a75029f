/*
 * itutil.c - spawn, watch and stop a keel-broker for integration tests.
 *
 * Owns the child process, the read end of its events pipe, the parsed
 * events (jansson objects, in arrival order) and a temp directory holding
 * the data dir and the config file.  Every wait is a poll(2) with a
 * deadline; there is no sleep.  Test thread only.
 */
#include "itutil.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "keel/alloc.h"

/* The broker's events are written to this fd in the child. */
#define IT_EVENTS_FD 3
#define IT_MAX_ARGS 64
#define IT_MAX_LINE (64 * 1024)
/* <limits.h> would find broker/util/limits.h on the include path. */
#define IT_PATH_MAX 4096

struct it_broker {
	pid_t pid;
	bool reaped;
	int wstatus;
	int events_fd;          /* read end; -1 after EOF */
	uint16_t port;
	char dir[IT_PATH_MAX];     /* temp dir: data/ and broker.yaml */
	char *line;             /* partial event line */
	size_t line_len;
	json_t **events;
	size_t events_count;
	size_t events_cap;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(int64_t deadline)
{
	int64_t left = deadline - now_ms();
	return left < 0 ? 0 : (int)left;
}

uint32_t it_ms(uint32_t ms)
{
	const char *s = getenv("KEEL_IT_TIMEOUT_SCALE");
	unsigned long scale = 1;
	if (s != NULL && *s != '\0')
		scale = strtoul(s, NULL, 10);
	else if (getenv("KEEL_BROKER_WRAPPER") != NULL && *getenv("KEEL_BROKER_WRAPPER") != '\0')
		scale = 20;
	if (scale == 0)
		scale = 1;
	return (uint32_t)(ms * scale);
}

const char *it_fiu_unavailable(void)
{
#if defined(__SANITIZE_ADDRESS__)
	return "sanitizer build: fiu-run's preloaded library cannot come before ASan's";
#endif
	const char *w = getenv("KEEL_BROKER_WRAPPER");
	if (w && *w)
		return "KEEL_BROKER_WRAPPER is set: fiu-run would wrap the wrapper";
	if (system("command -v fiu-run >/dev/null 2>&1 && command -v fiu-ctrl >/dev/null 2>&1"))
		return "fiu-run / fiu-ctrl not installed (Debian fiu-utils)";
	return NULL;
}

int it_exit_code(int wstatus)
{
	if (WIFEXITED(wstatus))
		return WEXITSTATUS(wstatus);
	if (WIFSIGNALED(wstatus))
		return 128 + WTERMSIG(wstatus);
	return -1;
}

static int push_event(it_broker *b, const char *line, size_t len)
{
	json_error_t jerr;
	json_t *ev = json_loadb(line, len, 0, &jerr);
	if (ev == NULL || !json_is_object(ev)) {
		fprintf(stderr, "itutil: bad event line (%s): %.*s\n", jerr.text, (int)len, line);
		json_decref(ev);
		return -EPROTO;
	}
	if (b->events_count == b->events_cap) {
		size_t cap = b->events_cap ? b->events_cap * 2 : 32;
		json_t **n = keel_realloc(b->events, cap * sizeof(*n));
		if (n == NULL) {
			json_decref(ev);
			return -ENOMEM;
		}
		b->events = n;
		b->events_cap = cap;
	}
	b->events[b->events_count++] = ev;
	return 0;
}

/* Read what is there (waiting up to timeout_ms for something).  0 when
 * bytes came, -ETIMEDOUT, -EPIPE at EOF. */
static int read_events(it_broker *b, int timeout_ms)
{
	if (b->events_fd < 0)
		return -EPIPE;
	struct pollfd pfd = { .fd = b->events_fd, .events = POLLIN };
	int n = poll(&pfd, 1, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	if (n == 0)
		return -ETIMEDOUT;
	char chunk[4096];
	ssize_t got = read(b->events_fd, chunk, sizeof(chunk));
	if (got < 0)
		return errno == EINTR || errno == EAGAIN ? 0 : -errno;
	if (got == 0) {
		close(b->events_fd);
		b->events_fd = -1;
		if (b->line_len > 0)
			fprintf(stderr, "itutil: events ended inside a line\n");
		return -EPIPE;
	}
	for (ssize_t i = 0; i < got; i++) {
		if (chunk[i] == '\n') {
			if (b->line_len > 0)
				push_event(b, b->line, b->line_len);
			b->line_len = 0;
		} else if (b->line_len < IT_MAX_LINE) {
			b->line[b->line_len++] = chunk[i];
		}
	}
	return 0;
}

static bool event_matches(json_t *ev, const char *type, const char *field, const char *value)
{
	const char *t = json_string_value(json_object_get(ev, "type"));
	if (t == NULL || strcmp(t, type) != 0)
		return false;
	if (field == NULL)
		return true;
	const char *v = json_string_value(json_object_get(ev, field));
	return v != NULL && strcmp(v, value) == 0;
}

int it_broker_wait_event(it_broker *b, size_t from, const char *type, const char *field,
			 const char *value, uint32_t timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	size_t i = from;
	for (;;) {
		for (; i < b->events_count; i++)
			if (event_matches(b->events[i], type, field, value))
				return (int)i;
		int rc = read_events(b, remaining_ms(deadline));
		if (rc == -EPIPE)
			return rc;
		if (rc < 0 && remaining_ms(deadline) == 0)
			return -ETIMEDOUT;
	}
}

size_t it_broker_event_count(const it_broker *b)
{
	return b->events_count;
}

json_t *it_broker_event(const it_broker *b, size_t i)
{
	return i < b->events_count ? b->events[i] : NULL;
}

uint16_t it_broker_port(const it_broker *b)
{
	return b->port;
}

pid_t it_broker_pid(const it_broker *b)
{
	return b->pid;
}

const char *it_broker_dir(const it_broker *b)
{
	return b->dir;
}

/* Split KEEL_BROKER_WRAPPER on blanks into argv (strings in `store`). */
static int wrapper_args(char *store, size_t storelen, char **argv, int max)
{
	const char *w = getenv("KEEL_BROKER_WRAPPER");
	int n = 0;
	if (w == NULL)
		return 0;
	if (strlen(w) >= storelen)
		return -E2BIG;
	strcpy(store, w);
	for (char *save = NULL, *tok = strtok_r(store, " \t", &save); tok != NULL;
	     tok = strtok_r(NULL, " \t", &save)) {
		if (n == max)
			return -E2BIG;
		argv[n++] = tok;
	}
	return n;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -errno;
	int rc = fputs(text, f) < 0 ? -EIO : 0;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	return rc;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static int spawn(it_broker *b, const char *exe, const it_broker_opts *opt)
{
	char wrap_store[1024];
	char *argv[IT_MAX_ARGS + 1];
	char data_dir[IT_PATH_MAX + 8], config[IT_PATH_MAX + 16], events[32];
	int argc = wrapper_args(wrap_store, sizeof(wrap_store), argv, IT_MAX_ARGS - 16);
	if (argc < 0)
		return argc;

	snprintf(data_dir, sizeof(data_dir), "%s/data", b->dir);
	snprintf(events, sizeof(events), "fd:%d", IT_EVENTS_FD);
	argv[argc++] = (char *)exe;
	if (opt != NULL && opt->config_yaml != NULL) {
		snprintf(config, sizeof(config), "%s/broker.yaml", b->dir);
		int rc = write_file(config, opt->config_yaml);
		if (rc < 0)
			return rc;
		argv[argc++] = "--config";
		argv[argc++] = config;
	}
	argv[argc++] = "--listen";
	argv[argc++] = "127.0.0.1:0";
	argv[argc++] = "--data-dir";
	argv[argc++] = data_dir;
	argv[argc++] = "--events";
	argv[argc++] = events;
	argv[argc++] = "--name";
	argv[argc++] = (char *)(opt != NULL && opt->name != NULL ? opt->name : "it");
	for (size_t i = 0; opt != NULL && opt->extra_args != NULL && opt->extra_args[i]; i++) {
		if (argc == IT_MAX_ARGS)
			return -E2BIG;
		argv[argc++] = (char *)opt->extra_args[i];
	}
	argv[argc] = NULL;

	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0)
		return -errno;
	int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (devnull < 0) {
		int rc = -errno;
		close(fds[0]);
		close(fds[1]);
		return rc;
	}
	pid_t parent = getpid();
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		int rc = -errno;
		close(fds[0]);
		close(fds[1]);
		close(devnull);
		return rc;
	}
	if (pid == 0) {
		/* Child: only async-signal-safe calls until exec. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		dup2(devnull, STDIN_FILENO);
		if (fds[1] == IT_EVENTS_FD)
			fcntl(IT_EVENTS_FD, F_SETFD, 0);
		else if (dup2(fds[1], IT_EVENTS_FD) < 0)
			_exit(127);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(fds[1]);
	close(devnull);
	b->pid = pid;
	b->events_fd = fds[0];
	return 0;
}

int it_broker_start(it_broker **out, const char *exe, const it_broker_opts *opt,
		    uint32_t timeout_ms)
{
	int rc = -ENOMEM;
	it_broker *b = keel_calloc(1, sizeof(*b));
	if (b == NULL)
		return -ENOMEM;
	b->events_fd = -1;
	b->pid = -1;
	b->line = keel_malloc(IT_MAX_LINE);
	if (b->line == NULL)
		goto out_free;
	snprintf(b->dir, sizeof(b->dir), "%s/keel-it-XXXXXX",
		 getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(b->dir) == NULL) {
		rc = -errno;
		goto out_free;
	}
	rc = spawn(b, exe, opt);
	if (rc < 0)
		goto out_free;
	if (opt != NULL && opt->no_wait) {
		*out = b;
		return 0;
	}

	bool custom = opt != NULL && opt->ready_type != NULL;
	const char *rtype = custom ? opt->ready_type : "state";
	const char *rfield = custom ? opt->ready_field : "state";
	const char *rvalue = custom ? opt->ready_value : "LIVE";
	rc = it_broker_wait_event(b, 0, rtype, rfield, rvalue, timeout_ms);
	if (rc < 0) {
		fprintf(stderr, "itutil: broker did not say %s %s: %s\n", rtype,
			rvalue != NULL ? rvalue : "", strerror(-rc));
		rc = rc == -EPIPE ? -ECHILD : rc;
		goto out_free;
	}
	int li = it_broker_wait_event(b, 0, "acceptor.listening", NULL, NULL, 0);
	if (li < 0 || (size_t)li > (size_t)rc) {
		if (custom) {
			*out = b;
			return 0;
		}
		fprintf(stderr, "itutil: no acceptor.listening before LIVE\n");
		rc = -EPROTO;
		goto out_free;
	}
	json_t *port = json_object_get(b->events[li], "port");
	json_int_t p = json_is_integer(port) ? json_integer_value(port)
		     : json_is_string(port) ? strtol(json_string_value(port), NULL, 10) : 0;
	if (p <= 0 || p > 65535) {
		fprintf(stderr, "itutil: acceptor.listening without a port\n");
		rc = -EPROTO;
		goto out_free;
	}
	b->port = (uint16_t)p;
	*out = b;
	return 0;

out_free:
	it_broker_free(b);
	return rc;
}

/* Wait for the child to exit up to the deadline, draining events. */
static int wait_exit(it_broker *b, int64_t deadline)
{
	if (b->reaped)
		return 0;
	int pidfd = (int)syscall(SYS_pidfd_open, b->pid, 0);
	for (;;) {
		pid_t r = waitpid(b->pid, &b->wstatus, WNOHANG);
		if (r == b->pid) {
			b->reaped = true;
			break;
		}
		if (r < 0 && errno != EINTR) {
			if (pidfd >= 0)
				close(pidfd);
			return -errno;
		}
		int left = remaining_ms(deadline);
		if (left == 0) {
			if (pidfd >= 0)
				close(pidfd);
			return -ETIMEDOUT;
		}
		struct pollfd pfd[2];
		nfds_t n = 0;
		if (pidfd >= 0)
			pfd[n++] = (struct pollfd){ .fd = pidfd, .events = POLLIN };
		if (b->events_fd >= 0)
			pfd[n++] = (struct pollfd){ .fd = b->events_fd, .events = POLLIN };
		/* Without a pidfd (old kernel) and after EOF, re-check often. */
		int step = pidfd >= 0 ? left : (left < 10 ? left : 10);
		if (poll(pfd, n, step) > 0 && b->events_fd >= 0)
			read_events(b, 0);
	}
	if (pidfd >= 0)
		close(pidfd);
	/* The pipe closes with the process; read what is left. */
	while (b->events_fd >= 0 && read_events(b, remaining_ms(deadline)) != -ETIMEDOUT)
		;
	return 0;
}

int it_broker_stop(it_broker *b, uint32_t timeout_ms, int *wstatus)
{
	int64_t deadline = now_ms() + timeout_ms;
	if (!b->reaped)
		kill(b->pid, SIGTERM);
	int rc = wait_exit(b, deadline);
	if (rc == -ETIMEDOUT) {
		fprintf(stderr, "itutil: broker %d did not stop in %u ms; killing\n",
			(int)b->pid, timeout_ms);
		kill(b->pid, SIGKILL);
		waitpid(b->pid, &b->wstatus, 0);
		b->reaped = true;
	}
	if (wstatus != NULL)
		*wstatus = b->wstatus;
	return rc;
}

int it_broker_wait_exit(it_broker *b, uint32_t timeout_ms, int *wstatus)
{
	int rc = wait_exit(b, now_ms() + timeout_ms);
	if (rc == 0 && wstatus != NULL)
		*wstatus = b->wstatus;
	return rc;
}

void it_broker_free(it_broker *b)
{
	if (b == NULL)
		return;
	if (b->pid > 0 && !b->reaped) {
		kill(b->pid, SIGKILL);
		waitpid(b->pid, &b->wstatus, 0);
	}
	if (b->events_fd >= 0)
		close(b->events_fd);
	for (size_t i = 0; i < b->events_count; i++)
		json_decref(b->events[i]);
	keel_free(b->events);
	keel_free(b->line);
	if (b->dir[0] != '\0' && strstr(b->dir, "keel-it-") != NULL && access(b->dir, F_OK) == 0)
		nftw(b->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	keel_free(b);
}

uint16_t it_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	uint16_t port = 0;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

char *it_tmpdir_make(const char *tag)
{
	char *d = keel_malloc(IT_PATH_MAX);
	if (d == NULL)
		return NULL;
	const char *tmp = getenv("TMPDIR");
	snprintf(d, IT_PATH_MAX, "%s/keel-it-%s-XXXXXX", tmp != NULL ? tmp : "/tmp", tag);
	if (mkdtemp(d) == NULL) {
		keel_free(d);
		return NULL;
	}
	return d;
}

void it_tmpdir_remove(char *dir)
{
	if (dir == NULL)
		return;
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	keel_free(dir);
}
