#include "fmt.h"

#include "rfc3339.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

void fmt_duration(char *out, size_t n, int64_t ms)
{
	static const struct {
		int64_t ms;
		const char *unit;
	} units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}};
	size_t i;

	if (ms < 0)
		ms = -ms;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (ms >= units[i].ms) {
			snprintf(out, n, "%lld%s",
			         (long long)(ms / units[i].ms), units[i].unit);
			return;
		}
	snprintf(out, n, "%llds", (long long)(ms / 1000));
}

void fmt_relative(char *out, size_t n, const char *rfc3339, int64_t now_ms)
{
	char d[32];
	int64_t at;

	if (rfc3339 == NULL || strcmp(rfc3339, "-") == 0) {
		snprintf(out, n, "-");
		return;
	}
	if (rfc3339_parse(rfc3339, &at) != 0) {
		snprintf(out, n, "%s", rfc3339);
		return;
	}
	if (at - now_ms < 1000 && now_ms - at < 1000) {
		snprintf(out, n, "now");
		return;
	}
	fmt_duration(d, sizeof(d), at - now_ms);
	if (at > now_ms)
		snprintf(out, n, "in %s", d);
	else
		snprintf(out, n, "%s ago", d);
}

int fmt_colour_on(int tty, const char *no_color)
{
	return tty && (no_color == NULL || no_color[0] == '\0');
}

const char *fmt_status_colour(const char *status)
{
	static const struct {
		const char *status, *colour;
	} map[] = {
	        {"running", FMT_GREEN},   {"paused", FMT_YELLOW},
	        {"creating", FMT_YELLOW}, {"stopped", FMT_RED},
	        {"gone", FMT_RED},        {"unknown", FMT_DIM},
	};
	size_t i;

	for (i = 0; status && i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(status, map[i].status) == 0)
			return map[i].colour;
	return "";
}

int fmt_width(int fd, const char *columns)
{
	struct winsize ws;
	long w = 0;

	if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		w = ws.ws_col;
	else if (columns && *columns)
		w = strtol(columns, NULL, 10);
	if (w <= 0)
		w = 80;
	return w < 40 ? 40 : (int)(w > 1000 ? 1000 : w);
}

void fmt_fit(char *s, size_t width)
{
	if (strlen(s) <= width)
		return;
	if (width < 3) {
		s[width] = '\0';
		return;
	}
	memcpy(s + width - 3, "...", 4);
}
