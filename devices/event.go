// Package devices owns Vigil's device wire formats and transports: the v1 event
// and command payloads, MQTT topics, and (in sub-packages) the MQTT and serial
// transports and the device registry. It emits decoded, validated events; it
// knows nothing of alerts, evidence or governance.
package devices

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
)

// MaxPayload is the largest event payload accepted, in bytes.
const MaxPayload = 4096

// Version is the protocol version this package speaks.
const Version = 1

// Type is a device event type.
type Type string

// Event types of protocol v1.
const (
	TypeDuress       Type = "duress"
	TypeDuressCancel Type = "duress_cancel" // with "covert": true, a duress PIN: a silent duress
	TypeManDown      Type = "man_down"      // the device has already run its own cancel window
	TypeAmberStart   Type = "amber_start"   // a timed visit begins: duration_s, note, loc
	TypeAmberExtend  Type = "amber_extend"  // more time: duration_s from now
	TypeAmberCheckin Type = "amber_checkin" // the wearer is safe; the session ends
	TypeHeartbeat    Type = "heartbeat"     // optional interval_s
	TypeBattery      Type = "battery"
	// TypeReport records an incident that needed no alarm: the wearer's two
	// presses, with kind "verbal" or "physical". Reporting must take seconds
	// or it does not happen; the manager classifies it later.
	TypeReport Type = "report"
	// Camera events. A camera announces each finished clip with clip_ready,
	// declaring its digest and size, and then uploads it (evidence/ingest).
	TypeRecordingStarted Type = "recording_started" // optional clip.id of the clip being recorded
	TypeRecordingStopped Type = "recording_stopped"
	TypeClipReady        Type = "clip_ready" // clip: id, sha256, size, start, end
)

// knownTypes lists every event type a v1 device may send.
var knownTypes = map[Type]bool{TypeDuress: true, TypeDuressCancel: true, TypeManDown: true, TypeAmberStart: true,
	TypeAmberExtend: true, TypeAmberCheckin: true, TypeHeartbeat: true, TypeBattery: true, TypeReport: true,
	TypeRecordingStarted: true, TypeRecordingStopped: true, TypeClipReady: true}

// Urgent reports whether events of this type bear on someone's safety, so
// soft validation problems (a wrong clock, an impossible position) become
// warnings rather than rejections: an amber session must still start, and a
// duress PIN must still be heard, from a device whose clock has drifted.
func (t Type) Urgent() bool { return t != TypeHeartbeat && t != TypeBattery && !t.Camera() }

// Camera reports whether the type is a body-worn-camera event.
func (t Type) Camera() bool {
	return t == TypeRecordingStarted || t == TypeRecordingStopped || t == TypeClipReady
}

// Alarm reports whether the event raises an alarm by itself. Only these are
// accepted (and raised unverified) from a device that is not registered.
func (t Type) Alarm() bool { return t == TypeDuress || t == TypeManDown }

// Location is a position fix reported by a device.
type Location struct {
	Lat  float64 `json:"lat"`
	Lon  float64 `json:"lon"`
	AccM float64 `json:"acc_m,omitempty"`
}

// Event is one v1 device event as carried on the wire.
type Event struct {
	V       int       `json:"v"`
	ID      string    `json:"id"`
	Device  string    `json:"device"`
	Seq     uint64    `json:"seq"`
	Type    Type      `json:"type"`
	TS      time.Time `json:"ts"`
	Loc     *Location `json:"loc,omitempty"`
	Battery *int      `json:"battery,omitempty"`
	// DurationS is the amber timer length in seconds (amber_start, amber_extend).
	DurationS int `json:"duration_s,omitempty"`
	// Note says where the wearer is going and why (amber_start), for whoever
	// must find them.
	Note string `json:"note,omitempty"`
	// Covert marks a duress_cancel entered with the duress PIN: it is in fact a
	// silent duress and must never show as cancelled.
	Covert bool `json:"covert,omitempty"`
	// IntervalS is the device's heartbeat interval in seconds (heartbeat);
	// silence for three intervals raises an offline alert.
	IntervalS int `json:"interval_s,omitempty"`
	// Clip describes a camera clip (clip_ready: all fields; recording_started
	// and recording_stopped: the id at most).
	Clip *Clip `json:"clip,omitempty"`
	// Kind is what a report was: ReportVerbal or ReportPhysical (report only).
	Kind string `json:"kind,omitempty"`
	// Place is where the wearer is on site, as text ("Ward 7, bay 3"), from an
	// indoor beacon or the device's configuration: coordinates alone do not
	// find someone on the third floor.
	Place string `json:"place,omitempty"`
}

// Kinds of a report event.
const (
	ReportVerbal   = "verbal"
	ReportPhysical = "physical"
)

// Clip is a camera's description of one recorded clip.
type Clip struct {
	ID     string    `json:"id"`
	SHA256 string    `json:"sha256,omitempty"` // lowercase hex of the clip's bytes
	Size   int64     `json:"size,omitempty"`   // bytes
	Start  time.Time `json:"start,omitzero"`
	End    time.Time `json:"end,omitzero"`
}

// ValidClipID reports whether s can name a clip: 1-128 characters of
// A-Z a-z 0-9 . _ -, starting with a letter or digit. Clip ids become parts
// of file names and object keys, so nothing else (no '/', no "..") passes.
func ValidClipID(s string) bool { return clipIDRE.MatchString(s) }

var clipIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidSHA256 reports whether s is a SHA-256 digest in lowercase hex.
func ValidSHA256(s string) bool { return sha256RE.MatchString(s) }

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// MaxClipDuration bounds a clip's declared start-to-end span.
const MaxClipDuration = 24 * time.Hour

// CheckClip validates a full clip description (clip_ready, upload metadata).
func CheckClip(c *Clip) error {
	switch {
	case c == nil:
		return errf("clip", "missing")
	case !ValidClipID(c.ID) || strings.Contains(c.ID, ".."):
		return errf("clip.id", "%q must be 1-128 of A-Z a-z 0-9 . _ - starting with a letter or digit, without \"..\"", clip(c.ID))
	case !ValidSHA256(c.SHA256):
		return errf("clip.sha256", "must be 64 lowercase hex digits")
	case c.Size <= 0:
		return errf("clip.size", "%d is not a size in bytes", c.Size)
	case c.Start.IsZero() || c.End.IsZero():
		return errf("clip.start", "start and end are both required")
	case c.End.Before(c.Start) || c.End.Sub(c.Start) > MaxClipDuration:
		return errf("clip.end", "%s to %s is not a clip's span", c.Start.UTC().Format(time.RFC3339), c.End.UTC().Format(time.RFC3339))
	}
	return nil
}

// Limits on the alarm-set fields.
const (
	MaxAmber    = 24 * 60 * 60 // seconds
	MaxNote     = 256          // bytes
	MaxPlace    = 128          // bytes
	MinInterval = 5            // seconds
	MaxInterval = 3600         // seconds
)

// Command is a message from Vigil to a device on its command topic.
type Command struct {
	Cmd   string `json:"cmd"`
	Alert string `json:"alert,omitempty"`
	Seq   uint64 `json:"seq,omitempty"` // the device seq of the event the command answers
}

// Command names.
const (
	CmdAlertReceived  = "alert_received"  // help is coming: a receiver or a person has the alarm
	CmdAmberPrealert  = "amber_prealert"  // the amber timer ran out: check in now
	CmdStartRecording = "start_recording" // to a paired camera: an alert needs footage
)

// Delivery is one message from a device transport (MQTT, serial), decoded and
// validated, with the means to acknowledge it to its sender.
type Delivery struct {
	Source   string // "mqtt", "serial"
	Topic    string // MQTT topic, or a description of the serial port
	Device   string // the device id the message claims, when known even if invalid
	Payload  []byte
	Received time.Time
	// Decoded is the validated event when Err is nil.
	Decoded Decoded
	// Err says why the message is not a valid event (a *Error).
	Err error
	// Unauthenticated says the transport could not authenticate the sender
	// (a serial pendant with no key): only an alarm is delivered so, to be
	// raised unverified; the registry must not vouch for it.
	Unauthenticated bool
	// Monotonic says the transport guarantees the device's seq only grows
	// (a serial counter under a MAC): a seq not newer than the last accepted
	// one is then a replay, not a late redelivery.
	Monotonic bool
	// Ack acknowledges the message to its sender. Call it exactly once, and
	// only after the message (or its rejection) is durably recorded.
	Ack func()
}

// Error is a validation failure naming the field and what is wrong with it.
type Error struct {
	Field   string // "payload", "topic", "v", "id", "device", "seq", "type", "ts", "loc", "battery", "duration_s", "note", "place", "kind", "covert", "interval_s"
	Problem string
}

func (e *Error) Error() string { return "devices: " + e.Field + ": " + e.Problem }

// Reason is a short, bounded label for metrics: the field that failed.
func (e *Error) Reason() string { return e.Field }

func errf(field, format string, a ...any) *Error {
	return &Error{Field: field, Problem: fmt.Sprintf(format, a...)}
}

// Reason returns the metrics label for a decode error: the failing field, or "other".
func Reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason()
	}
	return "other"
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// ValidID reports whether s may be a device or site identifier: 1–64 of
// A–Z a–z 0–9 _ -, starting with a letter or digit. That keeps ids safe in
// topics, file names, URLs and DC-09 text.
func ValidID(s string) bool { return idRE.MatchString(s) }

// Topic layout: vigil/v1/{site}/{device}/{event|cmd}.
const topicRoot = "vigil/v1/"

// EventTopic is the topic a device publishes its events to.
func EventTopic(site, device string) string { return topicRoot + site + "/" + device + "/event" }

// CommandTopic is the topic a device subscribes to for commands.
func CommandTopic(site, device string) string { return topicRoot + site + "/" + device + "/cmd" }

// EventFilter matches every device's event topic.
const EventFilter = topicRoot + "+/+/event"

// ParseEventTopic splits an event topic into site and device.
func ParseEventTopic(topic string) (site, device string, err error) {
	rest, ok := strings.CutPrefix(topic, topicRoot)
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 3 || parts[2] != "event" {
		return "", "", errf("topic", "%q is not vigil/v1/{site}/{device}/event", clip(topic))
	}
	if !ValidID(parts[0]) {
		return "", "", errf("topic", "site %q is not a valid id", clip(parts[0]))
	}
	if !ValidID(parts[1]) {
		return "", "", errf("topic", "device %q is not a valid id", clip(parts[1]))
	}
	return parts[0], parts[1], nil
}

// Limits on how far a device clock may be from the gateway's.
const (
	MaxFuture = 5 * time.Minute
	MaxAge    = 24 * time.Hour
)

// Decoded is a validated event with where it came from.
type Decoded struct {
	Site  string
	Event Event
	// Warnings lists soft problems that were tolerated because the event is
	// urgent (a duress is raised even from a device with a wrong clock). The
	// offending value has been replaced or dropped.
	Warnings []string
}

// Decode parses and validates one event published on topic, checked against
// the gateway's clock now. Soft problems (timestamp out of range, impossible
// location or battery) reject ordinary events but only warn for urgent ones,
// whose timestamp is then replaced by now.
func Decode(topic string, payload []byte, now time.Time) (Decoded, error) {
	if len(payload) > MaxPayload {
		return Decoded{}, errf("payload", "%d bytes exceeds the %d byte limit", len(payload), MaxPayload)
	}
	site, device, err := ParseEventTopic(topic)
	if err != nil {
		return Decoded{}, err
	}
	var ev Event
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		return Decoded{}, errf("payload", "not a v1 event object: %s", clip(err.Error()))
	}
	if dec.More() {
		return Decoded{}, errf("payload", "trailing data after the JSON object")
	}
	d := Decoded{Site: site, Event: ev}
	if err := d.validate(device, now); err != nil {
		return Decoded{}, err
	}
	return d, nil
}

func (d *Decoded) validate(topicDevice string, now time.Time) error {
	ev := &d.Event
	switch {
	case ev.V != Version:
		return errf("v", "version %d is not supported (want %d)", ev.V, Version)
	case ev.ID == "" || len(ev.ID) > 64 || strings.ContainsFunc(ev.ID, func(r rune) bool { return r <= ' ' || r > '~' }):
		return errf("id", "must be 1-64 printable ASCII characters without spaces")
	case ev.Device != topicDevice:
		return errf("device", "payload says %q but the topic says %q", clip(ev.Device), topicDevice)
	case ev.Seq == 0:
		return errf("seq", "missing or zero (sequence numbers start at 1)")
	case ev.Type == "":
		return errf("type", "missing")
	case !knownTypes[ev.Type]:
		return errf("type", "%q is not a v1 event type", clip(string(ev.Type)))
	case (ev.Type == TypeAmberStart || ev.Type == TypeAmberExtend) && (ev.DurationS <= 0 || ev.DurationS > MaxAmber):
		return errf("duration_s", "%s needs 1-%d seconds, got %d", ev.Type, MaxAmber, ev.DurationS)
	case ev.DurationS != 0 && ev.Type != TypeAmberStart && ev.Type != TypeAmberExtend:
		return errf("duration_s", "only amber_start and amber_extend carry a duration")
	case len(ev.Note) > MaxNote || strings.ContainsFunc(ev.Note, func(r rune) bool { return r < ' ' }):
		return errf("note", "must be at most %d bytes without control characters", MaxNote)
	case len(ev.Place) > MaxPlace || strings.ContainsFunc(ev.Place, func(r rune) bool { return r < ' ' }):
		return errf("place", "must be at most %d bytes without control characters", MaxPlace)
	case ev.Type == TypeReport && ev.Kind != ReportVerbal && ev.Kind != ReportPhysical:
		return errf("kind", "a report's kind must be %q or %q, got %q", ReportVerbal, ReportPhysical, clip(ev.Kind))
	case ev.Kind != "" && ev.Type != TypeReport:
		return errf("kind", "only a report carries a kind")
	case ev.Covert && ev.Type != TypeDuressCancel:
		return errf("covert", "only a duress_cancel can be covert")
	case ev.Clip != nil && !ev.Type.Camera():
		return errf("clip", "only camera events carry a clip")
	case ev.Clip != nil && (!ValidClipID(ev.Clip.ID) || strings.Contains(ev.Clip.ID, "..")):
		return errf("clip.id", "%q must be 1-128 of A-Z a-z 0-9 . _ - starting with a letter or digit", clip(ev.Clip.ID))
	case ev.IntervalS != 0 && (ev.Type != TypeHeartbeat || ev.IntervalS < MinInterval || ev.IntervalS > MaxInterval):
		return errf("interval_s", "a heartbeat's interval must be %d-%d seconds", MinInterval, MaxInterval)
	}
	if ev.Type == TypeClipReady {
		if err := CheckClip(ev.Clip); err != nil {
			return err
		}
	}
	soft := func(e *Error) error {
		if ev.Type.Urgent() {
			d.Warnings = append(d.Warnings, e.Field+": "+e.Problem)
			return nil
		}
		return e
	}
	switch {
	case ev.TS.IsZero():
		if err := soft(errf("ts", "missing")); err != nil {
			return err
		}
		ev.TS = now
	case ev.TS.After(now.Add(MaxFuture)), ev.TS.Before(now.Add(-MaxAge)):
		if err := soft(errf("ts", "%s is more than %s ahead or %s behind the gateway clock", ev.TS.UTC().Format(time.RFC3339), MaxFuture, MaxAge)); err != nil {
			return err
		}
		ev.TS = now
	}
	if l := ev.Loc; l != nil {
		if !finite(l.Lat, l.Lon, l.AccM) || l.Lat < -90 || l.Lat > 90 || l.Lon < -180 || l.Lon > 180 || l.AccM < 0 {
			if err := soft(errf("loc", "lat %g lon %g acc_m %g is not a position", l.Lat, l.Lon, l.AccM)); err != nil {
				return err
			}
			ev.Loc = nil
		}
	}
	if b := ev.Battery; b != nil && (*b < 0 || *b > 100) {
		if err := soft(errf("battery", "%d is not a percentage", *b)); err != nil {
			return err
		}
		ev.Battery = nil
	}
	return nil
}

func finite(fs ...float64) bool {
	for _, f := range fs {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return false
		}
	}
	return true
}

// clip keeps device-supplied text short in error messages and logs.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// Encode renders an event as its v1 JSON payload. It does not validate.
func Encode(ev Event) ([]byte, error) {
	if ev.V == 0 {
		ev.V = Version
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("devices: encode event: %w", err)
	}
	return b, nil
}

// EncodeCommand renders a command payload.
func EncodeCommand(c Command) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("devices: encode command: %w", err)
	}
	return b, nil
}

// DecodeCommand parses a command payload.
func DecodeCommand(payload []byte) (Command, error) {
	var c Command
	if len(payload) > MaxPayload {
		return c, errf("payload", "%d bytes exceeds the %d byte limit", len(payload), MaxPayload)
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return c, errf("payload", "not a command object: %s", clip(err.Error()))
	}
	if c.Cmd == "" {
		return c, errf("cmd", "missing")
	}
	return c, nil
}
