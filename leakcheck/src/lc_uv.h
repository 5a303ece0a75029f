/*
 * lc_uv.h - libuv's thread pool and the leak check.
 *
 * libuv starts its pool (UV_THREADPOOL_SIZE threads, 4 by default) on the
 * first uv_queue_work, uv_fs_ call or uv_getaddrinfo of the process, and they
 * live until exit.  libuv >= 1.45 names them "libuv-worker" (allowlisted);
 * 1.44 (Debian 12) leaves them unnamed, so they look like any thread.
 * lc_uv_pool_warm() starts the pool now and names its threads
 * "libuv-worker": call it first thing, before any snapshot, while the
 * process has one thread.  Returns how many threads it named (0 when the
 * pool was already running), or -errno.
 */
#ifndef LC_UV_H
#define LC_UV_H

int lc_uv_pool_warm(void);

#endif
