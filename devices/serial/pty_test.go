package serial

import (
	"os"
	"testing"

	"github.com/creack/pty"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// ptyPair is a real pseudo-terminal standing in for a serial cable: the test
// plays the device on the master, the Port opens the slave by path.
type ptyPair struct {
	master *os.File
	slave  *os.File // kept open so the master is readable before the Port opens
	path   string
}

// openPTY makes a pty pair. creack/pty's ioctls leave the master in blocking
// mode, where Close does not interrupt a Read in progress (the descriptor is
// only released when the Read returns, so the line is never hung up); a
// non-blocking duplicate goes through Go's poller instead. The slave is put
// in raw mode at once, so nothing written before the Port opens it is echoed
// or translated.
func openPTY(t *testing.T) *ptyPair {
	t.Helper()
	m, s, err := pty.Open()
	require.NoError(t, err)
	// F_DUPFD_CLOEXEC, not dup(2): a child process (the gateway under
	// test) must not inherit the master, or the line never hangs up.
	fd, err := unix.FcntlInt(m.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	require.NoError(t, err)
	require.NoError(t, m.Close())
	require.NoError(t, unix.SetNonblock(fd, true))
	p := &ptyPair{master: os.NewFile(uintptr(fd), "ptmx"), slave: s, path: s.Name()}
	require.NoError(t, makeRaw(s))
	t.Cleanup(p.close)
	return p
}

// close hangs up the line, as unplugging a USB receiver does.
func (p *ptyPair) close() {
	p.master.Close()
	p.slave.Close()
}

func makeRaw(f *os.File) error {
	fd := int(f.Fd())
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	tio.Cflag &^= unix.CSIZE | unix.PARENB
	tio.Cflag |= unix.CS8
	tio.Cc[unix.VMIN], tio.Cc[unix.VTIME] = 1, 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, tio)
}
