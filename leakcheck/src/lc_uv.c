/*
 * lc_uv.c - start libuv's thread pool early and name it (lc_uv.h).
 * Runs one no-op work item on a private loop; the pool's threads are
 * created (and have started) before uv_queue_work returns.  Call while
 * the process has one thread.
 */
#include "lc_uv.h"

#include <uv.h>

#include "lc_check.h"

static void noop_work(uv_work_t *w)
{
	(void)w;
}

static void noop_after(uv_work_t *w, int status)
{
	(void)w;
	(void)status;
}

int lc_uv_pool_warm(void)
{
	lc_snapshot *before = NULL;
	uv_loop_t loop;
	uv_work_t w;
	int rc = lc_snapshot_take(&before);
	if (rc < 0)
		return rc;
	rc = uv_loop_init(&loop);
	if (rc < 0)
		goto out;
	rc = uv_queue_work(&loop, &w, noop_work, noop_after);
	if (rc == 0)
		uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	if (rc == 0)
		rc = lc_name_new_threads(before, "libuv-worker");
out:
	lc_snapshot_free(before);
	return rc;
}
