/*
 * stomp.h - the STOMP 1.0/1.1/1.2 codec, sans I/O.
 *
 * The parser takes bytes and hands out frames; it never touches a socket.
 * A frame whose body reaches `stream_threshold` bytes is handed out as a
 * head, then body chunks, then an end, so a large body is never held whole
 * (large messages).  The encoder appends frames to a keel_buf, escaping
 * headers for the negotiated version.  Not thread-safe; one owner.
 *
 * Escaping (spec): 1.0 none; 1.1 "\\n" "\\c" "\\\\"; 1.2 adds "\\r".  CONNECT
 * and CONNECTED frames are never escaped.  Undefined escapes in 1.1/1.2
 * are a protocol error.  With 1.2, a header line may end in CRLF; the CR is
 * not part of the value.  Repeated headers: the first one wins (1.2).
 * Header names and values must be UTF-8 without NUL, in every version
 * (1.0 names no encoding; Keel asks it of 1.0 too): anything else is a
 * protocol error naming the header.
 */
#ifndef KEEL_STOMP_H
#define KEEL_STOMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "keel/kv.h"
#include "limits.h"

typedef enum keel_stomp_version {
	KEEL_STOMP_V10 = 10,
	KEEL_STOMP_V11 = 11,
	KEEL_STOMP_V12 = 12,
} keel_stomp_version;

typedef enum keel_stomp_cmd {
	KEEL_STOMP_UNKNOWN = 0,
	/* client frames */
	KEEL_STOMP_CONNECT,
	KEEL_STOMP_STOMP,
	KEEL_STOMP_SEND,
	KEEL_STOMP_SUBSCRIBE,
	KEEL_STOMP_UNSUBSCRIBE,
	KEEL_STOMP_ACK,
	KEEL_STOMP_NACK,
	KEEL_STOMP_BEGIN,
	KEEL_STOMP_COMMIT,
	KEEL_STOMP_ABORT,
	KEEL_STOMP_DISCONNECT,
	/* server frames */
	KEEL_STOMP_CONNECTED,
	KEEL_STOMP_MESSAGE,
	KEEL_STOMP_RECEIPT,
	KEEL_STOMP_ERROR,
} keel_stomp_cmd;

const char *keel_stomp_cmd_name(keel_stomp_cmd cmd);
/* KEEL_STOMP_UNKNOWN for anything else. */
keel_stomp_cmd keel_stomp_cmd_parse(const char *s, size_t len);

typedef struct keel_stomp_limits {
	size_t max_headers;       /* header lines per frame */
	size_t max_header_line;   /* one line, escaped form */
	size_t max_headers_total; /* all header lines together */
	size_t max_body;          /* body held in memory (non-streamed) */
	size_t stream_threshold;  /* bodies >= this are streamed; SIZE_MAX: never */
} keel_stomp_limits;

/* The defaults of limits.h. */
void keel_stomp_limits_default(keel_stomp_limits *l);

typedef enum keel_stomp_event_type {
	KEEL_STOMP_EV_NONE = 0,  /* consumed bytes, nothing complete yet */
	KEEL_STOMP_EV_HEARTBEAT, /* an EOL between frames */
	KEEL_STOMP_EV_FRAME,     /* a whole frame; body in memory */
	KEEL_STOMP_EV_HEAD,      /* a streamed frame's command and headers */
	KEEL_STOMP_EV_BODY,      /* a chunk of a streamed frame's body */
	KEEL_STOMP_EV_END,       /* the streamed frame is complete */
} keel_stomp_event_type;

/*
 * What the parser hands out.  Everything it points to is owned by the
 * parser and valid until the next keel_stomp_parse() call.  Header names
 * and values are unescaped and NUL-terminated.
 */
typedef struct keel_stomp_frame {
	keel_stomp_cmd cmd;
	const char *command;   /* as received */
	size_t header_count;
	keel_kv *headers;
	const uint8_t *body;   /* EV_FRAME: the whole body; EV_BODY: the chunk */
	size_t body_len;
	bool has_content_length;
	uint64_t content_length; /* valid when has_content_length */
} keel_stomp_frame;

typedef struct keel_stomp_parser keel_stomp_parser;

/* `limits` NULL = defaults; it is copied.  The version starts at 1.2
 * escaping rules for everything but CONNECT/STOMP (which is never escaped);
 * set it once negotiated. */
int keel_stomp_parser_create(keel_stomp_parser **out, const keel_stomp_limits *limits);
void keel_stomp_parser_free(keel_stomp_parser *p);
void keel_stomp_parser_set_version(keel_stomp_parser *p, keel_stomp_version v);
/* Are we in the middle of a frame (bytes received, frame not complete)? */
bool keel_stomp_parser_busy(const keel_stomp_parser *p);

/*
 * Feed bytes.  Returns how many of `len` bytes were consumed (>= 0) and
 * fills *ev / *frame; call again with the rest while the return is < len or
 * an event came out.  On malformed input returns -EPROTO (bad syntax),
 * -EMSGSIZE (a limit exceeded) or -ENOMEM, and `keel_stomp_parser_error()`
 * says what was wrong in words fit for an ERROR frame's `message`.  After
 * an error the parser is unusable (the connection closes).
 */
ssize_t keel_stomp_parse(keel_stomp_parser *p, const uint8_t *data, size_t len,
			 keel_stomp_event_type *ev, keel_stomp_frame *frame);
const char *keel_stomp_parser_error(const keel_stomp_parser *p);

/*
 * Encoder: frame by frame into `out`.
 *   keel_stomp_encode_start(out, "MESSAGE");
 *   keel_stomp_encode_header(out, v, "destination", dest, len);  (repeat)
 *   keel_stomp_encode_body(out, body, len, with_content_length);
 * The command and header names/values are escaped per `v` (pass
 * KEEL_STOMP_V10 for CONNECT/CONNECTED, which are never escaped).
 * All return 0 or -ENOMEM; on -ENOMEM the caller closes the connection.
 */
int keel_stomp_encode_start(keel_buf *out, const char *command);
int keel_stomp_encode_header(keel_buf *out, keel_stomp_version v, const char *name,
			     size_t name_len, const char *value, size_t value_len);
int keel_stomp_encode_header_str(keel_buf *out, keel_stomp_version v, const char *name,
				 const char *value);
int keel_stomp_encode_header_u64(keel_buf *out, const char *name, uint64_t value);
/* Ends the headers (adds content-length when asked), the body and the NUL. */
int keel_stomp_encode_body(keel_buf *out, const void *body, size_t len,
			   bool with_content_length);
/* Streaming a large body: ends headers with content-length = total; the
 * caller then appends exactly `total` body bytes and calls _end. */
int keel_stomp_encode_body_start(keel_buf *out, uint64_t total);
int keel_stomp_encode_body_end(keel_buf *out);

/* Heart-beat header "cx,cy" -> values in ms; -EPROTO when malformed. */
int keel_stomp_parse_heartbeat(const char *s, uint32_t *cx, uint32_t *cy);

#endif
