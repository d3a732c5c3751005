package s3test

import "syscall"

// sysProcAttr asks the kernel to kill MinIO when the test binary dies, so a
// test that panics or is killed by the -timeout alarm leaves no server
// behind. Pdeathsig is tied to the OS thread that started the child; Go only
// retires a thread when a goroutine exits while locked to it, which these
// tests never do.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
