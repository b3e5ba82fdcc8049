"""gcloud command lines (argv lists) for a TPU's life: create, state, ssh, delete.

Pure functions: they build commands and run nothing, so tests check them without gcloud.
"""

from launch.target import Target

# States after which a resource cannot run anything again: delete it and create it anew.
DEAD_STATES = frozenset({"SUSPENDED", "PREEMPTED", "FAILED", "TERMINATED"})
# States of a resource that is, or is becoming, usable: leave it as it is.
LIVE_STATES = frozenset(
    {"ACCEPTED", "WAITING_FOR_RESOURCES", "PROVISIONING", "CREATING", "ACTIVE", "READY"}
)
# Where a resource can run commands.
READY_STATES = frozenset({"ACTIVE", "READY"})


def _group(target: Target) -> list[str]:
    kind = "queued-resources" if target.api == "queued" else "tpu-vm"
    return ["gcloud", "compute", "tpus", kind]


def _location(target: Target) -> list[str]:
    return [f"--zone={target.zone}"] + ([f"--project={target.project}"] if target.project else [])


def create_command(target: Target, runtime_version: str, spot: bool) -> list[str]:
    """Creates the TPU VM, or queues the request for a queued resource of `target.slices`."""
    command = [*_group(target), "create", target.name, *_location(target)]
    command.append(f"--accelerator-type={target.accelerator.type}")
    if target.api == "queued":
        command.append(f"--runtime-version={runtime_version}")
        if target.slices > 1:
            command += [f"--node-count={target.slices}", f"--node-prefix={target.name}"]
        else:
            command.append(f"--node-id={target.name}")
    else:
        command.append(f"--version={runtime_version}")
    if spot:
        command.append("--spot")
    return command


def state_command(target: Target) -> list[str]:
    """Prints the resource's state (e.g. ACTIVE, SUSPENDED); fails if it does not exist."""
    field = "state.state" if target.api == "queued" else "state"
    return [
        *_group(target),
        "describe",
        target.name,
        *_location(target),
        f"--format=value({field})",
    ]


def delete_command(target: Target) -> list[str]:
    """Deletes the resource and, for a queued resource, its TPU VMs."""
    force = ["--force"] if target.api == "queued" else []
    return [*_group(target), "delete", target.name, *_location(target), *force, "--quiet"]


def ssh_command(target: Target, script: str, everywhere: bool = True) -> list[str]:
    """Runs the shell `script` on every worker of every slice (or on the first worker only)."""
    command = [*_group(target), "ssh", target.name, *_location(target)]
    if target.api == "queued":
        command.append("--node=all" if everywhere else "--node=0")
    command += ["--worker=all" if everywhere else "--worker=0", f"--command={script}"]
    return command


def upload_command(local_path: str, uri: str) -> list[str]:
    """Copies a local file to Cloud Storage."""
    return ["gcloud", "storage", "cp", local_path, uri]


def archive_command(repo_root: str, ref: str, out_path: str) -> list[str]:
    """Packs the committed tree at `ref` (tracked files only) into a .tar.gz."""
    return ["git", "-C", repo_root, "archive", "--format=tar.gz", f"--output={out_path}", ref]
