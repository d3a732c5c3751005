// Package serial is Vigil's serial transport, for pendants that reach a site
// through a radio receiver or a dock on a serial port (USB or UART): the frame
// codec of devices/PROTOCOL.md ("Serial frame protocol") and a Port that reads
// frames from the line, reopens it after an unplug, and writes acknowledgement
// frames back.
//
// Anyone who can put bytes on the line can try to raise or cancel an alarm, so
// every frame carries a MAC under a per-device key, and only a frame that
// authenticates is decoded as an event or acknowledged. Frames are COBS-stuffed
// between 0x00 delimiters, so a cut or noisy line resynchronises at the next
// delimiter, and a CRC-32C tells line corruption apart from a forged frame.
// Every frame, good or bad, is handed on as a devices.Delivery: nothing read
// from the line is dropped without a record.
package serial

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/vigil-gw/vigil/devices"
)

// Version is the frame format version this package speaks.
const Version = 1

// Sizes of the frame format.
const (
	// MaxPayload is the largest payload a frame carries, in bytes.
	MaxPayload = 1024
	// MACSize is the length of the truncated HMAC-SHA256 in every frame.
	MACSize = 8
	// MaxIDLen is the longest device id, as devices.ValidID allows.
	MaxIDLen = 64
	// MinFrame is the shortest frame: a one-byte device id, no payload.
	MinFrame = 1 + 1 + 1 + 1 + 4 + 2 + MACSize + 4
	// MaxFrame is the longest frame, before stuffing.
	MaxFrame = 1 + 1 + 1 + MaxIDLen + 4 + 2 + MaxPayload + MACSize + 4
	// MaxWireFrame is the longest run of bytes between two 0x00 delimiters
	// that can hold a frame: MaxFrame after COBS stuffing. A longer run is
	// discarded up to the next delimiter.
	MaxWireFrame = MaxFrame + MaxFrame/254 + 1
)

// FrameType says what a frame is.
type FrameType uint8

// Frame types.
const (
	// FrameEvent carries a v1 JSON event from a device to the gateway.
	FrameEvent FrameType = 1
	// FrameAck is the gateway's acknowledgement of the event frame with the
	// same device id and counter. It has no payload.
	FrameAck FrameType = 2
)

// String names the type for messages: "event", "ack" or "type N".
func (t FrameType) String() string {
	switch t {
	case FrameEvent:
		return "event"
	case FrameAck:
		return "ack"
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// Frame is one frame of the serial protocol.
type Frame struct {
	Type    FrameType // FrameEvent or FrameAck
	Device  string    // 1-64 characters, devices.ValidID
	Counter uint32    // per-device, from 1, strictly increasing, never reused
	Payload []byte    // the v1 JSON event for FrameEvent; empty for FrameAck
}

// Error is why a frame is rejected. Field is the reason, a short bounded label
// for metrics: "crc" (line corruption), "mac" (does not authenticate),
// "frame" (malformed: stuffing, size, version, type, lengths), "device" (no
// key for the device, or the payload names another device), "payload" or an
// event field ("v", "id", "seq", "type", "ts", ...) for an authenticated frame
// whose event is invalid.
//
// It wraps the equivalent *devices.Error, so devices.Reason(err) returns Field
// and errors.As finds a *devices.Error, as for every other transport.
type Error struct {
	Field   string // the reason
	Problem string // what is wrong, for people
}

// Error renders the rejection as "serial: <reason>: <problem>".
func (e *Error) Error() string { return "serial: " + e.Field + ": " + e.Problem }

// Reason is the metrics label: the failing field.
func (e *Error) Reason() string { return e.Field }

// Unwrap returns the error as a *devices.Error.
func (e *Error) Unwrap() error { return &devices.Error{Field: e.Field, Problem: e.Problem} }

func errf(field, format string, a ...any) *Error {
	return &Error{Field: field, Problem: fmt.Sprintf(format, a...)}
}

// castagnoli is the CRC-32C table: better error detection than IEEE CRC-32
// for the same cost, and hardware-accelerated on arm64 and amd64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// mac is the first MACSize bytes of HMAC-SHA256(key, b).
func mac(key, b []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(b)
	return h.Sum(nil)[:MACSize]
}

// Marshal renders f as frame bytes (before stuffing), with its MAC under key
// and its CRC. It checks f against the format.
func (f Frame) Marshal(key []byte) ([]byte, error) {
	switch {
	case f.Type != FrameEvent && f.Type != FrameAck:
		return nil, fmt.Errorf("serial: marshal: %s is not event or ack", f.Type)
	case !devices.ValidID(f.Device):
		return nil, fmt.Errorf("serial: marshal: device %q is not a valid id", f.Device)
	case f.Counter == 0:
		return nil, errors.New("serial: marshal: counter 0 is not allowed (counters start at 1)")
	case len(f.Payload) > MaxPayload:
		return nil, fmt.Errorf("serial: marshal: payload of %d bytes exceeds the %d byte limit", len(f.Payload), MaxPayload)
	case f.Type == FrameAck && len(f.Payload) > 0:
		return nil, errors.New("serial: marshal: an ack frame carries no payload")
	case len(key) == 0:
		return nil, fmt.Errorf("serial: marshal: no key for device %s", f.Device)
	}
	return appendFrame(make([]byte, 0, MinFrame+len(f.Device)+len(f.Payload)), Version, f.Type, f.Device, f.Counter, f.Payload, key), nil
}

// appendFrame lays out a frame without checking its fields, so tests can
// build malformed frames with a good CRC and MAC.
func appendFrame(b []byte, version uint8, typ FrameType, id string, counter uint32, payload, key []byte) []byte {
	start := len(b)
	b = append(b, version, byte(typ), byte(len(id)))
	b = append(b, id...)
	b = binary.BigEndian.AppendUint32(b, counter)
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	b = append(b, payload...)
	b = append(b, mac(key, b[start:])...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// Encode renders f for the line: a 0x00, the stuffed frame, a 0x00. The
// leading delimiter ends whatever noise preceded the frame on the line, so
// that noise is reported on its own instead of spoiling this frame.
func Encode(f Frame, key []byte) ([]byte, error) {
	b, err := f.Marshal(key)
	if err != nil {
		return nil, err
	}
	return Wire(b), nil
}

// Wire stuffs frame bytes and adds the delimiters, as Encode does.
func Wire(frame []byte) []byte {
	w := make([]byte, 0, len(frame)+len(frame)/254+3)
	w = append(w, 0)
	w = AppendStuffed(w, frame)
	return append(w, 0)
}

// Decode unstuffs one run of bytes read between two 0x00 delimiters and
// parses it as Parse does. It also returns the unstuffed frame bytes (nil if
// the run is not valid COBS), for the record of a rejected frame. As with
// Parse, on error the Frame holds at most the device id the run claims.
func Decode(run []byte, keys func(device string) ([]byte, bool)) (Frame, []byte, error) {
	if len(run) > MaxWireFrame {
		return Frame{}, nil, errf("frame", "%d bytes exceeds the %d byte limit of a stuffed frame", len(run), MaxWireFrame)
	}
	raw, err := unstuff(run)
	if err != nil {
		// A truncated frame is the common case: say whose it was.
		return Frame{Device: claimedID(raw)}, nil, errf("frame", "not a COBS-stuffed frame: %v", err)
	}
	f, err := Parse(raw, keys)
	return f, raw, err
}

// Parse checks and authenticates frame bytes (already unstuffed): size, CRC,
// version, type, lengths, then the MAC under the key keys returns for the
// device id. Payload aliases b.
//
// On error, the Frame holds only the fields parsed so far, none of them
// authenticated; Device is the id the frame claims, when one could be read.
// The checks run in an order that makes the reason useful: the CRC before
// anything else, so that line corruption (even of a length byte) reads as
// "crc", and the MAC last, so that "mac" means a well-formed frame that was
// not made with the device's key.
func Parse(b []byte, keys func(device string) ([]byte, bool)) (Frame, error) {
	f := Frame{Device: claimedID(b)}
	if len(b) < MinFrame {
		return f, errf("frame", "%d bytes is shorter than the smallest frame (%d)", len(b), MinFrame)
	}
	if len(b) > MaxFrame {
		return f, errf("frame", "%d bytes is longer than the largest frame (%d)", len(b), MaxFrame)
	}
	body := b[:len(b)-4]
	if want, got := binary.BigEndian.Uint32(b[len(b)-4:]), crc32.Checksum(body, castagnoli); got != want {
		return f, errf("crc", "CRC-32C of the frame is %08x, the frame says %08x (line corruption)", got, want)
	}
	signed := body[:len(body)-MACSize]
	if b[0] != Version {
		return f, errf("frame", "version %d is not supported (want %d)", b[0], Version)
	}
	typ := FrameType(b[1])
	if typ != FrameEvent && typ != FrameAck {
		return f, errf("frame", "%s is not 1 (event) or 2 (ack)", typ)
	}
	idLen := int(b[2])
	if idLen < 1 || idLen > MaxIDLen {
		return f, errf("frame", "device id length %d is not 1-%d", idLen, MaxIDLen)
	}
	off := 3 + idLen
	if off+4+2 > len(signed) {
		return f, errf("frame", "device id length %d runs past the end of the frame", idLen)
	}
	id := string(b[3:off])
	if !devices.ValidID(id) {
		return f, errf("frame", "device id %q is not a valid id (1-64 of A-Z a-z 0-9 _ -)", id)
	}
	counter := binary.BigEndian.Uint32(b[off:])
	plen := int(binary.BigEndian.Uint16(b[off+4:]))
	off += 6
	switch {
	case plen > MaxPayload:
		return f, errf("frame", "payload length %d exceeds the %d byte limit", plen, MaxPayload)
	case off+plen != len(signed):
		return f, errf("frame", "payload length %d does not match the %d payload bytes present", plen, len(signed)-off)
	case counter == 0:
		return f, errf("frame", "counter 0 is not allowed (counters start at 1)")
	case typ == FrameAck && plen != 0:
		return f, errf("frame", "an ack frame carries no payload, this one has %d bytes", plen)
	}
	f.Type, f.Counter = typ, counter
	if plen > 0 {
		f.Payload = b[off : off+plen]
	}
	key, ok := keys(id)
	if !ok || len(key) == 0 {
		return f, errf("device", "no key for device %q: it is not registered for serial", id)
	}
	if !hmac.Equal(body[len(signed):], mac(key, signed)) {
		return f, errf("mac", "%s frame from %s counter %d does not authenticate with the device's key", typ, id, counter)
	}
	return f, nil
}

// claimedID reads the device id field of b without checking anything else,
// for the record of a frame that fails; "" if there is no valid id there.
func claimedID(b []byte) string {
	if len(b) < 3 || int(b[2]) > len(b)-3 {
		return ""
	}
	if id := string(b[3 : 3+int(b[2])]); devices.ValidID(id) {
		return id
	}
	return ""
}

// DecodeEvent decodes the payload of an authenticated event frame as a v1
// event from site, checked against the gateway clock now (see devices.Decode),
// and checks that it is the frame's: its device must be the frame's device id
// and its seq the frame's counter.
func DecodeEvent(f Frame, site string, now time.Time) (devices.Decoded, error) {
	if f.Type != FrameEvent {
		return devices.Decoded{}, errf("frame", "%s frames are sent by the gateway, not to it", f.Type)
	}
	d, err := devices.Decode(devices.EventTopic(site, f.Device), f.Payload, now)
	if err != nil {
		var de *devices.Error
		switch {
		case !errors.As(err, &de):
			return devices.Decoded{}, errf("payload", "%v", err)
		case de.Field == "device":
			return devices.Decoded{}, errf("device", "the payload's device is not the frame's device id %q", f.Device)
		case de.Field == "topic": // only with a site that is not a valid id
			return devices.Decoded{}, errf("frame", "site %q: %s", site, de.Problem)
		}
		return devices.Decoded{}, &Error{Field: de.Field, Problem: de.Problem}
	}
	if d.Event.Seq != uint64(f.Counter) {
		return devices.Decoded{}, errf("seq", "the payload's seq %d is not the frame counter %d", d.Event.Seq, f.Counter)
	}
	return d, nil
}
