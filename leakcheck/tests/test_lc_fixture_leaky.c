/*
 * test_lc_fixture_leaky.c - a cmocka program whose tests leak on purpose
 * (a thread, a descriptor, a child) between clean ones.  Run by
 * check_fixture.sh, which expects it to fail, naming each leak and its
 * test, and the clean tests to pass.  Not a test on its own.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "lc_cmocka.h"

/* The read end the leaked thread and child block on; nobody writes, and
 * the write end closes when the process exits, which ends the child. */
static int block_fds[2] = { -1, -1 };

static void *wait_forever(void *arg)
{
	char c;
	(void)arg;
	while (read(block_fds[0], &c, 1) != 0)
		;
	return NULL;
}

static void t_clean(void **state)
{
	(void)state;
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	close(fd);
}

static void t_leaks_thread(void **state)
{
	(void)state;
	lc_thread *t;
	assert_int_equal(lc_thread_start(&t, "lc-leaky", "fixture-test", wait_forever, NULL), 0);
}

static void t_leaks_fd(void **state)
{
	(void)state;
	assert_true(open("/dev/null", O_RDONLY) >= 0);
}

static void t_leaks_child(void **state)
{
	(void)state;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(block_fds[1]);
		wait_forever(NULL);
		_exit(0);
	}
}

static int setup_pipe(void **state)
{
	(void)state;
	return pipe2(block_fds, O_CLOEXEC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		LC_UNIT_TEST(t_clean),
		LC_UNIT_TEST(t_leaks_thread),
		LC_UNIT_TEST(t_clean),
		LC_UNIT_TEST(t_leaks_fd),
		LC_UNIT_TEST(t_leaks_child),
		LC_UNIT_TEST(t_clean),
	};
	return cmocka_run_group_tests(tests, setup_pipe, NULL);
}
