package evidence

import "syscall"

// Disk is the space of the filesystem holding a directory, in bytes.
type Disk struct {
	Total uint64
	// Avail is what an unprivileged process may still write: root's
	// reserve does not count, since the gateway cannot use it.
	Avail uint64
}

// DiskOf reads the filesystem holding dir.
func DiskOf(dir string) (Disk, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return Disk{}, err
	}
	bsize := uint64(st.Bsize) // int64, int32 or uint32 depending on the port
	return Disk{Total: uint64(st.Blocks) * bsize, Avail: uint64(st.Bavail) * bsize}, nil
}

// Used is the fraction of the filesystem in use, root's reserve counted as
// used: what Config.HighWater is compared with, here, in vigil doctor and in
// the vigil_state_disk_used_ratio metric.
func (d Disk) Used() float64 {
	if d.Total == 0 {
		return 0
	}
	return 1 - float64(d.Avail)/float64(d.Total)
}
