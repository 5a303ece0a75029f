/*
 * child_disk.c - disk faults (child_int.h; scenarios/README.md "Disk
 * faults"): the `disk` step switches libfiu I/O points of nodes run under
 * fiu-run (named, or drawn from the broker's set with a stream of the
 * scenario's seed, the step's number and the node's: --seed repeats the
 * draw), through one helper (fiu-ctrl, or sh running one fiu-ctrl per
 * node); and a node's `disk-size`: its data directory on a tmpfs of that
 * size (mount(2), root only), unmounted at the end.  State in c->fx
 * (child_clock.c).  Main thread.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "child_int.h"
#include "kh_rand.h"

int child__disk_setup(child *c, unsigned ni, const char *data_dir, char *err, size_t errlen)
{
	const kh_node_spec *spec = &c->sc->nodes[ni];
	fx_node *f = &c->fx->nodes[ni];
	char opts[64];
	if (spec->disk_size_bytes == 0)
		return 0;
	if (mkdir(data_dir, 0755) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "%.1000s: %s", data_dir, strerror(errno));
		return -errno;
	}
	snprintf(opts, sizeof(opts), "size=%llu", (unsigned long long)spec->disk_size_bytes);
	if (mount("tmpfs", data_dir, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) {
		int e = errno;
		snprintf(err, errlen, "node %s: disk-size %s: cannot mount a tmpfs on %.900s (%s): "
			 "a size-limited disk needs root (CAP_SYS_ADMIN)", spec->name,
			 spec->disk_size, data_dir, strerror(e));
		return -e;
	}
	f->mounted = true;
	snprintf(f->mount_dir, sizeof(f->mount_dir), "%s", data_dir);
	kh_recorder_log(c->rec, c->sid, KH_HARNESS_NODE, kh_now_ns(), "keel-harness: node's "
			"data directory on a tmpfs (disk-size)");
	return 0;
}

void child__disk_teardown(child *c)
{
	for (unsigned i = 0; c->fx && c->fx->nodes && i < c->sc->nodes_count; i++) {
		fx_node *f = &c->fx->nodes[i];
		if (f->mounted && umount2(f->mount_dir, MNT_DETACH) == 0)
			f->mounted = false;
	}
}

/* The points a disk step switches on node ni: its faults, or `pick` of
 * the broker's set drawn without replacement.  Returns how many. */
static unsigned step_points(child *c, const kh_disk_step *d, unsigned ni,
			    const char **out)
{
	if (d->faults_count) {
		for (unsigned i = 0; i < d->faults_count; i++)
			out[i] = d->faults[i];
		return d->faults_count;
	}
	const char *pool[KH_DISK_MAX_POINTS];
	unsigned left = kh_disk_points_count;
	for (unsigned i = 0; i < left; i++)
		pool[i] = kh_disk_points[i];
	kh_rand r;
	kh_rand_init(&r, c->o->seed, 0x6469736b /* "disk" */, c->step, ni);
	for (unsigned i = 0; i < d->pick; i++) {
		unsigned k = (unsigned)kh_rand_below(&r, left);
		out[i] = pool[k];
		pool[k] = pool[--left];
	}
	return d->pick;
}

/* Appends `text` to the growing command (single-quoted when `quote`). */
static void put(char *buf, size_t len, size_t *o, const char *text, bool quote)
{
	if (*o >= len)
		return;
	*o += (size_t)snprintf(buf + *o, len - *o, quote ? " '%s'" : "%s", text);
}

void child__start_disk(child *c, const kh_step *st)
{
	const kh_disk_step *d = st->disk;
	unsigned n = c->sc->nodes_count;
	bool pick[KH_MAX_NODES];
	char states[512], script[8192] = "", done[1024] = "";
	size_t o = 0, od = 0;
	int last = -1;
	if (child__fx_targets(c, d->node, d->target, pick, states, sizeof(states)) == 0) {
		child__step_done(c, false, "disk: target %s: no node is %s now (%s)", d->target,
				 strcmp(d->target, "live") == 0 ? "serving" : "a backup", states);
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		if (!pick[i])
			continue;
		fx_node *f = &c->fx->nodes[i];
		kh_node *nd = c->nodes[i];
		const char *pts[KH_DISK_MAX_POINTS];
		unsigned np = 0;
		if (!kh_node_up(nd)) {
			child__step_done(c, false, "disk on %s: node not running",
					 c->sc->nodes[i].name);
			return;
		}
		if (f->points_pid != kh_node_pid(nd)) /* started again since: none enabled */
			f->npoints = 0;
		f->points_pid = kh_node_pid(nd);
		if (d->off) {
			for (unsigned k = 0; k < f->npoints; k++)
				pts[np++] = f->points[k];
		} else {
			np = step_points(c, d, i, pts);
		}
		char prefix[4200], pid[16];
		snprintf(prefix, sizeof(prefix), "%s/fiu-%s", c->o->workdir, c->sc->nodes[i].name);
		snprintf(pid, sizeof(pid), "%d", kh_node_pid(nd));
		json_t *names = json_array();
		if (np)
			put(script, sizeof(script), &o, o ? " && fiu-ctrl -f" : "exec fiu-ctrl -f",
			    false);
		if (np)
			put(script, sizeof(script), &o, prefix, true);
		for (unsigned k = 0; k < np; k++) {
			char cmd[256];
			if (d->off)
				snprintf(cmd, sizeof(cmd), "disable name=%s", pts[k]);
			else if (d->probability > 0)
				snprintf(cmd, sizeof(cmd), "enable_random name=%s,failinfo=%d,"
					 "probability=%g", pts[k], d->failinfo, d->probability);
			else
				snprintf(cmd, sizeof(cmd), "enable name=%s,failinfo=%d", pts[k],
					 d->failinfo);
			put(script, sizeof(script), &o, " -c", false);
			put(script, sizeof(script), &o, cmd, true);
			json_array_append_new(names, json_string(pts[k]));
		}
		if (np)
			put(script, sizeof(script), &o, pid, true);
		/* what this node has on now (for off and for the report) */
		if (d->off) {
			f->npoints = 0;
		} else {
			for (unsigned k = 0; k < np; k++) {
				bool have = false;
				for (unsigned j = 0; j < f->npoints && !have; j++)
					have = strcmp(f->points[j], pts[k]) == 0;
				if (!have && f->npoints < KH_DISK_MAX_POINTS)
					snprintf(f->points[f->npoints++], sizeof(f->points[0]), "%s",
						 pts[k]);
			}
		}
		json_t *ev = json_pack("{s:s, s:o}", "broker", c->sc->nodes[i].name, "points", names);
		if (ev && !d->off) {
			json_object_set_new(ev, "failinfo", json_integer(d->failinfo));
			if (d->probability > 0)
				json_object_set_new(ev, "probability", json_real(d->probability));
			if (d->pick)
				json_object_set_new(ev, "pick", json_integer(d->pick));
		}
		if (ev && d->target)
			json_object_set_new(ev, "target", json_string(d->target));
		child__harness_event(c, d->off ? "disk.off" : "disk.on", ev);
		od += (size_t)snprintf(done + od, od < sizeof(done) ? sizeof(done) - od : 0,
				       "%s%s %u point(s)", od ? ", " : "", c->sc->nodes[i].name, np);
		last = (int)i;
	}
	if (o == 0) {
		child__step_done(c, true, "%s (nothing to switch)", done);
		return;
	}
	if (o >= sizeof(script)) {
		child__step_done(c, false, "disk: too many points and nodes for one helper");
		return;
	}
	char *args[] = { "sh", "-c", script, NULL };
	child__helper_spawn(c, last, args);
}
