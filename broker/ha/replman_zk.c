/*
 * replman_zk.c - the manager's ZooKeeper (ha.manager.zookeeper): carries
 * out the machine's ZK_* actions through zkclient.h and feeds what
 * ZooKeeper answers back as ZK_* inputs, then lets the receipt gate look
 * again (a renewed lease may release receipts held while it had run out).
 * Owns m->zk (NULL without a manager).  Loop thread only.
 */
#include "replman_int.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "log.h"
#include "zkclient.h"

static void fed(keel_replman *m)
{
	replman__drive(m);
	replman__gate_check(m);
}

static void z_session(void *ud, keel_ha_zk_state st, uint64_t timeout_ms)
{
	keel_replman *m = ud;
	keel_ha_input in;
	replman__in_init(m, &in, KEEL_HA_IN_ZK_SESSION, 0);
	in.zk_state = st;
	in.zk_timeout_ms = timeout_ms;
	replman__feed(m, &in);
	fed(m);
}

static void z_simple(keel_replman *m, keel_ha_input_type t)
{
	replman__feed_simple(m, t, 0);
	fed(m);
}

static void z_acquired(void *ud)
{
	z_simple(ud, KEEL_HA_IN_ZK_LOCK_ACQUIRED);
}

static void z_lost(void *ud)
{
	z_simple(ud, KEEL_HA_IN_ZK_LOCK_LOST);
}

static void z_sequence(void *ud, const keel_ha_coord *c)
{
	keel_replman *m = ud;
	keel_ha_input in;
	replman__in_init(m, &in, KEEL_HA_IN_ZK_SEQUENCE, 0);
	in.coord = *c;
	replman__feed(m, &in);
	fed(m);
}

static void z_written(void *ud, bool ok, int64_t version)
{
	keel_replman *m = ud;
	keel_ha_input in;
	replman__in_init(m, &in, ok ? KEEL_HA_IN_ZK_WRITE_DONE : KEEL_HA_IN_ZK_WRITE_FAILED, 0);
	in.coord.version = version;
	replman__feed(m, &in);
	fed(m);
}

int replman__zk_create(keel_replman *m, char *err, size_t errlen)
{
	if (m->cfg->manager == NULL)
		return 0;
	assert(m->cfg->manager->zookeeper != NULL); /* the config's check */
	keel_zk_ops ops = { .session = z_session, .lock_acquired = z_acquired,
			    .lock_lost = z_lost, .sequence = z_sequence, .written = z_written,
			    .ud = m };
	return keel_zk_create(&m->zk, m->loop, m->cfg->manager->zookeeper, &ops, err, errlen);
}

int replman__zk_open(keel_replman *m)
{
	return m->zk ? keel_zk_open(m->zk) : 0;
}

void replman__zk_action(keel_replman *m, const keel_ha_action *a)
{
	assert(m->zk != NULL); /* the machine asks only with cfg.manager */
	switch (a->type) {
	case KEEL_HA_ACT_ZK_ACQUIRE_LOCK: keel_zk_acquire(m->zk); break;
	case KEEL_HA_ACT_ZK_RELEASE_LOCK: keel_zk_release(m->zk); break;
	case KEEL_HA_ACT_ZK_READ_SEQUENCE: keel_zk_read(m->zk); break;
	case KEEL_HA_ACT_ZK_WRITE_SEQUENCE: keel_zk_write(m->zk, &a->coord); break;
	default: assert(!"not a ZooKeeper action"); break;
	}
}

json_t *replman__zk_status(keel_replman *m)
{
	if (m->zk == NULL)
		return NULL;
	const keel_ha *ha = &m->ha;
	uint64_t now = replman__now_ms(m);
	json_t *o = keel_zk_status(m->zk);
	if (o == NULL)
		return NULL;
	static const char *const locks[] = { "none", "wanted", "held", "abandoned" };
	json_t *c = json_pack("{s:s, s:b, s:I, s:s, s:I, s:I, s:b}", "machine-lock",
			      ha->lock < 4 ? locks[ha->lock] : "?", "coordinated-known",
			      ha->coord_known, "coordinated-seq", (json_int_t)ha->coord.seq,
			      "coordinated-owner",
			      ha->coord.owner == KEEL_HA_ROLE_PRIMARY  ? "primary"
			      : ha->coord.owner == KEEL_HA_ROLE_BACKUP ? "backup" : "none",
			      "coordinated-version", (json_int_t)ha->coord.version,
			      "zk-lease-ms-left",
			      (json_int_t)(ha->zk_lease_until_ms > now ? ha->zk_lease_until_ms - now
								       : 0),
			      "may-serve", keel_replman_may_serve(m));
	if (c == NULL || json_object_update(o, c) < 0) {
		json_decref(c);
		json_decref(o);
		return NULL;
	}
	json_decref(c);
	return o;
}

void replman__zk_close(keel_replman *m)
{
	keel_zk_close(m->zk);
}

void replman__zk_free(keel_replman *m)
{
	keel_zk_free(m->zk);
	m->zk = NULL;
}
