#!/usr/bin/env python3
# harness.py -- runs one integration test module and prints TAP for automake's
# tap-driver: `python3 harness.py tests/integration/test_foo.py`.
# Every `test_*` function runs in definition order, each with a fresh tmp dir
# and a lib.Test context (passed as its argument if it takes one); whatever
# the outcome, every process it started is killed afterwards. A test that
# runs past LLMUX_TEST_TIMEOUT seconds (default 60) fails. A module-level
# skip_reason() returning a string skips the whole file; lib.Skip skips one
# test. Exit status is 0: results are in the TAP lines.
import importlib.util
import inspect
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import lib  # noqa: E402


class TestTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise TestTimeout("test timed out")


def load(path):
    path = os.path.abspath(path)
    sys.path.insert(0, os.path.dirname(path))
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tests_of(mod):
    fns = [(n, f) for n, f in vars(mod).items()
           if n.startswith("test_") and inspect.isfunction(f) and f.__module__ == mod.__name__]
    fns.sort(key=lambda nf: nf[1].__code__.co_firstlineno)
    only = os.environ.get("LLMUX_TEST_ONLY")
    if only:
        fns = [(n, f) for n, f in fns if any(o in n for o in only.split(","))]
    return fns


def comment(lines):
    for line in lines:
        for sub in str(line).splitlines() or [""]:
            print("# " + sub)


def main(argv):
    if len(argv) != 2:
        print("usage: harness.py test_file.py", file=sys.stderr)
        return 2
    try:
        mod = load(argv[1])
    except Exception:
        print("1..1")
        print("not ok 1 - load %s" % argv[1])
        comment(traceback.format_exc().splitlines())
        print("# 0 passed, 1 failed")
        return 0
    skip = getattr(mod, "skip_reason", None)
    reason = skip() if skip else None
    if reason:
        print("1..0 # SKIP %s" % reason)
        return 0
    tests = tests_of(mod)
    limit = int(os.environ.get("LLMUX_TEST_TIMEOUT", "60"))
    print("1..%d" % len(tests))
    sys.stdout.flush()
    passed = failed = skipped = 0
    signal.signal(signal.SIGALRM, _alarm)
    for i, (name, fn) in enumerate(tests, 1):
        tmp = tempfile.mkdtemp(prefix="llmux-it-")
        t = lib.Test(name, tmp)
        t0 = time.monotonic()
        status, info = "ok", []
        signal.alarm(limit)
        try:
            if len(inspect.signature(fn).parameters) >= 1:
                fn(t)
            else:
                fn()
        except lib.Skip as e:
            status = "skip"
            info = [str(e)]
        except BaseException as e:  # noqa: B902 -- report, go on
            if isinstance(e, KeyboardInterrupt):
                raise
            status = "fail"
            info = traceback.format_exc().splitlines()
            if isinstance(e, TestTimeout):
                info.append("test exceeded %ds" % limit)
        finally:
            signal.alarm(0)
        try:
            diag = t.diagnostics() if status == "fail" else []
            t.cleanup()
        except Exception:
            diag = traceback.format_exc().splitlines()
        dt = time.monotonic() - t0
        if status == "ok":
            passed += 1
            print("ok %d - %s (%.2fs)" % (i, name, dt))
        elif status == "skip":
            skipped += 1
            print("ok %d - %s # SKIP %s" % (i, name, info[0]))
        else:
            failed += 1
            print("not ok %d - %s (%.2fs)" % (i, name, dt))
            comment(info)
            comment(diag)
        if status != "fail" or not os.environ.get("LLMUX_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("# kept %s" % tmp)
        sys.stdout.flush()
    print("# %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
