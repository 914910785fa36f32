#!/usr/bin/env python3
"""Rewrite an ONNX file in a canonical order so that its bytes (and sha256) are stable.

Some converters emit initializers and value_info in set-iteration order, which varies from
run to run; the graph itself (node order, values) is the same. Sorting both by name gives
identical bytes for identical graphs.

usage: canonical_onnx.py IN.onnx OUT.onnx
"""
import sys

import onnx


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    model = onnx.load(sys.argv[1])
    graph = model.graph
    for field in (graph.initializer, graph.value_info):
        items = sorted(field, key=lambda item: item.name)
        del field[:]
        field.extend(items)
    onnx.checker.check_model(model)
    onnx.save(model, sys.argv[2])


if __name__ == "__main__":
    main()
