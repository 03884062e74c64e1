/* worker/eta.c - times and retry delays: Celery's ISO-8601 eta/expires
 * headers, the retry countdown with Celery's autoretry backoff, and which
 * failures autoretry covers. Pure functions (no I/O), unit-tested in
 * tests/unit/test_worker_eta.c. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (Howard Hinnant's days_from_civil): timegm() is not POSIX. */
static long long days_from_civil(long long y, unsigned m, unsigned d)
{
	y -= m <= 2;
	long long era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (long long)doe - 719468;
}

/* Reads exactly n digits at *p. */
static bool digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

static bool expect(const char **p, char c)
{
	if (**p != c)
		return false;
	(*p)++;
	return true;
}

/* "+HH:MM", "-HHMM", "Z" or nothing (naive: UTC, as Celery's
 * maybe_make_aware does with the default timezone). */
static bool parse_offset(const char **p, int *offset_s)
{
	*offset_s = 0;
	if (**p == '\0')
		return true;
	if (**p == 'Z' || **p == 'z') {
		(*p)++;
		return true;
	}
	int sign = **p == '-' ? -1 : 1;
	if (**p != '+' && **p != '-')
		return false;
	(*p)++;
	int hh, mm = 0;
	if (!digits(p, 2, &hh))
		return false;
	if (**p == ':')
		(*p)++;
	if (**p && !digits(p, 2, &mm))
		return false;
	*offset_s = sign * (hh * 3600 + mm * 60);
	return hh < 24 && mm < 60;
}

int loop_parse_iso8601(const char *text, double *epoch, warren_error *err)
{
	const char *p = text;
	int y, mo, d, h = 0, mi = 0, s = 0, offset;
	double frac = 0;
	if (!digits(&p, 4, &y) || !expect(&p, '-') || !digits(&p, 2, &mo) || !expect(&p, '-') ||
	    !digits(&p, 2, &d))
		goto bad;
	if (*p == 'T' || *p == ' ') {
		p++;
		if (!digits(&p, 2, &h) || !expect(&p, ':') || !digits(&p, 2, &mi))
			goto bad;
		if (*p == ':' && (p++, !digits(&p, 2, &s)))
			goto bad;
		if (*p == '.' || *p == ',') {
			double scale = 0.1;
			for (p++; isdigit((unsigned char)*p); p++, scale /= 10)
				frac += (*p - '0') * scale;
		}
	}
	if (!parse_offset(&p, &offset) || *p != '\0')
		goto bad;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
		goto bad;
	*epoch = (double)(days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400LL + h * 3600LL +
			  mi * 60LL + s - offset) + frac;
	return 0;
bad:
	return warren_error_set(err, WARREN_EDECODE, "time '%.64s': not an ISO-8601 date and time",
				text);
}

void loop_format_iso8601(double epoch, char buf[40])
{
	double whole = floor(epoch);
	time_t secs = (time_t)whole;
	long usec = lround((epoch - whole) * 1e6);
	if (usec >= 1000000) {
		secs++;
		usec -= 1000000;
	}
	struct tm tm;
	gmtime_r(&secs, &tm);
	char date[24];
	strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, 40, "%.19s.%06d+00:00", date, (int)usec);
}

double loop_retry_delay(const loop_task_conf *conf, int retries, double countdown,
			bool autoretry, unsigned *seed)
{
	if (!autoretry && countdown >= 0)
		return countdown;
	if (!autoretry || !(conf->retry_backoff > 0))
		return conf->default_retry_delay;
	/* celery/utils/time.py get_exponential_backoff_interval: factor * 2^n,
	 * capped, then full jitter: uniform in [0, that]. */
	double delay = conf->retry_backoff * pow(2.0, retries < 60 ? retries : 60);
	if (conf->retry_backoff_max > 0 && delay > conf->retry_backoff_max)
		delay = conf->retry_backoff_max;
	if (conf->retry_jitter)
		delay = floor(delay * ((double)rand_r(seed) / ((double)RAND_MAX + 1.0)));
	return delay;
}

bool loop_autoretry_matches(const char *const *list, const char *exc_module,
			    const char *exc_type)
{
	if (!list || !exc_type)
		return false;
	for (; *list; list++) {
		const char *want = *list;
		if (strcmp(want, "Exception") == 0 || strcmp(want, exc_type) == 0)
			return true;
		/* "module.Type" against the qualified name. */
		size_t mlen = exc_module ? strlen(exc_module) : 0;
		if (mlen && strncmp(want, exc_module, mlen) == 0 && want[mlen] == '.' &&
		    strcmp(want + mlen + 1, exc_type) == 0)
			return true;
	}
	return false;
}
