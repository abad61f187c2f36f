"""usable_cores() counts no more cores than the process's cgroup CPU quota pays for (a container
started with `--cpus 2` on a 64-core host sees 64 cores in its affinity), read from a made-up
cgroup tree: cgroup v2's cpu.max and v1's cfs quota, each on the process's folder or a parent."""

from __future__ import annotations

from pathlib import Path

import pytest

from m1data import cores


def tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")


@pytest.mark.parametrize(("proc", "files", "expected"), [
    ("0::/\n", {}, None),
    ("0::/\n", {"cpu.max": "max 100000"}, None),
    ("0::/\n", {"cpu.max": "200000 100000"}, 2),
    ("0::/\n", {"cpu.max": "150000 100000"}, 2),  # 1.5 CPUs' time: two threads can use it
    ("0::/\n", {"cpu.max": "20000 100000"}, 1),
    ("0::/kubepods/pod1/c1\n", {"kubepods/pod1/c1/cpu.max": "max 100000", "kubepods/pod1/cpu.max": "300000 100000"}, 3),
    ("0::/docker/abc\n", {"cpu.max": "100000 100000"}, 1),  # the container's own cgroup, mounted at the root
    ("4:cpu,cpuacct:/m1\n1:name=systemd:/\n", {"cpu,cpuacct/m1/cpu.cfs_quota_us": "100000",
                                                "cpu,cpuacct/m1/cpu.cfs_period_us": "100000"}, 1),
    ("4:cpu:/m1\n", {"cpu/m1/cpu.cfs_quota_us": "-1", "cpu/m1/cpu.cfs_period_us": "100000"}, None),
    ("0::/\n", {"cpu.max": "garbage"}, None),
])
def test_cgroup_cpu_quota(tmp_path, proc, files, expected):
    root = tmp_path / "cgroup"
    root.mkdir()
    tree(root, files)
    (tmp_path / "cgroup.txt").write_text(proc)
    assert cores.cgroup_cpu_quota(root, tmp_path / "cgroup.txt") == expected


def test_no_cgroups_at_all_is_no_limit(tmp_path):
    assert cores.cgroup_cpu_quota(tmp_path / "absent", tmp_path / "absent.txt") is None


def test_usable_cores_is_capped_by_the_quota(tmp_path, monkeypatch):
    root = tmp_path / "cgroup"
    tree(root, {"cpu.max": "100000 100000"})
    (tmp_path / "cgroup.txt").write_text("0::/\n")
    monkeypatch.setattr(cores, "CGROUP_ROOT", root)
    monkeypatch.setattr(cores, "PROC_CGROUP", tmp_path / "cgroup.txt")
    assert cores.usable_cores() == 1
