// Package registry is the list of devices a site knows: who wears each button
// or camera, at which site, and which camera is paired with which button.
//
// It is a small JSON file in the state directory rather than a table in the
// gateway's database so that `vigil device add` can change it while the gateway
// runs (the gateway holds its database open exclusively). Writers take an
// exclusive flock and replace the file atomically; readers reload it when its
// modification time or size changes.
package registry

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/vigil-gw/vigil/devices"
)

// Kind is what sort of device an entry is.
type Kind string

// Device kinds.
const (
	KindButton Kind = "button"
	KindCamera Kind = "camera"
)

// Device is one registered device.
type Device struct {
	ID     string    `json:"id"`
	Kind   Kind      `json:"kind"`
	Site   string    `json:"site"`
	Wearer string    `json:"wearer"`
	Camera string    `json:"camera,omitempty"` // paired camera, for buttons
	Zone   int       `json:"zone"`             // user/zone number reported to the ARC, unique per site
	Added  time.Time `json:"added"`
	// SerialKey is the HMAC key, in hex, that authenticates the device's
	// serial frames (and the gateway's acks to it). Empty for MQTT-only devices.
	SerialKey string `json:"serial_key,omitempty"`
	// UploadTokenSHA256 is the SHA-256 (hex) of a camera's upload token: the
	// token itself is shown once when the camera is added and never stored.
	UploadTokenSHA256 string `json:"upload_token_sha256,omitempty"`
}

// NewUploadToken makes a random camera upload token and the hash the
// registry keeps of it.
func NewUploadToken() (token, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	token = "vcam_" + base64.RawURLEncoding.EncodeToString(b)
	return token, tokenHash(token), nil
}

func tokenHash(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

// Key returns the device's serial HMAC key, if it has one.
func (d Device) Key() ([]byte, bool) {
	if d.SerialKey == "" {
		return nil, false
	}
	k, err := hex.DecodeString(d.SerialKey)
	return k, err == nil && len(k) >= MinKeyLen
}

// MinKeyLen is the shortest serial key accepted, in bytes.
const MinKeyLen = 16

// ErrExists is returned by Add when the id is already registered.
var ErrExists = errors.New("registry: device already registered")

// MaxZone is the largest ADM-CID user/zone number.
const MaxZone = 999

type file struct {
	Devices []Device `json:"devices"`
}

// Registry reads and writes the registry file.
type Registry struct {
	path string

	mu      sync.Mutex
	stamp   stamp
	devices map[string]Device
}

type stamp struct {
	mod  time.Time
	size int64
}

// Open returns the registry stored at path (created on first Add).
func Open(path string) *Registry { return &Registry{path: path} }

// Path is the registry file's location.
func (r *Registry) Path() string { return r.path }

// Validate checks a device entry, naming the field that is wrong.
func (d Device) Validate() error {
	switch {
	case !devices.ValidID(d.ID):
		return fmt.Errorf("registry: id %q: use 1-64 of A-Z a-z 0-9 _ -", d.ID)
	case d.Kind != KindButton && d.Kind != KindCamera:
		return fmt.Errorf("registry: kind %q: must be button or camera", d.Kind)
	case !devices.ValidID(d.Site):
		return fmt.Errorf("registry: site %q: use 1-64 of A-Z a-z 0-9 _ -", d.Site)
	case d.Wearer == "" || len(d.Wearer) > 128:
		return fmt.Errorf("registry: wearer: must be 1-128 characters")
	case d.Camera != "" && !devices.ValidID(d.Camera):
		return fmt.Errorf("registry: camera %q: use 1-64 of A-Z a-z 0-9 _ -", d.Camera)
	case d.Camera != "" && d.Kind != KindButton:
		return fmt.Errorf("registry: camera: only a button is paired with a camera")
	case d.UploadTokenSHA256 != "" && (d.Kind != KindCamera || len(d.UploadTokenSHA256) != 64):
		return fmt.Errorf("registry: upload token: only a camera has one (a SHA-256 in hex)")
	case d.SerialKey != "":
		if k, err := hex.DecodeString(d.SerialKey); err != nil || len(k) < MinKeyLen {
			return fmt.Errorf("registry: serial key: must be at least %d bytes in hex", MinKeyLen)
		}
	}
	return nil
}

// Add registers a device, assigning it the lowest free zone number at its
// site. It fails with ErrExists if the id is taken.
func (r *Registry) Add(d Device, now time.Time) (Device, error) {
	if err := d.Validate(); err != nil {
		return Device{}, err
	}
	unlock, err := r.lock()
	if err != nil {
		return Device{}, err
	}
	defer unlock()
	f, err := r.read()
	if err != nil {
		return Device{}, err
	}
	used := map[int]bool{}
	for _, x := range f.Devices {
		if x.ID == d.ID {
			return Device{}, fmt.Errorf("%w: %s", ErrExists, d.ID)
		}
		if x.Site == d.Site {
			used[x.Zone] = true
		}
	}
	for d.Zone = 1; used[d.Zone]; d.Zone++ {
	}
	if d.Zone > MaxZone {
		return Device{}, fmt.Errorf("registry: site %s has no free zone numbers (max %d)", d.Site, MaxZone)
	}
	d.Added = now.UTC()
	f.Devices = append(f.Devices, d)
	if err := r.write(f); err != nil {
		return Device{}, err
	}
	return d, nil
}

// List returns every device, sorted by site then id.
func (r *Registry) List() ([]Device, error) {
	f, err := r.read()
	if err != nil {
		return nil, err
	}
	slices.SortFunc(f.Devices, func(a, b Device) int {
		if a.Site != b.Site {
			if a.Site < b.Site {
				return -1
			}
			return 1
		}
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return f.Devices, nil
}

// Lookup finds a device by id, reloading the file if it changed on disk.
func (r *Registry) Lookup(id string) (Device, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(); err != nil {
		return Device{}, false, err
	}
	d, ok := r.devices[id]
	return d, ok, nil
}

// CameraByToken finds the camera whose upload token this is.
func (r *Registry) CameraByToken(token string) (Device, bool, error) {
	if token == "" {
		return Device{}, false, nil
	}
	want := []byte(tokenHash(token))
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(); err != nil {
		return Device{}, false, err
	}
	for _, d := range r.devices {
		if d.Kind == KindCamera && subtle.ConstantTimeCompare([]byte(d.UploadTokenSHA256), want) == 1 {
			return d, true, nil
		}
	}
	return Device{}, false, nil
}

// refresh reloads the cached devices if the file changed. r.mu is held.
func (r *Registry) refresh() error {
	st, err := os.Stat(r.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		r.devices, r.stamp = nil, stamp{}
	case err != nil:
		return fmt.Errorf("registry: stat %s: %w", r.path, err)
	case r.devices == nil || st.ModTime() != r.stamp.mod || st.Size() != r.stamp.size:
		f, err := r.read()
		if err != nil {
			return err
		}
		r.devices = make(map[string]Device, len(f.Devices))
		for _, d := range f.Devices {
			r.devices[d.ID] = d
		}
		r.stamp = stamp{st.ModTime(), st.Size()}
	}
	return nil
}

func (r *Registry) read() (file, error) {
	var f file
	b, err := os.ReadFile(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("registry: read %s: %w", r.path, err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("registry: %s is not a registry file: %w", r.path, err)
	}
	return f, nil
}

// write replaces the file atomically: temp file in the same directory, fsync,
// rename, fsync the directory, so a crash leaves either the old or the new
// registry, never a torn one.
func (r *Registry) write(f file) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("registry: encode: %w", err)
	}
	// 0600: the file holds the devices' serial keys.
	return WriteFileAtomic(r.path, append(b, '\n'), 0o600)
}

func (r *Registry) lock() (func(), error) {
	unlock, err := LockFile(r.path)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return unlock, nil
}

// LockFile takes an exclusive lock beside path (path + ".lock"), so that
// processes editing the same small JSON file (the CLI while the gateway runs)
// take turns. The returned function releases it.
func LockFile(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		lf.Close()
		return nil, fmt.Errorf("lock %s: %w", lf.Name(), err)
	}
	return func() { lf.Close() }, nil
}

// WriteFileAtomic writes data to path so that readers and crashes see either
// the old content or the new, never a mixture.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	// fsync before rename: otherwise the rename can reach the disk before the
	// data and a crash leaves an empty file under the real name.
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// fsync the directory so the rename itself is durable.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: open dir: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync dir: %w", path, err)
	}
	return nil
}
