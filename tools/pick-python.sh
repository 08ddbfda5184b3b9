#!/bin/sh
# The Python `make` builds .venv with: its path on stdout, which one and why on stderr.
# Python 3.13 if any is found (the MongoDB emulator the tests use, mongoeco, needs it), else
# the newest Python >= 3.11. Looked for on PATH, in pyenv's versions (whichever is selected)
# and in PYTHON_PLACES: where installers put them (Homebrew, python.org, uv, ~/.local/bin).
set -u
PYTHON_PLACES=${PYTHON_PLACES:-"/usr/local/bin /opt/homebrew/bin /usr/bin $HOME/.local/bin
    /Library/Frameworks/Python.framework/Versions/3.*/bin $HOME/.local/share/uv/python/cpython-3.*/bin"}

candidates() {
    old_ifs=$IFS
    IFS=:
    for dir in $PATH; do
        ls -d "$dir"/python3.[1-9][0-9] "$dir"/python3 2>/dev/null
    done
    IFS=$old_ifs
    pyenv_root=$(pyenv root 2>/dev/null) || pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
    ls -d "$pyenv_root"/versions/3.*/bin/python3 2>/dev/null
    for dir in $PYTHON_PLACES; do
        ls -d "$dir"/python3.[1-9][0-9] "$dir"/python3 2>/dev/null
    done
}

# "minor patch path" for each candidate that runs and is Python >= 3.11 (a pyenv shim whose
# version is not selected fails to run, and is left out here).
versions() {
    candidates | while IFS= read -r path; do
        version=$("$path" -c 'import sys; v = sys.version_info
if v >= (3, 11): print(v[1], v[2])' 2>/dev/null </dev/null) && [ -n "$version" ] &&
            echo "$version $path"
    done
}

found=$(versions)
best=$(printf '%s\n' "$found" | awk '$1 == 13' | sort -s -k2,2nr | head -n 1)
if [ -n "$best" ]; then
    why="3.13 is preferred (the MongoDB emulator the tests use needs it)"
else
    best=$(printf '%s\n' "$found" | awk 'NF' | sort -s -k1,1nr -k2,2nr | head -n 1)
    why="no Python 3.13 found, so the newest >= 3.11 (the MongoDB tests will be skipped)"
fi
if [ -z "$best" ]; then
    echo "No Python >= 3.11 found on PATH, in pyenv or in" $PYTHON_PLACES": install one," \
        "or name it with PYTHON=/path/to/python3" >&2
    exit 1
fi
minor=${best%% *} rest=${best#* }
patch=${rest%% *} path=${rest#* }
echo "Using Python 3.$minor.$patch, $path: $why. PYTHON=/path/to/python picks another." >&2
echo "$path"
