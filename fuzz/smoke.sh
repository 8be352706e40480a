#!/usr/bin/env bash
# Fuzz smoke run (CI and `make fuzz-smoke`): builds every cargo-fuzz target on
# the stable toolchain (no sanitizer: `-s none` needs no nightly flags), replays
# the stored corpus of each, then fuzzes each for FUZZ_SECONDS (default 15).
# A crash or a failed property fails the run; the input is left in
# fuzz/artifacts/<target>/ (add it to the corpus once fixed).
# Under CI=true the fuzzing is reproducible: a fixed seed (FUZZ_SEED, 1) and a
# fixed number of runs (FUZZ_RUNS, 100000) per target, with FUZZ_SECONDS only
# as a cap, so a CI result does not depend on the machine's speed or luck;
# finding new inputs is the job of the longer runs below.
# Needs: cargo-fuzz (`cargo install cargo-fuzz --locked`) and a C++ compiler.
# Longer runs: FUZZ_SECONDS=300 fuzz/smoke.sh [target...]
set -euo pipefail
cd "$(dirname "$0")"
if [ "${CI:-}" = "true" ]; then
  budget=(-max_total_time="${FUZZ_SECONDS:-60}" -seed="${FUZZ_SEED:-1}" -runs="${FUZZ_RUNS:-100000}")
else
  budget=(-max_total_time="${FUZZ_SECONDS:-15}")
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
  exit 1
fi
# Its own target dir: the instrumentation flags differ from the main build's.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}-fuzz}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list --fuzz-dir .)
fi
cargo fuzz build -s none --fuzz-dir .
log="$(mktemp)"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  # New inputs go to a scratch directory: the stored corpus stays as committed.
  scratch="$(mktemp -d)"
  echo "== $t: corpus/$t ($(ls "corpus/$t" | wc -l) inputs) replayed, then fuzzed (${budget[*]})"
  status=0
  cargo fuzz run -s none --fuzz-dir . "$t" "$scratch" "corpus/$t" -- \
    "${budget[@]}" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E "stat::number_of_executed_units|panicked|SUMMARY|Test unit written|ERROR" "$log" || true
  rm -rf "$scratch"
  if [ "$status" -ne 0 ]; then
    tail -40 "$log" >&2
    echo "fuzz target $t failed (exit $status); the input is in fuzz/artifacts/$t/" >&2
    exit "$status"
  fi
done
rm -f "$log"
echo "fuzz smoke: ${#targets[@]} targets passed"
