/*
 * lc_check.c - snapshots of /proc/self and the leak check (lc_check.h).
 *
 * Everything comes from /proc: tasks from /proc/self/task, descriptors
 * from /proc/self/fd (readlink), children from /proc/<pid>/stat (ppid),
 * listening sockets from /proc/net/{tcp,tcp6,unix} matched by inode; the
 * leaked threads' stacks resolved by lc_sym.c and their current stacks
 * asked by lc_stack.c.  A snapshot and a report own their arrays (libc
 * allocation: leakcheck sits below keel_util).  Any thread; no shared
 * state here.
 */
#include "lc_check.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "lc_stack.h"

typedef struct fd_ent {
	int fd;
	char target[256];
} fd_ent;

struct lc_snapshot {
	pid_t *tids;
	size_t ntids;
	fd_ent *fds;
	size_t nfds;
	pid_t *children;
	size_t nchildren;
};

/* A growable array of any element. */
static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 16;
	void *p = realloc(*arr, ncap * elem);
	if (p == NULL)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whitespace and control bytes would break the one-line format. */
static void sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			*s = '_';
}

static bool parse_num(const char *s, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 0)
		return false;
	*out = v;
	return true;
}

/* "pid (comm) S ppid ...": comm may hold spaces and parentheses. */
static int read_stat(const char *path, char *comm, size_t commsz, char *state, long *ppid)
{
	char buf[1024];
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return -errno;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *open = strchr(buf, '(');
	char *close = strrchr(buf, ')');
	if (open == NULL || close == NULL || close < open || close[1] == '\0')
		return -EPROTO;
	if (comm != NULL) {
		size_t len = (size_t)(close - open - 1);
		if (len >= commsz)
			len = commsz - 1;
		memcpy(comm, open + 1, len);
		comm[len] = '\0';
		sanitize(comm);
	}
	char st = 0;
	long pp = 0;
	if (sscanf(close + 1, " %c %ld", &st, &pp) != 2)
		return -EPROTO;
	if (state != NULL)
		*state = st;
	if (ppid != NULL)
		*ppid = pp;
	return 0;
}

static int list_tasks(pid_t **out, size_t *count)
{
	size_t cap = 0, n = 0;
	pid_t *arr = NULL;
	struct dirent *de;
	DIR *d = opendir("/proc/self/task");
	if (d == NULL)
		return -errno;
	while ((de = readdir(d)) != NULL) {
		long v;
		if (!parse_num(de->d_name, &v))
			continue;
		if (grow((void **)&arr, &cap, n, sizeof(*arr)) < 0) {
			closedir(d);
			free(arr);
			return -ENOMEM;
		}
		arr[n++] = (pid_t)v;
	}
	closedir(d);
	*out = arr;
	*count = n;
	return 0;
}

static int list_fds(fd_ent **out, size_t *count)
{
	size_t cap = 0, n = 0;
	fd_ent *arr = NULL;
	struct dirent *de;
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return -errno;
	int self = dirfd(d);
	while ((de = readdir(d)) != NULL) {
		long v;
		if (!parse_num(de->d_name, &v) || v == self)
			continue;
		char path[64];
		snprintf(path, sizeof(path), "/proc/self/fd/%ld", v);
		fd_ent e = { .fd = (int)v };
		ssize_t len = readlink(path, e.target, sizeof(e.target) - 1);
		if (len < 0)
			continue; /* closed meanwhile */
		e.target[len] = '\0';
		sanitize(e.target);
		if (grow((void **)&arr, &cap, n, sizeof(*arr)) < 0) {
			closedir(d);
			free(arr);
			return -ENOMEM;
		}
		arr[n++] = e;
	}
	closedir(d);
	*out = arr;
	*count = n;
	return 0;
}

static int list_children(pid_t **out, size_t *count)
{
	size_t cap = 0, n = 0;
	pid_t *arr = NULL;
	struct dirent *de;
	long self = (long)getpid();
	DIR *d = opendir("/proc");
	if (d == NULL)
		return -errno;
	while ((de = readdir(d)) != NULL) {
		long v, ppid;
		char path[64];
		if (!parse_num(de->d_name, &v))
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/stat", v);
		if (read_stat(path, NULL, 0, NULL, &ppid) < 0 || ppid != self)
			continue;
		if (grow((void **)&arr, &cap, n, sizeof(*arr)) < 0) {
			closedir(d);
			free(arr);
			return -ENOMEM;
		}
		arr[n++] = (pid_t)v;
	}
	closedir(d);
	*out = arr;
	*count = n;
	return 0;
}

void lc_snapshot_free(lc_snapshot *s)
{
	if (s == NULL)
		return;
	free(s->tids);
	free(s->fds);
	free(s->children);
	free(s);
}

int lc_snapshot_take(lc_snapshot **out)
{
	lc_snapshot *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	int rc = list_tasks(&s->tids, &s->ntids);
	if (rc == 0)
		rc = list_fds(&s->fds, &s->nfds);
	if (rc == 0)
		rc = list_children(&s->children, &s->nchildren);
	if (rc < 0) {
		lc_snapshot_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

static bool pid_in(const pid_t *arr, size_t n, pid_t v)
{
	for (size_t i = 0; i < n; i++)
		if (arr[i] == v)
			return true;
	return false;
}

static bool fd_was_open(const lc_snapshot *s, const fd_ent *e)
{
	for (size_t i = 0; i < s->nfds; i++)
		if (s->fds[i].fd == e->fd)
			return strcmp(s->fds[i].target, e->target) == 0;
	return false;
}

int lc_name_new_threads(const lc_snapshot *before, const char *name)
{
	pid_t *tids = NULL;
	size_t n = 0;
	int named = 0;
	pid_t self = (pid_t)syscall(SYS_gettid);
	int rc = list_tasks(&tids, &n);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++) {
		char path[64];
		if (tids[i] == self || pid_in(before->tids, before->ntids, tids[i]))
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%d/comm", (int)tids[i]);
		FILE *f = fopen(path, "we");
		if (f == NULL)
			continue; /* gone */
		fprintf(f, "%.15s", name);
		if (fclose(f) == 0)
			named++;
	}
	free(tids);
	return named;
}

/* ---- allowlist ---------------------------------------------------------- */

static const char *const builtin_allow[] = { "libuv-worker*", NULL };

static bool match_list(const char *name, const char *const *pats)
{
	for (size_t i = 0; pats && pats[i]; i++)
		if (fnmatch(pats[i], name, 0) == 0)
			return true;
	return false;
}

bool lc_thread_allowed(const char *name, const char *const *extra)
{
	if (match_list(name, builtin_allow) || match_list(name, extra))
		return true;
	const char *env = getenv("KEEL_LC_ALLOW");
	while (env && *env) {
		char pat[128];
		size_t len = strcspn(env, ",");
		if (len > 0 && len < sizeof(pat)) {
			memcpy(pat, env, len);
			pat[len] = '\0';
			if (fnmatch(pat, name, 0) == 0)
				return true;
		}
		env += len;
		if (*env == ',')
			env++;
	}
	return false;
}

/* ---- listening sockets -------------------------------------------------- */

typedef struct listen_ent {
	unsigned long inode;
	char proto[8];
	char local[128];
} listen_ent;

typedef struct listen_set {
	listen_ent *arr;
	size_t n;
	size_t cap;
} listen_set;

static void hex_addr(const char *hex, bool v6, unsigned port, char *out, size_t size)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (!v6) {
		struct in_addr a = { .s_addr = (uint32_t)strtoul(hex, NULL, 16) };
		inet_ntop(AF_INET, &a, ip, sizeof(ip));
		snprintf(out, size, "%s:%u", ip, port);
		return;
	}
	struct in6_addr a;
	for (int i = 0; i < 4; i++) {
		char word[9];
		memcpy(word, hex + 8 * i, 8);
		word[8] = '\0';
		uint32_t w = (uint32_t)strtoul(word, NULL, 16);
		memcpy(&a.s6_addr[4 * i], &w, 4); /* each word is in host order */
	}
	inet_ntop(AF_INET6, &a, ip, sizeof(ip));
	snprintf(out, size, "[%s]:%u", ip, port);
}

static void add_listen(listen_set *ls, unsigned long inode, const char *proto, const char *local)
{
	if (grow((void **)&ls->arr, &ls->cap, ls->n, sizeof(*ls->arr)) < 0)
		return; /* then it is reported as a plain FD */
	listen_ent *e = &ls->arr[ls->n++];
	e->inode = inode;
	snprintf(e->proto, sizeof(e->proto), "%s", proto);
	snprintf(e->local, sizeof(e->local), "%s", local);
	sanitize(e->local);
}

static void read_inet_listeners(listen_set *ls, const char *path, const char *proto, bool v6)
{
	char line[512];
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		char hex[40], local[128];
		unsigned port, st;
		unsigned long inode;
		if (sscanf(line, " %*d: %39[0-9A-Fa-f]:%X %*s %X %*s %*s %*s %*u %*u %lu", hex,
			   &port, &st, &inode) != 4)
			continue; /* the header */
		if (st != 0x0A) /* TCP_LISTEN */
			continue;
		hex_addr(hex, v6, port, local, sizeof(local));
		add_listen(ls, inode, proto, local);
	}
	fclose(f);
}

static void read_unix_listeners(listen_set *ls)
{
	char line[512];
	FILE *f = fopen("/proc/net/unix", "re");
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned flags;
		unsigned long inode;
		char path[256] = "";
		int n = sscanf(line, "%*s %*s %*s %X %*s %*s %lu %255s", &flags, &inode, path);
		if (n < 2 || !(flags & 0x10000)) /* __SO_ACCEPTCON */
			continue;
		add_listen(ls, inode, "unix", path[0] ? path : "(unnamed)");
	}
	fclose(f);
}

static const listen_ent *find_listener(const listen_set *ls, const char *target)
{
	unsigned long inode;
	if (sscanf(target, "socket:[%lu]", &inode) != 1)
		return NULL;
	for (size_t i = 0; i < ls->n; i++)
		if (ls->arr[i].inode == inode)
			return &ls->arr[i];
	return NULL;
}

/* ---- the check ---------------------------------------------------------- */

const char *lc_kind_name(lc_kind k)
{
	switch (k) {
	case LC_THREAD: return "THREAD";
	case LC_FD: return "FD";
	case LC_CHILD: return "CHILD";
	case LC_LISTEN: return "LISTEN";
	}
	return "?";
}

typedef struct leak_list {
	lc_leak *arr;
	size_t n;
	size_t cap;
} leak_list;

static lc_leak *new_leak(leak_list *ll, lc_kind kind, int id, const char *test)
{
	if (grow((void **)&ll->arr, &ll->cap, ll->n, sizeof(*ll->arr)) < 0)
		return NULL;
	lc_leak *l = &ll->arr[ll->n++];
	memset(l, 0, sizeof(*l));
	l->kind = kind;
	l->id = id;
	snprintf(l->owner, sizeof(l->owner), "-");
	snprintf(l->test, sizeof(l->test), "%s", test);
	return l;
}

static int find_threads(const lc_snapshot *before, const lc_check_opts *opt,
			const char *test, leak_list *ll)
{
	pid_t *tids = NULL;
	size_t n = 0;
	pid_t self = (pid_t)syscall(SYS_gettid);
	int rc = list_tasks(&tids, &n);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		pid_t tid = tids[i];
		char path[64], comm[64], state;
		if (tid == self || pid_in(before->tids, before->ntids, tid))
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
		if (read_stat(path, comm, sizeof(comm), &state, NULL) < 0)
			continue; /* gone meanwhile */
		if (lc_thread_allowed(comm, opt->allow))
			continue;
		lc_leak *l = new_leak(ll, LC_THREAD, (int)tid, test);
		if (l == NULL) {
			rc = -ENOMEM;
			break;
		}
		snprintf(l->name, sizeof(l->name), "%s", comm);
		l->state = state;
		lc_thread_info info;
		if (!lc_thread_lookup(tid, &info)) {
			snprintf(l->created_at, sizeof(l->created_at), "unknown");
			continue;
		}
		snprintf(l->created_at, sizeof(l->created_at), "%s (%s:%d)",
			 info.func ? info.func : "?", lc_site_file(info.file), info.line);
		sanitize(l->created_at + strcspn(l->created_at, " ") + 1);
		if (info.owner != NULL && info.owner[0] != '\0')
			snprintf(l->owner, sizeof(l->owner), "%s", info.owner);
		if (info.test[0] != '\0')
			snprintf(l->test, sizeof(l->test), "%s", info.test);
		sanitize(l->owner);
		sanitize(l->test);
		l->nframes = info.nframes < LC_MAX_FRAMES ? info.nframes : LC_MAX_FRAMES;
		for (int f = 0; f < l->nframes; f++)
			l->frame_addrs[f] = (uintptr_t)info.frames[f];
	}
	free(tids);
	return rc;
}

static int find_fds(const lc_snapshot *before, unsigned kinds, const char *test, leak_list *ll)
{
	fd_ent *fds = NULL;
	size_t n = 0;
	listen_set ls = { 0 };
	bool listeners_read = false;
	int rc = list_fds(&fds, &n);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		if (fd_was_open(before, &fds[i]))
			continue;
		const listen_ent *le = NULL;
		if ((kinds & LC_LISTEN) && strncmp(fds[i].target, "socket:", 7) == 0) {
			if (!listeners_read) {
				read_inet_listeners(&ls, "/proc/net/tcp", "tcp", false);
				read_inet_listeners(&ls, "/proc/net/tcp6", "tcp6", true);
				read_unix_listeners(&ls);
				listeners_read = true;
			}
			le = find_listener(&ls, fds[i].target);
		}
		if (le == NULL && !(kinds & LC_FD))
			continue;
		lc_leak *l = new_leak(ll, le ? LC_LISTEN : LC_FD, fds[i].fd, test);
		if (l == NULL) {
			rc = -ENOMEM;
			break;
		}
		if (le != NULL) {
			snprintf(l->name, sizeof(l->name), "%s", le->proto);
			snprintf(l->target, sizeof(l->target), "%s", le->local);
		} else {
			snprintf(l->target, sizeof(l->target), "%s", fds[i].target);
		}
	}
	free(ls.arr);
	free(fds);
	return rc;
}

static int find_children(const lc_snapshot *before, const char *test, leak_list *ll)
{
	pid_t *kids = NULL;
	size_t n = 0;
	int rc = list_children(&kids, &n);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		char path[64], comm[64], state;
		if (pid_in(before->children, before->nchildren, kids[i]))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)kids[i]);
		if (read_stat(path, comm, sizeof(comm), &state, NULL) < 0)
			continue;
		lc_leak *l = new_leak(ll, LC_CHILD, (int)kids[i], test);
		if (l == NULL) {
			rc = -ENOMEM;
			break;
		}
		snprintf(l->name, sizeof(l->name), "%s", comm);
		l->state = state;
	}
	free(kids);
	return rc;
}

static int grace_ms(const lc_check_opts *opt)
{
	if (opt->grace_ms >= 0)
		return opt->grace_ms;
	long v;
	const char *env = getenv("KEEL_LC_GRACE_MS");
	if (env != NULL && parse_num(env, &v) && v <= LC_GRACE_MS_MAX)
		return (int)v;
	return LC_GRACE_MS_DEFAULT;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * The leaked threads' stacks: the creation backtrace resolved, and the
 * current stack asked of each thread (lc_stack.h) and resolved; a thread
 * that gives none gets the reason in stack_note.
 */
static void add_stacks(leak_list *ll, int stack_wait_ms)
{
	lc_stack_req *reqs = calloc(ll->n ? ll->n : 1, sizeof(*reqs));
	size_t nreq = 0;
	lc_sym *sym = NULL;
	for (size_t i = 0; i < ll->n && reqs != NULL; i++)
		if (ll->arr[i].kind == LC_THREAD)
			reqs[nreq++].tid = (pid_t)ll->arr[i].id;
	if (nreq == 0)
		goto out;
	if (stack_wait_ms >= 0)
		lc_stack_capture(reqs, nreq, stack_wait_ms ? stack_wait_ms : LC_STACK_WAIT_MS_DEFAULT);
	if (lc_sym_open(&sym) < 0)
		sym = NULL; /* then dladdr: module and exported names only */
	for (size_t i = 0, k = 0; i < ll->n; i++) {
		lc_leak *l = &ll->arr[i];
		if (l->kind != LC_THREAD)
			continue;
		const lc_stack_req *r = &reqs[k++];
		for (int f = 0; f < l->nframes; f++)
			lc_sym_frame(sym, l->frame_addrs[f], true, &l->frames[f]);
		if (stack_wait_ms < 0) {
			snprintf(l->stack_note, sizeof(l->stack_note), "not-asked");
			continue;
		}
		/* the first frame is where the thread was stopped, not a return address */
		for (int f = 0; f < r->nframes && l->nstack < LC_MAX_FRAMES; f++)
			lc_sym_frame(sym, r->frames[f], f > 0, &l->stack[l->nstack++]);
		if (l->nstack == 0)
			snprintf(l->stack_note, sizeof(l->stack_note), "%s",
				 r->note[0] ? r->note : "empty");
	}
out:
	lc_sym_close(sym);
	free(reqs);
}

int lc_check(const lc_snapshot *before, const lc_check_opts *opt, lc_report **out)
{
	static const lc_check_opts defaults = { .passed = true, .grace_ms = -1 };
	char testbuf[LC_MAX_LABEL];
	if (opt == NULL)
		opt = &defaults;
	unsigned kinds = opt->kinds ? opt->kinds : LC_ALL;
	const char *test = opt->test ? opt->test : lc_test_name(testbuf, sizeof(testbuf));
	char test_s[LC_MAX_LABEL];
	snprintf(test_s, sizeof(test_s), "%s", test[0] ? test : "-");
	sanitize(test_s);

	lc_report *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	int64_t start = now_ms();
	int64_t deadline = start + (opt->passed ? grace_ms(opt) : 0);
	int64_t backoff = 1;
	leak_list ll = { 0 };
	int rc = 0;
	for (;;) {
		ll.n = 0;
		r->attempts++;
		if (kinds & LC_THREAD)
			rc = find_threads(before, opt, test_s, &ll);
		if (rc == 0 && (kinds & (LC_FD | LC_LISTEN)))
			rc = find_fds(before, kinds, test_s, &ll);
		if (rc == 0 && (kinds & LC_CHILD))
			rc = find_children(before, test_s, &ll);
		int64_t now = now_ms();
		if (rc < 0 || ll.n == 0 || now >= deadline)
			break;
		if (opt->on_retry != NULL)
			opt->on_retry(r->attempts, opt->ud);
		sleep_ms(backoff < deadline - now ? backoff : deadline - now);
		backoff = backoff * 2 > LC_BACKOFF_MAX_MS ? LC_BACKOFF_MAX_MS : backoff * 2;
	}
	if (rc < 0) {
		free(ll.arr);
		free(r);
		return rc;
	}
	r->waited_ms = (uint64_t)(now_ms() - start);
	add_stacks(&ll, opt->stack_wait_ms);
	r->leaks = ll.arr;
	r->count = ll.n;
	*out = r;
	return 0;
}

void lc_report_free(lc_report *r)
{
	if (r == NULL)
		return;
	free(r->leaks);
	free(r);
}

/* Appends " KEY=" and the frames in tool form joined by ';' to buf[*len],
 * as many as fit before `limit` (then ";..."); "-" or "unavailable(NOTE)"
 * when there are none. */
static void append_stack(char *buf, size_t *len, size_t limit, const char *key,
			 const lc_frame *frames, int n, const char *none)
{
	char fr[400];
	int w = snprintf(buf + *len, limit - *len, " %s=", key);
	if (w < 0 || (size_t)w >= limit - *len)
		return;
	*len += (size_t)w;
	if (n == 0) {
		w = snprintf(buf + *len, limit - *len, "%s", none);
		if (w > 0)
			*len += (size_t)w < limit - *len ? (size_t)w : limit - *len - 1;
		return;
	}
	for (int i = 0; i < n; i++) {
		int fl = lc_frame_tool(&frames[i], fr, sizeof(fr));
		size_t need = (size_t)fl + (i ? 1 : 0);
		/* room for this frame, and for ";..." unless it is the last */
		if (fl < 0 || *len + need + (i + 1 < n ? 4 : 0) >= limit) {
			if (*len + 4 < limit) {
				memcpy(buf + *len, i ? ";..." : "...", i ? 5 : 4);
				*len += i ? 4 : 3;
			}
			return;
		}
		*len += (size_t)snprintf(buf + *len, limit - *len, "%s%s", i ? ";" : "", fr);
	}
}

int lc_leak_format(const lc_leak *l, char *buf, size_t size)
{
	size_t limit = size < LC_LINE_MAX ? size : LC_LINE_MAX;
	int w;
	switch (l->kind) {
	case LC_THREAD:
		break;
	case LC_FD:
		return snprintf(buf, limit, "LEAKED FD fd=%d target=%s test=%s", l->id, l->target,
				l->test);
	case LC_CHILD:
		return snprintf(buf, limit, "LEAKED CHILD pid=%d name=%s state=%c test=%s", l->id,
				l->name, l->state, l->test);
	case LC_LISTEN:
		return snprintf(buf, limit, "LEAKED LISTEN fd=%d proto=%s local=%s test=%s", l->id,
				l->name, l->target, l->test);
	default:
		return snprintf(buf, limit, "LEAKED ?");
	}
	w = snprintf(buf, limit, "LEAKED THREAD name=%s tid=%d state=%c created-at=%s owner=%s test=%s",
		     l->name, l->id, l->state, l->created_at, l->owner, l->test);
	if (w < 0 || (size_t)w >= limit)
		return w;
	/* When the line is short of room, each stack keeps at least half of
	 * what is left, losing its outermost frames first (";..."). */
	char none[64];
	size_t len = (size_t)w;
	size_t half = len + (limit - len) / 2;
	snprintf(none, sizeof(none), "unavailable(%s)", l->stack_note[0] ? l->stack_note : "?");
	append_stack(buf, &len, l->nframes ? half : limit, "stack", l->stack, l->nstack, none);
	append_stack(buf, &len, limit, "created-stack", l->frames, l->nframes, "-");
	return (int)len;
}

void lc_report_print(const lc_report *r, FILE *f)
{
	char line[LC_LINE_MAX], fr[400];
	if (r == NULL || r->count == 0)
		return;
	/* Build the block first: one write keeps it whole among other output. */
	char *block = NULL;
	size_t blen = 0;
	FILE *m = open_memstream(&block, &blen);
	FILE *o = m ? m : f;
	fprintf(o, "%s\n", LC_REPORT_BEGIN);
	for (size_t i = 0; i < r->count; i++) {
		const lc_leak *l = &r->leaks[i];
		lc_leak_format(l, line, sizeof(line));
		fprintf(o, "%s\n", line);
		if (l->kind != LC_THREAD)
			continue;
		/* For people: both stacks whole, one frame a line. */
		fprintf(o, "    created at:%s\n", l->nframes ? "" : " (not started by lc_thread_start)");
		for (int j = 0; j < l->nframes; j++) {
			lc_frame_human(&l->frames[j], fr, sizeof(fr));
			fprintf(o, "    #%d %s\n", j, fr);
		}
		if (l->nstack == 0)
			fprintf(o, "    now at: unavailable (%s)\n", l->stack_note);
		else
			fprintf(o, "    now at:\n");
		for (int j = 0; j < l->nstack; j++) {
			lc_frame_human(&l->stack[j], fr, sizeof(fr));
			fprintf(o, "    #%d %s\n", j, fr);
		}
	}
	fprintf(o, "%s (%zu leak%s) ====\n", LC_REPORT_END, r->count, r->count == 1 ? "" : "s");
	if (m != NULL) {
		fclose(m);
		fwrite(block, 1, blen, f);
		free(block);
	}
	fflush(f);
}
