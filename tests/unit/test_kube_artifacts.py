"""The Kubernetes artifacts' scripts without building anything: the Debian mirror read from the
machine's apt configuration (scripts/image.sh mirror) and the recipe/cache rules of
scripts/kubernetes.sh (hash, path, check)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT


def mirror(etc: Path, **env: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "CARINA_DEBIAN_MIRROR"} | {"CARINA_APT_ETC": str(etc)} | env
    return subprocess.run([str(ROOT / "scripts/image.sh"), "mirror"], env=e, capture_output=True, text=True,
                          timeout=30, check=False)


@pytest.fixture
def etc(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    return tmp_path


DEB822 = """Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main

Enabled: no
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm

Types: deb-src deb
# a comment inside the stanza
URIs: http://mirror.example/debian/  http://second.example/debian
Suites: bookworm-updates
\tbookworm
Components: main
"""


def test_mirror_from_deb822_sources(etc):
    (etc / "sources.list.d" / "debian.sources").write_text(DEB822)
    out = mirror(etc)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "http://mirror.example/debian\n"


def test_mirror_from_one_line_entries_in_apt_order(etc):
    (etc / "sources.list").write_text(
        "deb-src http://src.example/debian bookworm main\n"
        "deb http://sec.example/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://first.example/debian bookworm main\n")
    (etc / "sources.list.d" / "a.sources").write_text(DEB822)
    assert mirror(etc).stdout == "http://first.example/debian\n"


def test_mirror_override_and_clear_failure(etc):
    assert mirror(etc, CARINA_DEBIAN_MIRROR="http://override.example/debian").stdout == \
        "http://override.example/debian\n"
    (etc / "sources.list.d" / "other.list").write_text("deb http://old.example/debian bullseye main\n")
    out = mirror(etc)
    assert out.returncode != 0
    assert out.stdout == ""
    assert "CARINA_DEBIAN_MIRROR" in out.stderr


def test_no_mirror_host_is_hard_coded():
    for script in ("scripts/image.sh", "scripts/kubernetes.sh"):
        assert "deb.debian.org" not in (ROOT / script).read_text(), script


@pytest.fixture
def kube_tree(tmp_path):
    """A copy of what kubernetes.sh reads (itself and images/kube), so the recipe can be changed."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts/kubernetes.sh", tmp_path / "scripts")
    shutil.copytree(ROOT / "images/kube", tmp_path / "images/kube")
    return tmp_path


def kube(tree: Path, *args: str, cache: Path) -> subprocess.CompletedProcess:
    e = dict(os.environ) | {"CARINA_CACHE": str(cache)}
    return subprocess.run([str(tree / "scripts/kubernetes.sh"), *args], env=e, capture_output=True, text=True,
                          timeout=30, check=False)


def test_recipe_hash_covers_images_kube(kube_tree, tmp_path):
    cache = tmp_path / "cache"
    before = kube(kube_tree, "hash", cache=cache).stdout.strip()
    assert len(before) == 16
    assert kube(kube_tree, "hash", cache=cache).stdout.strip() == before
    (kube_tree / "images/kube/extra").write_text("x\n")
    assert kube(kube_tree, "hash", cache=cache).stdout.strip() != before


def test_path_and_check_of_an_empty_cache(kube_tree, tmp_path):
    cache = tmp_path / "cache"
    assert kube(kube_tree, "path", cache=cache).stdout == f"{cache}/kubernetes/v1.20.2\n"
    out = kube(kube_tree, "check", cache=cache)
    assert out.returncode != 0
    assert "missing or stale" in out.stderr


def sums(target: Path, folder: Path, names: list[str]) -> None:
    """A SHA256SUMS file as sha256sum writes it: digest, two spaces, file name."""
    target.write_text("".join(f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n" for n in names))


def test_check_refuses_a_stale_or_altered_cache(kube_tree, tmp_path):
    cache = tmp_path / "cache"
    folder = Path(kube(kube_tree, "path", cache=cache).stdout.strip())
    (folder / "bin").mkdir(parents=True)
    (folder / "images").mkdir()
    names = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"]
    for name in names:
        (folder / "bin" / name).write_text(f"#!/bin/sh\necho {name}\n")
        (folder / "bin" / name).chmod(0o755)
    for name in ("pause.tar", "shell.tar"):
        (folder / "images" / name).write_text(name)
    sums(folder / "SHA256SUMS", folder / "bin", names)
    sums(folder / "images" / "SHA256SUMS", folder / "images", ["pause.tar", "shell.tar"])
    (folder / "recipe").write_text(kube(kube_tree, "hash", cache=cache).stdout)
    assert kube(kube_tree, "check", cache=cache).returncode == 0
    (folder / "bin" / "kubelet").write_text("#!/bin/sh\necho altered\n")
    assert kube(kube_tree, "check", cache=cache).returncode != 0
    (folder / "bin" / "kubelet").write_text("#!/bin/sh\necho kubelet\n")
    assert kube(kube_tree, "check", cache=cache).returncode == 0
    (kube_tree / "images/kube/extra").write_text("a new recipe\n")
    out = kube(kube_tree, "check", cache=cache)
    assert out.returncode != 0
    assert "stale" in out.stderr


def test_image_changes_files_name_the_entry_points():
    pause = (ROOT / "images/kube/pause.changes").read_text()
    shell = (ROOT / "images/kube/shell.changes").read_text()
    assert 'ENTRYPOINT ["/pause"]' in pause
    assert 'CMD ["sh"]' in shell
