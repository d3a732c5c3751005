package main

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestVersion checks --version names the build instead of asking for a
// package file.
func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	assert.Equal(t, exitValid, run([]string{"--version"}, &stdout, &stderr))
	assert.Regexp(t, regexp.MustCompile(`^vigil-verify \S+ \(commit \S+, built \S+, go1\.\S+ \w+/\w+\)\n$`), stdout.String())
	assert.Empty(t, stderr.String())
}
