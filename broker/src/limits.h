/*
 * limits.h - every limit of the broker and its codecs, in one place.
 *
 * Each limit says why it exists and why it has its value.  A frame or a
 * configuration that exceeds one is refused with an error that names the
 * limit; nothing here is a silent truncation.
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
 * broker buffers, this is the ceiling.  Configurable down, never up. */
#define KEEL_MAX_FRAME_BODY (100 * 1024 * 1024)

/* Subscriptions per connection: bounds the per-connection consumer table. */
#define KEEL_MAX_SUBSCRIPTIONS 1024

/* Open transactions per connection. */
#define KEEL_MAX_TRANSACTIONS 64

/* Operations (sends + acks) inside one transaction. */
#define KEEL_MAX_TX_OPS 100000

/* Longest destination / address / queue name. */
#define KEEL_MAX_NAME_LEN 255

/* Smallest heart-beat interval the broker agrees to (ms): below this the
 * heart-beats alone would load the loop. */
#define KEEL_MIN_HEARTBEAT_MS 100

/* A peer is declared dead after this many missed heart-beat intervals
 * (STOMP leaves the tolerance to the implementation). */
#define KEEL_HEARTBEAT_GRACE_FACTOR 2

/* Time a connection has to send CONNECT before it is closed (ms). */
#define KEEL_CONNECT_TIMEOUT_MS 10000

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

#endif
