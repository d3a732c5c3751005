//go:build !linux

package firmwaresim

import (
	"errors"
	"os"
)

// makeRaw is implemented for Linux, where Vigil runs.
func makeRaw(*os.File) error {
	return errors.New("raw mode for a pty is implemented on Linux only")
}
