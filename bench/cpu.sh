#!/usr/bin/env bash
# The machine a benchmark ran on, for its figures: CPU model, cores, and the instructions that
# change them (bf16 and int8 dot products, AMX).
model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)
flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'avx512_bf16|avx512_vnni|amx_bf16|amx_int8' | xargs)
echo "${model:-unknown CPU}, $(nproc) cores, ${flags:-no avx512_bf16/vnni or amx}"
