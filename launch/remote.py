"""Shell scripts that run on every TPU worker (through `gcloud ... ssh --command`).

Each script is one line (statements joined by '; ' under `set -euo pipefail`), so a dry
run prints one command per line. Paths on the workers:

  ~/c2s-jax                the project (the committed tree that `setup` shipped)
  ~/c2s-venv               its virtual environment, with jax[tpu]
  ~/c2s-runs/RUN.{log,pid,rc}   a run's output, process id and exit status
  /mnt/c2s-data/NAME       data copied from gs://.../NAME by `data`
  /mnt/gcs/BUCKET          a bucket mounted by `data --mount` (Cloud Storage FUSE)
"""

import shlex
from collections.abc import Mapping, Sequence

REPO = "$HOME/c2s-jax"
VENV = "$HOME/c2s-venv"
RUNS = "$HOME/c2s-runs"
DATA_ROOT = "/mnt/c2s-data"
MOUNT_ROOT = "/mnt/gcs"


def _script(*statements: str) -> str:
    return "; ".join(("set -euo pipefail", *statements))


def _run_files(run_name: str) -> str:
    # R is the path prefix of the run's .log/.pid/.rc files.
    return f'R="{RUNS}/{run_name}"'


def setup_script(code_uri: str, python: str = "python3.11") -> str:
    """Installs the project from the `code_uri` archive into ~/c2s-jax with jax[tpu].

    jax[tpu] is pinned to the jax version of requirements.txt so that TPU hosts run the
    same jax as everyone else.
    """
    py = shlex.quote(python)
    return _script(
        f"command -v {py} >/dev/null || (sudo apt-get update -qq && "
        f"sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {py} {py}-venv)",
        f"gcloud storage cp {shlex.quote(code_uri)} /tmp/c2s-code.tar.gz",
        f'rm -rf "{REPO}" && mkdir -p "{REPO}" && tar -xzf /tmp/c2s-code.tar.gz -C "{REPO}"',
        f'cd "{REPO}"',
        f'[ -x "{VENV}/bin/python" ] || {py} -m venv "{VENV}"',
        f'"{VENV}/bin/pip" install -q -r requirements.txt -e . '
        "\"jax[tpu]==$(sed -n 's/^jax==//p' requirements.txt)\"",
        f'"{VENV}/bin/c2s" --help >/dev/null',
        'echo "c2s-jax installed on $(hostname)"',
    )


def data_path(src: str, mount: bool) -> str:
    """Where the data of `src` (gs://BUCKET/PATH) appears on every worker."""
    bucket, _, path = src.removeprefix("gs://").partition("/")
    if mount:
        return f"{MOUNT_ROOT}/{bucket}" + (f"/{path.rstrip('/')}" if path else "")
    return f"{DATA_ROOT}/{(path.rstrip('/') or bucket).rsplit('/', 1)[-1]}"


def data_script(src: str, mount: bool) -> str:
    """Copies `src` to /mnt/c2s-data/NAME (resumable rsync), or mounts its bucket read-write."""
    if mount:
        bucket = src.removeprefix("gs://").partition("/")[0]
        point = f"{MOUNT_ROOT}/{bucket}"
        return _script(
            'command -v gcsfuse >/dev/null || { echo "gcsfuse is not installed on '
            '$(hostname): install Cloud Storage FUSE, or drop --mount to copy the data" >&2; '
            "exit 1; }",
            f'sudo mkdir -p {point} && sudo chown "$USER" {point}',
            f"mountpoint -q {point} || gcsfuse --implicit-dirs {shlex.quote(bucket)} {point}",
            f"ls {shlex.quote(data_path(src, mount))} >/dev/null",
        )
    dest = data_path(src, mount)
    return _script(
        f'sudo mkdir -p {DATA_ROOT} && sudo chown "$USER" {DATA_ROOT}',
        f"gcloud storage rsync --recursive {shlex.quote(src.rstrip('/'))} {shlex.quote(dest)}",
    )


def run_script(run_name: str, argv: Sequence[str], env: Mapping[str, str]) -> str:
    """Starts `argv` detached on this worker, unless this run is already running here.

    The process survives the ssh session (setsid + nohup), appends to ~/c2s-runs/RUN.log
    and leaves its exit status in RUN.rc, so `logs` and `run --wait` can follow it and a
    lost connection loses nothing.
    """
    exports = [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    # "$0" is the .rc path, passed as bash's first argument to avoid nested quoting. The
    # wrapper catches SIGTERM (a no-op trap, which its child does not inherit) so that
    # `stop` or a preemption notice reaching the whole group still leaves the exit status.
    body = shlex.quote(f'trap : TERM; {shlex.join(argv)}; echo $? > "$0"')
    return _script(
        f'mkdir -p "{RUNS}"',
        _run_files(run_name),
        'if [ -f "$R.pid" ] && kill -0 "$(cat "$R.pid")" 2>/dev/null; then '
        f'echo "{run_name} is already running on $(hostname)"; exit 0; fi',
        f'cd "{REPO}"',
        f'export PATH="{VENV}/bin:$PATH"',
        *exports,
        'rm -f "$R.rc"',
        f'echo "=== {run_name} starts on $(hostname) at $(date -u +%FT%TZ)" >> "$R.log"',
        # The pid is written in the same statement: "&;" would be a syntax error.
        f'nohup setsid bash -c {body} "$R.rc" >> "$R.log" 2>&1 < /dev/null & echo $! > "$R.pid"',
        f'echo "{run_name} started on $(hostname); log: $R.log"',
    )


def follow_script(run_name: str) -> str:
    """Prints the run's log from the start and follows it until the process ends."""
    return _script(
        _run_files(run_name),
        f'[ -f "$R.pid" ] || {{ echo "no run {run_name} on $(hostname): start it with '
        f'python -m launch run" >&2; exit 1; }}',
        'tail -n +1 -F --pid="$(cat "$R.pid")" "$R.log"',
    )


def check_script(run_name: str) -> str:
    """Waits for the run to end on this worker, then fails unless it exited with status 0."""
    return _script(
        _run_files(run_name),
        'while kill -0 "$(cat "$R.pid")" 2>/dev/null; do sleep 1; done',
        'rc="$(cat "$R.rc" 2>/dev/null || echo none)"',
        f'[ "$rc" = 0 ] || {{ echo "{run_name} on $(hostname): exit status $rc, see $R.log" >&2; '
        "exit 1; }",
    )


def stop_script(run_name: str) -> str:
    """Sends SIGTERM to the run's process group: the trainer saves a checkpoint and exits."""
    return _script(
        _run_files(run_name),
        'if [ -f "$R.pid" ] && kill -0 "$(cat "$R.pid")" 2>/dev/null; then '
        f'kill -TERM -- -"$(cat "$R.pid")"; echo "stopping {run_name} on $(hostname)"; fi',
    )
