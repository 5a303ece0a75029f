/*
 * zknode.c - `keel-harness zookeeper-node NAME HOST PORT ZOO.CFG`: a
 * scenario's ZooKeeper node (scenarios/README.md "ZooKeeper nodes").  It
 * forks a probe, then execs Debian's server (java QuorumPeerMain ZOO.CFG),
 * so the node's pid is the server's own: stop, kill, pause and resume
 * reach it.  The probe asks HOST:PORT `srvr` (a four-letter word) until
 * the server says it serves (a "Mode:" line: standalone, leader or
 * follower), writes one event `zookeeper.ready` on fd 3 (the node's
 * events pipe) and exits (reaped by the kernel: SIGCHLD ignored); it gives up after KH_ZK_READY_MAX_MS and dies
 * with the server (PR_SET_PDEATHSIG).  Before the exec it removes a
 * transaction log left without its header by a kill (ZOOKEEPER-2332).
 * Runs in the node's process only.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "kh_limits.h"

/* Debian's server (package zookeeper, pulled in by zookeeperd) and a
 * logger that writes its log to stderr (recorded as the node's output). */
#define KH_ZK_JAR "/usr/share/java/zookeeper.jar"
#define KH_ZK_LOG_JAR "/usr/share/java/slf4j-simple.jar"

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Does the server at host:port serve (srvr answers with a Mode line)? */
static int serving(const char *host, unsigned port, char *mode, size_t modelen)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	char buf[2048];
	size_t n = 0;
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
		return -EINVAL;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int rc = -EAGAIN;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && write(fd, "srvr", 4) == 4) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		while (n < sizeof(buf) - 1 && poll(&p, 1, 1000) == 1) {
			ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
			if (r <= 0)
				break;
			n += (size_t)r;
		}
		buf[n] = '\0';
		const char *m = strstr(buf, "Mode: ");
		if (m) {
			size_t k = strcspn(m + 6, "\r\n");
			snprintf(mode, modelen, "%.*s", (int)k, m + 6);
			rc = 0;
		}
	}
	close(fd);
	return rc;
}

static void probe(const char *name, const char *host, unsigned port)
{
	char mode[64] = "";
	int64_t t0 = mono_ns();
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	while (serving(host, port, mode, sizeof(mode)) != 0) {
		if (mono_ns() - t0 > (int64_t)KH_ZK_READY_MAX_MS * 1000000)
			_exit(1);
		poll(NULL, 0, KH_ZK_PROBE_MS); /* between two looks at the condition */
	}
	time_t now = time(NULL);
	struct tm tm;
	char ts[40];
	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	dprintf(3,
		"{\"ts\":\"%s\",\"mono_ns\":%lld,\"node\":\"%s\",\"seq\":1,\"type\":"
		"\"zookeeper.ready\",\"host\":\"%s\",\"port\":%u,\"mode\":\"%s\",\"ms\":%lld}\n",
		ts, (long long)mono_ns(), name, host, port, mode,
		(long long)((mono_ns() - t0) / 1000000));
	_exit(0);
}

/* ZOOKEEPER-2332 (fixed upstream in 2024, not in Debian's 3.8.0): a
 * server killed right after it created a transaction log, before the
 * log's 16-byte header reached the disk, never starts again
 * (EOFException in FileHeader.deserialize).  Such a file holds no
 * transaction; like the upstream fix, the newest log is removed when it
 * is shorter than its header, so a `kill` then `start` of a ZooKeeper
 * node works as it does with a fixed server. */
static void drop_headless_log(const char *cfg)
{
	char dir[4200], path[4500], best[256] = "";
	unsigned long long best_zxid = 0;
	const char *slash = strrchr(cfg, '/');
	snprintf(dir, sizeof(dir), "%.*s/data/version-2", slash ? (int)(slash - cfg) : 1,
		 slash ? cfg : ".");
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		char *end;
		if (strncmp(e->d_name, "log.", 4) != 0)
			continue;
		unsigned long long z = strtoull(e->d_name + 4, &end, 16);
		if (*end == '\0' && (best[0] == '\0' || z > best_zxid)) {
			best_zxid = z;
			snprintf(best, sizeof(best), "%s", e->d_name);
		}
	}
	closedir(d);
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", dir, best);
	if (best[0] && stat(path, &st) == 0 && st.st_size < 16 && unlink(path) == 0)
		fprintf(stderr, "keel-harness zookeeper-node: removed %s (%lld bytes, no header: "
			"ZOOKEEPER-2332)\n", path, (long long)st.st_size);
}

int kh_cmd_zookeeper_node(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "keel-harness zookeeper-node NAME HOST PORT ZOO.CFG\n");
		return 2;
	}
	unsigned port = (unsigned)strtoul(argv[3], NULL, 10);
	drop_headless_log(argv[4]);
	/* The probe ends before the server: SIGCHLD ignored (kept across
	 * exec, and the JVM leaves it) makes the kernel reap it, so no zombie
	 * is left for the scenario's leak check. */
	signal(SIGCHLD, SIG_IGN);
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "keel-harness zookeeper-node: fork: %s\n", strerror(errno));
		return 1;
	}
	if (pid == 0)
		probe(argv[1], argv[2], port);
	close(3); /* the probe writes the events; the server has none */
	char cp[512];
	snprintf(cp, sizeof(cp), "%s:%s", KH_ZK_JAR, KH_ZK_LOG_JAR);
	execlp("java", "java", "-Xmx128m", "-cp", cp,
	       "org.apache.zookeeper.server.quorum.QuorumPeerMain", argv[4], (char *)NULL);
	fprintf(stderr, "keel-harness zookeeper-node: java: %s (apt-get install zookeeperd: "
		"ci/setup.sh)\n", strerror(errno));
	return 127;
}
