"""What one system call costs on this machine, alone and from several threads at once: the file-system
calls an import makes (stat, open + read + close of a small file) and a directory listing.

    python bench/syscall_probe.py [--folder DIR] [--n 20000]

Prints µs per call for 1 thread and for 4 and 8 threads together (calls per second over all threads, as µs
per call): if the threads' figure is ~1/N of one thread's, the calls overlap (they release the GIL and the
kernel or sandbox runs them in parallel); if it is the same, they are serialised.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time


def _stat(paths, n):
    for i in range(n):
        os.stat(paths[i % len(paths)])


def _read(paths, n):
    for i in range(n):
        with open(paths[i % len(paths)], "rb") as fh:
            fh.read()


def _listdir(dirs, n):
    for i in range(n):
        os.listdir(dirs[i % len(dirs)])


def _timed(fn, args, n, threads):
    per = n // threads
    workers = [threading.Thread(target=fn, args=(args, per)) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return (time.perf_counter() - start) / (per * threads) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", default=os.path.dirname(os.__file__))
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = []
        for i in range(200):
            path = os.path.join(tmp, f"f{i}.pyc")
            with open(path, "wb") as fh:
                fh.write(os.urandom(8192))
            small.append(path)
        pycache = os.path.join(args.folder, "__pycache__")
        real = [os.path.join(pycache, n) for n in sorted(os.listdir(pycache))][:500] if os.path.isdir(pycache) else small
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, folder {args.folder}")
        for label, fn, paths, n in (("stat", _stat, real, args.n), ("open+read+close 8 KiB (tmp)", _read, small, args.n // 4),
                                    ("open+read+close (real .pyc)", _read, real, args.n // 4),
                                    ("listdir", _listdir, [args.folder, tmp], args.n // 20)):
            cells = [f"{threads} thr {_timed(fn, paths, n, threads):7.1f} µs" for threads in (1, 4, 8)]
            print(f"  {label:<30} " + "   ".join(cells), flush=True)


if __name__ == "__main__":
    main()
