#define _GNU_SOURCE
/*
 * counter: a test provider with a session, steered by the test through an
 * exported control block, so the core's cache can be tested without a
 * network: fetches are counted, can fail, can block until released; its
 * apply is counted, and may say it is static (host->apply_static).
 */
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apicred/provider.h>

#include "counter.h"


__attribute__((visibility("default"))) struct counter_control counter_control;

static const apicred_schema s_schema[] = {
	{ "label", APICRED_T_STRING, 0, "tok", NULL, "token prefix" },
	{ NULL, 0, 0, NULL, NULL, NULL }
};

struct s_state {
	const apicred_host *host;
	const char *label;
	apicred_header *hdr_hex, *hdr_b64; /* names (and a prefix) for add_encoded */
};

static int s_init(const apicred_host *host, void **state)
{
	struct s_state *st = calloc(1, sizeof(*st));

	if (!st)
		return APICRED_ERR_NOMEM;
	st->host = host;
	st->label = host->cfg_str(host, "label");
	if (host->header_new(host, "X-Enc-Hex", "sha256=", &st->hdr_hex) != APICRED_OK ||
	    host->header_new(host, "X-Enc-B64", "", &st->hdr_b64) != APICRED_OK) {
		host->header_free(host, st->hdr_hex);
		free(st);
		return APICRED_ERR_NOMEM;
	}
	*state = st;
	return atomic_load(&counter_control.static_apply) ? host->apply_static(host, 0)
	                                                   : APICRED_OK;
}

static int s_fetch(void *state, const apicred_host *host, const void *previous,
                   apicred_session *out)
{
	struct s_state *st = state;
	int n = atomic_fetch_add(&counter_control.fetches, 1) + 1;

	atomic_store(&counter_control.reason, host->fetch_reason(host, previous));
	int fail = atomic_load(&counter_control.fail);
	char *tok;

	if (atomic_load(&counter_control.block)) {
		atomic_fetch_add(&counter_control.blocked, 1);
		while (atomic_load(&counter_control.block))
			sched_yield();
		atomic_fetch_sub(&counter_control.blocked, 1);
	}
	if (atomic_load(&counter_control.delay_ms)) {
		struct timespec ts = { 0, atomic_load(&counter_control.delay_ms) * 1000000L };
		nanosleep(&ts, NULL);
	}
	if (fail) {
		out->retry_after_ms = atomic_load(&counter_control.retry_after_ms);
		return host->error(host, fail, "fetch %d failed as told", n);
	}
	if (asprintf(&tok, "%s-%d", st->label, n) < 0)
		return APICRED_ERR_NOMEM;
	out->data = tok;
	out->lifetime_ms = atomic_load(&counter_control.lifetime_ms);
	return APICRED_OK;
}

static void s_session_free(void *state, void *data)
{
	free(data);
}

static int s_apply(void *state, const apicred_host *host, const void *session,
                   const apicred_request *req, apicred_out *out)
{
	struct s_state *st = state;

	atomic_fetch_add(&counter_control.applies, 1);
	if (atomic_load(&counter_control.encode)) {
		/* Every byte value; what lies past the NUL must stay untouched. */
		unsigned char in[256];
		char hex[2 * sizeof(in) + 2];
		size_t n;

		for (size_t i = 0; i < sizeof(in); i++)
			in[i] = (unsigned char)i;
		hex[sizeof(hex) - 1] = '#';
		n = host->hex_into(host, in, sizeof(in), hex);
		if (n != 2 * sizeof(in) || hex[n] != '\0' || hex[sizeof(hex) - 1] != '#')
			return host->error(host, APICRED_ERR_INTERNAL, "hex_into: returned %zu", n);
		if (host->add_header(out, "X-Hex", hex) != APICRED_OK)
			return APICRED_ERR_PROTOCOL;
		/* A value past the core's 511-byte buffer (not a multiple of 8
		 * bytes), and a short one. */
		if (host->add_encoded(host, out, st->hdr_hex, APICRED_ENC_HEX, in, sizeof(in) - 1) ||
		    host->add_encoded(host, out, st->hdr_b64, APICRED_ENC_BASE64, in, 5))
			return APICRED_ERR_PROTOCOL;
		if (host->add_encoded(host, out, st->hdr_b64, 3, in, 5) != APICRED_ERR_INVALID ||
		    host->add_encoded(host, out, NULL, APICRED_ENC_HEX, in, 5) != APICRED_ERR_INVALID)
			return host->error(host, APICRED_ERR_INTERNAL, "add_encoded: took bad input");
	}
	return host->add_header(out, "Authorization", session);
}

static apicred_feedback s_feedback(void *state, const apicred_host *host, const void *session,
                                   long status, const void *body, size_t len)
{
	return status == 401 ? APICRED_FEEDBACK_INVALIDATE : APICRED_FEEDBACK_NONE;
}

static void s_fini(void *state)
{
	struct s_state *st = state;

	atomic_fetch_add(&counter_control.finis, 1);
	st->host->header_free(st->host, st->hdr_hex);
	st->host->header_free(st->host, st->hdr_b64);
	free(st);
}

static const apicred_vtable_v1 s_vtable = {
	.name = "counter",
	.schema = s_schema,
	.init = s_init,
	.fetch = s_fetch,
	.session_free = s_session_free,
	.apply = s_apply,
	.feedback = s_feedback,
	.fini = s_fini,
};

APICRED_PROVIDER_V1(s_vtable)
