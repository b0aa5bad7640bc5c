/*
 * session.c - a layer's session object: what a fetch or the shared store
 * gives, with its lifetime on both clocks. Made here for cache.c and
 * store.c alike.
 */
#include "config.h"

#include <stdlib.h>

#include "internal.h"

#define S_LIFE_MAX_MS (INT64_C(100) * 366 * 24 * 3600 * 1000) /* a century */

struct ac_session *ac_session_new(struct ac_layer *L, void *data, int64_t mono_start,
                                  int64_t wall_start, int64_t life_ms)
{
	struct ac_session *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	/* Saturated so that no sum below overflows. */
	if (life_ms > S_LIFE_MAX_MS)
		life_ms = S_LIFE_MAX_MS;
	s->data = data;
	s->layer = L;
	s->expires_ms = mono_start + life_ms;
	s->refresh_at_ms = s->expires_ms - (L->refresh_ahead_ms < life_ms / 2 ? L->refresh_ahead_ms
	                                                                      : life_ms / 2);
	s->wall_expires_s = (wall_start + life_ms) / 1000;
	s->wall_issued_ms = wall_start;
	s->wall_expires_ms = wall_start + life_ms;
	atomic_init(&s->invalid, false);
	return s;
}
