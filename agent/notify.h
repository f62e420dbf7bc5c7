#ifndef HOPXD_NOTIFY_H
#define HOPXD_NOTIFY_H

/*
 * The systemd readiness protocol (sd_notify(3)) without libsystemd: one
 * datagram to $NOTIFY_SOCKET, a path or an abstract name ("@..."). With
 * Type=notify, systemd considers hopxd started on "READY=1" (socket
 * listening, records loading) and "STOPPING=1" tells it a stop began.
 *
 * Sends state (e.g. "READY=1\nSTATUS=...") and returns 0, also when
 * NOTIFY_SOCKET is unset (not under systemd: nothing to tell), or an ERR_*
 * code when the send failed (the caller logs it; it is never fatal).
 */
int notify_send(const char *state);

#endif
