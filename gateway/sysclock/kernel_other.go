//go:build !linux

package sysclock

import "runtime"

// Read reports Unknown: only Linux's adjtimex is read.
func (Kernel) Read() Status {
	return Status{State: Unknown, Reason: "clock synchronisation cannot be read on " + runtime.GOOS}
}
