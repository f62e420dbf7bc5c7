#!/usr/bin/env python3
"""The registry on a PostgreSQL set up as in production: TCP only over
TLS, checked with sslmode=verify-full against a CA of its own, and a
password, which the agent reads from PGPASSFILE (never on its command
line, in its log or in status). Without the password, or trusting the
wrong CA, the agent says why and what to do, and changes are refused."""
import os
import subprocess

from hopxtest import Agent, PgServer, Sim, Tap, cleanup, setup, wait_for

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
pg = PgServer(tls=True).start()
sim = Sim(simbin, tmp).start()
with open(pg.password_file) as f:
    password = f.read().strip()
passfile = os.path.join(tmp, "pgpass")
with open(os.open(passfile, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
    f.write(f"localhost:*:*:hopxd:{password}\n")


def agent(name, conninfo, pgpass):
    os.makedirs(f"{tmp}/{name}")
    a = Agent(hopxd, hopxctl, f"{tmp}/{name}", sim.url,
              args=["--store", conninfo])
    os.environ["PGPASSFILE"] = pgpass
    try:
        return a.start()
    finally:
        del os.environ["PGPASSFILE"]


def status(a):
    rc, out, err = a.ctl("status")
    return rc, out + err


def store_down(a, cause, hint, why, how):
    """The store goes down naming cause; status then exits 6 with hint."""
    t.ok(wait_for(lambda: cause in status(a)[1], 20), why, status(a)[1])
    rc, text = status(a)
    t.ok(rc == 6 and hint in text, how, f"{rc} {text}")


good = agent("good", pg.conninfo, passfile)
t.ok(wait_for(lambda: status(good)[0] == 0, 30),
     "with sslmode=verify-full and the password in PGPASSFILE the store is "
     "up", status(good)[1])
rc, out, err = good.ctl("create", "--template", "base", "--name", "tls")
row = pg.sql("SELECT count(*) FROM sandboxes WHERE name = 'tls'")
t.ok(rc == 0 and row == [["1"]], "a create is stored in the registry",
     f"{rc} {err} {row}")
row = pg.sql("SELECT count(*), bool_and(s.ssl) FROM pg_stat_activity a "
             "JOIN pg_stat_ssl s USING (pid) WHERE a.client_addr IS NOT "
             "NULL")
t.ok(int(row[0][0]) >= 1 and row[0][1] == "t",
     "every connection of the agent is encrypted", str(row))

nopass = agent("nopass", pg.conninfo, os.path.join(tmp, "missing"))
store_down(nopass, "password", "PGPASSFILE",
           "without the password the store is down, saying so",
           "status exits 6 and says where the password goes")
rc, out, err = nopass.ctl("label", "tls", "x=y")
t.ok(rc == 6 and "unavailable" in err, "a change is refused (exit 6)",
     f"{rc} {err}")

other = os.path.join(tmp, "other-ca")
subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-days", "1", "-subj", "/CN=another-ca", "-keyout",
                f"{other}.key", "-out", f"{other}.crt"], check=True,
               capture_output=True)
wrong_ca = pg.conninfo.replace(f"sslrootcert={pg.dir}/pg/ca.crt",
                               f"sslrootcert={other}.crt")
t.ok(wrong_ca != pg.conninfo, "a connection string trusting another CA")
badca = agent("badca", wrong_ca, passfile)
store_down(badca, "certificate", "sslrootcert",
           "trusting the wrong CA, the store is down: the certificate is "
           "named", "status says which setting decides whom to trust")

logs = ""
for name in ("good", "nopass", "badca"):
    with open(f"{tmp}/{name}/hopxd.log", errors="replace") as f:
        logs += f.read()
t.ok(password not in logs and password not in status(good)[1],
     "the password is in no log and not in status")

cleanup(tmp, sim, good, nopass, badca, pg, t=t)
pg.remove()
t.done()
