// Package bytesize reads the sizes synfs's commands take on their command
// lines (512M, 2G), so that synfs and synfs-bench agree on what they mean.
package bytesize

import (
	"fmt"
	"strconv"
	"strings"
)

// Parse reads a byte count with an optional K, M, G or T suffix, in powers
// of 1024 (a trailing B or iB is accepted: 512MiB).
func Parse(v string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(v))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("want a size such as 512M or 2G, got %q", v)
	}
	return n * mult, nil
}
