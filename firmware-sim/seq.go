package firmwaresim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// seqSource hands out a device's sequence numbers. The gateway deduplicates on
// device+seq, so a number must never be reused, not even by a restarted
// simulator: without a file the first number is the start time in Unix
// milliseconds (a restart a second later starts a thousand numbers higher than
// any button publishing less than once a millisecond could have reached); with
// a file, each number is made durable before it is used.
type seqSource struct {
	mu   sync.Mutex
	next uint64
	path string // "" when sequence numbers are not persisted
}

// newSeqSource starts at the number after the one recorded in path, if path
// names an existing file; otherwise at first.
func newSeqSource(path string, first uint64) (*seqSource, error) {
	s := &seqSource{next: first, path: path}
	if path == "" {
		return s, nil
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("firmwaresim: read seq file: %w", err)
	}
	last, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("firmwaresim: seq file %s: %q is not a sequence number", path, strings.TrimSpace(string(b)))
	}
	s.next = last + 1
	return s, nil
}

// take returns the next sequence number. With a file it is recorded before it
// is returned, so a crash after publishing can never lead to its reuse.
func (s *seqSource) take() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.next
	if s.path != "" {
		if err := writeFileDurably(s.path, []byte(strconv.FormatUint(n, 10)+"\n")); err != nil {
			return 0, fmt.Errorf("firmwaresim: record seq %d: %w", n, err)
		}
	}
	s.next++
	return n, nil
}

// writeFileDurably replaces path with data so that, after a crash, the file
// holds either the old or the new content, never a torn mix.
func writeFileDurably(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	// Sync before rename: otherwise the rename can reach the disk before the
	// data and a crash leaves an empty file under the real name.
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// Sync the directory so the rename itself survives a power cut.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
