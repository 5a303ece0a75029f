/*
 * scenario_fault.h - the clock and disk fault steps of the scenario format
 * (scenarios/README.md "Clock faults", "Disk faults") and the node key
 * `disk-size`, below scenario.c (which includes this and calls in, never
 * the other way): their types, libcyaml fields, checks (errors "FILE:LINE:
 * KEY: problem", through the kh_net_lint of scenario_net.h), params JSON.
 * Pure; any thread.
 */
#ifndef KH_SCENARIO_FAULT_H
#define KH_SCENARIO_FAULT_H

#include <cyaml/cyaml.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "scenario_net.h"

/* clock: a node's clocks through libfaketime (each of offset, jump, rate
 * optional; reset alone).  Durations are written "+5s", "-30s", "250ms",
 * "2m", "1h" (or a bare number of seconds). */
typedef struct kh_clock_step {
	char *node;
	char *target;           /* live | backup | one | all, when no node */
	char *offset;           /* the clock reads real time + this from now on */
	char *jump;             /* the clock moves by this, from where it is */
	double rate;            /* clock seconds per real second from now on; 0 = as is */
	bool reset;             /* real time again, rate 1 */
	double offset_s;        /* parsed offset (valid when offset) */
	double jump_s;          /* parsed jump (valid when jump) */
} kh_clock_step;

/* disk: libfiu I/O points of a node fail (or stop failing). */
typedef struct kh_disk_step {
	char *node;
	char *target;           /* live | backup | one | all, when no node */
	char **faults;          /* points to enable, e.g. journal/write */
	unsigned faults_count;
	unsigned pick;          /* > 0: this many points of the broker's I/O set, drawn
				   from the scenario's seed */
	double probability;     /* 0 = every call fails; else each call with this */
	int failinfo;           /* the errno the failing call gets; default EIO (5) */
	bool off;               /* disable every point this node's disk steps enabled */
} kh_disk_step;

/* The broker's I/O fault points (libfiu), what `pick` draws from. */
extern const char *const kh_disk_points[];
extern const unsigned kh_disk_points_count;

extern const cyaml_schema_field_t kh__clock_fields[];
extern const cyaml_schema_field_t kh__disk_fields[];

/* The step at `path` ("steps[3].clock"): 0 or -EINVAL (through l). */
int kh__fault_check_clock(const kh_net_lint *l, const char *path, kh_clock_step *ck);
int kh__fault_check_disk(const kh_net_lint *l, const char *path, kh_disk_step *d);
/* A node's `disk-size` text ("8MiB", "512KiB", "1GiB", bytes): 0 and
 * *bytes (at least KH_DISK_SIZE_MIN), or -EINVAL through l at `path`. */
int kh__fault_check_disk_size(const kh_net_lint *l, const char *path, const char *text,
			      uint64_t *bytes);
/* A duration as written for clock steps: 0 and *s, or -EINVAL. */
int kh__fault_parse_duration(const char *text, double *s);
/* The step's params (steps.params) into `o`: the one given. */
void kh__fault_params(const kh_clock_step *ck, const kh_disk_step *d, json_t *o);

#endif
