/*
 * lc_sym.h - code addresses of this process to function and FILE:LINE,
 * with elfutils' libdw (libdwfl over /proc/self/maps and the DWARF in
 * each module, or its separate debug file found by build id under
 * /usr/lib/debug; never over the network).  lc_frame holds one resolved
 * frame; lc_frame_tool() and lc_frame_human() write its two forms
 * (leakcheck/README.md, "Report format").  Not async-signal-safe (reads
 * files, allocates): called by the checking thread only.  Thread-safe.
 */
#ifndef LC_SYM_H
#define LC_SYM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct lc_frame {
	char func[96];      /* innermost function (inlined ones too), "" if unknown */
	char file[160];     /* source file, relative to the top directory when under it; "" if no line info */
	int line;           /* 0 when file is "" */
	char module[64];    /* ELF file without its directory, "" if unknown */
	uint64_t offset;    /* address in the module as `addr2line -e MODULE` takes it */
	uint64_t func_off;  /* bytes into func (when there is no line info) */
} lc_frame;

typedef struct lc_sym lc_sym;

/* Reads the modules mapped in this process now.  Writes *out only on
 * success; 0, -ENOMEM or -EIO (libdw could not read /proc/self/maps). */
int lc_sym_open(lc_sym **out);
void lc_sym_close(lc_sym *s); /* NULL is fine */

/*
 * Resolves `addr`.  `return_addr`: addr is a return address (every frame
 * of a backtrace but an interrupted thread's own PC), looked up at
 * addr - 1 so that it names the call, not the line after it.  With s
 * NULL (lc_sym_open failed) only dladdr()'s module and symbol are given.
 */
void lc_sym_frame(lc_sym *s, uintptr_t addr, bool return_addr, lc_frame *out);

/* Tool form, no whitespace, no ';': "func@file:line", "func+0xN@module",
 * "module+0xN" or "?".  snprintf's result. */
int lc_frame_tool(const lc_frame *f, char *buf, size_t size);
/* People's form: "func (file:line) [module+0xN]", "func+0xN [module+0xN]",
 * "[module+0xN]" or "?".  snprintf's result. */
int lc_frame_human(const lc_frame *f, char *buf, size_t size);

#endif
