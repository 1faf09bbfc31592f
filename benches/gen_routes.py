#!/usr/bin/env python3
"""Writes a routes.toml with N generated routes, for measuring config compilation.

    benches/gen_routes.py N [--shape plain|headers] [--listen ADDR] [--admin ADDR]
                           [--upstream ADDR] > routes.toml

`plain`: N routes with distinct literal paths (`/r{i}/**`), one service.
`headers`: N routes on the same path (`/shared/**`), told apart only by an exact value of
the header `x-tenant` (`t{i}`); a request with `x-tenant: t{N-1}` reaches the last one.
Measure with `/usr/bin/time -v target/release/ficus check routes.toml` (maximum resident
set size) and the running gateway's RSS (docs/performance.md, "Config compilation").
"""
import argparse
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("n", type=int)
    p.add_argument("--shape", choices=["plain", "headers"], default="plain")
    p.add_argument("--listen", default="127.0.0.1:8080")
    p.add_argument("--admin", default="127.0.0.1:9901")
    p.add_argument("--upstream", default="127.0.0.1:8081")
    p.add_argument("--max-routes", type=int, default=None)
    a = p.parse_args()
    out = sys.stdout
    out.write("[gateway]\n")
    out.write(f'listen = ["{a.listen}"]\n')
    out.write(f'admin = "{a.admin}"\n')
    if a.max_routes is not None:
        out.write(f"max_routes = {a.max_routes}\n")
    out.write(f'\n[services.app]\ninstances = ["{a.upstream}"]\n\n')
    for i in range(a.n):
        if a.shape == "plain":
            out.write(
                f'[[routes]]\nname = "r{i}"\nmatch = {{ path = "/r{i}/**" }}\nservice = "app"\n\n'
            )
        else:
            out.write(
                f'[[routes]]\nname = "t{i}"\n'
                f'match = {{ path = "/shared/**", headers = {{ x-tenant = "t{i}" }} }}\n'
                f'service = "app"\n\n'
            )


if __name__ == "__main__":
    main()
