#!/usr/bin/env bash
# Build bal's release artifacts into one directory (default dist/):
#   bal_<version>_<os>_<arch>.tar.gz  linux/{amd64,386,arm64}, darwin/{arm64,amd64}
#   bal_<version>_amd64.deb           Debian package (dpkg-deb)
#   SHA256SUMS                        sha256sum of all of the above
# Two runs on the same commit give byte-identical files, whatever folder the
# checkout is in (see packaging/README.md for what that needs).
#
# Usage: packaging/release.sh [OUT_DIR]
# Environment: VERSION (default: git describe --always --dirty), GO (go),
# SOURCE_DATE_EPOCH (default: the commit time of HEAD).
set -euo pipefail
export LC_ALL=C TZ=UTC

TARGETS=(linux/amd64 linux/386 linux/arm64 darwin/arm64 darwin/amd64)
# The stripped linux/amd64 binary must stay at or under this many bytes (10 MB).
MAX_LINUX_AMD64_BYTES=10000000

die() {
	echo "release: $*" >&2
	exit 1
}

case "${1:-}" in
-h | --help)
	sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
	exit 0
	;;
-*)
	echo "release: unknown flag $1 (usage: packaging/release.sh [OUT_DIR])" >&2
	exit 2
	;;
esac
(($# <= 1)) || {
	echo "release: one OUT_DIR at most (usage: packaging/release.sh [OUT_DIR])" >&2
	exit 2
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/dist}
GO=${GO:-go}

for tool in "$GO" git tar gzip sha256sum dpkg-deb; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found (dpkg-deb: apt-get install dpkg)"
done

VERSION=${VERSION:-$(git -C "$root" describe --always --dirty 2>/dev/null || echo dev)}
# The version names files (bal_<version>_<os>_<arch>.tar.gz): no '_' or '/'.
[[ $VERSION =~ ^[A-Za-z0-9][A-Za-z0-9.+~-]*$ ]] ||
	die "VERSION $VERSION: use letters, digits and . + ~ - only, starting with a letter or digit"

if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
	SOURCE_DATE_EPOCH=$(git -C "$root" log -1 --format=%ct) ||
		die "cannot read the commit time (not a git checkout? set SOURCE_DATE_EPOCH)"
fi
[[ $SOURCE_DATE_EPOCH =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH $SOURCE_DATE_EPOCH is not a number of seconds"
export SOURCE_DATE_EPOCH

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/bal-release.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Only this script's own artifacts are replaced; nothing else in OUT_DIR.
rm -f "$out"/bal_*.tar.gz "$out"/bal_*.deb "$out"/SHA256SUMS

# stamp DIR: every entry under DIR gets the commit time as its mtime.
stamp() {
	find "$1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

# build GOOS GOARCH OUT: a static, stripped, path-free bal. The GOAMD64/GO386/
# GOARM64 levels are pinned so the builder's environment cannot change them.
build() {
	echo "release: go build $1/$2"
	(cd "$root" && env CGO_ENABLED=0 GOOS="$1" GOARCH="$2" GOAMD64=v1 GO386=sse2 GOARM64=v8.0 GOFLAGS= \
		"$GO" build -trimpath -ldflags "-s -w -X main.version=$VERSION -buildid=" -o "$3" ./cmd/bal)
}

for target in "${TARGETS[@]}"; do
	goos=${target%/*} goarch=${target#*/}
	name=bal_${VERSION}_${goos}_${goarch}
	stage=$work/tar/$name
	install -d -m 0755 "$stage" "$stage/sample" "$stage/packaging"
	build "$goos" "$goarch" "$stage/bal"
	chmod 0755 "$stage/bal"
	install -m 0755 "$root/install.sh" "$stage/install.sh"
	install -m 0644 "$root/README.md" "$root/LICENSE" "$stage/"
	install -m 0644 "$root/sample/bal.service" "$root/sample/com.bal.daemon.plist" "$stage/sample/"
	install -m 0644 "$root/packaging/config.yaml" "$stage/packaging/"
	if [[ $target == linux/amd64 ]]; then
		size=$(wc -c <"$stage/bal")
		echo "release: linux/amd64 binary: $size bytes (limit $MAX_LINUX_AMD64_BYTES)"
		((size <= MAX_LINUX_AMD64_BYTES)) || die "linux/amd64 binary is $size bytes, over $MAX_LINUX_AMD64_BYTES"
		deb_bin=$stage/bal
	fi
	stamp "$stage"
	tar --sort=name --format=gnu --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
		-C "$work/tar" -cf - "$name" | gzip -n -9 >"$out/$name.tar.gz"
done

# Debian's versions start with a digit and use '-' only before a revision:
# v1.2.3-4-gabc -> 1.2.3+4+gabc; a bare commit (no tag yet) -> 0+git<commit>.
debversion=${VERSION#v}
debversion=${debversion//-/+}
[[ $debversion =~ ^[0-9] ]] || debversion=0+git$debversion

deb=$work/deb
install -d -m 0755 "$deb/DEBIAN" "$deb/usr/bin" "$deb/lib/systemd/system" "$deb/etc/bal" "$deb/usr/share/doc/bal"
install -m 0755 "$deb_bin" "$deb/usr/bin/bal"
{
	echo "# Installed by the bal package: bal is /usr/bin/bal, its config /etc/bal/config.yaml."
	sed 's#/usr/local/bin/bal#/usr/bin/bal#g' "$root/sample/bal.service"
} >"$deb/lib/systemd/system/bal.service"
chmod 0644 "$deb/lib/systemd/system/bal.service"
install -m 0644 "$root/packaging/config.yaml" "$deb/etc/bal/config.yaml"
install -m 0644 "$root/LICENSE" "$deb/usr/share/doc/bal/copyright"
install -m 0644 "$root/README.md" "$deb/usr/share/doc/bal/README.md"
install -m 0755 "$root/packaging/deb/postinst" "$root/packaging/deb/prerm" "$root/packaging/deb/postrm" "$deb/DEBIAN/"
echo /etc/bal/config.yaml >"$deb/DEBIAN/conffiles"
chmod 0644 "$deb/DEBIAN/conffiles"

# Installed-Size in KiB as dpkg-gencontrol counts it: each file rounded up,
# one per directory (du would add the file system's block sizes).
kib=0
while read -r type size; do
	if [[ $type == f ]]; then
		kib=$((kib + (size + 1023) / 1024))
	else
		kib=$((kib + 1))
	fi
done < <(find "$deb" -mindepth 1 -path "$deb/DEBIAN" -prune -o -printf '%y %s\n')

cat >"$deb/DEBIAN/control" <<EOF
Package: bal
Version: $debversion
Architecture: amd64
Maintainer: the bal authors <https://github.com/bal-lb/bal/issues>
Installed-Size: $kib
Depends: passwd
Section: net
Priority: optional
Homepage: https://github.com/bal-lb/bal
Description: L4 (TCP) load balancer
 bal relays TCP connections to a set of health-checked backends, reloads its
 config without cutting a connection and reports what it does (bal check,
 bal doctor, bal status). The package installs the systemd unit bal.service
 (not enabled: edit /etc/bal/config.yaml, then systemctl enable --now bal)
 and a bal system user whose state lives in /var/lib/bal.
EOF
chmod 0644 "$deb/DEBIAN/control"
stamp "$deb"
echo "release: dpkg-deb bal_${VERSION}_amd64.deb (Version: $debversion)"
dpkg-deb --root-owner-group -Zxz -z9 --threads-max=1 --build "$deb" "$out/bal_${VERSION}_amd64.deb" >/dev/null

(cd "$out" && sha256sum bal_*.tar.gz bal_*.deb >SHA256SUMS)
echo "release: wrote $out:"
(cd "$out" && ls -l bal_*.tar.gz bal_*.deb SHA256SUMS)
