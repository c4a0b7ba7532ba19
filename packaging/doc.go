// Package packaging holds the tests of bal's installer (install.sh at the
// top of the repository) and of its release artifacts (packaging/release.sh,
// run by make release): tarballs, SHA256SUMS and the Debian package. It has
// no code of its own; packaging/README.md describes the artifacts.
//
// The tests never touch the machine's own system: install.sh runs with a
// temporary --prefix, HOME and BAL_HOME (and DESTDIR for --systemd), fake
// useradd/userdel/systemctl/curl/wget record their calls, and the .deb is
// installed with dpkg --root into a throw-away directory. -short skips the
// release builds (five cross-compiles, twice).
package packaging
