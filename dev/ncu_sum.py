"""Kernel times of one profiled region, summed by kernel and grid, from ncu's CSV.

Run on the GPU machine, e.g. over one 2048-token prefill (dev/engine_bench wraps it in cudaProfilerStart / Stop):
  ncu --profile-from-start off --clock-control none --metrics gpu__time_duration.sum --csv \\
      ./engine_bench 0 prefill:2048 > prefill.csv
  python3 dev/ncu_sum.py prefill.csv [--order]
Prints µs in total, launches and µs per launch for each (kernel, grid), largest first, then the sum over all
launches; --order lists every launch in order instead (which kernel of a layer is which).
"""
import collections
import csv
import io
import re
import sys


def launches(path):
    lines = open(path).read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('"ID"'))  # ncu prints its log lines first
    for row in csv.DictReader(io.StringIO("\n".join(lines[start:]))):
        if row["Metric Name"] != "gpu__time_duration.sum":
            continue
        us = float(row["Metric Value"].replace(",", ""))
        us *= {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}[row["Metric Unit"]]
        name = re.sub(r"^void ", "", re.sub(r"\(.*", "", row["Kernel Name"]))
        yield name, row["Grid Size"], us


def main():
    rows = list(launches(sys.argv[1]))
    if "--order" in sys.argv:
        for name, grid, us in rows:
            print(f"{us:9.1f} us  {name}  grid{grid}")
        return
    by_kernel = collections.defaultdict(lambda: [0, 0.0])
    for name, grid, us in rows:
        by_kernel[(name, grid)][0] += 1
        by_kernel[(name, grid)][1] += us
    for (name, grid), (count, us) in sorted(by_kernel.items(), key=lambda kv: -kv[1][1]):
        print(f"{us:9.1f} us {count:4d}x {us / count:8.2f}  {name}  grid{grid}")
    print(f"total {sum(us for _, _, us in rows):.1f} us over {len(rows)} launches")


if __name__ == "__main__":
    main()
