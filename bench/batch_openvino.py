#!/usr/bin/env python3
"""Does embedding in batches pay? Time per face of SFace and MiniFASNet V2 on OpenVINO's CPU
plugin at batch sizes 1, 4, 8 and 16, f32 and bf16, with the settings visage uses (one thread,
one stream, no pinning), on real aligned inputs from the bundled LFW images.

visage runs one inference per face on each worker thread; a batch only pays if the runtime
does the same work for N faces in much less than N times the time of one.

usage: bench/batch.sh  (sets up the tools, prints one JSON line per model, precision and batch)
"""
import json
import pathlib
import statistics
import time

import numpy as np
import openvino as ov

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = {
    "sface": ("sface_2021dec_fp32.onnx", (3, 112, 112)),
    "minifasnet_v2": ("minifasnet_v2_2.7_80x80.onnx", (3, 80, 80)),
}
BATCHES = (1, 4, 8, 16)
FACES = 64
REPEAT = 5


def inputs(shape):
    """Face-like inputs: the bundled images, resized to the model's input (speed does not
    depend on the pixels, but real ones keep denormals and zeros as they are in service)."""
    import cv2

    images = sorted((ROOT / "tests/fixtures/lfw").rglob("*.jpg"))
    out = []
    for path in images:
        image = cv2.imread(str(path))[60:190, 60:190]
        out.append(cv2.resize(image, shape[1:][::-1]).transpose(2, 0, 1).astype(np.float32))
    while len(out) < FACES:
        out.extend(out)
    return np.stack(out[:FACES])


def main():
    core = ov.Core()
    for name, (file, shape) in MODELS.items():
        faces = inputs(shape)
        for precision in ("f32", "bf16"):
            per_face = {}
            for batch in BATCHES:
                model = core.read_model(ROOT / "models" / file)
                model.reshape({model.inputs[0]: ov.PartialShape([batch, *shape])})
                compiled = core.compile_model(model, "CPU", {
                    "INFERENCE_NUM_THREADS": 1,
                    "NUM_STREAMS": 1,
                    "ENABLE_CPU_PINNING": False,
                    "INFERENCE_PRECISION_HINT": precision,
                })
                request = compiled.create_infer_request()
                request.infer({0: faces[:batch]})  # warm up
                runs = []
                for _ in range(REPEAT):
                    started = time.perf_counter()
                    for first in range(0, FACES, batch):
                        request.infer({0: faces[first:first + batch]})
                    runs.append((time.perf_counter() - started) / FACES * 1000)
                per_face[batch] = statistics.median(runs)
            for batch, ms in per_face.items():
                print(json.dumps({
                    "model": name, "precision": precision, "batch": batch,
                    "ms_per_face": round(ms, 3), "vs_batch_1": round(ms / per_face[1], 3),
                }))


if __name__ == "__main__":
    main()
