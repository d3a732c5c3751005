package main

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestVersion checks `vigil version` prints one line naming the build; the
// stamped values themselves are checked on the packaged binary by
// deploy/package's test.
func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		t.Run(arg, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			assert.Equal(t, 0, run([]string{arg}, &stdout, &stderr))
			assert.Regexp(t, regexp.MustCompile(`^vigil \S+ \(commit \S+, built \S+, go1\.\S+ \w+/\w+\)\n$`), stdout.String())
			assert.Empty(t, stderr.String())
		})
	}
}
