/*
 * child_faults.c - fault steps (child_int.h): `fiu-ctrl` run against a node
 * started under fiu-run, to enable or disable a libfiu failure point (the
 * helper process, also run by disk steps: child__helper_spawn).  The
 * child runs at most one such helper at a time (c->helper, its stdout in
 * c->helper_text); the step ends once the process and its pipe are both
 * closed.  The chaos engine's disk faults run theirs in the background
 * (c->bg: one at a time, in order, each owning its process, pipe and
 * command; never the step's).  Main thread.
 */
#include <assert.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "child_int.h"

/* ---- background helpers (chaos faults) --------------------------------- */

typedef struct bg_helper {
	child *c;
	uv_process_t proc;
	uv_pipe_t out;
	bool running;           /* spawned (its handles open); else queued */
	bool exited;            /* its exit seen: no signal to its pid any more */
	unsigned pending;       /* handles still open */
	int64_t status;
	int signal;
	char *argv[KH_BG_HELPER_ARGS + 1];
	char text[512];
	size_t len;
	char node[64];
	struct bg_helper *next;
} bg_helper;

static void bg_free(bg_helper *h)
{
	for (unsigned i = 0; h->argv[i]; i++)
		keel_free(h->argv[i]);
	keel_free(h);
}

static void bg_start_next(child *c);

static void bg_closed(uv_handle_t *hd)
{
	bg_helper *h = hd->data;
	child *c = h->c;
	if (--h->pending > 0)
		return;
	if (!c->finishing && (h->signal || h->status != 0 || strstr(h->text, "rror"))) {
		char msg[800];
		snprintf(msg, sizeof(msg), "keel-harness: chaos: fiu-ctrl on %s failed (status %"
			 PRId64 ", signal %d): %.500s", h->node, h->status, h->signal, h->text);
		printf("[%8.3f s] %s\n", child__secs(kh_now_ns() - c->t0_ns), msg + 14);
		fflush(stdout);
		kh_recorder_log(c->rec, c->sid, KH_HARNESS_NODE, kh_now_ns(), msg);
	}
	assert(c->bg == h);
	c->bg = h->next;
	bg_free(h);
	if (c->finishing) {
		child__finish(c);
		return;
	}
	bg_start_next(c);
}

static void bg_exit(uv_process_t *p, int64_t status, int signum)
{
	bg_helper *h = p->data;
	h->exited = true;
	h->status = status;
	h->signal = signum;
	uv_close((uv_handle_t *)p, bg_closed);
}

static void bg_alloc(uv_handle_t *hd, size_t s, uv_buf_t *buf)
{
	bg_helper *h = hd->data;
	static char sink[256];
	(void)s;
	size_t room = sizeof(h->text) - 1 - h->len;
	buf->base = room ? h->text + h->len : sink;
	buf->len = room ? room : sizeof(sink);
}

static void bg_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	bg_helper *h = st->data;
	if (n < 0) {
		uv_close((uv_handle_t *)st, bg_closed);
		return;
	}
	if (buf->base == h->text + h->len) {
		h->len += (size_t)n;
		h->text[h->len] = '\0';
	}
}

/* Spawns the first queued helper (c->bg's head) unless one runs. */
static void bg_start_next(child *c)
{
	bg_helper *h = c->bg;
	if (h == NULL || h->running || c->finishing)
		return;
	uv_stdio_container_t stdio[3];
	uv_process_options_t opt = { 0 };
	uv_pipe_init(&c->loop, &h->out, 0);
	h->out.data = h;
	h->proc.data = h;
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *)&h->out;
	stdio[2].flags = UV_INHERIT_FD;
	stdio[2].data.fd = 2;
	opt.file = h->argv[0];
	opt.args = h->argv;
	opt.stdio = stdio;
	opt.stdio_count = 3;
	opt.exit_cb = bg_exit;
	h->running = true;
	h->pending = 2;
	int rc = uv_spawn(&c->loop, &h->proc, &opt);
	if (rc) {
		h->status = -1;
		snprintf(h->text, sizeof(h->text), "cannot run %s: %s (is fiu-utils installed?)",
			 h->argv[0], uv_strerror(rc));
		uv_close((uv_handle_t *)&h->proc, bg_closed);
		uv_close((uv_handle_t *)&h->out, bg_closed);
		return;
	}
	uv_read_start((uv_stream_t *)&h->out, bg_alloc, bg_read);
}

/* Queues args as a background helper about node ni. */
static void bg_queue(child *c, int ni, char **args)
{
	bg_helper *h = keel_calloc(1, sizeof(*h));
	unsigned n = 0;
	if (h == NULL) {
		child__step_done(c, false, "out of memory");
		return;
	}
	h->c = c;
	snprintf(h->node, sizeof(h->node), "%s", c->sc->nodes[ni].name);
	for (; args[n] && n < KH_BG_HELPER_ARGS; n++) {
		if ((h->argv[n] = keel_strdup(args[n])) == NULL) {
			bg_free(h);
			child__step_done(c, false, "out of memory");
			return;
		}
	}
	bg_helper **tail = &c->bg;
	while (*tail)
		tail = &(*tail)->next;
	*tail = h;
	bg_start_next(c);
	child__step_done(c, true, "fiu-ctrl %s", h->running ? "started" : "queued");
}

bool child__bg_helpers_stop(child *c)
{
	/* the queued ones go; the running one is killed and ends in bg_closed */
	bg_helper *h = c->bg, *q = h ? h->next : NULL;
	if (h && !h->running) {
		q = h;
		c->bg = h = NULL;
	}
	while (q) {
		bg_helper *next = q->next;
		bg_free(q);
		q = next;
	}
	if (h == NULL)
		return false;
	h->next = NULL;
	if (!h->exited && h->pending == 2)
		uv_process_kill(&h->proc, SIGKILL);
	return true;
}

/* ---- steps: fault (fiu-ctrl) ------------------------------------------- */

static void helper_check(child *c)
{
	if (c->helper_pending > 0)
		return;
	if (c->finishing) {
		child__finish(c);
		return;
	}
	if (c->op_msg[0])
		child__step_done(c, false, "%s", c->op_msg);
	else if (c->helper_signal || c->helper_status != 0 || strstr(c->helper_text, "rror"))
		child__step_done(c, false, "fiu-ctrl failed (status %" PRId64 ", signal %d): %s",
				 c->helper_status, c->helper_signal, c->helper_text);
	else
		child__step_done(c, true, "ok");
}

static void on_helper_closed(uv_handle_t *h)
{
	child *c = h->data;
	c->helper_pending--;
	helper_check(c);
}

static void on_helper_exit(uv_process_t *p, int64_t status, int signum)
{
	child *c = p->data;
	c->helper_status = status;
	c->helper_signal = signum;
	uv_close((uv_handle_t *)p, on_helper_closed);
}

static void on_helper_alloc(uv_handle_t *h, size_t s, uv_buf_t *buf)
{
	child *c = h->data;
	(void)s;
	size_t room = sizeof(c->helper_text) - 1 - c->helper_len;
	static char sink[256];
	if (room == 0) {
		buf->base = sink;
		buf->len = sizeof(sink);
		return;
	}
	buf->base = c->helper_text + c->helper_len;
	buf->len = room;
}

static void on_helper_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	child *c = s->data;
	if (n < 0) {
		uv_close((uv_handle_t *)s, on_helper_closed);
		return;
	}
	if (buf->base == c->helper_text + c->helper_len) {
		c->helper_len += (size_t)n;
		c->helper_text[c->helper_len] = '\0';
	}
}

/* Runs args[0] (fiu-ctrl, or sh for several nodes) as the step's helper:
 * its stdout kept in c->helper_text, the step done once the process and
 * its pipe are closed (helper_check).  ni: the node it is about. */
void child__helper_spawn(child *c, int ni, char **args)
{
	uv_stdio_container_t stdio[3];
	uv_process_options_t opt = { 0 };
	if (c->exec) {
		bg_queue(c, ni, args);
		return;
	}
	c->helper_len = 0;
	c->helper_text[0] = '\0';
	c->op_msg[0] = '\0';
	uv_pipe_init(&c->loop, &c->helper_out, 0);
	c->helper_out.data = c;
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *)&c->helper_out;
	stdio[2].flags = UV_INHERIT_FD;
	stdio[2].data.fd = 2;
	opt.file = args[0];
	opt.args = args;
	opt.stdio = stdio;
	opt.stdio_count = 3;
	opt.exit_cb = on_helper_exit;
	c->helper.data = c;
	c->op = OP_HELPER;
	c->op_node = ni;
	c->helper_pending = 2;
	int rc = uv_spawn(&c->loop, &c->helper, &opt);
	if (rc) {
		snprintf(c->op_msg, sizeof(c->op_msg), "cannot run %s: %s (is fiu-utils "
			 "installed?)", args[0], uv_strerror(rc));
		uv_close((uv_handle_t *)&c->helper, on_helper_closed);
		uv_close((uv_handle_t *)&c->helper_out, on_helper_closed);
		return;
	}
	uv_read_start((uv_stream_t *)&c->helper_out, on_helper_alloc, on_helper_read);
}

void child__start_fault(child *c, const kh_step *st)
{
	const kh_fault *f = st->fault;
	int ni = kh_scenario_node_index(c->sc, f->node);
	kh_node *n = c->nodes[ni];
	char cmd[512], pid[16], prefix[4096];
	if (!kh_node_up(n)) {
		child__step_done(c, false, "fault %s on %s: node not running", f->name, f->node);
		return;
	}
	if (!f->enable)
		snprintf(cmd, sizeof(cmd), "disable name=%s", f->name);
	else if (f->probability > 0)
		snprintf(cmd, sizeof(cmd), "enable_random name=%s,failinfo=%d,probability=%g",
			 f->name, f->failinfo, f->probability);
	else
		snprintf(cmd, sizeof(cmd), "enable name=%s,failinfo=%d", f->name, f->failinfo);
	snprintf(pid, sizeof(pid), "%d", kh_node_pid(n));
	snprintf(prefix, sizeof(prefix), "%s/fiu-%s", c->o->workdir, f->node);
	char *args[] = { "fiu-ctrl", "-f", prefix, "-c", cmd, pid, NULL };
	child__helper_spawn(c, ni, args);
}

void child__fault_deadline(child *c, const kh_step *st)
{
	(void)st;
	snprintf(c->op_msg, sizeof(c->op_msg), "fiu-ctrl did not finish in time");
	uv_process_kill(&c->helper, SIGKILL);
}
