package devices

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var testNow = time.Date(2026, 11, 21, 10, 15, 40, 0, time.UTC)

const goodTopic = "vigil/v1/leeds-north/btn-1/event"

const goodPayload = `{"v":1,"id":"e-42","device":"btn-1","seq":42,"type":"duress","ts":"2026-11-21T10:15:30.123Z","loc":{"lat":53.8008,"lon":-1.5491,"acc_m":8},"battery":87}`

func TestDecodeValid(t *testing.T) {
	d, err := Decode(goodTopic, []byte(goodPayload), testNow)
	require.NoError(t, err)
	assert.Equal(t, "leeds-north", d.Site)
	assert.Equal(t, "btn-1", d.Event.Device)
	assert.Equal(t, uint64(42), d.Event.Seq)
	assert.Equal(t, TypeDuress, d.Event.Type)
	assert.Equal(t, time.Date(2026, 11, 21, 10, 15, 30, 123e6, time.UTC), d.Event.TS.UTC())
	require.NotNil(t, d.Event.Loc)
	assert.InDelta(t, 53.8008, d.Event.Loc.Lat, 1e-9)
	require.NotNil(t, d.Event.Battery)
	assert.Equal(t, 87, *d.Event.Battery)
	assert.Empty(t, d.Warnings)
}

// decodeCases are shared by the table test and the fuzz seed corpus.
var decodeCases = []struct {
	name, topic, payload string
	field                string // "" = valid
	warnings             int
}{
	{"valid heartbeat", "vigil/v1/s1/btn-2/event", `{"v":1,"id":"h1","device":"btn-2","seq":7,"type":"heartbeat","ts":"2026-11-21T10:15:00Z"}`, "", 0},
	{"valid battery", "vigil/v1/s1/btn-2/event", `{"v":1,"id":"b1","device":"btn-2","seq":8,"type":"battery","ts":"2026-11-21T10:15:00Z","battery":15}`, "", 0},
	{"valid cancel", "vigil/v1/s1/btn-2/event", `{"v":1,"id":"c1","device":"btn-2","seq":9,"type":"duress_cancel","ts":"2026-11-21T10:15:00Z"}`, "", 0},
	{"not json", goodTopic, `{"v":1,`, "payload", 0},
	{"array", goodTopic, `[1,2]`, "payload", 0},
	{"trailing", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"heartbeat","ts":"2026-11-21T10:15:00Z"} {}`, "payload", 0},
	{"unknown field", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"heartbeat","ts":"2026-11-21T10:15:00Z","x":1}`, "payload", 0},
	{"bad topic", "vigil/v2/s/btn-1/event", goodPayload, "topic", 0},
	{"topic wildcard device", "vigil/v1/s/+/event", goodPayload, "topic", 0},
	{"topic extra level", "vigil/v1/s/btn-1/x/event", goodPayload, "topic", 0},
	{"wrong version", goodTopic, `{"v":2,"id":"a","device":"btn-1","seq":1,"type":"heartbeat","ts":"2026-11-21T10:15:00Z"}`, "v", 0},
	{"no id", goodTopic, `{"v":1,"device":"btn-1","seq":1,"type":"heartbeat","ts":"2026-11-21T10:15:00Z"}`, "id", 0},
	{"id with space", goodTopic, `{"v":1,"id":"a b","device":"btn-1","seq":1,"type":"heartbeat","ts":"2026-11-21T10:15:00Z"}`, "id", 0},
	{"device mismatch", goodTopic, `{"v":1,"id":"a","device":"btn-9","seq":1,"type":"duress","ts":"2026-11-21T10:15:00Z"}`, "device", 0},
	{"seq zero", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":0,"type":"heartbeat","ts":"2026-11-21T10:15:00Z"}`, "seq", 0},
	{"seq negative", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":-1,"type":"heartbeat","ts":"2026-11-21T10:15:00Z"}`, "payload", 0},
	{"unknown type", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"explode","ts":"2026-11-21T10:15:00Z"}`, "type", 0},
	{"heartbeat future ts", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"heartbeat","ts":"2027-01-01T00:00:00Z"}`, "ts", 0},
	{"heartbeat old ts", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"heartbeat","ts":"2026-11-01T00:00:00Z"}`, "ts", 0},
	{"heartbeat no ts", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"heartbeat"}`, "ts", 0},
	{"battery out of range", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"battery","ts":"2026-11-21T10:15:00Z","battery":140}`, "battery", 0},
	{"heartbeat bad loc", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"heartbeat","ts":"2026-11-21T10:15:00Z","loc":{"lat":91,"lon":0}}`, "loc", 0},
	{"amber start", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"amber_start","ts":"2026-11-21T10:15:00Z","duration_s":1800,"note":"visit at 12 Park Rd"}`, "", 0},
	{"amber without duration", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"amber_start","ts":"2026-11-21T10:15:00Z"}`, "duration_s", 0},
	{"amber too long", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"amber_extend","ts":"2026-11-21T10:15:00Z","duration_s":86401}`, "duration_s", 0},
	{"duration on a duress", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"duress","ts":"2026-11-21T10:15:00Z","duration_s":5}`, "duration_s", 0},
	{"note with control char", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"amber_start","ts":"2026-11-21T10:15:00Z","duration_s":60,"note":"a\u0007b"}`, "note", 0},
	{"covert cancel", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"duress_cancel","ts":"2026-11-21T10:15:00Z","covert":true}`, "", 0},
	{"covert heartbeat", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"heartbeat","ts":"2026-11-21T10:15:00Z","covert":true}`, "covert", 0},
	{"heartbeat interval", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"heartbeat","ts":"2026-11-21T10:15:00Z","interval_s":30}`, "", 0},
	{"heartbeat interval too short", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"heartbeat","ts":"2026-11-21T10:15:00Z","interval_s":1}`, "interval_s", 0},
	{"man down skewed clock warns", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"man_down","ts":"2020-01-01T00:00:00Z"}`, "", 1},
	{"amber start skewed clock warns", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"amber_start","ts":"2020-01-01T00:00:00Z","duration_s":60}`, "", 1},
	{"duress skewed clock warns", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"duress","ts":"2020-01-01T00:00:00Z"}`, "", 1},
	{"clip ready", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"clip_ready","ts":"2026-11-21T10:15:00Z","clip":{"id":"c-1.mp4","sha256":"abababababababababababababababababababababababababababababababab","size":1024,"start":"2026-11-21T10:10:00Z","end":"2026-11-21T10:15:00Z"}}`, "", 0},
	{"clip ready without clip", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"clip_ready","ts":"2026-11-21T10:15:00Z"}`, "clip", 0},
	{"clip id path trick", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"clip_ready","ts":"2026-11-21T10:15:00Z","clip":{"id":"../../etc/passwd","sha256":"abababababababababababababababababababababababababababababababab","size":1,"start":"2026-11-21T10:10:00Z","end":"2026-11-21T10:15:00Z"}}`, "clip.id", 0},
	{"clip id dot dot", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"recording_started","ts":"2026-11-21T10:15:00Z","clip":{"id":"a..b"}}`, "clip.id", 0},
	{"clip digest upper", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"clip_ready","ts":"2026-11-21T10:15:00Z","clip":{"id":"c1","sha256":"ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB","size":1,"start":"2026-11-21T10:10:00Z","end":"2026-11-21T10:15:00Z"}}`, "clip.sha256", 0},
	{"clip ends before start", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"clip_ready","ts":"2026-11-21T10:15:00Z","clip":{"id":"c1","sha256":"abababababababababababababababababababababababababababababababab","size":1,"start":"2026-11-21T10:10:00Z","end":"2026-11-21T10:00:00Z"}}`, "clip.end", 0},
	{"clip on a duress", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"duress","ts":"2026-11-21T10:15:00Z","clip":{"id":"c1"}}`, "clip", 0},
	{"recording started", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"recording_started","ts":"2026-11-21T10:15:00Z","clip":{"id":"c1"}}`, "", 0},
	{"report verbal", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"report","ts":"2026-11-21T10:15:00Z","kind":"verbal"}`, "", 0},
	{"report physical with place", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"report","ts":"2026-11-21T10:15:00Z","kind":"physical","place":"Ward 7, bay 3"}`, "", 0},
	{"report without kind", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"report","ts":"2026-11-21T10:15:00Z"}`, "kind", 0},
	{"report unknown kind", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"report","ts":"2026-11-21T10:15:00Z","kind":"shouting"}`, "kind", 0},
	{"kind on a duress", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"duress","ts":"2026-11-21T10:15:00Z","kind":"verbal"}`, "kind", 0},
	{"duress with place", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"duress","ts":"2026-11-21T10:15:00Z","place":"Plant room B"}`, "", 0},
	{"place with control char", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"duress","ts":"2026-11-21T10:15:00Z","place":"a\nb"}`, "place", 0},
	{"place too long", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"duress","ts":"2026-11-21T10:15:00Z","place":"` + strings.Repeat("x", MaxPlace+1) + `"}`, "place", 0},
	{"duress no ts bad loc bad battery warns", goodTopic, `{"v":1,"id":"a","device":"btn-1","seq":1,"type":"duress","loc":{"lat":0,"lon":200},"battery":-3}`, "", 3},
}

func TestDecodeTable(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Decode(tc.topic, []byte(tc.payload), testNow)
			if tc.field == "" {
				require.NoError(t, err)
				assert.Len(t, d.Warnings, tc.warnings)
				if tc.warnings > 0 {
					assert.Equal(t, testNow, d.Event.TS, "an urgent event with a bad clock takes the gateway's time")
				}
				return
			}
			require.Error(t, err)
			assert.Equal(t, tc.field, Reason(err), "error %v", err)
			assert.True(t, strings.HasPrefix(err.Error(), "devices: "+tc.field+": "), err.Error())
		})
	}
}

func TestDecodeOversize(t *testing.T) {
	big := `{"v":1,"id":"` + strings.Repeat("a", MaxPayload) + `"}`
	_, err := Decode(goodTopic, []byte(big), testNow)
	require.Error(t, err)
	assert.Equal(t, "payload", Reason(err))
	assert.Contains(t, err.Error(), "exceeds the 4096 byte limit")
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	bat := 50
	ev := Event{ID: "x1", Device: "btn-1", Seq: 3, Type: TypeBattery, TS: testNow.Add(-time.Second), Battery: &bat,
		Loc: &Location{Lat: 1.5, Lon: -2.25, AccM: 3}}
	b, err := Encode(ev)
	require.NoError(t, err)
	d, err := Decode(EventTopic("site-a", "btn-1"), b, testNow)
	require.NoError(t, err)
	ev.V = Version
	assert.Equal(t, ev.TS.UTC(), d.Event.TS.UTC())
	d.Event.TS = ev.TS
	assert.Equal(t, ev, d.Event)
	assert.Equal(t, "site-a", d.Site)
}

func TestCommandRoundTrip(t *testing.T) {
	b, err := EncodeCommand(Command{Cmd: CmdAlertReceived, Alert: "btn-1.42", Seq: 42})
	require.NoError(t, err)
	assert.JSONEq(t, `{"cmd":"alert_received","alert":"btn-1.42","seq":42}`, string(b))
	c, err := DecodeCommand(b)
	require.NoError(t, err)
	assert.Equal(t, "btn-1.42", c.Alert)
	_, err = DecodeCommand([]byte(`{}`))
	require.Error(t, err)
}

func TestValidID(t *testing.T) {
	for s, want := range map[string]bool{"btn-1": true, "A_9": true, "": false, "-x": false, "a/b": false, "a+b": false, "a#": false, strings.Repeat("a", 65): false, "ü": false} {
		assert.Equal(t, want, ValidID(s), s)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(goodTopic, []byte(goodPayload))
	for _, tc := range decodeCases {
		f.Add(tc.topic, []byte(tc.payload))
	}
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		d, err := Decode(topic, payload, testNow)
		if err != nil {
			var e *Error
			if !assert.ErrorAs(t, err, &e) {
				return
			}
			assert.NotEmpty(t, e.Field)
			return
		}
		// Whatever is accepted is sane and survives a round trip.
		require.True(t, ValidID(d.Site))
		require.True(t, ValidID(d.Event.Device))
		require.NotZero(t, d.Event.Seq)
		require.False(t, d.Event.TS.IsZero())
		b, err := Encode(d.Event)
		require.NoError(t, err)
		d2, err := Decode(topic, b, testNow)
		require.NoError(t, err)
		require.Equal(t, d.Event.Seq, d2.Event.Seq)
		require.Equal(t, d.Event.Type, d2.Event.Type)
	})
}
