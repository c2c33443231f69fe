# Shared by scripts/demo, scripts/test and .ci/run: a project virtualenv that works on a
# fresh Debian machine. Sourced, not run.

# Print a Python >= 3.10 with a working venv module: the machine's python3, else Debian's
# (installed when missing, since a fresh Debian has python3 but not always python3-venv).
buildsdk_python_for_venv() {
	local py
	for py in python3 /usr/bin/python3; do
		if command -v "$py" >/dev/null && "$py" -c 'import sys, venv, ensurepip
sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
			command -v "$py"
			return 0
		fi
	done
	printf 'installing python3-venv from Debian\n' >&2
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >&2
	command -v /usr/bin/python3
}

# Print a working interpreter for Python X.Y ($1), from PATH or pyenv's versions; fail
# quietly when there is none. A pyenv shim on PATH is not enough: it may not be enabled.
buildsdk_find_python() {
	local want=$1 py root
	if "python$want" -c '' 2>/dev/null; then
		command -v "python$want"
		return 0
	fi
	if command -v pyenv >/dev/null && root=$(pyenv root 2>/dev/null); then
		for py in "$root"/versions/"$want".*/bin/"python$want"; do
			if [[ -x $py ]] && "$py" -c '' 2>/dev/null; then
				printf '%s\n' "$py"
				return 0
			fi
		done
	fi
	return 1
}

# Create a virtualenv at $2 (default: .venv in the repository $1), if missing, with the given
# Python ($3, default: a python3 with venv), and install buildsdk with its test extras, pinned
# by constraints.txt (scripts/lock writes it); with BUILDSDK_UNPINNED=1, the newest releases
# instead, upgraded on every call (scripts/check --latest). Quiet when everything is already there, so the
# demo starts fast the second time; reinstalls when pyproject.toml or the pins change.
buildsdk_venv() {
	local root=$1 venv=${2:-$1/.venv} py=${3:-}
	local pins=(-c "$root/constraints.txt")
	if [[ ${BUILDSDK_UNPINNED:-} == 1 ]]; then
		pins=(--upgrade --upgrade-strategy eager)
		rm -f "$venv/.buildsdk-installed"
	fi
	if [[ ! -x $venv/bin/python ]]; then
		if [[ -z $py ]]; then py=$(buildsdk_python_for_venv) || return; fi
		"$py" -m venv "$venv" || return
		PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q "${pins[@]}" pip ||
			return
	fi
	if ! "$venv/bin/python" -c 'import buildsdk, pytest, xdist, hypothesis, docker' 2>/dev/null ||
		[[ $root/pyproject.toml -nt $venv/.buildsdk-installed ||
			$root/constraints.txt -nt $venv/.buildsdk-installed ]]; then
		PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q "${pins[@]}" \
			-e "$root[test]" || return
		touch "$venv/.buildsdk-installed"
	fi
}
