/* warren/error.h - the error type every fallible warren function reports through.
 *
 * A fallible function returns 0 or a negative WARREN_E* code and takes a
 * `warren_error *err` last (NULL allowed). The failure site writes the message
 * once; callers pass the code up. The first message written wins, so the
 * innermost, most specific cause is what the user sees.
 */
#ifndef WARREN_ERROR_H
#define WARREN_ERROR_H

#include <stddef.h>

#if defined(__GNUC__)
#define WARREN_API __attribute__((visibility("default")))
#define WARREN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define WARREN_API
#define WARREN_PRINTF(f, a)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes. Keep warren_strerror()'s table in common/error.c in step:
 * tests/unit/test_error.c checks every code has a string. */
enum {
	WARREN_OK = 0,
	WARREN_ENOMEM = -1,     /* out of memory */
	WARREN_EINVAL = -2,     /* bad argument from the caller */
	WARREN_EDECODE = -3,    /* bytes that are not what the wire format says */
	WARREN_ELIMIT = -4,     /* untrusted input over a configured hard limit */
	WARREN_ESCHEMA = -5,    /* task arguments do not match the task's schema */
	WARREN_ECONFIG = -6,    /* bad configuration */
	WARREN_EIO = -7,        /* file or socket I/O */
	WARREN_EBROKER = -8,    /* the AMQP broker refused or went away */
	WARREN_EBACKEND = -9,   /* the result backend refused or went away */
	WARREN_ETIMEOUT = -10,  /* a deadline passed */
	WARREN_EPLUGIN = -11,   /* a task plugin could not be loaded */
	WARREN_ENOTFOUND = -12, /* no such task, queue, key or result */
	WARREN_EENCODE = -13,   /* a value that cannot be put on the wire */
	WARREN_ECODE_MIN = -13
};

#define WARREN_ERROR_MSG_MAX 256

typedef struct warren_error {
	int code;                       /* negative WARREN_E*, 0 = ok */
	char msg[WARREN_ERROR_MSG_MAX]; /* lower case, no newline: what failed, then why */
} warren_error;

/* Records code and message in err unless err is NULL or already holds an
 * error (first failure wins). Returns code, so a failure site can write
 * `return warren_error_set(err, WARREN_EINVAL, "...", ...);`. */
WARREN_API int warren_error_set(warren_error *err, int code, const char *fmt, ...)
	WARREN_PRINTF(3, 4);

/* Clears err to "no error". */
WARREN_API void warren_error_clear(warren_error *err);

/* A static, human name for a code ("out of memory"); never NULL. */
WARREN_API const char *warren_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
