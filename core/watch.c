/*
 * watch.c - the files a stack was made from (its service file, included
 * files, secret and certificate files), and whether any changed since:
 * a change reloads the service.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

static void s_watch_stat(struct ac_watch *w)
{
	struct stat sb;

	if (stat(w->path, &sb) != 0) {
		w->missing = true;
		w->dev = 0;
		w->ino = 0;
		w->size = 0;
		w->mtime_ns = 0;
		return;
	}
	w->missing = false;
	w->dev = sb.st_dev;
	w->ino = sb.st_ino;
	w->size = sb.st_size;
	w->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
}

int ac_watch_add(struct ac_stack *st, const char *path)
{
	struct ac_watch *w;

	for (w = st->watches; w; w = w->next)
		if (strcmp(w->path, path) == 0)
			return APICRED_OK;
	w = calloc(1, sizeof(*w));
	if (!w || !(w->path = ac_strdup(path))) {
		free(w);
		return APICRED_ERR_NOMEM;
	}
	s_watch_stat(w);
	w->next = st->watches;
	st->watches = w;
	return APICRED_OK;
}

bool ac_watch_changed(struct ac_stack *st)
{
	for (struct ac_watch *w = st->watches; w; w = w->next) {
		struct ac_watch now = { .path = w->path };
		s_watch_stat(&now);
		if (now.missing != w->missing || now.dev != w->dev || now.ino != w->ino ||
		    now.size != w->size || now.mtime_ns != w->mtime_ns)
			return true;
	}
	return false;
}
