#!/usr/bin/env python3
"""CPU time per thread and per category in a time window of a `perf record` profile.

Used for BENCHMARKS.md ("where the time goes"). Hardware counters are not available on the
benchmark VM, so profiles sample the software `cpu-clock` event; `-k mono` makes perf's
timestamps System/nanoTime seconds, and the `:backup-stages` measurement prints the phase
boundaries (`:stamps [open push-end finish-end]`):

  CP=$(lein with-profile +debian,+bench classpath)
  perf record -k mono -F 499 -e cpu-clock -o /tmp/perf.data -- \
    java -Xmx192m -XX:+UnlockDiagnosticVMOptions -XX:+DumpPerfMapAtExit \
      -Ddatacamp.native.path=$PWD/target/native-resources/native/linux-x86_64/libdatacamp.so \
      -cp "$CP" clojure.main -m datacamp.bench.run \
      '{:measure :backup-stages :repeat 3 :ds {:kind :synthetic :datoms 1000000} :dir "/tmp/bp"}'
  clj/bench/profile/perf_by_thread.py /tmp/perf.data <push-start> <push-end> 499

(-XX:+DumpPerfMapAtExit writes /tmp/perf-PID.map so perf can name JIT-compiled methods.)
"""
import collections
import re
import subprocess
import sys


def category(sym, dso):
    if 'datacamp.jni' in sym:
        return 'JVM: DatomWalker/DatomBatch/ValueDecoder'
    if 'MaterializedSource' in sym:
        return 'source walk (bench: materialised)'
    if 'datacamp.bench' in sym or 'bench.gen' in sym or 'gen$' in sym:
        return 'generator (bench)'
    if 'clojure.' in sym:
        return 'clojure seq/collections (mostly the generator)'
    if 'java.util' in sym or 'java.lang' in sym:
        return 'java.* (mostly the generator)'
    if 'libdatacamp' in dso:
        if 'ZSTD' in sym or 'HUF_' in sym or 'FSE_' in sym or 'XXH' in sym:
            return 'rust: zstd (C)'
        for k in ['zlib_rs', 'sha2', 'fressian', 'wire', 'feed', 'record', 'tagged', 'order',
                  'sort', 'chunk', 'restore', 'alloc', 'hash', 'str::', 'drop_in_place', 'clone',
                  'memcpy']:
            if k in sym:
                return 'rust: ' + k
        return 'rust: other (' + sym[:60] + ')'
    if 'libc' in dso:
        return 'libc (malloc/free/memmove)'
    if 'kernel' in dso:
        return 'kernel'
    if 'libjvm' in dso:
        return 'JVM runtime (GC, JIT compiler, JNI)'
    if 'libz' in dso:
        return 'JDK zlib'
    if 'JIT' in dso or 'perf-' in dso:
        return 'JIT other: ' + sym[:50]
    return dso


def main():
    data, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    hz = float(sys.argv[4]) if len(sys.argv) > 4 else 499.0
    out = subprocess.run(["perf", "script", "-i", data, "-F", "comm,tid,time,ip,sym,dso",
                          "--time", f"{t0},{t1}"], capture_output=True, text=True).stdout
    line_re = re.compile(r"\s*(.+?)\s+(\d+)\s+([\d.]+):\s+[0-9a-f]+\s+(.*)\s+\((.*)\)\s*$")
    threads = collections.defaultdict(collections.Counter)
    for line in out.splitlines():
        m = line_re.match(line)
        if m:
            comm, tid, _t, sym, dso = m.groups()
            threads[(comm.strip(), tid)][category(sym.strip(), dso)] += 1
    print(f"window {t1 - t0:.2f} s")
    for (comm, tid), c in sorted(threads.items(), key=lambda kv: -sum(kv[1].values())):
        total = sum(c.values())
        if total < 5:
            continue
        print(f"thread {comm} {tid}: {total / hz:.2f} s CPU")
        for k, v in c.most_common(12):
            print(f"    {v / hz:6.2f} s  {100 * v / total:5.1f}%  {k}")


if __name__ == "__main__":
    main()
