/*
 * counter.h - the control block of the counter test provider (counter.c),
 * which the tests (fixture.h's fx_counter) steer it through.
 */
#ifndef COUNTER_H
#define COUNTER_H

#include <stdatomic.h>

struct counter_control {
	atomic_int fetches;     /* fetches started */
	atomic_int fail;        /* apicred_err to return, 0 = succeed */
	atomic_llong lifetime_ms;
	atomic_llong retry_after_ms;
	atomic_bool block;      /* fetch waits until cleared */
	atomic_int blocked;     /* fetches currently waiting */
	atomic_int delay_ms;    /* real sleep inside fetch, to make callers overlap */
	atomic_int finis;       /* states finalised */
	atomic_int reason;      /* host->fetch_reason of the last fetch */
	atomic_bool static_apply; /* init says host->apply_static */
	atomic_int applies;     /* apply calls */
	atomic_bool encode;     /* apply adds X-Hex, X-Enc-Hex, X-Enc-B64: what host->hex_into
	                         * and add_encoded make of bytes 0..255 (0..254 and 0..4) */
};

#endif
