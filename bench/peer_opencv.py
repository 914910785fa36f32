#!/usr/bin/env python3
"""Time OpenCV's own face pipeline on the images and models visage uses.

OpenCV 5's FaceDetectorYN + FaceRecognizerSF run the same fp32 ONNX files (models/) on
the bundled 250x250 LFW images (tests/fixtures/lfw), one thread: decode, detect, pick the
central face, align, embed. Prints the median per image; with --ours BACKEND=NS (visage's
median for the same work, from criterion) also prints visage's time over OpenCV's.

usage: bench/peer.sh  (sets up the tools, runs both sides, prints the ratio)
"""
import argparse
import pathlib
import statistics
import time

import cv2
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent


def central(faces, width, height):
    centre = np.array([width / 2, height / 2])
    return min(faces, key=lambda f: np.linalg.norm(f[:2] + f[2:4] / 2 - centre))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--ours", action="append", default=[], metavar="BACKEND=NS",
                        help="visage's median ns per image with BACKEND (criterion)")
    args = parser.parse_args()

    cv2.setNumThreads(1)
    models = ROOT / "models"
    detector = cv2.FaceDetectorYN.create(str(models / "yunet_2023mar_fp32.onnx"), "", (320, 320), 0.6, 0.3)
    recognizer = cv2.FaceRecognizerSF.create(str(models / "sface_2021dec_fp32.onnx"), "")
    images = [p.read_bytes() for p in sorted((ROOT / "tests/fixtures/lfw").glob("*/*.jpg"))]

    def embed(data):
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        height, width = image.shape[:2]
        detector.setInputSize((width, height))
        _, faces = detector.detect(image)
        face = central(faces, width, height)
        return recognizer.feature(recognizer.alignCrop(image, face))

    for data in images:  # warm-up
        embed(data)
    times = []
    for _ in range(args.repeat):
        for data in images:
            start = time.perf_counter_ns()
            embed(data)
            times.append(time.perf_counter_ns() - start)
    theirs = statistics.median(times)
    print(f"opencv {cv2.__version__}: decode+detect+align+embed median {theirs / 1e6:.2f} ms per image "
          f"({len(images)} images x {args.repeat})")
    for entry in args.ours:
        backend, ns = entry.split("=")
        ours = float(ns)
        print(f"visage ({backend}): median {ours / 1e6:.2f} ms per image; "
              f"visage/opencv time ratio {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
