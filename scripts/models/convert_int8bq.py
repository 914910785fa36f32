#!/usr/bin/env python3
"""Fold int8 block-quantized ONNX weights into float32 initializers.

The OpenCV-zoo int8bq files use DequantizeLinear with `block_size` (opset 21), which tract
and current onnxruntime refuse. Weights are constant, so dequantizing them once here gives an
ordinary float32 model with the same arithmetic. Optionally makes chosen input dims symbolic
(YuNet accepts any H/W that is a multiple of 32).

usage: convert_int8bq.py IN.onnx OUT.onnx [--dynamic-hw]
"""
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def dequantize(q, scale, zero_point, axis, block_size):
    q = q.astype(np.float32)
    zero_point = zero_point.astype(np.float32) if zero_point is not None else np.zeros_like(scale)
    if scale.size == 1:
        return (q - zero_point.reshape(())) * scale.reshape(())
    axis = axis % q.ndim
    if block_size:
        # Each block of `block_size` elements along `axis` shares one scale / zero point.
        scale = np.repeat(scale, block_size, axis=axis)
        zero_point = np.repeat(zero_point, block_size, axis=axis)
        index = [slice(None)] * q.ndim
        index[axis] = slice(0, q.shape[axis])
        scale, zero_point = scale[tuple(index)], zero_point[tuple(index)]
    else:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    return (q - zero_point) * scale


def fold(model):
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    values = {}
    keep = []
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "DequantizeLinear" and all(i in inits or i == "" for i in node.input):
            q = numpy_helper.to_array(inits[node.input[0]])
            scale = numpy_helper.to_array(inits[node.input[1]])
            zp = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] else None
            values[node.output[0]] = dequantize(q, scale, zp, attrs.get("axis", 1), attrs.get("block_size", 0))
        elif node.op_type == "Reshape" and node.input[0] in values and node.input[1] in inits:
            shape = numpy_helper.to_array(inits[node.input[1]])
            values[node.output[0]] = values[node.input[0]].reshape(shape)
        else:
            keep.append(node)
    used = {i for n in keep for i in n.input} | {o.name for o in graph.output}
    new_inits = [t for t in graph.initializer if t.name in used]
    new_inits += [numpy_helper.from_array(v.astype(np.float32), name) for name, v in values.items() if name in used]
    del graph.node[:]
    graph.node.extend(keep)
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    # Old exporters list every weight as a graph input too; keep only the real, used inputs so
    # that runtimes treat the weights as constants.
    names = {t.name for t in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in names and i.name in used]
    del graph.input[:]
    graph.input.extend(real_inputs)
    remaining = [n.op_type for n in keep if n.op_type in ("DequantizeLinear", "QuantizeLinear")]
    if remaining:
        raise SystemExit(f"unfolded quantisation nodes remain: {remaining}")


def make_hw_dynamic(model):
    # Stored value_info pins every intermediate to 640x640; drop it and free H/W.
    del model.graph.value_info[:]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    for out in model.graph.output:
        for i, dim in enumerate(out.type.tensor_type.shape.dim):
            dim.dim_param = f"{out.name}_d{i}"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        raise SystemExit(__doc__)
    model = onnx.load(args[0])
    fold(model)
    if "--dynamic-hw" in sys.argv:
        make_hw_dynamic(model)
    else:
        del model.graph.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, args[1])


if __name__ == "__main__":
    main()
