package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/vigil-gw/vigil/evidence"
	"github.com/vigil-gw/vigil/gateway/app"
	"github.com/vigil-gw/vigil/gateway/sysclock"
)

// stateInfo is what the state directory check learnt for the others.
type stateInfo struct {
	// dir is where the disk checks measure: the state directory, or its
	// nearest existing parent when it does not exist yet; "" when neither
	// is usable.
	dir string
	// locked is true when another process holds the state database: a
	// gateway is running on this directory.
	locked bool
}

// checkState checks that the state directory exists (or can be made), is a
// writable directory, and that no other gateway holds its database.
func checkState(state string, opts Options) (Finding, stateInfo) {
	abs, err := filepath.Abs(state)
	if err != nil {
		abs = state
	}
	d := map[string]any{"path": abs}
	bad := func(summary, advice string) (Finding, stateInfo) {
		return finding(checkStateDir, Fail, summary, advice, d), stateInfo{}
	}
	writeAdvice := fmt.Sprintf("vigil keeps its alert journal in %s: give the vigil user write access (chown -R vigil: %s) "+
		"and check that the filesystem is not read-only (a failing SD card is often remounted read-only: see dmesg)", abs, abs)
	if opts.Create {
		if err := os.MkdirAll(abs, 0o750); err != nil {
			return bad(fmt.Sprintf("cannot create the state directory %s: %v", abs, unwrapPath(err)), writeAdvice)
		}
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		parent := existingParent(abs)
		d["measured_in"] = parent
		if err := probeWrite(parent); err != nil {
			return bad(fmt.Sprintf("the state directory %s does not exist and cannot be created in %s: %v", abs, parent, unwrapPath(err)), writeAdvice)
		}
		return finding(checkStateDir, OK, fmt.Sprintf("%s does not exist yet: vigil run will create it (%s is writable)", abs, parent), "", d),
			stateInfo{dir: parent}
	case err != nil:
		return bad(fmt.Sprintf("cannot use the state directory %s: %v", abs, unwrapPath(err)),
			"set state in the configuration (or --state) to a directory path")
	case !fi.IsDir():
		return bad(fmt.Sprintf("the state path %s is not a directory", abs),
			"set state in the configuration (or --state) to a directory: vigil keeps several files there")
	}
	if err := probeWrite(abs); err != nil {
		return bad(fmt.Sprintf("the state directory %s is not writable: %v", abs, unwrapPath(err)), writeAdvice)
	}
	db := filepath.Join(abs, app.StateDB)
	locked, err := lockHeld(db, opts.LockWait)
	d["locked"] = locked
	switch {
	case locked:
		f := finding(checkStateDir, Fail, fmt.Sprintf("%s is in use by another vigil process", db),
			"only one gateway may use a state directory: stop the other one (systemctl stop vigil) before starting this one, or give this one its own --state", d)
		return f, stateInfo{dir: abs, locked: true}
	case err != nil:
		return bad(fmt.Sprintf("the state database %s cannot be opened: %v", db, unwrapPath(err)),
			"restore it from a backup, or move it aside to start with an empty journal (undelivered alarms in it would be lost)")
	}
	return finding(checkStateDir, OK, fmt.Sprintf("%s is writable and no other vigil process holds it", abs), "", d), stateInfo{dir: abs}
}

// existingParent is the nearest ancestor of path that exists.
func existingParent(path string) string {
	for p := filepath.Dir(path); ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil || p == filepath.Dir(p) {
			return p
		}
	}
}

// probeWrite creates, writes and removes a file in dir. Permission bits are
// not consulted: root ignores them, while a read-only mount stops everyone.
func probeWrite(dir string) error {
	f, err := os.CreateTemp(dir, ".vigil-doctor-*")
	if err != nil {
		return err
	}
	_, werr := f.Write([]byte("vigil doctor\n"))
	cerr := f.Close()
	rerr := os.Remove(f.Name())
	return errors.Join(werr, cerr, rerr)
}

// lockHeld reports whether another process holds the bbolt database at
// path. A read-only open takes a shared lock, which a running gateway's
// exclusive lock refuses, and changes nothing. A missing file is not held.
func lockHeld(path string, wait time.Duration) (bool, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: wait})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return false, db.Close()
}

// unwrapPath drops the operation and path a *fs.PathError repeats: the
// summaries already name the path.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// fsyncSlow is the p99 above which a disk is too slow for the journal: an
// alarm is acknowledged to the device only after its fsync, and BS 8484
// leaves the gateway milliseconds, not tenths of a second.
const fsyncSlow = 50 * time.Millisecond

// fsyncBlock is the size of each measured write: one page, as bbolt writes.
const fsyncBlock = 4096

// checkFsyncLatency measures fsync in dir and judges it.
func checkFsyncLatency(dir string, n int, budget time.Duration) Finding {
	samples, err := measureFsync(dir, n, budget)
	return judgeFsync(dir, samples, err)
}

// measureFsync appends a page to a scratch file in dir and fsyncs it, up to
// n times or until budget is spent (at least once), timing each write and
// fsync together, as the journal pays for both.
func measureFsync(dir string, n int, budget time.Duration) ([]time.Duration, error) {
	f, err := os.CreateTemp(dir, ".vigil-doctor-fsync-*")
	if err != nil {
		return nil, fmt.Errorf("create a scratch file: %w", unwrapPath(err))
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, fsyncBlock)
	for i := range buf {
		buf[i] = byte(i)
	}
	var samples []time.Duration
	start := time.Now()
	for i := 0; i < n && (i == 0 || time.Since(start) < budget); i++ {
		t0 := time.Now()
		if _, err := f.WriteAt(buf, int64(i)*fsyncBlock); err != nil {
			return samples, fmt.Errorf("write: %w", unwrapPath(err))
		}
		if err := f.Sync(); err != nil {
			return samples, fmt.Errorf("fsync: %w", unwrapPath(err))
		}
		samples = append(samples, time.Since(t0))
	}
	return samples, nil
}

// judgeFsync turns a measurement into a finding: fail when fsync failed,
// warn when the p99 is over fsyncSlow.
func judgeFsync(dir string, samples []time.Duration, err error) Finding {
	d := map[string]any{"dir": dir, "samples": len(samples), "threshold_ms": ms(fsyncSlow)}
	if err != nil {
		d["error"] = err.Error()
		return finding(checkFsync, Fail, fmt.Sprintf("cannot make writes durable in %s: %v", dir, err),
			fmt.Sprintf("alarms are acknowledged to devices only once fsynced: check the disk (dmesg) and move %s to a healthy one", dir), d)
	}
	if len(samples) == 0 {
		return finding(checkFsync, Warn, "no fsync was measured", "run vigil doctor again", d)
	}
	sorted := slices.Sorted(slices.Values(samples))
	p50, p99, worst := percentile(sorted, 0.50), percentile(sorted, 0.99), sorted[len(sorted)-1]
	d["p50_ms"], d["p99_ms"], d["max_ms"] = ms(p50), ms(p99), ms(worst)
	summary := fmt.Sprintf("fsync p99 %s over %d writes in %s (p50 %s, max %s)", fmtMS(p99), len(samples), dir, fmtMS(p50), fmtMS(worst))
	if p99 > fsyncSlow {
		return finding(checkFsync, Warn, summary+": too slow for the alert journal",
			fmt.Sprintf("an SD card with p99 over %s is unfit for the alert journal: move %s to a USB SSD", fmtMS(fsyncSlow), dir), d)
	}
	return finding(checkFsync, OK, summary, "", d)
}

// percentile is the nearest-rank percentile of sorted, which is not empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

func fmtMS(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

// nearWater is how close under evidence.high_water the disk may get before
// it is worth a warning.
const nearWater = 0.05

// checkDiskSpace compares the state filesystem's use with evidence.high_water.
func checkDiskSpace(dir string, highWater float64) Finding {
	disk, err := evidence.DiskOf(dir)
	if err != nil {
		return finding(checkDisk, Warn, fmt.Sprintf("cannot read the free space of %s: %v", dir, err), "", map[string]any{"dir": dir})
	}
	return judgeDisk(dir, disk.Used(), highWater, disk.Avail, disk.Total)
}

// judgeDisk fails when the state disk is above the high-water mark (new
// non-evidential footage is then refused) and warns within nearWater of it.
func judgeDisk(dir string, used, highWater float64, avail, total uint64) Finding {
	if highWater <= 0 || highWater > 1 {
		highWater = app.DefaultConfig().Evidence.HighWater
	}
	d := map[string]any{"dir": dir, "used_fraction": math.Round(used*1e4) / 1e4, "free_bytes": avail, "total_bytes": total, "high_water": highWater}
	summary := fmt.Sprintf("the state disk is %.0f%% used, %s free of %s (evidence.high_water %.0f%%)", used*100, bytesText(avail), bytesText(total), highWater*100)
	advice := fmt.Sprintf("free space on the disk holding %s or move the state directory to a larger disk; "+
		"if footage is piling up, check the uploads (vigil evidence status) and the object store", dir)
	switch {
	case used >= highWater:
		return finding(checkDisk, Fail, summary+": new non-evidential footage is refused", advice, d)
	case used >= highWater-nearWater-1e-9: // 0.9-0.05 is 0.8500000000000001
		return finding(checkDisk, Warn, summary+": close to the point where new footage is refused", advice, d)
	}
	return finding(checkDisk, OK, summary, "", d)
}

func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// clockAdvice is what to do about an unsynchronised clock.
const clockAdvice = "a Raspberry Pi has no RTC: install and enable systemd-timesyncd or chrony (timedatectl set-ntp true); " +
	"until the clock is synchronised, alert times may be wrong and new evidence is marked clock_unsynchronised in the ledger"

// checkClockSync asks the kernel whether the clock is synchronised.
func checkClockSync(c clockReader) Finding {
	st := c.Read()
	d := map[string]any{"state": st.State.String(), "max_error_ms": ms(st.MaxError), "sta_unsync": st.UnsyncFlag}
	switch st.State {
	case sysclock.Synchronised:
		return finding(checkClock, OK, fmt.Sprintf("the clock is synchronised (maximum error %s)", fmtMS(st.MaxError)), "", d)
	case sysclock.Unsynchronised:
		return finding(checkClock, Warn, "the clock is not synchronised to any time source", clockAdvice, d)
	}
	d["reason"] = st.Reason
	return finding(checkClock, Warn, "cannot tell whether the clock is synchronised: "+st.Reason,
		"check it with timedatectl or chronyc tracking", d)
}
