package packaging

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// installTimeout bounds one install.sh run (a --from-source build included).
const installTimeout = 5 * time.Minute

// installer runs install.sh with everything it could touch redirected into
// a temporary directory: HOME, BAL_HOME, the unit directory, and fake
// useradd, userdel, systemctl, curl and wget first in PATH, each recording
// its calls (curl and wget fail: nothing may download without --url).
type installer struct {
	t       *testing.T
	dir     string
	home    string // HOME
	balHome string // BAL_HOME
	fakeBin string
	env     []string
}

func newInstaller(t *testing.T) *installer {
	t.Helper()
	dir := t.TempDir()
	in := &installer{
		t:       t,
		dir:     dir,
		home:    filepath.Join(dir, "home"),
		balHome: filepath.Join(dir, "home", "balhome"),
		fakeBin: filepath.Join(dir, "fakebin"),
	}
	for name, code := range map[string]int{"curl": 1, "wget": 1, "systemctl": 0, "useradd": 0, "userdel": 0} {
		recorder(t, in.fakeBin, name, code)
	}
	if err := os.MkdirAll(in.home, 0o755); err != nil {
		t.Fatal(err)
	}
	in.env = append(goEnv(t), []string{
		"HOME=" + in.home,
		"BAL_HOME=" + in.balHome,
		"PATH=" + in.fakeBin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"DESTDIR=",
		"BAL_SYSTEMD_UNIT_DIR=" + filepath.Join(dir, "units"),
		"BAL_USERADD=" + filepath.Join(in.fakeBin, "useradd"),
		"BAL_USERDEL=" + filepath.Join(in.fakeBin, "userdel"),
		"BAL_USER=",
	}...)
	return in
}

var (
	goEnvOnce sync.Once
	goEnvVars []string
)

// goEnv pins Go's caches and settings to this user's: with HOME moved,
// --from-source would otherwise start from an empty build and module cache.
func goEnv(t *testing.T) []string {
	t.Helper()
	goEnvOnce.Do(func() {
		keys := []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOENV"}
		out := mustRun(t, time.Minute, "", nil, "go", append([]string{"env"}, keys...)...)
		for i, v := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
			if i < len(keys) {
				goEnvVars = append(goEnvVars, keys[i]+"="+v)
			}
		}
	})
	return goEnvVars
}

// run runs install.sh with extra environment entries (later ones win).
func (in *installer) run(extraEnv []string, args ...string) (string, string, int) {
	in.t.Helper()
	env := append(append([]string{}, in.env...), extraEnv...)
	return run(in.t, installTimeout, in.dir, env, filepath.Join(repoRoot(in.t), "install.sh"), args...)
}

// mustRun runs install.sh and fails the test unless it exits 0.
func (in *installer) mustRun(extraEnv []string, args ...string) string {
	in.t.Helper()
	out, errOut, code := in.run(extraEnv, args...)
	if code != 0 {
		in.t.Fatalf("install.sh %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// noDownloads fails the test if the fake curl or wget was called.
func (in *installer) noDownloads() {
	in.t.Helper()
	for _, tool := range []string{"curl", "wget"} {
		if c := calls(in.t, filepath.Join(in.fakeBin, tool+".calls")); c != nil {
			in.t.Errorf("install.sh called %s without --url: %q", tool, c)
		}
	}
}

// balVersion is the first line of 'bin --version'.
func balVersion(t *testing.T, bin string) string {
	t.Helper()
	out := mustRun(t, time.Minute, "", nil, bin, "--version")
	return strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
}

// manifestEntries reads install.sh's manifest as kind -> lines of the rest.
func manifestEntries(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("manifest: %v", err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		kind, rest, _ := strings.Cut(line, "\t")
		m[kind] = append(m[kind], rest)
	}
	return m
}

func ensureShellcheck(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("shellcheck"); err == nil {
		return p
	}
	if os.Geteuid() != 0 {
		t.Skip("shellcheck is not installed and this is not root: skipping (apt-get install shellcheck)")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("shellcheck is not installed and there is no apt-get: skipping")
	}
	env := []string{"DEBIAN_FRONTEND=noninteractive"}
	install := []string{"install", "-y", "-q", "--no-install-recommends", "shellcheck"}
	if _, _, code := run(t, 5*time.Minute, "", env, "apt-get", install...); code != 0 {
		mustRun(t, 5*time.Minute, "", env, "apt-get", "update", "-q")
		mustRun(t, 5*time.Minute, "", env, "apt-get", install...)
	}
	p, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Fatalf("apt-get installed shellcheck, yet it is not in PATH: %v", err)
	}
	return p
}

// TestShellcheck: install.sh, release.sh and the .deb's maintainer scripts
// pass shellcheck (installed with apt-get when missing).
func TestShellcheck(t *testing.T) {
	sc := ensureShellcheck(t)
	root := repoRoot(t)
	scripts := []string{"install.sh", "packaging/release.sh", "packaging/deb/postinst", "packaging/deb/prerm", "packaging/deb/postrm"}
	out, errOut, code := run(t, 2*time.Minute, root, nil, sc, scripts...)
	if code != 0 {
		t.Fatalf("shellcheck %s: exit %d\n%s%s", strings.Join(scripts, " "), code, out, errOut)
	}
}

// TestInstallUsage: --help on stdout with exit 0; usage errors exit 2 and
// failures exit 1, with the reason on stderr, installing nothing.
func TestInstallUsage(t *testing.T) {
	in := newInstaller(t)
	out, errOut, code := in.run(nil, "--help")
	if code != 0 || errOut != "" {
		t.Fatalf("--help: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"Usage: ./install.sh", "--binary PATH", "--from-source", "--url URL", "--prefix DIR",
		"--systemd", "--uninstall", "--purge", "DESTDIR", "BAL_SYSTEMD_UNIT_DIR", "BAL_USERADD", "BAL_USERDEL", "BAL_HOME"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help does not mention %s", want)
		}
	}

	notBal := filepath.Join(in.dir, "notbal")
	writeFile(t, notBal, "just text\n", 0o644)
	prefix := filepath.Join(in.dir, "prefix")
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"unknown flag", []string{"--bogus"}, 2, "unknown argument '--bogus'"},
		{"missing value", []string{"--binary"}, 2, "--binary needs a value"},
		{"two sources", []string{"--binary", notBal, "--from-source"}, 2, "exclude each other"},
		{"url and binary", []string{"--binary", notBal, "--url", "file:///x"}, 2, "exclude each other"},
		{"purge alone", []string{"--purge"}, 2, "--purge goes with --uninstall"},
		{"uninstall with a source", []string{"--uninstall", "--binary", notBal}, 2, "--uninstall takes no"},
		{"bad url scheme", []string{"--url", "ftp://127.0.0.1/x"}, 2, "use an https://"},
		{"no such binary", []string{"--binary", filepath.Join(in.dir, "missing")}, 1, "no such file"},
		{"not executable", []string{"--binary", notBal}, 1, "does not run here"},
		{"not bal", []string{"--binary", "/bin/true"}, 1, "is not bal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--prefix", prefix}, tc.args...)
			out, errOut, code := in.run(nil, args...)
			if code != tc.code || !strings.Contains(errOut, tc.stderr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q (stdout %q)", code, errOut, tc.code, tc.stderr, out)
			}
			if _, err := os.Stat(prefix); err == nil {
				t.Errorf("%s was created", prefix)
			}
		})
	}
	in.noDownloads()
}

// TestInstallUpdateUninstall: install into a temporary prefix, run again
// (nothing changes), install a newer build (the binary is replaced by a
// rename and the manifest records it), uninstall (exactly what was
// installed goes, BAL_HOME stays), then install and uninstall --purge
// (BAL_HOME goes too). No download tool is ever called.
func TestInstallUpdateUninstall(t *testing.T) {
	in := newInstaller(t)
	v1, v2 := balBinary(t, "pkgtest-1"), balBinary(t, "pkgtest-2")
	prefix := filepath.Join(in.dir, "prefix")
	bin := filepath.Join(prefix, "bin", "bal")
	manifest := filepath.Join(prefix, "share", "bal", "install-manifest")
	// Something else in the prefix, which bal's uninstall must leave alone.
	writeFile(t, filepath.Join(prefix, "bin", "other-tool"), "#!/bin/sh\n", 0o755)
	writeFile(t, filepath.Join(in.balHome, "config.yaml"), "port: 9295\n", 0o600)
	before := tree(t, prefix)

	out := in.mustRun(nil, "--binary", v1, "--prefix", prefix)
	if !strings.Contains(out, "installed bal pkgtest-1") {
		t.Errorf("first install says %q", out)
	}
	if sha256File(t, bin) != sha256File(t, v1) || !strings.HasPrefix(balVersion(t, bin), "bal pkgtest-1 ") {
		t.Fatalf("%s is not the first build", bin)
	}
	m := manifestEntries(t, manifest)
	if want := bin + "\t" + sha256File(t, v1); len(m["file"]) != 1 || m["file"][0] != want {
		t.Errorf("manifest files %q, want [%q]", m["file"], want)
	}
	if len(m["version"]) != 1 || !strings.HasPrefix(m["version"][0], "bal pkgtest-1 ") {
		t.Errorf("manifest version %q", m["version"])
	}
	installed := tree(t, prefix)

	// Again with the same build: nothing changes.
	out = in.mustRun(nil, "--binary", v1, "--prefix", prefix)
	if !strings.Contains(out, "is already bal pkgtest-1") {
		t.Errorf("second install says %q", out)
	}
	if d := diffTrees(installed, tree(t, prefix)); d != "" {
		t.Errorf("a second identical install changed the prefix:\n%s", d)
	}

	// A newer build replaces the file by a rename: a new inode, no temp left.
	oldInfo, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	in.mustRun(nil, "--binary", v2, "--prefix", prefix)
	newInfo, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if sha256File(t, bin) != sha256File(t, v2) || !strings.HasPrefix(balVersion(t, bin), "bal pkgtest-2 ") {
		t.Fatalf("%s is not the newer build after the update", bin)
	}
	if os.SameFile(oldInfo, newInfo) {
		t.Error("the update wrote into the old file instead of renaming a new one over it")
	}
	m = manifestEntries(t, manifest)
	if want := bin + "\t" + sha256File(t, v2); len(m["file"]) != 1 || m["file"][0] != want {
		t.Errorf("manifest files after the update %q, want [%q]", m["file"], want)
	}
	if len(m["version"]) != 1 || !strings.HasPrefix(m["version"][0], "bal pkgtest-2 ") {
		t.Errorf("manifest version after the update %q", m["version"])
	}
	updated := tree(t, prefix)
	for _, p := range []string{"bin/bal", "share/bal/install-manifest"} {
		if updated[p] == installed[p] {
			t.Errorf("the update did not change %s", p)
		}
		updated[p] = installed[p]
	}
	if d := diffTrees(installed, updated); d != "" {
		t.Errorf("the update changed more than the binary and the manifest:\n%s", d)
	}

	// Uninstall: back to the prefix as it was; BAL_HOME kept.
	homeBefore := tree(t, in.balHome)
	in.mustRun(nil, "--uninstall", "--prefix", prefix)
	if d := diffTrees(before, tree(t, prefix)); d != "" {
		t.Errorf("uninstall did not restore the prefix:\n%s", d)
	}
	if d := diffTrees(homeBefore, tree(t, in.balHome)); d != "" {
		t.Errorf("uninstall without --purge changed BAL_HOME:\n%s", d)
	}
	// Again: nothing to do, still exit 0.
	if out := in.mustRun(nil, "--uninstall", "--prefix", prefix); !strings.Contains(out, "nothing to remove") {
		t.Errorf("second uninstall says %q", out)
	}

	// Purge removes BAL_HOME as well.
	in.mustRun(nil, "--binary", v1, "--prefix", prefix)
	in.mustRun(nil, "--uninstall", "--purge", "--prefix", prefix)
	if d := diffTrees(before, tree(t, prefix)); d != "" {
		t.Errorf("uninstall --purge did not restore the prefix:\n%s", d)
	}
	if _, err := os.Lstat(in.balHome); err == nil {
		t.Errorf("uninstall --purge left %s", in.balHome)
	}
	in.noDownloads()
	if c := calls(t, filepath.Join(in.fakeBin, "systemctl.calls")); c != nil {
		t.Errorf("systemctl called without --systemd: %q", c)
	}
}

// TestInstallDefaultPrefix: without --prefix, root installs into
// /usr/local/bin (staged under DESTDIR here: a test never touches the real
// one) and anyone else into ~/.local/bin.
func TestInstallDefaultPrefix(t *testing.T) {
	in := newInstaller(t)
	v1 := balBinary(t, "pkgtest-1")
	var env []string
	var bin, top string
	if os.Geteuid() == 0 {
		root := filepath.Join(in.dir, "root")
		env = []string{"DESTDIR=" + root}
		bin, top = filepath.Join(root, "usr/local/bin/bal"), root
	} else {
		bin, top = filepath.Join(in.home, ".local/bin/bal"), filepath.Join(in.home, ".local")
	}
	in.mustRun(env, "--binary", v1)
	if got := sha256File(t, bin); got != sha256File(t, v1) {
		t.Errorf("%s is not the build", bin)
	}
	in.mustRun(env, "--uninstall")
	if _, err := os.Stat(bin); err == nil {
		t.Errorf("uninstall left %s", bin)
	}
	if entries, err := os.ReadDir(top); err == nil && len(entries) > 0 {
		t.Errorf("uninstall left %d entries in %s, which install created", len(entries), top)
	}
}

// TestInstallFromSource: --from-source builds the checkout the script is
// in, stamped with its git describe.
func TestInstallFromSource(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a go build")
	}
	in := newInstaller(t)
	prefix := filepath.Join(in.dir, "prefix")
	in.mustRun(nil, "--from-source", "--prefix", prefix)
	root := repoRoot(t)
	want := "dev"
	if out, _, code := run(t, time.Minute, root, nil, "git", "describe", "--always", "--dirty"); code == 0 {
		want = strings.TrimSpace(out)
	}
	if got := balVersion(t, filepath.Join(prefix, "bin", "bal")); !strings.HasPrefix(got, "bal "+want+" ") {
		t.Errorf("--from-source installed %q, want version %s", got, want)
	}
	in.noDownloads()
}

// TestInstallSystemdStaged: --systemd under DESTDIR puts the binary, the
// unit (running the installed path as BAL_USER) and a default
// /etc/bal/config.yaml below DESTDIR, calls the (fake) useradd only because
// BAL_USERADD is set, never systemctl; a second run keeps an edited config;
// uninstall keeps /etc/bal, --purge deletes it, /var/lib/bal and the user.
func TestInstallSystemdStaged(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("--systemd is for Linux")
	}
	in := newInstaller(t)
	v1 := balBinary(t, "pkgtest-1")
	root := filepath.Join(in.dir, "root")
	user := fmt.Sprintf("baltest%d", os.Getpid())
	if exec.Command("id", user).Run() == nil {
		t.Skipf("user %s exists on this machine", user)
	}
	env := []string{"DESTDIR=" + root, "BAL_USER=" + user, "BAL_SYSTEMD_UNIT_DIR=/etc/systemd/system"}
	in.mustRun(env, "--binary", v1, "--prefix", "/usr/local", "--systemd")

	if sha256File(t, filepath.Join(root, "usr/local/bin/bal")) != sha256File(t, v1) {
		t.Error("DESTDIR/usr/local/bin/bal is not the build")
	}
	unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/bal.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nExecStart=/usr/local/bin/bal start -c /etc/bal/config.yaml\n", "\nExecReload=/usr/local/bin/bal graceful\n",
		"\nUser=" + user + "\n", "\nGroup=" + user + "\n", "\nType=notify\n"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("the installed unit lacks %q", strings.TrimSpace(want))
		}
	}
	if bytes.Contains(unit, []byte(root)) {
		t.Error("the unit names a DESTDIR path")
	}
	verifyUnit(t, unit, "/usr/local/bin/bal", filepath.Join(root, "usr/local/bin/bal"))
	config := filepath.Join(root, "etc/bal/config.yaml")
	if sha256File(t, config) != sha256File(t, filepath.Join(repoRoot(t), "packaging/config.yaml")) {
		t.Error("DESTDIR/etc/bal/config.yaml is not packaging/config.yaml")
	}
	mustRun(t, time.Minute, "", nil, v1, "check", "--strict", "-c", config)
	wantUseradd := "--system --user-group --home-dir /var/lib/bal --no-create-home --shell /usr/sbin/nologin " + user
	if c := calls(t, filepath.Join(in.fakeBin, "useradd.calls")); len(c) != 1 || c[0] != wantUseradd {
		t.Errorf("useradd calls %q, want [%q]", c, wantUseradd)
	}

	// Without BAL_USERADD, DESTDIR means no user is created.
	other := filepath.Join(in.dir, "root2")
	out := in.mustRun([]string{"DESTDIR=" + other, "BAL_USER=" + user, "BAL_USERADD="}, "--binary", v1, "--prefix", "/usr/local", "--systemd")
	if !strings.Contains(out, "not creating the system user") {
		t.Errorf("DESTDIR without BAL_USERADD says %q", out)
	}
	if c := calls(t, filepath.Join(in.fakeBin, "useradd.calls")); len(c) != 1 {
		t.Errorf("useradd called %d times, want 1", len(c))
	}

	// Run again after editing the config: the edit stays.
	writeFile(t, config, "# edited\nport: 9295\nbackends:\n  - host: 127.0.0.1\n    port: 9000\n", 0o640)
	edited := tree(t, filepath.Join(root, "etc/bal"))
	in.mustRun(env, "--binary", v1, "--prefix", "/usr/local", "--systemd")
	if d := diffTrees(edited, tree(t, filepath.Join(root, "etc/bal"))); d != "" {
		t.Errorf("a second --systemd install changed /etc/bal:\n%s", d)
	}

	// Uninstall keeps /etc/bal and the state; purge deletes them and the user.
	writeFile(t, filepath.Join(root, "var/lib/bal/bal.log"), "state\n", 0o600)
	in.mustRun(env, "--uninstall", "--prefix", "/usr/local")
	for _, gone := range []string{"usr/local/bin", "etc/systemd"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); err == nil {
			t.Errorf("uninstall left DESTDIR/%s", gone)
		}
	}
	for _, kept := range []string{"etc/bal/config.yaml", "var/lib/bal/bal.log"} {
		if _, err := os.Lstat(filepath.Join(root, kept)); err != nil {
			t.Errorf("uninstall without --purge removed DESTDIR/%s", kept)
		}
	}
	// What it kept stays recorded (and the user it made).
	m := manifestEntries(t, filepath.Join(root, "usr/local/share/bal/install-manifest"))
	if len(m["file"]) != 0 || strings.Join(m["keep"], " ") != "/etc/bal /var/lib/bal" || strings.Join(m["user"], " ") != user {
		t.Errorf("manifest after uninstall: %q", m)
	}
	// Purge after a reinstall, or right after the uninstall: all of it goes.
	in.mustRun(env, "--binary", v1, "--prefix", "/usr/local", "--systemd")
	in.mustRun(env, "--uninstall", "--prefix", "/usr/local")
	in.mustRun(env, "--uninstall", "--purge", "--prefix", "/usr/local")
	for _, gone := range []string{"etc/bal", "var/lib/bal", "usr"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); err == nil {
			t.Errorf("uninstall --purge left DESTDIR/%s", gone)
		}
	}
	// What is left is what the test made itself (var/lib for the state).
	want := map[string]string{".": "d", "var": "d", "var/lib": "d"}
	if d := diffTrees(want, tree(t, root)); d != "" {
		t.Errorf("uninstall --purge left more than the test made:\n%s", d)
	}
	// The fake useradd made no user, so userdel had nothing to delete.
	if c := calls(t, filepath.Join(in.fakeBin, "userdel.calls")); c != nil {
		t.Errorf("userdel called for a user that does not exist: %q", c)
	}
	if c := calls(t, filepath.Join(in.fakeBin, "systemctl.calls")); c != nil {
		t.Errorf("systemctl called under DESTDIR: %q", c)
	}
	in.noDownloads()
}

// releaseTarball writes bal_<version>_<os>_<arch>.tar.gz for this machine
// into dir, laid out as packaging/release.sh lays it out, and returns its name.
func releaseTarball(t *testing.T, dir, version, bin string) string {
	t.Helper()
	top := fmt.Sprintf("bal_%s_%s_%s", version, runtime.GOOS, runtime.GOARCH)
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	add := func(name, src string, mode int64) {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: top + "/" + name, Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	add("bal", bin, 0o755)
	add("sample/bal.service", filepath.Join(repoRoot(t), "sample/bal.service"), 0o644)
	add("packaging/config.yaml", filepath.Join(repoRoot(t), "packaging/config.yaml"), 0o644)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, top+".tar.gz"), buf.String(), 0o644)
	return top + ".tar.gz"
}

// pathWithout is a PATH of one directory holding links to every command of
// the current PATH except the named ones.
func pathWithout(t *testing.T, drop ...string) string {
	t.Helper()
	dir := t.TempDir()
	seen := map[string]bool{}
	for _, d := range drop {
		seen[d] = true
	}
	for _, p := range filepath.SplitList(os.Getenv("PATH")) {
		entries, err := os.ReadDir(p)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if seen[e.Name()] {
				continue
			}
			seen[e.Name()] = true
			if err := os.Symlink(filepath.Join(p, e.Name()), filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// TestInstallFromURL: --url fetches SHA256SUMS and this machine's tarball
// from a file:// folder or a loopback HTTP server (with curl, and with wget
// when curl is missing), verifies the checksum and installs the tarball's
// bal; a tarball or SHA256SUMS that do not match is refused and nothing is
// installed.
func TestInstallFromURL(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skip("no release for " + runtime.GOOS)
	}
	v2 := balBinary(t, "pkgtest-2")
	site := t.TempDir()
	name := releaseTarball(t, site, "pkgtest-2", v2)
	good := sha256File(t, filepath.Join(site, name))
	tarball, err := os.ReadFile(filepath.Join(site, name))
	if err != nil {
		t.Fatal(err)
	}
	corrupt := append([]byte{}, tarball...)
	corrupt[len(corrupt)/2] ^= 0xff
	// Another platform's line, which must not be picked.
	sums := func(sum string) string {
		return fmt.Sprintf("%s  bal_pkgtest-2_plan9_mips.tar.gz\n%s  %s\n", strings.Repeat("0", 64), sum, name)
	}
	writeFile(t, filepath.Join(site, "SHA256SUMS"), sums(good), 0o644)

	var mu sync.Mutex
	served := map[string]int{}
	var files = map[string]map[string][]byte{
		"/good/":    {"SHA256SUMS": []byte(sums(good)), name: tarball},
		"/badsum/":  {"SHA256SUMS": []byte(sums(strings.Repeat("ab", 32))), name: tarball},
		"/corrupt/": {"SHA256SUMS": []byte(sums(good)), name: corrupt},
		"/other/":   {"SHA256SUMS": []byte(fmt.Sprintf("%s  bal_pkgtest-2_plan9_mips.tar.gz\n", good))},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dir, file := r.URL.Path[:strings.LastIndex(r.URL.Path, "/")+1], r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		mu.Lock()
		served[r.URL.Path]++
		mu.Unlock()
		data, ok := files[dir][file]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(data)
	}))
	defer srv.Close()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Log("curl is not installed: the curl cases use whatever fetches first")
	}
	noCurl := pathWithout(t, "curl")

	tests := []struct {
		name   string
		url    string
		path   string // PATH; "" for the normal one
		stderr string // "" for success
		tool   string // the download tool expected to be used
	}{
		{"file", "file://" + site, "", "", ""},
		{"http with curl", srv.URL + "/good", "", "", "curl"},
		{"http with wget", srv.URL + "/good/", noCurl, "", "wget"},
		{"wrong checksum", srv.URL + "/badsum", "", "checksum mismatch", "curl"},
		{"corrupted tarball", srv.URL + "/corrupt", "", "checksum mismatch", "curl"},
		{"no tarball for this machine", srv.URL + "/other", "", "lists no bal_<version>_" + runtime.GOOS + "_" + runtime.GOARCH, "curl"},
		{"missing SHA256SUMS", srv.URL + "/nothing", "", "download failed", "curl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.tool != "" {
				if _, err := exec.LookPath(tc.tool); err != nil {
					t.Skipf("%s is not installed", tc.tool)
				}
			}
			in := newInstaller(t)
			// The real tools: drop the fakes from PATH.
			path := os.Getenv("PATH")
			if tc.path != "" {
				path = tc.path
			}
			prefix := filepath.Join(in.dir, "prefix")
			mu.Lock()
			clear(served)
			mu.Unlock()
			out, errOut, code := in.run([]string{"PATH=" + path}, "--url", tc.url, "--prefix", prefix)
			bin := filepath.Join(prefix, "bin", "bal")
			if tc.stderr != "" {
				if code != 1 || !strings.Contains(errOut, tc.stderr) {
					t.Errorf("exit %d, stderr %q; want exit 1 and %q", code, errOut, tc.stderr)
				}
				if _, err := os.Stat(prefix); err == nil {
					t.Errorf("a refused download created %s", prefix)
				}
				return
			}
			if code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			if sha256File(t, bin) != sha256File(t, v2) {
				t.Errorf("%s is not the tarball's bal", bin)
			}
			if tc.tool != "" {
				mu.Lock()
				got := served["/good/"+name]
				mu.Unlock()
				if got != 1 {
					t.Errorf("the server sent the tarball %d times, want 1", got)
				}
			}
		})
	}
}

// statusJSON is the part of 'bal status --json' these tests read.
type statusJSON struct {
	Running bool    `json:"running"`
	PID     *int    `json:"pid"`
	Version *string `json:"version"`
}

func balStatus(t *testing.T, bin, home string) statusJSON {
	t.Helper()
	out, errOut, _ := run(t, time.Minute, "", []string{"BAL_HOME=" + home}, bin, "status", "--json")
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("bal status --json: %v\n%s%s", err, out, errOut)
	}
	return st
}

// processGone: no process with this PID, or only its zombie.
func processGone(pid int) bool {
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// pid (comm) STATE ...: the state follows the last ')'.
		s := string(data)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
			return s[i+2] == 'Z'
		}
		return false
	}
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

// startInstalledBal starts bin as a daemon for home, relaying to a loopback
// backend of the test, and returns its PID; cleanup stops it (and kills it
// if it outlives the stop).
func startInstalledBal(t *testing.T, bin, home string) int {
	t.Helper()
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, cfg, fmt.Sprintf("port: %d\nbind_address: \"127.0.0.1\"\nbackends:\n  - host: \"127.0.0.1\"\n    port: %d\n",
		freePort(t), backend.Addr().(*net.TCPAddr).Port), 0o600)
	env := []string{"BAL_HOME=" + home}
	mustRun(t, time.Minute, "", env, bin, "start", "-d", "-c", cfg)
	st := balStatus(t, bin, home)
	if !st.Running || st.PID == nil {
		t.Fatalf("bal start -d succeeded but status says %+v", st)
	}
	pid := *st.PID
	t.Cleanup(func() {
		// The installed binary may be gone by now: stop with the build.
		for _, b := range []string{bin, balBinary(t, "pkgtest-1")} {
			if _, err := os.Stat(b); err == nil {
				run(t, time.Minute, "", env, b, "stop", "--timeout", "20s")
				break
			}
		}
		if st := balStatus(t, balBinary(t, "pkgtest-1"), home); st.Running && st.PID != nil {
			_ = syscall.Kill(*st.PID, syscall.SIGKILL)
		}
		if !processGone(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return pid
}

// supportsUpgrade: this bal has a 'bal upgrade' command.
func supportsUpgrade(t *testing.T, bin string) bool {
	t.Helper()
	_, _, code := run(t, time.Minute, "", nil, bin, "upgrade", "--help")
	return code == 0
}

// TestInstallNoticesRunningBal: with a bal running for BAL_HOME and a build
// without 'bal upgrade', an update installs the binary, leaves the running
// bal alone and says to restart it; uninstall stops it before removing it.
func TestInstallNoticesRunningBal(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("uses /proc")
	}
	v1, v2 := balBinary(t, "pkgtest-1"), balBinary(t, "pkgtest-2")
	if supportsUpgrade(t, v2) {
		t.Skip("this bal has 'bal upgrade': TestInstallUpgradesRunningBal covers an update of a running bal")
	}
	in := newInstaller(t)
	prefix := filepath.Join(in.dir, "prefix")
	bin := filepath.Join(prefix, "bin", "bal")
	in.mustRun(nil, "--binary", v1, "--prefix", prefix)
	pid := startInstalledBal(t, bin, in.balHome)

	out := in.mustRun(nil, "--binary", v2, "--prefix", prefix)
	if !strings.Contains(out, "a bal is running for BAL_HOME="+in.balHome) || !strings.Contains(out, "restart it") {
		t.Errorf("the update with a running bal says %q", out)
	}
	if sha256File(t, bin) != sha256File(t, v2) {
		t.Error("the update did not install the newer build")
	}
	st := balStatus(t, v2, in.balHome)
	if !st.Running || st.PID == nil || *st.PID != pid || st.Version == nil || *st.Version != "pkgtest-1" {
		t.Errorf("the running bal changed: %+v", st)
	}

	out = in.mustRun(nil, "--uninstall", "--prefix", prefix)
	if !strings.Contains(out, "stopping the bal running for BAL_HOME="+in.balHome) {
		t.Errorf("uninstall with a running bal says %q", out)
	}
	if st := balStatus(t, v1, in.balHome); st.Running {
		t.Errorf("uninstall left bal running: %+v", st)
	}
	if !processGone(pid) {
		t.Errorf("PID %d still runs after uninstall", pid)
	}
	if _, err := os.Stat(bin); err == nil {
		t.Error("uninstall left the binary")
	}
}

// TestInstallUpgradesRunningBal: an update while a bal runs for BAL_HOME
// moves it to the new binary with 'bal upgrade': a new PID with the new
// version serves, the old process exits.
func TestInstallUpgradesRunningBal(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("uses /proc")
	}
	v1, v2 := balBinary(t, "pkgtest-1"), balBinary(t, "pkgtest-2")
	if !supportsUpgrade(t, v2) {
		t.Skip("'bal upgrade --help' does not exit 0 in this build: bal has no upgrade command yet, so install.sh's upgrade of a running bal cannot run")
	}
	in := newInstaller(t)
	prefix := filepath.Join(in.dir, "prefix")
	bin := filepath.Join(prefix, "bin", "bal")
	in.mustRun(nil, "--binary", v1, "--prefix", prefix)
	oldPID := startInstalledBal(t, bin, in.balHome)

	out := in.mustRun(nil, "--binary", v2, "--prefix", prefix)
	if !strings.Contains(out, "upgrading the bal running for BAL_HOME="+in.balHome) {
		t.Errorf("the update with a running bal says %q", out)
	}
	st := balStatus(t, v2, in.balHome)
	if !st.Running || st.PID == nil || *st.PID == oldPID || st.Version == nil || *st.Version != "pkgtest-2" {
		t.Fatalf("after the update status says %+v; want a new PID running pkgtest-2 (old PID %d)", st, oldPID)
	}
	// The old process drains (nothing is open) and exits; generous bound.
	deadline := time.Now().Add(60 * time.Second)
	for !processGone(oldPID) {
		if time.Now().After(deadline) {
			t.Fatalf("old PID %d still runs 60 s after the upgrade", oldPID)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("upgraded PID %d -> %s", oldPID, strconv.Itoa(*st.PID))
}

// fakeBal writes a shell script that answers like bal: --version says
// "bal <version>", status exits 0 when FAKE_RUNNING=1 (else 3), upgrade
// --help exits 0, upgrade and stop exit FAKE_UPGRADE_EXIT and
// FAKE_STOP_EXIT; every call is logged with its BAL_HOME.
func fakeBal(t *testing.T, dir, version, log string) string {
	t.Helper()
	path := filepath.Join(dir, "fake-"+version, "bal")
	writeFile(t, path, fmt.Sprintf(`#!/bin/sh
echo "BAL_HOME=$BAL_HOME $*" >>'%s'
case "$1" in
--version) echo "bal %s (fake, linux/amd64)" ;;
status) [ "${FAKE_RUNNING:-}" = 1 ] || exit 3 ;;
upgrade) [ "${2:-}" = --help ] || exit "${FAKE_UPGRADE_EXIT:-0}" ;;
stop) exit "${FAKE_STOP_EXIT:-0}" ;;
esac
exit 0
`, log, version), 0o755)
	return path
}

// TestInstallRunsBalUpgrade: install.sh's side of an update of a running
// bal, against a fake bal that has 'bal upgrade': it calls 'bal upgrade
// --binary PREFIX/bin/bal' for BAL_HOME only when the binary changed and a
// bal runs, reports a failed upgrade with exit 1 (the new binary stays
// installed), and on uninstall stops the running bal first, removing
// nothing when that fails.
func TestInstallRunsBalUpgrade(t *testing.T) {
	in := newInstaller(t)
	prefix := filepath.Join(in.dir, "prefix")
	bin := filepath.Join(prefix, "bin", "bal")
	log := filepath.Join(in.dir, "fakebal.calls")
	actions := func() []string { // the calls other than the probes
		var out []string
		for _, c := range calls(t, log) {
			if !strings.HasSuffix(c, " --version") && !strings.HasSuffix(c, " status --brief") && !strings.HasSuffix(c, " upgrade --help") {
				out = append(out, c)
			}
		}
		_ = os.Remove(log)
		return out
	}
	wantUpgrade := []string{"BAL_HOME=" + in.balHome + " upgrade --binary " + bin}
	wantStop := []string{"BAL_HOME=" + in.balHome + " stop"}

	// Nothing runs: no upgrade.
	in.mustRun(nil, "--binary", fakeBal(t, in.dir, "fake-1", log), "--prefix", prefix)
	if a := actions(); a != nil {
		t.Errorf("with no bal running install.sh ran %q", a)
	}
	// A bal runs and the binary changes: bal upgrade.
	running := []string{"FAKE_RUNNING=1"}
	out := in.mustRun(running, "--binary", fakeBal(t, in.dir, "fake-2", log), "--prefix", prefix)
	if a := actions(); strings.Join(a, "\n") != strings.Join(wantUpgrade, "\n") || !strings.Contains(out, "upgrading the bal running for BAL_HOME="+in.balHome) {
		t.Errorf("update with a bal running: calls %q, want %q; stdout %q", a, wantUpgrade, out)
	}
	// The upgrade fails: exit 1 with the reason, the new binary installed.
	fake3 := fakeBal(t, in.dir, "fake-3", log)
	out, errOut, code := in.run(append(running, "FAKE_UPGRADE_EXIT=1"), "--binary", fake3, "--prefix", prefix)
	if code != 1 || !strings.Contains(errOut, "'bal upgrade' failed for BAL_HOME="+in.balHome) || !strings.Contains(errOut, "keeps serving the old binary") {
		t.Errorf("failed upgrade: exit %d, stderr %q (stdout %q)", code, errOut, out)
	}
	if sha256File(t, bin) != sha256File(t, fake3) {
		t.Error("after a failed upgrade the new binary is not installed")
	}
	actions()
	// Unchanged binary: no upgrade, a note.
	out = in.mustRun(running, "--binary", fake3, "--prefix", prefix)
	if a := actions(); a != nil || !strings.Contains(out, "the binary is unchanged") {
		t.Errorf("same build with a bal running: calls %q, stdout %q", a, out)
	}

	// Uninstall stops it first; when the stop fails nothing is removed.
	_, errOut, code = in.run(append(running, "FAKE_STOP_EXIT=1"), "--uninstall", "--prefix", prefix)
	if code != 1 || !strings.Contains(errOut, "nothing removed") {
		t.Errorf("uninstall with a failing stop: exit %d, stderr %q", code, errOut)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Error("a failed stop still removed the binary")
	}
	actions()
	in.mustRun(running, "--uninstall", "--prefix", prefix)
	if a := actions(); strings.Join(a, "\n") != strings.Join(wantStop, "\n") {
		t.Errorf("uninstall: calls %q, want %q", a, wantStop)
	}
	if _, err := os.Stat(prefix); err == nil {
		t.Error("uninstall left the prefix it created")
	}
	in.noDownloads()
}
