"""`mlops up` for the Python suites (tests/python, tests/oip, tests/feast), which run in
venvs of their own: standard library only.

`up_command` puts every service on a free loopback port (so servers started side by side
never meet on a default port); `Up` starts it with a fresh data directory, waits until a
service's admin port says ready, and stops it with SIGINT, which it must survive with exit
code 0 within 20 s. The server's output goes to `server.log` beside the data directory.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

# Each service's flags, in the order of the ports `up_command` hands out.
FLAGS = [
    "--tracking-addr", "--tracking-admin-addr",
    "--registry-addr", "--registry-admin-addr",
    "--mlflow-addr", "--mlflow-admin-addr",
    "--inference-addr", "--inference-http-addr", "--inference-admin-addr",
    "--feature-store-addr", "--feature-store-admin-addr",
    "--monitoring-addr", "--monitoring-admin-addr",
    "--retraining-addr", "--retraining-admin-addr",
]  # fmt: skip


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def up_command(binary: str, data_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The command, and each flag's address ("127.0.0.1:PORT") by flag name."""
    addrs = {flag: f"127.0.0.1:{port}" for flag, port in zip(FLAGS, free_ports(len(FLAGS)))}
    cmd = [binary, "up", "--data-dir", str(data_dir)]
    for flag, addr in addrs.items():
        cmd += [flag, addr]
    return cmd, addrs


def ready(admin: str) -> bool:
    """Whether the admin port `admin` answers /readyz with 200."""
    try:
        with urllib.request.urlopen(f"http://{admin}/readyz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


class Up:
    """A running `mlops up` under `root` (data in root/data, output in root/server.log)."""

    def __init__(self, binary: str, root: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()):
        """`env`: the process's environment (default: this one's); `args`: more flags."""
        self.cmd, self.addrs = up_command(binary, root / "data")
        self.cmd += list(args)
        self.data = root / "data"
        self.log_path = root / "server.log"
        self._log = open(self.log_path, "wb")
        self._log.write(("$ " + " ".join(self.cmd) + "\n").encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            self.cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root, env=env
        )

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError as e:
            return f"(no server log: {e})"
        return f"--- last {lines} lines of {self.log_path} ---\n" + "\n".join(text[-lines:])

    def wait_ready(self, admin_flag: str) -> str | None:
        """Waits until the admin port of `admin_flag` is ready; an error message if not."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not ready(self.addrs[admin_flag]):
            code = self.proc.poll()
            if code is not None:
                return f"`mlops up` exited with code {code} before serving\n{self.log_tail()}"
            if time.monotonic() > deadline:
                self.kill()
                return f"`mlops up` did not become ready within {STARTUP_TIMEOUT:g} s\n{self.log_tail()}"
            time.sleep(0.1)
        return None

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._log.close()

    def stop(self) -> str | None:
        """SIGINT, then waits; an error message unless it exits 0 in time."""
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            return f"`mlops up` did not exit within {STOP_TIMEOUT:g} s of SIGINT\n{self.log_tail()}"
        self._log.close()
        if code != 0:
            return f"`mlops up` exited with code {code} after SIGINT (want 0)\n{self.log_tail()}"
        return None
