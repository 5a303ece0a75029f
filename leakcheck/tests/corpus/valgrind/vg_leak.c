/* vg_leak.c - a program with known memcheck findings, for the recorded
 * Valgrind XML of keel-leaks' tests: two definite leaks from two sites
 * (one of them twice), an invalid read, a jump on an uninitialised
 * value; "clean" as argument: none of them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *keep(size_t n)
{
	char *p = malloc(n);
	memset(p, 'x', n);
	return p;
}

static void leak_small(void)
{
	char *p = keep(16);
	p[0] = 'a';
}

static void leak_big(void)
{
	char *p = keep(1024);
	p[1] = 'b';
}

static int read_past_end(void)
{
	int *a = malloc(4 * sizeof(int));
	int v = a[4];
	free(a);
	return v;
}

static int branch_on_uninit(void)
{
	int *a = malloc(sizeof(int));
	int r = *a > 3 ? 1 : 0;
	free(a);
	return r;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "clean") == 0) {
		free(keep(8));
		return 0;
	}
	leak_small();
	leak_small();
	leak_big();
	int r = read_past_end();
	if (branch_on_uninit())
		r++;
	printf("%d\n", r & 0);
	return 0;
}
