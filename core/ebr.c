/*
 * ebr.c - epoch-based reclamation, so that apicred_get reads the current
 * stack and session with plain atomic loads: no lock, no reference count,
 * no shared cache line written on the hot path.
 *
 * Each thread owns a slot (its own cache line) holding the epoch it entered
 * at, or 0 when outside. A writer unpublishes an object, then retires it
 * tagged with the current epoch and advances the epoch; the object is freed
 * once every active slot shows a later epoch. The seq_cst fences on both
 * sides make it impossible for a reader to miss the new pointer while the
 * writer misses the reader's slot.
 */
#include "config.h"

#include <sched.h>
#include <stdlib.h>

#include "internal.h"

struct s_slot {
	_Atomic uint64_t epoch;
	atomic_bool in_use;
	struct s_slot *next;
} __attribute__((aligned(64)));

struct s_retired {
	struct s_retired *next;
	void *owner;
	void *ptr;
	void (*fn)(void *);
	uint64_t epoch;
};

static struct {
	pthread_once_t once;
	pthread_key_t key;
	pthread_mutex_t mu;
	_Atomic uint64_t epoch;
	_Atomic(struct s_slot *) slots;
	struct s_retired *retired;
} gl = { PTHREAD_ONCE_INIT, 0, PTHREAD_MUTEX_INITIALIZER, 1, NULL, NULL };

static _Thread_local struct s_slot *t_slot;
static _Thread_local unsigned t_depth;

static void s_thread_exit(void *p)
{
	struct s_slot *slot = p;

	atomic_store_explicit(&slot->epoch, 0, memory_order_release);
	atomic_store_explicit(&slot->in_use, false, memory_order_release);
}

static void s_once(void)
{
	pthread_key_create(&gl.key, s_thread_exit);
}

static struct s_slot *s_slot_acquire(void)
{
	struct s_slot *slot;

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
	t_slot = slot;
	return slot;
}

void ac_ebr_enter(void)
{
	struct s_slot *slot;

	if (t_depth++ > 0)
		return;
	slot = t_slot ? t_slot : s_slot_acquire();
	atomic_store_explicit(&slot->epoch,
	                      atomic_load_explicit(&gl.epoch, memory_order_relaxed),
	                      memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
}

void ac_ebr_leave(void)
{
	if (--t_depth > 0)
		return;
	atomic_store_explicit(&t_slot->epoch, 0, memory_order_release);
}

/* Unlinks what can be freed; the caller frees it outside the lock. */
static struct s_retired *s_collect_inlock(void *owner)
{
	uint64_t min = UINT64_MAX;
	struct s_retired *done = NULL, **pp = &gl.retired;

	if (!owner) {
		atomic_thread_fence(memory_order_seq_cst);
		for (struct s_slot *s = atomic_load(&gl.slots); s; s = s->next) {
			uint64_t e = atomic_load_explicit(&s->epoch, memory_order_acquire);
			if (e && e < min)
				min = e;
		}
	}
	while (*pp) {
		struct s_retired *r = *pp;
		if (owner ? r->owner == owner : r->epoch < min) {
			*pp = r->next;
			r->next = done;
			done = r;
		} else {
			pp = &r->next;
		}
	}
	return done;
}

static void s_free_list(struct s_retired *r)
{
	while (r) {
		struct s_retired *next = r->next;
		r->fn(r->ptr);
		free(r);
		r = next;
	}
}

void ac_ebr_retire(void *owner, void *ptr, void (*fn)(void *))
{
	struct s_retired *r = malloc(sizeof(*r)), *done;

	pthread_mutex_lock(&gl.mu);
	if (r) {
		*r = (struct s_retired){ gl.retired, owner, ptr, fn,
		                         atomic_load(&gl.epoch) };
		gl.retired = r;
	}
	atomic_fetch_add(&gl.epoch, 1);
	done = s_collect_inlock(NULL);
	pthread_mutex_unlock(&gl.mu);
	s_free_list(done);
	if (!r) {
		/* Out of memory: wait until no reader is inside, then free. */
		for (;;) {
			bool busy = false;
			atomic_thread_fence(memory_order_seq_cst);
			for (struct s_slot *s = atomic_load(&gl.slots); s; s = s->next)
				if (s != t_slot && atomic_load(&s->epoch))
					busy = true;
			if (!busy)
				break;
			sched_yield();
		}
		fn(ptr);
	}
}

void ac_ebr_drain(void *owner)
{
	struct s_retired *done;

	pthread_mutex_lock(&gl.mu);
	done = s_collect_inlock(owner);
	pthread_mutex_unlock(&gl.mu);
	s_free_list(done);
}
