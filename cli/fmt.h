#ifndef HOPXD_FMT_H
#define HOPXD_FMT_H

/*
 * hopxctl's human output: relative times, colour and terminal width.
 * Pure functions (the time and the environment come in as arguments or
 * are read in one place) so that tests/unit/test_fmt.c covers them.
 */

#include <stddef.h>
#include <stdint.h>

/* A duration as one unit, rounded down: "45s", "41m", "2h", "3d". */
void fmt_duration(char *out, size_t n, int64_t ms);

/*
 * The RFC 3339 time text relative to now_ms: "in 41m", "2h ago" or "now"
 * (within a second). NULL or "-" gives "-"; text that does not parse is
 * copied as it is.
 */
void fmt_relative(char *out, size_t n, const char *rfc3339, int64_t now_ms);

/* Colour is for a terminal, and never when NO_COLOR is set and not
 * empty (no-color.org). Returns 1 when colour is on. */
int fmt_colour_on(int tty, const char *no_color);

/* The escape that starts the colour of a sandbox status ("" for none). */
const char *fmt_status_colour(const char *status);

/* Escapes for verdicts and the reset; callers print them only when
 * fmt_colour_on said so. */
#define FMT_GREEN  "\033[32m"
#define FMT_YELLOW "\033[33m"
#define FMT_RED    "\033[31m"
#define FMT_DIM    "\033[2m"
#define FMT_BOLD   "\033[1m"
#define FMT_RESET  "\033[0m"

/*
 * The width to fit: the terminal's (fd's window size), else $COLUMNS
 * (columns), else 80. Never under 40.
 */
int fmt_width(int fd, const char *columns);

/* Cuts s in place to at most width bytes, ending it with "..." when cut. */
void fmt_fit(char *s, size_t width);

#endif
