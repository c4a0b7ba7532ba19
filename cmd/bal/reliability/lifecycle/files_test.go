package lifecycle_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// Test 26: bal runs as a non-root user with no capabilities, and what it
// does when started as root.
//
//   - as uid 65534 (foreground and daemon): full function (proxying,
//     status, stop, bal.pid/bal.sock/bal.log in BAL_HOME), CapEff, CapPrm
//     and CapAmb all 0, every file in BAL_HOME owned by that user;
//   - as root with a BAL_HOME of root's: it serves, warns once in its log
//     that it needs no privileges, and leaves no file of another owner;
//   - as root with a BAL_HOME owned by another user: start (foreground and
//     -d) refuses with a clear error, and no root-owned file appears there.
func TestNonRoot(t *testing.T) {
	baltest.NeedRoot(t)
	const uid = baltest.Nobody
	be := baltest.NewBackend(t, baltest.Name("a"))
	var notes []string
	pass := true
	fail := func(format string, args ...any) {
		pass = false
		t.Errorf(format, args...)
	}

	// Foreground as uid 65534.
	home := userHome(t, uid, uid)
	p := baltest.Start(t, baltest.Config{Port: baltest.FreePort(t), LogLevel: "info", Backends: []string{be.Addr()}, Runtime: quietRuntime()},
		baltest.AsUser(uid, uid), baltest.Home(home))
	caps := baltest.Caps(t, p.PID())
	capsZero := caps["CapEff"] == "0000000000000000" && caps["CapPrm"] == "0000000000000000" && caps["CapAmb"] == "0000000000000000"
	name, whoErr := baltest.Who(p.Addr())
	st := p.RunFor(10*time.Second, "status", "--json")
	modes := fileModes(home)
	if !capsZero || name != "a" || whoErr != nil || st.Code != 0 || baltest.UIDOf(t, p.PID()) != uid {
		fail("as uid %d: caps %v, proxied %q %v, status exit %d", uid, caps, name, whoErr, st.Code)
	}
	if modes["bal.pid"] != "0644" || modes["bal.sock"] != "0600" || modes["."] != "0700" {
		fail("file modes %v, want home 0700, bal.pid 0644, bal.sock 0600", modes)
	}
	if others := baltest.Owners(t, home, uid); len(others) > 0 {
		fail("files in BAL_HOME not owned by uid %d: %v", uid, others)
	}
	if code := p.Stop(10 * time.Second); code != 0 {
		fail("stop: exit %d", code)
	}
	notes = append(notes, fmt.Sprintf("foreground as uid %d: CapEff %s CapPrm %s CapAmb %s, proxied %v, status exit %d, modes %v",
		uid, caps["CapEff"], caps["CapPrm"], caps["CapAmb"], name == "a", st.Code, modes))

	// Daemon as uid 65534: bal.log too.
	home2 := userHome(t, uid, uid)
	cfgPath := filepath.Join(filepath.Dir(home2), "config.yaml")
	baltest.WriteFileAs(t, cfgPath, baltest.Config{Port: baltest.FreePort(t), LogLevel: "info", Backends: []string{be.Addr()}, Runtime: quietRuntime()}.String(), 0o600, uid, uid)
	r := baltest.Runner{Home: home2, UID: uid, GID: uid}
	res, pid := baltest.StartDaemon(t, r, cfgPath, 30*time.Second)
	if res.Code != 0 || pid == 0 {
		fail("start -d as uid %d: exit %d %s", uid, res.Code, res.Stderr)
	} else {
		dcaps := baltest.Caps(t, pid)
		dmodes := fileModes(home2)
		others := baltest.Owners(t, home2, uid)
		stop := r.Run(t, 20*time.Second, "stop")
		if dcaps["CapEff"] != "0000000000000000" || dmodes["bal.log"] != "0640" || len(others) > 0 || stop.Code != 0 {
			fail("daemon as uid %d: caps %v, modes %v, foreign owners %v, stop exit %d %s", uid, dcaps, dmodes, others, stop.Code, stop.Stderr)
		}
		notes = append(notes, fmt.Sprintf("daemon as uid %d: CapEff %s, modes %v, stop exit %d", uid, dcaps["CapEff"], dmodes, stop.Code))
	}

	// As root, with root's own BAL_HOME.
	rootHome := filepath.Join(t.TempDir(), "home")
	q := baltest.Start(t, baltest.Config{Port: baltest.FreePort(t), LogLevel: "info", Backends: []string{be.Addr()}, Runtime: quietRuntime()}, baltest.Home(rootHome))
	warn, _ := q.FindLog(0, rootWarning, nil)
	others := baltest.Owners(t, rootHome, 0)
	if warn.Msg == "" || warn.Level != "WARN" || len(others) > 0 {
		fail("as root: warning %+v (want a WARN %q), files of other owners %v", warn, rootWarning, others)
	}
	q.Stop(10 * time.Second)
	notes = append(notes, fmt.Sprintf("as root (own BAL_HOME): serves, logs WARN %q: %v", rootWarning, warn.Msg != ""))

	// As root, with a BAL_HOME owned by uid 65534.
	userOwned := userHome(t, uid, uid)
	cfgRoot := filepath.Join(t.TempDir(), "config.yaml")
	baltest.WriteFile(t, cfgRoot, baltest.Config{Port: baltest.FreePort(t), LogLevel: "info", Backends: []string{be.Addr()}, Runtime: quietRuntime()}.String())
	asRoot := baltest.Runner{Home: userOwned, UID: -1}
	for _, args := range [][]string{{"start", "-c", cfgRoot}, {"start", "-d", "-c", cfgRoot}} {
		res := asRoot.Run(t, 15*time.Second, args...)
		if res.Code == 0 {
			// It started: stop it before judging.
			_ = asRoot.Run(t, 15*time.Second, "stop")
		}
		foreign := baltest.Owners(t, userOwned, uid)
		if res.Code != 1 || !strings.Contains(res.Stderr, "owned by uid") || len(foreign) > 0 {
			fail("root with a home of uid %d, %v: exit %d %q; files not owned by %d: %v", uid, args, res.Code, res.Stderr, uid, foreign)
		}
		notes = append(notes, fmt.Sprintf("root with a home of uid %d (%s): exit %d %q, root-owned files left %d",
			uid, strings.Join(args[:len(args)-2], " "), res.Code, clip(res.Stderr), len(foreign)))
	}
	baltest.Record(t, 26, strings.Join(notes, "; "), pass)
}

// rootWarning is the log line of a bal started as root.
const rootWarning = "running as root: bal needs no privileges; run it as a dedicated user"

// fileModes lists the permission bits of BAL_HOME (".") and its entries.
func fileModes(home string) map[string]string {
	out := map[string]string{}
	if fi, err := os.Lstat(home); err == nil {
		out["."] = fmt.Sprintf("%04o", fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(home)
	for _, e := range ents {
		if fi, err := os.Lstat(filepath.Join(home, e.Name())); err == nil {
			out[e.Name()] = fmt.Sprintf("%04o", fi.Mode().Perm())
		}
	}
	return out
}

// attack is one unsafe state of BAL_HOME.
type attack struct {
	name string
	// setup prepares home (which does not exist yet) around the victim
	// file; it returns the BAL_HOME to use.
	setup func(t *testing.T, home, victim string) string
	// file is what doctor and the start error must name.
	file string
	// allowed: start may succeed (the unsafe thing is safely replaced, or
	// the state is documented as fine).
	allowed bool
}

// Test 27: bal's files in BAL_HOME are never followed through an attacker's
// links. A victim file of the user bal runs as (uid 65534) sits outside
// BAL_HOME; each case plants bal.pid, bal.log or bal.sock as a symlink to
// it, a hard link to it or a FIFO, or makes BAL_HOME itself unsafe (a
// symlink owned by another user, group-writable, owned by another uid).
// Pass: the victim's hash (and link count) unchanged in every case; `bal
// start -d` refuses with an error naming the file, or safely replaces it;
// nothing blocks (start returns within 2 s); `bal doctor` flags each unsafe
// state (a non-ok check naming it).
func TestFilesNotFollowed(t *testing.T) {
	baltest.NeedRoot(t)
	const uid = baltest.Nobody
	be := baltest.NewBackend(t, baltest.Name("a"))
	symlink := func(name string) func(t *testing.T, home, victim string) string {
		return func(t *testing.T, home, victim string) string {
			baltest.MkdirAs(t, home, 0o700, uid, uid)
			if err := os.Symlink(victim, filepath.Join(home, name)); err != nil {
				t.Fatal(err)
			}
			_ = os.Lchown(filepath.Join(home, name), uid, uid)
			return home
		}
	}
	hardlink := func(name string) func(t *testing.T, home, victim string) string {
		return func(t *testing.T, home, victim string) string {
			baltest.MkdirAs(t, home, 0o700, uid, uid)
			if err := os.Link(victim, filepath.Join(home, name)); err != nil {
				t.Fatal(err)
			}
			return home
		}
	}
	fifo := func(name string) func(t *testing.T, home, victim string) string {
		return func(t *testing.T, home, victim string) string {
			baltest.MkdirAs(t, home, 0o700, uid, uid)
			p := filepath.Join(home, name)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
			_ = os.Lchown(p, uid, uid)
			return home
		}
	}
	var cases []attack
	for _, f := range []string{"bal.pid", "bal.log", "bal.sock"} {
		cases = append(cases,
			attack{f + " symlink to the victim", symlink(f), f, false},
			attack{f + " hard link to the victim", hardlink(f), f, f == "bal.pid"},
			attack{f + " FIFO", fifo(f), f, false},
		)
	}
	cases = append(cases,
		attack{"BAL_HOME a symlink owned by another user", func(t *testing.T, home, victim string) string {
			// The link points at the victim's directory (the user's
			// own, 0700): bal would write its files next to the victim.
			if err := os.Symlink(filepath.Dir(victim), home); err != nil {
				t.Fatal(err)
			}
			_ = os.Lchown(home, baltest.Other, baltest.Other)
			return home
		}, "symlink", false},
		attack{"BAL_HOME a symlink of its own user to a safe directory", func(t *testing.T, home, victim string) string {
			real := home + ".real"
			baltest.MkdirAs(t, real, 0o700, uid, uid)
			if err := os.Symlink(real, home); err != nil {
				t.Fatal(err)
			}
			_ = os.Lchown(home, uid, uid)
			return home
		}, "symlink", true},
		attack{"BAL_HOME group-writable with bal.log planted", func(t *testing.T, home, victim string) string {
			baltest.MkdirAs(t, home, 0o770, uid, uid)
			if err := os.Symlink(victim, filepath.Join(home, "bal.log")); err != nil {
				t.Fatal(err)
			}
			return home
		}, "writable by others", false},
		attack{"BAL_HOME owned by another uid", func(t *testing.T, home, victim string) string {
			baltest.MkdirAs(t, home, 0o755, baltest.Other, baltest.Other)
			return home
		}, "owned by uid", false},
	)

	var notes []string
	pass := true
	for _, tc := range cases {
		base := userHome(t, uid, uid) // a private directory of the user
		victimDir := filepath.Join(base, "victim-dir")
		baltest.MkdirAs(t, victimDir, 0o700, uid, uid)
		victim := filepath.Join(victimDir, "victim.txt")
		baltest.WriteFileAs(t, victim, "precious data of uid 65534\n", 0o644, uid, uid)
		before := baltest.FileHash(victim)
		home := tc.setup(t, filepath.Join(filepath.Dir(base), "balhome"), victim)
		cfgPath := filepath.Join(filepath.Dir(base), "config.yaml")
		baltest.WriteFileAs(t, cfgPath, baltest.Config{Port: baltest.FreePort(t), LogLevel: "info", Backends: []string{be.Addr()}, Runtime: quietRuntime()}.String(), 0o600, uid, uid)
		r := baltest.Runner{Home: home, UID: uid, GID: uid}

		doc := r.Run(t, 20*time.Second, "doctor", "--json", "-c", cfgPath)
		flagged := doctorFlags(doc.Stdout, tc.file)

		res, pid := baltest.StartDaemon(t, r, cfgPath, 30*time.Second)
		started := res.Code == 0 && pid > 0
		if started {
			if stop := r.Run(t, 20*time.Second, "stop"); stop.Code != 0 {
				t.Errorf("%s: stop: %s", tc.name, stop.Stderr)
			}
		}
		after := baltest.FileHash(victim)
		var nlink uint64
		if fi, err := os.Lstat(victim); err == nil {
			nlink = uint64(fi.Sys().(*syscall.Stat_t).Nlink) // uint16 on darwin
		}
		// The victim may keep the attacker's extra link (bal unlinks
		// only its own name); what matters is that bal never wrote it.
		victimSafe := before != "" && after == before
		clearErr := !started && strings.Contains(res.Stderr, tc.file)
		ok := victimSafe && (clearErr || started && tc.allowed) && !res.TimedOut && res.Took < 2*time.Second && flagged != ""
		if !ok {
			pass = false
			t.Errorf("%s: victim unchanged %v (links %d); start exit %d in %v: %q; doctor flag %q\ndoctor: %s",
				tc.name, victimSafe, nlink, res.Code, res.Took, res.Stderr, flagged, clip(doc.Stdout))
		}
		outcome := "refused: " + clip(res.Stderr)
		if started {
			outcome = "started (safely replaced / allowed)"
		}
		notes = append(notes, fmt.Sprintf("%s: victim unchanged %v, %s in %s, doctor %s", tc.name, victimSafe, outcome, ms(res.Took), flagged))
	}
	baltest.Record(t, 27, fmt.Sprintf("%d cases as uid %d: %s", len(cases), uid, strings.Join(notes, "; ")), pass)
}

// doctorFlags returns "<check>=<level>" for the first non-ok check of a
// doctor --json document whose summary mentions what ("" when none).
func doctorFlags(out, what string) string {
	var doc struct {
		Checks []struct {
			Name, Level, Summary string
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return ""
	}
	for _, c := range doc.Checks {
		if c.Level != "ok" && strings.Contains(c.Summary, what) {
			return c.Name + "=" + c.Level
		}
	}
	return ""
}
