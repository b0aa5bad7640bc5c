/*
 * ebr.c - epoch-based reclamation, so that apicred_get reads the current
 * stack and session with plain atomic loads: no lock, no reference count,
 * no shared cache line written on the hot path.
 *
 * Each thread owns a slot (its own cache line) holding the epoch it entered
 * at, or 0 when outside. A writer unpublishes an object, then tags it with
 * the current epoch and advances the epoch (ac_ebr_advance); the object may
 * be freed once every active slot shows a later epoch (tag < ac_ebr_safe()).
 * The seq_cst fences on both sides make it impossible for a reader to miss
 * the new pointer while the writer misses the reader's slot. Where Linux
 * offers membarrier(2), the fences are asymmetric (liburcu's trick): the
 * writer, rare, makes every running thread of the process execute a full
 * barrier; the reader, on every apicred_get, then needs none of its own.
 *
 * Retiring never frees: callers retire while holding their locks and call
 * ac_ebr_collect after releasing them, so destructors (a provider's fini or
 * session_free) never run under a lock of ours.
 */
#include "config.h"

#include <stdlib.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/membarrier.h>
#include <sys/syscall.h>
#endif
/* TSan knows nothing of membarrier: plain fences there. */
#if defined(__linux__) && defined(__NR_membarrier) && !defined(__SANITIZE_THREAD__)
#define S_MEMBARRIER 1
#endif

#include "internal.h"

static struct {
	pthread_once_t once;
	pthread_key_t key;
	pthread_mutex_t mu;
	_Atomic(struct ac_ebr_slot *) slots;
	struct ac_ebr_node *retired;
} gl = { PTHREAD_ONCE_INIT, 0, PTHREAD_MUTEX_INITIALIZER, NULL, NULL };

/* What ac_ebr_enter and ac_ebr_leave (internal.h, inline) read. */
struct ac_ebr_reader ac_ebr = { 1, false };
AC_EBR_TLS struct ac_ebr_slot *ac_ebr_t_slot;
AC_EBR_TLS unsigned ac_ebr_t_depth;

static void s_thread_exit(void *p)
{
	struct ac_ebr_slot *slot = p;

	atomic_store_explicit(&slot->epoch, 0, memory_order_release);
	atomic_store_explicit(&slot->in_use, false, memory_order_release);
}

#ifdef S_MEMBARRIER
static bool s_membarrier(int cmd)
{
	return syscall(__NR_membarrier, cmd, 0, 0) == 0;
}
#endif

static void s_once(void)
{
	pthread_key_create(&gl.key, s_thread_exit);
#ifdef S_MEMBARRIER
	ac_ebr.asym = s_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
#endif
}

struct ac_ebr_slot *ac_ebr_slot_acquire(void)
{
	struct ac_ebr_slot *slot;

	pthread_once(&gl.once, s_once);
	for (slot = atomic_load(&gl.slots); slot; slot = slot->next) {
		bool expect = false;
		if (atomic_compare_exchange_strong(&slot->in_use, &expect, true))
			goto found;
	}
	/* Slots are never freed: a thread that exits leaves its slot for reuse. */
	slot = aligned_alloc(64, sizeof(*slot));
	if (!slot)
		abort(); /* 64 bytes: nothing sensible is left to do */
	atomic_init(&slot->epoch, 0);
	atomic_init(&slot->in_use, true);
	slot->next = atomic_load(&gl.slots);
	while (!atomic_compare_exchange_weak(&gl.slots, &slot->next, slot))
		;
found:
	pthread_setspecific(gl.key, slot);
	ac_ebr_t_slot = slot;
	return slot;
}

uint64_t ac_ebr_advance(void)
{
	return atomic_fetch_add(&ac_ebr.epoch, 1);
}

uint64_t ac_ebr_safe(void)
{
	uint64_t min = UINT64_MAX;

	pthread_once(&gl.once, s_once); /* ac_ebr.asym as the readers see it */
#ifdef S_MEMBARRIER
	/* Should it ever fail, nothing is safe: a leak, never a use after free. */
	if (ac_ebr.asym && !s_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED))
		return 0;
#endif
	atomic_thread_fence(memory_order_seq_cst);
	for (struct ac_ebr_slot *s = atomic_load(&gl.slots); s; s = s->next) {
		uint64_t e = atomic_load_explicit(&s->epoch, memory_order_acquire);
		if (e && e < min)
			min = e;
	}
	return min;
}

void ac_ebr_retire(struct ac_ebr_node *n, void *owner, void (*fn)(struct ac_ebr_node *))
{
	n->owner = owner;
	n->fn = fn;
	pthread_mutex_lock(&gl.mu);
	n->tag = ac_ebr_advance();
	n->next = gl.retired;
	gl.retired = n;
	pthread_mutex_unlock(&gl.mu);
}

/* Unlinks owner's nodes (all of them) or, without owner, those that are
 * safe; the caller frees them after unlocking. */
static struct ac_ebr_node *s_unlink_inlock(void *owner)
{
	uint64_t safe = owner ? 0 : ac_ebr_safe();
	struct ac_ebr_node *done = NULL, **pp = &gl.retired;

	while (*pp) {
		struct ac_ebr_node *n = *pp;
		if (owner ? n->owner == owner : n->tag < safe) {
			*pp = n->next;
			n->next = done;
			done = n;
		} else {
			pp = &n->next;
		}
	}
	return done;
}

static void s_free_list(struct ac_ebr_node *n)
{
	while (n) {
		struct ac_ebr_node *next = n->next;
		n->fn(n);
		n = next;
	}
}

void ac_ebr_collect(void)
{
	struct ac_ebr_node *done;

	pthread_mutex_lock(&gl.mu);
	done = s_unlink_inlock(NULL);
	pthread_mutex_unlock(&gl.mu);
	s_free_list(done);
}

void ac_ebr_drain(void *owner)
{
	struct ac_ebr_node *done;

	pthread_mutex_lock(&gl.mu);
	done = s_unlink_inlock(owner);
	pthread_mutex_unlock(&gl.mu);
	s_free_list(done);
}

void ac_ebr_each(void *owner, void (*fn)(struct ac_ebr_node *))
{
	pthread_mutex_lock(&gl.mu);
	for (struct ac_ebr_node *n = gl.retired; n; n = n->next)
		if (n->owner == owner)
			fn(n);
	pthread_mutex_unlock(&gl.mu);
}

/* ---- fork ------------------------------------------------------------------
 * gl.mu is held across fork() so the retired list is whole in the child.
 * Only the forking thread exists there: every other slot is released, or a
 * read section left open by a vanished thread would block reclaiming for
 * ever. */
void ac_ebr_prefork(void)
{
	pthread_mutex_lock(&gl.mu);
}

void ac_ebr_postfork_parent(void)
{
	pthread_mutex_unlock(&gl.mu);
}

void ac_ebr_postfork_child(void)
{
	pthread_mutex_init(&gl.mu, NULL);
#ifdef S_MEMBARRIER
	if (ac_ebr.asym) /* the child is a new process for membarrier */
		s_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
#endif
	for (struct ac_ebr_slot *s = atomic_load(&gl.slots); s; s = s->next) {
		if (s == ac_ebr_t_slot)
			continue;
		atomic_store(&s->epoch, 0);
		atomic_store(&s->in_use, false);
	}
}
