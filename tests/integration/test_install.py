#!/usr/bin/env python3
"""What `meson install` delivers, used the way a newcomer uses it.

Installs the build into a temp DESTDIR and checks the file list (nothing
missing, nothing extra), renders the man pages with `man -l`, has
`systemd-analyze verify` check the units when it is there, then runs the
installed service's ExecStart the way its socket unit says (a listening
socket passed as fd 3, systemd's readiness socket, the unit's
EnvironmentFile, the default key file) against hopx-sim: a sandbox created
with the installed hopxctl survives a restart of the agent, and a second
process gets its token. Last, the installed bash completion: it sources
without error, knows every command `hopxctl help` lists, and completes
flags, statuses and the agent's sandbox ids and names."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys

from hopxtest import KEY, Sim, Tap, cleanup, setup

hopxd_build, hopxctl_build, simbin, tmp = setup()
build_root = os.path.dirname(os.path.dirname(os.path.abspath(hopxd_build)))
t = Tap()
dest = os.path.join(tmp, "dest")
MAN = os.environ.get("HOPXD_MAN_PAGES") == "true"

# ---- install and the file list ----
r = subprocess.run(["meson", "install", "-C", build_root, "--no-rebuild",
                    "--destdir", dest, "--quiet"], capture_output=True,
                   text=True)
t.ok(r.returncode == 0, "meson install into a DESTDIR", r.stdout + r.stderr)
files = sorted(os.path.relpath(os.path.join(d, f), dest)
               for d, _, fs in os.walk(dest) for f in fs)
bins = [f for f in files if f.endswith("/bin/hopxd")]
prefix = "/" + bins[0][:-len("/bin/hopxd")] if bins else "/usr/local"
want = ["bin/hopxd", "bin/hopxctl", "bin/hopx-sim",
        "lib/systemd/user/hopxd.service", "lib/systemd/user/hopxd.socket",
        "share/bash-completion/completions/hopxctl"]
if MAN:
    want += ["share/man/man8/hopxd.8", "share/man/man1/hopxctl.1",
             "share/man/man7/hopxd-protocol.7"]
want = sorted(os.path.relpath(os.path.join(prefix, w), "/") for w in want)
t.ok(files == want, f"installed exactly {len(want)} files under {prefix}",
     "installed:\n  " + "\n  ".join(files) + "\nwanted:\n  " +
     "\n  ".join(want))
root = dest + prefix
for b in ("hopxd", "hopxctl", "hopx-sim"):
    st = os.stat(os.path.join(root, "bin", b))
    t.ok(st.st_mode & 0o111 == 0o111, f"{b} is executable by all")


# ---- man pages ----
def man_render(page):
    env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0")
    r = subprocess.run(["man", "--warnings", "-l", page], env=env,
                       capture_output=True, text=True)
    r.stdout = re.sub(".\x08", "", r.stdout)  # overstrike bold/underline
    return r


for sec, name in ((8, "hopxd"), (1, "hopxctl"), (7, "hopxd-protocol")):
    page = os.path.join(root, "share", "man", f"man{sec}", f"{name}.{sec}")
    if not MAN or not shutil.which("man"):
        t.skip(f"man -l renders {name}({sec})", "no scdoc or no man")
        continue
    r = man_render(page)
    t.ok(r.returncode == 0 and "NAME" in r.stdout and
         f"{name} -" in r.stdout and not r.stderr.strip(),
         f"man -l renders {name}({sec}) without warnings",
         r.stderr or r.stdout[:400])


# ---- the units ----
def unit(name):
    """The unit file as {key: [values]} (sections merged: keys are unique
    across ours)."""
    keys = {}
    with open(os.path.join(root, "lib", "systemd", "user", name)) as f:
        for line in f:
            m = re.match(r"^([A-Za-z]+)=(.*)$", line.strip())
            if m:
                keys.setdefault(m.group(1), []).append(m.group(2))
    return keys


service, sock_unit = unit("hopxd.service"), unit("hopxd.socket")
exec_start = service["ExecStart"][0]
t.ok(exec_start.split()[0] == os.path.join(prefix, "bin", "hopxd"),
     "ExecStart runs the installed hopxd", exec_start)
t.ok(service.get("Type") == ["notify"] and
     service.get("Restart") == ["on-failure"] and
     "NoNewPrivileges" in service,
     "service: Type=notify, Restart=on-failure, hardened", service)
units = os.path.join(tmp, "units")
os.makedirs(units)
for name in ("hopxd.service", "hopxd.socket"):
    with open(os.path.join(root, "lib", "systemd", "user", name)) as f:
        text = f.read().replace(prefix + "/bin/", root + "/bin/")
    with open(os.path.join(units, name), "w") as f:
        f.write(text)
if shutil.which("systemd-analyze"):
    xrd = os.path.join(tmp, "xrd")
    os.makedirs(xrd, mode=0o700)
    r = subprocess.run(["systemd-analyze", "--user", "verify", "--man=no",
                        "hopxd.service", "hopxd.socket"], cwd=units,
                       env=dict(os.environ, XDG_RUNTIME_DIR=xrd),
                       capture_output=True, text=True)
    t.ok(r.returncode == 0 and not (r.stdout + r.stderr).strip(),
         "systemd-analyze --user verify accepts both units, no warning",
         r.stdout + r.stderr)
else:
    t.skip("systemd-analyze --user verify", "not installed")

# The systemd specifiers the units use, for this test's user.
home = os.path.join(tmp, "home")
run_dir = os.path.join(tmp, "run")
os.makedirs(os.path.join(home, ".config", "hopxd"), mode=0o700)
os.makedirs(run_dir, mode=0o700)
spec = {"%h": home, "%t": run_dir, "%E": os.path.join(home, ".config")}


def expand(s):
    for k, v in spec.items():
        s = s.replace(k, v)
    return s


sim = Sim(simbin, tmp).start()
with open(os.path.join(home, ".config", "hopxd", "env"), "w") as f:
    f.write(f"# settings for the unit\nHOPX_BASE_URL={sim.url}\n")
keyfile = os.path.join(home, ".config", "hopxd", "api-key")
fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, (KEY + "\n").encode())
os.close(fd)

# What the user's shell has: no HOPX_* (the unit must find them itself).
user_env = {k: v for k, v in os.environ.items()
            if not k.startswith(("HOPX", "XDG_"))}
user_env.update(HOME=home, XDG_RUNTIME_DIR=run_dir,
                PATH=os.path.join(root, "bin") + ":" + os.environ["PATH"])


def unit_env():
    env = {"HOME": home, "PATH": os.environ["PATH"],
           "XDG_RUNTIME_DIR": run_dir}
    for ef in service.get("EnvironmentFile", []):
        path = expand(ef.lstrip("-"))
        if os.path.exists(path):
            for line in open(path):
                m = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
                if m:
                    env[m.group(1)] = m.group(2)
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    return env


class Service:
    """hopxd.socket + hopxd.service as systemd runs them: the socket made
    by the 'manager' (this test) and passed as fd 3, readiness on a
    datagram socket."""

    def __init__(self):
        path = expand(sock_unit["ListenStream"][0])
        os.makedirs(os.path.dirname(path), exist_ok=True,
                    mode=int(sock_unit["DirectoryMode"][0], 8))
        if os.path.exists(path):
            os.unlink(path)
        self.listen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listen.bind(path)
        os.chmod(path, int(sock_unit["SocketMode"][0], 8))
        self.listen.listen(128)
        self.path = path
        notify = os.path.join(tmp, "notify.sock")
        if os.path.exists(notify):
            os.unlink(notify)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(notify)
        self.notify.settimeout(20)
        env = unit_env()
        env["NOTIFY_SOCKET"] = notify
        argv = [a.replace(prefix + "/bin/", root + "/bin/")
                for a in expand(exec_start).split()]
        log = os.open(os.path.join(tmp, "hopxd.log"),
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.pid = os.fork()
        if self.pid == 0:
            os.dup2(log, 2)
            high = os.dup(self.listen.fileno())  # never 3 itself
            os.dup2(high, 3)  # dup2 leaves fd 3 inheritable
            os.close(high)
            env["LISTEN_FDS"] = "1"
            env["LISTEN_PID"] = str(os.getpid())
            os.execve(argv[0], argv, env)
        os.close(log)

    def says(self, what):
        try:
            while True:
                msg = self.notify.recv(4096).decode()
                if what in msg.split("\n"):
                    return True
        except OSError:
            return False

    def stop(self):
        os.kill(self.pid, signal.SIGTERM)
        _, status = os.waitpid(self.pid, 0)
        self.listen.close()
        return os.waitstatus_to_exitcode(status)


def ctl(*args, timeout=60):
    return subprocess.run([os.path.join(root, "bin", "hopxctl"), *args],
                          env=user_env, capture_output=True, text=True,
                          timeout=timeout)


svc = Service()
t.ok(svc.says("READY=1"), "the service tells systemd READY=1")
t.ok(sock_unit["SocketMode"] == ["0600"] and
     sock_unit["DirectoryMode"] == ["0700"] and
     expand(sock_unit["ListenStream"][0]) == os.path.join(run_dir, "hopxd",
                                                          "hopxd.sock"),
     "the socket unit asks for 0600 in a 0700 directory at the path "
     "hopxd and hopxctl use by default")
r = ctl("--json", "status")
t.ok(r.returncode == 0 and f'"base_url":"{sim.url}"' in r.stdout and
     '"state":"off"' not in r.stdout,
     "installed hopxctl finds the agent (default socket), which has a key "
     "(the default file) and the API URL of the unit's EnvironmentFile",
     r.stdout + r.stderr)
r = ctl("create", "--template", "code-interpreter", "--name", "demo")
t.ok(r.returncode == 0, "hopxctl create --name demo", r.stderr)
sid = ctl("ls", "-q").stdout.strip()
t.ok(svc.stop() == 0 and svc.says("STOPPING=1"),
     "SIGTERM: STOPPING=1 and a clean exit 0")
r = ctl("status")
t.ok(r.returncode == 8 and "systemctl --user start hopxd" in r.stderr,
     "agent stopped: hopxctl exits 8 and says how to start it", r.stderr)

svc = Service()
t.ok(svc.says("READY=1"), "restarted: READY=1 again")
r = ctl("--json", "show", "demo")
t.ok(r.returncode == 0 and '"status":"running"' in r.stdout.replace(" ", "")
     and sid in r.stdout, "the sandbox survived the restart, running",
     r.stdout + r.stderr)
token = ctl("token", "demo").stdout.strip()
t.ok(token.count(".") == 2 and sim.token_ok(sid, token),
     "a second process gets its token (hopxctl token), HopX accepts it")
seen = os.path.join(tmp, "seen")
r = ctl("run", "demo", "--", "sh", "-c",
        f'printf "%s %s" "$HOPX_SANDBOX_ID" "$HOPX_SANDBOX_TOKEN" > {seen}')
got = open(seen).read().split() if os.path.exists(seen) else []
t.ok(r.returncode == 0 and got[:1] == [sid] and len(got) == 2 and
     sim.token_ok(sid, got[1]),
     "hopxctl run hands the id and a valid token to a command")
r = ctl("doctor")
t.ok(r.returncode == 0 and "FAIL" not in r.stdout,
     "hopxctl doctor passes on this setup", r.stdout + r.stderr)

# ---- bash completion ----
completion = os.path.join(root, "share", "bash-completion", "completions",
                          "hopxctl")


def complete(line):
    """COMPREPLY for the line, as bash's completion would ask."""
    script = (f'source "{completion}" || exit 3\n'
              f'COMP_LINE={line!r}\n'
              'read -ra COMP_WORDS <<<"$COMP_LINE"\n'
              '[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")\n'
              'COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n'
              '_hopxctl hopxctl "${COMP_WORDS[COMP_CWORD]}" '
              '"${COMP_WORDS[COMP_CWORD-1]}"\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    r = subprocess.run(["bash", "--norc", "-c", script], env=user_env,
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stderr, sorted(x for x in r.stdout.split("\n")
                                          if x)


r = subprocess.run(["bash", "--norc", "-c", f'source "{completion}" && '
                    'complete -p hopxctl'], capture_output=True, text=True)
t.ok(r.returncode == 0 and not r.stderr and "_hopxctl" in r.stdout,
     "the completion sources without error and registers for hopxctl",
     r.stderr)
helped = re.findall(r"^  ([a-z]+) ", ctl("help").stdout, re.M)
code, err, words = complete("hopxctl ")
t.ok(code == 0 and not err and words == sorted(helped) and len(words) > 20,
     "it completes exactly the commands hopxctl help lists",
     f"completion {words}\nhelp {sorted(helped)}\n{err}")
t.ok(complete("hopxctl st")[2] == ["start", "status", "stop"],
     "hopxctl st<TAB>: start status stop", complete("hopxctl st"))
t.ok("--template" in complete("hopxctl create --")[2],
     "hopxctl create --<TAB> offers --template")
t.ok(complete("hopxctl wait demo --for p")[2] == ["paused"],
     "--for completes statuses")
words = complete("hopxctl show ")[2]
t.ok(sid in words and "demo" in words,
     "hopxctl show <TAB> offers the agent's ids and names", words)
words = complete("hopxctl --socket /nonexistent/s.sock show ")[2]
t.ok(words == [], "with another --socket, that agent is asked (none)",
     words)

t.ok(svc.stop() == 0, "the service stops cleanly")
cleanup(tmp, sim, t=t)
t.done()
