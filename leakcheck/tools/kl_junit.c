/*
 * kl_junit.c - leaks in JUnit XML (keel-harness --junit, ctest
 * --output-junit, most CI test reporters): the text of every failure,
 * error, skipped, system-out and system-err element (entities decoded by
 * libxml2) is read as lines by kl_text.c, each at its line of the file,
 * with the enclosing testcase's name standing in for test=-; an element's
 * `message` attribute is read only when its text had no leak (it repeats
 * the text's first line in most reporters).  Calls kl_text.c.
 * Single-threaded.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "kl.h"

bool kl_junit_is(const char *head, size_t n)
{
	/* after an optional UTF-8 BOM, blanks, the XML declaration and comments */
	char buf[1024];
	size_t len = n < sizeof(buf) - 1 ? n : sizeof(buf) - 1;
	memcpy(buf, head, len);
	buf[len] = '\0';
	const char *p = buf;
	if ((unsigned char)p[0] == 0xef && (unsigned char)p[1] == 0xbb && (unsigned char)p[2] == 0xbf)
		p += 3;
	for (;;) {
		p += strspn(p, " \t\r\n");
		if (strncmp(p, "<?", 2) == 0 || strncmp(p, "<!--", 4) == 0) {
			const char *end = strstr(p, strncmp(p, "<?", 2) == 0 ? "?>" : "-->");
			if (end == NULL)
				return false;
			p = end + 2;
			continue;
		}
		break;
	}
	return strncmp(p, "<testsuites", 11) == 0 || strncmp(p, "<testsuite", 10) == 0;
}

static bool is(const xmlNode *n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

static void scan_element(kl_groups *g, xmlNode *e, const char *file, const char *testcase)
{
	kl_origin o = { .file = file, .test_fallback = testcase };
	size_t before = kl_groups_reports(g);
	xmlChar *text = xmlNodeGetContent(e);
	/* the text starts on the start tag's line (libxml2 gives a text
	 * node the line where it ends) */
	o.first_line = xmlGetLineNo(e);
	if (text != NULL)
		kl_text_scan_block(g, (const char *)text, &o);
	xmlFree(text);
	xmlChar *msg = xmlGetProp(e, (const xmlChar *)"message");
	if (msg != NULL && kl_groups_reports(g) == before) {
		kl_text_scan_block(g, (const char *)msg, &o);
	}
	xmlFree(msg);
}

static void walk(kl_groups *g, xmlNode *n, const char *file, const char *testcase)
{
	for (; n != NULL; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (is(n, "failure") || is(n, "error") || is(n, "skipped") || is(n, "system-out") ||
		    is(n, "system-err")) {
			scan_element(g, n, file, testcase);
			continue;
		}
		xmlChar *name = is(n, "testcase") ? xmlGetProp(n, (const xmlChar *)"name") : NULL;
		walk(g, n->children, file, name ? (const char *)name : testcase);
		xmlFree(name);
	}
}

int kl_junit_scan(kl_groups *g, const char *path)
{
	xmlDoc *doc = xmlReadFile(path, NULL, XML_PARSE_NONET | XML_PARSE_HUGE | XML_PARSE_BIG_LINES |
						XML_PARSE_RECOVER | XML_PARSE_NOERROR |
						XML_PARSE_NOWARNING);
	xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
	if (root == NULL || !(is(root, "testsuites") || is(root, "testsuite"))) {
		fprintf(stderr, KL_PROG ": %s: not JUnit XML (no testsuites or testsuite root)\n",
			path);
		xmlFreeDoc(doc);
		return -EINVAL;
	}
	walk(g, root, path, NULL);
	xmlFreeDoc(doc);
	return 0;
}
