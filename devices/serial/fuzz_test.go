package serial

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/vigil-gw/vigil/devices"
)

// reasons a frame may be rejected for; an event field name is also possible
// after DecodeEvent.
var frameReasons = map[string]bool{"crc": true, "mac": true, "frame": true, "device": true}

// FuzzDecodeFrame feeds arbitrary runs to the decoder, which must never panic
// and must reject with a typed error or accept a frame that re-encodes to the
// same bytes. Random bytes almost never carry a good CRC, let alone a MAC, so
// with repair set the input is also taken as frame bytes whose CRC (bit 0)
// and MAC (bit 1) are fixed up first, which takes the fuzzer to the checks
// behind them and into the event decoder.
//
// Seeds are the table cases of frame_test.go; the corpus is kept in
// testdata/fuzz/FuzzDecodeFrame.
func FuzzDecodeFrame(f *testing.F) {
	for _, tc := range parseCases() {
		f.Add(AppendStuffed(nil, tc.frame), uint8(0))
		f.Add(tc.frame, uint8(3))
	}
	f.Add([]byte{}, uint8(0))
	f.Add([]byte{0x05, 1, 2}, uint8(0))
	f.Add(bytes.Repeat([]byte{0xFF}, MaxWireFrame+1), uint8(0))

	f.Fuzz(func(t *testing.T, run []byte, repair uint8) {
		fr, raw, err := Decode(run, testKeys)
		checkDecoded(t, fr, raw, err)
		if raw != nil {
			if back, err := Unstuff(AppendStuffed(nil, raw)); err != nil || !bytes.Equal(back, raw) {
				t.Fatalf("COBS round trip of %x: %x, %v", raw, back, err)
			}
		}

		if repair == 0 || len(run) < MinFrame || len(run) > MaxFrame {
			return
		}
		b := bytes.Clone(run)
		if repair&2 != 0 {
			key, ok := testKeys(claimedID(b))
			if !ok {
				key = testKey
			}
			signed := b[:len(b)-4-MACSize]
			copy(b[len(signed):], mac(key, signed))
		}
		binary.BigEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], castagnoli))
		fr, err = Parse(b, testKeys)
		checkDecoded(t, fr, b, err)
	})
}

// checkDecoded checks the invariants of a decoder result.
func checkDecoded(t *testing.T, fr Frame, raw []byte, err error) {
	t.Helper()
	if err != nil {
		se, ok := err.(*Error)
		if !ok {
			t.Fatalf("error %v is a %T, not a *serial.Error", err, err)
		}
		if !frameReasons[se.Field] || devices.Reason(err) != se.Field {
			t.Fatalf("reason %q (devices.Reason %q) for %v", se.Field, devices.Reason(err), err)
		}
		if !strings.HasPrefix(err.Error(), "serial: ") {
			t.Fatalf("message %q", err)
		}
		if fr.Device != "" && !devices.ValidID(fr.Device) {
			t.Fatalf("claimed device %q is not a valid id", fr.Device)
		}
		return
	}
	if len(fr.Payload) > MaxPayload || !devices.ValidID(fr.Device) || fr.Counter == 0 {
		t.Fatalf("accepted frame breaks the format: %+v", fr)
	}
	key, _ := testKeys(fr.Device)
	again, err := fr.Marshal(key)
	if err != nil || !bytes.Equal(again, raw) {
		t.Fatalf("accepted frame %x re-marshals to %x, %v", raw, again, err)
	}
	d, err := DecodeEvent(fr, "site-a", testNow)
	switch {
	case err == nil:
		if fr.Type != FrameEvent || d.Event.Device != fr.Device || d.Event.Seq != uint64(fr.Counter) || d.Site != "site-a" {
			t.Fatalf("event %+v accepted from frame %+v", d, fr)
		}
	case !strings.HasPrefix(err.Error(), "serial: ") || devices.Reason(err) == "other":
		t.Fatalf("DecodeEvent error %v", err)
	}
}
