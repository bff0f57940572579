# Shared by scripts/start and scripts/test: toolchain checks, system packages, cache dirs.
# Sourced, not run.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warren-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Installs Debian packages that are missing (idempotent; quiet when all are there).
apt_need() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing system packages: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}" >/dev/null
}

require_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "warren needs a Rust toolchain (1.88 or newer): install it with rustup (https://rustup.rs), then run this again." >&2
    exit 1
  fi
  # RocksDB is linked from Debian's package; bindgen needs libclang at build time.
  apt_need gcc pkg-config librocksdb-dev libclang1-14 libclang-common-14-dev
}

# Keeps the shared build cache from growing without bound (old clone paths leave artifacts).
prune_target() {
  if [ -d "$CARGO_TARGET_DIR" ]; then
    local gb
    gb=$(du -s --block-size=1G "$CARGO_TARGET_DIR" 2>/dev/null | cut -f1)
    if [ "${gb:-0}" -gt 20 ]; then
      echo "build cache is ${gb} GB: clearing $CARGO_TARGET_DIR" >&2
      rm -rf "$CARGO_TARGET_DIR"
    fi
  fi
}
