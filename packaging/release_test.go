package packaging

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"debug/macho"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// releaseTimeout bounds one packaging/release.sh run (five cross-compiles).
const releaseTimeout = 10 * time.Minute

// maxLinuxAMD64 is the size limit of the stripped linux/amd64 binary (10 MB).
const maxLinuxAMD64 = 10_000_000

// target is one release platform and what its binary's header must say.
type target struct {
	goos, goarch string
	elfMachine   elf.Machine
	elfClass     elf.Class
	machoCPU     macho.Cpu
}

var targets = []target{
	{goos: "linux", goarch: "amd64", elfMachine: elf.EM_X86_64, elfClass: elf.ELFCLASS64},
	{goos: "linux", goarch: "386", elfMachine: elf.EM_386, elfClass: elf.ELFCLASS32},
	{goos: "linux", goarch: "arm64", elfMachine: elf.EM_AARCH64, elfClass: elf.ELFCLASS64},
	{goos: "darwin", goarch: "arm64", machoCPU: macho.CpuArm64},
	{goos: "darwin", goarch: "amd64", machoCPU: macho.CpuAmd64},
}

// release is the outcome of building the release twice, from two clones of
// this checkout in different folders.
type release struct {
	dists   [2]string // the two dist/ folders
	version string    // git describe in the clones
	epoch   int64     // the commit time
	err     error
}

var (
	releaseOnce   sync.Once
	releaseResult release
)

// buildRelease clones this checkout twice (the second deeper, in another
// folder), lays the working tree's uncommitted changes over both, and runs
// packaging/release.sh in each with the defaults (VERSION from git describe,
// SOURCE_DATE_EPOCH from the commit). Done once for all tests.
func buildRelease(t *testing.T) release {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the release build (five cross-compiles, twice)")
	}
	needTool(t, "git")
	needTool(t, "dpkg-deb")
	if err := exec.Command("git", "-C", repoRoot(t), "rev-parse", "HEAD").Run(); err != nil {
		t.Skipf("%s is not a git checkout (the release takes its version and time from the commit): %v", repoRoot(t), err)
	}
	releaseOnce.Do(func() {
		releaseResult = doBuildRelease(t)
	})
	if releaseResult.err != nil {
		t.Fatal(releaseResult.err)
	}
	return releaseResult
}

func doBuildRelease(t *testing.T) (r release) {
	root := repoRoot(t)
	git := func(dir string, args ...string) (string, error) {
		out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("git %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	commit, err := git(root, "rev-parse", "HEAD")
	if err != nil {
		return release{err: err}
	}
	changed, err := git(root, "ls-files", "--modified", "--others", "--exclude-standard")
	if err != nil {
		return release{err: err}
	}
	clones := [2]string{filepath.Join(shared, "a", "bal"), filepath.Join(shared, "b", "some", "deeper", "folder", "bal")}
	for i, dir := range clones {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return release{err: err}
		}
		if _, err := git(root, "clone", "--quiet", "--no-checkout", root, dir); err != nil {
			return release{err: err}
		}
		if _, err := git(dir, "checkout", "--quiet", "--detach", commit); err != nil {
			return release{err: err}
		}
		for _, rel := range strings.Fields(changed) {
			if err := overlay(filepath.Join(root, rel), filepath.Join(dir, rel)); err != nil {
				return release{err: err}
			}
		}
		if i == 0 {
			if r.version, err = git(dir, "describe", "--always", "--dirty"); err != nil {
				return release{err: err}
			}
			ct, err := git(dir, "log", "-1", "--format=%ct")
			if err != nil {
				return release{err: err}
			}
			if r.epoch, err = strconv.ParseInt(ct, 10, 64); err != nil {
				return release{err: err}
			}
		}
		start := time.Now()
		out, errOut, code := run(t, releaseTimeout, dir, []string{"VERSION=", "SOURCE_DATE_EPOCH="}, "bash", "packaging/release.sh")
		if code != 0 {
			return release{err: fmt.Errorf("release.sh in %s: exit %d\n%s%s", dir, code, out, errOut)}
		}
		t.Logf("release.sh in %s: %s", dir, time.Since(start).Round(time.Second))
		r.dists[i] = filepath.Join(dir, "dist")
	}
	return r
}

// overlay makes dst what src is: a copy of the file, or gone when src is.
func overlay(src, dst string) error {
	info, err := os.Lstat(src)
	if os.IsNotExist(err) {
		return os.RemoveAll(dst)
	}
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(dst, data, info.Mode().Perm()); err != nil {
		return err
	}
	return os.Chmod(dst, info.Mode().Perm())
}

func (r release) tarball(tg target) string {
	return fmt.Sprintf("bal_%s_%s_%s.tar.gz", r.version, tg.goos, tg.goarch)
}

func (r release) deb() string { return fmt.Sprintf("bal_%s_amd64.deb", r.version) }

// tarEntry is one member of a tarball.
type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

func readTarball(t *testing.T, path string) map[string]tarEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if gz.Name != "" || !gz.ModTime.IsZero() {
		t.Errorf("%s: gzip header keeps name %q, mtime %v (gzip -n drops them)", path, gz.Name, gz.ModTime)
	}
	entries := map[string]tarEntry{}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		entries[hdr.Name] = tarEntry{hdr, data}
	}
	return entries
}

// TestReleaseArtifacts: make release's dist/ holds exactly five tarballs,
// the .deb and SHA256SUMS; each tarball holds the binary, install.sh,
// README.md, LICENSE, the sample unit and plist and the system config,
// owned by 0:0 with the commit time, and a stripped static binary whose
// ELF or Mach-O header is its os/arch's.
func TestReleaseArtifacts(t *testing.T) {
	r := buildRelease(t)
	dist := r.dists[0]
	want := []string{"SHA256SUMS", r.deb()}
	for _, tg := range targets {
		want = append(want, r.tarball(tg))
	}
	sort.Strings(want)
	entries, err := os.ReadDir(dist)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("dist/ holds %q, want %q", got, want)
	}

	root := repoRoot(t)
	for _, tg := range targets {
		t.Run(tg.goos+"_"+tg.goarch, func(t *testing.T) {
			name := r.tarball(tg)
			top := strings.TrimSuffix(name, ".tar.gz") + "/"
			files := readTarball(t, filepath.Join(dist, name))
			wantFiles := map[string]string{ // name in the tarball -> its source in the checkout ("" for the binary)
				"bal": "", "install.sh": "install.sh", "README.md": "README.md", "LICENSE": "LICENSE",
				"sample/bal.service": "sample/bal.service", "sample/com.bal.daemon.plist": "sample/com.bal.daemon.plist",
				"packaging/config.yaml": "packaging/config.yaml",
			}
			wantNames := []string{top, top + "packaging/", top + "sample/"}
			for n := range wantFiles {
				wantNames = append(wantNames, top+n)
			}
			sort.Strings(wantNames)
			var names []string
			for n, e := range files {
				names = append(names, n)
				h := e.hdr
				if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || h.ModTime.Unix() != r.epoch {
					t.Errorf("%s: owner %d:%d (%q:%q), mtime %d; want 0:0 numeric, mtime %d", n, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime.Unix(), r.epoch)
				}
				if mode := h.FileInfo().Mode().Perm(); (h.Typeflag == tar.TypeDir || n == top+"bal" || n == top+"install.sh") && mode != 0o755 ||
					h.Typeflag == tar.TypeReg && n != top+"bal" && n != top+"install.sh" && mode != 0o644 {
					t.Errorf("%s: mode %v", n, mode)
				}
			}
			sort.Strings(names)
			if strings.Join(names, " ") != strings.Join(wantNames, " ") {
				t.Fatalf("members %q, want %q", names, wantNames)
			}
			for n, src := range wantFiles {
				if src == "" {
					continue
				}
				data, err := os.ReadFile(filepath.Join(root, src))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(files[top+n].data, data) {
					t.Errorf("%s differs from the checkout's %s", n, src)
				}
			}
			checkBinary(t, tg, files[top+"bal"].data, r.version)
		})
	}
}

// checkBinary: the header matches the target, there is no symbol table or
// DWARF (-s -w), no interpreter (static), and the version is stamped.
func checkBinary(t *testing.T, tg target, bin []byte, version string) {
	t.Helper()
	if !bytes.Contains(bin, []byte(version)) {
		t.Errorf("the binary does not contain its version %q", version)
	}
	switch tg.goos {
	case "linux":
		f, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			t.Fatalf("not ELF: %v", err)
		}
		if f.Machine != tg.elfMachine || f.Class != tg.elfClass || f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX || f.Type != elf.ET_EXEC {
			t.Errorf("ELF %v %v %v %v; want %v %v, an executable", f.Machine, f.Class, f.OSABI, f.Type, tg.elfMachine, tg.elfClass)
		}
		if f.Section(".symtab") != nil {
			t.Error("ELF has a symbol table: not stripped")
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("ELF has an interpreter: not static (CGO_ENABLED=0)")
			}
		}
		if _, err := f.DWARF(); err == nil {
			t.Error("ELF has DWARF: not built with -w")
		}
	case "darwin":
		f, err := macho.NewFile(bytes.NewReader(bin))
		if err != nil {
			t.Fatalf("not Mach-O: %v", err)
		}
		if f.Cpu != tg.machoCPU || f.Magic != macho.Magic64 || f.Type != macho.TypeExec {
			t.Errorf("Mach-O %v magic %#x type %v; want %v, 64-bit, an executable", f.Cpu, f.Magic, f.Type, tg.machoCPU)
		}
		if _, err := f.DWARF(); err == nil {
			t.Error("Mach-O has DWARF: not built with -w")
		}
	}
	if tg.goos == "linux" && tg.goarch == "amd64" {
		t.Logf("linux/amd64 binary: %d bytes (limit %d)", len(bin), maxLinuxAMD64)
		if len(bin) > maxLinuxAMD64 {
			t.Errorf("linux/amd64 binary is %d bytes, over %d", len(bin), maxLinuxAMD64)
		}
	}
	if tg.goos == runtime.GOOS && tg.goarch == runtime.GOARCH {
		path := filepath.Join(t.TempDir(), "bal")
		writeFile(t, path, string(bin), 0o755)
		if got := balVersion(t, path); !strings.HasPrefix(got, "bal "+version+" ") {
			t.Errorf("--version says %q, want version %s", got, version)
		}
	}
}

// TestReleaseChecksums: SHA256SUMS lists every other file of dist/ once,
// in sha256sum's format, and every sum matches (sha256sum -c agrees).
func TestReleaseChecksums(t *testing.T) {
	r := buildRelease(t)
	dist := r.dists[0]
	f, err := os.Open(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	listed := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 || strings.ContainsAny(name, "/ ") {
			t.Errorf("SHA256SUMS line %q is not '<sha256>  <name>'", sc.Text())
			continue
		}
		if listed[name] {
			t.Errorf("%s listed twice", name)
		}
		listed[name] = true
		if got := sha256File(t, filepath.Join(dist, name)); got != sum {
			t.Errorf("%s: SHA256SUMS says %s, the file is %s", name, sum, got)
		}
	}
	entries, err := os.ReadDir(dist)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "SHA256SUMS" && !listed[e.Name()] {
			t.Errorf("%s is not in SHA256SUMS", e.Name())
		}
	}
	if _, err := exec.LookPath("sha256sum"); err == nil {
		mustRun(t, time.Minute, dist, nil, "sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS")
	}
}

// TestReleaseReproducible: the two builds, from clones in different
// folders, are byte-identical, file by file.
func TestReleaseReproducible(t *testing.T) {
	r := buildRelease(t)
	a, b := tree(t, r.dists[0]), tree(t, r.dists[1])
	if d := diffTrees(a, b); d != "" {
		t.Errorf("two builds of one commit differ:\n%s", d)
	}
	if len(a) != len(targets)+3 { // the folder, the tarballs, the .deb, SHA256SUMS
		t.Errorf("compared %d entries, want %d", len(a), len(targets)+3)
	}
}

// debField is a field of 'dpkg-deb --field'.
func debField(t *testing.T, deb, field string) string {
	t.Helper()
	return strings.TrimSpace(mustRun(t, time.Minute, "", nil, "dpkg-deb", "--field", deb, field))
}

// TestReleaseDebMetadata: the .deb's control data (dpkg-deb --info) and
// contents (dpkg-deb --contents): the binary in /usr/bin, the unit in
// /lib/systemd/system running it, /etc/bal/config.yaml as a conffile that
// passes bal check --strict, every file root-owned with the commit time.
func TestReleaseDebMetadata(t *testing.T) {
	r := buildRelease(t)
	deb := filepath.Join(r.dists[0], r.deb())
	info := mustRun(t, time.Minute, "", nil, "dpkg-deb", "--info", deb)
	for _, want := range []string{"Package: bal", "Architecture: amd64", "conffiles", "postinst", "prerm", "postrm"} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb --info lacks %q:\n%s", want, info)
		}
	}
	if v := debField(t, deb, "Version"); v == "" || v[0] < '0' || v[0] > '9' {
		t.Errorf("Version %q does not start with a digit", v)
	}
	if conf := mustRun(t, time.Minute, "", nil, "dpkg-deb", "--info", deb, "conffiles"); strings.TrimSpace(conf) != "/etc/bal/config.yaml" {
		t.Errorf("conffiles %q, want /etc/bal/config.yaml", conf)
	}

	contents := mustRun(t, time.Minute, "", nil, "dpkg-deb", "--contents", deb)
	paths := map[string]string{} // path -> mode
	for _, line := range strings.Split(strings.TrimSpace(contents), "\n") {
		// drwxr-xr-x root/root 0 2026-01-01 00:00 ./etc/
		fields := strings.Fields(line)
		if len(fields) < 6 {
			t.Fatalf("dpkg-deb --contents line %q", line)
		}
		if fields[1] != "root/root" {
			t.Errorf("%s is owned by %s", fields[5], fields[1])
		}
		paths[strings.TrimSuffix(strings.TrimPrefix(fields[5], "."), "/")] = fields[0]
	}
	for path, mode := range map[string]string{
		"/usr/bin/bal": "-rwxr-xr-x", "/lib/systemd/system/bal.service": "-rw-r--r--", "/etc/bal/config.yaml": "-rw-r--r--",
		"/usr/share/doc/bal/copyright": "-rw-r--r--",
	} {
		if got, ok := paths[path]; !ok || got != mode {
			t.Errorf("%s: mode %q (listed %v), want %s", path, got, ok, mode)
		}
	}

	x := t.TempDir()
	mustRun(t, time.Minute, "", nil, "dpkg-deb", "--extract", deb, x)
	err := filepath.WalkDir(x, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.ModTime().Unix() != r.epoch {
			t.Errorf("%s: mtime %d, want the commit time %d", path, info.ModTime().Unix(), r.epoch)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile(filepath.Join(x, "lib/systemd/system/bal.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nExecStart=/usr/bin/bal start -c /etc/bal/config.yaml\n", "\nExecReload=/usr/bin/bal graceful\n", "\nUser=bal\n"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(want))
		}
	}
	if bytes.Contains(unit, []byte("/usr/local/bin")) {
		t.Error("the unit still names /usr/local/bin")
	}
	verifyUnit(t, unit, "/usr/bin/bal", filepath.Join(x, "usr/bin/bal"))
	mustRun(t, time.Minute, "", nil, balBinary(t, "pkgtest-1"), "check", "--strict", "-c", filepath.Join(x, "etc/bal/config.yaml"))
}

// hostState is what of the real system a .deb installed elsewhere must not
// change: the bal user and the package's paths.
func hostState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	out, _, code := run(t, time.Minute, "", nil, "getent", "passwd", "bal")
	fmt.Fprintf(&b, "user bal: %d %s\n", code, out)
	for _, p := range []string{"/usr/bin/bal", "/lib/systemd/system/bal.service", "/etc/bal", "/var/lib/bal"} {
		_, err := os.Lstat(p)
		fmt.Fprintf(&b, "%s: %v\n", p, err == nil)
	}
	return b.String()
}

// TestReleaseDebInstallRemove: the .deb installs, reinstalls (an upgrade),
// removes (the conffile stays) and purges (/etc/bal and /var/lib/bal go)
// cleanly with dpkg --root into a throw-away folder, its maintainer scripts
// run from outside it with DPKG_ROOT set; the machine's own users and files
// do not change.
func TestReleaseDebInstallRemove(t *testing.T) {
	r := buildRelease(t)
	needTool(t, "dpkg")
	deb := filepath.Join(r.dists[0], r.deb())
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		writeFile(t, filepath.Join(root, f), "", 0o644)
	}
	host := hostState(t)
	dpkg := func(args ...string) string {
		t.Helper()
		// passwd is a dependency on a real system; the empty root has none.
		base := []string{"--root=" + root, "--log=" + filepath.Join(root, "dpkg.log"), "--force-not-root",
			"--force-script-chrootless", "--force-depends"}
		return mustRun(t, 2*time.Minute, "", nil, "dpkg", append(base, args...)...)
	}
	status := func() string {
		out, _, _ := run(t, time.Minute, "", nil, "dpkg-query", "--root="+root, "--showformat=${Status}", "--show", "bal")
		return strings.TrimSpace(out)
	}
	exists := func(p string) bool {
		_, err := os.Lstat(filepath.Join(root, p))
		return err == nil
	}

	out := dpkg("--install", deb)
	if !strings.Contains(out, "systemctl enable --now bal") {
		t.Errorf("postinst printed %q", out)
	}
	if s := status(); s != "install ok installed" {
		t.Fatalf("status after install %q", s)
	}
	for _, p := range []string{"usr/bin/bal", "lib/systemd/system/bal.service", "etc/bal/config.yaml", "usr/share/doc/bal/copyright", "var/lib/bal"} {
		if !exists(p) {
			t.Errorf("after install %s is missing", p)
		}
	}
	if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
		if v := balVersion(t, filepath.Join(root, "usr/bin/bal")); !strings.HasPrefix(v, "bal "+r.version+" ") {
			t.Errorf("the installed bal says %q", v)
		}
	}
	// An edited conffile survives a reinstall (postinst's upgrade path).
	writeFile(t, filepath.Join(root, "etc/bal/config.yaml"), "# edited\n", 0o644)
	dpkg("--force-confold", "--install", deb)
	if data, _ := os.ReadFile(filepath.Join(root, "etc/bal/config.yaml")); string(data) != "# edited\n" {
		t.Errorf("reinstall replaced the edited conffile with %q", data)
	}

	dpkg("--remove", "bal")
	if s := status(); s != "deinstall ok config-files" {
		t.Errorf("status after remove %q", s)
	}
	for _, p := range []string{"usr/bin/bal", "lib/systemd/system/bal.service", "usr/share/doc/bal"} {
		if exists(p) {
			t.Errorf("after remove %s is still there", p)
		}
	}
	for _, p := range []string{"etc/bal/config.yaml", "var/lib/bal"} {
		if !exists(p) {
			t.Errorf("remove (not purge) deleted %s", p)
		}
	}

	dpkg("--purge", "bal")
	if s := status(); s != "" {
		t.Errorf("status after purge %q, want none", s)
	}
	left := tree(t, root)
	for p := range left {
		if p != "." && p != "var" && p != "var/lib" && p != "dpkg.log" && !strings.HasPrefix(p, "var/lib/dpkg") {
			t.Errorf("left after purge: %s", p)
		}
	}
	if got := hostState(t); got != host {
		t.Errorf("the machine changed:\nbefore:\n%s\nafter:\n%s", host, got)
	}
}

// TestReleaseInstallFromURL: install.sh --url file://dist installs this
// machine's tarball from the real release, checksum verified.
func TestReleaseInstallFromURL(t *testing.T) {
	r := buildRelease(t)
	found := false
	for _, tg := range targets {
		found = found || tg.goos == runtime.GOOS && tg.goarch == runtime.GOARCH
	}
	if !found {
		t.Skipf("no release for %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	in := newInstaller(t)
	prefix := filepath.Join(in.dir, "prefix")
	in.mustRun([]string{"PATH=" + os.Getenv("PATH")}, "--url", "file://"+r.dists[0], "--prefix", prefix)
	if v := balVersion(t, filepath.Join(prefix, "bin", "bal")); !strings.HasPrefix(v, "bal "+r.version+" ") {
		t.Errorf("installed %q, want version %s", v, r.version)
	}
}
