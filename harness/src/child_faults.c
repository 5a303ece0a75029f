/*
 * child_faults.c - fault steps (child_int.h): `fiu-ctrl` run against a node
 * started under fiu-run, to enable or disable a libfiu failure point (the
 * helper process, also run by disk steps: child__helper_spawn).  The
 * child runs at most one such helper at a time (c->helper, its stdout in
 * c->helper_text); the step ends once the process and its pipe are both
 * closed.  Main thread.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "child_int.h"

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
