/* common/error.c - warren_error: codes, their names, first-failure-wins messages. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "warren/error.h"

static const char *const code_names[] = {
	[0] = "ok",
	[-WARREN_ENOMEM] = "out of memory",
	[-WARREN_EINVAL] = "invalid argument",
	[-WARREN_EDECODE] = "undecodable data",
	[-WARREN_ELIMIT] = "over a hard limit",
	[-WARREN_ESCHEMA] = "arguments do not match the task schema",
	[-WARREN_ECONFIG] = "bad configuration",
	[-WARREN_EIO] = "input/output error",
	[-WARREN_EBROKER] = "broker error",
	[-WARREN_EBACKEND] = "result backend error",
	[-WARREN_ETIMEOUT] = "timed out",
	[-WARREN_EPLUGIN] = "plugin error",
	[-WARREN_ENOTFOUND] = "not found",
	[-WARREN_EENCODE] = "unencodable value",
};

const char *warren_strerror(int code)
{
	if (code > 0 || code < WARREN_ECODE_MIN || !code_names[-code])
		return "unknown error";
	return code_names[-code];
}

int warren_error_set(warren_error *err, int code, const char *fmt, ...)
{
	if (!err || err->code != 0)
		return code;
	err->code = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
	return code;
}

void warren_error_clear(warren_error *err)
{
	if (!err)
		return;
	err->code = 0;
	err->msg[0] = '\0';
}
