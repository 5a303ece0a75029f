/*
 * keel-leaks.c - reads what the leak checks left in logs and files:
 * `scan` groups the leaks of everything the project writes (broker
 * output, events, harness console, TAP, JUnit, run databases, CI logs) by
 * what leaked and where it was created; `valgrind` summarises Valgrind
 * XML files.  Formats and exit codes: leakcheck/README.md.  This file is
 * main and the usage; it calls kl_scan.c and kl_valgrind.c (kl.h says
 * who calls whom).  Single-threaded.
 */
#include <stdio.h>
#include <string.h>

#include "kl.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " KL_PROG " scan [--json] FILE...\n"
		"       " KL_PROG " valgrind [--json] [--leak-errors=KINDS] [--allow-incomplete]\n"
		"                FILE.xml...\n"
		"\n"
		"scan      read leak reports from broker stdout and stderr, events\n"
		"          JSON Lines (thread.leak), the harness console, TAP, JUnit\n"
		"          XML, a harness run's SQLite file, and CI logs (timestamps,\n"
		"          job prefixes, ANSI colours, several jobs in one file);\n"
		"          FILE - is standard input.  Groups leaks by kind, name and\n"
		"          creation site (the same thread in several files once) and\n"
		"          says how many, which tests, owners, files and jobs, first\n"
		"          and last seen, and the creation and current stacks.\n"
		"valgrind  summarise Valgrind XML output (--xml=yes): errors and leak\n"
		"          kinds per file and test, deduplicated by stack.  An\n"
		"          unfinished file (Valgrind killed) is an error.\n"
		"  --json  print one JSON object instead of text\n"
		"  --leak-errors=KINDS  leak kinds that count as errors, as Valgrind's\n"
		"          --errors-for-leak-kinds: definite,indirect,possible,reachable,\n"
		"          all or none (default definite,possible)\n"
		"\n"
		"Exit status: 0 nothing found, 1 leaks (scan) or errors (valgrind)\n"
		"found, 2 usage or read error.\n");
}

int main(int argc, char **argv)
{
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "scan") == 0)
		return kl_scan_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "valgrind") == 0)
		return kl_valgrind_main(argc - 1, argv + 1);
	if (argc >= 2)
		fprintf(stderr, KL_PROG ": unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
