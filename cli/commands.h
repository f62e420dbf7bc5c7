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
int run_doctor(struct cli *c, int argc, char **argv);
int run_events(struct cli *c, int argc, char **argv);
int run_metrics(struct cli *c, int argc, char **argv);

/* registry.c: the registry as JSON, out and in. */
int run_export(struct cli *c, int argc, char **argv);
int run_import(struct cli *c, int argc, char **argv);

/* lifecycle.c: what goes through HopX. */
int run_attach(struct cli *c, int argc, char **argv);
int run_create(struct cli *c, int argc, char **argv);
int run_pause(struct cli *c, int argc, char **argv);
int run_resume(struct cli *c, int argc, char **argv);
int run_start(struct cli *c, int argc, char **argv);
int run_stop(struct cli *c, int argc, char **argv);
int run_kill(struct cli *c, int argc, char **argv);
int run_timeout(struct cli *c, int argc, char **argv);
int run_keepalive(struct cli *c, int argc, char **argv);
int run_policy(struct cli *c, int argc, char **argv);
int run_token(struct cli *c, int argc, char **argv);
int run_env(struct cli *c, int argc, char **argv);
int run_run(struct cli *c, int argc, char **argv);
int run_reconcile(struct cli *c, int argc, char **argv);
int run_wait(struct cli *c, int argc, char **argv);

/* proxy.c: a fixed local address for one sandbox's agent API. */
int run_proxy(struct cli *c, int argc, char **argv);

#endif
