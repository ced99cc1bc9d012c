#!/usr/bin/env bash
# The installed CMake package, as another project uses it: custom_model_check.sh BUILD_DIR SOURCE_DIR
# Installs BUILD_DIR into a scratch prefix, builds examples/custom_model against it with
# find_package(cdl), runs it on 2 MPI ranks (it checks that the replicas end bit-identical and
# that the model learned), checks that a bad codec spec is one clear error, and that the
# installed cdl-launch starts the installed cdl-train.
source "$(dirname "$0")/../support/check.sh"
build=$1 src=$2
step() { "$@" >"$tmp/step.log" 2>&1 || { cat "$tmp/step.log"; fail "failed: $*"; }; }
mpi=(mpirun_np 2)

step cmake --install "$build" --prefix "$tmp/prefix"
for f in lib/cmake/cdl/cdlConfig.cmake include/cdl/comm/reduce/reducer.h bin/cdl-train bin/cdl-launch; do
  [ -e "$tmp/prefix/$f" ] || fail "the install has no $f"
done
step cmake -S "$src/examples/custom_model" -B "$tmp/example" -DCMAKE_PREFIX_PATH="$tmp/prefix"
step cmake --build "$tmp/example" -j 2

"${mpi[@]}" "$tmp/example/custom_model" --steps 40 >"$tmp/run.log" 2>&1 || { cat "$tmp/run.log"; fail "custom_model failed"; }
cat "$tmp/run.log"
grep -q "2 ranks, 40 steps, codec qsgd:bits=4,entropy=rans: .*replicas bit-identical" "$tmp/run.log" ||
  fail "custom_model did not report bit-identical replicas"

if "${mpi[@]}" "$tmp/example/custom_model" --codec qsgd:bits=40 >"$tmp/bad.log" 2>&1; then
  fail "a bad codec spec was accepted"
fi
grep -q "qsgd:bits=40" "$tmp/bad.log" || { cat "$tmp/bad.log"; fail "the bad spec's error does not name it"; }

"$tmp/prefix/bin/cdl-launch" --dry-run -np 2 "$src/configs/fmnist_mlp.yaml" >"$tmp/dry.log" 2>&1 ||
  { cat "$tmp/dry.log"; fail "the installed cdl-launch --dry-run failed"; }
grep -q "$tmp/prefix/bin/cdl-train" "$tmp/dry.log" || { cat "$tmp/dry.log"; fail "the installed cdl-launch does not start the installed cdl-train"; }
echo "custom_model_check: ok"
