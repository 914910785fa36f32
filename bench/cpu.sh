#!/usr/bin/env bash
# The machine a benchmark ran on, for its figures: CPU model (with family and model numbers, as
# virtual machines often hide the name), cores, and the instructions that change the figures
# (bf16 and int8 dot products, AMX). Given the /proc/stat line `bench/cpu.sh --mark` printed
# when the run began, it adds the share of CPU time the hypervisor gave to other guests during
# the run (steal): figures taken while it is more than a few percent are not the CPU's.
#   mark=$(bench/cpu.sh --mark); ...; bench/cpu.sh "$mark"
if [ "${1:-}" = --mark ]; then
  head -1 /proc/stat
  exit
fi
field() { grep -m1 -E "^$1\s*:" /proc/cpuinfo | cut -d: -f2- | xargs; }
flags=$(field flags | tr ' ' '\n' | grep -xE 'avx512_bf16|avx512_vnni|amx_bf16|amx_int8' | xargs)
line="$(field 'model name' || true) (family $(field 'cpu family'), model $(field 'model')), $(nproc) cores"
line="$line, ${flags:-no avx512_bf16/vnni or amx}"
if [ -n "${1:-}" ]; then
  # user nice system idle iowait irq softirq steal, in clock ticks since boot.
  read -r _ a1 a2 a3 a4 a5 a6 a7 a8 _ <<<"$1"
  read -r _ b1 b2 b3 b4 b5 b6 b7 b8 _ </proc/stat
  total=$(((b1 + b2 + b3 + b4 + b5 + b6 + b7 + b8) - (a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8)))
  line="$line, steal $(awk -v s=$((b8 - a8)) -v t="$total" 'BEGIN { printf "%.1f", t ? 100 * s / t : 0 }')% during the run"
fi
echo "$line"
