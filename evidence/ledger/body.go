package ledger

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Ingest methods, the values of Clip.Ingest. They are recorded because a
// clip copied from a dock and one uploaded over the network reached the
// gateway by different custody paths.
const (
	IngestTUS  = "tus"
	IngestDock = "dock"
)

// timeLayout is the one time format of entry bodies and checkpoint notes:
// UTC, always three fraction digits, so that equal instants always encode to
// equal bytes.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// maxText bounds the free-text fields (wearer, site) of a body.
const maxText = 256

var (
	cameraRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	clipRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	hexRE    = regexp.MustCompile(`^[0-9a-f]{64}$`)

	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC)
)

// ValidCameraID reports whether s can name a camera: a device id, 1-64 of
// A-Z a-z 0-9 _ - starting with a letter or digit.
func ValidCameraID(s string) bool { return cameraRE.MatchString(s) }

// ValidClipID reports whether s can name a clip: 1-128 of A-Z a-z 0-9 . _ -,
// starting with a letter or digit, without "..". Clip ids become parts of
// file names and object keys, so nothing that could climb out of a
// directory passes. It is the device protocol's rule (devices.ValidClipID);
// evidence does not import devices.
func ValidClipID(s string) bool { return clipRE.MatchString(s) && !strings.Contains(s, "..") }

// ValidSHA256 reports whether s is a SHA-256 digest in lowercase hex.
func ValidSHA256(s string) bool { return hexRE.MatchString(s) }

// body is the canonical JSON form of an entry. encoding/json writes struct
// fields in declaration order, so this declaration is the key order of the
// format; do not reorder or rename fields: every existing hash depends on
// it. A field added later must be optional and omitted at its zero value,
// so that every body written before it still encodes to the same bytes.
type body struct {
	Camera   string `json:"camera"`
	Clip     string `json:"clip"`
	Wearer   string `json:"wearer"`
	Site     string `json:"site"`
	Start    string `json:"start"`
	End      string `json:"end"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	Received string `json:"received"`
	Ingest   string `json:"ingest"`
	Prev     string `json:"prev"`
	// ClockUnsynchronised (added after the first release) is present, and
	// true, only when the gateway's clock was not synchronised when it
	// took the received time.
	ClockUnsynchronised bool `json:"clock_unsynchronised,omitempty"`
}

// normalize puts c's times in the form the body records (UTC, whole
// milliseconds), so that the Clip returned by Append is exactly what the
// body says.
func normalize(c Clip) Clip {
	c.Start = normTime(c.Start)
	c.End = normTime(c.End)
	c.Received = normTime(c.Received)
	return c
}

func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Millisecond)
}

// validateClip checks a normalised clip against the body rules in doc.go.
// The error names the field and what is wrong with it, but never echoes the
// wearer or site (personal data).
func validateClip(c Clip) error {
	switch {
	case !ValidCameraID(c.Camera):
		return fmt.Errorf("camera %q is not a device id (1-64 of A-Z a-z 0-9 _ - starting with a letter or digit)", clipTrim(c.Camera))
	case !ValidClipID(c.Clip):
		return fmt.Errorf("clip %q is not a clip id (1-128 of A-Z a-z 0-9 . _ - starting with a letter or digit, without \"..\")", clipTrim(c.Clip))
	}
	if err := checkText("wearer", c.Wearer); err != nil {
		return err
	}
	if err := checkText("site", c.Site); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"start", c.Start}, {"end", c.End}, {"received", c.Received}} {
		switch {
		case f.t.IsZero():
			return fmt.Errorf("%s time is missing", f.name)
		case f.t.Before(minTime) || f.t.After(maxTime):
			return fmt.Errorf("%s time %s is outside the years 1970-9999", f.name, f.t.UTC().Format(time.RFC3339))
		}
	}
	switch {
	case c.End.Before(c.Start):
		return fmt.Errorf("end %s is before start %s", c.End.Format(timeLayout), c.Start.Format(timeLayout))
	case c.Size <= 0:
		return fmt.Errorf("size %d is not a positive number of bytes", c.Size)
	case !hexRE.MatchString(c.SHA256):
		return fmt.Errorf("sha256 %q is not 64 lowercase hex digits", clipTrim(c.SHA256))
	case c.Ingest != IngestTUS && c.Ingest != IngestDock:
		return fmt.Errorf("ingest %q is neither %q nor %q", clipTrim(c.Ingest), IngestTUS, IngestDock)
	}
	return nil
}

// checkText enforces the free-text rule: bounded UTF-8 with nothing JSON
// would have to escape beyond '"' and '\', so that the canonical body is
// easy to reproduce outside Go.
func checkText(field, s string) error {
	switch {
	case len(s) > maxText:
		return fmt.Errorf("%s is %d bytes, more than %d", field, len(s), maxText)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not valid UTF-8", field)
	}
	for _, r := range s {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("%s contains a control character", field)
		}
	}
	return nil
}

// clipTrim shortens a value echoed in an error so a hostile input cannot
// flood a log line.
func clipTrim(s string) string {
	if len(s) > 140 {
		return s[:140] + "…"
	}
	return s
}

func validatePrev(prev string) error {
	if prev != "" && !hexRE.MatchString(prev) {
		return fmt.Errorf("prev %q is neither empty nor 64 lowercase hex digits", clipTrim(prev))
	}
	return nil
}

// CanonicalBody returns the canonical body of the entry for c whose camera's
// previous entry has hash prev ("" for the camera's first entry). It is
// exported so that an independent party can recompute a body from metadata
// and compare it with an exported one. Times are normalised first (UTC,
// truncated to the millisecond), exactly as Append does.
func CanonicalBody(c Clip, prev string) ([]byte, error) {
	c = normalize(c)
	if err := validateClip(c); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, err.Error())
	}
	if err := validatePrev(prev); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, err.Error())
	}
	return encodeBody(c, prev)
}

// encodeBody marshals an already validated clip. HTML escaping is off so the
// only escapes are \" and \\ (validateClip excludes the rest).
func encodeBody(c Clip, prev string) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(body{
		Camera:   c.Camera,
		Clip:     c.Clip,
		Wearer:   c.Wearer,
		Site:     c.Site,
		Start:    c.Start.UTC().Format(timeLayout),
		End:      c.End.UTC().Format(timeLayout),
		Size:     c.Size,
		SHA256:   c.SHA256,
		Received: c.Received.UTC().Format(timeLayout),
		Ingest:   c.Ingest,
		Prev:     prev,

		ClockUnsynchronised: c.ClockUnsynchronised,
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: encode body: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// errNotCanonical marks a body that parses but is not byte-for-byte what
// CanonicalBody would produce; Verify words it differently from garbage.
var errNotCanonical = errors.New("not in canonical form")

// ParseBody decodes a canonical entry body into its clip and prev hash. It
// rejects anything that is not byte-for-byte canonical (other key order,
// whitespace, escapes, time formats), because a second encoding of the same
// metadata would have a different hash and so could not be proved.
func ParseBody(b []byte) (Clip, string, error) {
	var raw body
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return Clip{}, "", fmt.Errorf("ledger: parse body: %w", err)
	}
	if dec.More() {
		return Clip{}, "", errors.New("ledger: parse body: data after the JSON object")
	}
	c := Clip{
		Camera: raw.Camera,
		Clip:   raw.Clip,
		Wearer: raw.Wearer,
		Site:   raw.Site,
		Size:   raw.Size,
		SHA256: raw.SHA256,
		Ingest: raw.Ingest,

		ClockUnsynchronised: raw.ClockUnsynchronised,
	}
	var err error
	for _, f := range []struct {
		name string
		s    string
		t    *time.Time
	}{{"start", raw.Start, &c.Start}, {"end", raw.End, &c.End}, {"received", raw.Received, &c.Received}} {
		if *f.t, err = time.Parse(timeLayout, f.s); err != nil {
			return Clip{}, "", fmt.Errorf("ledger: parse body: %s time %q is not a UTC time like 2006-01-02T15:04:05.000Z", f.name, clipTrim(f.s))
		}
		*f.t = f.t.UTC()
	}
	if err := validateClip(c); err != nil {
		return Clip{}, "", fmt.Errorf("ledger: parse body: %w: %s", ErrInvalid, err.Error())
	}
	if err := validatePrev(raw.Prev); err != nil {
		return Clip{}, "", fmt.Errorf("ledger: parse body: %w: %s", ErrInvalid, err.Error())
	}
	again, err := encodeBody(c, raw.Prev)
	if err != nil {
		return Clip{}, "", err
	}
	if !bytes.Equal(again, b) {
		return Clip{}, "", fmt.Errorf("ledger: parse body: %w", errNotCanonical)
	}
	return c, raw.Prev, nil
}

// hexHash renders a leaf hash the way bodies and the database store it.
func hexHash(h []byte) string { return hex.EncodeToString(h) }

// short abbreviates a hex hash for messages meant for people.
func short(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	return h
}
