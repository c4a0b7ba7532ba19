package limits

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// somaxconnPath is where Linux publishes net.core.somaxconn.
const somaxconnPath = "/proc/sys/net/core/somaxconn"

// Somaxconn is the kernel's cap on a listen(2) backlog (net.core.somaxconn).
func Somaxconn() (int, error) {
	data, err := os.ReadFile(somaxconnPath)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", somaxconnPath, err)
	}
	return n, nil
}
