package dc09

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/gateway/forward"
)

func TestEventBodyCodes(t *testing.T) {
	cases := []struct {
		event        string
		kind         forward.Kind
		zone         int
		adm, sia     string
		noRestoreErr bool
	}{
		{event: "duress", kind: forward.KindAlarm, zone: 5, adm: "#1234|1121 01 005", sia: "#1234|Nri1/HA005"},
		{event: "duress", kind: forward.KindRestore, zone: 5, adm: "#1234|3121 01 005", sia: "#1234|Nri1/HR005"},
		{event: "panic", kind: forward.KindAlarm, zone: 12, adm: "#1234|1120 01 012", sia: "#1234|Nri1/PA012"},
		{event: "panic", kind: forward.KindRestore, zone: 12, adm: "#1234|3120 01 012", sia: "#1234|Nri1/PR012"},
		{event: "medical", kind: forward.KindAlarm, zone: 999, adm: "#1234|1100 01 999", sia: "#1234|Nri1/MA999"},
		{event: "man_down", kind: forward.KindAlarm, adm: "#1234|1100 01 000", sia: "#1234|Nri1/MA000"},
		{event: "man_down", kind: forward.KindRestore, adm: "#1234|3100 01 000", sia: "#1234|Nri1/MR000"},
		{event: "amber_overrun", kind: forward.KindAlarm, zone: 1, adm: "#1234|1102 01 001", sia: "#1234|Nri1/NA001"},
		{event: "amber_overrun", kind: forward.KindRestore, zone: 1, adm: "#1234|3102 01 001", sia: "#1234|Nri1/NS001"},
		{event: "low_battery", kind: forward.KindAlarm, zone: 1, adm: "#1234|1302 01 001", sia: "#1234|Nri1/YT001"},
		{event: "low_battery", kind: forward.KindRestore, zone: 1, adm: "#1234|3302 01 001", sia: "#1234|Nri1/YR001"},
		{event: "supervision_lost", kind: forward.KindAlarm, zone: 1, adm: "#1234|1381 01 001", sia: "#1234|Nri1/YC001"},
		{event: "supervision_lost", kind: forward.KindRestore, zone: 1, adm: "#1234|3381 01 001", sia: "#1234|Nri1/YK001"},
		{event: "test", kind: forward.KindAlarm, adm: "#1234|1602 01 000", sia: "#1234|Nri1/RP000"},
		{event: "test", kind: forward.KindRestore, noRestoreErr: true},
		{event: " Duress ", kind: "", zone: 5, adm: "#1234|1121 01 005", sia: "#1234|Nri1/HA005"},
	}
	for _, tc := range cases {
		t.Run(tc.event+"/"+string(tc.kind), func(t *testing.T) {
			m := forward.Message{Event: tc.event, Kind: tc.kind, Zone: tc.zone, Verified: true}
			id, data, _, err := eventBody(m, FormatADMCID, "1234")
			if tc.noRestoreErr {
				require.ErrorIs(t, err, errEvent)
				_, _, _, err = eventBody(m, FormatSIADCS, "1234")
				require.ErrorIs(t, err, errEvent)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, IDADMCID, id)
			assert.Equal(t, tc.adm, data)

			id, data, _, err = eventBody(m, FormatSIADCS, "1234")
			require.NoError(t, err)
			assert.Equal(t, IDSIADCS, id)
			assert.Equal(t, tc.sia, data)
		})
	}
}

func TestEventBodyErrors(t *testing.T) {
	cases := map[string]struct {
		m      forward.Message
		format Format
	}{
		"unknown event": {forward.Message{Event: "coffee"}, FormatADMCID},
		"unknown kind":  {forward.Message{Event: "duress", Kind: "maybe"}, FormatADMCID},
		"zone too big":  {forward.Message{Event: "duress", Zone: 1000}, FormatADMCID},
		"negative zone": {forward.Message{Event: "duress", Zone: -1}, FormatSIADCS},
		"bad format":    {forward.Message{Event: "duress"}, Format("xml")},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, _, err := eventBody(tc.m, tc.format, "1234")
			require.ErrorIs(t, err, errEvent)
			assert.True(t, strings.HasPrefix(err.Error(), "dc09: "), err.Error())
		})
	}
}

func TestExtendedData(t *testing.T) {
	when := time.Date(2025, 6, 1, 11, 30, 15, 0, time.FixedZone("BST", 3600))
	cases := map[string]struct {
		m    forward.Message
		want []string
	}{
		"nothing but verification": {forward.Message{Verified: false}, []string{"IUNVERIFIED"}},
		"verified, nothing else":   {forward.Message{Verified: true}, nil},
		"event time in UTC": {forward.Message{Verified: true, Time: when},
			[]string{"H10:30:15,06-01-2025"}},
		"location west and north": {forward.Message{Verified: true, Location: &forward.Location{Lat: 53.4807593, Lon: -2.2426305}},
			[]string{"X-2.242631", "Y53.480759"}},
		"location south and east": {forward.Message{Verified: true, Location: &forward.Location{Lat: -33.8688, Lon: 151.2093}},
			[]string{"X151.209300", "Y-33.868800"}},
		"bad location is left out": {forward.Message{Verified: true, Location: &forward.Location{Lat: math.NaN(), Lon: 1}}, nil},
		"latitude out of range":    {forward.Message{Verified: true, Location: &forward.Location{Lat: 91, Lon: 1}}, nil},
		"text cleaned": {forward.Message{Verified: true, Text: "Duress [button]  at|home\r\n café\x00"},
			[]string{"IDuress button athome caf"}},
		"text capped": {forward.Message{Verified: true, Text: strings.Repeat("x", 100)},
			[]string{"I" + strings.Repeat("x", 64)}},
		"unverified text": {forward.Message{Text: "Help"}, []string{"IUNVERIFIED Help"}},
		"unverified long text": {forward.Message{Text: strings.Repeat("y", 100)},
			[]string{"IUNVERIFIED " + strings.Repeat("y", 64-len("UNVERIFIED "))}},
		"all": {forward.Message{Verified: true, Time: when, Location: &forward.Location{Lat: 1, Lon: 2}, Text: "t"},
			[]string{"H10:30:15,06-01-2025", "X2.000000", "Y1.000000", "It"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := extendedData(tc.m)
			assert.Equal(t, tc.want, got)
			for _, x := range got {
				assert.Nil(t, checkText("xdata", x, false), x)
				assert.LessOrEqual(t, len(x), 1+maxTextLen)
			}
		})
	}
}
