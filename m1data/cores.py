"""How many cores this process may use: its CPU affinity where the OS has one (a container or
`taskset` can allow fewer than the machine has), else the machine's count; and no more than its
cgroup's CPU quota allows (`docker run --cpus 2`, a Kubernetes CPU limit), which the affinity does
not show: such a container sees every core of the host, and a thread per host core made the
embedded server's OpenMP threads wait on each other through the quota's throttling."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota(CGROUP_ROOT, PROC_CGROUP)
    return max(1, min(cores, quota)) if quota else cores


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int | None:
    """Whole CPUs (rounded up) that the tightest CPU quota on this process's cgroup or its parents
    allows, or None where there is none or it cannot be read (no cgroups: macOS). cgroup v2 keeps
    it in cpu.max ("max 100000" or "200000 100000"), v1 in cpu.cfs_quota_us (-1: none) over
    cpu.cfs_period_us, under the cpu controller's own mount."""
    try:
        lines = proc_cgroup.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: one hierarchy
            limits += _quotas(root, path, lambda d: _read(d / "cpu.max"))
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's hierarchy
            for mount in (root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"):
                if mount.is_dir():
                    limits += _quotas(mount, path, _v1_quota)
                    break
    return max(1, math.ceil(min(limits))) if limits else None


def _quotas(mount: Path, path: str, read: Callable[[Path], str | None]) -> list[float]:
    """The CPUs each cgroup folder from `path` up to `mount` allows, where one sets a quota. A
    container that shows its host's path for its cgroup has its own cgroup at the mount itself."""
    found = []
    folder = mount / path.strip("/")
    while True:
        quota, _, period = (read(folder) or "").partition(" ")
        try:
            if quota not in ("", "max", "-1") and float(period) > 0:
                found.append(float(quota) / float(period))
        except ValueError:
            pass
        if folder == mount or mount not in folder.parents:
            return found
        folder = folder.parent


def _v1_quota(folder: Path) -> str | None:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    return f"{quota} {period}" if quota and period else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, ValueError):
        return None
