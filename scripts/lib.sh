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

# Create .venv in the repository (if missing) and install buildsdk with its test extras.
# Quiet when everything is already there, so the demo starts fast the second time.
buildsdk_venv() {
	local root=$1 py
	if [[ ! -x $root/.venv/bin/python ]]; then
		py=$(buildsdk_python_for_venv) || return
		"$py" -m venv "$root/.venv" || return
		PIP_DISABLE_PIP_VERSION_CHECK=1 "$root/.venv/bin/python" -m pip install -q --upgrade pip ||
			return
	fi
	if ! "$root/.venv/bin/python" -c 'import buildsdk, pytest, hypothesis, docker' 2>/dev/null ||
		[[ $root/pyproject.toml -nt $root/.venv/.buildsdk-installed ]]; then
		PIP_DISABLE_PIP_VERSION_CHECK=1 "$root/.venv/bin/python" -m pip install -q -e "$root[test]" ||
			return
		touch "$root/.venv/.buildsdk-installed"
	fi
}
