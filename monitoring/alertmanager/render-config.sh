#!/bin/sh
# Fills an Alertmanager config template at container start: each ${NAME} becomes the content
# of the file named by NAME_FILE (a Docker secret) or else the value of NAME. A placeholder
# with neither stops the start, naming the variable, rather than routing alerts nowhere.
# POSIX sh and awk only: it runs in the busybox of the Alertmanager image.
#   render-config.sh TEMPLATE OUTPUT
set -eu
template=$1
out=$2
missing=
# Comment lines are left alone (they may name the placeholder syntax).
for name in $(grep -v '^[[:space:]]*#' "$template" | grep -o '\${[A-Z][A-Z0-9_]*}' | tr -d '${}' | sort -u); do
  # eval is safe here: names match [A-Z][A-Z0-9_]* (busybox may have no printenv).
  eval "file=\${${name}_FILE-}"
  if [ -n "$file" ]; then
    value=$(cat "$file")
  else
    eval "value=\${$name-}"
  fi
  if [ -z "$value" ]; then
    missing="$missing $name"
  else
    export "RENDER_$name=$value"
  fi
done
if [ -n "$missing" ]; then
  echo "render-config: set these (or NAME_FILE to a file holding the value):$missing" >&2
  exit 1
fi
umask 077
awk '/^[ \t]*#/ { print; next }
{
  line = $0; rendered = ""
  while (match(line, /\$\{[A-Z][A-Z0-9_]*\}/)) {
    value = ENVIRON["RENDER_" substr(line, RSTART + 2, RLENGTH - 3)]
    gsub(/\047/, "\047\047", value)  # a quote inside a single-quoted YAML string is doubled
    rendered = rendered substr(line, 1, RSTART - 1) value
    line = substr(line, RSTART + RLENGTH)
  }
  print rendered line
}' "$template" > "$out"
