"""What the scripts that start `baton` processes share: finding the binary and a free port."""
import os
import shutil
import socket
import sys

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../.."))


def find_baton(explicit=None):
    """`explicit`, else $BATON_BIN, else this checkout's release build, a `baton` on PATH, or the debug build."""
    if explicit:
        return explicit
    if os.environ.get("BATON_BIN"):
        return os.environ["BATON_BIN"]
    for candidate in (os.path.join(REPO, ".build/release/baton"), shutil.which("baton"),
                      os.path.join(REPO, ".build/debug/baton")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    sys.exit("baton binary not found: build it (swift build -c release --product baton), set BATON_BIN or pass --baton PATH")


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
