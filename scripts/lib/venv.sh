# Shared by scripts/test and scripts/demo: system packages and the project's .venv.
# Sourced, not run. Idempotent: a second call only checks.

PYTHON=${PYTHON:-python3}

# Debian packages the tests and the demo need: a CJK font, so receipts with Chinese names
# render (printer emulator, image fallback for printers without GB18030); libpcap, which
# scapy needs to compile the kernel filter of the Wi-Fi capture; iw, to put an adapter in
# monitor mode and hop channels; systemd, whose systemd-analyze checks the unit files.
SYSTEM_PACKAGES=(fonts-wqy-microhei libpcap0.8 iw systemd)

ensure_system_packages() {
    local missing=()
    local pkg
    for pkg in "${SYSTEM_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "== installing system packages: ${missing[*]}"
    $sudo apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

ensure_venv() {
    local stamp=.venv/.installed
    if [ ! -x .venv/bin/python ]; then
        echo "== creating .venv"
        "$PYTHON" -m venv .venv
    fi
    # Reinstall when pyproject.toml changed since the last install.
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "== installing storelink into .venv"
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q -e ".[store,cloud,dev]"
        touch "$stamp"
    fi
}
