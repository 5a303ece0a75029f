/*
 * runner_leaks.c - what a scenario left behind (runner_leaks.h): processes
 * of its child's group and their listening sockets on its addresses, and
 * the child's own leak report, recorded as `leaks` rows of node
 * keel-harness.  Reads /proc and the child's output; owns nothing.  Main
 * thread (the runner's).
 */
#include "runner_leaks.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kh_limits.h"
#include "lc_check.h"

/* ---- what a scenario left behind ---------------------------------------- */

/* A listening TCP socket on one of the scenario's addresses. */
typedef struct listen_sock {
	unsigned long inode;
	char local[64];         /* 127.77.s.n:port */
} listen_sock;

/* Listening sockets on 127.77.<addr>.* (at most `max`): /proc/net/tcp
 * prints the address as a host-order word of the network-order bytes
 * (x86: 127.77.s.n reads n.s.77.127). */
static size_t listening_on(unsigned addr, listen_sock *out, size_t max)
{
	char line[512];
	size_t n = 0;
	FILE *f = fopen("/proc/net/tcp", "r");
	while (f && n < max && fgets(line, sizeof(line), f)) {
		unsigned a, port, st;
		unsigned long inode;
		unsigned char b[4];
		if (sscanf(line, " %*u: %8X:%4X %*8X:%*4X %2X %*X:%*X %*X:%*X %*X %*u %*u %lu", &a,
			   &port, &st, &inode) != 4 || st != 0x0A)
			continue;
		memcpy(b, &a, 4);
		if (b[0] != 127 || b[1] != 77 || b[2] != addr)
			continue;
		out[n].inode = inode;
		snprintf(out[n].local, sizeof(out[n].local), "127.77.%u.%u:%u", b[2], b[3], port);
		n++;
	}
	if (f)
		fclose(f);
	return n;
}

/* After the child exited by itself (it kills and waits for its nodes),
 * nothing of its process group may remain: each process is recorded as a
 * CHILD leak and each listening socket one of them holds on the
 * scenario's addresses as a LISTEN leak (node "keel-harness", the report
 * line format of leakcheck/README.md), so the no-leaks check fails the
 * scenario.  Sockets are matched to the group's processes by inode, so a
 * concurrent run that drew the same address slot is not blamed.  The
 * runner kills the group right after. */
void kh_runner_group_leaks(kh_recorder *rec, const kh_job *j, unsigned addr, int child_pid)
{
	listen_sock socks[32];
	size_t nsocks = listening_on(addr, socks, sizeof(socks) / sizeof(socks[0]));
	DIR *d = opendir("/proc");
	struct dirent *de;
	char line[1024], path[96];
	while (d && (de = readdir(d)) != NULL) {
		char stat[512], *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 0 || pid == child_pid)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		size_t n = fread(stat, 1, sizeof(stat) - 1, f);
		fclose(f);
		stat[n] = '\0';
		char *open = strchr(stat, '('), *close = strrchr(stat, ')');
		char state;
		int ppid, pgrp;
		if (!open || !close || sscanf(close + 1, " %c %d %d", &state, &ppid, &pgrp) != 3 ||
		    pgrp != child_pid)
			continue;
		*close = '\0';
		for (char *q = open + 1; *q; q++) {
			if (*q == ' ' || (unsigned char)*q < 0x20)
				*q = '_';
		}
		snprintf(line, sizeof(line), "LEAKED CHILD pid=%ld name=%s state=%c test=%s", pid,
			 open + 1, state, j->name);
		kh_recorder_leak(rec, j->scenario_id, "keel-harness", "CHILD", open + 1, line);
		if (nsocks == 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
		DIR *fds = opendir(path);
		struct dirent *fe;
		while (fds && (fe = readdir(fds)) != NULL) {
			char link[PATH_MAX], target[64];
			unsigned long inode;
			snprintf(link, sizeof(link), "/proc/%ld/fd/%s", pid, fe->d_name);
			ssize_t len = readlink(link, target, sizeof(target) - 1);
			if (len <= 0)
				continue;
			target[len] = '\0';
			if (sscanf(target, "socket:[%lu]", &inode) != 1)
				continue;
			for (size_t k = 0; k < nsocks; k++) {
				if (socks[k].inode != inode)
					continue;
				snprintf(line, sizeof(line), "LEAKED LISTEN fd=%s proto=tcp local=%s "
					 "test=%s", fe->d_name, socks[k].local, j->name);
				kh_recorder_leak(rec, j->scenario_id, "keel-harness", "LISTEN",
						 socks[k].local, line);
			}
		}
		if (fds)
			closedir(fds);
	}
	if (d)
		closedir(d);
}

/* The value of `key=` in a LEAKED line into buf ("" when absent). */
static void leak_value(const char *line, const char *key, char *buf, size_t len)
{
	size_t kl = strlen(key);
	const char *p = line;
	buf[0] = '\0';
	while ((p = strstr(p, key)) != NULL) {
		if (p[-1] == ' ' && p[kl] == '=') {
			p += kl + 1;
			snprintf(buf, len, "%.*s", (int)strcspn(p, " "), p);
			return;
		}
		p += kl;
	}
}

/* The child exited with KH_CHILD_EXIT_LEAKED: the last leak report block
 * of its output (child.c: self_check) is what the child itself left
 * behind.  Each LEAKED line becomes a leak of node "keel-harness" (the
 * child cannot record them: its recorder's fd would itself count).
 * Writes the first line (without "LEAKED ") into `first`; returns the
 * number of LEAKED lines. */
unsigned kh_runner_child_leaks(kh_recorder *rec, const kh_job *j, char *first, size_t first_len)
{
	static const char *const kinds[][2] = {
		{ "THREAD", "name" }, { "FD", "target" }, { "CHILD", "name" }, { "LISTEN", "local" },
	};
	const char *p = j->output, *end = j->output + j->output_len, *block = NULL;
	unsigned count = 0;
	first[0] = '\0';
	/* The last block: the child prints its report at its very end. */
	while (p != NULL && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (n == strlen(LC_REPORT_BEGIN) && memcmp(p, LC_REPORT_BEGIN, n) == 0)
			block = nl ? nl + 1 : end;
		p = nl ? nl + 1 : NULL;
	}
	for (p = block; p != NULL && p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char line[1024], kind[16], name[256];
		snprintf(line, sizeof(line), "%.*s", (int)n, p);
		p = nl ? nl + 1 : NULL;
		if (strncmp(line, LC_REPORT_END, strlen(LC_REPORT_END)) == 0)
			break;
		if (strncmp(line, "LEAKED ", 7) != 0)
			continue;       /* a backtrace line */
		snprintf(kind, sizeof(kind), "%.*s", (int)strcspn(line + 7, " "), line + 7);
		for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
			if (strcmp(kind, kinds[k][0]) != 0)
				continue;
			if (count++ == 0) {
				/* truncated to fit: the reason names the first leak */
				size_t ln = strnlen(line + 7, first_len - 1);
				memcpy(first, line + 7, ln);
				first[ln] = '\0';
			}
			if (count > KH_MAX_CHILD_LEAKS)
				break;
			leak_value(line, kinds[k][1], name, sizeof(name));
			kh_recorder_leak(rec, j->scenario_id, "keel-harness", kind, name, line);
			break;
		}
	}
	return count;
}
