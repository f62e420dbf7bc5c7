/*
 * export and import: the registry as JSON, to carry it to another
 * machine. export pages through list; import attaches each record through
 * the agent's attach (HopX is asked about each id and nothing is ever
 * created), then restores its policies. Names are kept unless another
 * sandbox has them there, which is reported.
 */
#include "commands.h"

#include "err.h"
#include "ipc_client.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FORMAT     "hopxd-export"
#define VERSION    1
#define PAGE       500
#define IMPORT_MAX (256L * 1024 * 1024)

/* ---- export ---- */

/* Every record, page by page, into arr. */
static int collect(struct cli *c, int tokens, cJSON *arr)
{
	char after[256] = "";
	cJSON *res = NULL, *p, *it;
	int r;

	do {
		p = cJSON_CreateObject();
		json_add_i64(p, "limit", PAGE);
		if (tokens)
			cJSON_AddTrueToObject(p, "with_tokens");
		if (after[0])
			json_add_str(p, "after", after);
		if ((r = cli_call(c, "list", p, &res)) != EXIT_OK)
			return r;
		cJSON_ArrayForEach(it, cJSON_GetObjectItem(res, "sandboxes"))
		        cJSON_AddItemToArray(arr, cJSON_Duplicate(it, 1));
		it = cJSON_GetObjectItem(res, "next_after");
		snprintf(after, sizeof(after), "%s",
		         cJSON_IsString(it) ? it->valuestring : "");
		cJSON_Delete(res);
	} while (after[0]);
	return EXIT_OK;
}

/*
 * Tokens go only where nobody else can read them: a file of ours with
 * mode 0600 or a pipe, never a terminal.
 */
static int private_fd(int fd)
{
	struct stat sb;

	if (fstat(fd, &sb) != 0 || isatty(fd))
		return 0;
	if (S_ISFIFO(sb.st_mode) || S_ISSOCK(sb.st_mode))
		return 1;
	return S_ISREG(sb.st_mode) && sb.st_uid == geteuid() &&
	       (sb.st_mode & 077) == 0;
}

static int open_out(const char *path, int tokens, FILE **out)
{
	int fd;

	*out = stdout;
	if (path == NULL) {
		if (!tokens || private_fd(STDOUT_FILENO))
			return EXIT_OK;
		fprintf(stderr, "hopxctl: export --with-tokens writes tokens "
		                "only to a 0600 file or a pipe: add -o FILE\n");
		return EXIT_USAGE;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	          0600);
	if (fd < 0 || fchmod(fd, 0600) != 0 ||
	    (*out = fdopen(fd, "w")) == NULL) {
		fprintf(stderr, "hopxctl: cannot write %s: %s\n", path,
		        strerror(errno));
		if (fd >= 0)
			close(fd);
		*out = NULL;
		return EXIT_ERROR;
	}
	return EXIT_OK;
}

int run_export(struct cli *c, int argc, char **argv)
{
	const char *path = NULL;
	int i, tokens = 0, r;
	cJSON *doc, *arr;
	FILE *f = NULL;
	char *text;

	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--with-tokens") == 0)
			tokens = 1;
		else if ((strcmp(argv[i], "-o") == 0 ||
		          strcmp(argv[i], "--output") == 0) &&
		         i + 1 < argc)
			path = argv[++i];
		else
			return cli_usage_err("export: unexpected argument",
			                     argv[i]);
	}
	if ((r = open_out(path, tokens, &f)) != EXIT_OK)
		return r;
	doc = cJSON_CreateObject();
	json_add_str(doc, "format", FORMAT);
	json_add_i64(doc, "version", VERSION);
	cJSON_AddBoolToObject(doc, "with_tokens", tokens);
	arr = cJSON_AddArrayToObject(doc, "sandboxes");
	if ((r = collect(c, tokens, arr)) == EXIT_OK) {
		text = cJSON_Print(doc);
		if (text == NULL || fputs(text, f) < 0 || fputc('\n', f) < 0 ||
		    fflush(f) != 0) {
			fprintf(stderr,
			        "hopxctl: cannot write the export: %s\n",
			        strerror(errno));
			r = EXIT_ERROR;
		}
		free(text);
	}
	cJSON_Delete(doc);
	if (f != stdout && fclose(f) != 0)
		r = EXIT_ERROR;
	return r;
}

/* ---- import ---- */

struct tally {
	int attached, kept, failed, renamed;
};

static char *read_all(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");
	char *text = NULL, *t;
	size_t n = 0, cap = 0, got;

	if (f == NULL)
		return NULL;
	do {
		if (n + 65536 > cap) {
			cap = cap ? cap * 2 : 1 << 20;
			if (cap > (size_t)IMPORT_MAX ||
			    (t = realloc(text, cap + 1)) == NULL) {
				free(text);
				text = NULL;
				break;
			}
			text = t;
		}
		got = fread(text + n, 1, cap - n, f);
		n += got;
	} while (got > 0);
	if (f != stdin)
		fclose(f);
	if (text)
		text[n] = '\0';
	*len = n;
	return text;
}

/* One call that reports nothing itself: err and the agent's message. */
static int ask(struct cli *c, struct ipc_client *ic, const char *method,
               cJSON *p, char *msg, size_t n)
{
	cJSON *res = NULL;
	char *m = NULL;
	int e = ipc_client_call(ic, method, p, c->timeout_ms, &res, &m);

	snprintf(msg, n, "%s", m ? m : e ? err_str(e) : "");
	free(m);
	cJSON_Delete(res);
	return e;
}

/* attach's parameters from an exported record. */
static cJSON *attach_params(const cJSON *sb, int with_name)
{
	const cJSON *pol = cJSON_GetObjectItem(sb, "policy");
	const cJSON *labels = cJSON_GetObjectItem(sb, "labels");
	const char *name =
	        cJSON_GetStringValue(cJSON_GetObjectItem(sb, "name"));
	const char *exp =
	        cJSON_GetStringValue(cJSON_GetObjectItem(pol, "on_expiry"));
	cJSON *p = cJSON_CreateObject();
	int64_t idle = 0;

	json_add_str(p, "id",
	             cJSON_GetStringValue(cJSON_GetObjectItem(sb, "id")));
	cJSON_AddFalseToObject(p, "resume");
	if (with_name && name)
		json_add_str(p, "name", name);
	if (cJSON_IsObject(labels) && labels->child)
		cJSON_AddItemToObject(p, "labels", cJSON_Duplicate(labels, 1));
	if (json_get_i64(pol, "idle_pause_s", &idle) == 0 && idle > 0)
		json_add_i64(p, "idle_pause_s", idle);
	if (exp)
		json_add_str(p, "on_expiry", exp);
	return p;
}

/* The policies attach does not take. */
static int set_policies(struct cli *c, struct ipc_client *ic, const cJSON *sb,
                        const char *id, char *msg, size_t n)
{
	const cJSON *pol = cJSON_GetObjectItem(sb, "policy");
	cJSON *p = cJSON_CreateObject();
	int64_t keep = 0;
	int e;

	json_add_str(p, "ref", id);
	cJSON_AddBoolToObject(
	        p, "auto_resume",
	        !cJSON_IsFalse(cJSON_GetObjectItem(pol, "auto_resume")));
	cJSON_AddBoolToObject(
	        p, "pause_on_shutdown",
	        cJSON_IsTrue(cJSON_GetObjectItem(pol, "pause_on_shutdown")));
	if ((e = ask(c, ic, "policy", p, msg, n)) != 0)
		return e;
	if (json_get_i64(pol, "keepalive_s", &keep) != 0 || keep <= 0)
		return 0;
	p = cJSON_CreateObject();
	json_add_str(p, "ref", id);
	json_add_i64(p, "seconds", keep);
	return ask(c, ic, "keepalive", p, msg, n);
}

static void import_one(struct cli *c, struct ipc_client *ic, const cJSON *sb,
                       struct tally *t)
{
	const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(sb, "id"));
	const char *name =
	        cJSON_GetStringValue(cJSON_GetObjectItem(sb, "name"));
	char msg[512];
	int e;

	if (id == NULL) {
		printf("failed    (a record without an id)\n");
		t->failed++;
		return;
	}
	if (ask(c, ic, "show", cli_ref_params(id), msg, sizeof(msg)) == 0) {
		printf("kept      %s (tracked already)\n", id);
		t->kept++;
		return;
	}
	e = ask(c, ic, "attach", attach_params(sb, 1), msg, sizeof(msg));
	if (e == ERR_EXISTS && name) {
		e = ask(c, ic, "attach", attach_params(sb, 0), msg,
		        sizeof(msg));
		if (e == 0) {
			printf("renamed   %s: the name '%s' belongs to another "
			       "sandbox here; attached without a name\n",
			       id, name);
			t->renamed++;
		}
	} else if (e == 0) {
		printf("attached  %s%s%s\n", id, name ? " " : "",
		       name ? name : "");
	}
	if (e == 0)
		e = set_policies(c, ic, sb, id, msg, sizeof(msg));
	if (e != 0) {
		printf("failed    %s: %s\n", id, msg);
		t->failed++;
		return;
	}
	t->attached++;
}

static int check_doc(const cJSON *doc, const char *path)
{
	int64_t v = 0;
	const char *fmt =
	        cJSON_GetStringValue(cJSON_GetObjectItem(doc, "format"));

	if (fmt == NULL || strcmp(fmt, FORMAT) != 0 ||
	    !cJSON_IsArray(cJSON_GetObjectItem(doc, "sandboxes"))) {
		fprintf(stderr,
		        "hopxctl: %s is not a hopxd export (make one "
		        "with 'hopxctl export > FILE')\n",
		        path);
		return EXIT_USAGE;
	}
	if (json_get_i64(doc, "version", &v) != 0 || v > VERSION) {
		fprintf(stderr,
		        "hopxctl: %s was made by a newer hopxd "
		        "(format %lld): upgrade hopxctl to import it\n",
		        path, (long long)v);
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

int run_import(struct cli *c, int argc, char **argv)
{
	struct tally t = {0};
	struct ipc_client *ic = NULL;
	size_t len = 0;
	char *text = read_all(argv[0], &len);
	cJSON *doc = NULL, *sb;
	int r;

	(void)argc;
	if (text == NULL) {
		fprintf(stderr, "hopxctl: cannot read %s: %s\n", argv[0],
		        errno ? strerror(errno) : "too large");
		return EXIT_ERROR;
	}
	if (json_parse(text, len, &doc) != 0) {
		fprintf(stderr, "hopxctl: %s is not JSON\n", argv[0]);
		free(text);
		return EXIT_USAGE;
	}
	free(text);
	if ((r = check_doc(doc, argv[0])) == EXIT_OK &&
	    (r = cli_connect(c, &ic)) == EXIT_OK) {
		cJSON_ArrayForEach(sb, cJSON_GetObjectItem(doc, "sandboxes"))
		        import_one(c, ic, sb, &t);
		printf("%d attached (%d without their name), %d tracked "
		       "already, %d failed\n",
		       t.attached, t.renamed, t.kept, t.failed);
		r = t.failed ? EXIT_ERROR : EXIT_OK;
	}
	ipc_client_close(ic);
	cJSON_Delete(doc);
	return r;
}
