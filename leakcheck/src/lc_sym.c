/*
 * lc_sym.c - addresses to function and FILE:LINE with libdw (lc_sym.h).
 * One Dwfl per lc_sym, built from /proc/self/maps when opened; debug
 * information from the module itself or from /usr/lib/debug by build id
 * (dwfl_build_id_find_debuginfo: local files only -- the standard finder
 * would ask debuginfod servers when DEBUGINFOD_URLS is set, and a leak
 * check must not wait on the network).  Owns the Dwfl; no global state.
 * Checking thread only (not async-signal-safe).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr */
#endif
#include "lc_sym.h"

#include <dlfcn.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lc.h"

struct lc_sym {
	Dwfl *dwfl;
};

static char *debuginfo_path; /* NULL: libdwfl's default (/usr/lib/debug) */

static const Dwfl_Callbacks callbacks = {
	.find_elf = dwfl_linux_proc_find_elf,
	.find_debuginfo = dwfl_build_id_find_debuginfo,
	.debuginfo_path = &debuginfo_path,
};

int lc_sym_open(lc_sym **out)
{
	lc_sym *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->dwfl = dwfl_begin(&callbacks);
	if (s->dwfl == NULL) {
		free(s);
		return -ENOMEM;
	}
	dwfl_report_begin(s->dwfl);
	if (dwfl_linux_proc_report(s->dwfl, getpid()) != 0 ||
	    dwfl_report_end(s->dwfl, NULL, NULL) != 0) {
		dwfl_end(s->dwfl);
		free(s);
		return -EIO;
	}
	*out = s;
	return 0;
}

void lc_sym_close(lc_sym *s)
{
	if (s == NULL)
		return;
	dwfl_end(s->dwfl);
	free(s);
}

/* Whitespace, control bytes and the tool form's separators would break
 * the one-line format; a symbol version ("@@GLIBC_2.34") is dropped. */
static void clean(char *s, bool is_func)
{
	if (is_func)
		s[strcspn(s, "@")] = '\0';
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f || *s == ';')
			*s = '_';
}

static void set_module(lc_frame *f, const char *path)
{
	const char *slash = path ? strrchr(path, '/') : NULL;
	snprintf(f->module, sizeof(f->module), "%s", slash ? slash + 1 : path ? path : "");
	clean(f->module, false);
}

/* The innermost function whose code holds `pc` (module address), inlined
 * ones included: "caller (file:line)" would be wrong when the line is in
 * a function inlined into it.  0 when found. */
static int innermost_func(Dwfl_Module *mod, Dwarf_Addr pc, char *buf, size_t size)
{
	Dwarf_Addr bias = 0;
	Dwarf_Die *cu = dwfl_module_addrdie(mod, pc, &bias);
	Dwarf_Die *scopes = NULL;
	int rc = -1;
	if (cu == NULL)
		return -1;
	int n = dwarf_getscopes(cu, pc - bias, &scopes);
	for (int i = 0; i < n; i++) {
		int tag = dwarf_tag(&scopes[i]);
		if (tag != DW_TAG_subprogram && tag != DW_TAG_inlined_subroutine)
			continue;
		Dwarf_Attribute a;
		Dwarf_Die origin, *die = &scopes[i];
		/* an inlined instance names its abstract origin */
		if (dwarf_attr_integrate(die, DW_AT_abstract_origin, &a) != NULL &&
		    dwarf_formref_die(&a, &origin) != NULL)
			die = &origin;
		const char *name = dwarf_diename(die);
		if (name != NULL) {
			snprintf(buf, size, "%s", name);
			rc = 0;
		}
		break;
	}
	free(scopes);
	return rc;
}

static void from_dladdr(uintptr_t addr, lc_frame *f)
{
	Dl_info di;
	if (dladdr((void *)addr, &di) == 0)
		return;
	set_module(f, di.dli_fname);
	f->offset = (uint64_t)(addr - (uintptr_t)di.dli_fbase);
	if (di.dli_sname != NULL) {
		snprintf(f->func, sizeof(f->func), "%s", di.dli_sname);
		clean(f->func, true);
		f->func_off = (uint64_t)(addr - (uintptr_t)di.dli_saddr);
	}
}

void lc_sym_frame(lc_sym *s, uintptr_t addr, bool return_addr, lc_frame *out)
{
	/* The call instruction ends just before a return address. */
	Dwarf_Addr pc = (Dwarf_Addr)addr - (return_addr && addr > 0 ? 1 : 0);
	memset(out, 0, sizeof(*out));
	Dwfl_Module *mod = s ? dwfl_addrmodule(s->dwfl, pc) : NULL;
	if (mod == NULL) {
		from_dladdr((uintptr_t)pc, out);
		return;
	}
	const char *mainfile = NULL;
	const char *modname = dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, &mainfile, NULL);
	set_module(out, mainfile ? mainfile : modname);
	Dwarf_Addr bias = 0;
	if (dwfl_module_getelf(mod, &bias) != NULL)
		out->offset = (uint64_t)(addr - bias);

	GElf_Off symoff = 0;
	GElf_Sym sym;
	const char *name = dwfl_module_addrinfo(mod, pc, &symoff, &sym, NULL, NULL, NULL);
	if (name != NULL) {
		snprintf(out->func, sizeof(out->func), "%s", name);
		out->func_off = (uint64_t)symoff + (return_addr ? 1 : 0);
	}
	Dwfl_Line *ln = dwfl_module_getsrc(mod, pc);
	int lineno = 0;
	const char *file = ln ? dwfl_lineinfo(ln, NULL, &lineno, NULL, NULL, NULL) : NULL;
	if (file != NULL && lineno > 0) {
		snprintf(out->file, sizeof(out->file), "%s", lc_site_file(file));
		out->line = lineno;
		innermost_func(mod, pc, out->func, sizeof(out->func));
	}
	clean(out->func, true);
	clean(out->file, false);
}

int lc_frame_tool(const lc_frame *f, char *buf, size_t size)
{
	if (f->func[0] && f->file[0])
		return snprintf(buf, size, "%s@%s:%d", f->func, f->file, f->line);
	if (f->func[0] && f->module[0])
		return snprintf(buf, size, "%s+0x%llx@%s", f->func, (unsigned long long)f->func_off,
				f->module);
	if (f->module[0])
		return snprintf(buf, size, "%s+0x%llx", f->module, (unsigned long long)f->offset);
	return snprintf(buf, size, "?");
}

int lc_frame_human(const lc_frame *f, char *buf, size_t size)
{
	if (f->func[0] && f->file[0])
		return snprintf(buf, size, "%s (%s:%d) [%s+0x%llx]", f->func, f->file, f->line,
				f->module, (unsigned long long)f->offset);
	if (f->func[0])
		return snprintf(buf, size, "%s+0x%llx [%s+0x%llx]", f->func,
				(unsigned long long)f->func_off, f->module,
				(unsigned long long)f->offset);
	if (f->module[0])
		return snprintf(buf, size, "[%s+0x%llx]", f->module, (unsigned long long)f->offset);
	return snprintf(buf, size, "?");
}
