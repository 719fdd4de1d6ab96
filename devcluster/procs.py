"""Detached processes with pid files: start, find, stop, read their logs.

The components must outlive the shell (or pytest session) that started them, so each one
is started in its own session (setsid) with stdin closed and output to a log file; a pid
file lets a later ``scripts/cluster down`` or ``up`` find it again. A pid alone could have
been reused by an unrelated process after a reboot of the state, so liveness also checks
that the process's command line still names the expected executable.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def running_pid(pid_file: Path, marker: str) -> int | None:
    """The pid from ``pid_file`` if that process is alive and its command line contains ``marker``."""
    pid = read_pid(pid_file)
    if pid is None or is_zombie(pid):
        return None
    args = cmdline(pid)
    # Right after exec the kernel may still show an empty command line: that process is
    # ours (we just wrote its pid file); only a non-empty foreign command line disqualifies.
    if args and not any(marker in part for part in args):
        return None
    return pid


def start_detached(argv: list[str], pid_file: Path, log_file: Path, env: dict[str, str] | None = None,
                   cwd: Path | None = None) -> int:
    """Start ``argv`` in a new session, output appended to ``log_file``; write and return its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log, open(os.devnull, "rb") as devnull:
        log.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv, stdin=devnull, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
            start_new_session=True, close_fds=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    # Deliberately not waited for: the child is re-parented when this process exits. Its
    # Popen object would warn about that when collected; drop the handle quietly.
    proc.returncode = 0
    return proc.pid


def stop(pid_file: Path, marker: str, grace: float = 15.0) -> bool:
    """SIGTERM the process group, SIGKILL after ``grace`` seconds. True if something was running."""
    pid = running_pid(pid_file, marker)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if running_pid(pid_file, marker) is None:
            break
        time.sleep(0.1)
    else:
        _signal_group(pid, signal.SIGKILL)
        for _ in range(50):
            if running_pid(pid_file, marker) is None:
                break
            time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, or a note that it is missing."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode(errors="replace")
    except FileNotFoundError:
        return f"(no log file {path})"
    return "\n".join(data.splitlines()[-lines:])


def wait_until(check, timeout: float, what: str, interval: float = 0.2, alive=None) -> None:
    """Poll ``check()`` until true. ``alive()`` returning false aborts early (the process died)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = exc
        if alive is not None and not alive():
            raise StartError(f"{what}: the process exited while starting")
        time.sleep(interval)
    detail = f" (last error: {last_error})" if last_error else ""
    raise StartError(f"{what}: not ready after {timeout:.0f}s{detail}")


class StartError(RuntimeError):
    """A component could not be started; the message says which and why."""
