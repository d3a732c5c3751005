package serial

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash/crc32"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
)

// testKey is btn-1's key in the tests and the protocol example: 00 01 … 1f.
var testKey = func() []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = byte(i)
	}
	return k
}()

// testKeys knows btn-1 and btn-2; btn-2's key is testKey reversed.
func testKeys(id string) ([]byte, bool) {
	switch id {
	case "btn-1":
		return testKey, true
	case "btn-2":
		k := bytes.Clone(testKey)
		for i, j := 0, len(k)-1; i < j; i, j = i+1, j-1 {
			k[i], k[j] = k[j], k[i]
		}
		return k, true
	case "btn-nokey":
		return nil, true // registered without a key: as unknown
	}
	return nil, false
}

var testNow = time.Date(2026, 11, 21, 10, 15, 31, 0, time.UTC)

// eventPayload is a valid v1 event for device and seq.
func eventPayload(device string, seq uint64, typ devices.Type) []byte {
	b, err := devices.Encode(devices.Event{V: 1, ID: "e-" + device + "-" + string(typ), Device: device, Seq: seq, Type: typ,
		TS: time.Date(2026, 11, 21, 10, 15, 30, 0, time.UTC)})
	if err != nil {
		panic(err)
	}
	return b
}

// withCRC recomputes the CRC of frame bytes after a test changed them.
func withCRC(b []byte) []byte {
	b = bytes.Clone(b)
	binary.BigEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], castagnoli))
	return b
}

// parseCase is frame bytes (before stuffing) and what Parse makes of them.
type parseCase struct {
	name    string
	frame   []byte
	reason  string // "" for success
	problem string // a part of the message
	device  string // the claimed device id expected
}

func parseCases() []parseCase {
	good := appendFrame(nil, 1, FrameEvent, "btn-1", 42, eventPayload("btn-1", 42, devices.TypeDuress), testKey)
	flipped := bytes.Clone(good)
	flipped[20] ^= 0x40 // inside the payload
	lenFlipped := bytes.Clone(good)
	lenFlipped[2] = 9 // the id length
	macFlipped := bytes.Clone(good)
	macFlipped[len(macFlipped)-5] ^= 1 // last MAC byte, CRC recomputed below
	// An id length that runs past the end, with a good CRC.
	idPast := withCRC(append([]byte{1, 1, 60}, bytes.Repeat([]byte("a"), 19)...))
	// A payload length that disagrees with the bytes present.
	badLen := appendFrame(nil, 1, FrameEvent, "btn-1", 42, []byte("{}"), testKey)
	badLen[3+5+4+1] = 3
	badLen = withCRC(badLen)
	otherKey := bytes.Repeat([]byte{7}, 32)
	return []parseCase{
		{name: "event", frame: good, device: "btn-1"},
		{name: "ack", frame: appendFrame(nil, 1, FrameAck, "btn-1", 42, nil, testKey), device: "btn-1"},
		{name: "other device, own key", frame: appendFrame(nil, 1, FrameEvent, "btn-2", 7, eventPayload("btn-2", 7, devices.TypeHeartbeat), func() []byte { k, _ := testKeys("btn-2"); return k }()), device: "btn-2"},
		{name: "empty", frame: nil, reason: "frame", problem: "shorter than the smallest frame"},
		{name: "short", frame: good[:MinFrame-1], reason: "frame", problem: "shorter", device: "btn-1"},
		{name: "too long", frame: make([]byte, MaxFrame+1), reason: "frame", problem: "longer than the largest frame"},
		{name: "payload bit flipped", frame: flipped, reason: "crc", problem: "line corruption", device: "btn-1"},
		{name: "length byte corrupted", frame: lenFlipped, reason: "crc"},
		{name: "truncated", frame: good[:len(good)-3], reason: "crc", device: "btn-1"},
		{name: "version 2", frame: appendFrame(nil, 2, FrameEvent, "btn-1", 1, nil, testKey), reason: "frame", problem: "version 2 is not supported", device: "btn-1"},
		{name: "type 3", frame: appendFrame(nil, 1, 3, "btn-1", 1, nil, testKey), reason: "frame", problem: "type 3 is not 1 (event) or 2 (ack)", device: "btn-1"},
		{name: "type 0", frame: appendFrame(nil, 1, 0, "btn-1", 1, nil, testKey), reason: "frame", problem: "type 0", device: "btn-1"},
		{name: "id length 0", frame: appendFrame(nil, 1, FrameEvent, "", 1, []byte("12345"), testKey), reason: "frame", problem: "device id length 0"},
		{name: "id length 65", frame: appendFrame(nil, 1, FrameEvent, strings.Repeat("a", 65), 1, nil, testKey), reason: "frame", problem: "device id length 65"},
		{name: "id past the end", frame: idPast, reason: "frame", problem: "runs past the end"},
		{name: "id with a space", frame: appendFrame(nil, 1, FrameEvent, "btn 1", 1, nil, testKey), reason: "frame", problem: `"btn 1" is not a valid id`},
		{name: "id with a leading dash", frame: appendFrame(nil, 1, FrameEvent, "-btn", 1, nil, testKey), reason: "frame", problem: "not a valid id"},
		{name: "payload length mismatch", frame: badLen, reason: "frame", problem: "payload length 3 does not match the 2 payload bytes", device: "btn-1"},
		{name: "payload over 1024", frame: appendFrame(nil, 1, FrameEvent, "btn-1", 1, bytes.Repeat([]byte("x"), MaxPayload+1), testKey), reason: "frame", problem: "payload length 1025 exceeds the 1024 byte limit", device: "btn-1"},
		{name: "payload of 1024", frame: appendFrame(nil, 1, FrameEvent, "btn-1", 1, bytes.Repeat([]byte("x"), MaxPayload), testKey), device: "btn-1"},
		{name: "counter 0", frame: appendFrame(nil, 1, FrameEvent, "btn-1", 0, nil, testKey), reason: "frame", problem: "counter 0", device: "btn-1"},
		{name: "ack with a payload", frame: appendFrame(nil, 1, FrameAck, "btn-1", 1, []byte("x"), testKey), reason: "frame", problem: "an ack frame carries no payload", device: "btn-1"},
		{name: "unknown device", frame: appendFrame(nil, 1, FrameEvent, "btn-9", 1, nil, testKey), reason: "device", problem: `no key for device "btn-9"`, device: "btn-9"},
		{name: "device without a key", frame: appendFrame(nil, 1, FrameEvent, "btn-nokey", 1, nil, testKey), reason: "device", device: "btn-nokey"},
		{name: "wrong key", frame: appendFrame(nil, 1, FrameEvent, "btn-1", 42, eventPayload("btn-1", 42, devices.TypeDuress), otherKey), reason: "mac", problem: "event frame from btn-1 counter 42 does not authenticate", device: "btn-1"},
		{name: "another device's key", frame: appendFrame(nil, 1, FrameEvent, "btn-2", 3, nil, testKey), reason: "mac", device: "btn-2"},
		{name: "MAC altered, CRC fixed", frame: withCRC(macFlipped), reason: "mac", device: "btn-1"},
		{name: "ack with the wrong key", frame: appendFrame(nil, 1, FrameAck, "btn-1", 42, nil, otherKey), reason: "mac", problem: "ack frame from btn-1", device: "btn-1"},
	}
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases() {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.frame, testKeys)
			assert.Equal(t, tc.device, f.Device, "claimed device")
			if tc.reason == "" {
				require.NoError(t, err)
				again, err := f.Marshal(func() []byte { k, _ := testKeys(f.Device); return k }())
				require.NoError(t, err)
				assert.Equal(t, tc.frame, again, "re-marshals to the same bytes")
				return
			}
			require.Error(t, err)
			assertReason(t, err, tc.reason, tc.problem)
		})
	}
}

// assertReason checks that err is a serial *Error with the given reason,
// that the gateway's devices.Reason sees the same, and that the message
// names the field.
func assertReason(t *testing.T, err error, reason, problem string) {
	t.Helper()
	var se *Error
	require.ErrorAs(t, err, &se)
	assert.Equal(t, reason, se.Field)
	assert.Equal(t, reason, devices.Reason(err), "devices.Reason")
	var de *devices.Error
	require.ErrorAs(t, err, &de, "wraps a *devices.Error")
	assert.Equal(t, reason, de.Field)
	assert.True(t, strings.HasPrefix(err.Error(), "serial: "+reason+": "), err.Error())
	assert.Contains(t, err.Error(), problem)
}

func TestDecodeRuns(t *testing.T) {
	good, err := Encode(Frame{Type: FrameEvent, Device: "btn-1", Counter: 5, Payload: eventPayload("btn-1", 5, devices.TypeDuress)}, testKey)
	require.NoError(t, err)
	require.Equal(t, byte(0), good[0], "leading delimiter")
	require.Equal(t, byte(0), good[len(good)-1], "trailing delimiter")
	run := good[1 : len(good)-1]
	require.NotContains(t, run, byte(0))

	f, raw, err := Decode(run, testKeys)
	require.NoError(t, err)
	assert.Equal(t, Frame{Type: FrameEvent, Device: "btn-1", Counter: 5, Payload: eventPayload("btn-1", 5, devices.TypeDuress)}, f)
	want, _ := f.Marshal(testKey)
	assert.Equal(t, want, raw)

	for _, tc := range []struct {
		name, problem string
		run           []byte
	}{
		{"code past the end", "code byte points past the end", []byte{0x05, 1, 2}},
		{"zero inside", "0x00 inside", []byte{0x03, 1, 0, 4}},
		{"oversize", "exceeds the 1114 byte limit", bytes.Repeat([]byte{1}, MaxWireFrame+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, raw, err := Decode(tc.run, testKeys)
			assert.Nil(t, raw)
			assertReason(t, err, "frame", tc.problem)
		})
	}
}

func TestMarshalChecks(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    Frame
		key  []byte
		msg  string
	}{
		{"bad type", Frame{Type: 9, Device: "btn-1", Counter: 1}, testKey, "type 9 is not event or ack"},
		{"bad id", Frame{Type: FrameEvent, Device: "a/b", Counter: 1}, testKey, `device "a/b" is not a valid id`},
		{"counter 0", Frame{Type: FrameEvent, Device: "btn-1"}, testKey, "counter 0"},
		{"big payload", Frame{Type: FrameEvent, Device: "btn-1", Counter: 1, Payload: make([]byte, MaxPayload+1)}, testKey, "exceeds the 1024 byte limit"},
		{"ack payload", Frame{Type: FrameAck, Device: "btn-1", Counter: 1, Payload: []byte("x")}, testKey, "no payload"},
		{"no key", Frame{Type: FrameAck, Device: "btn-1", Counter: 1}, nil, "no key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.f.Marshal(tc.key)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "serial: "), err.Error())
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

func TestDecodeEvent(t *testing.T) {
	ev := func(mut func(*devices.Event)) []byte {
		e := devices.Event{V: 1, ID: "e-1", Device: "btn-1", Seq: 42, Type: devices.TypeHeartbeat, TS: testNow.Add(-time.Second)}
		mut(&e)
		b, err := devices.Encode(e)
		require.NoError(t, err)
		return b
	}
	frame := func(counter uint32, payload []byte) Frame {
		return Frame{Type: FrameEvent, Device: "btn-1", Counter: counter, Payload: payload}
	}
	t.Run("valid", func(t *testing.T) {
		d, err := DecodeEvent(frame(42, ev(func(*devices.Event) {})), "site-a", testNow)
		require.NoError(t, err)
		assert.Equal(t, "site-a", d.Site)
		assert.Equal(t, "btn-1", d.Event.Device)
		assert.Equal(t, uint64(42), d.Event.Seq)
		assert.Equal(t, devices.TypeHeartbeat, d.Event.Type)
		assert.Empty(t, d.Warnings)
	})
	t.Run("duress with a wrong clock is accepted with a warning", func(t *testing.T) {
		d, err := DecodeEvent(frame(42, ev(func(e *devices.Event) { e.Type = devices.TypeDuress; e.TS = testNow.Add(time.Hour) })), "site-a", testNow)
		require.NoError(t, err)
		assert.Equal(t, testNow, d.Event.TS)
		assert.Len(t, d.Warnings, 1)
	})
	for _, tc := range []struct {
		name, reason, problem string
		f                     Frame
	}{
		{"payload names another device", "device", `the payload's device is not the frame's device id "btn-1"`, frame(42, ev(func(e *devices.Event) { e.Device = "btn-2" }))},
		{"seq differs from the counter", "seq", "the payload's seq 43 is not the frame counter 42", frame(42, ev(func(e *devices.Event) { e.Seq = 43 }))},
		{"not JSON", "payload", "not a v1 event object", frame(42, []byte("{nope"))},
		{"empty payload", "payload", "not a v1 event object", frame(42, nil)},
		{"unknown field", "payload", "unknown field", frame(42, []byte(`{"v":1,"x":2}`))},
		{"unknown type", "type", `"fall" is not a v1 event type`, frame(42, ev(func(e *devices.Event) { e.Type = "fall" }))},
		{"version 2 event", "v", "version 2", frame(42, ev(func(e *devices.Event) { e.V = 2 }))},
		{"heartbeat from the future", "ts", "ahead", frame(42, ev(func(e *devices.Event) { e.TS = testNow.Add(time.Hour) }))},
		{"ack frame", "frame", "ack frames are sent by the gateway", Frame{Type: FrameAck, Device: "btn-1", Counter: 42}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeEvent(tc.f, "site-a", testNow)
			require.Error(t, err)
			assertReason(t, err, tc.reason, tc.problem)
		})
	}
}

// vector is one golden frame in testdata/vectors.json, the source of the
// example in devices/PROTOCOL.md.
type vector struct {
	Name    string `json:"name"`
	KeyHex  string `json:"key_hex"`
	Type    uint8  `json:"type"`
	Device  string `json:"device"`
	Counter uint32 `json:"counter"`
	Payload string `json:"payload"`
	Frame   string `json:"frame_hex"` // before stuffing
	Wire    string `json:"wire_hex"`  // as on the line, with both delimiters
}

func TestGoldenVectors(t *testing.T) {
	const path = "testdata/vectors.json"
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var vs []vector
	require.NoError(t, json.Unmarshal(b, &vs))
	require.NotEmpty(t, vs)
	for _, v := range vs {
		t.Run(v.Name, func(t *testing.T) {
			key, err := hex.DecodeString(v.KeyHex)
			require.NoError(t, err)
			f := Frame{Type: FrameType(v.Type), Device: v.Device, Counter: v.Counter, Payload: []byte(v.Payload)}
			if v.Payload == "" {
				f.Payload = nil
			}
			raw, err := f.Marshal(key)
			require.NoError(t, err)
			assert.Equal(t, v.Frame, hex.EncodeToString(raw))
			wire, err := Encode(f, key)
			require.NoError(t, err)
			assert.Equal(t, v.Wire, hex.EncodeToString(wire))

			w, _ := hex.DecodeString(v.Wire)
			got, _, err := Decode(w[1:len(w)-1], func(string) ([]byte, bool) { return key, true })
			require.NoError(t, err)
			assert.Equal(t, f, got)
		})
	}
}

func TestCOBS(t *testing.T) {
	seq := func(from, to int) []byte { // from..to inclusive
		var b []byte
		for i := from; i <= to; i++ {
			b = append(b, byte(i))
		}
		return b
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	// The examples of the COBS article on Wikipedia (without the delimiter).
	for _, tc := range []struct {
		name      string
		in, stuff []byte
	}{
		{"empty", nil, []byte{0x01}},
		{"one zero", []byte{0x00}, []byte{0x01, 0x01}},
		{"two zeros", []byte{0x00, 0x00}, []byte{0x01, 0x01, 0x01}},
		{"zero inside", []byte{0x00, 0x11, 0x00}, []byte{0x01, 0x02, 0x11, 0x01}},
		{"no zero", []byte{0x11, 0x22, 0x00, 0x33}, []byte{0x03, 0x11, 0x22, 0x02, 0x33}},
		{"ends in zero", []byte{0x11, 0x22, 0x33, 0x44}, []byte{0x05, 0x11, 0x22, 0x33, 0x44}},
		{"trailing zeros", []byte{0x11, 0x00, 0x00, 0x00}, []byte{0x02, 0x11, 0x01, 0x01, 0x01}},
		{"254 non-zero", seq(1, 254), cat([]byte{0xFF}, seq(1, 254))},
		{"zero then 254", seq(0, 254), cat([]byte{0x01, 0xFF}, seq(1, 254))},
		{"255 non-zero", seq(1, 255), cat([]byte{0xFF}, seq(1, 254), []byte{0x02, 0xFF})},
		{"254 then zero", cat(seq(2, 255), []byte{0x00}), cat([]byte{0xFF}, seq(2, 255), []byte{0x01, 0x01})},
		{"253 then zero then one", cat(seq(3, 255), []byte{0x00, 0x01}), cat([]byte{0xFE}, seq(3, 255), []byte{0x02, 0x01})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := AppendStuffed(nil, tc.in)
			assert.Equal(t, tc.stuff, got)
			back, err := Unstuff(got)
			require.NoError(t, err)
			assert.Equal(t, len(tc.in), len(back))
			assert.True(t, bytes.Equal(tc.in, back))
			assert.LessOrEqual(t, len(got), len(tc.in)+len(tc.in)/254+1)
		})
	}
	t.Run("appends", func(t *testing.T) {
		assert.Equal(t, []byte{0xAA, 0x02, 0x11}, AppendStuffed([]byte{0xAA}, []byte{0x11}))
	})
	t.Run("largest frame fits MaxWireFrame", func(t *testing.T) {
		assert.Len(t, AppendStuffed(nil, bytes.Repeat([]byte{1}, MaxFrame)), MaxWireFrame)
	})
}

func TestDeframer(t *testing.T) {
	frame := func(counter uint32) []byte {
		w, err := Encode(Frame{Type: FrameEvent, Device: "btn-1", Counter: counter, Payload: eventPayload("btn-1", uint64(counter), devices.TypeHeartbeat)}, testKey)
		require.NoError(t, err)
		return w
	}
	type got struct {
		run      string
		oversize bool
	}
	collect := func(d *Deframer, chunks ...[]byte) []got {
		var out []got
		for _, c := range chunks {
			d.Feed(c, func(run []byte, oversize bool) { out = append(out, got{string(run), oversize}) })
		}
		return out
	}
	runOf := func(w []byte) string { return string(w[1 : len(w)-1]) }

	t.Run("byte by byte", func(t *testing.T) {
		var d Deframer
		w := append(frame(1), frame(2)...)
		var chunks [][]byte
		for i := range w {
			chunks = append(chunks, w[i:i+1])
		}
		assert.Equal(t, []got{{runOf(frame(1)), false}, {runOf(frame(2)), false}}, collect(&d, chunks...))
		assert.Zero(t, d.Pending())
	})
	t.Run("garbage between frames is its own run", func(t *testing.T) {
		var d Deframer
		out := collect(&d, frame(1), []byte("noise!"), frame(2))
		assert.Equal(t, []got{{runOf(frame(1)), false}, {"noise!", false}, {runOf(frame(2)), false}}, out)
	})
	t.Run("a truncated frame ends at the next frame's leading delimiter", func(t *testing.T) {
		var d Deframer
		f1 := frame(1)
		out := collect(&d, f1[:20], frame(2))
		assert.Equal(t, []got{{string(f1[1:20]), false}, {runOf(frame(2)), false}}, out)
	})
	t.Run("incomplete run is held back", func(t *testing.T) {
		var d Deframer
		f1 := frame(1)
		assert.Empty(t, collect(&d, f1[:30]))
		assert.Equal(t, 29, d.Pending())
		assert.Equal(t, []got{{runOf(f1), false}}, collect(&d, f1[30:]))
	})
	t.Run("oversize run is reported once and skipped", func(t *testing.T) {
		var d Deframer
		long := bytes.Repeat([]byte{0x55}, 3*MaxWireFrame+10)
		out := collect(&d, long[:100], long[100:2000], long[2000:], frame(3))
		require.Len(t, out, 2)
		assert.True(t, out[0].oversize)
		assert.Len(t, out[0].run, MaxWireFrame)
		assert.Equal(t, got{runOf(frame(3)), false}, out[1])
		assert.Equal(t, uint64(len(long)-MaxWireFrame), d.Discarded)
	})
	t.Run("a run of exactly MaxWireFrame is not oversize", func(t *testing.T) {
		var d Deframer
		run := bytes.Repeat([]byte{0x55}, MaxWireFrame)
		out := collect(&d, run, []byte{0})
		assert.Equal(t, []got{{string(run), false}}, out)
	})
}

func TestErrorIsWrapped(t *testing.T) {
	_, err := Parse([]byte{1}, testKeys)
	var de *devices.Error
	require.True(t, errors.As(err, &de))
	assert.Equal(t, "frame", de.Field)
}

// TestProtocolExample keeps the example in devices/PROTOCOL.md in step with
// the golden vectors.
func TestProtocolExample(t *testing.T) {
	doc, err := os.ReadFile("../PROTOCOL.md")
	require.NoError(t, err)
	b, err := os.ReadFile("testdata/vectors.json")
	require.NoError(t, err)
	var vs []vector
	require.NoError(t, json.Unmarshal(b, &vs))
	squash := func(s string) string { return strings.Join(strings.Fields(s), "") }
	lines := strings.Split(string(doc), "\n")
	var ackFrame, ackWire string
	for i, l := range lines {
		if rest, ok := strings.CutPrefix(l, "frame: "); ok {
			ackFrame = squash(rest)
		}
		if rest, ok := strings.CutPrefix(l, "wire:  "); ok && i+1 < len(lines) {
			ackWire = squash(rest + lines[i+1])
		}
	}
	for _, v := range vs {
		switch FrameType(v.Type) {
		case FrameAck:
			assert.Equal(t, v.Frame, ackFrame, "ack frame in PROTOCOL.md")
			assert.Equal(t, v.Wire, ackWire, "ack wire bytes in PROTOCOL.md")
		case FrameEvent:
			n := len(v.Frame)
			assert.Contains(t, string(doc), v.Frame[n-24:n-8]+"        mac", "event MAC in PROTOCOL.md")
			assert.Contains(t, string(doc), v.Frame[n-8:]+"                crc", "event CRC in PROTOCOL.md")
			assert.Contains(t, string(doc), "`"+v.Payload+"`", "event payload in PROTOCOL.md")
		}
	}
}
