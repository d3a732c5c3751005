package firmwaresim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// PTY is a pseudo-terminal pair standing in for the serial cable between a
// SerialRelay and the gateway: the relay writes to Master, the gateway opens
// Path as its serial port.
type PTY struct {
	// Master is the relay's end; give it to SerialRelayConfig.Line.
	Master *os.File
	// Path is the gateway's end, e.g. /dev/pts/3.
	Path string
	// Link, if set, is a symbolic link to Path (like socat's link=), a
	// stable name to configure the gateway with.
	Link string

	// slave is held open so the master stays usable while the gateway has
	// the port closed (a pty hangs up when the last slave descriptor
	// closes), and so that it is in raw mode before the gateway opens it.
	slave *os.File
}

// OpenPTY makes a pty pair in raw mode and, if link is not empty, a symbolic
// link to its gateway end (replacing an older link, never another file).
func OpenPTY(link string) (*PTY, error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("firmwaresim: open pty: %w", err)
	}
	p, err := newPTY(m, s)
	if err != nil {
		m.Close()
		s.Close()
		return nil, err
	}
	if link != "" {
		if err := replaceLink(p.Path, link); err != nil {
			p.Close()
			return nil, err
		}
		p.Link = link
	}
	return p, nil
}

// newPTY wraps a pty pair from creack/pty. Its ioctls leave the master in
// blocking mode, where Close does not interrupt a Read in progress (the
// descriptor is only released when the Read returns, so the line is never
// hung up and the relay never stops); a non-blocking duplicate goes through
// Go's poller instead, which also gives it write deadlines.
func newPTY(m, s *os.File) (*PTY, error) {
	// F_DUPFD_CLOEXEC, not dup(2): a child process (the gateway under
	// test) must not inherit the master, or the line never hangs up.
	fd, err := unix.FcntlInt(m.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("firmwaresim: pty: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("firmwaresim: pty: %w", err)
	}
	m.Close()
	p := &PTY{Master: os.NewFile(uintptr(fd), "ptmx"), Path: s.Name(), slave: s}
	// Raw mode now: before the gateway opens its end, the line discipline
	// would otherwise echo frames back, translate CR, or stop output on an
	// XOFF byte that happens to be in a MAC.
	if err := makeRaw(s); err != nil {
		p.Master.Close()
		return nil, fmt.Errorf("firmwaresim: pty raw mode: %w", err)
	}
	return p, nil
}

// replaceLink points link at target atomically: a gateway reopening the
// link sees the old target or the new one.
func replaceLink(target, link string) error {
	fi, err := os.Lstat(link)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("firmwaresim: link %s: %w", link, err)
	case fi.Mode()&fs.ModeSymlink == 0:
		return fmt.Errorf("firmwaresim: link %s exists and is not a symbolic link", link)
	}
	tmp := link + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("firmwaresim: link %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("firmwaresim: link %s: %w", link, err)
	}
	return nil
}

// Close hangs up the line, as unplugging a receiver does, and removes the
// link if it still points at this pty. Closing a master a relay has already
// closed is harmless.
func (p *PTY) Close() error {
	p.Master.Close()
	err := p.slave.Close()
	if p.Link != "" {
		if target, lerr := os.Readlink(p.Link); lerr == nil && target == p.Path {
			os.Remove(p.Link)
		}
	}
	return err
}
