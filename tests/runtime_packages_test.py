"""The Dockerfile's runtime stage must hold every shared library that calibd and calib
load, and nothing else. No Docker engine runs in CI, so this checks the same binaries
built on the same Debian instead: ldd lists what they load, dpkg -S names the package that
ships each file, and each such package must be in the [runtime] section of
scripts/packages.txt, a dependency of one of those (their Depends and Pre-Depends,
followed recursively), or already in debian:bookworm-slim
(deploy/bookworm-slim-packages.txt).

Sanitizer builds are skipped: they load libasan and libubsan, which no runtime image has.
Needs CALIBD_BIN and CALIB_BIN (ctest sets both).
"""

import os
import pathlib
import re
import subprocess

import pytest

SOURCE = pathlib.Path(__file__).resolve().parent.parent
PACKAGES_SH = SOURCE / "scripts" / "packages.sh"
SLIM_PACKAGES = SOURCE / "deploy" / "bookworm-slim-packages.txt"
SANITIZER_RUNTIMES = ("libasan.so", "libubsan.so", "libtsan.so", "liblsan.so")
# Merged /usr (Debian 12): /lib is a link to /usr/lib, and dpkg records each file under
# the directory its package ships it in, which may be either spelling.
MERGED_USR = (("/usr/lib/", "/lib/"), ("/usr/lib64/", "/lib64/"))


def required_env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: point it at the built binary (ctest sets it)")
    return value


def loaded_libraries(binary):
    """The paths ldd resolves for every shared object the binary loads, the dynamic
    loader included (the vDSO has no file and is left out)."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    paths = []
    for line in out.splitlines():
        line = line.strip()
        if "not found" in line:
            pytest.fail(f"{binary}: ldd cannot find {line}")
        mapped = re.match(r"\S+ => (/\S+) \(0x[0-9a-f]+\)$", line)
        direct = re.match(r"(/\S+) \(0x[0-9a-f]+\)$", line)
        if mapped or direct:
            paths.append((mapped or direct).group(1))
    assert paths, f"ldd printed no library for {binary}:\n{out}"
    return paths


def path_spellings(path):
    spellings = [path]
    for usr, root in MERGED_USR:
        if path.startswith(usr):
            spellings.append(root + path[len(usr):])
        elif path.startswith(root):
            spellings.append(usr + path[len(root):])
    return spellings


def owning_packages(paths):
    """{path: the Debian package that ships the file behind it}, looked up in one
    dpkg-query call: its real path (symlinks followed) under either merged-/usr
    spelling, then the link itself."""
    spellings = {path: path_spellings(os.path.realpath(path)) + path_spellings(path)
                 for path in paths}
    queried = sorted({s for candidates in spellings.values() for s in candidates})
    # Exits 1 when any candidate is unknown, and still lists those it found.
    out = subprocess.run(["dpkg-query", "-S", *queried], capture_output=True,
                         text=True).stdout
    shipped_by = {}
    for line in out.splitlines():
        if line.startswith("diversion "):
            continue
        owners, _, listed = line.rpartition(": ")
        shipped_by[listed] = [name.split(":")[0] for name in owners.split(", ")]
    owners = {}
    for path, candidates in spellings.items():
        found = next((shipped_by[c] for c in candidates if c in shipped_by), None)
        if found is None:
            pytest.fail(f"no Debian package ships {path} (real path "
                        f"{os.path.realpath(path)})")
        assert len(found) == 1, f"{path} is shipped by several packages: {found}"
        owners[path] = found[0]
    return owners


def section(name):
    out = subprocess.run(["sh", str(PACKAGES_SH), name], capture_output=True, text=True,
                         check=True).stdout
    return set(out.split())


def slim_packages():
    lines = SLIM_PACKAGES.read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def installed_dependencies():
    """{installed package: the packages its Depends and Pre-Depends name, as installed
    here}. Alternatives (a | b) are not followed: which one apt takes in the image is not
    certain, so a library reached only through one must be listed in [runtime] itself."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f",
         "${db:Status-Abbrev}\t${Package}\t${Depends}, ${Pre-Depends}\n"],
        capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    installed = {package for status, package, _ in rows if status.startswith("ii")}
    depends = {}
    for status, package, fields in rows:
        if package not in installed:
            continue
        chosen = set()
        for dependency in fields.split(","):
            if "|" not in dependency:
                name = re.sub(r"\(.*?\)|:\S+", "", dependency).strip()
                if name in installed:
                    chosen.add(name)
        depends[package] = chosen
    return depends


def runtime_closure(packages):
    depends = installed_dependencies()
    seen, todo = set(), list(packages)
    while todo:
        package = todo.pop()
        if package in seen:
            continue
        assert package in depends, (
            f"{package} is not installed here, so its dependencies cannot be read "
            "(scripts/install-deps.sh installs the [runtime] section)")
        seen.add(package)
        todo.extend(depends[package] - seen)
    return seen


@pytest.fixture(scope="module")
def library_owners():
    """{shared library path: Debian package} over calibd and calib."""
    libraries = set()
    for name in ("CALIBD_BIN", "CALIB_BIN"):
        libraries.update(loaded_libraries(required_env(name)))
    sanitizers = sorted(p for p in libraries
                        if os.path.basename(p).startswith(SANITIZER_RUNTIMES))
    if sanitizers:
        pytest.skip("sanitizer build (loads " + ", ".join(sanitizers) + "): its runtime is "
                    "part of GCC, not of any runtime image, so only the release build is "
                    "checked")
    return owning_packages(sorted(libraries))


def test_runtime_stage_provides_every_loaded_library(library_owners):
    runtime = section("runtime")
    available = runtime_closure(runtime) | slim_packages()
    missing = {path: package for path, package in library_owners.items()
               if package not in available}
    assert not missing, (
        "shared libraries whose package neither the [runtime] section of "
        "scripts/packages.txt (with its dependencies) nor debian:bookworm-slim has: "
        f"{missing}")


def test_runtime_section_lists_only_packages_of_loaded_libraries(library_owners):
    needed = set(library_owners.values())
    runtime = section("runtime")
    assert not runtime - needed, (
        "[runtime] packages that ship no library calibd or calib loads: "
        f"{runtime - needed}")
    assert not runtime & slim_packages(), (
        f"[runtime] packages debian:bookworm-slim already has: {runtime & slim_packages()}")

