package sysclock

import (
	"golang.org/x/sys/unix"
)

// Read asks the kernel with a read-only adjtimex(2) (modes 0), which any
// user may do.
func (Kernel) Read() Status {
	var tx unix.Timex
	if _, err := unix.Adjtimex(&tx); err != nil {
		return Status{State: Unknown, Reason: "adjtimex: " + err.Error()}
	}
	// The field types differ between 32- and 64-bit ports.
	return judge(int64(tx.Status), int64(tx.Maxerror), int64(tx.Esterror))
}
