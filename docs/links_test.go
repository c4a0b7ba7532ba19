package docs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// repoRoot is the repository's top folder, seen from this package's folder
// (where go test runs).
const repoRoot = ".."

// maxReadmeLines bounds README.md: it is a front page, the manual lives here.
const maxReadmeLines = 200

// manual lists the Markdown files whose links are checked, relative to the
// repository root: both READMEs and every file of docs/.
func manual(t *testing.T, root string) []string {
	t.Helper()
	files := []string{"README.md", "README.ko.md"}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatal("docs/ holds no .md file")
	}
	for _, d := range docs {
		rel, err := filepath.Rel(root, d)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, filepath.ToSlash(rel))
	}
	return files
}

// link is one Markdown link or image target found in a file.
type link struct {
	line   int
	target string
}

// document is what the checks need of one Markdown file.
type document struct {
	links   []link
	anchors map[string]bool // GitHub's heading anchors
	lines   int
}

var (
	// inlineLink matches [text](target) and ![alt](target); the target ends
	// at the first space (a title may follow) or closing parenthesis.
	inlineLink = regexp.MustCompile(`!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	// refDef matches a reference definition: [name]: target.
	refDef = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$`)
	// codeSpan matches inline code, whose text is never a link.
	codeSpan = regexp.MustCompile("`+[^`]*`+")
	// heading matches an ATX heading.
	heading = regexp.MustCompile(`^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$`)
	// linkText turns [text](target) in a heading into text.
	linkText = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	// htmlAnchor matches an explicit <a name="..."> or id="..." target.
	htmlAnchor = regexp.MustCompile(`<a\s+(?:name|id)="([^"]+)"`)
)

// parse reads a Markdown file: its links (outside code, the text of a link
// may span lines), its heading anchors and its line count.
func parse(data []byte) document {
	d := document{anchors: map[string]bool{}}
	seen := map[string]int{}
	fence := ""
	var prose []string // one entry per line: the line without code, "" inside a fence
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		d.lines++
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			prose = append(prose, "")
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			prose = append(prose, "")
			continue
		}
		if m := heading.FindStringSubmatch(line); m != nil {
			anchor := slug(m[2])
			n := seen[anchor]
			seen[anchor] = n + 1
			if n > 0 {
				anchor = fmt.Sprintf("%s-%d", anchor, n)
			}
			d.anchors[anchor] = true
		}
		for _, m := range htmlAnchor.FindAllStringSubmatch(line, -1) {
			d.anchors[m[1]] = true
		}
		text := codeSpan.ReplaceAllString(line, "")
		if m := refDef.FindStringSubmatch(text); m != nil {
			d.links = append(d.links, link{line: d.lines, target: m[1]})
			text = ""
		}
		prose = append(prose, text)
	}
	text := strings.Join(prose, "\n")
	for _, m := range inlineLink.FindAllStringSubmatchIndex(text, -1) {
		line := 1 + strings.Count(text[:m[2]], "\n")
		d.links = append(d.links, link{line: line, target: text[m[2]:m[3]]})
	}
	slices.SortStableFunc(d.links, func(a, b link) int { return a.line - b.line })
	return d
}

// slug is the anchor GitHub gives a heading: the rendered text (links
// reduced to their text, code without its backticks) in lower case, every
// character that is not a letter, digit, mark, '-' or '_' dropped, and each
// space turned into '-'.
func slug(text string) string {
	text = linkText.ReplaceAllString(text, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_', unicode.IsLetter(r), unicode.IsDigit(r), unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// external reports whether a link target leaves the repository (a URL with
// a scheme, or mail).
func external(target string) bool {
	if i := strings.Index(target, ":"); i > 0 {
		scheme := target[:i]
		return !strings.ContainsAny(scheme, "/.#")
	}
	return strings.HasPrefix(target, "//")
}

// checker resolves links inside one repository and caches the documents it
// read.
type checker struct {
	root string              // the repository's top folder
	docs map[string]document // by path relative to root
}

func newChecker(root string) *checker {
	return &checker{root: root, docs: map[string]document{}}
}

func (c *checker) load(rel string) (document, error) {
	if d, ok := c.docs[rel]; ok {
		return d, nil
	}
	data, err := os.ReadFile(filepath.Join(c.root, filepath.FromSlash(rel)))
	if err != nil {
		return document{}, err
	}
	d := parse(data)
	c.docs[rel] = d
	return d, nil
}

// resolve checks one link of the file from: the file (or folder) exists
// inside the repository and, when the link names an anchor, the target is
// Markdown with a heading of that anchor. It returns nil for an external link.
func (c *checker) resolve(from, target string) error {
	if external(target) {
		return nil
	}
	path, anchor, _ := strings.Cut(target, "#")
	rel := from
	if path != "" {
		if strings.HasPrefix(path, "/") {
			return fmt.Errorf("absolute path %q: use a path relative to %s", path, from)
		}
		rel = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(from), filepath.FromSlash(path))))
		if rel == ".." || strings.HasPrefix(rel, "../") {
			return fmt.Errorf("%q leaves the repository", path)
		}
		info, err := os.Stat(filepath.Join(c.root, filepath.FromSlash(rel)))
		if err != nil {
			return fmt.Errorf("%q: no such file (%s)", path, rel)
		}
		if info.IsDir() {
			if anchor != "" {
				return fmt.Errorf("%q is a folder, it has no anchor %q", path, anchor)
			}
			return nil
		}
	}
	if anchor == "" {
		return nil
	}
	if !strings.HasSuffix(rel, ".md") {
		return fmt.Errorf("anchor #%s on %s, which is not Markdown", anchor, rel)
	}
	d, err := c.load(rel)
	if err != nil {
		return err
	}
	if !d.anchors[anchor] {
		return fmt.Errorf("%s has no heading with anchor #%s", rel, anchor)
	}
	return nil
}

// TestLinks: every relative link in README.md, README.ko.md and docs/*.md
// names a file of the repository, and every #anchor a heading of its target.
func TestLinks(t *testing.T) {
	broken, checked := checkLinks(t, repoRoot)
	for _, b := range broken {
		t.Error(b)
	}
	if checked == 0 {
		t.Fatal("no relative link found: the parser is broken")
	}
	t.Logf("%d relative links checked", checked)
}

// checkLinks resolves every relative link of the manual under root and
// returns one line per broken link, and how many links it checked.
func checkLinks(t *testing.T, root string) (broken []string, checked int) {
	t.Helper()
	c := newChecker(root)
	for _, file := range manual(t, root) {
		d, err := c.load(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range d.links {
			if external(l.target) {
				continue
			}
			checked++
			if err := c.resolve(file, l.target); err != nil {
				broken = append(broken, fmt.Sprintf("%s:%d: link %s: %v", file, l.line, l.target, err))
			}
		}
	}
	return broken, checked
}

// TestReadmeIsShort: README.md stays a front page.
func TestReadmeIsShort(t *testing.T) {
	c := newChecker(repoRoot)
	d, err := c.load("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if d.lines > maxReadmeLines {
		t.Errorf("README.md has %d lines, at most %d: move detail into docs/", d.lines, maxReadmeLines)
	}
}

// TestReadmesLinkAlike: README.ko.md follows README.md, so both link the
// same files and anchors (apart from their links to each other).
func TestReadmesLinkAlike(t *testing.T) {
	c := newChecker(repoRoot)
	targets := func(file string) []string {
		d, err := c.load(file)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range d.links {
			if external(l.target) || l.target == "README.md" || l.target == "README.ko.md" {
				continue
			}
			if !slices.Contains(out, l.target) {
				out = append(out, l.target)
			}
		}
		slices.Sort(out)
		return out
	}
	en, ko := targets("README.md"), targets("README.ko.md")
	for _, x := range en {
		if !slices.Contains(ko, x) {
			t.Errorf("README.md links %s, README.ko.md does not", x)
		}
	}
	for _, x := range ko {
		if !slices.Contains(en, x) {
			t.Errorf("README.ko.md links %s, README.md does not", x)
		}
	}
}

// TestSlug: headings become the anchors GitHub gives them.
func TestSlug(t *testing.T) {
	tests := []struct{ heading, want string }{
		{"Connect and failover", "connect-and-failover"},
		{"Files in `$BAL_HOME`", "files-in-bal_home"},
		{"`runtime:` keys (advanced mode)", "runtime-keys-advanced-mode"},
		{"Reload (SIGHUP or `bal graceful`)", "reload-sighup-or-bal-graceful"},
		{"Option 1: VRRP with keepalived (active/standby)", "option-1-vrrp-with-keepalived-activestandby"},
		{"bal — an L4 (TCP) load balancer", "bal--an-l4-tcp-load-balancer"},
		{"Metrics of §7, **stable**", "metrics-of-7-stable"},
		{"See [the table](x.md#y) below", "see-the-table-below"},
		{"설정 파일 위치", "설정-파일-위치"},
		{"Step 2.5: done?", "step-25-done"},
	}
	for _, tt := range tests {
		if got := slug(tt.heading); got != tt.want {
			t.Errorf("slug(%q) = %q, want %q", tt.heading, got, tt.want)
		}
	}
}

// TestCheckerFindsBrokenLinks runs the check on a small repository with one
// good and one broken link of each kind: it must report exactly the broken
// ones, so TestLinks cannot pass by checking nothing.
func TestCheckerFindsBrokenLinks(t *testing.T) {
	root := t.TempDir()
	write := func(rel, text string) {
		t.Helper()
		path := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("LICENSE", "MIT\n")
	write("bench/results/x.csv", "a,b\n")
	write("README.ko.md", "# bal\n\n[docs](docs/a.md)\n")
	write("README.md", strings.Join([]string{
		"# bal",
		"## Quick start",
		"[ok file](LICENSE) [ok folder](bench/) [ok anchor](docs/a.md#connect-and-failover)",
		"[ok own anchor](#quick-start) [web](https://example.com/x#y) [mail](mailto:a@b.c)",
		"`[in code](missing.md)`",
		"```",
		"[in a fence](missing.md)",
		"```",
		"[missing file](docs/missing.md)",
		"[missing anchor](docs/a.md#no-such-heading)",
		"[missing own anchor](#no-such-heading)",
		"![missing image](bench/results/x.svg)",
		"[anchor on a folder](bench/#x)",
		"[anchor on a non-Markdown file](LICENSE#x)",
		"[outside](../elsewhere.md)",
		"[ref]: docs/gone.md",
		"[text over",
		"two lines](docs/also-missing.md)",
	}, "\n")+"\n")
	write("docs/a.md", strings.Join([]string{
		"# A",
		"## Connect and failover",
		"## Health checks",
		"## Health checks",
		"[second of two](#health-checks-1) [up](../README.md#quick-start) [csv](../bench/results/x.csv)",
		"[wrong case](#Health-Checks)",
		"[up, missing](../README.md#nope)",
	}, "\n")+"\n")

	broken, checked := checkLinks(t, root)
	want := []string{
		"README.md:9: link docs/missing.md",
		"README.md:10: link docs/a.md#no-such-heading",
		"README.md:11: link #no-such-heading",
		"README.md:12: link bench/results/x.svg",
		"README.md:13: link bench/#x",
		"README.md:14: link LICENSE#x",
		"README.md:15: link ../elsewhere.md",
		"README.md:16: link docs/gone.md",
		"README.md:18: link docs/also-missing.md",
		"docs/a.md:6: link #Health-Checks",
		"docs/a.md:7: link ../README.md#nope",
	}
	if len(broken) != len(want) {
		t.Errorf("%d broken links reported, want %d:\n%s", len(broken), len(want), strings.Join(broken, "\n"))
	}
	for i, w := range want {
		if i < len(broken) && !strings.HasPrefix(broken[i], w+":") {
			t.Errorf("broken[%d] = %q, want it to start with %q", i, broken[i], w)
		}
	}
	if wantChecked := 1 + 13 + 5; checked != wantChecked {
		t.Errorf("%d links checked, want %d", checked, wantChecked)
	}
}
