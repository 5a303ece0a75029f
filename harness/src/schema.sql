-- keel-harness recording schema, version 3 (harness/README.md documents it).
-- Version 2 only added columns (runs.broker_version, runs.broker_build_id,
-- scenarios.text, scenarios.text_sha256, steps.line), version 3 too (the
-- origin of a run in a merged recording: runs.uid, runs.shard,
-- runs.source, runs.source_run_id; scenarios.attempt), each at the end of
-- its table; kh_recorder_schema_apply adds them to an older file.
-- One SQLite file per run, WAL mode.  Every scenario child writes its own
-- rows (busy_timeout, one transaction per loop turn); the runner writes
-- runs and scenario outcomes.  Times: *_ns are CLOCK_MONOTONIC ns of the
-- harness host (comparable with a node's mono_ns: same host, same clock);
-- ts columns are UTC ISO-8601 strings.
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);                                   -- ('schema_version', '3')
CREATE TABLE IF NOT EXISTS runs (
  id          INTEGER PRIMARY KEY,
  started_at  TEXT NOT NULL,
  finished_at TEXT,
  seed        INTEGER NOT NULL,
  host        TEXT,
  git_rev     TEXT,
  options     TEXT,                  -- JSON: the command line options
  broker_version  TEXT,              -- `keel-broker --version` of the broker run
  broker_build_id TEXT,              -- its ELF GNU build id (hex), NULL if it has none
  uid         TEXT,                  -- 32 hex digits drawn at the run's start: the run's
                                     -- identity across merges and in the history
  shard       TEXT,                  -- 'K/N' of run --shard, NULL for a whole run
  source      TEXT,                  -- merge: the file the run was merged from (NULL: recorded here)
  source_run_id INTEGER              -- merge: its runs.id in that file
);
CREATE TABLE IF NOT EXISTS scenarios (
  id          INTEGER PRIMARY KEY,
  run_id      INTEGER NOT NULL REFERENCES runs(id),
  name        TEXT NOT NULL,
  file        TEXT NOT NULL,
  iteration   INTEGER NOT NULL DEFAULT 0,   -- --repeat index
  seed        INTEGER NOT NULL,
  address     TEXT,                  -- loopback address given to it (127.x.y.z)
  started_ns  INTEGER,
  finished_ns INTEGER,
  outcome     TEXT,                  -- pass | fail | timeout | crash
  reason      TEXT,
  text        TEXT,                  -- the scenario's YAML as run (what replay runs again)
  text_sha256 TEXT,                  -- SHA-256 of text (hex), as `sha256sum FILE` prints it
  attempt     INTEGER NOT NULL DEFAULT 0    -- run --deflake: 0 the first run, 1.. its retries
                                     -- (same seed and iteration)
);
CREATE TABLE IF NOT EXISTS nodes (
  id          INTEGER PRIMARY KEY,
  scenario_id INTEGER NOT NULL REFERENCES scenarios(id),
  name        TEXT NOT NULL,
  role        TEXT,                  -- live | backup | standalone
  data_dir    TEXT,
  config      TEXT                   -- the YAML the node was started with
);
CREATE TABLE IF NOT EXISTS steps (
  id          INTEGER PRIMARY KEY,
  scenario_id INTEGER NOT NULL REFERENCES scenarios(id),
  idx         INTEGER NOT NULL,      -- position in the scenario's step list
  kind        TEXT NOT NULL,         -- start, stop, kill, await, produce...
  node        TEXT,
  params      TEXT,                  -- JSON of the step as written
  started_ns  INTEGER,
  finished_ns INTEGER,
  outcome     TEXT,                  -- ok | fail
  message     TEXT,
  line        INTEGER                -- the step's line in the scenario text
);
CREATE TABLE IF NOT EXISTS events (
  id          INTEGER PRIMARY KEY,
  scenario_id INTEGER NOT NULL REFERENCES scenarios(id),
  node        TEXT NOT NULL,
  seq         INTEGER NOT NULL,
  type        TEXT NOT NULL,
  ts          TEXT,                  -- the node's wall clock
  mono_ns     INTEGER,               -- the node's monotonic clock
  recv_ns     INTEGER,               -- harness monotonic time of receipt
  json        TEXT NOT NULL          -- the line as received
);
CREATE INDEX IF NOT EXISTS events_by_scenario ON events(scenario_id, node, seq);
CREATE TABLE IF NOT EXISTS logs (
  id          INTEGER PRIMARY KEY,
  scenario_id INTEGER NOT NULL REFERENCES scenarios(id),
  node        TEXT NOT NULL,
  recv_ns     INTEGER,
  line        TEXT NOT NULL          -- one stderr (or stdout) line of the node
);
CREATE TABLE IF NOT EXISTS messages (
  id          INTEGER PRIMARY KEY,
  scenario_id INTEGER NOT NULL REFERENCES scenarios(id),
  node        TEXT,
  destination TEXT NOT NULL,
  msg_key     TEXT NOT NULL,         -- unique per scenario, set by the producer (header keel-key)
  kind        TEXT NOT NULL,         -- produced | receipted | consumed | refused (an ERROR answered
                                     -- the SEND) | receipted-droppable (receipt of a DROP address)
  persistent  INTEGER NOT NULL DEFAULT 0,
  at_ns       INTEGER
);
CREATE INDEX IF NOT EXISTS messages_by_key ON messages(scenario_id, msg_key, kind);
CREATE TABLE IF NOT EXISTS leaks (
  id          INTEGER PRIMARY KEY,
  scenario_id INTEGER REFERENCES scenarios(id),
  node        TEXT,
  kind        TEXT NOT NULL,         -- THREAD | FD | CHILD | LISTEN (leakcheck report kinds)
  name        TEXT,
  detail      TEXT,                  -- the whole report line
  created_at  TEXT
);
CREATE TABLE IF NOT EXISTS findings (
  id          INTEGER PRIMARY KEY,
  scenario_id INTEGER REFERENCES scenarios(id),
  check_name  TEXT NOT NULL,         -- e.g. no-receipted-lost, single-live
  severity    TEXT NOT NULL,         -- error | warning
  message     TEXT NOT NULL
);
-- The faults a chaos step resolved (its schedule: harness/README.md
-- "Chaos"), one row each as it fired (or was skipped): anchored to the
-- step (offset_ms after it began) or to an event (anchor_event "NODE
-- TYPE", its seq; offset_ms after it; params.on.occurrence: the n-th
-- match since the step began).  replay drives these rows again; shrink
-- reduces them.
CREATE TABLE IF NOT EXISTS faults (
  id          INTEGER PRIMARY KEY,
  scenario_id INTEGER NOT NULL REFERENCES scenarios(id),
  step        INTEGER NOT NULL,      -- the chaos step's idx
  seq         INTEGER NOT NULL,      -- 1.. in firing order within the step
  kind        TEXT NOT NULL,         -- kill | pause | restart | partition | one-way | net
  target      TEXT,                  -- the nodes it hit, "a,b" (NULL: none)
  anchor_kind TEXT NOT NULL,         -- step | event
  anchor_event TEXT,                 -- "NODE TYPE" of an event anchor
  anchor_event_seq INTEGER,          -- that event's seq (its node's)
  offset_ms   INTEGER NOT NULL,      -- after the anchor
  duration_ms INTEGER NOT NULL,      -- the window (restart: 0)
  params      TEXT,                  -- JSON: target as written, direction, net values, on
  result      TEXT,                  -- ok | skipped: why
  fired_ns    INTEGER,               -- when it fired, ended (monotonic ns)
  ended_ns    INTEGER,
  fired_ms    INTEGER                -- fired_ns in ms after the step began
);
INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', '3');
