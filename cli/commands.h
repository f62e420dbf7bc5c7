#ifndef HOPXD_COMMANDS_H
#define HOPXD_COMMANDS_H

#include "cli.h"

/* Each takes the arguments after the command name; returns an exit code. */
int run_status(struct cli *c, int argc, char **argv);
int run_ls(struct cli *c, int argc, char **argv);
int run_show(struct cli *c, int argc, char **argv);
int run_label(struct cli *c, int argc, char **argv);
int run_rename(struct cli *c, int argc, char **argv);
int run_detach(struct cli *c, int argc, char **argv);
int run_events(struct cli *c, int argc, char **argv);

#endif
