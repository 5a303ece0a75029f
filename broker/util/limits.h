/*
 * limits.h - every limit of broker/ in one place: the broker, its codecs,
 * the client library and keelctl (the YAML scanner's, part of its public
 * interface, are in <keel/yamlscan.h>).
 *
 * Each limit says why it exists and why it has its value, with its unit in
 * the name or the comment.  Input that exceeds one (a frame, a
 * configuration, a request, an option) is refused with an error; where a
 * limit cuts or forgets instead (a display, a cache), its comment says so.
 */
#ifndef KEEL_LIMITS_H
#define KEEL_LIMITS_H

/* Longest command line ("CONNECT", "SUBSCRIBE"...).  The longest STOMP
 * command is 11 bytes; 32 leaves room and bounds garbage early. */
#define KEEL_MAX_COMMAND_LEN 32

/* Headers per frame.  Real clients send < 20; 128 bounds the per-frame
 * header array while leaving room for generous user headers. */
#define KEEL_MAX_HEADERS 128

/* One header line (name + ':' + value, escaped form).  8 KiB matches common
 * HTTP servers' per-line limit and bounds memory per partial frame. */
#define KEEL_MAX_HEADER_LINE 8192

/* All header lines of one frame together.  Bounds the memory a client can
 * make the codec hold before a body starts. */
#define KEEL_MAX_HEADERS_TOTAL (64 * 1024)

/* Whole frame body held in memory.  Bodies above min-large-message-size are
 * streamed to disk (issue: large messages); until then, and for bodies the
 * broker buffers, this is the ceiling.  A parser's keel_stomp_limits may
 * lower it; min-large-message-size may not exceed it. */
#define KEEL_MAX_FRAME_BODY (100 * 1024 * 1024)

/* Subscriptions per connection: bounds the per-connection consumer table. */
#define KEEL_MAX_SUBSCRIPTIONS 1024

/* Open transactions per connection. */
#define KEEL_MAX_TRANSACTIONS 64

/* Operations (sends + acks) inside one transaction. */
#define KEEL_MAX_TX_OPS 100000

/* Longest destination / address / queue name. */
#define KEEL_MAX_NAME_LEN 255

/* Default max-auto-created-addresses: addresses that clients' SENDs and
 * SUBSCRIBEs may auto-create (each is journaled and held in memory until
 * deleted); past it they get an ERROR.  Far more than an application
 * names, far less than a client looping over random names can fill. */
#define KEEL_DEFAULT_MAX_AUTO_CREATED_ADDRESSES 10000

/* Smallest heart-beat interval the broker agrees to (ms): below this the
 * heart-beats alone would load the loop. */
#define KEEL_MIN_HEARTBEAT_MS 100

/* A peer is declared dead after this many missed heart-beat intervals
 * (STOMP leaves the tolerance to the implementation). */
#define KEEL_HEARTBEAT_GRACE_FACTOR 2

/* The client library's default time to get CONNECTED after it starts
 * connecting (ms). */
#define KEEL_CONNECT_TIMEOUT_MS 10000

/* Default handshake-timeout: time a new connection has to complete its
 * CONNECT before it gets an ERROR and is closed (ms).  Artemis' default;
 * a CONNECT is a few hundred bytes, so only a stuck or hostile peer needs
 * longer. */
#define KEEL_DEFAULT_HANDSHAKE_TIMEOUT_MS 10000

/* A frame in progress must bring at least this many bytes per
 * connection-ttl (so a frame of up to this size must be complete within
 * connection-ttl of its first byte): a peer trickling a frame a byte at
 * a time cannot hold a connection, while a big body is only asked for
 * about 1 KiB/s at the default 60 s. */
#define KEEL_MIN_FRAME_PROGRESS_BYTES (64 * 1024)

/* A connection closing after an ERROR or a DISCONNECT gets this long to
 * flush its last output before it is cut (ms): a peer that reads nothing
 * must not keep its session, and so its unacked messages, forever. */
#define KEEL_CLOSE_FLUSH_TIMEOUT_MS 5000
/* A connection closed by the broker (after an ERROR) reads and drops
 * what its peer still sends for at most this long after its FIN, so that
 * closing with unread input does not reset the connection (a reset can
 * destroy the ERROR in the peer's kernel before its client reads it). */
#define KEEL_CLOSE_LINGER_MS 1000

/* After this many connections were freed, the server hands free heap
 * memory back to the system (malloc_trim) once KEEL_TRIM_DELAY_MS have
 * passed: thousands of closed connections otherwise leave their memory
 * in the process.  The delay lets a burst of closes end first. */
#define KEEL_TRIM_AFTER_CLOSES 256
#define KEEL_TRIM_DELAY_MS 1000

/* Pending output per connection before deliveries to it pause
 * (writability high / low watermarks, bytes). */
#define KEEL_WRITE_HIGH_WATERMARK (128 * 1024)
#define KEEL_WRITE_LOW_WATERMARK (32 * 1024)

/* Default consumer window when a SUBSCRIBE names none (bytes). */
#define KEEL_DEFAULT_CONSUMER_WINDOW (1024 * 1024)

/* Default maximum delivery attempts before dead-lettering. */
#define KEEL_DEFAULT_MAX_DELIVERY_ATTEMPTS 10

/* Connections the broker accepts at once: bounds fds and memory. */
#define KEEL_MAX_CONNECTIONS 4096

/* Bytes read from a socket at once: one buffer per server, shared by its
 * connections (the loop reads one socket at a time and the session copies
 * what it keeps), reused for every read.  64 KiB matches the usual socket
 * receive batch.  An idle connection costs ~3.5 KiB (ci/bench/
 * idle-conns.sh: 4096 of them add ~14 MiB), far under 256 MiB. */
#define KEEL_READ_BUFFER_SIZE (64 * 1024)

/* Pending connections the kernel queues for accept (listen backlog). */
#define KEEL_LISTEN_BACKLOG 511

/* On a graceful stop, time connections get to flush their last frames
 * (the "server shutting down" ERROR) before they are cut (ms): a peer
 * that does not read must not hold the stop forever. */
#define KEEL_STOP_FLUSH_TIMEOUT_MS 5000

/* How often expired messages are scanned for (ms). */
#define KEEL_EXPIRY_SCAN_MS 1000

/* Size of the configuration file: a broker's config is a few KiB; 1 MiB
 * bounds the memory a wrong path (a log, a core dump) can make us read. */
#define KEEL_MAX_CONFIG_BYTES (1024 * 1024)

/* Nesting of YAML mappings and lists in the configuration.  The schema is
 * 5 levels deep (addresses[].queues[].key); 16 leaves room for a clear
 * "unknown key" error instead of a "too deep" one, and bounds the scan. */
#define KEEL_MAX_CONFIG_DEPTH 16

/* The YAML key-path scanner's limits (KEEL_YAML_MAX_DEPTH,
 * KEEL_YAML_PATH_MAX) are part of its public interface: they are in
 * <keel/yamlscan.h>, which the harness uses too. */

/* Largest body chunk the STOMP parser hands out for a streamed (large)
 * frame: bounds what it holds per connection while streaming; 64 KiB makes
 * per-chunk costs vanish next to copying the bytes. */
#define KEEL_STOMP_MAX_CHUNK (64 * 1024)

/* Message refs the core keeps for reuse instead of freeing (a free list):
 * enough for a burst of in-flight deliveries without one malloc per
 * message; 4096 refs are ~0.5 MiB at most. */
#define KEEL_CORE_REF_CACHE 4096

/* Body of a management request (a JSON object of arguments): real ones are
 * a few hundred bytes; 64 KiB bounds what one request makes jansson parse. */
#define KEEL_MGMT_MAX_REQUEST_BYTES (64 * 1024)

/* Rows a management list returns: by default, and at most (`max-rows`).
 * Bounds the size of one reply message; `total` says how many matched. */
#define KEEL_MGMT_DEFAULT_MAX_ROWS 1000
#define KEEL_MGMT_MAX_ROWS 100000

/* Frame buffer the STOMP parser keeps between frames (bytes); a larger one
 * (left by a big frame) is released so that an idle connection does not
 * pin a big body's memory. */
#define KEEL_STOMP_KEEP_BUFFER_BYTES (256 * 1024)

/* A file path the broker builds under data-dir (journal segments, large
 * message bodies, the HA identity): the kernel's PATH_MAX.  Sizes the path
 * buffers; largemsg.c and hastore.c refuse a longer path (-ENAMETOOLONG). */
#define KEEL_MAX_PATH_BYTES 4096

/* One connector ("host:port", bridges[].connectors, ha.listen, ha.peer) in
 * the configuration: a 253-byte DNS name, brackets, ':' and a port fit;
 * bounds what the YAML loader copies. */
#define KEEL_MAX_CONNECTOR_LEN 300

/* ---- the client library ------------------------------------------------- */

/* One read buffer per client, reused for every read (the codec copies what
 * it keeps).  64 KiB holds ~60 1 KiB messages per read. */
#define KEEL_CLIENT_READ_BUFFER_BYTES (64 * 1024)

/* Blocking client: how long keel_bclient_close waits for the DISCONNECT
 * receipt, and how long keel_bclient_send_raw waits for the server's
 * answer (ms).  Bounded so that a server that does not answer cannot hang
 * the caller. */
#define KEEL_BCLIENT_DISCONNECT_WAIT_MS 2000
#define KEEL_BCLIENT_RAW_WAIT_MS 5000

/* Blocking client: its own deadline on connecting is the client's connect
 * timeout plus this (ms): the client's timer fires first, ours is the
 * backstop. */
#define KEEL_BCLIENT_CONNECT_BACKSTOP_MS 1000

/* ---- flow control and large messages ---------------------------------- */

/* A BLOCKed address lets its producers go again once it holds less than
 * this share of its limit (percent): hysteresis, so that a producer at the
 * limit is not paused and resumed (and evented) once per message. */
#define KEEL_FLOW_RESUME_PERCENT 90

/* While a connection's reading is paused (BLOCK), how often the edge asks
 * the kernel whether the peer has gone (TCP_INFO: CLOSE_WAIT), since no
 * read will tell it (ms).  Bounds how long a dead blocked producer holds
 * its session. */
#define KEEL_PAUSED_PEER_CHECK_MS 200

/* Default min-large-message-size: bodies from this size on are streamed
 * to a file under <data-dir>/large-messages (as Artemis: 100 KiB). */
#define KEEL_DEFAULT_MIN_LARGE_MESSAGE_SIZE (100 * 1024)

/* Smallest min-large-message-size accepted: below one parser chunk the
 * per-file cost outweighs what streaming saves. */
#define KEEL_MIN_LARGE_MESSAGE_SIZE_FLOOR 1024

/* Largest body accepted as a (streamed) large message: bounds the disk a
 * single SEND can fill. 64 GiB. */
#define KEEL_MAX_LARGE_MESSAGE_SIZE (64ULL * 1024 * 1024 * 1024)

/* A persistent large body's file is fsynced before its SEND is receipted;
 * while it is being written, writeback of every this many bytes is started
 * (sync_file_range) so that the disk works while the rest arrives and the
 * final fsync only waits for the tail.  1 MiB: large enough for big disk
 * requests, small enough to overlap well with a 64 KiB chunk stream. */
#define KEEL_LARGE_WRITEBACK_BYTES (1024 * 1024)

/* Large body files whose last close (which frees their blocks: several ms
 * for a big fsynced file) waits for the background closer; when this many
 * wait, the loop thread closes the next one itself. */
#define KEEL_LARGE_CLOSE_QUEUE 256

/* Large bodies being received are copied into buffers that the loop's
 * threadpool writes to their files, so the page-cache copies run beside
 * the loop: this many buffers of this size at most, process-wide (4 MiB of
 * memory; a few ms of disk); when all are in flight, the loop writes in
 * place.  256 KiB: a few dozen pool hand-offs per 10 MiB body. */
#define KEEL_LARGE_WRITE_BUFFERS 16
#define KEEL_LARGE_WRITE_BUFFER_SIZE (256 * 1024)

/* Large SENDs of one connection whose files may be committing (fsync on
 * the threadpool) at once while more arrive: past this, reading from the
 * connection pauses.  4 keeps the disk busy across a few bodies, and
 * bounds what a connection has in flight. */
#define KEEL_SESSION_MAX_LARGE_COMMITS 4

/* Output a session holds back while a large body streams to its client
 * (receipts answering frames that arrive meanwhile): past this, reading
 * from the connection pauses until the body is out.  64 KiB is a thousand
 * receipts. */
#define KEEL_SESSION_HELD_OUTPUT_MAX (64 * 1024)

/* Smallest write watermarks accepted in the config: below a few frames
 * every delivery would toggle writability. */
#define KEEL_MIN_WRITE_WATERMARK 1024
/* Largest write watermarks accepted in the config (1 GiB): output held per
 * connection must stay far below memory. */
#define KEEL_MAX_WRITE_WATERMARK (1LL << 30)

/* Journal segment size (journal-file-size): 10 MiB as Artemis; big enough
 * that rolling over is rare, small enough that compaction moves little at
 * a time.  Accepted range 64 KiB .. 1 GiB.  A record larger than a
 * segment gets a segment of its own size. */
#define KEEL_JOURNAL_DEFAULT_FILE_SIZE (10 * 1024 * 1024)
#define KEEL_JOURNAL_MIN_FILE_SIZE (64 * 1024)
#define KEEL_JOURNAL_MAX_FILE_SIZE (1024 * 1024 * 1024)

/* Compaction starts above this many segment files (and only while less
 * than half of the bytes are live): a small journal is left alone. */
#define KEEL_JOURNAL_DEFAULT_COMPACT_MIN_FILES 4

/* Largest record recovery accepts: a message of KEEL_MAX_FRAME_BODY plus
 * KEEL_MAX_HEADERS_TOTAL of headers and slack.  A length field above it
 * is corruption, never an allocation. */
#define KEEL_JOURNAL_MAX_RECORD (KEEL_MAX_FRAME_BODY + KEEL_MAX_HEADERS_TOTAL + 4096)

/* Segment files recovery reads at most (1 TiB of 10 MiB segments): bounds
 * the directory scan. */
#define KEEL_JOURNAL_MAX_SEGMENTS 100000

/* Recovery reads a segment in pieces of at least this much and stops at
 * the end of its records: start-up and failover cost in proportion to the
 * live data, not to journal-file-size (up to 1 GiB, preallocated). */
#define KEEL_JOURNAL_READ_CHUNK (256 * 1024)

/* After a failed journal write, time before the journal writes again (ms):
 * a broken disk is not hammered in a loop. */
#define KEEL_JOURNAL_RETRY_MS 200
/* Default global-max-size (no key in the file): RAM / 16, at most 16 MiB,
 * at least 4 MiB.  With PAGE the default policy, the messages held in
 * memory stay about there whatever the backlog: 16 MiB of accounted
 * messages (about 1.3x that in RSS) keeps the broker under 64 MiB. */
#define KEEL_GLOBAL_MAX_SIZE_RAM_DIVISOR 16
#define KEEL_DEFAULT_GLOBAL_MAX_SIZE_CAP (16LL * 1024 * 1024)
#define KEEL_DEFAULT_GLOBAL_MAX_SIZE_FLOOR (4LL * 1024 * 1024)
/* Paging: an address reads its page files back while it holds less than
 * this in memory (pending and unacked): enough to keep a consumer's window
 * (1 MiB by default) full while the next records are read, small against
 * the default global-max-size. */
#define KEEL_PAGING_READAHEAD_BYTES (4 * 1024 * 1024)
/* Paging: an address holding less than this (at most an eighth of
 * global-max-size) reads its pages back even when global-max-size is past
 * its resume mark (other addresses' messages must not starve a paging
 * one); above it, only below that mark. */
#define KEEL_PAGING_DEPAGE_FLOOR (256 * 1024)
/* Paging: a page file is closed past this many bytes (deleted once every
 * record in it is read back: the disk follows the backlog in steps of it). */
#define KEEL_PAGING_DEFAULT_FILE_SIZE (64 * 1024 * 1024)
/* page-file-size bounds: small files (tests, many deletes) to files that a
 * replica's KEEL_PAGING_MAX_FILE_BYTES still holds with room. */
#define KEEL_PAGING_MIN_FILE_SIZE (4 * 1024)
#define KEEL_PAGING_MAX_FILE_SIZE (1024ll * 1024 * 1024)
/* Paging: bytes read from a page file at once (the next chunk is asked of
 * the kernel ahead, posix_fadvise). */
#define KEEL_PAGING_READ_CHUNK (256 * 1024)
/* Other files (page files) the journal's writer keeps open at once: one
 * written per paging address, one being closed; more are reopened. */
#define KEEL_JOURNAL_EXT_FDS 8
/* Bytes appended to the journal and not yet written past which a session
 * stops reading from its producer until they are (keel_sync's backlog):
 * SENDs with no receipt, paged messages above all, would otherwise pile
 * up in the journal's batches (a non-persistent flood reached 122 MiB). */
#define KEEL_JOURNAL_MAX_BACKLOG_BYTES (4 * 1024 * 1024)
/* Paging: a replica refuses a page-file write past this offset (a page
 * file is closed past its size, KEEL_PAGING_DEFAULT_FILE_SIZE, plus one
 * record): far beyond any real one, it bounds what a bad op can grow. */
#define KEEL_PAGING_MAX_FILE_BYTES (1ull << 40)
/* Salvage: message and object ids of the new journal start this far past
 * the highest one still readable, so that ids the damaged bytes may have
 * held are never handed out again. */
#define KEEL_JOURNAL_SALVAGE_ID_GAP 1000000

/* ---- bridges and the locator ------------------------------------------- */

/* Connectors (host:port) one bridge / locator lists: a handful in practice;
 * 16 bounds the registry key and the rotation. */
#define KEEL_LOCATOR_MAX_CONNECTORS 16

/* Messages a bridge holds at once (sent and waiting for their RECEIPT, or
 * taken from the queue and not yet sent): its core consumer's credit
 * (`confirmation-window`).  Default 16: enough to hide a round trip on a
 * LAN; at most 1024 bounds what a broken link redelivers as duplicates. */
#define KEEL_BRIDGE_DEFAULT_WINDOW 16
#define KEEL_BRIDGE_MAX_WINDOW 1024

/* A bridge's default `heartbeat` (ms, both ways): an idle bridge must
 * beat, or a target enforcing connection-ttl (Keel's default 60 s; the
 * negotiation takes the larger side) closes it as silent. */
#define KEEL_BRIDGE_DEFAULT_HEARTBEAT_MS 30000

/* Bridge reconnection defaults (as Artemis): retry-interval 2000 ms,
 * multiplier 1.0, max-retry-interval 2000 ms, reconnect-attempts -1. */
#define KEEL_BRIDGE_DEFAULT_RETRY_MS 2000
#define KEEL_BRIDGE_MAX_RETRY_MS (24 * 3600 * 1000)
/* Largest retry-interval-multiplier: past 100 the interval reaches
 * max-retry-interval after a retry or two anyway. */
#define KEEL_BRIDGE_MAX_RETRY_MULTIPLIER 100.0

/* Duplicate detection on the receiving side: ids (the `duplicate-detection`
 * header) remembered per address, oldest forgotten first.  20000 as
 * Artemis' id-cache-size: far more than any bridge window in flight. */
#define KEEL_DUP_ID_CACHE_SIZE 20000
/* Longest duplicate-detection id kept; a longer one is not checked. */
#define KEEL_DUP_ID_MAX_LEN 255

/* ---- keelctl ------------------------------------------------------------ */

/* --url may be given this many times: a live/backup pair needs two; 8
 * bounds the list keelctl tries in order (keelctl_global.urls). */
#define KEELCTL_MAX_URLS 8

/* keelctl offers to send heart-beats this often (ms) and asks for none: a
 * `consume` or `perf` that only receives would otherwise be closed by the
 * broker's connection-ttl.  The beats go out while keelctl waits in the
 * client (the negotiation may stretch them to connection-ttl/2). */
#define KEELCTL_HEARTBEAT_MS 20000

/* --header given to `keelctl produce` at most: bounds its header array
 * (the broker takes KEEL_MAX_HEADERS; 64 leaves room for its own). */
#define KEELCTL_MAX_HEADERS 64

/* Body bytes `keelctl consume --print` shows of each message; a longer
 * body is cut and its size printed (a terminal, not a dump). */
#define KEELCTL_PRINT_BODY_MAX_BYTES 200

/* Columns of a table keelctl prints (the widest, queue stat, has 9):
 * bounds the column-width array. */
#define KEELCTL_MAX_TABLE_COLUMNS 16

/* Longest `queue stat --loop --interval` (ms): a day catches typos. */
#define KEELCTL_MAX_INTERVAL_MS 86400000

/* keelctl perf: latency samples kept at most (uint32 µs each: 4 MiB); past
 * this, every Nth message is sampled. */
#define KEELCTL_PERF_MAX_SAMPLES (1u << 20)
/* keelctl perf: after the last producer finished, give up on missing
 * messages when no message came for this long (ms). */
#define KEELCTL_PERF_DRAIN_IDLE_MS 3000
/* keelctl perf: clients at most, producers and consumers each half:
 * bounds connections and fds one run opens. */
#define KEELCTL_PERF_MAX_CLIENTS 256
/* keelctl perf --count at most: bounds the seen-bitmap (count * copies
 * bits: 512 MiB per copy at 2^32). */
#define KEELCTL_PERF_MAX_COUNT (1ull << 32)
/* keelctl perf --timeout-s at most: a day catches typos. */
#define KEELCTL_PERF_MAX_TIMEOUT_S 86400
/* keelctl perf: time its clients get to DISCONNECT cleanly at the end
 * before they are closed (ms). */
#define KEELCTL_PERF_CLOSE_GRACE_MS 2000
/* keelctl perf: its clients' write watermarks (bytes), above the client
 * defaults so that each write carries a bigger batch. */
#define KEELCTL_PERF_WRITE_HIGH_WATERMARK (512 * 1024)
#define KEELCTL_PERF_WRITE_LOW_WATERMARK (128 * 1024)

/* ---- replication (HA) ------------------------------------------------- */

/* Actions one HA input can produce: the longest transition (handover)
 * makes about a dozen; 32 leaves room and is asserted. */
#define KEEL_HA_MAX_ACTIONS 32

/* Unanswered PINGs a backup remembers the send time of (a lease counts
 * from the send time of the request its answer answers).  Pings go out
 * every check-period and a link is dead after connection-ttl, so a few
 * cover every sane ratio; past it, answers are matched to older pings,
 * which only shortens a lease. */
#define KEEL_HA_MAX_PINGS 8

/* How much faster one node's clock may run than the other's, in percent
 * of connection-ttl: a live waits connection-ttl plus this after its last
 * grant before receipting alone.  Leases are safe only while the clocks'
 * rates differ by less (NTP slews by at most 0.05%; a libfaketime rate
 * fault beyond it is outside what the pair can survive alone). */
#define KEEL_HA_DRIFT_PERCENT 10

/* Largest replication message payload: a journal record (JOURNAL_OP) plus
 * its framing.  A length field above it is refused before any buffering. */
#define KEEL_REPL_MAX_PAYLOAD (KEEL_JOURNAL_MAX_RECORD + 64)

/* Data bytes per FILE_CHUNK: the sync streams files in pieces of at most
 * this, so a chunk in flight costs at most this much (Artemis: 32 KiB). */
#define KEEL_REPL_MAX_CHUNK (64 * 1024)

/* A replication link is writable below this much pending output (the
 * snapshot and large-message files stream only while it is); the links
 * carry bulk data, hence higher than a client connection's marks. */
#define KEEL_REPL_WRITE_HIGH_WATERMARK (4u * 1024 * 1024)

/* A live drops a backup whose unsent journal operations pass this (it
 * syncs again): the op stream follows the producers, not the link, so a
 * backup slower than they are would otherwise cost memory without bound. */
#define KEEL_REPL_MAX_BEHIND (64u * 1024 * 1024)

/* Strings in replication messages (user, password, file names): 255 as
 * names elsewhere; reasons in REGISTER_REFUSED/GOODBYE up to 1 KiB. */
#define KEEL_REPL_MAX_STR 255
#define KEEL_REPL_MAX_TEXT 1024

/* The identity file (hastore.c) is ~200 bytes; a larger one is refused
 * as corrupt before parsing. */
#define KEEL_HA_IDENTITY_MAX_BYTES 4096

/* ha.manager.zookeeper.connect: servers at most.  An ensemble has 3, 5 or
 * 7 voters; a longer list is a mistake, not a bigger ensemble. */
#define KEEL_HA_ZK_MAX_SERVERS 16
/* ha.manager.zookeeper.connect: characters at most (16 HOST:PORT). */
#define KEEL_HA_ZK_MAX_CONNECT_LEN 4096
/* ha.manager.zookeeper.session-timeout (ms).  The live renews its lease
 * every third of it and may serve for 90 % of it after a renewal is sent:
 * below 300 ms a loaded host loses the lease between two renewals (and a
 * ZooKeeper server grants no less than two ticks anyway).  Above 10 min a
 * dead live is not replaced for as long: no pair wants that. */
#define KEEL_HA_ZK_MIN_SESSION_MS 300
#define KEEL_HA_ZK_MAX_SESSION_MS 600000
/* ha.manager.zookeeper.session-timeout default: Apache Curator's and
 * Artemis' (session-ms). */
#define KEEL_HA_ZK_DEFAULT_SESSION_MS 18000
/* ha.manager.zookeeper.root and pair-id: a znode path under which the
 * pair's lock and sequence live; ZooKeeper allows 1 MiB paths, ours stay
 * readable. */
#define KEEL_HA_ZK_MAX_PATH_LEN 255
/* ZooKeeper client threads alive at once (zk_threads.c): 2 per handle,
 * one handle per broker (the old one is joined before a new session);
 * tests run a few brokers' managers in one process. */
#define KEEL_HA_ZK_MAX_THREADS 16
/* A lock znode's name: "<session id, 16 hex>-<request>-lock-<10 digits>". */
#define KEEL_HA_ZK_MAX_NODE_LEN (KEEL_HA_ZK_MAX_PATH_LEN * 2 + 128)
/* Children listed under a pair's lock directory at most: two nodes, a few
 * requests each across sessions not yet expired.  More is not our pair. */
#define KEEL_HA_ZK_MAX_LOCK_CHILDREN 64
/* The activation znode's data ("<seq> <owner role>") in bytes. */
#define KEEL_HA_ZK_MAX_DATA 64

/* ---- password checks (config/auth.c) ------------------------------------- */

/* Password checks running at once on libuv's threadpool (a yescrypt check
 * costs 15-60 ms of CPU).  The pool has 4 threads by default: one stays
 * free for large-message commits and the HA comparison. */
#define KEEL_AUTH_MAX_IN_FLIGHT 3

/* Checks waiting for a slot; past it a CONNECT gets an ERROR at once
 * (server busy).  3 at a time at 15-60 ms each, 512 is 3-10 s of work:
 * about the CONNECT timeout, past which a waiting client is dropped anyway. */
#define KEEL_AUTH_MAX_WAITING 512

/* Checks waiting for one source address or user that has failed: past it
 * an ERROR at once, so one attacker cannot fill the queue for the others. */
#define KEEL_AUTH_MAX_WAITING_PER_KEY 8

/* The Nth consecutive failure of an address or user delays its answer,
 * and the next check of either, by BASE << (N - 1) ms, at most MAX: 100 ms
 * is nothing to a typo, 5 s caps an attacker at 12 guesses a minute per
 * address and per user and stays under the CONNECT timeout (10 s). */
#define KEEL_AUTH_DELAY_BASE_MS 100
#define KEEL_AUTH_DELAY_MAX_MS 5000

/* Failures older than this are forgotten (ms): a user who mistyped an
 * hour ago starts afresh. */
#define KEEL_AUTH_FORGET_MS (15 * 60 * 1000)

/* Source addresses and users tracked at once (about 100 bytes each); when
 * full, the one that failed longest ago and has no check under way is
 * forgotten. */
#define KEEL_AUTH_MAX_TRACKED 4096

/* ---- saved replicated journals (store/saved*.c) ---------------------------- */

/* ha.max-saved-replicated-journals-size at most: copies are numbered NNN
 * and each holds a whole journal; past a thousand an operator wants a
 * backup system, not a rotation. */
#define KEEL_HA_MAX_SAVED_JOURNALS 1000

/* Bytes read at a time when a large message's body is hashed to compare
 * a saved copy with the live's journal (off the loop). */
#define KEEL_SAVED_HASH_CHUNK (256 * 1024)

/* ---- replication manager (replman) --------------------------------------- */

/* Replica files a backup keeps open at once (bounds its descriptors); one
 * more syncs and closes the first.  16 covers the segments the ops write
 * plus the one file a sync streams at a time. */
#define KEEL_REPL_REPLICA_FILES 16
/* Replication: a page file's path under the data directory, NUL included:
 * "paging/" + the hex of a name (2 * KEEL_MAX_NAME_LEN) + "/" + a 17-byte
 * file name; with room to spare. */
#define KEEL_REPL_EXT_PATH_MAX 600

#endif
