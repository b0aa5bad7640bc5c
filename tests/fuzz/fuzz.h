/*
 * fuzz.h - what the libFuzzer targets of tests/fuzz share.
 *
 * Each target drives the real core (a copy built with APICRED_FUZZING,
 * linked in) and the real provider modules (dlopened from the build's
 * providers/.libs). No network: ac_fuzz_http answers every HTTP request
 * from a script taken from the fuzz input, after checking what would be
 * sent. Everything lives in one private temporary directory (fz_dir()).
 */
#ifndef APICRED_FUZZ_H
#define APICRED_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <apicred/apicred.h>

/* Once per process: the temporary directory, every provider module loaded
 * and kept loaded (so a context's dlopen is cheap), the HTTP hook. */
void fz_init(void);
const char *fz_dir(void);

/* Makes fz_dir()/name a confdir: conf.d/ and secrets/ holding the secrets
 * below in secrets/one and secrets/two, and a UUID in secrets/user. */
void fz_confdir(const char *name);

/* The secrets of each confdir: they must never show up in a message. */
#define FZ_SECRET_ONE "fz-secret-one-7f3a9c"
#define FZ_SECRET_TWO "fz-secret-two-b81d04"

/* Writes fz_dir()/rel (mode 0600; the directory must exist). */
void fz_write(const char *rel, const void *data, size_t len);
void fz_remove(const char *rel);

/* Opens a context on the confdir fz_dir()/confdir with the injected clock
 * and random bytes, no background thread, and a logger that checks every
 * message. NULL (message checked) if it fails. */
apicred_ctx *fz_open(const char *confdir);

/* The HTTP replies for what follows, from data: replies separated by a line
 * "~~~". Each is a first line "STATUS [content-type]", header lines, an
 * empty line and the body. Past the last reply requests fail (transport
 * error). The script must stay valid while it is used. */
void fz_replies(const uint8_t *data, size_t len);
/* Requests made since fz_replies. */
int fz_requests(void);

/* Aborts (a finding) if s holds a secret the input did not bring itself.
 * The current input is set by fz_input. */
void fz_input(const uint8_t *data, size_t len);
void fz_no_secret(const char *what, const char *s);

/* Splits *data at the first occurrence of sep: returns the part before it
 * (NUL-terminated copy, free()) and advances *data past sep; without sep,
 * returns all of it and leaves *len 0. */
char *fz_cut(const uint8_t **data, size_t *len, const char *sep);

/* Moves the injected monotonic and wall clocks forward. */
void fz_clock_advance(int64_t ms);

#endif
