/*
 * node.c - broker processes of a scenario (node.h).  Owns the process
 * handle, three line pipes per incarnation and the event history (lines,
 * their types, and their jansson parse once made).  Invariant: `pending`
 * counts handles of the current incarnation not yet closed; the node is
 * down when it is 0.  Loop thread.
 */
#include "node.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "keel/alloc.h"
#include "kh_limits.h"
#include "kh_rand.h"

enum { PIPE_OUT, PIPE_ERR, PIPE_EVENTS, PIPE__COUNT };

typedef struct line_pipe {
	uv_pipe_t pipe;
	kh_node *node;
	int which;
	char *line;             /* the partial line so far */
	size_t len;
	size_t cap;
	bool cut;               /* the current line overflowed */
} line_pipe;

/* One event of the history. */
typedef struct ev_slot {
	char *line;
	json_t *json;           /* NULL until someone parses it */
	char type[KH_EVENT_TYPE_MAX];
} ev_slot;

struct kh_node {
	uv_loop_t *loop;
	char *name;
	char *self_exe;
	char *broker;
	char *host;
	uint16_t port;
	uint16_t listen_port;   /* from acceptor.listening; 0 = none yet */
	char client_host[64];   /* where clients dial (the proxy's); "" = host */
	char *data_dir;
	char *config_path;
	char *fiu_prefix;
	char *netns;            /* run inside this network namespace, or NULL */
	char *preload;          /* added to LD_PRELOAD last (sh wrapper), or NULL */
	char **env;             /* the whole environment, NULL = inherit */
	int fiu_env;            /* index of FIU_PRNG_SEED=... in env, or -1 */
	uint64_t fiu_seed;      /* its base (kh_node_fiu_seed_for) */
	uint32_t fiu_cur;       /* the current incarnation's value */
	char **command;         /* not a broker: this argv (kh_node_config.command) */
	char *vg_tool;
	char *vg_xml;
	char *vg_supp;
	char *vg_test;
	kh_node_callbacks cb;
	void *ud;
	uv_process_t proc;
	line_pipe pipes[PIPE__COUNT];
	unsigned pending;       /* handles to close before down */
	bool up;
	bool paused;
	bool exited;
	int pid;
	int64_t exit_code;
	int term_signal;
	unsigned incarnation;
	ev_slot *events;        /* the history, at most KH_MAX_NODE_EVENTS */
	size_t nevents, cap_events;
	/* the line being delivered to on_event */
	const char *cur_line;
	size_t cur_len;
	ev_slot *cur_slot;      /* its history slot, or NULL */
	json_t *cur_json;       /* its parse when it has no slot */
	char readbuf[65536];
};

extern char **environ;

/* environ plus `extra` ("NAME=value"), extra winning; NULL-terminated. */
static char **env_build(const char *const *extra, bool *nomem)
{
	size_t ne = 0, nx = 0, k = 0;
	while (environ[ne])
		ne++;
	while (extra[nx])
		nx++;
	char **env = keel_calloc(ne + nx + 1, sizeof(*env));
	if (env == NULL) {
		*nomem = true;
		return NULL;
	}
	for (size_t i = 0; i < ne; i++) {
		size_t len = strcspn(environ[i], "=");
		bool overridden = false;
		for (size_t j = 0; j < nx && !overridden; j++)
			overridden = strncmp(extra[j], environ[i], len) == 0 && extra[j][len] == '=';
		if (!overridden && (env[k++] = keel_strdup(environ[i])) == NULL)
			*nomem = true;
	}
	for (size_t j = 0; j < nx; j++) {
		if ((env[k++] = keel_strdup(extra[j])) == NULL)
			*nomem = true;
	}
	return env;
}

static char *dup_opt(const char *s, bool *nomem)
{
	if (s == NULL)
		return NULL;
	char *d = keel_strdup(s);
	if (d == NULL)
		*nomem = true;
	return d;
}

int kh_node_create(kh_node **out, uv_loop_t *loop, const kh_node_config *cfg,
		   const kh_node_callbacks *cb, void *ud)
{
	bool nomem = false;
	kh_node *n = keel_calloc(1, sizeof(*n));
	if (n == NULL)
		return -ENOMEM;
	n->loop = loop;
	n->name = dup_opt(cfg->name, &nomem);
	n->self_exe = dup_opt(cfg->self_exe, &nomem);
	n->broker = dup_opt(cfg->broker, &nomem);
	n->host = dup_opt(cfg->host, &nomem);
	n->data_dir = dup_opt(cfg->data_dir, &nomem);
	n->config_path = dup_opt(cfg->config_path, &nomem);
	n->fiu_prefix = dup_opt(cfg->fiu_prefix, &nomem);
	n->netns = dup_opt(cfg->netns, &nomem);
	n->preload = dup_opt(cfg->preload, &nomem);
	n->vg_tool = dup_opt(cfg->valgrind_tool, &nomem);
	n->vg_xml = dup_opt(cfg->valgrind_xml, &nomem);
	n->vg_supp = dup_opt(cfg->valgrind_supp, &nomem);
	n->vg_test = dup_opt(cfg->valgrind_test, &nomem);
	n->fiu_env = -1;
	n->fiu_seed = cfg->fiu_seed;
	if (cfg->env || (cfg->fiu_prefix && cfg->fiu_seeded)) {
		/* FIU_PRNG_SEED last, rewritten at each start (fiu_env) */
		const char *none[] = { NULL };
		const char *const *extra = cfg->env ? cfg->env : none;
		size_t nx = 0;
		while (extra[nx])
			nx++;
		const char **all = keel_calloc(nx + 2, sizeof(*all));
		if (all == NULL)
			nomem = true;
		for (size_t i = 0; all && i < nx; i++)
			all[i] = extra[i];
		if (all && cfg->fiu_prefix && cfg->fiu_seeded)
			all[nx] = "FIU_PRNG_SEED=0";
		if (all)
			n->env = env_build(all, &nomem);
		keel_free(all);
		for (size_t i = 0; n->env && n->env[i] && cfg->fiu_prefix && cfg->fiu_seeded; i++) {
			if (strncmp(n->env[i], "FIU_PRNG_SEED=", 14) == 0)
				n->fiu_env = (int)i;
		}
	}
	if (cfg->command) {
		size_t k = 0;
		while (cfg->command[k])
			k++;
		n->command = keel_calloc(k + 1, sizeof(char *));
		nomem |= n->command == NULL;
		for (size_t i = 0; n->command && i < k; i++)
			n->command[i] = dup_opt(cfg->command[i], &nomem);
	}
	n->port = cfg->port;
	n->cb = *cb;
	n->ud = ud;
	n->exit_code = -1;
	if (nomem) {
		kh_node_free(n);
		return -ENOMEM;
	}
	for (int i = 0; i < PIPE__COUNT; i++) {
		n->pipes[i].node = n;
		n->pipes[i].which = i;
	}
	*out = n;
	return 0;
}

void kh_node_free(kh_node *n)
{
	if (n == NULL)
		return;
	assert(!n->up);
	for (int i = 0; i < PIPE__COUNT; i++)
		keel_free(n->pipes[i].line);
	for (size_t i = 0; i < n->nevents; i++) {
		keel_free(n->events[i].line);
		json_decref(n->events[i].json);
	}
	keel_free(n->events);
	keel_free(n->name);
	keel_free(n->self_exe);
	keel_free(n->broker);
	keel_free(n->host);
	keel_free(n->data_dir);
	keel_free(n->config_path);
	keel_free(n->fiu_prefix);
	keel_free(n->netns);
	keel_free(n->preload);
	keel_free(n->vg_tool);
	keel_free(n->vg_xml);
	keel_free(n->vg_supp);
	keel_free(n->vg_test);
	for (size_t i = 0; n->command && n->command[i]; i++)
		keel_free(n->command[i]);
	keel_free(n->command);
	for (size_t i = 0; n->env && n->env[i]; i++)
		keel_free(n->env[i]);
	keel_free(n->env);
	keel_free(n);
}

static void check_down(kh_node *n)
{
	if (n->pending > 0 || !n->up)
		return;
	n->up = false;
	n->paused = false;
	if (n->cb.on_down)
		n->cb.on_down(n, n->ud);
}

static void on_handle_closed(uv_handle_t *h)
{
	kh_node *n = h->data;
	assert(n->pending > 0);
	n->pending--;
	check_down(n);
}

static void deliver_line(line_pipe *lp)
{
	kh_node *n = lp->node;
	if (lp->line == NULL)
		return;
	lp->line[lp->len] = '\0';
	if (lp->which != PIPE_EVENTS) {
		if (n->cb.on_output)
			n->cb.on_output(n, lp->line, n->ud);
		return;
	}
	if (lp->len == 0)
		return;
	kh_event_head h;
	n->cur_line = lp->line;
	n->cur_len = lp->len;
	n->cur_slot = NULL;
	n->cur_json = NULL;
	if (kh_event_head_scan(lp->line, lp->len, &h) != 0) {
		/* the scan cannot tell: the real parse decides */
		n->cur_json = json_loadb(lp->line, lp->len, 0, NULL);
		kh_event_head_from_json(n->cur_json, &h);
		if (!h.ok) {
			json_decref(n->cur_json);
			n->cur_json = NULL;
		}
	}
	if (h.ok && n->nevents < KH_MAX_NODE_EVENTS) {
		if (n->nevents == n->cap_events) {
			size_t cap = n->cap_events ? n->cap_events * 2 : 256;
			ev_slot *g = keel_realloc(n->events, cap * sizeof(*g));
			if (g) {
				n->events = g;
				n->cap_events = cap;
			}
		}
		char *copy = n->nevents < n->cap_events ? keel_strdup(lp->line) : NULL;
		if (copy) {
			ev_slot *sl = &n->events[n->nevents++];
			sl->line = copy;
			sl->json = n->cur_json;
			snprintf(sl->type, sizeof(sl->type), "%s", h.type);
			n->cur_slot = sl;
			n->cur_json = NULL;
		}
	}
	if (h.ok && strcmp(h.type, "acceptor.listening") == 0) {
		json_t *port = json_object_get(kh_node_current_event(n), "port");
		if (json_is_integer(port))
			n->listen_port = (uint16_t)json_integer_value(port);
	}
	if (n->cb.on_event)
		n->cb.on_event(n, lp->line, &h, n->ud);
	json_decref(n->cur_json);
	n->cur_json = NULL;
	n->cur_slot = NULL;
	n->cur_line = NULL;
}

/* A line parsed, or an empty object when it does not parse after all (the
 * head scan is lenient about scalars it does not need). */
static json_t *parse_line(const char *line, size_t len)
{
	json_t *ev = json_loadb(line, len, 0, NULL);
	if (!json_is_object(ev)) {
		json_decref(ev);
		ev = json_object();
	}
	return ev;
}

static int line_append(line_pipe *lp, const char *p, size_t len)
{
	size_t room = KH_MAX_EVENT_LINE - lp->len;
	if (len > room) {
		len = room;
		lp->cut = true;
	}
	if (lp->len + len + 1 > lp->cap) {
		size_t cap = lp->cap ? lp->cap : 256;
		while (cap < lp->len + len + 1)
			cap *= 2;
		char *l = keel_realloc(lp->line, cap);
		if (l == NULL)
			return -ENOMEM;
		lp->line = l;
		lp->cap = cap;
	}
	memcpy(lp->line + lp->len, p, len);
	lp->len += len;
	return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	kh_node *n = ((line_pipe *)h)->node;
	(void)suggested;
	buf->base = n->readbuf;
	buf->len = sizeof(n->readbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	line_pipe *lp = (line_pipe *)s;
	if (nread < 0) {
		/* EOF or error: a last line without '\n' still counts. */
		if (lp->len > 0 || lp->cut)
			deliver_line(lp);
		lp->len = 0;
		uv_close((uv_handle_t *)s, on_handle_closed);
		return;
	}
	const char *p = buf->base, *end = buf->base + nread;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t chunk = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (line_append(lp, p, chunk) != 0)
			lp->cut = true;
		if (!nl)
			break;
		if (lp->line == NULL && line_append(lp, "", 0) != 0)
			break;
		deliver_line(lp);
		lp->len = 0;
		lp->cut = false;
		p = nl + 1;
	}
}

static void on_proc_exit(uv_process_t *p, int64_t status, int signum)
{
	kh_node *n = p->data;
	n->exited = true;
	n->exit_code = signum ? -1 : status;
	n->term_signal = signum;
	uv_close((uv_handle_t *)p, on_handle_closed);
}

int kh_node_start(kh_node *n)
{
	char listen[128], vg_tool[64], vg_xml[4200], vg_supp[4200], vg_test[300];
	const char *args[48];
	unsigned a = 0;
	uv_process_options_t opt = { 0 };
	uv_stdio_container_t stdio[4];
	int rc;

	if (n->up)
		return -EBUSY;
	if (n->fiu_env >= 0) {
		char kv[32];
		uint32_t seed = kh_node_fiu_seed_for(n->fiu_seed, n->incarnation + 1);
		snprintf(kv, sizeof(kv), "FIU_PRNG_SEED=%" PRIu32, seed);
		char *d = keel_strdup(kv);
		if (d == NULL)
			return -ENOMEM;
		keel_free(n->env[n->fiu_env]);
		n->env[n->fiu_env] = d;
		n->fiu_cur = seed;
	}
	snprintf(listen, sizeof(listen), "%s:%u", n->host, n->port);
	args[a++] = n->self_exe;
	args[a++] = "exec-node";
	args[a++] = "--";
	if (n->netns) {
		/* setns, then exec: the same process (kill, pid) in its namespace */
		args[a++] = "ip";
		args[a++] = "netns";
		args[a++] = "exec";
		args[a++] = n->netns;
	}
	if (n->command) {
		for (size_t i = 0; n->command[i] && a < sizeof(args) / sizeof(args[0]) - 1; i++)
			args[a++] = n->command[i];
		goto spawn;
	}
	if (n->fiu_prefix) {
		args[a++] = "fiu-run";
		args[a++] = "-x";
		args[a++] = "-f";
		args[a++] = n->fiu_prefix;
	}
	if (n->preload) {
		/* fiu-run sets LD_PRELOAD to its own libraries: add ours after
		 * it, in the same process (sh execs) */
		args[a++] = "/bin/sh";
		args[a++] = "-c";
		args[a++] = "LD_PRELOAD=\"${LD_PRELOAD:+$LD_PRELOAD }$0\" exec \"$@\"";
		args[a++] = n->preload;
	}
	if (n->vg_tool) {
		snprintf(vg_tool, sizeof(vg_tool), "--tool=%s", n->vg_tool);
		snprintf(vg_xml, sizeof(vg_xml), "--xml-file=%s", n->vg_xml);
		snprintf(vg_test, sizeof(vg_test), "--xml-user-comment=<test>%s</test>",
			 n->vg_test ? n->vg_test : n->name);
		args[a++] = "valgrind";
		args[a++] = vg_tool;
		args[a++] = "--xml=yes";
		args[a++] = vg_xml;
		args[a++] = vg_test;
		args[a++] = "--track-fds=no";
		args[a++] = "--num-callers=24";
		if (n->vg_supp) {
			snprintf(vg_supp, sizeof(vg_supp), "--suppressions=%s", n->vg_supp);
			args[a++] = vg_supp;
		}
		if (strcmp(n->vg_tool, "memcheck") == 0) {
			args[a++] = "--leak-check=full";
			args[a++] = "--show-leak-kinds=definite,possible";
			args[a++] = "--errors-for-leak-kinds=definite";
		}
	}
	args[a++] = n->broker;
	args[a++] = "--name";
	args[a++] = n->name;
	args[a++] = "--listen";
	args[a++] = listen;
	args[a++] = "--data-dir";
	args[a++] = n->data_dir;
	args[a++] = "--events";
	args[a++] = "fd:3";
	if (n->config_path) {
		args[a++] = "--config";
		args[a++] = n->config_path;
	}
spawn:
	args[a] = NULL;

	for (int i = 0; i < PIPE__COUNT; i++) {
		line_pipe *lp = &n->pipes[i];
		lp->len = 0;
		lp->cut = false;
		uv_pipe_init(n->loop, &lp->pipe, 0);
		lp->pipe.data = n;
		stdio[i + 1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
		stdio[i + 1].data.stream = (uv_stream_t *)&lp->pipe;
	}
	stdio[0].flags = UV_IGNORE;
	assert(a < sizeof(args) / sizeof(args[0]));
	opt.file = n->self_exe;
	opt.env = n->env;
	opt.args = (char **)args;
	opt.stdio = stdio;
	opt.stdio_count = 4;
	opt.exit_cb = on_proc_exit;
	n->proc.data = n;
	n->exited = false;
	n->exit_code = -1;
	n->term_signal = 0;
	n->listen_port = 0;
	rc = uv_spawn(n->loop, &n->proc, &opt);
	if (rc != 0) {
		/* The process handle must be closed even on failure. */
		n->up = true;
		n->pending = 1 + PIPE__COUNT;
		uv_close((uv_handle_t *)&n->proc, on_handle_closed);
		for (int i = 0; i < PIPE__COUNT; i++)
			uv_close((uv_handle_t *)&n->pipes[i].pipe, on_handle_closed);
		/* on_down will fire from the close callbacks */
		return rc;
	}
	n->up = true;
	n->incarnation++;
	n->pid = n->proc.pid;
	n->pending = 1 + PIPE__COUNT;
	for (int i = 0; i < PIPE__COUNT; i++)
		uv_read_start((uv_stream_t *)&n->pipes[i].pipe, on_alloc, on_read);
	return 0;
}

int kh_node_signal(kh_node *n, int signum)
{
	if (!n->up || n->exited)
		return -ESRCH;
	int rc = uv_kill(n->pid, signum);
	if (rc == 0 && signum == SIGSTOP)
		n->paused = true;
	if (rc == 0 && signum == SIGCONT)
		n->paused = false;
	return rc;
}

const char *kh_node_name(const kh_node *n)
{
	return n->name;
}

const char *kh_node_host(const kh_node *n)
{
	return n->client_host[0] ? n->client_host : n->host;
}

uint16_t kh_node_port(const kh_node *n)
{
	if (n->client_host[0])
		return n->port; /* the proxy listens on the configured port */
	return n->listen_port ? n->listen_port : n->port;
}

void kh_node_set_client_host(kh_node *n, const char *host)
{
	snprintf(n->client_host, sizeof(n->client_host), "%s", host ? host : "");
}

bool kh_node_up(const kh_node *n)
{
	return n->up;
}

bool kh_node_paused(const kh_node *n)
{
	return n->paused;
}

int kh_node_pid(const kh_node *n)
{
	return n->pid;
}

void kh_node_last_exit(const kh_node *n, int64_t *code, int *signal)
{
	*code = n->exit_code;
	*signal = n->term_signal;
}

unsigned kh_node_incarnation(const kh_node *n)
{
	return n->incarnation;
}

uint32_t kh_node_fiu_seed(const kh_node *n)
{
	return n->fiu_cur;
}

uint32_t kh_node_fiu_seed_for(uint64_t base, unsigned incarnation)
{
	kh_rand r;
	kh_rand_init(&r, base, incarnation, 0x666975 /* "fiu" */, 0);
	return (uint32_t)(kh_rand_next(&r) & 0x7fffffffu);
}

size_t kh_node_event_count(const kh_node *n)
{
	return n->nevents;
}

json_t *kh_node_event(kh_node *n, size_t i)
{
	if (i >= n->nevents)
		return NULL;
	ev_slot *sl = &n->events[i];
	if (sl->json == NULL)
		sl->json = parse_line(sl->line, strlen(sl->line));
	return sl->json;
}

const char *kh_node_event_type(const kh_node *n, size_t i)
{
	return i < n->nevents ? n->events[i].type : "";
}

json_t *kh_node_current_event(kh_node *n)
{
	if (n->cur_line == NULL)
		return NULL;
	if (n->cur_slot) {
		if (n->cur_slot->json == NULL)
			n->cur_slot->json = parse_line(n->cur_line, n->cur_len);
		return n->cur_slot->json;
	}
	if (n->cur_json == NULL)
		n->cur_json = parse_line(n->cur_line, n->cur_len);
	return n->cur_json;
}
