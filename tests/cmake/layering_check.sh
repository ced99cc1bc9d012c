#!/usr/bin/env bash
# Includes go only downward (README, Architecture): layering_check.sh SOURCE_DIR
#   The layers, from the bottom up: kernels/base, kernels, comm/codec, comm/transport,
#   comm/reduce, core's rooms in the order of CDL_CORE_ROOMS (core/CMakeLists.txt), launcher,
#   bench. A file may include its own layer's headers and those of layers below it; every include
#   of a layer above is named with the file and line. The README states the same room order.
source "$(dirname "$0")/../support/check.sh"
src=$1

rooms=$(sed -n 's/^set(CDL_CORE_ROOMS \([a-z_ ]*\)$/\1/p' "$src/core/CMakeLists.txt")
[ -n "$rooms" ] || fail "no CDL_CORE_ROOMS line in core/CMakeLists.txt"
for room in $rooms; do
  [ -d "$src/core/$room" ] || fail "core/$room is named in CDL_CORE_ROOMS but does not exist"
done
for dir in "$src"/core/*/; do
  room=$(basename "$dir")
  [[ " $rooms " == *" $room "* ]] || fail "core/$room is not in CDL_CORE_ROOMS"
done
chain=$(echo "$rooms" | sed 's/ / → /g')
grep -qF "$chain" "$src/README.md" || fail "the README does not state the rooms' order: $chain"

layers="kernels/base kernels comm/codec comm/transport comm/reduce"
for room in $rooms; do layers+=" core/$room"; done
layers+=" launcher bench"

# The rank of the layer a path (a file, or an include's target) lies in; -1: none.
rank_of() {
  local path=$1 best=-1 i=0 layer
  for layer in $layers; do
    if [[ $path == "$layer"/* ]]; then best=$i; fi  # the deepest match (kernels/base over kernels)
    i=$((i + 1))
  done
  echo "$best"
}

cd "$src"
bad=0
checked=0
while IFS= read -r file; do
  own=$(rank_of "$file")
  [ "$own" -ge 0 ] || continue
  checked=$((checked + 1))
  while IFS=: read -r line target; do
    to=$(rank_of "$target")
    if [ "$to" -gt "$own" ]; then
      echo "$file:$line includes $target, a layer above its own" >&2
      bad=$((bad + 1))
    fi
  done < <(grep -n '^#include "' "$file" | sed 's/^\([0-9]*\):#include "\([^"]*\)".*/\1:\2/')
done < <(find kernels comm core launcher bench -type f \( -name '*.h' -o -name '*.cc' -o \
           -name '*.cu' -o -name '*.cuh' \) | sort)
[ "$checked" -gt 100 ] || fail "only $checked files were checked"
[ "$bad" -eq 0 ] || fail "$bad include(s) go upward"
echo "layering_check: $checked files, every include downward"
