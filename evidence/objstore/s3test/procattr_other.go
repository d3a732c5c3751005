//go:build !linux

package s3test

import "syscall"

// sysProcAttr has no parent-death signal outside Linux; Stop in t.Cleanup is
// the only shutdown there.
func sysProcAttr() *syscall.SysProcAttr { return nil }
