package config

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Test them with errors.Is.
var (
	// ErrInvalid: the file was read but is not a valid config. The error is
	// an *Error listing every problem.
	ErrInvalid = errors.New("invalid config")
	// ErrNotFound: the config file does not exist. Load's error also matches
	// fs.ErrNotExist.
	ErrNotFound = errors.New("config file not found")
)

// Error is every problem found in one config file. errors.Is(err,
// ErrInvalid) is true for it.
type Error struct {
	Path   string  // as given to Parse (absolute when it came from Load)
	Issues []Issue // every error, in file order; never empty

	// What could still be learnt from the broken file, for reports (bal
	// check --json): warnings found on the way, the mode when it was valid
	// ("" otherwise) and the number of entries in backends:.
	Warnings     []Issue
	Mode         Mode
	BackendCount int
}

// Error lists the problems on one line: "invalid config f.yaml: line 3:
// unknown key "prot"; line 7: ...".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("invalid config")
	if e.Path != "" {
		b.WriteString(" ")
		b.WriteString(e.Path)
	}
	for i, is := range e.Issues {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(is.String())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// String is "line N: message", or the message alone when Line is 0.
func (is Issue) String() string {
	if is.Line > 0 {
		return fmt.Sprintf("line %d: %s", is.Line, is.Message)
	}
	return is.Message
}
