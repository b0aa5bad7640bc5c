/*
 * cred.c - the credential result: items in one reusable arena, so a loop of
 * apicred_get() calls allocates nothing once the arena has grown; and its
 * headers as the lines of a libcurl header list.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "internal.h"

bool ac_header_value_ok(const char *v, size_t len)
{
	return memchr(v, '\r', len) == NULL && memchr(v, '\n', len) == NULL &&
	       strlen(v) == len;
}

API int apicred_cred_new(apicred_cred **cred)
{
	if (!cred)
		return ac_error(APICRED_ERR_INVALID, "apicred_cred_new: cred is NULL");
	*cred = calloc(1, sizeof(**cred));
	return *cred ? APICRED_OK : ac_error(APICRED_ERR_NOMEM, "out of memory");
}

API void apicred_cred_free(apicred_cred *cred)
{
	if (!cred)
		return;
	ac_cred_reset(cred);
	free(cred->arena);
	free(cred->items);
	free(cred->hlines);
	free(cred->hnodes);
	free(cred);
}

void ac_cred_reset(apicred_cred *cred)
{
	ac_cred_reset_lines(cred);
	cred->snap_serial = 0;
	/* Every get: glibc's vectorised memset, where OPENSSL_cleanse goes a
	 * byte at a time; both are kept by the compiler. */
	if (cred->used) /* a new cred has no arena yet */
		explicit_bzero(cred->arena, cred->used);
	cred->used = 0;
	cred->nitems = 0;
	cred->nquery = 0;
	cred->nlayers = 0;
	cred->expires_at = 0;
}

void ac_cred_truncate(apicred_cred *cred, size_t nitems)
{
	if (nitems < cred->nitems) {
		size_t from = cred->items[nitems].name_off;
		OPENSSL_cleanse(cred->arena + from, cred->used - from);
		cred->used = from;
		while (cred->nitems > nitems)
			cred->nquery -= cred->items[--cred->nitems].kind == APICRED_QUERY;
	}
}

static int s_grow(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t n = *cap ? *cap : 16;
	void *q;

	while (n < need)
		n *= 2;
	if (elem == 1) {
		/* The arena holds secrets: never let realloc leave a copy behind. */
		q = malloc(n);
		if (!q)
			return APICRED_ERR_NOMEM;
		if (*p) {
			memcpy(q, *p, *cap);
			OPENSSL_cleanse(*p, *cap);
			free(*p);
		}
	} else {
		q = realloc(*p, n * elem);
		if (!q)
			return APICRED_ERR_NOMEM;
	}
	*p = q;
	*cap = n;
	return APICRED_OK;
}

int ac_cred_add(apicred_cred *cred, apicred_kind kind, const char *name, size_t name_len,
                const void *value, size_t len)
{
	size_t need = cred->used + name_len + 1 + len + 1;
	struct ac_item *it;

	if (need > cred->cap && s_grow((void **)&cred->arena, &cred->cap, need, 1))
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	if (cred->nitems + 1 > cred->capitems &&
	    s_grow((void **)&cred->items, &cred->capitems, cred->nitems + 1, sizeof(*it)))
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	it = &cred->items[cred->nitems++];
	it->kind = kind;
	it->name_off = cred->used;
	memcpy(cred->arena + cred->used, name, name_len);
	cred->arena[cred->used + name_len] = '\0';
	cred->used += name_len + 1;
	it->value_off = cred->used;
	it->value_len = len;
	memcpy(cred->arena + cred->used, value, len);
	cred->arena[cred->used + len] = '\0';
	cred->used += len + 1;
	cred->nquery += kind == APICRED_QUERY;
	return APICRED_OK;
}

/* ---- snapshots: a stack's output kept for the next gets (stack.c) ---- */

struct ac_snap *ac_snap_new(const apicred_cred *cred)
{
	size_t items = cred->nitems * sizeof(struct ac_item);
	struct ac_snap *sn = malloc(sizeof(*sn) + items + cred->used);

	if (!sn)
		return NULL;
	static _Atomic uint64_t serials;

	memset(sn, 0, sizeof(*sn));
	sn->serial = atomic_fetch_add_explicit(&serials, 1, memory_order_relaxed) + 1;
	memcpy(sn->items, cred->items, items);
	memcpy((char *)sn->items + items, cred->arena, cred->used);
	sn->used = cred->used;
	sn->nitems = cred->nitems;
	sn->nquery = cred->nquery;
	sn->nlayers = cred->nlayers;
	memcpy(sn->layers, cred->layers, cred->nlayers * sizeof(cred->layers[0]));
	sn->expires_at = cred->expires_at;
	return sn;
}

void ac_snap_free(struct ac_snap *sn)
{
	if (sn) {
		OPENSSL_cleanse(sn->items + sn->nitems, sn->used);
		free(sn);
	}
}

bool ac_cred_from_snap(apicred_cred *cred, const struct ac_snap *sn)
{
	ac_cred_reset(cred);
	if ((sn->used > cred->cap && s_grow((void **)&cred->arena, &cred->cap, sn->used, 1)) ||
	    (sn->nitems > cred->capitems &&
	     s_grow((void **)&cred->items, &cred->capitems, sn->nitems, sizeof(*cred->items))))
		return false;
	memcpy(cred->arena, sn->items + sn->nitems, sn->used);
	memcpy(cred->items, sn->items, sn->nitems * sizeof(struct ac_item));
	memcpy(cred->layers, sn->layers, sn->nlayers * sizeof(cred->layers[0]));
	cred->used = sn->used;
	cred->nitems = sn->nitems;
	cred->nquery = sn->nquery;
	cred->nlayers = sn->nlayers;
	cred->expires_at = sn->expires_at;
	cred->snap_serial = sn->serial;
	return true;
}

/* Appends one line (a, then b if not NULL, joined by ": ") to hlines and
 * links a node to it after the k-th. */
AC_HOT static void s_line(apicred_cred *cred, size_t *k, const char *a, size_t alen,
                          const char *b, size_t blen)
{
	struct curl_slist *node = &cred->hnodes[*k];
	char *p = cred->hlines + cred->hused;

	memcpy(p, a, alen);
	if (b) {
		memcpy(p + alen, ": ", 2);
		memcpy(p + alen + 2, b, blen);
		alen += 2 + blen;
	}
	p[alen] = '\0';
	cred->hused += alen + 1;
	node->data = p;
	node->next = NULL;
	if ((*k)++)
		node[-1].next = node;
}

int ac_cred_slist(apicred_cred *cred, const char *const *lines, const char *ct_line,
                  struct curl_slist **out)
{
	size_t n = cred->nitems + 1, need = cred->used + cred->nitems + 1, k = 0;

	/* The same snapshot and nothing of the request's: the list made last
	 * time is still right, byte for byte. */
	if (!lines && !ct_line && cred->snap_serial && cred->hserial == cred->snap_serial) {
		*out = cred->hused ? cred->hnodes : NULL;
		return APICRED_OK;
	}
	ac_cred_reset_lines(cred);
	/* Room for the worst case, measured without a pass over the items: a
	 * header takes "name\0value\0" in the arena, one byte more as a line.
	 * Sizes come first: the text never moves while nodes point into it. */
	for (const char *const *l = lines; l && *l; l++, n++)
		need += strlen(*l) + 1;
	if (ct_line)
		need += strlen(ct_line) + 1;
	if ((need > cred->hcap && s_grow((void **)&cred->hlines, &cred->hcap, need, 1)) ||
	    (n > cred->hnodes_cap &&
	     s_grow((void **)&cred->hnodes, &cred->hnodes_cap, n, sizeof(*cred->hnodes))))
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	for (const char *const *l = lines; l && *l; l++)
		s_line(cred, &k, *l, strlen(*l), NULL, 0);
	for (size_t i = 0; i < cred->nitems; i++) {
		const struct ac_item *it = &cred->items[i];
		if (it->kind == APICRED_HEADER)
			s_line(cred, &k, cred->arena + it->name_off, it->value_off - it->name_off - 1,
			       cred->arena + it->value_off, it->value_len);
	}
	if (ct_line)
		s_line(cred, &k, ct_line, strlen(ct_line), NULL, 0);
	cred->hserial = lines || ct_line ? 0 : cred->snap_serial;
	*out = k ? cred->hnodes : NULL;
	return APICRED_OK;
}

static int s_out_error(apicred_out *out, int code, const char *what, const char *name)
{
	if (out->layer)
		return ac_layer_error(out->layer, code, "%s '%s': value contains CR, LF or NUL "
		                      "(header injection refused)", what, name);
	return ac_error(code, "%s '%s': value contains CR, LF or NUL", what, name);
}

/* The lengths the copy needs are measured by the same scans that refuse
 * CR and LF (and ':' in a name): validation costs no pass of its own. */
int ac_out_header(apicred_out *out, const char *name, const char *value)
{
	size_t nlen = strcspn(name, "\r\n:"), vlen = strcspn(value, "\r\n");

	if (!nlen || name[nlen] || value[vlen])
		return s_out_error(out, APICRED_ERR_PROTOCOL, "header", name);
	return ac_cred_add(out->cred, APICRED_HEADER, name, nlen, value, vlen);
}

int ac_header_new(struct ac_layer *L, const char *name, const char *value,
                  apicred_header **out)
{
	size_t nlen = strcspn(name, "\r\n:"), vlen = strcspn(value, "\r\n");
	apicred_header *hdr;

	*out = NULL;
	if (!nlen || name[nlen] || value[vlen])
		return ac_layer_error(L, APICRED_ERR_PROTOCOL, "header '%s': value contains CR, "
		                      "LF or NUL (header injection refused)", name);
	if (!(hdr = malloc(sizeof(*hdr) + nlen + 1 + vlen + 1)))
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	hdr->name_len = nlen;
	hdr->value_len = vlen;
	memcpy(hdr->text, name, nlen + 1);
	memcpy(hdr->text + nlen + 1, value, vlen + 1);
	*out = hdr;
	return APICRED_OK;
}

int ac_out_prepared(apicred_out *out, const apicred_header *hdr)
{
	return ac_cred_add(out->cred, APICRED_HEADER, hdr->text, hdr->name_len,
	                   hdr->text + hdr->name_len + 1, hdr->value_len);
}

void ac_header_free(apicred_header *hdr)
{
	if (hdr) {
		OPENSSL_cleanse(hdr, sizeof(*hdr) + hdr->name_len + hdr->value_len + 2);
		free(hdr);
	}
}

int ac_out_query(apicred_out *out, const char *name, const char *value)
{
	if (!*name)
		return s_out_error(out, APICRED_ERR_INVALID, "query parameter", name);
	return ac_cred_add(out->cred, APICRED_QUERY, name, strlen(name), value, strlen(value));
}

int ac_out_tls(apicred_out *out, const char *name, const void *value, size_t len)
{
	return ac_cred_add(out->cred, APICRED_TLS, name, strlen(name), value, len);
}

API size_t apicred_cred_count(const apicred_cred *cred, apicred_kind kind)
{
	size_t n = 0;

	if (cred && kind == APICRED_QUERY)
		return cred->nquery;
	for (size_t i = 0; cred && i < cred->nitems; i++)
		n += cred->items[i].kind == kind;
	return n;
}

API int apicred_cred_item(const apicred_cred *cred, apicred_kind kind, size_t index,
                          const char **name, const char **value, size_t *value_len)
{
	if (!cred)
		return ac_error(APICRED_ERR_INVALID, "apicred_cred_item: cred is NULL");
	for (size_t i = 0; i < cred->nitems; i++) {
		const struct ac_item *it = &cred->items[i];
		if (it->kind != kind || index-- > 0)
			continue;
		if (name)
			*name = cred->arena + it->name_off;
		if (value)
			*value = cred->arena + it->value_off;
		if (value_len)
			*value_len = it->value_len;
		return APICRED_OK;
	}
	return ac_error(APICRED_ERR_INVALID, "apicred_cred_item: no such item");
}

API const char *apicred_cred_find(const apicred_cred *cred, apicred_kind kind, const char *name)
{
	for (size_t i = 0; cred && name && i < cred->nitems; i++) {
		const struct ac_item *it = &cred->items[i];
		const char *n = cred->arena + it->name_off;
		if (it->kind == kind &&
		    (kind == APICRED_HEADER ? strcasecmp(n, name) : strcmp(n, name)) == 0)
			return cred->arena + it->value_off;
	}
	return NULL;
}

API int64_t apicred_cred_expires_at(const apicred_cred *cred)
{
	return cred ? cred->expires_at : 0;
}

API int apicred_cred_url(const apicred_cred *cred, const char *url, char **out)
{
	CURLU *u;
	CURLUcode uc;
	int rc = APICRED_OK;

	if (!cred || !url || !out)
		return ac_error(APICRED_ERR_INVALID, "apicred_cred_url: NULL argument");
	*out = NULL;
	u = curl_url();
	if (!u)
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	uc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (uc != CURLUE_OK) {
		rc = ac_error(APICRED_ERR_INVALID, "invalid URL: %s", curl_url_strerror(uc));
		goto out;
	}
	for (size_t i = 0; i < cred->nitems && rc == APICRED_OK; i++) {
		const struct ac_item *it = &cred->items[i];
		char *pair;
		if (it->kind != APICRED_QUERY)
			continue;
		if (asprintf(&pair, "%s=%s", cred->arena + it->name_off,
		             cred->arena + it->value_off) < 0) {
			rc = ac_error(APICRED_ERR_NOMEM, "out of memory");
			break;
		}
		/* URLENCODE escapes the value; APPENDQUERY adds the '&'. */
		uc = curl_url_set(u, CURLUPART_QUERY, pair, CURLU_APPENDQUERY | CURLU_URLENCODE);
		OPENSSL_cleanse(pair, strlen(pair));
		free(pair);
		if (uc != CURLUE_OK)
			rc = ac_error(APICRED_ERR_INVALID, "cannot add query parameter: %s",
			              curl_url_strerror(uc));
	}
	if (rc == APICRED_OK) {
		char *tmp = NULL;
		/* Documented as free()-able: hand back our own copy, not curl's. */
		if (curl_url_get(u, CURLUPART_URL, &tmp, 0) != CURLUE_OK || !(*out = ac_strdup(tmp)))
			rc = ac_error(APICRED_ERR_NOMEM, "out of memory");
		curl_free(tmp);
	}
out:
	curl_url_cleanup(u);
	return rc;
}

/* ---- as libcurl header lines --------------------------------------------- */

int ac_slist_headers(struct curl_slist **list, const char *const *lines,
                     const apicred_cred *cred)
{
	size_t n = apicred_cred_count(cred, APICRED_HEADER);
	struct curl_slist *l;
	char *line;

	for (; lines && *lines; lines++) {
		if (!(l = curl_slist_append(*list, *lines)))
			goto nomem;
		*list = l;
	}
	for (size_t i = 0; i < n; i++) {
		const char *name, *value;
		apicred_cred_item(cred, APICRED_HEADER, i, &name, &value, NULL);
		if (asprintf(&line, "%s: %s", name, value) < 0)
			goto nomem;
		l = curl_slist_append(*list, line);
		OPENSSL_cleanse(line, strlen(line));
		free(line);
		if (!l)
			goto nomem;
		*list = l;
	}
	return APICRED_OK;
nomem:
	ac_slist_free(*list);
	*list = NULL;
	return ac_error(APICRED_ERR_NOMEM, "out of memory");
}

void ac_slist_free(struct curl_slist *list)
{
	for (struct curl_slist *l = list; l; l = l->next)
		OPENSSL_cleanse(l->data, strlen(l->data));
	curl_slist_free_all(list);
}

static bool s_tchar(int c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

bool ac_header_name_ok(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!s_tchar((unsigned char)s[i]))
			return false;
	return true;
}

bool ac_header_line_ok(const char *s)
{
	const char *colon = strchr(s, ':');

	return colon && ac_header_name_ok(s, (size_t)(colon - s)) && !strpbrk(colon, "\r\n");
}
