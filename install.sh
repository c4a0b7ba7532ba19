#!/usr/bin/env bash
# Install, update or uninstall bal. './install.sh --help' explains; the
# manual's "Install, update, uninstall" section (docs/install.md)
# has examples. Written for bash 3.2 too (macOS): no associative arrays.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
	cat <<'EOF'
Usage: ./install.sh [--binary PATH | --from-source | --url URL] [--prefix DIR] [--systemd]
       ./install.sh --uninstall [--purge] [--prefix DIR]

Install bal into PREFIX/bin, or update it in place: run it again with a newer
build. The new binary replaces the old one atomically (a temporary file in
the same directory, then rename). If a bal is running ('bal status --brief'
exits 0 for $BAL_HOME, and for /var/lib/bal when the systemd unit is
installed), it is moved to the new binary with 'bal upgrade', which keeps
every connection.

Where the binary comes from (at most one of):
  --binary PATH    this file (it must run: 'PATH --version')
  --from-source    'go build -trimpath' (static: CGO_ENABLED=0) in the
                   checkout this script is in
  --url URL        download SHA256SUMS and bal_<version>_<os>_<arch>.tar.gz
                   from the base URL (https://, http:// with curl or wget;
                   file:// is copied), verify the tarball's checksum, and
                   install its bal
  (none of them)   the bal beside this script (an unpacked release tarball),
                   else --from-source when this script is in a checkout
Nothing is downloaded unless --url is given.

Options:
  --prefix DIR     install into DIR/bin (default: /usr/local as root, else
                   ~/.local). The record of what was installed is
                   DIR/share/bal/install-manifest.
  --systemd        also install the systemd unit bal.service (running
                   DIR/bin/bal), /etc/bal/config.yaml when missing, and the
                   bal system user; 'systemctl daemon-reload' runs when
                   systemd is running (PID 1). Linux only; needs root unless
                   DESTDIR is set. The unit is not enabled: check the config,
                   then 'systemctl enable --now bal'.
  --uninstall      stop a running bal and remove what the manifest in this
                   prefix lists. $BAL_HOME (~/.bal), /etc/bal and /var/lib/bal
                   are kept.
  --purge          with --uninstall: also delete $BAL_HOME and, for a
                   --systemd install, /etc/bal, /var/lib/bal and the bal user
                   if this script created it
  -h, --help       show this help

Environment (for packagers and tests; the defaults touch the real system):
  DESTDIR=DIR           stage everything under DIR (DIR/PREFIX/bin/bal,
                        DIR/etc/bal, ...); files name their final paths. No
                        user is created (unless BAL_USERADD is set) and
                        neither systemctl nor bal upgrade/stop is run.
  BAL_HOME              bal's home for the running check and --purge
                        (default ~/.bal)
  BAL_SYSTEMD_UNIT_DIR  where the unit goes (default /etc/systemd/system)
  BAL_USER              the system user of --systemd (default bal)
  BAL_USERADD           the command that creates it (default useradd), run as
                        CMD --system --user-group --home-dir /var/lib/bal
                          --no-create-home --shell /usr/sbin/nologin USER
  BAL_USERDEL           the command that deletes it on --purge (default
                        userdel), run as CMD USER
  GO                    the go command of --from-source (default go)

Exit codes: 0 done (or nothing to do); 1 failed (the reason on stderr);
2 usage error.
EOF
}

die() {
	echo "install.sh: $*" >&2
	exit 1
}

usage_error() {
	echo "install.sh: $*" >&2
	echo "Run './install.sh --help' for usage." >&2
	exit 2
}

note() {
	echo "install.sh: $*"
}

# ---- arguments -------------------------------------------------------------

binary="" from_source=0 url="" prefix="" systemd=0 uninstall=0 purge=0

# need_value FLAG ARGC NEXT: FLAG has a value after it.
need_value() {
	if (($2 < 2)) || [[ $3 == -* ]]; then
		usage_error "$1 needs a value"
	fi
}

while (($# > 0)); do
	case "$1" in
	-h | --help)
		usage
		exit 0
		;;
	--binary)
		need_value "$1" $# "${2:-}"
		binary=$2
		shift
		;;
	--binary=*) binary=${1#*=} ;;
	--from-source) from_source=1 ;;
	--url)
		need_value "$1" $# "${2:-}"
		url=$2
		shift
		;;
	--url=*) url=${1#*=} ;;
	--prefix)
		need_value "$1" $# "${2:-}"
		prefix=$2
		shift
		;;
	--prefix=*) prefix=${1#*=} ;;
	--systemd) systemd=1 ;;
	--uninstall) uninstall=1 ;;
	--purge) purge=1 ;;
	*) usage_error "unknown argument '$1'" ;;
	esac
	shift
done

sources=$from_source
[[ -z $binary ]] || sources=$((sources + 1))
[[ -z $url ]] || sources=$((sources + 1))
((sources <= 1)) || usage_error "--binary, --from-source and --url exclude each other"
if ((uninstall)); then
	((sources == 0)) || usage_error "--uninstall takes no --binary, --from-source or --url"
	((systemd == 0)) || usage_error "--uninstall reads what to remove from the manifest: drop --systemd"
else
	((purge == 0)) || usage_error "--purge goes with --uninstall"
fi
[[ -z $url || $url =~ ^(https?|file):// ]] || usage_error "--url $url: use an https://, http:// or file:// URL"

DESTDIR=${DESTDIR:-}
DESTDIR=${DESTDIR%/}
[[ -z $DESTDIR || $DESTDIR == /* ]] || DESTDIR=$PWD/$DESTDIR
BAL_USER=${BAL_USER:-bal}
[[ $BAL_USER =~ ^[a-z_][a-z0-9_-]*$ ]] || die "BAL_USER $BAL_USER is not a valid user name"
unit_dir=${BAL_SYSTEMD_UNIT_DIR:-/etc/systemd/system}
unit_dir=${unit_dir%/}
[[ $unit_dir == /* ]] || die "BAL_SYSTEMD_UNIT_DIR $unit_dir must be an absolute path"
state_dir=/var/lib/bal
etc_dir=/etc/bal

if [[ -z $prefix ]]; then
	if [[ $(id -u) == 0 ]]; then
		prefix=/usr/local
	else
		[[ -n ${HOME:-} ]] || die "HOME is not set: pass --prefix DIR"
		prefix=$HOME/.local
	fi
fi
[[ $prefix == /* ]] || prefix=$PWD/$prefix
prefix=${prefix%/}
[[ -n $prefix ]] || usage_error "--prefix / is not supported: use --prefix /usr"
bin_path=$prefix/bin/bal
manifest_path=$prefix/share/bal/install-manifest

work=$(mktemp -d "${TMPDIR:-/tmp}/bal-install.XXXXXX")
cleanup() {
	rm -rf "$work"
	# A temporary binary or unit left by a failed rename.
	if [[ -n ${pending_tmp:-} ]]; then rm -f "$pending_tmp"; fi
}
trap cleanup EXIT
pending_tmp=""

# ---- helpers ---------------------------------------------------------------

sha256_of() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | awk '{print $1}'
	elif command -v shasum >/dev/null 2>&1; then
		shasum -a 256 "$1" | awk '{print $1}'
	else
		die "neither sha256sum nor shasum found"
	fi
}

# systemd_running: systemd is PID 1 (its own test, sd_booted), on this
# machine rather than in a DESTDIR.
systemd_running() {
	[[ -z $DESTDIR && -d /run/systemd/system ]]
}

# The manifest, one entry a line, tab-separated:
#   version  the installed bal's --version line
#   file     PATH SHA256  a file this script installed (removed by --uninstall)
#   dir      PATH         a directory it created (removed when empty)
#   keep     PATH         bal's config or state directory (deleted only by --purge)
#   user     NAME         the system user it created (deleted by --purge)
# Paths are final paths (without DESTDIR). The new manifest is built in
# $work and renamed into place at the end.
new_manifest=$work/manifest

manifest_load() {
	: >"$new_manifest"
	if [[ -f $DESTDIR$manifest_path ]]; then
		grep -v -e '^version	' -e '^#' "$DESTDIR$manifest_path" >>"$new_manifest" || true
	fi
}

# record KIND PATH [SHA256]: add an entry, replacing one of the same kind and path.
record() {
	awk -F '\t' -v k="$1" -v p="$2" '!($1 == k && $2 == p)' "$new_manifest" >"$new_manifest.tmp"
	mv "$new_manifest.tmp" "$new_manifest"
	if (($# > 2)); then
		printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$new_manifest"
	else
		printf '%s\t%s\n' "$1" "$2" >>"$new_manifest"
	fi
}

# make_dir DIR: create DIR (a final path) and its missing parents under
# DESTDIR, recording each one created.
make_dir() {
	local d=$1
	if [[ $d == / || -z $d ]]; then
		mkdir -p "$DESTDIR/"
		return 0
	fi
	[[ -d $DESTDIR$d ]] && return 0
	[[ ! -e $DESTDIR$d ]] || die "$DESTDIR$d exists and is not a directory"
	make_dir "$(dirname "$d")"
	mkdir -m 0755 "$DESTDIR$d" || die "cannot create $DESTDIR$d"
	record dir "$d"
}

# put_file SRC DEST MODE: install SRC as DEST (a final path) atomically: a
# temporary file in DEST's directory, renamed over DEST. Records it; sets
# changed=1 when DEST's content changed.
put_file() {
	local src=$1 dest=$2 mode=$3 target
	target=$DESTDIR$dest
	make_dir "$(dirname "$dest")"
	if [[ -f $target ]] && cmp -s "$src" "$target"; then
		changed=0
	else
		[[ -w "$(dirname "$target")" ]] || die "cannot write to $(dirname "$target") (run as root, or pick --prefix)"
		pending_tmp=$(mktemp "$(dirname "$target")/.bal-install.XXXXXX")
		cp "$src" "$pending_tmp"
		chmod "$mode" "$pending_tmp"
		mv -f "$pending_tmp" "$target"
		pending_tmp=""
		changed=1
	fi
	record file "$dest" "$(sha256_of "$target")"
}

write_manifest() {
	local version=$1 target=$DESTDIR$manifest_path
	make_dir "$(dirname "$manifest_path")"
	{
		echo "# bal install manifest: written by install.sh, read by install.sh --uninstall."
		printf 'version\t%s\n' "$version"
		LC_ALL=C sort -u "$new_manifest"
	} >"$work/manifest.final"
	pending_tmp=$(mktemp "$(dirname "$target")/.bal-install.XXXXXX")
	cp "$work/manifest.final" "$pending_tmp"
	chmod 0644 "$pending_tmp"
	mv -f "$pending_tmp" "$target"
	pending_tmp=""
}

# homes: the BAL_HOMEs whose running bal this install concerns, one a line.
homes() {
	echo "${BAL_HOME:-${HOME:-}/.bal}"
	if [[ $1 == 1 && ${BAL_HOME:-} != "$state_dir" ]]; then
		echo "$state_dir"
	fi
}

# running BIN HOME: a bal runs for HOME.
running() {
	BAL_HOME=$2 "$1" status --brief >/dev/null 2>&1
}

# ---- where the binary comes from -------------------------------------------

# platform: this machine as <os>_<arch> in the release's names.
platform() {
	local os arch
	case "$(uname -s)" in
	Linux) os=linux ;;
	Darwin) os=darwin ;;
	*) die "no release for $(uname -s): build with --from-source" ;;
	esac
	case "$(uname -m)" in
	x86_64 | amd64) arch=amd64 ;;
	i386 | i486 | i586 | i686) arch=386 ;;
	aarch64 | arm64) arch=arm64 ;;
	*) die "no release for $(uname -m): build with --from-source" ;;
	esac
	echo "${os}_${arch}"
}

# fetch URL OUT: file:// is copied; anything else is downloaded with curl, or
# wget when curl is missing.
fetch() {
	case "$1" in
	file://*)
		cp "${1#file://}" "$2" 2>/dev/null || die "cannot read ${1#file://}"
		;;
	*)
		if command -v curl >/dev/null 2>&1; then
			curl -fsSL --proto '=https,http' -o "$2" "$1" || die "download failed: $1 (curl)"
		elif command -v wget >/dev/null 2>&1; then
			wget -q -O "$2" "$1" || die "download failed: $1 (wget)"
		else
			die "--url needs curl or wget"
		fi
		;;
	esac
}

# from_url BASE: download, verify and unpack the release for this machine;
# sets src_dir to the unpacked folder.
from_url() {
	local base=${1%/} plat line name want got
	plat=$(platform)
	fetch "$base/SHA256SUMS" "$work/SHA256SUMS"
	# Lines are "<sha256>  <name>" ("*<name>" in binary mode).
	line=$(awk -v p="_${plat}.tar.gz" '{n = $2; sub(/^\*/, "", n)} n ~ /^bal_/ && substr(n, length(n) - length(p) + 1) == p {print $1, n}' "$work/SHA256SUMS")
	[[ -n $line ]] || die "$base/SHA256SUMS lists no bal_<version>_${plat}.tar.gz"
	[[ $line != *$'\n'* ]] || die "$base/SHA256SUMS lists more than one tarball for $plat"
	want=${line%% *} name=${line#* }
	[[ $name =~ ^bal_[A-Za-z0-9.+~-]+_${plat}\.tar\.gz$ ]] || die "unexpected tarball name in SHA256SUMS: $name"
	[[ $want =~ ^[0-9a-f]{64}$ ]] || die "SHA256SUMS: no valid checksum for $name"
	note "downloading $base/$name"
	fetch "$base/$name" "$work/$name"
	got=$(sha256_of "$work/$name")
	[[ $got == "$want" ]] || die "checksum mismatch for $name: SHA256SUMS says $want, the download is $got; nothing installed"
	mkdir "$work/unpacked"
	tar -xzf "$work/$name" -C "$work/unpacked" || die "cannot unpack $name"
	src_dir=$work/unpacked/${name%.tar.gz}
	[[ -f $src_dir/bal ]] || die "$name has no ${name%.tar.gz}/bal"
}

build_from_source() {
	local go=${GO:-go} v
	[[ -f $here/go.mod && -d $here/cmd/bal ]] || die "--from-source: $here is not a bal checkout"
	command -v "$go" >/dev/null 2>&1 || die "--from-source needs Go ($go not found): see README.md"
	v=$(git -C "$here" describe --always --dirty 2>/dev/null || echo dev)
	note "building bal $v from $here"
	# Static, as the release binaries are: bal needs no C library.
	(cd "$here" && CGO_ENABLED=0 "$go" build -trimpath -ldflags "-X main.version=$v" -o "$work/bal" ./cmd/bal) ||
		die "go build failed"
	src_bin=$work/bal
}

# ---- install ---------------------------------------------------------------

do_install() {
	local src_bin="" src_dir=$here version changed=0 bin_changed h unit_installed

	if [[ -n $binary ]]; then
		[[ -f $binary ]] || die "--binary $binary: no such file"
		src_bin=$binary
	elif ((from_source)); then
		build_from_source
	elif [[ -n $url ]]; then
		from_url "$url"
		src_bin=$src_dir/bal
	elif [[ -f $here/bal ]]; then
		src_bin=$here/bal
	elif [[ -f $here/go.mod && -d $here/cmd/bal ]]; then
		build_from_source
	else
		usage_error "no bal beside this script: pass --binary PATH, --from-source or --url URL"
	fi
	# The copy must run here: it is what gets installed.
	cp "$src_bin" "$work/bal.new"
	chmod 0755 "$work/bal.new"
	version=$("$work/bal.new" --version 2>/dev/null) ||
		die "$src_bin does not run here ('bal --version' failed): is it a bal for $(uname -s)/$(uname -m)?"
	[[ $version == bal\ * ]] || die "$src_bin is not bal (its --version says: $version)"

	if ((systemd)); then
		[[ $(uname -s) == Linux ]] || die "--systemd is for Linux (on macOS see sample/com.bal.daemon.plist)"
		[[ -n $DESTDIR || $(id -u) == 0 ]] || die "--systemd needs root (or DESTDIR=DIR to stage the files)"
		[[ $prefix =~ ^/[A-Za-z0-9._/+-]*$ ]] || die "--systemd: the unit cannot run a bal under '$prefix' (use letters, digits and . _ / + - only)"
		[[ -f $src_dir/sample/bal.service ]] || die "no unit to install: $src_dir/sample/bal.service is missing"
		[[ -f $src_dir/packaging/config.yaml ]] || die "no default config: $src_dir/packaging/config.yaml is missing"
	fi

	manifest_load
	# The service's home counts too when the unit is (or was) installed.
	unit_installed=$systemd
	if awk -F '\t' '$1 == "file" && $2 ~ /\/bal\.service$/ {found = 1} END {exit !found}' "$new_manifest"; then
		unit_installed=1
	fi
	put_file "$work/bal.new" "$bin_path" 0755
	bin_changed=$changed
	if ((bin_changed)); then
		note "installed $version as $DESTDIR$bin_path"
	else
		note "$DESTDIR$bin_path is already $version"
	fi

	if ((systemd)); then
		install_systemd "$src_dir"
	fi
	write_manifest "$version"

	case ":$PATH:" in
	*":$prefix/bin:"*) ;;
	*) [[ -n $DESTDIR ]] || note "$prefix/bin is not in PATH: add it, or run $bin_path" ;;
	esac

	# Move a running bal to the new binary.
	[[ -z $DESTDIR ]] || return 0
	while IFS= read -r h; do
		[[ -n $h ]] || continue
		running "$bin_path" "$h" || continue
		if ((bin_changed == 0)); then
			note "a bal is running for BAL_HOME=$h; the binary is unchanged (run 'bal upgrade' if it still runs an older one)"
		elif "$bin_path" upgrade --help >/dev/null 2>&1; then
			note "upgrading the bal running for BAL_HOME=$h"
			BAL_HOME=$h "$bin_path" upgrade --binary "$bin_path" ||
				die "'bal upgrade' failed for BAL_HOME=$h: the running bal keeps serving the old binary; the new one is installed at $bin_path"
		else
			note "a bal is running for BAL_HOME=$h, and this bal has no 'bal upgrade': restart it to run the new binary"
		fi
	done < <(homes "$unit_installed")
}

install_systemd() {
	local src_dir=$1 unit="$work/bal.service" created_user=0
	# The unit runs the installed binary as BAL_USER.
	{
		echo "# Installed by install.sh: bal is $bin_path, its config $etc_dir/config.yaml."
		sed -e "s#/usr/local/bin/bal#$bin_path#g" -e "s#^User=bal\$#User=$BAL_USER#" -e "s#^Group=bal\$#Group=$BAL_USER#" \
			"$src_dir/sample/bal.service"
	} >"$unit"
	put_file "$unit" "$unit_dir/bal.service" 0644
	if ((changed)); then note "installed the unit $DESTDIR$unit_dir/bal.service"; fi

	if id "$BAL_USER" >/dev/null 2>&1; then
		:
	elif [[ -n $DESTDIR && -z ${BAL_USERADD:-} ]]; then
		note "DESTDIR is set: not creating the system user $BAL_USER"
	else
		"${BAL_USERADD:-useradd}" --system --user-group --home-dir "$state_dir" --no-create-home \
			--shell /usr/sbin/nologin "$BAL_USER" || die "cannot create the system user $BAL_USER"
		record user "$BAL_USER"
		created_user=1
		note "created the system user $BAL_USER"
	fi
	# bal's state and config directories: --purge deletes them.
	record keep "$state_dir"
	record keep "$etc_dir"

	# /etc/bal/config.yaml: written once, never replaced (it is the operator's).
	make_dir /etc
	if [[ ! -d $DESTDIR$etc_dir ]]; then
		mkdir -m 0750 "$DESTDIR$etc_dir"
	fi
	if [[ ! -e $DESTDIR$etc_dir/config.yaml ]]; then
		install -m 0640 "$src_dir/packaging/config.yaml" "$DESTDIR$etc_dir/config.yaml"
		note "wrote $DESTDIR$etc_dir/config.yaml: set your backends, then 'bal check -c $etc_dir/config.yaml'"
	fi
	if [[ -z $DESTDIR ]] && { ((created_user)) || id "$BAL_USER" >/dev/null 2>&1; }; then
		chgrp "$BAL_USER" "$etc_dir" "$etc_dir/config.yaml" 2>/dev/null || true
	fi

	if systemd_running; then
		systemctl daemon-reload || die "systemctl daemon-reload failed"
	fi
	note "start it with: systemctl enable --now bal"
}

# ---- uninstall -------------------------------------------------------------

# purge_dir DIR: rm -rf DIR (under DESTDIR), refusing paths that are not bal's.
purge_dir() {
	local d=$1
	case "$d" in
	"" | / | /etc | /var | /var/lib | /usr | /home | "${HOME:-/}") die "refusing to delete $d" ;;
	esac
	if [[ -e $DESTDIR$d || -L $DESTDIR$d ]]; then
		rm -rf -- "$DESTDIR$d" || die "cannot delete $DESTDIR$d"
		note "deleted $DESTDIR$d"
	fi
}

do_uninstall() {
	local m=$DESTDIR$manifest_path old=$work/manifest.old kind path h bal_home has_unit=0 unit_path=""
	if [[ ! -f $m ]]; then
		note "no bal install recorded in $DESTDIR$prefix ($m is missing): nothing to remove"
	else
		cp "$m" "$old"
		unit_path=$(awk -F '\t' '$1 == "file" && $2 ~ /\/bal\.service$/ {print $2; exit}' "$old")
		[[ -z $unit_path ]] || has_unit=1
		# Stop what runs from this install before its files go.
		if [[ -z $DESTDIR ]]; then
			if ((has_unit)) && systemd_running; then
				systemctl disable --now bal.service || true
			fi
			if [[ -x $bin_path ]]; then
				while IFS= read -r h; do
					[[ -n $h ]] || continue
					if running "$bin_path" "$h"; then
						note "stopping the bal running for BAL_HOME=$h"
						BAL_HOME=$h "$bin_path" stop || die "'bal stop' failed for BAL_HOME=$h: nothing removed"
					fi
				done < <(homes "$has_unit")
			fi
		fi
		while IFS=$'\t' read -r kind path _; do
			[[ $kind == file ]] || continue
			rm -f "$DESTDIR$path"
			note "removed $DESTDIR$path"
		done <"$old"
		if ((purge)); then
			while IFS=$'\t' read -r kind path _; do
				case "$kind" in
				keep) purge_dir "$path" ;;
				user)
					if [[ -n $DESTDIR && -z ${BAL_USERDEL:-} ]]; then
						note "DESTDIR is set: not deleting the user $path"
					elif id "$path" >/dev/null 2>&1; then
						"${BAL_USERDEL:-userdel}" "$path" || die "cannot delete the user $path"
						note "deleted the system user $path"
					fi
					;;
				esac
			done <"$old"
		fi
		# Without --purge, the config and state it keeps (and the user) stay
		# recorded, so that a later install or --uninstall --purge finds them.
		: >"$new_manifest"
		if ((purge == 0)); then
			while IFS=$'\t' read -r kind path _; do
				case "$kind" in
				keep) if [[ -e $DESTDIR$path ]]; then record keep "$path"; fi ;;
				user) record user "$path" ;;
				esac
			done <"$old"
		fi
		rm -f "$m"
		# Directories it created, deepest first, when they are empty now.
		while IFS= read -r path; do
			rmdir "$DESTDIR$path" 2>/dev/null || true
		done < <(awk -F '\t' '$1 == "dir" {print length($2) "\t" $2}' "$old" | sort -rn | cut -f2-)
		if ((has_unit)) && systemd_running; then
			systemctl daemon-reload || true
		fi
		note "uninstalled bal from $DESTDIR$prefix"
		if [[ -s $new_manifest ]]; then
			while IFS=$'\t' read -r kind path _; do
				if [[ $kind == dir && -d $DESTDIR$path ]]; then record dir "$path"; fi
			done <"$old"
			write_manifest "(uninstalled; config and state kept)"
			while IFS=$'\t' read -r kind path _; do
				if [[ $kind == keep ]]; then note "kept $DESTDIR$path (--uninstall --purge deletes it)"; fi
			done <"$new_manifest"
		fi
	fi
	if ((purge)); then
		[[ -n ${BAL_HOME:-}${HOME:-} ]] || die "neither BAL_HOME nor HOME is set: cannot tell which home to purge"
		bal_home=${BAL_HOME:-$HOME/.bal}
		purge_dir "$bal_home"
	fi
}

if ((uninstall)); then
	do_uninstall
else
	do_install
fi
