package firmwaresim

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/vigil-gw/vigil/devices"
)

// Faults says how often a button misbehaves on the wire. Each rate is a
// probability per publish, from 0 (never) to 1 (always).
type Faults struct {
	// MalformedRate is the fraction of publishes replaced by a payload the
	// gateway must reject; the kind is picked uniformly from Malformations.
	MalformedRate float64
	// DuplicateRate is the fraction of (well-formed) events published twice
	// with the same seq and id, as a device does when it misses a PUBACK.
	DuplicateRate float64
}

func (f Faults) validate() error {
	if !(f.MalformedRate >= 0 && f.MalformedRate <= 1) {
		return fmt.Errorf("firmwaresim: malformed rate %g is not a fraction between 0 and 1", f.MalformedRate)
	}
	if !(f.DuplicateRate >= 0 && f.DuplicateRate <= 1) {
		return fmt.Errorf("firmwaresim: duplicate rate %g is not a fraction between 0 and 1", f.DuplicateRate)
	}
	return nil
}

// Malformation is a kind of broken payload a faulty button can publish. Its
// value is a short label fit for logs and statistics.
type Malformation string

// The malformations a Fleet injects, each rejected by devices.Decode for a
// different reason.
const (
	// MalformedJSON is a truncated JSON object (rejected on "payload").
	MalformedJSON Malformation = "bad_json"
	// MalformedDevice names another device than the topic does (rejected on "device").
	MalformedDevice Malformation = "wrong_device"
	// MalformedType carries an event type v1 does not define (rejected on "type").
	MalformedType Malformation = "unknown_type"
	// MalformedOversize is a valid-looking event padded past devices.MaxPayload
	// (rejected on "payload").
	MalformedOversize Malformation = "oversize"
	// MalformedNoSeq has no seq field at all (rejected on "seq").
	MalformedNoSeq Malformation = "missing_seq"
)

// malformations lists every Malformation in a fixed order, for uniform picks
// and stable statistics output.
var malformations = [...]Malformation{MalformedJSON, MalformedDevice, MalformedType, MalformedOversize, MalformedNoSeq}

// Malformations returns every kind of malformed payload, in a fixed order.
func Malformations() []Malformation { return append([]Malformation(nil), malformations[:]...) }

// malform renders ev broken in the given way. It starts from the real event so
// the broken payload looks like what a buggy firmware would send.
func malform(ev devices.Event, kind Malformation, rng *rand.Rand) ([]byte, error) {
	if ev.V == 0 {
		ev.V = devices.Version
	}
	switch kind {
	case MalformedJSON:
		b, err := devices.Encode(ev)
		if err != nil {
			return nil, err
		}
		// Cut inside the object so the closing brace is always missing.
		return b[:1+rng.IntN(len(b)-2)], nil
	case MalformedDevice:
		ev.Device = ev.Device + "-x"
		return devices.Encode(ev)
	case MalformedType:
		ev.Type = devices.Type([]string{"tamper", "sos2", "DURESS", "fall"}[rng.IntN(4)])
		return devices.Encode(ev)
	case MalformedOversize:
		m, err := eventMap(ev)
		if err != nil {
			return nil, err
		}
		m["note"] = strings.Repeat("x", devices.MaxPayload)
		return json.Marshal(m)
	case MalformedNoSeq:
		m, err := eventMap(ev)
		if err != nil {
			return nil, err
		}
		delete(m, "seq")
		return json.Marshal(m)
	}
	return nil, fmt.Errorf("firmwaresim: unknown malformation %q", kind)
}

// eventMap is ev as a generic JSON object, for faults that add or remove fields.
func eventMap(ev devices.Event) (map[string]any, error) {
	b, err := devices.Encode(ev)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("firmwaresim: re-read event: %w", err)
	}
	return m, nil
}
