/*
 * repl.h - the replication protocol codec (live <-> backup), sans I/O.
 *
 * The decoder takes bytes and hands out whole messages; the encoder
 * appends messages to a keel_buf.  Framing: a 12-byte header (u32 payload
 * length, u8 type, u8 version = 1, u16 reserved = 0, u32 CRC32C of the
 * first 8 header bytes and the payload), then the payload; all integers
 * little-endian.  Payload layouts: README.md "Replication (HA)".  Not
 * thread-safe; one owner per decoder.
 */
#ifndef KEEL_REPL_H
#define KEEL_REPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "ha.h"
#include "limits.h"

#define KEEL_REPL_VERSION 1
#define KEEL_REPL_HEADER_SIZE 12

typedef enum keel_repl_type {
	KEEL_REPL_NONE = 0,        /* decoder: nothing complete yet */
	KEEL_REPL_REGISTER = 1,    /* id, role, failback, user, password */
	KEEL_REPL_REGISTER_OK,     /* id (the live's) */
	KEEL_REPL_REGISTER_REFUSED,/* reason, id, text */
	KEEL_REPL_SYNC_START,      /* files, bytes */
	KEEL_REPL_FILE_CHUNK,      /* file_id, last, offset, name, data */
	KEEL_REPL_SYNC_DONE,       /* id (to adopt) */
	KEEL_REPL_SYNC_DONE_ACK,   /* id */
	KEEL_REPL_JOURNAL_OP,      /* seq, data (an opaque journal record) */
	KEEL_REPL_OP_ACK,          /* seq */
	KEEL_REPL_PING,            /* seq (token) */
	KEEL_REPL_PONG,            /* seq (the ping's token) */
	KEEL_REPL_ANNOUNCE_BACKUP, /* id */
	KEEL_REPL_HANDOVER,        /* id (scheduled stop: take over, no vote) */
	KEEL_REPL_LIVE_STARTED,    /* id */
	KEEL_REPL_GOODBYE,         /* reason, text */
	KEEL_REPL_TYPE_COUNT
} keel_repl_type;

/* Bytes not NUL-terminated (they may point into the caller's input). */
typedef struct keel_repl_str {
	const char *p;
	size_t len;
} keel_repl_str;

/*
 * One message, flat: only the fields of its type are meaningful (see the
 * enum).  Decoded pointers (strings, data) are valid until the next
 * keel_repl_decode() call and, when the message was whole in the input,
 * while the caller's input bytes are unchanged.
 */
typedef struct keel_repl_msg {
	keel_repl_type type;
	keel_ha_persist id;     /* node id, activation seq, incarnation, journal flags */
	keel_ha_role role;      /* REGISTER */
	bool failback;          /* REGISTER */
	bool probe;             /* REGISTER: a live asking whether the peer is live too */
	uint64_t alone_msgs;    /* REGISTER with probe, REGISTER_REFUSED(live-too): persistent
				   messages the sender journaled since it serves alone (its side
				   of a split brain's count) */
	keel_ha_reason reason;  /* REGISTER_REFUSED, GOODBYE */
	keel_repl_str user;     /* REGISTER: cluster-user (<= KEEL_REPL_MAX_STR) */
	keel_repl_str password; /* REGISTER: cluster-password */
	keel_repl_str text;     /* REGISTER_REFUSED, GOODBYE (<= KEEL_REPL_MAX_TEXT) */
	uint64_t files;         /* SYNC_START */
	uint64_t bytes;         /* SYNC_START */
	uint32_t file_id;       /* FILE_CHUNK */
	bool last;              /* FILE_CHUNK: the file ends with this chunk */
	uint64_t offset;        /* FILE_CHUNK */
	keel_repl_str name;     /* FILE_CHUNK: a plain file name (no '/', not . or ..) */
	uint64_t seq;           /* JOURNAL_OP, OP_ACK; PING/PONG token */
	const uint8_t *data;    /* FILE_CHUNK (<= KEEL_REPL_MAX_CHUNK), JOURNAL_OP */
	size_t data_len;
} keel_repl_msg;

const char *keel_repl_type_name(keel_repl_type t); /* "SYNC_DONE_ACK"... or "?" */

/* ---- decoder ----------------------------------------------------------- */

typedef struct keel_repl_decoder keel_repl_decoder;

/* max_payload 0: KEEL_REPL_MAX_PAYLOAD; larger values are clamped to it. */
int keel_repl_decoder_create(keel_repl_decoder **out, size_t max_payload);
void keel_repl_decoder_free(keel_repl_decoder *d); /* NULL is fine */

/*
 * Feed bytes.  Returns how many of `len` were consumed (>= 0) and sets
 * msg->type (KEEL_REPL_NONE: need more bytes); call again with the rest
 * while bytes remain or a message came out.  A message whole in the input
 * is decoded in place (no copy); a split one is gathered, at most
 * header + max_payload bytes (the length is checked from the header, the
 * buffer grows only with the bytes received).
 * Errors: -EPROTO (bad version, type, CRC, layout or string), -EMSGSIZE
 * (a length over a limit), -ENOMEM; keel_repl_decoder_error() says which
 * in words.  After an error every call returns it again.
 */
ssize_t keel_repl_decode(keel_repl_decoder *d, const uint8_t *data, size_t len,
			 keel_repl_msg *msg);
const char *keel_repl_decoder_error(const keel_repl_decoder *d);
/* Part of a message received and not yet complete. */
bool keel_repl_decoder_busy(const keel_repl_decoder *d);

/* ---- encoder ----------------------------------------------------------- */

/* Appends one framed message.  0, -EINVAL (bad type, role, reason or file
 * name), -EMSGSIZE (a field over its limit) or -ENOMEM; on error `out` is
 * unchanged. */
int keel_repl_encode(keel_buf *out, const keel_repl_msg *m);

#endif
