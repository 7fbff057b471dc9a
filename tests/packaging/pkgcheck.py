"""Shared pieces of the packaging checks (check_helm.py, check_compose.py,
check_dockerfile.py): a failure collector that prints one line per failed
check and a closing count, the relay's own list of environment variables,
and a way to run the real relay with a manifest's environment."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


class Checker:
    """Collects failures instead of stopping at the first, so one run shows
    everything that is wrong with a manifest."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.scope = ""

    def section(self, scope):
        self.scope = scope
        print(f"== {self.name}: {scope}")

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL [{self.scope}] {what}")
        return bool(cond)

    def eq(self, got, want, what):
        return self.check(got == want, f"{what}: got {got!r}, want {want!r}")

    def finish(self):
        print(f"{self.name}: {self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


def relay_env_names(relay_bin):
    """OUTBOX_* names the binary documents in --help, and the prefix of its
    pass-through librdkafka variables: a manifest setting any other OUTBOX_*
    name is setting something the relay ignores (a typo, a removed option)."""
    out = subprocess.run([relay_bin, "--help"], capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    names = set(re.findall(r"\bOUTBOX_[A-Z0-9_]*[A-Z0-9]\b", text))
    prefixes = {m for m in re.findall(r"\b(OUTBOX_[A-Z0-9_]+_)<NAME>", text)}
    if out.returncode != 0 or "OUTBOX_DATABASE_URL" not in names:
        raise SystemExit(f"{relay_bin} --help did not list its variables (exit {out.returncode})")
    return names | FILE_VARS, prefixes


# Secret files (issue #15): OUTBOX_DATABASE_URL_FILE and the _FILE form of
# every OUTBOX_RDKAFKA_<NAME>. The manifests use only these; a relay binary
# built before it does not list them in --help, and the checks then run it
# with the files' contents in the plain variables instead (relay_reads_files).
FILE_VARS = {"OUTBOX_DATABASE_URL_FILE"}


def relay_reads_files(relay_bin):
    """Whether the binary documents OUTBOX_DATABASE_URL_FILE."""
    out = subprocess.run([relay_bin, "--help"], capture_output=True, text=True, timeout=60)
    return "OUTBOX_DATABASE_URL_FILE" in out.stdout + out.stderr


def env_with_files(env, reads_files):
    """env for the relay: unchanged when it reads *_FILE itself; otherwise each
    OUTBOX_*_FILE replaced by the plain variable holding the file's content
    (trailing newline stripped, as the relay does)."""
    if reads_files:
        return dict(env)
    out = {}
    for k, v in env.items():
        if k.startswith("OUTBOX_") and k.endswith("_FILE"):
            with open(v) as f:
                out[k[:-len("_FILE")]] = f.read().rstrip("\n")
        else:
            out[k] = v
    return out


def unknown_env(names, known, prefixes):
    """The OUTBOX_* names among names that the relay does not read."""
    return sorted(
        n for n in names
        if n.startswith("OUTBOX_") and n not in known and not any(n.startswith(p) for p in prefixes)
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path):
    """(status, body) of GET http://127.0.0.1:port/path; (None, "") when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError:
        return None, ""


class RelayProcess:
    """The real relay run with exactly the environment given (nothing of the
    caller's OUTBOX_* leaks in), stopped and reaped on exit of the block."""

    def __init__(self, relay, args, env):
        self.proc = subprocess.Popen([relay, *args], env=dict(env, PATH=os.environ.get("PATH", "/usr/bin:/bin")),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()

    def wait_live(self, c, port, path, deadline_s=30):
        """Polls path until it answers 200 or the relay exits (exit 2: the
        configuration was refused; its message is shown)."""
        status, deadline = None, time.monotonic() + deadline_s
        while status != 200 and self.proc.poll() is None and time.monotonic() < deadline:
            status, _ = http_get(port, path)
            if status != 200:
                time.sleep(0.05)
        why = self.proc.stderr.read()[-400:] if self.proc.poll() is not None else ""
        return c.check(status == 200, f"relay answers {path} with 200 (got {status}, exit {self.proc.poll()}) {why}")

    def stop(self, timeout=60):
        """SIGTERM, then the exit status (None if it did not stop in time)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
