-- harness-leaks.sql - rows as keel-harness records them (harness/src/schema.sql,
-- table leaks), for keel-leaks' SQLite reader.  The detail lines are the
-- broker's own report lines (broker-leak.stdout, run without KEEL_LC_TEST, so
-- test=- and the scenario's name stands in); created_at is when the recorder
-- stored the row (the first and last sight); the last row has no parseable
-- detail, so its columns are used.
INSERT INTO runs (id, started_at, seed) VALUES (1, '2026-11-25T23:10:00Z', 42);
INSERT INTO scenarios (id, run_id, name, file, seed, outcome)
  VALUES (1, 1, 'producer_flow_control_block', 'scenarios/flow.yaml', 42, 'pass'),
         (2, 1, 'failover_basic', 'scenarios/failover.yaml', 43, 'pass');
INSERT INTO leaks (scenario_id, node, kind, name, detail, created_at) VALUES
  (1, 'live1', 'THREAD', 'keel-leaktest',
   'LEAKED THREAD name=keel-leaktest tid=11865 state=S created-at=main (broker/src/main.c:231) owner=broker-test test=-',
   '2026-11-25T23:10:03.120000Z'),
  (2, 'live1', 'THREAD', 'keel-leaktest',
   'LEAKED THREAD name=keel-leaktest tid=20211 state=S created-at=main (broker/src/main.c:231) owner=broker-test test=-',
   '2026-11-25T23:10:09.870000Z'),
  (2, 'backup1', 'FD', '/tmp/keel-data/journal/000001.jrn', '', NULL);
