/*
 * test_lc_fixture_clean.c - the cmocka fixture on tests that leak
 * nothing: threads joined, descriptors closed, children reaped, a test
 * with its own setup/teardown, and the group-level check.  Must pass.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lc_cmocka.h"
#include "lc_uv.h"

static void *quick(void *arg)
{
	return arg;
}

static void t_thread_joined(void **state)
{
	(void)state;
	lc_thread *t;
	void *ret = NULL;
	int x = 7;
	assert_int_equal(lc_thread_start(&t, "lc-quick", "fixture-test", quick, &x), 0);
	assert_int_equal(lc_thread_join(t, &ret), 0);
	assert_ptr_equal(ret, &x);
}

static void t_fd_closed(void **state)
{
	(void)state;
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	close(fd);
}

static void t_child_reaped(void **state)
{
	(void)state;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(3);
	int ws;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	assert_int_equal(WEXITSTATUS(ws), 3);
}

/* Its own fixture: the descriptor it opens is closed by its teardown,
 * which runs before the check. */
static int own_setup(void **state)
{
	int *fd = malloc(sizeof(*fd));
	if (fd == NULL)
		return -1;
	*fd = -1;
	*state = fd;
	return 0;
}

static int own_teardown(void **state)
{
	int *fd = *state;
	if (*fd >= 0)
		close(*fd);
	free(fd);
	return 0;
}

static void t_own_fixture(void **state)
{
	int *fd = *state;
	assert_non_null(fd);
	*fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(*fd >= 0);
}

int main(void)
{
	/* libuv's pool, if anything here used it, would be started and named. */
	lc_uv_pool_warm();
	const struct CMUnitTest tests[] = {
		LC_UNIT_TEST(t_thread_joined),
		LC_UNIT_TEST(t_fd_closed),
		LC_UNIT_TEST(t_child_reaped),
		LC_UNIT_TEST_SETUP_TEARDOWN(t_own_fixture, own_setup, own_teardown),
	};
	return cmocka_run_group_tests_name("clean", tests, lc_cmocka_group_setup,
					   lc_cmocka_group_teardown);
}
