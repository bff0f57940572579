# Shared by the bench scripts (sourced, not run): where builds go, the load generator's
# binary, and what a process costs.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warren-target}"

# Builds benches/loadgen.rs (release) if needed and prints its binary's path.
loadgen_bin() {
  cargo bench --bench loadgen --no-run 2>/dev/null
  ls -t "$CARGO_TARGET_DIR"/release/deps/loadgen-* | grep -v '\.d$' | head -1
}

# CPU time (user + system) PID has used so far, in seconds.
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }

# Resident memory of PID, in MiB.
rss_mib() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
