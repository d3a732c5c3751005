package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// isTerminal reports whether w is a terminal (a character device), without
// a dependency: os.File.Stat reports ModeCharDevice for consoles on Unix and
// Windows.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// quietBelow is the package size under which a non-terminal gets no
// progress lines at all: verifying it takes seconds.
const quietBelow = 256 << 20

// progress shows how far verification has read: a bar redrawn in place on
// a terminal; otherwise a line every 10% for large packages, so a log shows
// the work is moving without filling up.
type progress struct {
	w     io.Writer
	tty   bool
	now   func() time.Time
	last  int // last percentage (or 10% step) shown
	drawn bool
	shown time.Time
}

// update is exhibit.Options.Progress.
func (p *progress) update(done, total int64) {
	if total <= 0 {
		return
	}
	pct := int(done * 100 / total)
	if p.tty {
		// Redraw when the percentage moves, at most ten times a second,
		// but always for the last step.
		if p.drawn && (pct == p.last || (p.now().Sub(p.shown) < 100*time.Millisecond && pct != 100)) {
			return
		}
		const width = 30
		fill := pct * width / 100
		fmt.Fprintf(p.w, "\rverifying [%s%s] %3d%%  %s of %s ", strings.Repeat("#", fill), strings.Repeat(".", width-fill), pct, humanBytes(done), humanBytes(total))
		p.last, p.drawn, p.shown = pct, true, p.now()
		return
	}
	if total < quietBelow {
		return
	}
	if step := pct / 10 * 10; step > p.last && step > 0 {
		fmt.Fprintf(p.w, "verifying: %d%% (%s of %s)\n", step, humanBytes(done), humanBytes(total))
		p.last = step
	}
}

// finish clears the bar so the report starts on a clean line.
func (p *progress) finish() {
	if p == nil || !p.tty || !p.drawn {
		return
	}
	fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", 79))
}
