/*
 * hopxctl proxy: a fixed local address for one sandbox's own agent API,
 * for tools that carry no token (curl in a script, a browser, an editor).
 * The agent listens and carries; this process holds the address open on
 * its connection to the agent, and it ends with this process.
 */
#include "cli.h"
#include "commands.h"

#include "err.h"
#include "ipc_client.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop_sig;

static void on_stop(int sig)
{
	stop_sig = sig;
}

/* REF (--listen ADDR | --unix PATH): the listen parameter, or NULL. */
static const char *proxy_args(int argc, char **argv, char *buf, size_t n)
{
	if (argc != 3)
		return NULL;
	if (strcmp(argv[1], "--listen") == 0)
		return argv[2];
	if (strcmp(argv[1], "--unix") == 0 && argv[2][0] != '\0') {
		snprintf(buf, n, "unix:%s", argv[2]);
		return buf;
	}
	return NULL;
}

/* Until a signal, or the agent closes the connection (it stopped). */
static int hold(struct ipc_client *ic)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
	struct sigaction sa = {.sa_handler = on_stop};
	cJSON *ev = NULL;
	char *msg = NULL;
	size_t i;
	int r;

	for (i = 0; i < sizeof(sigs) / sizeof(*sigs); i++)
		sigaction(sigs[i], &sa, NULL);
	while (!stop_sig) {
		r = ipc_client_next_event(ic, 500, &ev, &msg);
		cJSON_Delete(ev);
		free(msg);
		ev = NULL;
		msg = NULL;
		if (r != 0 && r != ERR_TIMEOUT && !stop_sig) {
			fprintf(stderr,
			        "hopxctl: the agent ended the proxy (it "
			        "stopped?): 'hopxctl status' says\n");
			return cli_exit_code(ERR_NET);
		}
	}
	return EXIT_OK;
}

/*
 * proxy REF --listen 127.0.0.1:PORT | --unix PATH: serves the sandbox's
 * agent API there, the token put in by the agent, until interrupted.
 */
int run_proxy(struct cli *c, int argc, char **argv)
{
	struct ipc_client *ic = NULL;
	cJSON *p, *res = NULL;
	const char *listen;
	char buf[4200];
	int r;

	if ((listen = proxy_args(argc, argv, buf, sizeof(buf))) == NULL)
		return cli_usage_err("proxy: expected REF --listen "
		                     "127.0.0.1:PORT or REF --unix PATH",
		                     NULL);
	if ((r = cli_connect(c, &ic)) != EXIT_OK)
		return r;
	p = cli_ref_params(argv[0]);
	cJSON_AddStringToObject(p, "listen", listen);
	r = cli_call_on(c, ic, "proxy", p, &res);
	if (r == EXIT_OK) {
		if (c->json)
			cli_print_json(c, res);
		else
			printf("sandbox %s on %s (Ctrl-C ends it)\n",
			       cli_str(res, "name") ? cli_str(res, "name")
			                            : cli_str(res, "id"),
			       cli_str(res, "url"));
		fflush(stdout);
		r = hold(ic);
	}
	cJSON_Delete(res);
	ipc_client_close(ic);
	return r;
}
