/*
 * keelctl_jcheck.c - `keelctl journal check|salvage`: a journal directory
 * read offline for damage (store's keel_journal_check), and its intact
 * records kept when the broker refuses to start on it
 * (keel_journal_salvage).  The broker must not run on the directory.
 * Calls the store and keelctl_common.c.  Single-threaded.
 */
#include "keelctl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "journal.h"

static void jcheck_usage(FILE *f)
{
	fprintf(f,
		"usage: keelctl journal check (--data-dir DIR | --journal-dir DIR)\n"
		"       keelctl journal salvage (--data-dir DIR | --journal-dir DIR) [--file-size BYTES]\n"
		"The broker refuses to start on a damaged journal (only the newest segment's\n"
		"torn tail, left by a crash, is cut at start); these read the journal offline.\n"
		"Stop the broker first.  DIR/journal is the journal of data directory DIR.\n"
		"check: every piece of damage (segment headers, bytes that are no record,\n"
		"  segments cut short or missing, messages whose records are gone), one line\n"
		"  each, and a summary.  Exit 0: the broker starts on it (clean, or only a\n"
		"  torn tail it cuts); 1: the broker refuses it; 2: usage or I/O error.\n"
		"salvage: writes every intact record again into new segments (without the\n"
		"  queue entries whose message is gone), then moves the old segment files and\n"
		"  damage.txt (what was lost) to JOURNAL/damaged-<UTC time>/.  Message ids\n"
		"  go on %d past the highest readable one.  Exit 0: salvaged, or clean\n"
		"  (nothing changed); 1: failed; 2: usage.\n"
		"  --file-size: the new segments' size (default: the old ones').\n"
		KEELCTL_GLOBAL_USAGE,
		KEEL_JOURNAL_SALVAGE_ID_GAP);
}

static const char *kind_word(int kind)
{
	switch (kind) {
	case KEEL_JDAMAGE_TAIL:
		return "torn tail";
	case KEEL_JDAMAGE_ORPHAN:
		return "lost";
	default:
		return "damage";
	}
}

static void print_damage(void *ud, const keel_journal_damage *d)
{
	(void)ud;
	printf("%s: %s\n", kind_word(d->kind), d->what);
}

static void summary(const keel_journal_check_stats *st)
{
	printf("%" PRIu64 " segment(s), %" PRIu64 " intact record(s), %" PRIu64
	       " damaged byte(s), %" PRIu64 " lost message reference(s)\n",
	       st->segments, st->records, st->damaged_bytes, st->lost_refs);
}

int keelctl_journal_check(keelctl_global *g, int argc, char **argv)
{
	enum { O_DATA = 3100, O_JDIR, O_SIZE };
	static const struct option opts[] = {
		KEELCTL_GLOBAL_OPTIONS,
		{ "data-dir", required_argument, NULL, O_DATA },
		{ "journal-dir", required_argument, NULL, O_JDIR },
		{ "file-size", required_argument, NULL, O_SIZE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *data_dir = NULL, *jdir_opt = NULL;
	uint64_t file_size = 0;
	bool salvage = strcmp(argv[0], "salvage") == 0;
	int ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			jcheck_usage(stdout);
			return 0;
		case O_DATA:
			data_dir = optarg;
			break;
		case O_JDIR:
			jdir_opt = optarg;
			break;
		case O_SIZE:
			if (!keelctl_parse_u64(optarg, &file_size) || file_size < KEEL_JOURNAL_MIN_FILE_SIZE ||
			    file_size > KEEL_JOURNAL_MAX_FILE_SIZE) {
				fprintf(stderr, "keelctl journal salvage: --file-size %s: a size "
					"from %d to %d bytes\n", optarg, KEEL_JOURNAL_MIN_FILE_SIZE,
					KEEL_JOURNAL_MAX_FILE_SIZE);
				return 2;
			}
			break;
		default:
			if (keelctl_global_opt(g, ch, optarg))
				goto usage;
		}
	}
	if (optind != argc || (data_dir == NULL) == (jdir_opt == NULL) || (!salvage && file_size)) {
		fprintf(stderr, "keelctl journal %s: %s\n", argv[0],
			optind != argc ? "unexpected argument"
			: (data_dir == NULL) == (jdir_opt == NULL)
				? "give one of --data-dir and --journal-dir"
				: "--file-size is salvage's");
		goto usage;
	}
	char jdir[4096];
	if (data_dir)
		snprintf(jdir, sizeof(jdir), "%s/journal", data_dir);
	else
		snprintf(jdir, sizeof(jdir), "%s", jdir_opt);
	struct stat sb;
	if (stat(jdir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		fprintf(stderr, "keelctl journal %s: journal directory %s: %s\n", argv[0], jdir,
			stat(jdir, &sb) < 0 ? strerror(errno) : "not a directory");
		return 2;
	}
	keel_journal_check_stats st;
	char err[512];
	if (!salvage) {
		int rc = keel_journal_check(jdir, print_damage, NULL, &st, err, sizeof(err));
		if (rc) {
			fprintf(stderr, "keelctl journal check: %s\n", err);
			return 2;
		}
		summary(&st);
		printf("%s\n", st.refuses	 ? "the broker refuses to start on this journal "
						   "(keelctl journal salvage keeps every intact record)"
			       : st.damages ? "the broker starts on it: it cuts the torn tail"
					    : "clean");
		return st.refuses ? 1 : 0;
	}
	int rc = keel_journal_salvage(jdir, file_size, print_damage, NULL, &st, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "keelctl journal salvage: %s\n", err);
		return 1;
	}
	summary(&st);
	if (st.aside[0] == '\0') {
		printf("clean: nothing to salvage, nothing changed\n");
		return 0;
	}
	printf("salvaged: %" PRIu64 " record(s) written into keel-%012" PRIu64
	       ".jnl to keel-%012" PRIu64 ".jnl; the old segments and damage.txt are in %s\n",
	       st.written_records, st.first_seg, st.last_seg, st.aside);
	return 0;
usage:
	jcheck_usage(stderr);
	return 2;
}
