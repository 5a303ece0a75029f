/*
 * main.c - keel-harness: dispatches `keel-harness COMMAND ARGS...` to run,
 * lint, replay (runner.c, replay.c), show, report, import (commands.h),
 * merge (merge.c), history and flaky (history.c, flaky.c),
 * and the hidden modes the runner uses itself: `scenario-child` (one
 * scenario, child.c), `exec-node -- CMD...` (PR_SET_PDEATHSIG, then
 * exec: nodes die with the scenario child) and `zookeeper-node` (a
 * scenario's ZooKeeper server, zknode.c).  Main thread.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "child.h"
#include "commands.h"
#include "history.h"
#include "merge.h"
#include "replay.h"
#include "shrink.h"
#include "runner.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: keel-harness COMMAND [ARGS...]\n"
		"  run [PATH...]        run scenarios (default scenarios/), record, report\n"
		"  lint FILE...         check scenario files\n"
		"  replay RUN.db        run recorded scenarios again and compare their events\n"
		"  shrink RUN.db        the smallest fault schedule that fails a scenario the same way\n"
		"  show RUN.db          show a recorded run\n"
		"  report RUN.db        write a report of a recorded run\n"
		"  import ...           import into a recording\n"
		"  merge OUT.db IN.db...  one recording from several (shards, runs)\n"
		"  history add RUN.db...  add recordings to the history (runs/history.db)\n"
		"  flaky                scenarios with mixed outcomes on one commit (history)\n"
		"`keel-harness COMMAND --help` describes each.  Exit: 0 ok, 1 failed, 2 usage.\n");
}

static int exec_node(int argc, char **argv)
{
	int i = 1;
	if (i < argc && strcmp(argv[i], "--") == 0)
		i++;
	if (i >= argc) {
		fprintf(stderr, "keel-harness exec-node -- CMD ARGS...\n");
		return 2;
	}
	/* Die with the parent; if it is already gone, do not start at all. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() == 1)
		return 127;
	execvp(argv[i], argv + i);
	fprintf(stderr, "keel-harness exec-node: %s: %s\n", argv[i], strerror(errno));
	return 127;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
		{ "run", kh_cmd_run },
		{ "lint", kh_cmd_lint },
		{ "replay", kh_cmd_replay },
		{ "shrink", kh_cmd_shrink },
		{ "show", kh_cmd_show },
		{ "report", kh_cmd_report },
		{ "import", kh_cmd_import },
		{ "merge", kh_cmd_merge },
		{ "history", kh_cmd_history },
		{ "flaky", kh_cmd_flaky },
		{ "scenario-child", kh_child_main },
		{ "exec-node", exec_node },
		{ "zookeeper-node", kh_cmd_zookeeper_node },
	};
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("keel-harness %s\n", KEEL_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].fn(argc - 1, argv + 1);
	}
	fprintf(stderr, "keel-harness: unknown command \"%s\"\n", argv[1]);
	usage(stderr);
	return 2;
}
