#!/usr/bin/python3
"""Checks the Dockerfile without a Docker engine, against the build it
packages: multi-stage on Debian slim; the runtime stage installs exactly the
Debian packages that own the shared libraries the built outbox-relay links
(found with readelf and dpkg on this Debian machine, the image's release) and
no build tools; the build stage installs the -dev package of every
pkg-config module CMakeLists.txt uses and copies every source directory it
reads; the image runs the relay as a non-root numeric user.

usage: check_dockerfile.py --dockerfile FILE --source DIR --relay BIN [--sanitized]
"""

import argparse
import os
import re
import shlex
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pkgcheck import Checker  # noqa: E402

# Runtime packages that are not libraries but belong in the image.
RUNTIME_EXTRAS = {"ca-certificates", "tzdata"}
BUILD_TOOLS = {"build-essential", "cmake", "gcc", "g++", "make", "pkg-config", "pkgconf", "clang", "git"}
# Sanitizer runtimes an ASan+UBSan test build links; the image is a release build.
SANITIZER_PKG = re.compile(r"^lib(asan|ubsan|lsan|tsan)\d+$")


def parse(path):
    """Instructions as (KEYWORD, text), continuation lines joined, comments dropped."""
    out, cur = [], ""
    for line in open(path).read().splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if cur and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        kw, _, rest = cur.strip().partition(" ")
        out.append((kw.upper(), rest.strip()))
        cur = ""
    return out


def stages(instrs):
    """[(from_image, name, [instructions])], with global ARG defaults substituted in FROM."""
    args, result = {}, []
    for kw, rest in instrs:
        if kw == "ARG" and not result:
            k, _, v = rest.partition("=")
            args[k] = v.strip('"')
        elif kw == "FROM":
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), ""), rest.split()[0])
            m = re.search(r"\s+AS\s+(\S+)", rest, re.I)
            result.append((image, m.group(1) if m else None, []))
        elif result:
            result[-1][2].append((kw, rest))
    return result


def apt_packages(instrs):
    pkgs = set()
    for kw, rest in instrs:
        if kw != "RUN":
            continue
        for seg in re.split(r"&&|;|\|\|?", rest):
            words = shlex.split(seg)
            if len(words) > 2 and words[0] in ("apt-get", "apt") and "install" in words:
                pkgs |= {w for w in words[words.index("install") + 1:] if not w.startswith("-")}
    return pkgs


def needed_packages(binary):
    """Debian packages owning the libraries in the binary's DT_NEEDED."""
    dyn = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True).stdout
    pkgs = {}
    for soname in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn):
        owner = subprocess.run(["dpkg-query", "-S", f"*/{soname}"], capture_output=True, text=True)
        names = {ln.split(":")[0] for ln in owner.stdout.splitlines() if ":" in ln}
        pkgs[soname] = names
    return pkgs


def read_dirs(cml, off):
    """Words of CMakeLists.txt that may name a top-level directory, except
    those only inside if(OPTION) blocks for options the build turns off."""
    words, conds = set(), []
    for line in cml.splitlines():
        code = re.sub(r"\$\{CMAKE_(CURRENT_)?SOURCE_DIR\}/", " ", line.split("#", 1)[0])
        code = re.sub(r'"[^"]*\s[^"]*"', " ", code)  # descriptions, messages
        m = re.match(r"\s*(if|elseif|else|endif)\s*\(\s*([^)]*)\)", code, re.I)
        if m:
            kw = m.group(1).lower()
            if kw == "if":
                conds.append(m.group(2).strip())
            elif kw == "endif" and conds:
                conds.pop()
            elif kw in ("else", "elseif") and conds:
                conds[-1] = ""  # another branch: no longer the option's
            continue
        if any(cond in off for cond in conds):
            continue
        words |= set(re.findall(r"(?<![\w/$.{-])([A-Za-z_][\w-]*)(?=/|\s|\)|$)", code))
    return words


def dev_package(module):
    pc = subprocess.run(["pkg-config", "--path", module], capture_output=True, text=True).stdout.strip()
    if not pc:
        return None
    owner = subprocess.run(["dpkg-query", "-S", pc], capture_output=True, text=True).stdout
    return owner.split(":")[0] if owner else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dockerfile", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--relay", required=True)
    ap.add_argument("--sanitized", action="store_true")
    a = ap.parse_args()
    c = Checker("dockerfile")
    st = stages(parse(a.dockerfile))

    c.section("stages")
    c.check(len(st) >= 2, f"multi-stage ({len(st)} stages)")
    releases = set()
    for image, _, _ in st:
        m = re.fullmatch(r"(?:docker\.io/)?(?:library/)?debian:([a-z]+)-slim", image)
        c.check(m, f"stage image {image!r} is debian:<release>-slim")
        releases.add(m.group(1) if m else image)
    c.eq(len(releases), 1, f"one Debian release for all stages {releases}")
    build, final = st[0][2], st[-1][2]
    build_names = {n for _, n, _ in st[:-1] if n} | {str(i) for i in range(len(st) - 1)}

    c.section("runtime stage")
    users = [rest for kw, rest in final if kw == "USER"]
    uid = users[-1].split(":")[0] if users else ""
    c.check(uid.isdigit() and int(uid) != 0, f"runs as a numeric non-root USER (got {users})")
    copies = [rest for kw, rest in final if kw == "COPY"]
    c.check(any(re.search(r"--from=(\S+)", cp) and re.search(r"--from=(\S+)", cp).group(1) in build_names
                and "outbox-relay" in cp for cp in copies), f"copies the binary from the build stage: {copies}")
    entry = " ".join(rest for kw, rest in final if kw == "ENTRYPOINT")
    c.check("outbox-relay" in entry, f"ENTRYPOINT runs outbox-relay: {entry!r}")
    c.eq([rest for kw, rest in final if kw == "CMD"][-1:], ['["run"]'], "CMD")
    c.check(any(kw == "EXPOSE" and "9400" in rest.split() for kw, rest in final), "EXPOSE 9400")
    runtime = apt_packages(final)
    c.eq(sorted(p for p in runtime if p.endswith("-dev") or p in BUILD_TOOLS), [],
         "build packages in the runtime stage")
    needed = needed_packages(a.relay)
    c.check(needed, f"{a.relay} has DT_NEEDED libraries")
    wanted = set()
    for soname, owners in sorted(needed.items()):
        owners = {p for p in owners if not (a.sanitized and SANITIZER_PKG.match(p))}
        if not owners and a.sanitized and re.match(r"lib(asan|ubsan|lsan|tsan)\.", soname):
            continue
        if not c.check(owners, f"a Debian package owns {soname}"):
            continue
        if owners & {"libc6"}:  # in every Debian image
            continue
        wanted |= owners
        c.check(owners & runtime, f"runtime stage installs {sorted(owners)} for {soname}")
    c.eq(sorted(runtime - wanted - RUNTIME_EXTRAS), [], "runtime packages the binary does not link")

    c.section("build stage")
    cml = open(os.path.join(a.source, "CMakeLists.txt")).read()
    build_pkgs = apt_packages(build)
    for module in re.findall(r"pkg_check_modules\(\s*\w+\s+(?:REQUIRED\s+)?(?:IMPORTED_TARGET\s+)?([\w.+-]+)", cml):
        dev = dev_package(module)
        if c.check(dev, f"a Debian package provides pkg-config module {module}"):
            c.check(dev in build_pkgs, f"build stage installs {dev} for {module}")
    copied = set()
    for kw, rest in build:
        if kw == "COPY" and "--from" not in rest:
            srcs = shlex.split(rest)[:-1]
            copied |= {s.rstrip("/").split("/")[0] for s in srcs}
    build_cmd = " ".join(rest for kw, rest in build if kw == "RUN")
    c.check("-DOUTBOX_TESTS=OFF" in build_cmd, "builds without the test suite")
    c.check(re.search(r"CMAKE_BUILD_TYPE=Release\b", build_cmd), "Release build")
    off = set(re.findall(r"-D(\w+)=(?:OFF|NO|FALSE|0)\b", build_cmd))
    dirs = {d for d in read_dirs(cml, off) if os.path.isdir(os.path.join(a.source, d))
            and not d.startswith((".", "build"))}
    c.check("src" in dirs, f"found the source directories CMakeLists.txt reads: {sorted(dirs)}")
    c.check("." in copied or "CMakeLists.txt" in copied, "build stage copies CMakeLists.txt")
    for d in sorted(dirs):
        c.check("." in copied or d in copied, f"build stage copies {d}/ (CMakeLists.txt reads it)")
    c.finish()


if __name__ == "__main__":
    main()
