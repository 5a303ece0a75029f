/*
 * session_tx.c - transactions of a session (see session_int.h): BEGIN,
 * COMMIT, ABORT, and finding the transaction a frame names.
 *
 * Owns the transaction table (`txs`, by name); each entry owns its core
 * transaction until COMMIT or ABORT.  Invariant: tx_count counts the
 * table, at most KEEL_MAX_TRANSACTIONS.  Loop thread only.
 */
#include <assert.h>
#include <string.h>

#include "limits.h"
#include "session_int.h"

/* ---- transactions ------------------------------------------------------- */

transaction *session__find_tx(keel_session *s, const keel_stomp_frame *f, int *err)
{
	*err = 0;
	const char *name = hdr(f, "transaction");
	if (name == NULL)
		return NULL;
	transaction *t;
	HASH_FIND_STR(s->txs, name, t);
	if (t == NULL)
		*err = session__send_error(s, f, "Unknown transaction '%s'", name);
	return t;
}

int session__on_begin(keel_session *s, const keel_stomp_frame *f)
{
	assert(s->state == S_CONNECTED);
	const char *name = hdr(f, "transaction");
	if (name == NULL)
		return session__send_error(s, f, "BEGIN without a transaction header");
	transaction *t;
	HASH_FIND_STR(s->txs, name, t);
	if (t)
		return session__send_error(s, f, "Transaction '%s' is already open", name);
	if (s->tx_count >= KEEL_MAX_TRANSACTIONS)
		return session__send_error(s, f, "Too many open transactions (limit %d)",
					   KEEL_MAX_TRANSACTIONS);
	t = keel_calloc(1, sizeof(*t));
	if (t == NULL)
		return session__send_error(s, f, "Out of memory");
	t->name = keel_strdup(name);
	t->tx = keel_tx_create(s->env.core);
	if (t->name == NULL || t->tx == NULL) {
		if (t->tx)
			keel_tx_abort(t->tx);
		keel_free(t->name);
		keel_free(t);
		return session__send_error(s, f, "Out of memory");
	}
	HASH_ADD_KEYPTR(hh, s->txs, t->name, strlen(t->name), t);
	s->tx_count++;
	return session__send_receipt(s, f);
}

void session__tx_remove(keel_session *s, transaction *t)
{
	assert(s->tx_count > 0);
	HASH_DEL(s->txs, t);
	s->tx_count--;
	keel_free(t->name);
	keel_free(t);
}

int session__on_commit_abort(keel_session *s, const keel_stomp_frame *f, bool commit)
{
	assert(s->state == S_CONNECTED);
	const char *name = hdr(f, "transaction");
	if (name == NULL)
		return session__send_error(s, f, "%s without a transaction header",
					   commit ? "COMMIT" : "ABORT");
	transaction *t;
	HASH_FIND_STR(s->txs, name, t);
	if (t == NULL)
		return session__send_error(s, f, "Unknown transaction '%s'", name);
	keel_tx *tx = t->tx;
	session__tx_remove(s, t);
	if (commit) {
		int rc = keel_tx_commit(tx);
		char why[160];
		if (rc)
			return session__send_error(s, f, "Commit of '%s' failed: %s", name,
						   session__refusal(s, rc, why, sizeof(why)));
	} else {
		keel_tx_abort(tx);
	}
	return session__send_receipt(s, f);
}
