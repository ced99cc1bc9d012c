# Sourced by the shell tests (tests/*/*_check.sh): strict mode, a scratch folder $tmp removed at
# exit, fail MESSAGE (names the test, exits 1), skip MESSAGE (exits 77, CTest's skip), log
# MESSAGE, and mpirun_np NP PROGRAM ARGS... as every test runs mpirun (as root, oversubscribed on
# 2 cores) with the flags of mpirun.flags, which CTest's mpirun entries read too ($mpirun_flags).
set -euo pipefail
check_name=$(basename "$0" .sh)
tmp=$(mktemp -d "/tmp/cdl_${check_name}.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "$check_name: $*" >&2
  exit 1
}
skip() {
  echo "$check_name: SKIP: $*" >&2
  exit 77
}
log() { echo "$check_name: $*"; }
read -r -a mpirun_flags <"$(dirname "${BASH_SOURCE[0]}")/mpirun.flags"
mpirun_np() {
  local np=$1
  shift
  mpirun "${mpirun_flags[@]}" -np "$np" "$@"
}
