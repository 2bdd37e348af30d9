"""Baton's x86 ISA paths: which this CPU runs, how to force Baton onto one, and llama.cpp's build for each.

Baton's kernels pick the best path the CPU has; BATON_ISA=scalar|avx2|avx512 caps them, so any machine can run
its lower paths. build-llamacpp.sh builds llama.cpp once per path, for comparisons on the same path.

llama-cpp-python loads its shared library once, at import, from LLAMA_CPP_LIB_PATH; so a script picks its build by
re-executing itself with that variable set (`use`) before it imports llama_cpp, and a script that compares builds
runs each in a child process (`environment`).

ISA names are Baton's (BATON_ISA): scalar, avx2, avx512. OpenBLAS, which Baton's prefill uses for sgemm, picks
its kernels by CPU, so a forced lower path also forces the OpenBLAS core type of a machine that has only that
path: Zen for avx2 (what OpenBLAS 0.3.21 picks on the AVX2-only AMD EPYC machines; it runs Haswell's sgemm
kernel) and Nehalem for scalar (SSE4.2, no AVX: the newest x86 kind without AVX2 that OpenBLAS names). On the
native path OpenBLAS chooses for itself.
"""
import functools
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baton_procs import find_baton  # noqa: E402

ISAS = ("scalar", "avx2", "avx512")
OPENBLAS_CORETYPE = {"scalar": "Nehalem", "avx2": "Zen"}
ROOT = os.environ.get("BATON_LLAMACPP_DIR", os.path.expanduser("~/.cache/baton/llama.cpp"))
BUILD_SCRIPT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "build-llamacpp.sh"))


@functools.cache
def cpu_isa():
    """This CPU's best path, as Baton's own dispatch (Sources/CKernels/dispatch.c) decides it: `baton inspect --json`
    reports it as kernels.cpu_isa, so the scripts never keep a second copy of that test."""
    env = dict(os.environ)
    env.pop("BATON_ISA", None)
    result = subprocess.run([find_baton(), "inspect", "--json"], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"baton inspect --json failed: {result.stderr.strip()}")
    return json.loads(result.stdout)["kernels"]["cpu_isa"]


def cpu_supports(isa):
    """Whether this CPU runs Baton's x86 `isa` path: every path up to its best one (only scalar off x86)."""
    best = cpu_isa()
    if best not in ISAS:
        return isa == "scalar"
    return ISAS.index(isa) <= ISAS.index(best)


def best_isa():
    return cpu_isa()


def resolve(isa):
    """`auto` becomes this CPU's best path; anything else must be one this CPU runs."""
    if isa == "auto":
        return best_isa()
    if isa not in ISAS:
        sys.exit(f"unknown ISA '{isa}': expected one of {', '.join(ISAS)} or auto")
    if not cpu_supports(isa):
        sys.exit(f"this CPU cannot run the {isa} path (best here: {best_isa()})")
    return isa


def library_dir(isa):
    """The directory of llama.cpp's `isa` build, or exit with the command that makes it."""
    path = os.path.join(ROOT, isa)
    if not os.path.exists(os.path.join(path, "libllama.so")):
        sys.exit(f"llama.cpp's {isa} build is missing ({path}/libllama.so): run bash {BUILD_SCRIPT} --isa {isa}")
    return path


def build_info(isa):
    """llama.cpp's system-info line for the `isa` build, as build-llamacpp.sh recorded it."""
    with open(os.path.join(library_dir(isa), "BUILD-INFO")) as f:
        for line in f:
            if line.startswith("system info: "):
                return line[len("system info: "):].strip()
    return "unknown"


def baton_environment(isa, base=None):
    """Environment for Baton on `isa`: BATON_ISA, and on a forced lower path the OpenBLAS core type of such a CPU."""
    env = dict(os.environ if base is None else base)
    env["BATON_ISA"] = isa
    if isa != best_isa() and isa in OPENBLAS_CORETYPE:
        env["OPENBLAS_CORETYPE"] = OPENBLAS_CORETYPE[isa]
    return env


def environment(isa, base=None):
    """Environment for a process that imports llama_cpp with the `isa` build."""
    env = dict(os.environ if base is None else base)
    env["LLAMA_CPP_LIB_PATH"] = library_dir(isa)
    return env


def use(isa):
    """Make this process load llama.cpp's `isa` build: re-executes it with LLAMA_CPP_LIB_PATH set, unless it is.

    Call before importing llama_cpp."""
    wanted = library_dir(isa)
    if os.environ.get("LLAMA_CPP_LIB_PATH") != wanted:
        if "llama_cpp" in sys.modules:
            raise RuntimeError("llama_cpp was imported before isa_paths.use() chose its library")
        os.execve(sys.executable, [sys.executable] + sys.argv, environment(isa))


def main():
    """For shell scripts (Deploy/test.sh): `paths` prints the paths this CPU runs, best last; `env ISA` prints the
    environment assignments that force Baton onto ISA, one per line."""
    if len(sys.argv) == 2 and sys.argv[1] == "paths":
        print(" ".join(isa for isa in ISAS if cpu_supports(isa)))
    elif len(sys.argv) == 3 and sys.argv[1] == "env":
        isa = resolve(sys.argv[2])
        base = baton_environment(isa, base={})
        print("\n".join(f"{key}={value}" for key, value in base.items()))
    else:
        sys.exit("usage: isa_paths.py paths | env ISA")


if __name__ == "__main__":
    main()
