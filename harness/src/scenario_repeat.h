/*
 * scenario_repeat.h - the `repeat` block of the scenario format
 * (scenarios/README.md "Repeat"): `- repeat: {count: N, steps: [...]}`
 * runs its steps N times.  Below scenario.c (which includes this and
 * calls in, never the other way): the block's type, its checks, and the
 * flattening of a loaded step list into the list that runs, where each
 * copy of a repeated step carries its iteration label ("3/10"; nested
 * blocks "1/2.3/10", outermost first).  Pure; any thread.
 */
#ifndef KH_SCENARIO_REPEAT_H
#define KH_SCENARIO_REPEAT_H

#include <stdbool.h>
#include <stddef.h>

struct kh_step;

/* repeat: its steps, `count` times. */
typedef struct kh_repeat {
	unsigned count;
	struct kh_step *steps;
	unsigned steps_count;
} kh_repeat;

/* Where a step of the flat list came from (the list itself holds shallow
 * copies of the loaded steps: their pointers are the loaded step's, and
 * their `repeat_label` says the iteration: "3/10", "1/2.3/10", "" outside
 * any block). */
typedef struct kh_flat_step {
	char *path;             /* the first copy's key path (steps[3].repeat.steps[1]),
				   keel_malloc'd; NULL for the later copies */
	unsigned first;         /* index of the first copy of the same loaded step */
} kh_flat_step;

typedef struct kh_repeat_lint {
	/* a problem at key path `path` (its line found by the caller) */
	void (*fail)(void *ud, const char *path, const char *msg);
	/* how many kinds a step names besides repeat */
	unsigned (*kinds)(const struct kh_step *st);
	void *ud;
} kh_repeat_lint;

/* The steps that run, from the loaded `steps`: each repeat block replaced
 * by its steps `count` times (nested blocks too, at most
 * KH_MAX_REPEAT_DEPTH deep), at most KH_MAX_RUN_STEPS in all.  0 and
 * *out (keel_calloc'd copies, *out_n of them) and *info (one each), or
 * -EINVAL (each problem reported through l->fail: a count out of range,
 * no steps, a block with another kind, too deep, too many steps) or
 * -ENOMEM. */
int kh__repeat_flatten(const kh_repeat_lint *l, struct kh_step *steps, unsigned n,
		       struct kh_step **out, kh_flat_step **info, unsigned *out_n);
/* Frees what kh__repeat_flatten gave *info (n entries).  NULL is fine. */
void kh__repeat_info_free(kh_flat_step *info, unsigned n);

#endif
