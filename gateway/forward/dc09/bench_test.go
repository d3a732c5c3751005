package dc09

import (
	"bytes"
	"testing"
	"time"
)

// benchFrame is a duress as the client sends it: ADM-CID with event time,
// position and alarm text, and a timestamp.
func benchFrame() Frame {
	return Frame{ID: IDADMCID, Seq: 42, Receiver: "1", Prefix: "1", Account: "1234",
		Data:      "#1234|1121 01 001",
		XData:     []string{"H10:15:30,11-21-2026", "X-1.549100", "Y53.800800", "IDURESS Wearer 1 at leeds"},
		Timestamp: time.Date(2026, 11, 21, 10, 15, 31, 0, time.UTC), HasTimestamp: true}
}

// benchKeys are the clear case and the two usual AES key sizes.
var benchKeys = []struct {
	name string
	key  []byte
}{
	{"clear", nil},
	{"aes128", bytes.Repeat([]byte{0x5a}, 16)},
	{"aes256", bytes.Repeat([]byte{0xa5}, 32)},
}

// BenchmarkFrameEncode measures encoding one duress frame, in clear and
// encrypted; the clear case is the peer for the cost of encryption.
func BenchmarkFrameEncode(b *testing.B) {
	f := benchFrame()
	for _, k := range benchKeys {
		b.Run(k.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.Encode(k.key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseFrame measures reading the same frames back, as a receiver
// (and the client, for ACKs) does, checking CRC, LEN and every field.
func BenchmarkParseFrame(b *testing.B) {
	for _, k := range benchKeys {
		raw, err := benchFrame().Encode(k.key)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(k.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if _, err := ParseFrame(raw, k.key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCRC16 is the floor under ParseFrame and Encode: the CRC over a
// clear duress frame's region.
func BenchmarkCRC16(b *testing.B) {
	raw, err := benchFrame().Encode(nil)
	if err != nil {
		b.Fatal(err)
	}
	region := raw[9 : len(raw)-1]
	b.SetBytes(int64(len(region)))
	for b.Loop() {
		CRC16(region)
	}
}
