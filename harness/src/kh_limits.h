/*
 * kh_limits.h - every limit and default of keel-harness, both halves
 * (running: harness/src; reading a run: harness/reading), each with its
 * reason (the broker's are in broker/util/limits.h).  Times in the scenario
 * format are seconds (double); here they carry their unit in the name.
 */
#ifndef KH_LIMITS_H
#define KH_LIMITS_H

/* A scenario with no `timeout`: long enough for a restart cycle under
 * valgrind-free builds on 2 cores; scaled by --timeout-multiplier. */
#define KH_DEFAULT_SCENARIO_TIMEOUT_S 120.0
/* Upper bound for `timeout` and any `within` (a day): catches typos. */
#define KH_MAX_SECONDS 86400.0
/* A step with no `within` (awaits, produce, consume, stop). */
#define KH_DEFAULT_WITHIN_S 30.0
/* Nodes per scenario: the last byte of 127.77.<slot>.<n> is 1..250. */
#define KH_MAX_NODES 250
/* Address slots 127.77.<slot>.0/24 the runner rotates over (1..250), one
 * per running scenario, held machine-wide by a lock file each. */
#define KH_ADDR_SLOTS 250
/* Steps per scenario: a scenario is read by people. */
#define KH_MAX_STEPS 10000
/* Steps a scenario runs once its repeat blocks are unrolled: each is a
 * row of the recording and a line of the step log. */
#define KH_MAX_RUN_STEPS 20000
/* A repeat block's count, and how deep blocks nest: a soak is a run
 * with --repeat or ci/soak.sh, not a scenario of a million steps. */
#define KH_MAX_REPEAT_COUNT 1000
#define KH_MAX_REPEAT_DEPTH 3
/* A limit's value as a string literal, for messages. */
#define KH_STR_(x) #x
#define KH_STR(x) KH_STR_(x)
/* Predicates per await. */
#define KH_MAX_PREDICATES 32
/* Messages per produce step and body size (a harness, not a benchmark). */
#define KH_MAX_PRODUCE_COUNT 1000000
#define KH_MAX_BODY_BYTES (16 * 1024 * 1024)
/* Faults of one chaos step (generated, triggered or written): each is a
 * row and a few timers' worth of work; a schedule is read by people. */
#define KH_CHAOS_MAX_FAULTS 1000
/* A chaos step's defaults (scenarios/README.md "Chaos"): windows of 0.5
 * to 2 s (long enough for a pair's failure detector to notice at the top,
 * short enough to fit several in a short scenario), 0.2 to 1 s between
 * them, 2 s quiet after the final heal. */
#define KH_CHAOS_DEFAULT_MIN_S 0.5
#define KH_CHAOS_DEFAULT_MAX_S 2.0
#define KH_CHAOS_DEFAULT_GAP_MIN_S 0.2
#define KH_CHAOS_DEFAULT_GAP_MAX_S 1.0
#define KH_CHAOS_DEFAULT_QUIET_S 2.0
/* shrink's candidate runs unless --max-runs: ddmin needs O(n log n) runs
 * for a 1-minimal subset of n faults; 200 covers a hundred faults. */
#define KH_SHRINK_MAX_RUNS 200
/* A net fault's degradation unless the step says (chaos.net). */
#define KH_CHAOS_DEFAULT_DELAY_MS 50
#define KH_CHAOS_DEFAULT_JITTER_MS 30
#define KH_CHAOS_DEFAULT_LOSS 0.02
/* A chaos clock fault unless the step says (chaos.clock): rates within 5 %
 * of real time, half the drift the pair's fence covers
 * (KEEL_HA_DRIFT_PERCENT, 10, in broker/util/limits.h), so that a node
 * whose role changes inside the window (a fast backup that fails over)
 * is still inside it; jumps up to 10 s, forward on a node that does not
 * serve and back on one that serves (safe at any size: a backup's lease
 * only shortens, a live's fence only lengthens), past a 5 s
 * connection-ttl half the time. */
#define KH_CHAOS_DEFAULT_RATE_LO 0.95
#define KH_CHAOS_DEFAULT_RATE_HI 1.05
#define KH_CHAOS_DEFAULT_MAX_JUMP_S 10.0
/* A chaos disk fault unless the step says (chaos.disk): one point of the
 * broker's I/O set, one call in five failing (a fault that stops every
 * write is a `disk` step's, not a nemesis's). */
#define KH_CHAOS_DEFAULT_DISK_PICK 1
#define KH_CHAOS_DEFAULT_DISK_PROBABILITY 0.2
/* Arguments of a background helper (fiu-ctrl or sh -c SCRIPT). */
#define KH_BG_HELPER_ARGS 16
/* produce rate (messages/s): a paced producer's timer fires at most every
 * millisecond, so more than this is "as fast as it goes" (no rate). */
#define KH_MAX_PRODUCE_RATE 100000
/* A required string of a scenario (node, type, destination...) in bytes:
 * a typo, not a value, passes 4 KiB. */
#define KH_MAX_STRING_LEN 4096
/* One `where` predicate of an await, in bytes. */
#define KH_MAX_PREDICATE_LEN 1024
/* A scenario's `name`, in bytes: a line of the console and of reports. */
#define KH_MAX_SCENARIO_NAME_LEN 128
/* Nesting of a scenario file (libyaml scan). */
#define KH_MAX_YAML_DEPTH 16
/* Scenario file size. */
#define KH_MAX_SCENARIO_BYTES (1024 * 1024)
/* Errors lint reports per scenario file (the rest are counted), and the
 * text they fill: a file with more is rewritten, not fixed line by line. */
#define KH_LINT_MAX_ERRORS 50
#define KH_LINT_ERR_BYTES (KH_LINT_MAX_ERRORS * 320)
/* Longest scenario key path (steps[3].await.where[0]) kept for error
 * messages and step labels. */
#define KH_PATH_MAX 512
/* Event lines longer than this from a node are cut (and logged). */
#define KH_MAX_EVENT_LINE 65536
/* Events a node's in-memory history keeps for awaits (older ones stay in
 * the recording only). */
#define KH_MAX_NODE_EVENTS 100000
/* How many of a node's last events a failed await shows. */
#define KH_AWAIT_SHOW_EVENTS 8
/* Parallel scenarios (-j): each holds one of the KH_ADDR_SLOTS address
 * slots (127.77.<slot>.x) while it runs. */
#define KH_MAX_JOBS 64
/* Largest --timeout-multiplier: beyond 1000 a scenario's timeout is days,
 * i.e. none. */
#define KH_MAX_TIMEOUT_MULTIPLIER 1000.0
/* merge: shards of one run it checks for completeness (K/N with N up to
 * this; CI matrices are tens of jobs). */
#define KH_MERGE_MAX_SHARDS 1024
/* The history (runs/history.db) keeps this many scenario runs, the oldest
 * dropped first: about 40 MB at most, small enough for a CI cache (a row
 * is ~200 bytes), and a year of a 30-scenario suite run 20 times a day. */
#define KH_HISTORY_MAX_ROWS 200000
/* A history row's reason and first finding are cut to this (bytes): what
 * `flaky` shows per failure; the recording has the rest. */
#define KH_HISTORY_TEXT_BYTES 300
/* --balance history: a scenario's expected duration is the mean of its
 * last runs (this many): recent enough to follow a change. */
#define KH_BALANCE_LAST_RUNS 5
/* --balance history: a scenario the history does not know is expected to
 * take the median of those it knows, or this (s) when it knows none. */
#define KH_BALANCE_DEFAULT_S 10.0
/* run --deflake N: at most this many retries of a failed scenario. */
#define KH_MAX_DEFLAKE 100
/* flaky: failing seeds and distinct first findings listed per scenario
 * (the rest are counted). */
#define KH_FLAKY_MAX_SEEDS 10
#define KH_FLAKY_MAX_FINDINGS 3
/* Child output kept per scenario (its last bytes) and shown when it fails. */
#define KH_MAX_CHILD_OUTPUT (64 * 1024)
/* STOMP port every node listens on, on its own loopback address (a
 * ZooKeeper node's client port too). */
#define KH_NODE_PORT 61613
/* A ZooKeeper node (zknode.c): members of an ensemble at most (3, 5 or 7
 * voters make sense); its quorum and election ports on its own address;
 * how often its probe asks `srvr`, and how long before it gives up (a
 * JVM starts in about a second; an ensemble waits for its quorum). */
#define KH_MAX_ZK_ENSEMBLE 7
#define KH_ZK_QUORUM_PORT 2888
#define KH_ZK_ELECTION_PORT 3888
#define KH_ZK_PROBE_MS 50
#define KH_ZK_READY_MAX_MS 120000
/* ZooKeeper's tick in scenarios: short, so session timeouts of a second
 * or two are allowed (the server grants 2..20 ticks by default; min and
 * max are set wider in zoo.cfg). */
#define KH_ZK_TICK_MS 100
/* --valgrind: nodes run ~20x slower under Valgrind; every scenario timeout
 * and step `within` is multiplied by this (on top of --timeout-multiplier). */
#define KH_VALGRIND_TIMEOUT_FACTOR 10.0
/* Leaks remembered per node process to tell a report line and the
 * thread.leak event of the same thread apart (more are still recorded). */
#define KH_MAX_LEAK_KEYS 64
/* keel-leaks' JSON read per Valgrind XML file. */
#define KH_MAX_VALGRIND_JSON (4 * 1024 * 1024)
/* Valgrind findings recorded per node process (the rest are counted). */
#define KH_MAX_VALGRIND_FINDINGS 50
/* The scenario child's own leak check (child_leaks.c): how long a thread
 * may take to end after everything was closed, when the scenario passed.
 * Short: the child joins nothing late; KEEL_LC_GRACE_MS overrides it. */
#define KH_CHILD_LEAK_GRACE_MS 2000
/* Leaks of the child's own report the runner records (the rest are counted
 * in the reason only). */
#define KH_MAX_CHILD_LEAKS 64
/* Nodes a produce or consume step may list (`nodes: [a, b]`): a pair, or
 * a few more for a chain; the client tries each in turn. */
#define KH_MAX_STEP_NODES 8
/* A step's client on a node list (child_clients.c): between two rounds
 * over the list it waits a backoff, from the first value doubling to the
 * last (a retry interval, not a wait for something: the step's deadline
 * bounds it).  Each attempt's connect timeout is at most the last, so a
 * node that hangs (paused) does not eat the step's deadline. */
#define KH_RECONNECT_BACKOFF_FIRST_MS 20
#define KH_RECONNECT_BACKOFF_MAX_MS 200
/* A pair producer's wait after a storage error closed its connection,
 * before it connects again and resends: the broker retries a failed
 * journal batch after 200 ms (broker/README.md "Storage errors"). */
#define KH_STORAGE_ERROR_PAUSE_MS 200
#define KH_RECONNECT_CONNECT_TIMEOUT_MS 5000
/* `keel-broker --version` (recorded with each run) answers at once; a
 * broker (or wrapper) that says nothing by then is recorded without one. */
#define KH_BROKER_VERSION_TIMEOUT_MS 5000

/* ---- replay (diff.c, diff_compare.c, replay.c) ------------------------ */
/* An event or step as replay prints it (type and its own fields), cut. */
#define KH_DIFF_DESC_MAX 400
/* Alignment of two sequences (steps, one node's events) by longest common
 * subsequence: past this many table cells (after the common start and
 * end are taken off) the rest is compared position by position. 4 M
 * cells are 16 MiB and well under a second. */
#define KH_DIFF_MAX_CELLS (4u * 1024 * 1024)
/* A compared event may follow the same acting step in both runs or one
 * before or after it: the harness begins the next step microseconds after
 * an await took the event before it (harness/README.md, "Replay"). */
#define KH_DIFF_PHASE_SLACK 1
/* Divergences printed per scenario (all are counted): the first ones say
 * where; hundreds after a failure say nothing more. */
#define KH_REPLAY_MAX_DIVERGENCES 40
/* ... of them per node: one node that went another way hides no other. */
#define KH_REPLAY_MAX_NODE_DIVERGENCES 12

/* ---- network faults (netproxy.c, child_net.c) ------------------------- */
/* Endpoints of the proxy (a scenario's nodes and the harness's clients):
 * a link from endpoint f listens on 127.<KH_NET_PROXY_OCTET + f>.<slot>.<n>,
 * so f stays below 256 - KH_NET_PROXY_OCTET. */
#define KH_NET_PROXY_OCTET 100
#define KH_NET_MAX_ENDPOINTS 150
/* Ports of one node the proxy carries (its STOMP port and the ports other
 * nodes' configs name after its host, e.g. ha.listen's). */
#define KH_NET_MAX_PORTS 16
/* What one direction of a proxied connection holds (queued for its due
 * time or being written) before it stops reading its source: the sender
 * then feels back pressure, as through a real link; a delay of d ms then
 * carries at most this much per d ms, as a TCP window does. */
#define KH_NET_BUFFER_BYTES (1024 * 1024)
/* One read of the proxy. */
#define KH_NET_READ_BYTES 65536
/* `loss` in the proxy: a lost segment costs TCP a retransmission timeout;
 * Linux's minimum RTO is 200 ms. */
#define KH_NET_LOSS_RTO_MS 200
/* A chunk due within this much of now is written now (timers are ms). */
#define KH_NET_TIMER_SLACK_US 500
/* listen() backlog of a proxy listener. */
#define KH_NET_LISTEN_BACKLOG 128
/* Bounds of a `net` step's values: a typo, not a test, passes them. */
#define KH_NET_MAX_DELAY_MS 600000
#define KH_NET_MAX_BANDWIDTH_KBPS 100000000
#define KH_NET_MAX_SLICE_BYTES (16 * 1024 * 1024)

/* The network-namespace mode's setup script (a few hundred bytes per
 * node): enough for KH_NET_MAX_ENDPOINTS endpoints. */
#define KH_NETNS_SCRIPT_BYTES (KH_NET_MAX_ENDPOINTS * 512 + 1024)

/* ---- event_head -------------------------------------------------------- */
/* Longest event type and ts kept from a line (longer ones are cut): the
 * broker's types and ISO-8601 times are far shorter. */
#define KH_EVENT_TYPE_MAX 96
#define KH_EVENT_TS_MAX 64

/* ---- reading a run (harness/reading: checks, show, report, import) ---- */

/* Findings listing individual message keys name at most this many. */
#define KH_FINDING_MAX_KEYS 10
/* A finding's message is cut at this length (a row, not a log). */
#define KH_FINDING_MAX_LEN 1024
/* Event ticks drawn per scenario in the HTML report: past this the SVG
 * grows beyond what a browser lays out quickly; the rest are counted. */
#define KH_REPORT_MAX_TICKS 4000
/* A JSON Lines event accepted by import is at most this long (the broker's
 * events are a few hundred bytes; a longer line is not an event). */
#define KH_IMPORT_MAX_LINE_BYTES 65536
/* show collapses runs of the same event type of one node past this many. */
#define KH_SHOW_MAX_RUN 5
/* A log line (broker stderr) kept by import is cut here: a log line is
 * text for people; longer is noise (a dump), not a reason to refuse. */
#define KH_IMPORT_MAX_LOG_LINE_BYTES 4096
/* A log line's HH:MM:SS.mmm is placed within half a day of the line
 * before it (or of its node's first event): logs carry no date. */
#define KH_IMPORT_LOG_DAY_NS (86400LL * 1000000000)
/* import --scenario-out: an await waits this many times as long as the
 * trace took to get there from the step before it (slower machines,
 * valgrind), and at least KH_SCENARIO_OUT_MIN_WITHIN_S. */
#define KH_SCENARIO_OUT_WITHIN_FACTOR 5.0
#define KH_SCENARIO_OUT_MIN_WITHIN_S 10
/* ... and the scenario's timeout is the sum of its waits plus this. */
#define KH_SCENARIO_OUT_SLACK_S 30
/* The `ha:` a re-enacted pair gets (the events do not say): the port the
 * scenarios use for replication, and scenarios/ha-failback.yaml's timings
 * (a check a second, a dead peer after 5 s, reconnects every 100 ms). */
#define KH_SCENARIO_OUT_REPL_PORT 61700
#define KH_SCENARIO_OUT_CHECK_PERIOD_MS 1000
#define KH_SCENARIO_OUT_CONNECTION_TTL_MS 5000
#define KH_SCENARIO_OUT_RETRY_INTERVAL_MS 100
/* Clock faults (libfaketime): an offset or jump of at most a year either
 * way (beyond, a typo), a rate between 1/1000 and 1000. */
#define KH_CLOCK_MAX_OFFSET_S (366.0 * 86400.0)
#define KH_CLOCK_MIN_RATE 0.001
#define KH_CLOCK_MAX_RATE 1000.0
/* Disk faults: points per disk step (the broker has a handful). */
#define KH_DISK_MAX_POINTS 16
/* `disk-size` of a node's tmpfs: at least 1 MiB (the broker's journal
 * files and its HA identity need some room to start at all), at most
 * 1 GiB (tmpfs is memory). */
#define KH_DISK_SIZE_MIN (1024ULL * 1024)
#define KH_DISK_SIZE_MAX (1024ULL * 1024 * 1024)
#endif
