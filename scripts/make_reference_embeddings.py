#!/usr/bin/env python3
"""Independent reference outputs for the Rust pipeline's regression test.

JPEG decoders differ by a level or two per pixel (libjpeg-turbo here, zune-jpeg in visage),
which moves YuNet's landmarks by ~0.25 px and embeddings by up to 0.0015 in cosine. To
check every other stage exactly, the first LOSSLESS images of the shared reference are
written as PNG (tests/fixtures/lossless/) and run through an independent pipeline: OpenCV's
own FaceDetectorYN, the least-squares similarity fit visage uses, OpenCV's warpAffine, and
SFace in onnxruntime. Results go to tests/fixtures/lossless-reference.json.

usage: python scripts/make_reference_embeddings.py   (needs numpy, opencv-python, onnxruntime)
"""
import json
import pathlib

import cv2
import numpy as np
import onnxruntime as ort

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float64,
)


def least_squares_similarity(src, dst):
    ms, md = src.mean(0), dst.mean(0)
    xs, xd = src - ms, dst - md
    norm = (xs**2).sum()
    a = (xs * xd).sum() / norm
    b = (xs[:, 0] * xd[:, 1] - xs[:, 1] * xd[:, 0]).sum() / norm
    rotation = np.array([[a, -b], [b, a]])
    return np.hstack([rotation, (md - rotation @ ms)[:, None]])


LOSSLESS = 8


def central_face(faces, width, height):
    centre = np.array([width / 2, height / 2])
    return min(faces, key=lambda f: np.linalg.norm(f[:2] + f[2:4] / 2 - centre))


def main():
    reference = json.loads((ROOT / "tests/fixtures/lfw-reference.json").read_text())
    session = ort.InferenceSession(str(ROOT / "models/sface_2021dec_fp32.onnx"))
    # Optional recognizer (scripts/fetch-models.sh --mobilefacenet): batch fixed at 2.
    mobilefacenet = ort.InferenceSession(str(ROOT / "models/mobilefacenet_sirius_fp32.onnx"))
    detector = cv2.FaceDetectorYN.create(str(ROOT / "models/yunet_2023mar_fp32.onnx"), "", (320, 320), 0.6, 0.3)
    (ROOT / "tests/fixtures/lossless").mkdir(exist_ok=True)
    out = []
    for entry in reference["images"][:LOSSLESS]:
        jpeg = cv2.imread(str(ROOT / "tests/fixtures/lfw" / entry["image"]))
        name = pathlib.Path(entry["image"]).with_suffix(".png").name
        cv2.imwrite(str(ROOT / "tests/fixtures/lossless" / name), jpeg)
        image = cv2.imread(str(ROOT / "tests/fixtures/lossless" / name))
        height, width = image.shape[:2]
        detector.setInputSize((width, height))
        _, faces = detector.detect(image)
        face = central_face(faces, width, height)
        landmarks = face[4:14].reshape(5, 2).astype(np.float64)
        matrix = least_squares_similarity(landmarks, TEMPLATE)
        aligned = cv2.warpAffine(image, matrix, (112, 112), flags=cv2.INTER_LINEAR, borderValue=0)
        blob = cv2.cvtColor(aligned, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None].astype(np.float32)
        vector = session.run(None, {"data": blob})[0][0]
        vector /= np.linalg.norm(vector)
        normalised = (blob - 127.5) / 128.0
        mfn = mobilefacenet.run(None, {"input": np.concatenate([normalised, normalised])})[0][0]
        mfn /= np.linalg.norm(mfn)
        out.append(
            {
                "image": name,
                "detection": {
                    "box_xywh": [round(float(v), 3) for v in face[:4]],
                    "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in landmarks],
                    "score": round(float(face[14]), 4),
                    "faces_at_0.6": len(faces),
                },
                "sface_embedding": [round(float(v), 6) for v in vector],
                "mobilefacenet_embedding": [round(float(v), 6) for v in mfn],
            }
        )
    about = (
        f"OpenCV {cv2.__version__} FaceDetectorYN (score 0.6, NMS 0.3, central face), least-squares "
        "similarity alignment with warpAffine (bilinear, black border), SFace and MobileFaceNet in onnxruntime "
        f"{ort.__version__}, on PNG copies of the JPEG fixtures; made by scripts/make_reference_embeddings.py"
    )
    path = ROOT / "tests/fixtures/lossless-reference.json"
    path.write_text(json.dumps({"about": about, "images": out}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
