#ifndef HOPX_SIM_FILES_H
#define HOPX_SIM_FILES_H

#include <stddef.h>

#include "sim.h"

/* A sandbox's files, kept on disk (never whole in memory): one file per
 * (sandbox, path) in cfg.files_dir, or a temp dir removed at exit. */

/* Makes the directory; 0 or -1 with a message on stderr. */
int sim_files_init(struct sim *s);

/* Removes the temp dir (a configured one stays). */
void sim_files_finish(struct sim *s);

/* Where path of sandbox id lives; -1 when path is not absolute or too
 * long (then the agent answers 400). */
int sim_files_path(const struct sim *s, const char *id, const char *path,
                   char *out, size_t n);

/* A fresh temp file in the directory for an upload (renamed into place
 * when complete); its fd, name in out, or -1. */
int sim_files_temp(const struct sim *s, char *out, size_t n);

/* Removes every file of sandbox id (it was deleted). */
void sim_files_drop(struct sim *s, const char *id);

#endif
