#ifndef HOPX_SIM_SHELL_H
#define HOPX_SIM_SHELL_H

#include <stddef.h>

#include "sim.h"

/* What a command run in a sandbox printed: bounded, NUL-terminated. */
#define SIM_OUT_MAX (64 * 1024)

struct sim_run {
	char out[SIM_OUT_MAX];
	char err[4096];
	size_t out_len;
	int exit_code;
};

/*
 * Runs script as the sandbox's shell would, without running anything on
 * this machine: statements split by newlines and ';', each one of echo,
 * printf (no formats), cat, wc -c, sha256sum, sleep (at most 10 s), true,
 * false, exit; python's print("...") when python is set. Files are the
 * sandbox's (sim_files.c). Anything else is "command not found" (127).
 */
void sim_shell_run(struct sim *s, const char *id, const char *script,
                   int python, struct sim_run *r);

#endif
