# Sourced by the shell tests (tests/*/*_check.sh): strict mode, a scratch folder $tmp removed at
# exit, fail MESSAGE (names the test, exits 1), and mpirun_np NP PROGRAM ARGS... as every test
# runs mpirun (as root, oversubscribed on 2 cores).
set -euo pipefail
check_name=$(basename "$0" .sh)
tmp=$(mktemp -d "/tmp/cdl_${check_name}.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "$check_name: $*" >&2
  exit 1
}
mpirun_np() {
  local np=$1
  shift
  mpirun --oversubscribe --allow-run-as-root --mca btl_vader_single_copy_mechanism none -np "$np" "$@"
}
