/*
 * commands.h - keel-harness subcommands implemented outside main.c.
 *
 * main.c dispatches `keel-harness <cmd> ARGS...` to these.  Each receives
 * argv with argv[0] == the subcommand name (getopt-ready) and returns the
 * process exit code: 0 success, 1 a check or comparison failed, 2 usage or
 * input error (DESIGN.md "Names").  Main thread only.
 */
#ifndef KH_COMMANDS_H
#define KH_COMMANDS_H

/* keel-harness show RUN.db ...    (show.c) */
int kh_cmd_show(int argc, char **argv);
/* keel-harness report RUN.db ...  (report.c) */
int kh_cmd_report(int argc, char **argv);
/* keel-harness import ...         (import.c) */
int kh_cmd_import(int argc, char **argv);
/* Hidden: a scenario's ZooKeeper node (zknode.c). */
int kh_cmd_zookeeper_node(int argc, char **argv);

#endif
