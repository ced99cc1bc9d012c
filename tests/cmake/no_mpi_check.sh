#!/usr/bin/env bash
# A build without MPI (CDL_WITH_MPI=OFF, as on GPU machines that have none): no_mpi_check.sh
# SOURCE_DIR. It configures, says so in its summary, defines no cdl-launch and no MPI tests, and
# builds the transport without MPI: its library holds no MPI symbol, and the thread-rank
# communicator keeps the communicator contract (local_communicator_test).
source "$(dirname "$0")/../support/check.sh"
src=$1

cmake -S "$src" -B "$tmp/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCDL_WITH_MPI=OFF \
  >"$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log"; fail "configure without MPI failed"; }
grep -q "MPI OFF" "$tmp/configure.log" || { cat "$tmp/configure.log"; fail "the summary does not say MPI OFF"; }
targets=$(ninja -C "$tmp/build" -t targets all)
for t in cdl-launch mpi_collectives_test tcp_channel_test; do
  grep -q "^$t:" <<<"$targets" && fail "$t is defined without MPI"
done
for t in cdl-train cdl-bench cdl-model; do
  grep -q "^$t:" <<<"$targets" || fail "$t is not defined without MPI"
done
ninja -C "$tmp/build" -j 2 cdl_transport local_communicator_test >"$tmp/build.log" 2>&1 ||
  { tail -n 40 "$tmp/build.log"; fail "the transport without MPI did not build"; }
lib=$(find "$tmp/build" -name libcdl_transport.a)
if nm -C "$lib" | grep " U MPI_\| U ompi_" >/dev/null; then
  fail "the transport built without MPI still calls MPI"
fi
"$tmp/build/bin/local_communicator_test" >"$tmp/test.log" 2>&1 ||
  { tail -n 40 "$tmp/test.log"; fail "local_communicator_test failed without MPI"; }
echo "no_mpi_check: ok"
