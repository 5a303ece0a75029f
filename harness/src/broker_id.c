/*
 * broker_id.c - the broker's identity (broker_id.h): `--version` run in a
 * process group of its own (killed afterwards, so a wrapper script that
 * leaves something behind leaves nothing), its output read with a
 * deadline; the build id read from the ELF program headers (PT_NOTE) of
 * the file itself.  Owns nothing past a call.  Main thread.
 */
#include "broker_id.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kh_limits.h"
#include "recorder.h"

extern char **environ;

static void read_version(const char *broker, char *out, size_t len)
{
	int fd[2];
	pid_t pid;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	char *argv[] = { (char *)broker, "--version", NULL };
	size_t n = 0;

	out[0] = '\0';
	if (len < 2 || pipe2(fd, O_CLOEXEC) != 0)
		return;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fd[1], STDOUT_FILENO);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	posix_spawnattr_init(&at);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
	posix_spawnattr_setpgroup(&at, 0);
	int rc = posix_spawn(&pid, broker, &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(fd[1]);
	if (rc != 0) {
		close(fd[0]);
		return;
	}
	int64_t deadline = kh_now_ns() + (int64_t)KH_BROKER_VERSION_TIMEOUT_MS * 1000000;
	while (n < len - 1 && memchr(out, '\n', n) == NULL) {
		int64_t left_ms = (deadline - kh_now_ns()) / 1000000;
		struct pollfd p = { .fd = fd[0], .events = POLLIN };
		if (left_ms <= 0 || poll(&p, 1, (int)left_ms) <= 0)
			break;
		ssize_t r = read(fd[0], out + n, len - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd[0]);
	kill(-pid, SIGKILL);
	waitpid(pid, NULL, 0);
	out[n] = '\0';
	out[strcspn(out, "\r\n")] = '\0';
}

int kh_elf_build_id(const char *path, char *buf, size_t len)
{
	Elf64_Ehdr eh;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = -ENOENT;
	buf[0] = '\0';
	if (fd < 0)
		return -errno;
	if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) ||
	    memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_phentsize != sizeof(Elf64_Phdr)) {
		rc = -EINVAL;
		goto out;
	}
	for (unsigned i = 0; i < eh.e_phnum && rc == -ENOENT; i++) {
		Elf64_Phdr ph;
		uint8_t notes[4096];
		if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * sizeof(ph))) !=
		    (ssize_t)sizeof(ph))
			break;
		if (ph.p_type != PT_NOTE)
			continue;
		size_t nl = ph.p_filesz < sizeof(notes) ? ph.p_filesz : sizeof(notes);
		if (pread(fd, notes, nl, (off_t)ph.p_offset) != (ssize_t)nl)
			continue;
		/* Each note: namesz, descsz, type, name (4-aligned), desc (4-aligned). */
		for (size_t o = 0; o + sizeof(Elf64_Nhdr) <= nl;) {
			Elf64_Nhdr nh;
			memcpy(&nh, notes + o, sizeof(nh));
			size_t name_o = o + sizeof(nh), desc_o = name_o + ((nh.n_namesz + 3) & ~3u);
			size_t next = desc_o + ((nh.n_descsz + 3) & ~3u);
			if (next > nl || next <= o)
				break;
			if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
			    memcmp(notes + name_o, "GNU", 4) == 0 && nh.n_descsz * 2 < len) {
				for (unsigned b = 0; b < nh.n_descsz; b++)
					snprintf(buf + 2 * b, 3, "%02x", notes[desc_o + b]);
				rc = 0;
				break;
			}
			o = next;
		}
	}
out:
	close(fd);
	return rc;
}

void kh_broker_identify(const char *broker, char *version, size_t vlen, char *build_id,
			size_t blen)
{
	read_version(broker, version, vlen);
	if (kh_elf_build_id(broker, build_id, blen) != 0)
		build_id[0] = '\0';
}
