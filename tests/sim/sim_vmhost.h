#ifndef HOPX_SIM_VMHOST_H
#define HOPX_SIM_VMHOST_H

#include <sys/socket.h>

#include "sim.h"

/* Hands an accepted connection to the HTTP daemon, which owns fd from
 * then on (it closes a connection it cannot take). */
typedef void (*sim_vmhost_add_fn)(void *ud, int fd, struct sockaddr *peer,
                                  socklen_t len);

/*
 * Starts accepting on every sandbox's own address at port (the agent
 * listener's port) and opens the listeners of sandboxes that already have
 * a host (loaded from the state file). 0 or -1.
 */
int sim_vmhost_start(struct sim *s, int port, sim_vmhost_add_fn add, void *ud);

/* Stops the accepting thread and closes every listener. */
void sim_vmhost_stop(struct sim *s);

/* Under the lock, when a sandbox is made or loaded: gives it a host (while
 * fewer than cfg.vm_hosts have one; numbers are never reused) and listens
 * on it once the agent side runs. */
void sim_vmhost_assign(struct sim *s, struct sim_sandbox *sb);

/* Under the lock, when a sandbox goes: closes its listener. */
void sim_vmhost_release(struct sim *s, struct sim_sandbox *sb);

/* The sandbox's public_host: its own host, or the agent listener with the
 * path /sandbox/{id} when it has none. */
void sim_vmhost_url(struct sim *s, const struct sim_sandbox *sb, char *buf,
                    size_t n);

/* The host number a connection came in on (its local address); 0 for the
 * shared agent listener. */
int sim_vmhost_of(int fd);

/* Under the lock: the live sandbox of host n, or NULL. */
struct sim_sandbox *sim_vmhost_sandbox(struct sim *s, int n);

#endif
