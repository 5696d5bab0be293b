#!/usr/bin/env python3
"""Groups a `perf report` symbol listing into kernel families: matmul vs the rest.

    perf report -i perf.data --no-children --sort symbol --stdio -F overhead,sym \
        | python3 scripts/perf_buckets.py

Reads lines "  12.34%  [.] symbol" and prints one line per family with its share of the
sampled CPU time (both cores together: a one-threaded op that blocks the other core counts
once, a two-threaded one twice). The families are matched on symbol names of burn-flex, gemm,
Arcane's own kernels (`arcane::kernels`), libm, libc and the kernel; the first match wins.
"""

import re
import sys

FAMILIES = [
    ("matmul (gemm)", r"gemm|microkernel|matmul|gemv|matvec"),
    ("arcane fused kernels", r"arcane::kernels|arcane::ops"),
    ("attention (flex)", r"attention|flash"),
    ("exp/tanh/pow (libm, scalar)", r"__expf|__expm1f|__tanhf|__powf|__logf|__erff|libm|exp|tanh"),
    ("layout copies", r"copy_contiguous|to_contiguous|memmove|memcpy|StridedIter|cat|permute|transpose"),
    ("softmax/norm (flex)", r"softmax|layer_norm|log_softmax"),
    ("reductions (flex)", r"reduce|sum_|mean|max_|argmax"),
    ("elementwise (flex)", r"binary|unary|scalar_op|macerator|broadcast|mask|powf|clamp|compare"),
    ("gather/scatter/select", r"gather|scatter|select|embedding|index"),
    ("optimizer (adam)", r"adam|optim"),
    ("memset/alloc/page faults", r"memset|malloc|_int_free|free|clear_page|page_fault|do_anonymous|mm_fault|cgroup|rmqueue|get_page|zap|unmap|mmap|alloc|\[k\]"),
    ("random init (rng)", r"rand|chacha|Distribution|random"),
    ("threads (rayon, scheduler)", r"rayon|crossbeam|futex|sched|spin|LocalKey"),
]


def main() -> None:
    totals: dict[str, float] = {name: 0.0 for name, _ in FAMILIES}
    totals["other"] = 0.0
    top: dict[str, list[tuple[float, str]]] = {k: [] for k in totals}
    line_re = re.compile(r"^\s*([0-9.]+)%\s+(\[[.k]\])\s+(.*)$")
    for line in sys.stdin:
        m = line_re.match(line)
        if not m:
            continue
        share, kind, sym = float(m.group(1)), m.group(2), m.group(3).strip()
        key = "other"
        for name, pattern in FAMILIES:
            if re.search(pattern, f"{kind} {sym}", re.IGNORECASE):
                key = name
                break
        totals[key] += share
        top[key].append((share, sym))
    for name, share in sorted(totals.items(), key=lambda kv: -kv[1]):
        if share < 0.05:
            continue
        leaders = ", ".join(f"{s[:60]} {p:.1f}" for p, s in sorted(top[name], reverse=True)[:3])
        print(f"{share:6.1f}%  {name:30s}  {leaders}")


if __name__ == "__main__":
    main()
