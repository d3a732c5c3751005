package firmwaresim

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
)

// wantReason is the field devices.Decode blames for each malformation.
var wantReason = map[Malformation]string{
	MalformedJSON:     "payload",
	MalformedDevice:   "device",
	MalformedType:     "type",
	MalformedOversize: "payload",
	MalformedNoSeq:    "seq",
}

func TestMalformIsRejectedForTheRightReason(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 15, 30, 0, time.UTC)
	battery := 87
	ev := devices.Event{
		ID: "01HZX", Device: "btn-1", Seq: 42, Type: devices.TypeDuress, TS: now,
		Loc: &devices.Location{Lat: 53.8, Lon: -1.55, AccM: 8}, Battery: &battery,
	}
	topic := devices.EventTopic("demo", "btn-1")

	good, err := devices.Encode(ev)
	require.NoError(t, err)
	_, err = devices.Decode(topic, good, now)
	require.NoError(t, err, "the unbroken event must be valid")

	require.Len(t, Malformations(), len(wantReason))
	rng := rand.New(rand.NewPCG(1, 2))
	for _, kind := range Malformations() {
		t.Run(string(kind), func(t *testing.T) {
			// Several draws, since bad JSON and unknown types are random.
			for range 50 {
				payload, err := malform(ev, kind, rng)
				require.NoError(t, err)
				_, err = devices.Decode(topic, payload, now)
				require.Error(t, err, "payload %s", payload)
				assert.Equal(t, wantReason[kind], devices.Reason(err), "payload %.80s: %v", payload, err)
				if kind == MalformedOversize {
					assert.Greater(t, len(payload), devices.MaxPayload)
				}
			}
		})
	}
}
