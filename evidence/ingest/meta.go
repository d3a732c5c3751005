package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-gw/vigil/evidence/ledger"
)

// Meta is what a camera or dock declares about one clip. It is checked
// before a byte is stored: a clip id becomes part of file names and object
// keys, so anything that could climb out of a directory is refused.
type Meta struct {
	Camera   string    `json:"camera"`
	Clip     string    `json:"clip"`
	SHA256   string    `json:"sha256"`
	Size     int64     `json:"size"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Filename string    `json:"filename,omitempty"` // the camera's own name for it, informational
	Type     string    `json:"type,omitempty"`     // MIME type, informational
}

// MetaError names the metadata field that is wrong and why.
type MetaError struct {
	Field   string
	Problem string
}

func (e *MetaError) Error() string { return "ingest: metadata " + e.Field + ": " + e.Problem }

func metaErr(field, format string, args ...any) error {
	return &MetaError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Limits on declared metadata.
const (
	MaxClipSpan  = 24 * time.Hour
	maxFilename  = 255
	maxMIME      = 100
	maxSidecar   = 4096
	maxMetaValue = 256
)

// Check validates m. size, when positive, is the upload's declared length,
// which must agree with m.Size if that was declared too.
func (m *Meta) Check() error {
	switch {
	case !ledger.ValidCameraID(m.Camera):
		return metaErr("camera", "%q is not a device id (1-64 of A-Z a-z 0-9 _ -)", trim(m.Camera))
	case !ledger.ValidClipID(m.Clip):
		return metaErr("clip", "%q must be 1-128 of A-Z a-z 0-9 . _ - starting with a letter or digit, without \"..\"", trim(m.Clip))
	case !ledger.ValidSHA256(m.SHA256):
		return metaErr("sha256", "must be 64 lowercase hex digits")
	case m.Size <= 0:
		return metaErr("size", "%d is not a size in bytes", m.Size)
	case m.Start.IsZero() || m.End.IsZero():
		return metaErr("start", "start and end are both required (RFC 3339)")
	case m.End.Before(m.Start) || m.End.Sub(m.Start) > MaxClipSpan:
		return metaErr("end", "%s to %s is not a clip's span (at most %s)", m.Start.UTC().Format(time.RFC3339), m.End.UTC().Format(time.RFC3339), MaxClipSpan)
	case len(m.Filename) > maxFilename || strings.ContainsAny(m.Filename, "/\\\x00") || hasControl(m.Filename):
		return metaErr("filename", "must be a plain file name of at most %d bytes", maxFilename)
	case len(m.Type) > maxMIME || hasControl(m.Type):
		return metaErr("type", "is not a MIME type")
	}
	m.Start, m.End = m.Start.UTC(), m.End.UTC()
	return nil
}

// ParseUploadMetadata reads a tus upload's metadata (the Upload-Metadata
// header, already base64-decoded by the tus handler) and its declared length.
func ParseUploadMetadata(md map[string]string, length int64) (Meta, error) {
	for k, v := range md {
		if len(v) > maxMetaValue {
			return Meta{}, metaErr(trim(k), "value longer than %d bytes", maxMetaValue)
		}
		switch k {
		case "camera", "clip", "sha256", "start", "end", "filename", "type", "filetype", "name":
		default:
			return Meta{}, metaErr(trim(k), "unknown key (known: camera, clip, sha256, start, end, filename, type)")
		}
	}
	m := Meta{Camera: md["camera"], Clip: md["clip"], SHA256: md["sha256"], Size: length,
		Filename: first(md["filename"], md["name"]), Type: first(md["type"], md["filetype"])}
	var err error
	if m.Start, err = parseTime("start", md["start"]); err != nil {
		return Meta{}, err
	}
	if m.End, err = parseTime("end", md["end"]); err != nil {
		return Meta{}, err
	}
	if err := m.Check(); err != nil {
		return Meta{}, err
	}
	return m, nil
}

// ParseSidecar reads a dock's sidecar JSON describing one clip. Unknown
// fields are refused so a typo does not silently drop a value.
func ParseSidecar(b []byte) (Meta, error) {
	if len(b) > maxSidecar {
		return Meta{}, metaErr("sidecar", "is %d bytes, more than %d", len(b), maxSidecar)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Meta
	if err := dec.Decode(&m); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Meta{}, metaErr(te.Field, "wrong type: %v", err)
		}
		return Meta{}, metaErr("sidecar", "not a JSON object of clip metadata: %v", err)
	}
	if dec.More() {
		return Meta{}, metaErr("sidecar", "trailing data after the object")
	}
	if err := m.Check(); err != nil {
		return Meta{}, err
	}
	return m, nil
}

func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, metaErr(field, "missing (RFC 3339)")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, metaErr(field, "%q is not an RFC 3339 time", trim(s))
	}
	return t, nil
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f })
}

// trim shortens what a client sent before it goes into an error message.
func trim(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
