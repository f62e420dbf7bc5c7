#include "rfc3339.h"

#include "err.h"

#include <stdio.h>

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	int64_t era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static int is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
	static const int dim[] = {31, 28, 31, 30, 31, 30,
	                          31, 31, 30, 31, 30, 31};

	return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Reads exactly n digits. Returns the value or -1. */
static int digits(const char **p, int n)
{
	int v = 0;

	while (n-- > 0) {
		if (**p < '0' || **p > '9')
			return -1;
		v = v * 10 + (**p - '0');
		(*p)++;
	}
	return v;
}

static int expect(const char **p, const char *set)
{
	for (; *set; set++) {
		if (**p == *set) {
			(*p)++;
			return 0;
		}
	}
	return -1;
}

/* Parses ".ddd..." (any number of digits, milliseconds kept). */
static int fraction_ms(const char **p, int *ms)
{
	int n = 0;

	*ms = 0;
	if (**p != '.')
		return 0;
	(*p)++;
	while (**p >= '0' && **p <= '9') {
		if (n < 3)
			*ms = *ms * 10 + (**p - '0');
		n++;
		(*p)++;
	}
	if (n == 0)
		return -1;
	for (; n < 3; n++)
		*ms *= 10;
	return 0;
}

/* Parses "Z" or "+hh:mm"/"-hh:mm" into an offset in seconds. */
static int offset_secs(const char **p, int *off)
{
	int sign, hh, mm;

	if (**p == 'Z' || **p == 'z') {
		(*p)++;
		*off = 0;
		return 0;
	}
	if (**p != '+' && **p != '-')
		return -1;
	sign = **p == '-' ? -1 : 1;
	(*p)++;
	hh = digits(p, 2);
	if (hh < 0 || hh > 23 || expect(p, ":") < 0)
		return -1;
	mm = digits(p, 2);
	if (mm < 0 || mm > 59)
		return -1;
	*off = sign * (hh * 3600 + mm * 60);
	return 0;
}

int rfc3339_parse(const char *s, int64_t *out_ms)
{
	const char *p = s;
	int y, mo, d, h, mi, se, ms, off;

	if (s == NULL)
		return ERR_PARSE;
	y = digits(&p, 4);
	if (y < 0 || expect(&p, "-") < 0 || (mo = digits(&p, 2)) < 1 ||
	    mo > 12 || expect(&p, "-") < 0 || (d = digits(&p, 2)) < 1 ||
	    d > days_in_month(y, mo) || expect(&p, "Tt ") < 0 ||
	    (h = digits(&p, 2)) < 0 || h > 23 || expect(&p, ":") < 0 ||
	    (mi = digits(&p, 2)) < 0 || mi > 59 || expect(&p, ":") < 0 ||
	    (se = digits(&p, 2)) < 0 || se > 60 || fraction_ms(&p, &ms) < 0 ||
	    offset_secs(&p, &off) < 0 || *p != '\0')
		return ERR_PARSE;
	if (se == 60) { /* a leap second: the last instant of :59 */
		se = 59;
		ms = 999;
	}
	*out_ms = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 +
	            se - off) *
	           1000) +
	          ms;
	return 0;
}

/* Writes v as exactly width digits (v >= 0 and small enough). */
static char *put_digits(char *p, int v, int width)
{
	int i;

	for (i = width - 1; i >= 0; i--, v /= 10)
		p[i] = (char)('0' + v % 10);
	return p + width;
}

/* The common case without printf (a 10k list writes 50k times). */
static int format_fast(int64_t y, int m, int d, int64_t rem, int frac,
                       char *out, size_t n)
{
	size_t len = frac >= 0 ? 24 : 20;
	char *p = out;

	if (y < 0 || y > 9999 || n <= len)
		return -1;
	p = put_digits(p, (int)y, 4);
	*p++ = '-';
	p = put_digits(p, m, 2);
	*p++ = '-';
	p = put_digits(p, d, 2);
	*p++ = 'T';
	p = put_digits(p, (int)(rem / 3600), 2);
	*p++ = ':';
	p = put_digits(p, (int)(rem / 60 % 60), 2);
	*p++ = ':';
	p = put_digits(p, (int)(rem % 60), 2);
	if (frac >= 0) {
		*p++ = '.';
		p = put_digits(p, frac, 3);
	}
	*p++ = 'Z';
	*p = '\0';
	return 0;
}

int rfc3339_format(int64_t ms, int with_ms, char *out, size_t n)
{
	int64_t secs = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
	int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
	int64_t rem = secs - days * 86400, y;
	int m, d, len;

	civil_from_days(days, &y, &m, &d);
	if (format_fast(y, m, d, rem, with_ms ? (int)(ms - secs * 1000) : -1,
	                out, n) == 0)
		return 0;
	if (with_ms)
		len = snprintf(out, n, "%04lld-%02d-%02dT%02d:%02d:%02d.%03dZ",
		               (long long)y, m, d, (int)(rem / 3600),
		               (int)(rem / 60 % 60), (int)(rem % 60),
		               (int)(ms - secs * 1000));
	else
		len = snprintf(out, n, "%04lld-%02d-%02dT%02d:%02d:%02dZ",
		               (long long)y, m, d, (int)(rem / 3600),
		               (int)(rem / 60 % 60), (int)(rem % 60));
	return len < 0 || (size_t)len >= n ? ERR_TOOBIG : 0;
}
