/*
 * child_clock.c - clock faults (child_int.h; scenarios/README.md "Clock
 * faults"): nodes run under libfaketime (LD_PRELOAD, added after fiu-run
 * by node.c's wrapper), each reading its clock from a file of its own
 * (FAKETIME_TIMESTAMP_FILE, FAKETIME_NO_CACHE: read on every call), which
 * the `clock` step rewrites: "<offset> x<rate>".  Owns c->fx (also the
 * disk faults' state, child_disk.c, which unmounts before child__fx_close)
 * and the targets of both kinds of step.  Invariant: a node's apparent offset (its clock minus real time)
 * is continuous across rate changes and restarts, except where a step
 * says otherwise (offset, jump, reset).  Main thread.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "child_int.h"
#include "kh_rand.h"

/* Where Debian and a source build put libfaketime (the MT variant: the
 * broker is threaded); KH_FAKETIME_LIB overrides. */
static const char *const faketime_libs[] = {
	"/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
	"/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
	"/usr/lib/faketime/libfaketimeMT.so.1",
	"/usr/local/lib/faketime/libfaketimeMT.so.1",
};

static const char *faketime_lib(void)
{
	const char *env = getenv("KH_FAKETIME_LIB");
	if (env && *env)
		return access(env, R_OK) == 0 ? env : NULL;
	for (size_t i = 0; i < sizeof(faketime_libs) / sizeof(faketime_libs[0]); i++) {
		if (access(faketime_libs[i], R_OK) == 0)
			return faketime_libs[i];
	}
	return NULL;
}

/* Whether node ni's clock may be faked by a step: named by one, or any
 * clock step has a target (resolved only when it runs), or a chaos step
 * has clock faults (any node may be drawn). */
static bool clock_named(const kh_scenario *sc, unsigned ni)
{
	for (unsigned i = 0; i < sc->steps_count; i++) {
		const kh_clock_step *ck = sc->steps[i].clock;
		if (ck && (ck->target || strcmp(ck->node, sc->nodes[ni].name) == 0))
			return true;
		if (sc->steps[i].chaos && sc->steps[i].chaos->uses_clock)
			return true;
	}
	return false;
}

static int write_clock(child *c, unsigned ni)
{
	fx_node *f = &c->fx->nodes[ni];
	char tmp[4300], text[96];
	snprintf(tmp, sizeof(tmp), "%s.tmp", f->clock_file);
	snprintf(text, sizeof(text), "%+.6f x%.6f\n", f->offset_s, f->rate);
	FILE *fp = fopen(tmp, "w");
	if (fp == NULL)
		return -errno;
	fputs(text, fp);
	if (fclose(fp) != 0)
		return -EIO;
	/* one rename: a reader sees the old text or the new, never half */
	return rename(tmp, f->clock_file) == 0 ? 0 : -errno;
}

int child__fx_init(child *c, char *err, size_t errlen)
{
	unsigned n = c->sc->nodes_count;
	c->fx = keel_calloc(1, sizeof(*c->fx));
	if (c->fx == NULL || (c->fx->nodes = keel_calloc(n, sizeof(*c->fx->nodes))) == NULL)
		return -ENOMEM;
	kh_rand_init(&c->fx->rng, c->o->seed, 0x6678 /* "fx" */, 0, 0);
	for (unsigned i = 0; i < n; i++) {
		fx_node *f = &c->fx->nodes[i];
		f->rate = 1.0;
		f->start_ns = -1;
		if (!c->sc->uses_clock || !clock_named(c->sc, i))
			continue;
		if ((c->fx->faketime = faketime_lib()) == NULL) {
			snprintf(err, errlen, "clock steps need libfaketime (Debian package "
				 "libfaketime; or KH_FAKETIME_LIB=PATH): %s not found",
				 getenv("KH_FAKETIME_LIB") ? getenv("KH_FAKETIME_LIB") :
				 faketime_libs[0]);
			return -ENOENT;
		}
		f->faked = true;
		snprintf(f->clock_file, sizeof(f->clock_file), "%s/%s.faketime", c->o->workdir,
			 c->sc->nodes[i].name);
		int rc = write_clock(c, i);
		if (rc) {
			snprintf(err, errlen, "%.1000s: %s", f->clock_file, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

unsigned child__clock_env(child *c, unsigned ni, const char **env, char *buf, size_t len)
{
	fx_node *f = &c->fx->nodes[ni];
	if (!f->faked)
		return 0;
	snprintf(buf, len, "FAKETIME_TIMESTAMP_FILE=%s", f->clock_file);
	env[0] = buf;
	env[1] = "FAKETIME_NO_CACHE=1"; /* every call reads the file: a step is seen at once */
	env[2] = "NO_FAKE_STAT=1";      /* files keep their real times */
	return 3;
}

const char *child__clock_preload(child *c, unsigned ni)
{
	return c->fx && c->fx->nodes[ni].faked ? c->fx->faketime : NULL;
}

bool child__clock_faked(child *c, unsigned ni)
{
	return c->fx && c->fx->nodes[ni].faked;
}

/* The apparent offset (clock minus real time) of node ni now: libfaketime
 * runs a process's clock at start + (t - start) * rate + offset. */
static double apparent(const fx_node *f, int64_t now)
{
	double el = f->start_ns < 0 ? 0 : (double)(now - f->start_ns) / 1e9;
	return el * (f->rate - 1.0) + f->offset_s;
}

void child__clock_before_start(child *c, unsigned ni)
{
	if (!child__clock_faked(c, ni))
		return;
	fx_node *f = &c->fx->nodes[ni];
	int64_t now = kh_now_ns();
	/* the new process starts where the clock is (a machine's clock runs
	 * on while its broker is down) */
	f->offset_s = apparent(f, now);
	f->start_ns = now;
	if (write_clock(c, ni) != 0)
		kh_recorder_log(c->rec, c->sid, KH_HARNESS_NODE, now,
				"keel-harness: cannot rewrite a clock file");
}

/* ---- targets (clock and disk steps) ------------------------------------ */

/* The state node ni said last, or NULL (down, or no state yet). */
static const char *last_state(child *c, unsigned ni)
{
	kh_node *n = c->nodes[ni];
	if (!kh_node_up(n))
		return NULL;
	for (size_t i = kh_node_event_count(n); i-- > 0;) {
		if (strcmp(kh_node_event_type(n, i), "state") == 0)
			return json_string_value(json_object_get(kh_node_event(n, i), "state"));
	}
	return NULL;
}

int child__fx_targets(child *c, const char *node, const char *target, bool *pick,
		      char *err, size_t errlen)
{
	unsigned n = c->sc->nodes_count, found = 0;
	for (unsigned i = 0; i < n; i++)
		pick[i] = false;
	if (node) {
		pick[kh_scenario_node_index(c->sc, node)] = true;
		return 1;
	}
	if (strcmp(target, "all") == 0) {
		for (unsigned i = 0; i < n; i++)
			pick[i] = true;
		return (int)n;
	}
	if (strcmp(target, "one") == 0) {
		pick[kh_rand_below(&c->fx->rng, n)] = true;
		return 1;
	}
	bool live = strcmp(target, "live") == 0;
	size_t o = 0;
	err[0] = '\0';
	for (unsigned i = 0; i < n; i++) {
		const char *st = last_state(c, i);
		bool hit = live ? st && (strcmp(st, "LIVE") == 0 || strcmp(st, "FAILING_BACK") == 0)
				: st && strncmp(st, "BACKUP", 6) == 0;
		pick[i] = hit;
		found += hit;
		if (o < errlen)
			o += (size_t)snprintf(err + o, errlen - o, "%s%s %s", i ? ", " : "",
					      c->sc->nodes[i].name,
					      st ? st : kh_node_up(c->nodes[i]) ? "(no state yet)"
									: "down");
	}
	return (int)found;
}

/* ---- the step: clock ------------------------------------------------- */

void child__start_clock(child *c, const kh_step *st)
{
	const kh_clock_step *ck = st->clock;
	unsigned n = c->sc->nodes_count;
	bool *pick = keel_calloc(n, sizeof(*pick));
	char states[512], done[1024] = "";
	size_t o = 0;
	if (pick == NULL) {
		child__step_done(c, false, "clock: out of memory");
		return;
	}
	if (child__fx_targets(c, ck->node, ck->target, pick, states, sizeof(states)) == 0) {
		keel_free(pick);
		child__step_done(c, false, "clock: target %s: no node is %s now (%s)", ck->target,
				 strcmp(ck->target, "live") == 0 ? "serving" : "a backup", states);
		return;
	}
	int64_t now = kh_now_ns();
	for (unsigned i = 0; i < n; i++) {
		if (!pick[i])
			continue;
		fx_node *f = &c->fx->nodes[i];
		if (!f->faked) { /* lint lets a target reach it, setup faked them all */
			keel_free(pick);
			child__step_done(c, false, "clock %s: not run under libfaketime",
					 c->sc->nodes[i].name);
			return;
		}
		double before = apparent(f, now), el = f->start_ns < 0 ? 0 :
			(double)(now - f->start_ns) / 1e9;
		if (ck->reset) {
			f->offset_s = 0;
			f->rate = 1.0;
		} else {
			if (ck->rate > 0) {
				f->offset_s += el * (f->rate - ck->rate);
				f->rate = ck->rate;
			}
			if (ck->offset)
				f->offset_s = ck->offset_s - el * (f->rate - 1.0);
			if (ck->jump)
				f->offset_s += ck->jump_s;
		}
		int rc = write_clock(c, i);
		if (rc) {
			keel_free(pick);
			child__step_done(c, false, "clock %s: %s: %s", c->sc->nodes[i].name,
					 f->clock_file, strerror(-rc));
			return;
		}
		double after = apparent(f, now);
		json_t *ev = json_pack("{s:s, s:f, s:f, s:f}", "broker", c->sc->nodes[i].name,
				       "offset-s", after, "was-offset-s", before, "rate", f->rate);
		if (ev && ck->target)
			json_object_set_new(ev, "target", json_string(ck->target));
		if (ev && ck->jump)
			json_object_set_new(ev, "jump-s", json_real(ck->jump_s));
		child__harness_event(c, ck->reset ? "clock.reset" : "clock.set", ev);
		if (o < sizeof(done))
			o += (size_t)snprintf(done + o, sizeof(done) - o, "%s%s %+.3f s x%g",
					      o ? ", " : "", c->sc->nodes[i].name, after, f->rate);
	}
	keel_free(pick);
	child__step_done(c, true, "%s", done);
}

void child__fx_close(child *c)
{
	if (c->fx == NULL)
		return;
	keel_free(c->fx->nodes);
	keel_free(c->fx);
	c->fx = NULL;
}
