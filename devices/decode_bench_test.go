package devices

import (
	"encoding/json"
	"testing"
	"time"
)

// benchDecodeNow is the gateway clock for the decode benchmarks.
var benchDecodeNow = time.Date(2026, 11, 21, 10, 15, 40, 0, time.UTC)

// benchDecodeCases are payloads as the firmware simulator sends them: a
// 26-character random id, a millisecond-clock seq, a position and a battery
// level.
var benchDecodeCases = []struct {
	name, topic, payload string
	ok                   bool
}{
	{"duress", "vigil/v1/leeds/btn-0001/event",
		`{"v":1,"id":"Q2ZJ7W4XKMB5RLS3TVN6HPAE4D","device":"btn-0001","seq":1763720130123,"type":"duress","ts":"2026-11-21T10:15:30.123Z","loc":{"lat":53.8008,"lon":-1.5491,"acc_m":8},"battery":87}`, true},
	{"heartbeat", "vigil/v1/leeds/btn-0001/event",
		`{"v":1,"id":"Q2ZJ7W4XKMB5RLS3TVN6HPAE4E","device":"btn-0001","seq":1763720130124,"type":"heartbeat","ts":"2026-11-21T10:15:30.123Z","loc":{"lat":53.8008,"lon":-1.5491,"acc_m":8},"battery":87}`, true},
	{"rejected", "vigil/v1/leeds/btn-0001/event",
		`{"v":1,"id":"Q2ZJ7W4XKMB5RLS3TVN6HPAE4F","device":"btn-0001","seq":1763720130125,"type":"heartbeat","ts":"2026-11-21T10:15:30.123Z","extra":true}`, false},
}

// BenchmarkDecode measures Decode (topic parse, strict JSON, validation)
// beside a plain json.Unmarshal of the same payload into an Event, its
// floor: the ratio of the two is the cost of being strict.
func BenchmarkDecode(b *testing.B) {
	for _, tc := range benchDecodeCases {
		payload := []byte(tc.payload)
		b.Run(tc.name+"/Decode", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				if _, err := Decode(tc.topic, payload, benchDecodeNow); (err == nil) != tc.ok {
					b.Fatalf("Decode: %v", err)
				}
			}
		})
		b.Run(tc.name+"/peer=json.Unmarshal", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				var ev Event
				if err := json.Unmarshal(payload, &ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
