/* producer/clock.c - wall-clock time as Celery's headers carry it: eta and
 * expires are ISO-8601 datetimes ("2026-11-27T10:18:50.001900+00:00"), and
 * a naive one means UTC (celery.utils.time.maybe_make_aware). The civil-date
 * arithmetic is Howard Hinnant's days_from_civil, so we need neither timegm
 * (not POSIX) nor the process time zone.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "producer.h"

int64_t producer_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int)(yoe + era * 400 + (*m <= 2));
}

/* Reads exactly n digits at *p into *v. */
static bool digits(const char **p, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++, (*p)++) {
		if (!isdigit((unsigned char)**p))
			return false;
		*v = *v * 10 + (**p - '0');
	}
	return true;
}

static bool lit(const char **p, char c)
{
	if (**p != c)
		return false;
	(*p)++;
	return true;
}

/* The fraction ".ffffff" (any number of digits) in microseconds. */
static int64_t fraction_us(const char **p)
{
	int64_t us = 0, scale = 100000;
	while (isdigit((unsigned char)**p)) {
		us += (**p - '0') * scale;
		scale /= 10;
		(*p)++;
	}
	return us;
}

/* "Z", "+HH:MM", "-HHMM" or nothing, as seconds east of UTC. */
static bool zone_offset(const char **p, int *offset)
{
	*offset = 0;
	if (lit(p, 'Z') || lit(p, 'z') || !**p)
		return true;
	int sign = **p == '+' ? 1 : **p == '-' ? -1 : 0, hh, mm = 0;
	if (!sign)
		return false;
	(*p)++;
	if (!digits(p, 2, &hh))
		return false;
	lit(p, ':');
	if (**p && !digits(p, 2, &mm))
		return false;
	*offset = sign * (hh * 3600 + mm * 60);
	return hh < 24 && mm < 60;
}

int producer_iso8601_parse(const char *text, int64_t *us, warren_error *err)
{
	const char *p = text;
	int y, mo, d, h, mi, s = 0, off;
	int64_t frac = 0;
	bool ok = p && digits(&p, 4, &y) && lit(&p, '-') && digits(&p, 2, &mo) && lit(&p, '-') &&
		  digits(&p, 2, &d) && (lit(&p, 'T') || lit(&p, 't') || lit(&p, ' ')) &&
		  digits(&p, 2, &h) && lit(&p, ':') && digits(&p, 2, &mi);
	if (ok && lit(&p, ':')) {
		ok = digits(&p, 2, &s);
		if (ok && (lit(&p, '.') || lit(&p, ',')))
			frac = fraction_us(&p);
	}
	ok = ok && zone_offset(&p, &off) && !*p && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 &&
	     h < 24 && mi < 60 && s < 61;
	if (!ok)
		return warren_error_set(err, WARREN_EINVAL,
					"eta '%s': not an ISO-8601 date and time "
					"(like 2026-11-27T10:18:50+00:00)", text ? text : "(null)");
	int64_t secs = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 +
		       s - off;
	*us = secs * 1000000 + frac;
	return 0;
}

void producer_iso8601_format(int64_t us, char buf[40])
{
	int64_t secs = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
	int64_t frac = us - secs * 1000000;
	int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
	int64_t sod = secs - days * 86400;
	int y;
	unsigned m, d;
	civil_from_days(days, &y, &m, &d);
	int n = snprintf(buf, 40, "%04d-%02u-%02uT%02d:%02d:%02d", y, m, d, (int)(sod / 3600),
			 (int)(sod / 60 % 60), (int)(sod % 60));
	if (frac)
		n += snprintf(buf + n, (size_t)(40 - n), ".%06d", (int)frac);
	snprintf(buf + n, (size_t)(40 - n), "+00:00");
}

int producer_parse_seconds(const char *text, const char *what, double *out, warren_error *err)
{
	char *end = NULL;
	errno = 0;
	double v = text ? strtod(text, &end) : 0;
	if (!text || !*text || end == text || *end || errno || !isfinite(v) || v < 0)
		return warren_error_set(err, WARREN_EINVAL,
					"%s '%s': expected a number of seconds (like 10 or 1.5)",
					what, text ? text : "");
	*out = v;
	return 0;
}
