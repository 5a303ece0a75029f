/*
 * runner.c - scheduling and isolation of scenario children (runner.h),
 * `run` and `lint`.  Owns the loop, one slot per running child (process
 * handle, two output pipes, a timeout timer, a loopback slot), and the
 * run's result list.  Invariant: a slot is free again only after its
 * child's process group was killed and its pipes closed.  Main thread.
 */
#include "cmd_opts.h"
#include "runner.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "keel/alloc.h"
#include "broker_id.h"
#include "child.h"
#include "deflake.h"
#include "history.h"
#include "runner_leaks.h"
#include "kh_limits.h"
#include "lc_check.h"
#include "output.h"
#include "progress.h"
#include "report_ci.h"
#include "scenario.h"
#include "sha256.h"
#include "checks.h"

typedef struct slot {
	struct exec *ex;
	kh_job *job;
	bool busy;
	unsigned addr;          /* 127.77.<addr>.x */
	char workdir[4096];
	uv_process_t proc;
	uv_pipe_t out[2];
	uv_timer_t timer;
	unsigned pending;       /* handles not yet closed */
	bool timed_out;
	bool interrupted;       /* killed because keel-harness got SIGINT/SIGTERM */
	bool exited;
	int64_t status;
	int signal;
	int pid;
	unsigned long long start_ticks; /* the child's start time (/proc/PID/stat) */
	int64_t t0_ns;
	size_t out_cap;
	char readbuf[16384];
} slot;

typedef struct exec {
	const kh_exec_opts *o;
	uv_loop_t loop;
	slot *slots;
	unsigned nslots;
	bool addr_busy[KH_ADDR_SLOTS + 1];
	int addr_fd[KH_ADDR_SLOTS + 1];    /* the slot's lock file (held), or -1 */
	unsigned addr_next;
	unsigned running;
	unsigned done;
	int err;
	uv_signal_t sig[2];     /* SIGINT, SIGTERM (unreferenced: they keep no loop alive) */
	int interrupted;        /* the signal that ended the run, or 0 */
} exec;

/* ---- helpers ----------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (remove(path) == 0 || errno == ENOENT)
		return 0;
	/* a node's disk-size tmpfs left mounted by a child that crashed or
	 * timed out (the child unmounts it itself when it ends) */
	if (errno == EBUSY && flag == FTW_DP && umount2(path, MNT_DETACH) == 0)
		return remove(path) == 0 ? 0 : -1;
	return -1;
}

int kh_rm_rf(const char *path)
{
	if (nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS) != 0)
		return errno ? -errno : -EIO;
	return 0;
}

uint64_t kh_scenario_seed(uint64_t run_seed, const char *name, unsigned iteration)
{
	/* FNV-1a over the name, mixed with splitmix64. */
	uint64_t h = 1469598103934665603ULL;
	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	uint64_t z = run_seed ^ h ^ ((uint64_t)iteration << 32);
	z += 0x9E3779B97F4A7C15ULL;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return (z ^ (z >> 31)) & INT64_MAX; /* SQLite integers are signed */
}

/* ---- the executor ------------------------------------------------------ */

/* Start time of process `pid` in clock ticks since boot (/proc/PID/stat
 * field 22), 0 when there is no such process. */
static unsigned long long start_ticks(int pid)
{
	char path[64], buf[1024];
	unsigned long long t = 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	/* after the name: state ppid pgrp session tty tpgid flags minflt
	 * cminflt majflt cmajflt utime stime cutime cstime priority nice
	 * num_threads itrealvalue starttime */
	if (p == NULL || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d"
				" %*d %*d %*d %*d %*d %llu", &t) != 1)
		return 0;
	return t;
}

/* Kills the child's process group -- unless its pid now names another
 * process (the child was reaped and the pid reused, by another run's
 * scenario child perhaps, whose group has that id: killing it would crash
 * a stranger). With no process of that pid the group is ours or empty. */
static void kill_group(slot *sl)
{
	if (sl->pid <= 0)
		return;
	unsigned long long now = start_ticks(sl->pid);
	if (now != 0 && now != sl->start_ticks)
		return;
	kill(-sl->pid, SIGKILL);
}

static void schedule(exec *ex);

/*
 * Address slots are shared by every keel-harness on the machine (parallel
 * CTest entries, two users' runs): a slot is ours while we hold an flock on
 * /tmp/keel-harness-slots/<n>.lock -- one machine-wide place, whatever each
 * run's TMPDIR (KEEL_HARNESS_SLOT_DIR overrides it).  The kernel drops the
 * lock if we die; the fd is close-on-exec, so scenario children do not
 * hold it.
 */
static int addr_lock(unsigned a)
{
	const char *d = getenv("KEEL_HARNESS_SLOT_DIR");
	char dir[512], path[600];
	snprintf(dir, sizeof(dir), "%s", d && *d ? d : "/tmp/keel-harness-slots");
	if (mkdir(dir, 0777) != 0 && errno != EEXIST)
		return -errno;
	snprintf(path, sizeof(path), "%s/%u.lock", dir, a);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static void addr_give(exec *ex, unsigned a)
{
	ex->addr_busy[a] = false;
	if (ex->addr_fd[a] >= 0)
		close(ex->addr_fd[a]);
	ex->addr_fd[a] = -1;
}

static unsigned addr_take(exec *ex)
{
	for (unsigned k = 0; k < KH_ADDR_SLOTS; k++) {
		unsigned a = (ex->addr_next + k) % KH_ADDR_SLOTS + 1;
		if (!ex->addr_busy[a]) {
			int fd = addr_lock(a);
			if (fd < 0)
				continue; /* another keel-harness has it */
			ex->addr_fd[a] = fd;
			ex->addr_busy[a] = true;
			ex->addr_next = a % KH_ADDR_SLOTS;
			return a;
		}
	}
	return 0;
}

/* SELECT helpers on the run's database. */
static bool db_text(sqlite3 *db, const char *sql, int64_t id, char *out, size_t len,
		    int ncols)
{
	sqlite3_stmt *s;
	bool found = false;
	out[0] = '\0';
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		return false;
	sqlite3_bind_int64(s, 1, id);
	if (sqlite3_step(s) == SQLITE_ROW) {
		size_t o = 0;
		found = true;
		for (int i = 0; i < ncols && o < len; i++) {
			const unsigned char *t = sqlite3_column_text(s, i);
			o += (size_t)snprintf(out + o, len - o, "%s%s", i ? " " : "",
					      t ? (const char *)t : "");
		}
	}
	sqlite3_finalize(s);
	return found;
}

static void decide(slot *sl)
{
	exec *ex = sl->ex;
	kh_job *j = sl->job;
	sqlite3 *db = kh_recorder_db(ex->o->rec);
	char verdict[32], step[1024];

	j->secs = (double)(kh_now_ns() - sl->t0_ns) / 1e9;
	/* The step that did not end, its line and how far it got. */
	bool has_step = kh_step_progress(db, j->scenario_id, step, sizeof(step));
	if (sl->interrupted) {
		j->outcome = "fail";
		snprintf(j->reason, sizeof(j->reason), "interrupted: keel-harness got %s%s%s",
			 ex->interrupted == SIGINT ? "SIGINT" : "SIGTERM", has_step ? " " : "",
			 has_step ? step : "");
	} else if (sl->timed_out) {
		j->outcome = "timeout";
		snprintf(j->reason, sizeof(j->reason), "timed out after %.3g s%s%s",
			 j->timeout_s * ex->o->timeout_multiplier, has_step ? " " : "",
			 has_step ? step : "");
	} else if (sl->signal) {
		j->outcome = "crash";
		snprintf(j->reason, sizeof(j->reason), "harness child killed by signal %d (%s)%s%s",
			 sl->signal, strsignal(sl->signal), has_step ? " " : "",
			 has_step ? step : "");
	} else if (sl->status == 0 || sl->status == 1) {
		db_text(db, "SELECT outcome FROM scenarios WHERE id = ?", j->scenario_id, verdict,
			sizeof(verdict), 1);
		db_text(db, "SELECT reason FROM scenarios WHERE id = ?", j->scenario_id, j->reason,
			sizeof(j->reason), 1);
		if (sl->status == 0 && strcmp(verdict, "pass") == 0) {
			j->outcome = "pass";
		} else {
			j->outcome = "fail";
			if (j->reason[0] == '\0')
				snprintf(j->reason, sizeof(j->reason), "failed (exit %" PRId64 ")",
					 sl->status);
		}
	} else if (sl->status == KH_CHILD_EXIT_LEAKED) {
		/* The scenario child left threads, fds or children of its own:
		 * a failure, after the scenario's own failure if it had one. */
		char first[768], failed[768], more[48] = "";
		unsigned n = kh_runner_child_leaks(ex->o->rec, j, first, sizeof(first));
		db_text(db, "SELECT reason FROM scenarios WHERE id = ? AND outcome = 'fail'",
			j->scenario_id, failed, sizeof(failed), 1);
		if (n > 1)
			snprintf(more, sizeof(more), " (and %u more)", n - 1);
		j->outcome = "fail";
		snprintf(j->reason, sizeof(j->reason), "%s%sharness child leaked: %s%s", failed,
			 failed[0] ? "; and the " : "", n ? first : "(no LEAKED line in its output)",
			 more);
	} else {
		j->outcome = "crash";
		snprintf(j->reason, sizeof(j->reason), "harness child exited with %" PRId64 "%s%s",
			 sl->status, has_step ? " " : "", has_step ? step : "");
	}
	int errs = kh_checks_run(db, j->scenario_id);
	if (errs < 0) {
		fprintf(stderr, "keel-harness: checks of %s: %s\n", j->name, strerror(-errs));
	} else if (errs > 0 && strcmp(j->outcome, "pass") == 0) {
		char first[1024];
		j->outcome = "fail";
		db_text(db, "SELECT check_name || ': ' || message FROM findings WHERE "
			    "scenario_id = ? AND severity = 'error' ORDER BY id LIMIT 1",
			j->scenario_id, first, sizeof(first), 1);
		snprintf(j->reason, sizeof(j->reason), "%d check(s) failed; first: %s", errs,
			 first);
	}
	kh_recorder_scenario_end(ex->o->rec, j->scenario_id, kh_now_ns(), j->outcome, j->reason);
}

static void slot_closed(uv_handle_t *h)
{
	slot *sl = h->data;
	exec *ex = sl->ex;
	if (--sl->pending > 0)
		return;
	/* Nothing of this scenario may survive it. */
	kill_group(sl);
	decide(sl);
	if (!ex->o->keep_data && sl->workdir[0]) {
		int rc = kh_rm_rf(sl->workdir);
		if (rc)
			fprintf(stderr, "keel-harness: cannot remove %s: %s\n", sl->workdir,
				strerror(-rc));
	}
	addr_give(ex, sl->addr);
	sl->busy = false;
	ex->running--;
	ex->done++;
	ex->o->done(sl->job, ex->o->ud);
	schedule(ex);
}

static void on_child_exit(uv_process_t *p, int64_t status, int signum)
{
	slot *sl = p->data;
	sl->exited = true;
	sl->status = status;
	sl->signal = signum;
	if (!sl->timed_out && signum == 0)
		kh_runner_group_leaks(sl->ex->o->rec, sl->job, sl->addr, sl->pid);
	/* Kill what the child left behind (nodes, helpers) with it. */
	kill_group(sl);
	uv_timer_stop(&sl->timer);
	uv_close((uv_handle_t *)&sl->timer, slot_closed);
	uv_close((uv_handle_t *)p, slot_closed);
}

static void on_timeout(uv_timer_t *t)
{
	slot *sl = t->data;
	sl->timed_out = true;
	kill_group(sl);
}

static void on_out_alloc(uv_handle_t *h, size_t s, uv_buf_t *buf)
{
	slot *sl = h->data;
	(void)s;
	buf->base = sl->readbuf;
	buf->len = sizeof(sl->readbuf);
}

static void on_out_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	slot *sl = st->data;
	kh_job *j = sl->job;
	if (n < 0) {
		uv_close((uv_handle_t *)st, slot_closed);
		return;
	}
	/* Keep the last KH_MAX_CHILD_OUTPUT bytes: the end says why. */
	size_t len = (size_t)n;
	const char *src = buf->base;
	if (j->output_len + len > sl->out_cap) {
		size_t cap = sl->out_cap ? sl->out_cap * 2 : 4096;
		while (cap < j->output_len + len && cap < KH_MAX_CHILD_OUTPUT)
			cap *= 2;
		if (cap > KH_MAX_CHILD_OUTPUT)
			cap = KH_MAX_CHILD_OUTPUT;
		if (cap != sl->out_cap) {
			char *o = keel_realloc(j->output, cap);
			if (o == NULL)
				return;
			j->output = o;
			sl->out_cap = cap;
		}
	}
	if (len > sl->out_cap) {
		src += len - sl->out_cap;
		len = sl->out_cap;
	}
	if (j->output_len + len > sl->out_cap) {
		size_t drop = j->output_len + len - sl->out_cap;
		memmove(j->output, j->output + drop, j->output_len - drop);
		j->output_len -= drop;
	}
	memcpy(j->output + j->output_len, src, len);
	j->output_len += len;
}

static int slot_start(exec *ex, slot *sl, kh_job *j)
{
	const kh_exec_opts *o = ex->o;
	char id[32], seed[32], addr[16], mult[32], address[32];
	int rc;

	sl->ex = ex;
	sl->job = j;
	sl->timed_out = sl->exited = sl->interrupted = false;
	sl->status = 0;
	sl->signal = 0;
	sl->out_cap = 0;
	sl->addr = addr_take(ex);
	if (sl->addr == 0)
		return -EAGAIN;
	sl->t0_ns = kh_now_ns();
	snprintf(address, sizeof(address), "127.77.%u.0/24", sl->addr);
	rc = kh_recorder_scenario_begin(o->rec, o->run_id, j->name, j->file, j->iteration, j->seed,
					address, sl->t0_ns, &j->scenario_id);
	/* The child runs exactly this text (replay: the recorded one). */
	if (rc == 0 && j->text)
		rc = kh_recorder_scenario_text(o->rec, j->scenario_id, j->text, j->text_len,
					       j->sha256);
	if (rc == 0 && j->attempt > 0)
		rc = kh_recorder_scenario_attempt(o->rec, j->scenario_id, j->attempt);
	if (rc)
		goto fail_addr;
	snprintf(sl->workdir, sizeof(sl->workdir), "%s/%" PRId64 "-%s", o->workroot,
		 j->scenario_id, j->name);
	if (mkdir(sl->workdir, 0755) != 0) {
		rc = -errno;
		goto fail_addr;
	}
	snprintf(id, sizeof(id), "%" PRId64, j->scenario_id);
	snprintf(seed, sizeof(seed), "%" PRIu64, j->seed);
	snprintf(addr, sizeof(addr), "%u", sl->addr);
	snprintf(mult, sizeof(mult), "%g", o->timeout_multiplier);
	const char *args[32] = {
		o->self_exe, "scenario-child", "--db", o->db_path, "--scenario-id", id,
		"--file", j->file, "--seed", seed, "--slot", addr, "--workdir", sl->workdir,
		"--broker", o->broker, "--self", o->self_exe, "--timeout-multiplier", mult,
	};
	unsigned na = 20;
	char sched_id[32];
	if (j->schedule_db) { /* replay: the recorded chaos schedule */
		snprintf(sched_id, sizeof(sched_id), "%" PRId64, j->schedule_id);
		args[na++] = "--schedule-db";
		args[na++] = j->schedule_db;
		args[na++] = "--schedule-id";
		args[na++] = sched_id;
	}
	if (o->allow_test_steps)
		args[na++] = "--allow-test-steps";
	if (o->valgrind) {
		args[na++] = "--valgrind";
		args[na++] = o->valgrind;
		args[na++] = "--keel-leaks";
		args[na++] = o->keel_leaks;
		if (o->valgrind_supp) {
			args[na++] = "--valgrind-supp";
			args[na++] = o->valgrind_supp;
		}
	}
	args[na] = NULL;
	assert(na < sizeof(args) / sizeof(args[0]));
	uv_stdio_container_t stdio[3];
	uv_process_options_t po = { 0 };
	stdio[0].flags = UV_IGNORE;
	for (int i = 0; i < 2; i++) {
		uv_pipe_init(&ex->loop, &sl->out[i], 0);
		sl->out[i].data = sl;
		stdio[i + 1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
		stdio[i + 1].data.stream = (uv_stream_t *)&sl->out[i];
	}
	uv_timer_init(&ex->loop, &sl->timer);
	sl->timer.data = sl;
	sl->proc.data = sl;
	po.file = o->self_exe;
	po.args = (char **)args;
	po.stdio = stdio;
	po.stdio_count = 3;
	po.exit_cb = on_child_exit;
	/* setsid(): its own session and process group, killed as one. */
	po.flags = UV_PROCESS_DETACHED;
	sl->busy = true;
	sl->pending = 4;
	rc = uv_spawn(&ex->loop, &sl->proc, &po);
	if (rc) {
		snprintf(j->reason, sizeof(j->reason), "cannot spawn the scenario child: %s",
			 uv_strerror(rc));
		sl->pid = 0;
		sl->exited = true;
		sl->status = 2;
		uv_close((uv_handle_t *)&sl->proc, slot_closed);
		uv_close((uv_handle_t *)&sl->timer, slot_closed);
		uv_close((uv_handle_t *)&sl->out[0], slot_closed);
		uv_close((uv_handle_t *)&sl->out[1], slot_closed);
		ex->running++;
		return 0;
	}
	sl->pid = sl->proc.pid;
	sl->start_ticks = start_ticks(sl->pid);
	ex->running++;
	uv_read_start((uv_stream_t *)&sl->out[0], on_out_alloc, on_out_read);
	uv_read_start((uv_stream_t *)&sl->out[1], on_out_alloc, on_out_read);
	uv_timer_start(&sl->timer, on_timeout,
		       (uint64_t)(j->timeout_s * o->timeout_multiplier * 1000.0), 0);
	return 0;

fail_addr:
	addr_give(ex, sl->addr);
	return rc;
}

static void progress(exec *ex)
{
	if (!ex->o->progress)
		return;
	printf("\r\033[K[%u done, %u running]", ex->done, ex->running);
	for (unsigned i = 0; i < ex->nslots; i++) {
		if (ex->slots[i].busy)
			printf(" %s", ex->slots[i].job->name);
	}
	fflush(stdout);
}

static void schedule(exec *ex)
{
	while (ex->err == 0 && !ex->interrupted && ex->running < ex->nslots) {
		kh_job *j = ex->o->next(ex->o->ud);
		if (j == NULL)
			break;  /* asked again when a job ends: a retry may come */
		slot *sl = NULL;
		for (unsigned i = 0; i < ex->nslots; i++) {
			if (!ex->slots[i].busy) {
				sl = &ex->slots[i];
				break;
			}
		}
		int rc = slot_start(ex, sl, j);
		if (rc) {
			fprintf(stderr, "keel-harness: cannot start %s: %s\n", j->name,
				strerror(-rc));
			ex->err = rc;
		}
	}
	progress(ex);
}

/* SIGINT or SIGTERM (a user's ^C, a CI job cancelled): every running
 * scenario's group is killed now (its nodes with it) and recorded as
 * interrupted, none is started after; the command then reports what ran.
 * The handlers go at once, so a second signal ends keel-harness as the
 * default action does (its scenario children die with it: PDEATHSIG). */
static void on_interrupt(uv_signal_t *h, int signum)
{
	exec *ex = h->data;
	ex->interrupted = signum;
	for (int i = 0; i < 2; i++)
		uv_signal_stop(&ex->sig[i]);
	fprintf(stderr, "\nkeel-harness: %s: ending %u running scenario(s) and their nodes; "
			"starting no more\n", signum == SIGINT ? "SIGINT" : "SIGTERM", ex->running);
	for (unsigned i = 0; i < ex->nslots; i++) {
		slot *sl = &ex->slots[i];
		if (sl->busy && !sl->exited) {
			sl->interrupted = true;
			kill_group(sl);
		}
	}
}

int kh_runner_exec(const kh_exec_opts *o)
{
	exec ex = { .o = o };
	int rc;
	ex.nslots = o->jobs ? o->jobs : 1;
	ex.slots = keel_calloc(ex.nslots, sizeof(*ex.slots));
	if (ex.slots == NULL)
		return -ENOMEM;
	srand((unsigned)getpid());
	ex.addr_next = (unsigned)rand() % KH_ADDR_SLOTS;
	for (unsigned a = 0; a <= KH_ADDR_SLOTS; a++)
		ex.addr_fd[a] = -1;
	uv_loop_init(&ex.loop);
	const int signums[2] = { SIGINT, SIGTERM };
	for (int i = 0; i < 2; i++) {
		uv_signal_init(&ex.loop, &ex.sig[i]);
		ex.sig[i].data = &ex;
		uv_signal_start(&ex.sig[i], on_interrupt, signums[i]);
		uv_unref((uv_handle_t *)&ex.sig[i]);
	}
	schedule(&ex);
	uv_run(&ex.loop, UV_RUN_DEFAULT);
	for (int i = 0; i < 2; i++)
		uv_close((uv_handle_t *)&ex.sig[i], NULL);
	uv_run(&ex.loop, UV_RUN_DEFAULT); /* their close callbacks */
	if (o->progress) {
		printf("\r\033[K");
		fflush(stdout);
	}
	rc = uv_loop_close(&ex.loop);
	(void)rc;
	keel_free(ex.slots);
	return ex.err ? ex.err : ex.interrupted ? -EINTR : 0;
}

/* ---- scenario lists ---------------------------------------------------- */

typedef struct file_list {
	char **v;
	size_t n;
	size_t cap;
} file_list;

static int list_add(file_list *l, const char *path)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **v = keel_realloc(l->v, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n] = keel_strdup(path);
	return l->v[l->n] ? (int)(l->n++, 0) : -ENOMEM;
}

static void list_free(file_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		keel_free(l->v[i]);
	keel_free(l->v);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool yaml_name(const char *n)
{
	size_t len = strlen(n);
	return (len > 5 && strcmp(n + len - 5, ".yaml") == 0) ||
	       (len > 4 && strcmp(n + len - 4, ".yml") == 0);
}

/* Files given, and *.yaml directly in directories given, sorted per dir. */
static int collect(file_list *l, char **paths, int n)
{
	for (int i = 0; i < n; i++) {
		struct stat st;
		if (stat(paths[i], &st) != 0) {
			fprintf(stderr, "keel-harness: %s: %s\n", paths[i], strerror(errno));
			return -ENOENT;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (list_add(l, paths[i]))
				return -ENOMEM;
			continue;
		}
		DIR *d = opendir(paths[i]);
		if (d == NULL)
			return -errno;
		size_t first = l->n;
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			char p[PATH_MAX];
			if (e->d_name[0] == '.' || !yaml_name(e->d_name))
				continue;
			snprintf(p, sizeof(p), "%s/%s", paths[i], e->d_name);
			if (list_add(l, p)) {
				closedir(d);
				return -ENOMEM;
			}
		}
		closedir(d);
		qsort(l->v + first, l->n - first, sizeof(*l->v), cmp_str);
	}
	return 0;
}

static bool env_allows_test_steps(void)
{
	const char *e = getenv("KH_ALLOW_TEST_STEPS");
	return e && strcmp(e, "1") == 0;
}

/* Lints one file: its text, loaded and checked; every error, then every
 * warning, on stderr.  0 and *s, *text (keel_malloc), *len; -errno. */
static int lint_file(const char *path, bool allow, kh_scenario **s, char **text, size_t *len)
{
	char err[KH_LINT_ERR_BYTES];
	int rc = kh_scenario_read_file(path, text, len, err, sizeof(err));
	if (rc == 0)
		rc = kh_scenario_load_data(path, *text, *len, allow, s, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "%s\n", err);
		keel_free(*text);
		*text = NULL;
		return rc;
	}
	if (kh_scenario_warnings(*s))
		fprintf(stderr, "%s", kh_scenario_warnings(*s));
	return 0;
}

/* `run --shard K/N` that got no scenario (more shards than scenarios):
 * not an error -- a note, an empty JUnit file or TAP plan when asked. */
static int empty_shard(unsigned k, unsigned n, unsigned selected, bool tap, const char *junit)
{
	printf("%skeel-harness: shard %u/%u has no scenario (%u selected for %u shards); "
	       "nothing to run\n", tap ? "1..0 # SKIP " : "", k, n, selected, n);
	int rc = junit ? kh_out_junit(junit, NULL, 0, 0) : 0;
	if (rc != 0) {
		fprintf(stderr, "keel-harness: %s: %s\n", junit, strerror(-rc));
		return 2;
	}
	return 0;
}

int kh_cmd_lint(int argc, char **argv)
{
	bool allow = env_allows_test_steps();
	file_list files = { 0 };
	unsigned bad = 0;
	int ch;
	static const struct option longopts[] = {
		{ "allow-test-steps", no_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 't': allow = true; break;
		case 'h':
			printf("usage: keel-harness lint [--allow-test-steps] FILE|DIR...\n");
			return 0;
		default: return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "usage: keel-harness lint [--allow-test-steps] FILE|DIR...\n");
		return 2;
	}
	if (collect(&files, argv + optind, argc - optind) != 0) {
		list_free(&files);
		return 2;
	}
	for (size_t i = 0; i < files.n; i++) {
		kh_scenario *s = NULL;
		char *text = NULL;
		size_t len;
		if (lint_file(files.v[i], allow, &s, &text, &len) != 0)
			bad++;
		kh_scenario_free(s);
		keel_free(text);
	}
	printf("lint: %zu file(s), %zu OK, %u with errors\n", files.n, files.n - bad, bad);
	list_free(&files);
	return bad ? 2 : 0;
}

/* ---- run --------------------------------------------------------------- */

typedef struct run_state {
	kh_scenario **sc;       /* selected scenarios */
	char **files;           /* their absolute paths */
	char **texts;           /* their texts as linted (what runs) */
	size_t *text_lens;
	char (*sha256)[KH_SHA256_HEX_LEN];
	size_t nsc;
	unsigned repeat;        /* 0 = unlimited (until-failure) */
	bool until_failure;
	uint64_t seed;
	unsigned next_sc;
	unsigned next_iter;
	bool stop;              /* a failure with --until-failure */
	kh_job **results;
	size_t nresults;
	size_t capresults;
	unsigned passed;
	unsigned failed;
	unsigned flaky;         /* --deflake: failed, then a retry passed */
	kh_deflake df;          /* --deflake N: retries */
	bool tap;
	bool tty;
} run_state;

static bool results_room(run_state *rs)
{
	if (rs->nresults < rs->capresults)
		return true;
	size_t cap = rs->capresults ? rs->capresults * 2 : 32;
	kh_job **r = keel_realloc(rs->results, cap * sizeof(*r));
	if (r == NULL)
		return false;
	rs->results = r;
	rs->capresults = cap;
	return true;
}

static kh_job *run_next(void *ud)
{
	run_state *rs = ud;
	if (rs->stop || rs->nsc == 0 || !results_room(rs))
		return NULL;
	kh_job *j = kh_deflake_next(&rs->df); /* retries first */
	if (j != NULL) {
		rs->results[rs->nresults++] = j;
		return j;
	}
	/* asked again after it said none: the answer stays none */
	if (rs->next_sc == rs->nsc) {
		if (rs->repeat && rs->next_iter + 1 >= rs->repeat)
			return NULL;
		rs->next_sc = 0;
		rs->next_iter++;
	}
	if (rs->repeat && rs->next_iter >= rs->repeat)
		return NULL;
	j = keel_calloc(1, sizeof(*j));
	if (j == NULL)
		return NULL;
	const kh_scenario *s = rs->sc[rs->next_sc];
	j->file = keel_strdup(rs->files[rs->next_sc]);
	j->name = keel_strdup(s->name);
	if (j->file == NULL || j->name == NULL) {
		keel_free(j->file);
		keel_free(j->name);
		keel_free(j);
		return NULL;
	}
	j->iteration = rs->next_iter;
	j->seed = kh_scenario_seed(rs->seed, s->name, rs->next_iter);
	j->timeout_s = s->timeout_s;
	j->text = rs->texts[rs->next_sc];
	j->text_len = rs->text_lens[rs->next_sc];
	memcpy(j->sha256, rs->sha256[rs->next_sc], sizeof(j->sha256));
	j->outcome = "pass";
	rs->results[rs->nresults++] = j;
	rs->next_sc++;
	return j;
}

static void run_done(kh_job *j, void *ud)
{
	run_state *rs = ud;
	kh_deflake_verdict v;
	if (kh_deflake_done(&rs->df, j, &v) != 0)
		fprintf(stderr, "keel-harness: no memory for a retry of %s\n", j->name);
	if (v == KH_DF_PASS)
		rs->passed++;
	else if (v == KH_DF_FLAKY)
		rs->flaky++;
	else if (v == KH_DF_FAIL)
		rs->failed++;
	if (v == KH_DF_FAIL && rs->until_failure)
		rs->stop = true;
	if (rs->tty)
		printf("\r\033[K");
	kh_deflake_print(stdout, rs->tap, rs->passed + rs->failed + rs->flaky, j, v, &rs->df);
	fflush(stdout);
}

static void run_usage(FILE *f)
{
	fprintf(f,
		"usage: keel-harness run [options] [FILE|DIR...]   (default: scenarios/)\n"
		"  -j N                    run N scenarios in parallel (default 1)\n"
		"  --filter GLOB           only scenarios whose name matches\n"
		"  --shard K/N             only the K-th of N shards (1-based)\n"
		"  --repeat N              run each scenario N times\n"
		"  --until-failure         repeat until one fails (at most --repeat times)\n"
		"  --seed S                the run's seed (default: random, recorded)\n"
		"  --timeout-multiplier F  scale every timeout and deadline\n"
		"  --db FILE               recording (default runs/<timestamp>.db + runs/latest.db)\n"
		"  --junit FILE            write JUnit XML\n"
		"  --tap                   TAP on stdout instead of the console lines\n"
		"  --keep-data             keep the scenarios' data directories\n"
		"  --broker PATH           keel-broker (default: the one built next to this)\n"
		"  --allow-test-steps      admit test-only steps (crash); env KH_ALLOW_TEST_STEPS=1\n"
		"  --valgrind[=TOOL]       nodes under Valgrind (memcheck default, helgrind, drd);\n"
		"                          every error fails the scenario; timeouts x%g\n"
		"  --valgrind-supp FILE    suppressions (default leakcheck/valgrind.supp)\n"
		"  --keel-leaks PATH       keel-leaks (default: the one built next to this)\n"
		"  --deflake N             run a failed scenario again (seed pinned) up to N times:\n"
		"                          flaky if a retry passes, fail if none does\n"
		"  --balance history       with --shard: shards balanced by past durations\n"
		"  --history FILE          the history this run is added to (default %s)\n"
		"  --no-history            add nothing to the history\n",
		KH_VALGRIND_TIMEOUT_FACTOR, KH_HISTORY_DEFAULT);
}

/* Is `prog` an executable in PATH? */
static bool in_path(const char *prog)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];
	while (path && *path) {
		size_t n = strcspn(path, ":");
		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, prog);
		if (n > 0 && access(buf, X_OK) == 0)
			return true;
		path += n + (path[n] == ':');
	}
	return false;
}

static uint64_t random_seed(void)
{
	uint64_t s = 0;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, &s, sizeof(s)) != (ssize_t)sizeof(s))
			s = 0;
		close(fd);
	}
	if (s == 0)
		s = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	return s & INT64_MAX;
}

/* --balance history: keeps the scenarios the plan (history.h) gives shard
 * k of n, longest first; the plan's hash into plan (recorded: every shard
 * of a run must have the same).  0 or -errno. */
static int balance_shard(run_state *rs, const char *history, unsigned k, unsigned n,
			 char plan[KH_SHA256_HEX_LEN])
{
	const char **names = keel_calloc(rs->nsc + 1, sizeof(*names));
	double *secs = keel_calloc(rs->nsc + 1, sizeof(*secs));
	double *load = keel_calloc(n, sizeof(*load));
	unsigned *shard = keel_calloc(rs->nsc + 1, sizeof(*shard));
	char *text = keel_calloc(rs->nsc + 1, KH_MAX_SCENARIO_NAME_LEN + 16);
	int rc = -ENOMEM, known;
	if (!names || !secs || !load || !shard || !text)
		goto out;
	for (size_t i = 0; i < rs->nsc; i++)
		names[i] = rs->sc[i]->name;
	if ((known = kh_history_expected(history, names, rs->nsc, secs)) < 0) {
		rc = known;
		goto out;
	}
	kh_balance_assign(names, secs, rs->nsc, n, shard, load);
	size_t kept = 0, o = 0;
	double total = 0;
	for (size_t i = 0; i < rs->nsc; i++) {
		total += secs[i];
		o += (size_t)sprintf(text + o, "%s=%u\n", names[i], shard[i] + 1);
		if (shard[i] != k - 1) {
			kh_scenario_free(rs->sc[i]);
			keel_free(rs->files[i]);
			keel_free(rs->texts[i]);
			continue;
		}
		rs->sc[kept] = rs->sc[i];
		rs->files[kept] = rs->files[i];
		rs->texts[kept] = rs->texts[i];
		rs->text_lens[kept] = rs->text_lens[i];
		memcpy(rs->sha256[kept], rs->sha256[i], sizeof(rs->sha256[i]));
		kept++;
	}
	kh_sha256_hex(text, o, plan);
	printf("keel-harness: shard %u/%u balanced by %s (%d of %zu scenarios known): %zu "
	       "scenario(s), about %.0f s of %.0f s; plan %.12s\n", k, n, history, known,
	       rs->nsc, kept, load[k - 1], total, plan);
	rs->nsc = kept;
	rc = 0;
out:
	if (rc == -ENOMEM)
		fprintf(stderr, "keel-harness: --balance: out of memory\n");
	keel_free(names);
	keel_free(secs);
	keel_free(load);
	keel_free(shard);
	keel_free(text);
	return rc;
}

/* --junit: under --deflake from the recording (attempts folded into one
 * testcase each, report_ci.c), else from the jobs (with their output). */
static int write_junit(const char *path, run_state *rs, kh_recorder *rec, int64_t run_id,
		       double total)
{
	if (rs->df.max == 0)
		return kh_out_junit(path, rs->results, rs->nresults, total);
	int64_t *ids = keel_calloc(rs->nresults + 1, sizeof(*ids));
	unsigned bad;
	(void)run_id;
	if (ids == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < rs->nresults; i++)
		ids[i] = rs->results[i]->scenario_id;
	int rc = kh_report_junit(kh_recorder_db(rec), ids, rs->nresults, path, &bad);
	keel_free(ids);
	return rc;
}

int kh_cmd_run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "filter", required_argument, NULL, 'F' },
		{ "shard", required_argument, NULL, 'S' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "until-failure", no_argument, NULL, 'u' },
		{ "seed", required_argument, NULL, 's' },
		{ "timeout-multiplier", required_argument, NULL, 'm' },
		{ "db", required_argument, NULL, 'd' },
		{ "junit", required_argument, NULL, 'J' },
		{ "tap", no_argument, NULL, 'T' },
		{ "keep-data", no_argument, NULL, 'k' },
		{ "broker", required_argument, NULL, 'b' },
		{ "allow-test-steps", no_argument, NULL, 't' },
		{ "valgrind", optional_argument, NULL, 'V' },
		{ "valgrind-supp", required_argument, NULL, 'U' },
		{ "keel-leaks", required_argument, NULL, 'L' },
		{ "deflake", required_argument, NULL, 'D' },
		{ "balance", required_argument, NULL, 'B' },
		{ "history", required_argument, NULL, 'H' },
		{ "no-history", no_argument, NULL, 'N' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *filter = NULL, *db_opt = NULL, *junit = NULL, *broker_opt = NULL;
	const char *history = KH_HISTORY_DEFAULT;
	bool balance = false, no_history = false;
	char plan[KH_SHA256_HEX_LEN] = "";
	const char *valgrind = NULL, *vg_supp_opt = NULL, *kl_opt = NULL;
	char vg_supp[PATH_MAX], keel_leaks[PATH_MAX];
	bool vg_supp_set = false;
	unsigned jobs = 1, shard_k = 0, shard_n = 0, repeat = 1;
	bool repeat_set = false, seed_set = false, keep = false;
	bool allow = env_allows_test_steps();
	double mult = 1.0;
	run_state rs = { 0 };
	char self[PATH_MAX], broker[PATH_MAX], db_path[PATH_MAX], workroot[PATH_MAX];
	file_list files = { 0 };
	kh_recorder *rec = NULL;
	int code = 2, ch;
	char *end;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "j:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'j':
			jobs = (unsigned)strtoul(optarg, &end, 10);
			if (*end || jobs < 1 || jobs > KH_MAX_JOBS) {
				fprintf(stderr, "keel-harness: -j: 1..%d\n", KH_MAX_JOBS);
				return 2;
			}
			break;
		case 'F': filter = optarg; break;
		case 'S':
			if (sscanf(optarg, "%u/%u", &shard_k, &shard_n) != 2 || shard_n == 0 ||
			    shard_k < 1 || shard_k > shard_n) {
				fprintf(stderr, "keel-harness: --shard K/N with 1 <= K <= N\n");
				return 2;
			}
			break;
		case 'r':
			repeat = (unsigned)strtoul(optarg, &end, 10);
			if (*end || repeat < 1) {
				fprintf(stderr, "keel-harness: --repeat: a positive number\n");
				return 2;
			}
			repeat_set = true;
			break;
		case 'u': rs.until_failure = true; break;
		case 's':
			rs.seed = strtoull(optarg, &end, 0);
			if (*end) {
				fprintf(stderr, "keel-harness: --seed: a number\n");
				return 2;
			}
			rs.seed &= INT64_MAX;
			seed_set = true;
			break;
		case 'm':
			if (kh_opt_multiplier(optarg, &mult) != 0)
				return 2;
			break;
		case 'd': db_opt = optarg; break;
		case 'J': junit = optarg; break;
		case 'T': rs.tap = true; break;
		case 'k': keep = true; break;
		case 'b': broker_opt = optarg; break;
		case 't': allow = true; break;
		case 'V':
			valgrind = optarg ? optarg : "memcheck";
			if (strcmp(valgrind, "memcheck") != 0 && strcmp(valgrind, "helgrind") != 0 &&
			    strcmp(valgrind, "drd") != 0) {
				fprintf(stderr, "keel-harness: --valgrind=memcheck|helgrind|drd\n");
				return 2;
			}
			break;
		case 'U': vg_supp_opt = optarg; break;
		case 'L': kl_opt = optarg; break;
		case 'D':
			rs.df.max = (unsigned)strtoul(optarg, &end, 10);
			if (*end || *optarg == '\0' || rs.df.max > KH_MAX_DEFLAKE) {
				fprintf(stderr, "keel-harness: --deflake: 0..%d retries\n",
					KH_MAX_DEFLAKE);
				return 2;
			}
			break;
		case 'B':
			if (strcmp(optarg, "history") != 0) {
				fprintf(stderr, "keel-harness: --balance history (the only way)\n");
				return 2;
			}
			balance = true;
			break;
		case 'H': history = optarg; break;
		case 'N': no_history = true; break;
		case 'h': run_usage(stdout); return 0;
		default: run_usage(stderr); return 2;
		}
	}
	if (balance && shard_n == 0) {
		fprintf(stderr, "keel-harness: --balance history balances shards: it needs --shard "
				"K/N\n");
		return 2;
	}
	if (kh_opt_broker(broker_opt, self, broker) != 0)
		return 2;
	if (valgrind) {
		if (!in_path("valgrind")) {
			fprintf(stderr, "keel-harness: --valgrind: valgrind is not in PATH\n");
			return 2;
		}
		if (kl_opt ? realpath(kl_opt, keel_leaks) == NULL || access(keel_leaks, X_OK) != 0 :
			     !kh_default_keel_leaks(self, keel_leaks, sizeof(keel_leaks))) {
			fprintf(stderr, "keel-harness: --valgrind needs keel-leaks (build target "
					"keel-leaks, or --keel-leaks PATH)\n");
			return 2;
		}
		const char *supp = vg_supp_opt ? vg_supp_opt : KH_SOURCE_DIR "/leakcheck/valgrind.supp";
		if (realpath(supp, vg_supp) != NULL && access(vg_supp, R_OK) == 0) {
			vg_supp_set = true;
		} else if (vg_supp_opt) {
			fprintf(stderr, "keel-harness: --valgrind-supp %s: cannot read it\n", supp);
			return 2;
		}
		mult *= KH_VALGRIND_TIMEOUT_FACTOR;
	}
	char *defaults[] = { "scenarios" };
	int rcc = optind < argc ? collect(&files, argv + optind, argc - optind) :
				  collect(&files, defaults, 1);
	if (rcc != 0)
		goto out;

	/* Lint everything first: a broken file is a usage error (2). */
	rs.sc = keel_calloc(files.n + 1, sizeof(*rs.sc));
	rs.files = keel_calloc(files.n + 1, sizeof(*rs.files));
	rs.texts = keel_calloc(files.n + 1, sizeof(*rs.texts));
	rs.text_lens = keel_calloc(files.n + 1, sizeof(*rs.text_lens));
	rs.sha256 = keel_calloc(files.n + 1, sizeof(*rs.sha256));
	if (rs.sc == NULL || rs.files == NULL || rs.texts == NULL || rs.text_lens == NULL ||
	    rs.sha256 == NULL)
		goto out;
	unsigned bad = 0, index = 0;
	for (size_t i = 0; i < files.n; i++) {
		kh_scenario *s = NULL;
		char *text = NULL, abs[PATH_MAX];
		size_t text_len = 0;
		if (lint_file(files.v[i], allow, &s, &text, &text_len) != 0) {
			bad++;
			continue;
		}
		bool take = filter == NULL || fnmatch(filter, s->name, 0) == 0;
		if (take && shard_n && !balance)
			take = index % shard_n == shard_k - 1;
		if (filter == NULL || fnmatch(filter, s->name, 0) == 0)
			index++;
		if (!take || realpath(files.v[i], abs) == NULL) {
			kh_scenario_free(s);
			keel_free(text);
			continue;
		}
		rs.files[rs.nsc] = keel_strdup(abs);
		rs.texts[rs.nsc] = text;
		rs.text_lens[rs.nsc] = text_len;
		kh_sha256_hex(text, text_len, rs.sha256[rs.nsc]);
		rs.sc[rs.nsc++] = s;
	}
	if (bad) {
		fprintf(stderr, "keel-harness: %u scenario file(s) with errors; nothing run\n", bad);
		goto out;
	}
	if (balance && balance_shard(&rs, history, shard_k, shard_n, plan) != 0)
		goto out;
	if (rs.nsc == 0 && shard_n && index > 0) {
		/* CI matrices make more shards than a filter leaves scenarios. */
		code = empty_shard(shard_k, shard_n, index, rs.tap, junit);
		goto out;
	}
	if (rs.nsc == 0) {
		fprintf(stderr, "keel-harness: no scenario selected\n");
		goto out;
	}
	rs.repeat = rs.until_failure && !repeat_set ? 0 : repeat;
	if (!seed_set)
		rs.seed = random_seed();

	/* The recording. */
	if (db_opt) {
		snprintf(db_path, sizeof(db_path), "%s", db_opt);
	} else {
		if (kh_default_db(NULL, db_path, sizeof(db_path)) != 0)
			goto out;
		const char *link = db_path + strlen("runs/");
		unlink("runs/latest.db");
		if (symlink(link, "runs/latest.db") != 0)
			fprintf(stderr, "keel-harness: runs/latest.db: %s\n", strerror(errno));
	}
	/* The commit the history groups outcomes by. */
	if (getenv("KEEL_GIT_REV") == NULL) {
		char rev[128];
		kh_history_commit(rev, sizeof(rev));
		if (rev[0])
			setenv("KEEL_GIT_REV", rev, 0);
	}
	char err[1024];
	if (kh_recorder_open(&rec, db_path, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "keel-harness: %s\n", err);
		goto out;
	}
	json_t *opts = json_pack("{s:i, s:s?, s:s?, s:i, s:b, s:I, s:f, s:b, s:s}", "jobs",
				 (int)jobs, "filter", filter, "shard", (const char *)NULL,
				 "repeat", (int)rs.repeat, "until-failure", rs.until_failure,
				 "seed", (json_int_t)rs.seed, "timeout-multiplier", mult,
				 "allow-test-steps", allow, "broker", broker);
	if (opts && valgrind)
		json_object_set_new(opts, "valgrind", json_string(valgrind));
	if (opts && shard_n) {
		char sh[32];
		snprintf(sh, sizeof(sh), "%u/%u", shard_k, shard_n);
		json_object_set_new(opts, "shard", json_string(sh));
	}
	if (opts && balance) {
		json_object_set_new(opts, "balance", json_string("history"));
		json_object_set_new(opts, "plan", json_string(plan));
	}
	if (opts && rs.df.max)
		json_object_set_new(opts, "deflake", json_integer(rs.df.max));
	char *opts_text = opts ? json_dumps(opts, JSON_COMPACT) : NULL;
	json_decref(opts);
	int64_t run_id = 0;
	int rc = kh_recorder_run_begin(rec, rs.seed, opts_text, &run_id);
	free(opts_text);
	if (rc)
		goto out;
	char bversion[256], build_id[128];
	kh_broker_identify(broker, bversion, sizeof(bversion), build_id, sizeof(build_id));
	kh_recorder_run_broker(rec, run_id, bversion, build_id);
	if (shard_n) {
		char sh[32];
		snprintf(sh, sizeof(sh), "%u/%u", shard_k, shard_n);
		kh_recorder_run_shard(rec, run_id, sh);
	}

	const char *tmp = getenv("TMPDIR");
	snprintf(workroot, sizeof(workroot), "%s/keel-harness-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(workroot) == NULL) {
		fprintf(stderr, "keel-harness: %s: %s\n", workroot, strerror(errno));
		goto out;
	}
	rs.tty = !rs.tap && isatty(STDOUT_FILENO);
	if (!rs.tap)
		printf("keel-harness: %zu scenario(s), seed %" PRIu64 ", recording to %s\n", rs.nsc,
		       rs.seed, db_path);
	fflush(stdout);
	int64_t t0 = kh_now_ns();
	kh_exec_opts eo = {
		.rec = rec,
		.db_path = db_path,
		.run_id = run_id,
		.jobs = jobs,
		.timeout_multiplier = mult,
		.broker = broker,
		.self_exe = self,
		.workroot = workroot,
		.allow_test_steps = allow,
		.keep_data = keep,
		.progress = rs.tty,
		.valgrind = valgrind,
		.valgrind_supp = vg_supp_set ? vg_supp : NULL,
		.keel_leaks = valgrind ? keel_leaks : NULL,
		.next = run_next,
		.done = run_done,
		.ud = &rs,
	};
	rc = kh_runner_exec(&eo);
	bool interrupted = rc == -EINTR;
	double total = (double)(kh_now_ns() - t0) / 1e9;
	kh_recorder_run_end(rec, run_id);
	if (keep)
		printf("keel-harness: data kept in %s\n", workroot);
	else if (rmdir(workroot) != 0)
		fprintf(stderr, "keel-harness: %s left behind: %s\n", workroot, strerror(errno));
	if (junit && (rc = write_junit(junit, &rs, rec, run_id, total)) != 0)
		fprintf(stderr, "keel-harness: %s: %s\n", junit, strerror(-rc));
	/* an interrupted run's failures are not the scenarios' own */
	if (history && !no_history && !interrupted)
		kh_history_record(history, kh_recorder_db(rec), run_id);
	if (interrupted)
		printf("keel-harness: interrupted: the run is incomplete (not added to the "
		       "history)\n");
	if (rs.tap)
		printf("1..%u\n# ", rs.passed + rs.failed + rs.flaky);
	printf("%u passed, %u failed", rs.passed, rs.failed);
	if (rs.df.max)
		printf(", %u flaky (failed, then passed with the seed pinned)", rs.flaky);
	printf("\n");
	code = rs.failed || rs.passed + rs.flaky == 0 ? 1 : 0;
out:
	kh_recorder_close(rec);
	for (size_t i = 0; i < rs.nsc; i++) {
		kh_scenario_free(rs.sc[i]);
		keel_free(rs.files[i]);
		keel_free(rs.texts[i]);
	}
	keel_free(rs.sc);
	keel_free(rs.files);
	keel_free(rs.texts);
	keel_free(rs.text_lens);
	keel_free(rs.sha256);
	for (size_t i = 0; i < rs.nresults; i++) {
		keel_free(rs.results[i]->file);
		keel_free(rs.results[i]->name);
		keel_free(rs.results[i]->output);
		keel_free(rs.results[i]);
	}
	keel_free(rs.results);
	kh_deflake_free(&rs.df);
	list_free(&files);
	return code;
}
