# Sourced by the scripts: creates .venv if missing and installs provledger with its test extra.
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
stamp=.venv/.provledger-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "installing provledger and its test tools into .venv (first run only)..."
    python -m pip install -qq --upgrade pip
    python -m pip install -qq -e '.[test]'
    touch "$stamp"
fi
